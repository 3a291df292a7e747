//! Cgroup limits for one environment: a small in-house layer over cgroupfs.
//!
//! Like the Firecracker jailer, Warren talks to cgroupfs directly with plain file writes instead
//! of going through a cgroup manager. [`Layout::discover`] reads a mountinfo file to find the
//! mounted hierarchies; [`Layout::create`] makes `<hierarchy>/warren/<leaf>` in every hierarchy
//! Warren uses and writes the memory, pids and cpu limits; [`Cgroup`] adds processes, reads the
//! out-of-memory counters, kills everything inside and removes the directories again.
//!
//! cgroup v2 is the primary path (one unified directory, in `v2`); cgroup v1 is the fallback
//! for hosts whose controllers are still on the legacy hierarchies (in `v1`). A host that is
//! "hybrid" (v1 controllers plus a cgroup2 mount that lacks memory, pids or cpu) uses v1.
//!
//! Every path is taken relative to a filesystem root, so the tests point the whole layer at a
//! tempdir whose control files are plain files.
//!
//! **Nesting** ([`Placement`]): an environment that may spawn children keeps its own processes in
//! `GROUP/self` and its children in `GROUP/children/NAME`, so that the limits written on `GROUP`
//! bound the whole tree. cgroup v2 lets no process live in a cgroup whose controllers reach
//! children ("no internal processes"); v1 has no such rule but uses the same layout. `self` gets
//! the group's limits too, so the environment's own view of its cgroup (its cgroup namespace
//! root is `self`) shows them. Nested cgroups use every hierarchy Warren uses, so a child never
//! escapes a limit of its parent by asking for none itself.
//!
//! **Invariant:** a failed [`Layout::create`] leaves nothing behind that it made, and it never
//! touches a leaf that already existed: an existing leaf belongs to another environment.
#![forbid(unsafe_code)]

mod cpuset;
mod v1;
mod v2;

use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use rustix::io::Errno;
use rustix::process::{Pid, Signal};
use serde::{Deserialize, Serialize};
use warren_spec::CpuQuota;

/// The directory, directly under each hierarchy's root, that holds every Warren cgroup.
pub const PARENT: &str = "warren";

/// The directory, inside a group that holds children, where the environment's own processes
/// live ([`Placement::holds_children`]).
pub const SELF_DIR: &str = "self";
/// The directory, inside a group that holds children, that holds one group per child.
pub const CHILDREN_DIR: &str = "children";

/// Where an environment's cgroup sits in Warren's tree, and whether it holds children.
///
/// The default is a plain leaf directly under `warren`, processes in the leaf itself.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Placement {
    /// The group of the environment this one is nested under, relative to the `warren`
    /// directory (`front`, `front/children/req-1`); `None` puts it directly under `warren`.
    /// That group must hold children (its `self` directory exists).
    pub parent: Option<String>,
    /// The environment may have children: its processes go in `GROUP/self` and its children's
    /// groups in `GROUP/children/`.
    pub holds_children: bool,
}

impl Placement {
    /// The group, relative to the `warren` directory, of environment `leaf` placed here:
    /// `leaf`, or `PARENT/children/leaf`.
    pub fn group(&self, leaf: &str) -> String {
        match &self.parent {
            Some(p) => format!("{p}/{CHILDREN_DIR}/{leaf}"),
            None => leaf.to_owned(),
        }
    }

    fn nested(&self) -> bool {
        self.parent.is_some() || self.holds_children
    }
}

/// Whether `c` is one plain path component (not empty, `.` or `..`, no `/` or NUL).
fn valid_component(c: &str) -> bool {
    !c.is_empty() && c != "." && c != ".." && !c.contains(['/', '\0'])
}

/// Whether `group` is one or more plain components separated by `/`.
pub fn valid_group(group: &str) -> bool {
    group.split('/').all(valid_component)
}

/// The controllers whose limits Warren writes, in the order it writes them.
const LIMIT_CONTROLLERS: [&str; 3] = ["memory", "pids", "cpu"];

/// How long [`Cgroup::kill_all`] keeps killing before it gives up.
const KILL_TIMEOUT: Duration = Duration::from_secs(2);
/// How long removing one cgroup directory retries while the kernel answers `EBUSY`.
const RMDIR_TIMEOUT: Duration = Duration::from_secs(2);
/// The pause between two polls of `cgroup.procs`, `freezer.state` or a busy `rmdir`.
const POLL: Duration = Duration::from_millis(10);

/// The limits to apply to one environment's cgroup; `None` leaves that resource unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// Memory limit in bytes (swap is limited to nothing on top of it).
    pub memory: Option<u64>,
    /// Maximum number of processes and threads.
    pub pids: Option<u64>,
    /// Share of cpu time.
    pub cpu: Option<CpuQuota>,
}

/// Which cgroup interface a layout or a cgroup uses.
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "lowercase")]
pub enum Version {
    /// The legacy interface: one hierarchy per controller (or per co-mounted group).
    V1,
    /// The unified hierarchy.
    V2,
}

impl Version {
    /// `"v1"` or `"v2"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Version::V1 => "v1",
            Version::V2 => "v2",
        }
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One mounted cgroup v1 hierarchy.
#[derive(Serialize, Clone, PartialEq, Eq, Debug)]
pub struct V1Hierarchy {
    /// The controllers bound to it (`["cpu", "cpuacct"]` when co-mounted).
    pub controllers: Vec<String>,
    /// Where it is mounted (under the discovery's filesystem root).
    pub mount_point: PathBuf,
}

/// The mounted cgroup v2 (unified) hierarchy.
#[derive(Serialize, Clone, PartialEq, Eq, Debug)]
pub struct UnifiedMount {
    /// Where it is mounted (under the discovery's filesystem root).
    pub mount_point: PathBuf,
    /// The controllers its root offers (`cgroup.controllers`).
    pub controllers: Vec<String>,
}

/// A serialisable description of a [`Layout`], for `warren doctor`.
#[derive(Serialize, Clone, PartialEq, Eq, Debug)]
pub struct LayoutInfo {
    /// The interface [`Layout::create`] will use.
    pub version: Version,
    /// The v1 hierarchies that have at least one controller, in mountinfo order.
    pub v1: Vec<V1Hierarchy>,
    /// The first cgroup2 mount, if any.
    pub v2: Option<UnifiedMount>,
}

/// The cgroup hierarchies mounted on a host, as found in its mountinfo.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Layout {
    v1: Vec<V1Hierarchy>,
    v2: Option<UnifiedMount>,
}

/// What went wrong discovering, creating, filling or removing cgroups.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// The mountinfo file could not be read.
    #[error("cannot read mountinfo {path}")]
    ReadMountinfo {
        /// The mountinfo file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// Neither a cgroup2 mount nor a v1 hierarchy with a controller was found.
    #[error("no cgroup hierarchy with a controller is mounted (according to {mountinfo})")]
    NoCgroupMounts {
        /// The mountinfo file that was read.
        mountinfo: PathBuf,
    },
    /// A leaf name that is not a single plain path component.
    #[error("invalid cgroup name {leaf:?}: it must be one path component, not . or ..")]
    InvalidLeaf {
        /// The rejected name.
        leaf: String,
    },
    /// A cgroup parent that is not `/`-separated plain names.
    #[error("invalid cgroup parent {parent:?}: it must be plain names separated by /")]
    InvalidParent {
        /// The rejected parent.
        parent: String,
    },
    /// The parent group does not hold children: it does not exist, or its environment was not
    /// started to have children (no `self` directory).
    #[error(
        "cgroup {parent:?} cannot hold children: {path} does not exist (its environment has \
         ended, or was not started to spawn)"
    )]
    NotAParent {
        /// The parent group.
        parent: String,
        /// The directory that is missing.
        path: PathBuf,
    },
    /// The leaf already exists: another environment uses the name. It was left untouched.
    #[error("cgroup {leaf:?} already exists at {path}; another environment uses the name")]
    LeafExists {
        /// The leaf name.
        leaf: String,
        /// The existing directory.
        path: PathBuf,
    },
    /// A limit was requested for a controller this host does not offer; nothing was created.
    #[error("cannot limit {controller} for cgroup {leaf:?}: no {version} {controller} controller")]
    ControllerUnavailable {
        /// The missing controller (`memory`, `pids` or `cpu`).
        controller: &'static str,
        /// The leaf that was being created.
        leaf: String,
        /// The interface that was searched.
        version: Version,
    },
    /// None of the hierarchies Warren uses is mounted, so there is nowhere to put the leaf.
    #[error(
        "cannot create cgroup {leaf:?}: none of the {version} hierarchies warren uses is mounted"
    )]
    NoUsableHierarchy {
        /// The leaf that was being created.
        leaf: String,
        /// The interface that was searched.
        version: Version,
    },
    /// A cgroup directory could not be created.
    #[error("cannot create cgroup directory {path}")]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A control file could not be read.
    #[error("cannot read {path}")]
    Read {
        /// The control file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A control file could not be written.
    #[error("cannot write {value:?} to {path}")]
    Write {
        /// The control file.
        path: PathBuf,
        /// What was being written.
        value: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A process could not be moved into the cgroup.
    #[error("cannot add process {pid} to {path}")]
    AddProcess {
        /// The process.
        pid: i32,
        /// The `cgroup.procs` file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A process in the cgroup could not be sent SIGKILL.
    #[error("cannot send SIGKILL to process {pid} in {path}")]
    Kill {
        /// The process.
        pid: i32,
        /// The cgroup directory it was listed in.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// Processes were still listed after the kill loop's time ran out.
    #[error("{remaining} processes still in {path} after {timeout:?} of killing")]
    KillTimeout {
        /// The cgroup directory that is not empty.
        path: PathBuf,
        /// How many processes were still listed.
        remaining: usize,
        /// How long the loop tried.
        timeout: Duration,
    },
    /// A cgroup directory could not be removed.
    #[error("cannot remove cgroup directory {path}")]
    RemoveDir {
        /// The directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

impl Layout {
    /// Parse a mountinfo file (normally /proc/self/mountinfo). Paths in it are taken relative to
    /// `fs_root` (normally "/"), so tests can point both at a tempdir fixture.
    ///
    /// Records every v1 hierarchy that carries at least one controller (named-only hierarchies
    /// such as `name=systemd` are skipped) and the first cgroup2 mount with the controllers its
    /// root `cgroup.controllers` offers. When a controller is mounted twice, the first mount wins.
    pub fn discover(mountinfo: &Path, fs_root: &Path) -> Result<Layout, CgroupError> {
        let text = warren_sys::read_pseudo_file(mountinfo).map_err(|source| {
            CgroupError::ReadMountinfo {
                path: mountinfo.to_owned(),
                source,
            }
        })?;
        let mut v1: Vec<V1Hierarchy> = Vec::new();
        let mut v2: Option<UnifiedMount> = None;
        for line in text.lines() {
            let Some(mount) = MountLine::parse(line) else {
                continue;
            };
            let mount_point = under_root(fs_root, &mount.mount_point);
            match mount.fstype {
                "cgroup2" if v2.is_none() => {
                    let file = mount_point.join("cgroup.controllers");
                    let controllers = warren_sys::read_pseudo_file(&file)
                        .map_err(|source| CgroupError::Read { path: file, source })?;
                    v2 = Some(UnifiedMount {
                        mount_point,
                        controllers: controllers.split_whitespace().map(str::to_owned).collect(),
                    });
                }
                "cgroup" => {
                    let controllers: Vec<String> = v1_controllers(mount.super_options)
                        .filter(|c| !v1.iter().any(|h| h.controllers.iter().any(|k| k == c)))
                        .map(str::to_owned)
                        .collect();
                    if !controllers.is_empty() {
                        v1.push(V1Hierarchy {
                            controllers,
                            mount_point,
                        });
                    }
                }
                _ => {}
            }
        }
        if v1.is_empty() && v2.is_none() {
            return Err(CgroupError::NoCgroupMounts {
                mountinfo: mountinfo.to_owned(),
            });
        }
        Ok(Layout { v1, v2 })
    }

    /// V2 when a cgroup2 mount's root `cgroup.controllers` offers memory, pids and cpu;
    /// otherwise V1 if any v1 memory, pids or cpu hierarchy is mounted; otherwise V2 if there is
    /// a cgroup2 mount at all (limits will then be refused), else V1.
    pub fn version(&self) -> Version {
        if self
            .v2
            .as_ref()
            .is_some_and(|m| LIMIT_CONTROLLERS.iter().all(|c| m.offers(c)))
        {
            return Version::V2;
        }
        if LIMIT_CONTROLLERS
            .iter()
            .any(|c| self.v1_hierarchy(c).is_some())
        {
            return Version::V1;
        }
        if self.v2.is_some() {
            Version::V2
        } else {
            Version::V1
        }
    }

    /// Where `controller` is available for the interface [`Self::version`] chose: the v2 mount
    /// point if its root offers it, or the v1 hierarchy it is bound to.
    pub fn controller_mount(&self, controller: &str) -> Option<&Path> {
        match self.version() {
            Version::V2 => self
                .v2
                .as_ref()
                .filter(|m| m.offers(controller))
                .map(|m| m.mount_point.as_path()),
            Version::V1 => self
                .v1_hierarchy(controller)
                .map(|h| h.mount_point.as_path()),
        }
    }

    /// The cgroup2 mount, if any.
    pub fn unified(&self) -> Option<&UnifiedMount> {
        self.v2.as_ref()
    }

    /// The v1 hierarchies that carry controllers.
    pub fn v1_hierarchies(&self) -> &[V1Hierarchy] {
        &self.v1
    }

    /// A serialisable description: version, v1 hierarchies, v2 mount and its controllers.
    pub fn describe(&self) -> LayoutInfo {
        LayoutInfo {
            version: self.version(),
            v1: self.v1.clone(),
            v2: self.v2.clone(),
        }
    }

    /// Create the cgroup `<hierarchy>/warren/<leaf>` in every hierarchy Warren uses, then write
    /// the limits.
    ///
    /// v2: the one unified directory; memory, pids and cpu are enabled in the root's and the
    /// `warren` parent's `cgroup.subtree_control` where missing (enabling them in the root is
    /// not undone later: other cgroups may rely on it by then). v1: memory, pids, cpu (possibly
    /// co-mounted with cpuacct) and freezer, each where mounted.
    ///
    /// Fails with [`CgroupError::LeafExists`] if the leaf exists in any hierarchy and leaves that
    /// directory alone. Fails closed with [`CgroupError::ControllerUnavailable`], before creating
    /// anything, when a requested limit's controller is missing. On any failure, removes the
    /// directories it created (including a `warren` parent it created, if still empty).
    pub fn create(&self, leaf: &str, limits: &Limits) -> Result<Cgroup, CgroupError> {
        self.create_placed(leaf, &Placement::default(), limits)
    }

    /// [`Self::create`] at `placement`: under another environment's group, and/or as a group
    /// that holds children (`GROUP/self` for its processes, `GROUP/children/` for its
    /// children's groups; `self` gets the same limits as the group).
    ///
    /// A nested group is made in every hierarchy Warren uses (v1: memory, pids, cpu, cpuacct,
    /// cpuset where mounted), whatever its own limits, so that every limit of an ancestor
    /// applies to it. Fails with [`CgroupError::NotAParent`] when the parent group holds no
    /// children; the parent's `children` directory, if made here, is left for the parent.
    pub fn create_placed(
        &self,
        leaf: &str,
        placement: &Placement,
        limits: &Limits,
    ) -> Result<Cgroup, CgroupError> {
        if !valid_component(leaf) {
            return Err(CgroupError::InvalidLeaf {
                leaf: leaf.to_owned(),
            });
        }
        if let Some(parent) = placement.parent.as_deref().filter(|p| !valid_group(p)) {
            return Err(CgroupError::InvalidParent {
                parent: parent.to_owned(),
            });
        }
        match self.version() {
            Version::V2 => match &self.v2 {
                Some(mount) => v2::create(mount, leaf, placement, limits),
                None => Err(CgroupError::NoUsableHierarchy {
                    leaf: leaf.to_owned(),
                    version: Version::V2,
                }),
            },
            Version::V1 => v1::create(self, leaf, placement, limits),
        }
    }

    /// The mount points whose `warren` directory this layout uses, each with the controllers
    /// Warren uses through it (v1: memory, pids, cpu, freezer; v2: the one unified mount).
    fn used_mounts(&self) -> Vec<(&Path, Vec<&'static str>)> {
        match self.version() {
            Version::V2 => self
                .v2
                .iter()
                .map(|m| (m.mount_point.as_path(), LIMIT_CONTROLLERS.to_vec()))
                .collect(),
            Version::V1 => {
                let mut out: Vec<(&Path, Vec<&'static str>)> = Vec::new();
                for controller in v1::HIERARCHIES {
                    let Some(h) = self.v1_hierarchy(controller) else {
                        continue;
                    };
                    match out.iter_mut().find(|(m, _)| *m == h.mount_point) {
                        Some((_, cs)) => cs.push(controller),
                        None => out.push((&h.mount_point, vec![controller])),
                    }
                }
                out
            }
        }
    }

    /// The names of the leaves that exist under Warren's parent directory, in any hierarchy
    /// this layout uses, sorted and without duplicates.
    pub fn leaves(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .used_mounts()
            .into_iter()
            .flat_map(|(m, _)| fs::read_dir(m.join(PARENT)).into_iter().flatten().flatten())
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// Whether `leaf` holds no process in any hierarchy (in its whole subtree: a group that
    /// holds children keeps its processes below it) and was created more than `age` ago.
    pub fn leaf_is_stale(&self, leaf: &str, age: std::time::Duration) -> bool {
        self.used_mounts().into_iter().all(|(m, _)| {
            let dir = m.join(PARENT).join(leaf);
            let old = fs::metadata(&dir)
                .and_then(|md| md.modified())
                .map(|t| t.elapsed().map(|e| e >= age).unwrap_or(false))
                .unwrap_or(true);
            old && subtree(&dir)
                .iter()
                .all(|d| procs(d).map(|p| p.is_empty()).unwrap_or(true))
        })
    }

    /// Whether an existing group (as for [`Self::adopt`]) holds any process, in any hierarchy,
    /// anywhere below it. Looks only: nothing is taken charge of, nothing is removed.
    pub fn group_is_populated(&self, group: &str) -> bool {
        valid_group(group)
            && self.used_mounts().into_iter().any(|(m, _)| {
                subtree(&m.join(PARENT).join(group))
                    .iter()
                    .any(|d| procs(d).is_ok_and(|p| !p.is_empty()))
            })
    }

    /// Take charge of an existing group (a leaf, or a nested group such as
    /// `front/children/req-1`), typically one left by a launcher that was killed before it
    /// could clean up, so that it can be inspected or destroyed with everything below it.
    /// `None` if it does not exist.
    pub fn adopt(&self, group: &str) -> Option<Cgroup> {
        if !valid_group(group) {
            return None;
        }
        let dirs: Vec<Dir> = self
            .used_mounts()
            .into_iter()
            .filter_map(|(m, controllers)| {
                let path = m.join(PARENT).join(group);
                let parent = path.parent()?.to_owned();
                let own = path.join(SELF_DIR);
                let procs = if own.is_dir() { own } else { path.clone() };
                path.is_dir().then_some(Dir {
                    path,
                    procs,
                    parent,
                    controllers,
                    hierarchy: Vec::new(),
                })
            })
            .collect();
        (!dirs.is_empty()).then(|| Cgroup {
            version: self.version(),
            leaf: group.to_owned(),
            dirs,
            applied: AppliedLimits::default(),
            // What is below an adopted group is not known: walk it.
            nested: true,
            destroyed: false,
        })
    }

    fn v1_hierarchy(&self, controller: &str) -> Option<&V1Hierarchy> {
        self.v1
            .iter()
            .find(|h| h.controllers.iter().any(|c| c == controller))
    }
}

impl UnifiedMount {
    fn offers(&self, controller: &str) -> bool {
        self.controllers.iter().any(|c| c == controller)
    }
}

/// How a new process joins a cgroup cheaply; see [`Cgroup::attach_handles`].
#[derive(Debug)]
pub enum AttachHandles {
    /// cgroup v2: a directory descriptor for `clone3(CLONE_INTO_CGROUP)`.
    CloneInto(std::os::fd::OwnedFd),
    /// cgroup v1: `tasks` files, each to receive `0` from the process that joins.
    SelfWrite(Vec<std::os::fd::OwnedFd>),
}

impl AttachHandles {
    /// Called by the new process itself: join every v1 hierarchy by writing `0` (the calling
    /// thread, which is the whole process while it is single-threaded) to each `tasks` file.
    /// Nothing to do for v2, where `clone3` already placed it.
    pub fn join_self(&self) -> std::io::Result<()> {
        if let AttachHandles::SelfWrite(files) = self {
            for f in files {
                rustix::io::write(f, b"0")?;
            }
        }
        Ok(())
    }
}

/// The fields Warren needs from one mountinfo line.
struct MountLine<'a> {
    mount_point: PathBuf,
    fstype: &'a str,
    super_options: &'a str,
}

impl<'a> MountLine<'a> {
    /// `id parent major:minor root mount-point options [optional...] - fstype source super-options`
    fn parse(line: &'a str) -> Option<MountLine<'a>> {
        let mut fields = line.split(' ');
        let mount_point = fields.nth(4)?;
        let mut rest = fields.skip_while(|f| *f != "-");
        rest.next()?;
        let fstype = rest.next()?;
        let _source = rest.next()?;
        let super_options = rest.next().unwrap_or("");
        Some(MountLine {
            mount_point: unescape_octal(mount_point),
            fstype,
            super_options,
        })
    }
}

/// Undo mountinfo's `\ooo` escapes (space, tab, newline and backslash in paths).
fn unescape_octal(field: &str) -> PathBuf {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|b| (b'0'..=b'7').contains(b)));
        match (bytes[i], octal) {
            (b'\\', Some(d)) => {
                let value = d.iter().fold(0u32, |acc, b| acc * 8 + u32::from(b - b'0'));
                out.push(u8::try_from(value).unwrap_or(b'?'));
                i += 4;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    PathBuf::from(OsString::from_vec(out))
}

/// The kernel's v1 controllers (and v2's `io`): every name a cgroup directory may use.
const V1_CONTROLLERS: [&str; 15] = [
    "cpuset",
    "cpu",
    "cpuacct",
    "blkio",
    "io",
    "memory",
    "devices",
    "freezer",
    "net_cls",
    "perf_event",
    "net_prio",
    "hugetlb",
    "pids",
    "rdma",
    "misc",
];

/// The controller names among a v1 mount's super options (`rw,cpu,cpuacct,clone_children`).
///
/// Matched against the kernel's list of v1 controllers rather than by skipping known flags, so an
/// unfamiliar mount option is never mistaken for a controller.
fn v1_controllers(super_options: &str) -> impl Iterator<Item = &str> {
    super_options
        .split(',')
        .filter(|o| V1_CONTROLLERS.contains(o))
}

/// `path` (absolute, as the kernel reports it) placed under `fs_root`.
fn under_root(fs_root: &Path, path: &Path) -> PathBuf {
    fs_root.join(path.strip_prefix("/").unwrap_or(path))
}

/// The limits as written to the control files, for `warren inspect`.
#[derive(Serialize, Deserialize, Clone, Default, PartialEq, Eq, Debug)]
pub struct AppliedLimits {
    /// The memory limit in bytes.
    pub memory_bytes: Option<u64>,
    /// Whether swap on top of the memory limit was also capped (v2 `memory.swap.max = 0`, v1
    /// `memory.memsw.limit_in_bytes` = the memory limit); false where the kernel has no such file.
    pub swap_capped: bool,
    /// The process limit.
    pub pids_max: Option<u64>,
    /// The CFS quota in microseconds per period.
    pub cpu_quota_us: Option<u64>,
    /// The CFS period in microseconds.
    pub cpu_period_us: Option<u64>,
    /// The CPUs a cpu limit confines the environment to (its cpuset, a list such as `1` or
    /// `2-3`); `None` when it may run on every CPU its parent group allows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpus: Option<String>,
}

/// A serialisable description of a [`Cgroup`].
#[derive(Serialize, Clone, PartialEq, Eq, Debug)]
pub struct CgroupInfo {
    /// The interface the cgroup uses.
    pub version: Version,
    /// The leaf name.
    pub leaf: String,
    /// Every directory of the cgroup (one for v2, one per hierarchy for v1).
    pub paths: Vec<PathBuf>,
    /// The limits as written.
    pub limits: AppliedLimits,
}

/// One cgroup filesystem of an environment's view of its own cgroup ([`Cgroup::view`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewMount {
    /// `cgroup2` or `cgroup`.
    pub fstype: &'static str,
    /// The mount options: the v1 hierarchy's controllers (`cpu,cpuacct`); empty for v2.
    pub options: String,
    /// Where, below `/sys/fs/cgroup` (empty: `/sys/fs/cgroup` itself).
    pub dir: String,
}

/// One directory of a cgroup: the leaf in one hierarchy.
#[derive(Debug)]
struct Dir {
    /// The group: where the limits are written.
    path: PathBuf,
    /// Where the environment's processes go: `path`, or `path/self` for a group that holds
    /// children.
    procs: PathBuf,
    /// The directory holding it (`warren`, or the parent's `children`).
    parent: PathBuf,
    /// The controllers Warren uses through it.
    controllers: Vec<&'static str>,
    /// v1: every controller bound to its hierarchy (the mount options a view of it needs);
    /// empty for v2 and for an adopted cgroup.
    hierarchy: Vec<String>,
}

impl Dir {
    fn has(&self, controller: &str) -> bool {
        self.controllers.contains(&controller)
    }
}

/// One environment's cgroup, in every hierarchy Warren uses. Dropping it kills whatever is
/// inside and removes the directories (best effort); call [`Cgroup::destroy`] to see errors.
#[derive(Debug)]
pub struct Cgroup {
    version: Version,
    /// The group, relative to the `warren` directory.
    leaf: String,
    dirs: Vec<Dir>,
    applied: AppliedLimits,
    /// Whether directories may exist below the group (`self`, children): killing and removal
    /// then walk the subtree. False for a plain leaf, which never has any.
    nested: bool,
    destroyed: bool,
}

impl Cgroup {
    /// Descriptors that let a new process join this cgroup without the host-wide lock that
    /// moving another process takes (on cgroup v1 that lock waits for an RCU grace period,
    /// about 10 ms on an idle host). v1: the `tasks` file of every directory, opened for
    /// writing here (the permission check uses the opener's credentials); the child writes `0`
    /// (itself) into each. v2: the directory itself, for `clone3(CLONE_INTO_CGROUP)`.
    pub fn attach_handles(&self) -> Result<AttachHandles, CgroupError> {
        use rustix::fs::{Mode, OFlags, open};
        let open_err = |path: PathBuf| {
            move |e: rustix::io::Errno| CgroupError::Read {
                path,
                source: e.into(),
            }
        };
        match self.version {
            Version::V2 => {
                let dir = &self.dirs[0].procs;
                let fd = open(
                    dir,
                    OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(open_err(dir.clone()))?;
                Ok(AttachHandles::CloneInto(fd))
            }
            Version::V1 => self
                .dirs
                .iter()
                .map(|d| {
                    let path = d.procs.join("tasks");
                    open(&path, OFlags::WRONLY | OFlags::CLOEXEC, Mode::empty())
                        .map_err(open_err(path))
                })
                .collect::<Result<Vec<_>, _>>()
                .map(AttachHandles::SelfWrite),
        }
    }

    /// Move process `pid` into the cgroup: write it to `cgroup.procs` of every directory.
    pub fn add_process(&self, pid: i32) -> Result<(), CgroupError> {
        for dir in &self.dirs {
            let path = dir.procs.join("cgroup.procs");
            fs::write(&path, pid.to_string()).map_err(|source| CgroupError::AddProcess {
                pid,
                path,
                source,
            })?;
        }
        Ok(())
    }

    /// The interface this cgroup uses.
    pub fn version(&self) -> Version {
        self.version
    }

    /// The group, relative to the `warren` directory: the leaf name, or a nested path such as
    /// `front/children/req-1`.
    pub fn leaf(&self) -> &str {
        &self.leaf
    }

    /// Every directory of the cgroup.
    pub fn paths(&self) -> Vec<PathBuf> {
        self.dirs.iter().map(|d| d.path.clone()).collect()
    }

    /// The cgroup filesystems to mount, inside the environment's cgroup namespace, for a
    /// read-only view of this cgroup at `/sys/fs/cgroup`: v2, the unified hierarchy at
    /// `/sys/fs/cgroup` itself; v1, each hierarchy the cgroup has a directory in, at
    /// `/sys/fs/cgroup/<controllers>` (`memory`, `cpu,cpuacct`), as hosts mount them.
    pub fn view(&self) -> Vec<ViewMount> {
        match self.version {
            Version::V2 => vec![ViewMount {
                fstype: "cgroup2",
                options: String::new(),
                dir: String::new(),
            }],
            Version::V1 => self
                .dirs
                .iter()
                .filter(|d| !d.hierarchy.is_empty())
                .map(|d| ViewMount {
                    fstype: "cgroup",
                    options: d.hierarchy.join(","),
                    dir: d.hierarchy.join(","),
                })
                .collect(),
        }
    }

    /// Version, paths and the limits as written.
    pub fn info(&self) -> CgroupInfo {
        CgroupInfo {
            version: self.version,
            leaf: self.leaf.clone(),
            paths: self.paths(),
            limits: self.applied.clone(),
        }
    }

    /// How many times the kernel's OOM killer struck inside the cgroup (v2 `memory.events`
    /// `oom_kill`, v1 `memory.oom_control` `oom_kill`); `None` if unreadable.
    pub fn oom_kills(&self) -> Option<u64> {
        // Where the environment's own processes are: in a group that holds children, an OOM
        // kill of a child is the child's, not the parent's.
        let dir = self
            .dirs
            .iter()
            .find(|d| d.has("memory"))
            .map(|d| d.procs.as_path())?;
        let file = match self.version {
            Version::V2 => "memory.events",
            Version::V1 => "memory.oom_control",
        };
        keyed_value(
            &warren_sys::read_pseudo_file(dir.join(file)).ok()?,
            "oom_kill",
        )
    }

    /// How many times a fork or clone failed because the pids limit was reached (`pids.events`
    /// `max`, in v2 and in the v1 pids controller alike); `None` if unreadable.
    pub fn pids_max_hits(&self) -> Option<u64> {
        let dir = self
            .dirs
            .iter()
            .find(|d| d.has("pids"))
            .map(|d| d.procs.as_path())?;
        keyed_value(
            &warren_sys::read_pseudo_file(dir.join("pids.events")).ok()?,
            "max",
        )
    }

    /// The highest memory use recorded, in bytes (v2 `memory.peak`, v1
    /// `memory.max_usage_in_bytes`); `None` if unreadable.
    pub fn memory_peak(&self) -> Option<u64> {
        let dir = self.memory_dir()?;
        let file = match self.version {
            Version::V2 => "memory.peak",
            Version::V1 => "memory.max_usage_in_bytes",
        };
        fs::read_to_string(dir.join(file)).ok()?.trim().parse().ok()
    }

    /// Kill every process in the cgroup and wait (bounded) until none is listed.
    ///
    /// v2: `cgroup.kill` where the kernel has it, else SIGKILL to every pid in `cgroup.procs`,
    /// repeated. v1: freeze (when the freezer is mounted) so nothing can fork, SIGKILL every pid,
    /// thaw so the signals are delivered, repeated until every directory is empty.
    ///
    /// A nested group is killed with everything below it (its `self` and its children's groups).
    pub fn kill_all(&self) -> Result<(), CgroupError> {
        match self.version {
            Version::V2 => match self.dirs.first() {
                Some(dir) => v2::kill_all(&dir.path, self.nested),
                None => Ok(()),
            },
            Version::V1 => {
                let freezer = self
                    .dirs
                    .iter()
                    .find(|d| d.has("freezer") && !self.nested)
                    .map(|d| d.path.as_path());
                let dirs: Vec<&Path> = self.dirs.iter().map(|d| d.path.as_path()).collect();
                v1::kill_all(&dirs, freezer, self.nested)
            }
        }
    }

    /// Kill everything inside, remove every directory (retrying while the kernel says `EBUSY`
    /// because processes are still leaving), then remove each `warren` parent if it became empty.
    /// Returns the first error; every step is still attempted.
    pub fn destroy(mut self) -> Result<(), CgroupError> {
        self.teardown()
    }

    fn teardown(&mut self) -> Result<(), CgroupError> {
        if self.destroyed {
            return Ok(());
        }
        self.destroyed = true;
        let mut first = self.kill_all().err();
        for dir in &self.dirs {
            let removed = if self.nested {
                remove_cgroup_tree(&dir.path)
            } else {
                remove_cgroup_dir(&dir.path)
            };
            if let Err(e) = removed {
                first.get_or_insert(e);
            }
        }
        // The shared `warren` parents stay, as Docker's `docker` cgroups do: removing and
        // re-creating them on every launch costs two cgroup operations per hierarchy.
        first.map_or(Ok(()), Err)
    }

    fn memory_dir(&self) -> Option<&Path> {
        self.dirs
            .iter()
            .find(|d| d.has("memory"))
            .map(|d| d.path.as_path())
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        let _ = self.teardown();
    }
}

/// A [`Cgroup`] as data, for handing it to another process ([`Cgroup::into_parts`],
/// [`Cgroup::from_parts`]): whoever holds the rebuilt one removes the directories.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct CgroupParts {
    version: Version,
    leaf: String,
    dirs: Vec<DirParts>,
    applied: AppliedLimits,
    nested: bool,
}

/// One [`Dir`] as data.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
struct DirParts {
    path: PathBuf,
    procs: PathBuf,
    parent: PathBuf,
    controllers: Vec<String>,
    hierarchy: Vec<String>,
}

impl Cgroup {
    /// This cgroup as data, for another process to rebuild with [`Cgroup::from_parts`]; this
    /// process then no longer removes it (nothing is killed or removed here).
    pub fn into_parts(mut self) -> CgroupParts {
        let parts = CgroupParts {
            version: self.version,
            leaf: std::mem::take(&mut self.leaf),
            dirs: std::mem::take(&mut self.dirs)
                .into_iter()
                .map(|d| DirParts {
                    path: d.path,
                    procs: d.procs,
                    parent: d.parent,
                    controllers: d.controllers.iter().map(|c| (*c).to_owned()).collect(),
                    hierarchy: d.hierarchy,
                })
                .collect(),
            applied: self.applied.clone(),
            nested: self.nested,
        };
        // Handed over: the drop has nothing left to remove.
        self.destroyed = true;
        parts
    }

    /// The cgroup [`Cgroup::into_parts`] described, owned by the caller from now on (dropping
    /// or destroying it kills what is inside and removes it). Fails, naming the directory,
    /// when one of its directories does not exist, and for a name that is no controller.
    pub fn from_parts(parts: CgroupParts) -> Result<Cgroup, CgroupError> {
        let mut dirs = Vec::with_capacity(parts.dirs.len());
        for d in parts.dirs {
            if !d.path.is_dir() {
                return Err(CgroupError::Read {
                    path: d.path,
                    source: io::Error::from(io::ErrorKind::NotFound),
                });
            }
            let mut controllers = Vec::with_capacity(d.controllers.len());
            for c in &d.controllers {
                match V1_CONTROLLERS.iter().find(|k| **k == c.as_str()) {
                    Some(k) => controllers.push(*k),
                    None => {
                        return Err(CgroupError::Read {
                            path: d.path,
                            source: io::Error::new(
                                io::ErrorKind::InvalidData,
                                format!("a handed-over cgroup names controller {c:?}"),
                            ),
                        });
                    }
                }
            }
            dirs.push(Dir {
                path: d.path,
                procs: d.procs,
                parent: d.parent,
                controllers,
                hierarchy: d.hierarchy,
            });
        }
        Ok(Cgroup {
            version: parts.version,
            leaf: parts.leaf,
            dirs,
            applied: parts.applied,
            nested: parts.nested,
            destroyed: false,
        })
    }
}

/// What one interface does to the directories [`Created::make_group`] makes.
trait Prep {
    /// `dir` was just made.
    fn made(&self, dir: &Path) -> Result<(), CgroupError>;
    /// `dir` is about to get child directories.
    fn will_have_children(&self, dir: &Path) -> Result<(), CgroupError>;
}

/// Directories made so far by one [`Layout::create`]; removed again on drop unless disarmed.
struct Created {
    leaves: Vec<PathBuf>,
    parents: Vec<PathBuf>,
    armed: bool,
}

impl Created {
    fn new() -> Created {
        Created {
            leaves: Vec::new(),
            parents: Vec::new(),
            armed: true,
        }
    }

    /// Make `<hierarchy_root>/warren/<leaf>`; a missing `warren` parent is made first. Retries
    /// when a concurrent destroy removes the parent between the two `mkdir`s.
    fn make_leaf(&mut self, hierarchy_root: &Path, leaf: &str) -> Result<Dir, CgroupError> {
        let parent = hierarchy_root.join(PARENT);
        let path = parent.join(leaf);
        let mut attempts = 0;
        loop {
            attempts += 1;
            match fs::create_dir(&parent) {
                Ok(()) => self.parents.push(parent.clone()),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(source) => {
                    return Err(CgroupError::CreateDir {
                        path: parent,
                        source,
                    });
                }
            }
            match fs::create_dir(&path) {
                Ok(()) => {
                    self.leaves.push(path.clone());
                    return Ok(Dir {
                        procs: path.clone(),
                        path,
                        parent,
                        controllers: Vec::new(),
                        hierarchy: Vec::new(),
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    return Err(CgroupError::LeafExists {
                        leaf: leaf.to_owned(),
                        path,
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound && attempts < 3 => {}
                Err(source) => return Err(CgroupError::CreateDir { path, source }),
            }
        }
    }

    /// Make the group of `leaf` at `placement` in the hierarchy mounted at `hierarchy_root`,
    /// with its `self` directory when it holds children; `prep` is told of every directory
    /// made (v1 cpuset: inherit cpus and memory nodes) and of every directory that will have
    /// children before they are made (v2: enable the controllers in its subtree).
    fn make_group(
        &mut self,
        hierarchy_root: &Path,
        leaf: &str,
        placement: &Placement,
        prep: &dyn Prep,
    ) -> Result<Dir, CgroupError> {
        let mut dir = match &placement.parent {
            None => {
                let dir = self.make_leaf(hierarchy_root, leaf)?;
                prep.made(&dir.parent)?;
                prep.will_have_children(&dir.parent)?;
                dir
            }
            Some(parent) => {
                let parent_dir = hierarchy_root.join(PARENT).join(parent);
                let own = parent_dir.join(SELF_DIR);
                if !own.is_dir() {
                    return Err(CgroupError::NotAParent {
                        parent: parent.clone(),
                        path: own,
                    });
                }
                prep.will_have_children(&parent_dir)?;
                let children = parent_dir.join(CHILDREN_DIR);
                match fs::create_dir(&children) {
                    Ok(()) => prep.made(&children)?,
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {
                        return Err(CgroupError::NotAParent {
                            parent: parent.clone(),
                            path: own,
                        });
                    }
                    Err(source) => {
                        return Err(CgroupError::CreateDir {
                            path: children,
                            source,
                        });
                    }
                }
                prep.will_have_children(&children)?;
                let path = children.join(leaf);
                match fs::create_dir(&path) {
                    Ok(()) => self.leaves.push(path.clone()),
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                        return Err(CgroupError::LeafExists {
                            leaf: leaf.to_owned(),
                            path,
                        });
                    }
                    Err(source) => return Err(CgroupError::CreateDir { path, source }),
                }
                Dir {
                    procs: path.clone(),
                    path,
                    parent: children,
                    controllers: Vec::new(),
                    hierarchy: Vec::new(),
                }
            }
        };
        prep.made(&dir.path)?;
        if placement.holds_children {
            prep.will_have_children(&dir.path)?;
            let own = dir.path.join(SELF_DIR);
            fs::create_dir(&own).map_err(|source| CgroupError::CreateDir {
                path: own.clone(),
                source,
            })?;
            self.leaves.push(own.clone());
            prep.made(&own)?;
            dir.procs = own;
        }
        Ok(dir)
    }

    /// Keep everything: the cgroup was created.
    fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for Created {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        for leaf in self.leaves.iter().rev() {
            let _ = fs::remove_dir(leaf);
        }
        for parent in self.parents.iter().rev() {
            let _ = fs::remove_dir(parent);
        }
    }
}

/// Write `value` to the control file `path` in one `write`.
fn write_file(path: &Path, value: &str) -> Result<(), CgroupError> {
    fs::write(path, value).map_err(|source| CgroupError::Write {
        path: path.to_owned(),
        value: value.to_owned(),
        source,
    })
}

/// Read a control file; a missing file reads as empty (a fixture, or a kernel without it).
fn read_optional(path: &Path) -> Result<String, CgroupError> {
    match warren_sys::read_pseudo_file(path) {
        Ok(text) => Ok(text),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(String::new()),
        Err(source) => Err(CgroupError::Read {
            path: path.to_owned(),
            source,
        }),
    }
}

/// The pids listed in `<dir>/cgroup.procs` (empty when the directory is already gone).
fn procs(dir: &Path) -> Result<Vec<i32>, CgroupError> {
    let text = read_optional(&dir.join("cgroup.procs"))?;
    Ok(text
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect())
}

/// SIGKILL one process listed in `dir`; a process that is already gone is not an error.
fn sigkill(pid: i32, dir: &Path) -> Result<(), CgroupError> {
    let Some(target) = Pid::from_raw(pid) else {
        return Ok(());
    };
    match rustix::process::kill_process(target, Signal::KILL) {
        Ok(()) | Err(Errno::SRCH) => Ok(()),
        Err(e) => Err(CgroupError::Kill {
            pid,
            path: dir.to_owned(),
            source: e.into(),
        }),
    }
}

/// Poll `is_done` every [`POLL`] until it says yes or `timeout` passes; true if it said yes.
fn wait_until(
    timeout: Duration,
    mut is_done: impl FnMut() -> Result<bool, CgroupError>,
) -> Result<bool, CgroupError> {
    let deadline = Instant::now() + timeout;
    loop {
        if is_done()? {
            return Ok(true);
        }
        if Instant::now() >= deadline {
            return Ok(false);
        }
        thread::sleep(POLL);
    }
}

/// `dir` and every directory below it, parents before their children.
fn subtree(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![dir.to_owned()];
    let mut i = 0;
    while i < out.len() {
        if let Ok(entries) = fs::read_dir(&out[i]) {
            for e in entries.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    out.push(e.path());
                }
            }
        }
        i += 1;
    }
    out
}

/// Remove `dir` and every cgroup below it, deepest first, killing what is still inside; retried
/// (bounded) while a directory is busy or a new one appears (a child launching meanwhile).
fn remove_cgroup_tree(dir: &Path) -> Result<(), CgroupError> {
    let deadline = Instant::now() + RMDIR_TIMEOUT;
    loop {
        let mut last = None;
        for d in subtree(dir).iter().rev() {
            match fs::remove_dir(d) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) if errno(&e) == Some(Errno::BUSY) => {
                    for pid in procs(d).unwrap_or_default() {
                        sigkill(pid, d)?;
                    }
                    last = Some((d.clone(), e));
                }
                Err(source) => {
                    return Err(CgroupError::RemoveDir {
                        path: d.clone(),
                        source,
                    });
                }
            }
        }
        match last {
            None => return Ok(()),
            Some((path, source)) if Instant::now() >= deadline => {
                return Err(CgroupError::RemoveDir { path, source });
            }
            Some(_) => thread::sleep(POLL),
        }
    }
}

/// `rmdir` a cgroup directory, retrying while `EBUSY` (processes still leaving). Already gone
/// counts as removed.
fn remove_cgroup_dir(path: &Path) -> Result<(), CgroupError> {
    let deadline = Instant::now() + RMDIR_TIMEOUT;
    loop {
        match fs::remove_dir(path) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) if errno(&e) == Some(Errno::BUSY) && Instant::now() < deadline => {
                thread::sleep(POLL);
            }
            Err(source) => {
                return Err(CgroupError::RemoveDir {
                    path: path.to_owned(),
                    source,
                });
            }
        }
    }
}

fn errno(e: &io::Error) -> Option<Errno> {
    e.raw_os_error().map(Errno::from_raw_os_error)
}

/// The value of `key` in a flat-keyed file (`oom_kill 3` lines).
fn keyed_value(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (k, v) = line.split_once(' ')?;
        if k == key {
            v.trim().parse().ok()
        } else {
            None
        }
    })
}

/// The controllers a requested limit needs, in [`LIMIT_CONTROLLERS`] order.
fn requested(limits: &Limits) -> impl Iterator<Item = &'static str> {
    let wanted = [
        limits.memory.is_some(),
        limits.pids.is_some(),
        limits.cpu.is_some(),
    ];
    LIMIT_CONTROLLERS
        .into_iter()
        .zip(wanted)
        .filter(|(_, w)| *w)
        .map(|(c, _)| c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;
    use std::os::unix::process::ExitStatusExt as _;
    use std::process::{Child, Command, Stdio};
    use std::sync::atomic::{AtomicU32, Ordering};

    /// The cgroup lines of this machine's /proc/self/mountinfo (Debian 12, hybrid layout).
    const HYBRID: &str = "\
22 26 0:20 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
38 31 0:35 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    /// A systemd host with only the unified hierarchy.
    const PURE_V2: &str = "\
24 30 0:22 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
28 24 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 \
rw,nsdelegate,memory_recursiveprot
";

    const V2_CONTROLLERS: &str = "cpuset cpu io memory hugetlb pids rdma misc\n";

    const MIB_64: u64 = 64 << 20;

    fn limits() -> Limits {
        Limits {
            memory: Some(MIB_64),
            pids: Some(32),
            cpu: Some("0.5".parse().unwrap()),
        }
    }

    /// Write `mountinfo` into `root`, create every cgroup mount point it names under `root`, and
    /// give each cgroup2 root the controllers `v2_controllers`.
    fn fixture(root: &Path, mountinfo: &str, v2_controllers: &str) -> PathBuf {
        for line in mountinfo.lines() {
            let mount = MountLine::parse(line).unwrap();
            let dir = under_root(root, &mount.mount_point);
            fs::create_dir_all(&dir).unwrap();
            if mount.fstype == "cgroup2" {
                fs::write(dir.join("cgroup.controllers"), v2_controllers).unwrap();
            }
        }
        let file = root.join("mountinfo");
        fs::write(&file, mountinfo).unwrap();
        file
    }

    fn layout(root: &Path, mountinfo: &str, v2_controllers: &str) -> Layout {
        Layout::discover(&fixture(root, mountinfo, v2_controllers), root).unwrap()
    }

    fn read(path: impl AsRef<Path>) -> String {
        fs::read_to_string(path.as_ref())
            .unwrap_or_else(|e| panic!("read {}: {e}", path.as_ref().display()))
    }

    fn cg(root: &Path, rel: &str) -> PathBuf {
        root.join("sys/fs/cgroup").join(rel)
    }

    #[test]
    fn discovers_this_machines_hybrid_layout_as_v1() {
        let tmp = tempfile::tempdir().unwrap();
        let layout = layout(tmp.path(), HYBRID, "hugetlb\n");
        assert_eq!(layout.version(), Version::V1);
        let names: Vec<&str> = layout
            .v1
            .iter()
            .flat_map(|h| h.controllers.iter().map(String::as_str))
            .collect();
        assert_eq!(
            names,
            [
                "cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids"
            ]
        );
        assert_eq!(
            layout.controller_mount("memory"),
            Some(cg(tmp.path(), "memory").as_path())
        );
        assert_eq!(
            layout.controller_mount("cpu"),
            Some(cg(tmp.path(), "cpu").as_path())
        );
        let v2 = layout.unified().unwrap();
        assert_eq!(v2.mount_point, cg(tmp.path(), "unified"));
        assert_eq!(v2.controllers, ["hugetlb"]);

        let info = serde_json::to_value(layout.describe()).unwrap();
        assert_eq!(info["version"], "v1");
        assert_eq!(info["v2"]["controllers"], serde_json::json!(["hugetlb"]));
        assert_eq!(info["v1"].as_array().unwrap().len(), 8);
    }

    #[test]
    fn discovers_pure_v2() {
        let tmp = tempfile::tempdir().unwrap();
        let layout = layout(tmp.path(), PURE_V2, V2_CONTROLLERS);
        assert_eq!(layout.version(), Version::V2);
        assert!(layout.v1_hierarchies().is_empty());
        for c in ["memory", "pids", "cpu"] {
            assert_eq!(
                layout.controller_mount(c),
                Some(cg(tmp.path(), "").as_path()),
                "{c}"
            );
        }
        assert_eq!(layout.controller_mount("freezer"), None);
        assert_eq!(
            serde_json::to_value(layout.describe()).unwrap()["version"],
            "v2"
        );
    }

    #[test]
    fn prefers_v2_when_the_unified_mount_offers_every_controller() {
        let tmp = tempfile::tempdir().unwrap();
        let layout = layout(tmp.path(), HYBRID, V2_CONTROLLERS);
        assert_eq!(layout.version(), Version::V2);
        assert_eq!(
            layout.controller_mount("memory"),
            Some(cg(tmp.path(), "unified").as_path())
        );
    }

    #[test]
    fn no_cgroup_mounts_is_a_clear_error() {
        let tmp = tempfile::tempdir().unwrap();
        let only_named = "40 31 0:37 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,name=systemd\n";
        for mountinfo in [&HYBRID[..HYBRID.find("31 23").unwrap()], only_named] {
            let file = fixture(tmp.path(), mountinfo, "");
            let err = Layout::discover(&file, tmp.path()).unwrap_err();
            assert!(
                matches!(&err, CgroupError::NoCgroupMounts { mountinfo } if *mountinfo == file)
            );
            assert!(err.to_string().starts_with("no cgroup hierarchy"), "{err}");
        }
        let missing = tmp.path().join("absent");
        let err = Layout::discover(&missing, tmp.path()).unwrap_err();
        assert!(matches!(err, CgroupError::ReadMountinfo { path, .. } if path == missing));
    }

    #[test]
    fn parses_comounted_escaped_and_duplicate_mounts() {
        let tmp = tempfile::tempdir().unwrap();
        let mountinfo = "\
1 0 0:1 / /cg/cpu\\040and\\040acct rw shared:9 master:2 - cgroup cgroup rw,nosuid,cpu,cpuacct
2 0 0:2 / /cg/mem rw - cgroup none rw,memory,clone_children,release_agent=/bin/x
3 0 0:3 / /cg/mem2 rw - cgroup none rw,memory
4 0 0:4 / /cg/sysd rw - cgroup none rw,xattr,name=systemd
";
        let layout = layout(tmp.path(), mountinfo, "");
        assert_eq!(
            layout.v1,
            [
                V1Hierarchy {
                    controllers: vec!["cpu".into(), "cpuacct".into()],
                    mount_point: tmp.path().join("cg/cpu and acct"),
                },
                V1Hierarchy {
                    controllers: vec!["memory".into()],
                    mount_point: tmp.path().join("cg/mem"),
                },
            ]
        );
        assert!(layout.unified().is_none());
        assert_eq!(
            unescape_octal("a\\134b\\011c\\9"),
            PathBuf::from("a\\b\tc\\9")
        );
    }

    #[test]
    fn creates_a_v2_cgroup_with_limits() {
        let tmp = tempfile::tempdir().unwrap();
        let layout = layout(tmp.path(), PURE_V2, V2_CONTROLLERS);
        fs::write(cg(tmp.path(), "cgroup.subtree_control"), "cpu memory\n").unwrap();
        let cgroup = layout.create("web", &limits()).unwrap();

        let leaf = cg(tmp.path(), "warren/web");
        assert_eq!(cgroup.paths(), std::slice::from_ref(&leaf));
        assert_eq!(cgroup.version(), Version::V2);
        assert_eq!(read(leaf.join("memory.max")), "67108864");
        assert_eq!(read(leaf.join("pids.max")), "32");
        assert_eq!(read(leaf.join("cpu.max")), "50000 100000");
        assert!(
            !leaf.join("memory.swap.max").exists(),
            "written only when the kernel has it"
        );
        // The root lacked pids only; the new warren parent lacked all three; with a cpu limit,
        // the cpuset too (which CPUs it runs on).
        assert_eq!(
            read(cg(tmp.path(), "cgroup.subtree_control")),
            "+pids +cpuset"
        );
        assert_eq!(
            read(cg(tmp.path(), "warren/cgroup.subtree_control")),
            "+memory +pids +cpu +cpuset"
        );

        let info = serde_json::to_value(cgroup.info()).unwrap();
        assert_eq!(info["version"], "v2");
        assert_eq!(info["leaf"], "web");
        assert_eq!(info["limits"]["memory_bytes"], MIB_64);
        assert_eq!(info["limits"]["pids_max"], 32);
        assert_eq!(info["limits"]["cpu_quota_us"], 50_000);
        assert_eq!(info["limits"]["cpu_period_us"], 100_000);
        assert_eq!(info["limits"]["swap_capped"], false);
    }

    #[test]
    fn v2_limits_cap_swap_when_the_file_exists() {
        let tmp = tempfile::tempdir().unwrap();
        fs::write(tmp.path().join("memory.swap.max"), "max\n").unwrap();
        let applied = v2::write_limits(tmp.path(), &limits()).unwrap();
        assert_eq!(read(tmp.path().join("memory.swap.max")), "0");
        assert!(applied.swap_capped);

        let no_memory = Limits {
            memory: None,
            ..limits()
        };
        fs::write(tmp.path().join("memory.swap.max"), "max\n").unwrap();
        let applied = v2::write_limits(tmp.path(), &no_memory).unwrap();
        assert_eq!(read(tmp.path().join("memory.swap.max")), "max\n");
        assert_eq!((applied.memory_bytes, applied.swap_capped), (None, false));
    }

    #[test]
    fn creates_v1_cgroups_only_in_the_hierarchies_of_requested_limits() {
        let tmp = tempfile::tempdir().unwrap();
        let layout = layout(tmp.path(), HYBRID, "hugetlb\n");
        let only_pids = Limits {
            memory: None,
            cpu: None,
            ..limits()
        };
        let cgroup = layout.create("db", &only_pids).unwrap();
        assert_eq!(cgroup.paths(), [cg(tmp.path(), "pids/warren/db")]);
        assert!(!cg(tmp.path(), "memory/warren/db").exists());
        assert!(!cg(tmp.path(), "freezer/warren/db").exists());
        let cgroup = layout.create("web", &limits()).unwrap();

        // With a memory or cpu limit, also cpuacct and cpuset (no limits): the JVM needs all
        // four in the environment's view of its cgroup.
        let dirs: Vec<PathBuf> = ["memory", "pids", "cpu", "cpuacct", "cpuset"]
            .iter()
            .map(|h| cg(tmp.path(), &format!("{h}/warren/web")))
            .collect();
        assert_eq!(cgroup.paths(), dirs);
        let view: Vec<String> = cgroup.view().into_iter().map(|m| m.dir).collect();
        assert_eq!(view, ["memory", "pids", "cpu", "cpuacct", "cpuset"]);
        assert_eq!(cgroup.version(), Version::V1);
        assert_eq!(read(dirs[0].join("memory.limit_in_bytes")), "67108864");
        assert_eq!(read(dirs[1].join("pids.max")), "32");
        assert_eq!(read(dirs[2].join("cpu.cfs_quota_us")), "50000");
        assert_eq!(read(dirs[2].join("cpu.cfs_period_us")), "100000");
        assert!(!cg(tmp.path(), "blkio/warren").exists());
        assert!(!cg(tmp.path(), "unified/warren").exists());
        let applied = cgroup.info().limits;
        assert_eq!(applied.memory_bytes, Some(MIB_64));
        assert_eq!(
            (applied.cpu_quota_us, applied.cpu_period_us),
            (Some(50_000), Some(100_000))
        );
    }

    #[test]
    fn a_cgroup_handed_over_as_parts_is_the_same_cgroup_and_stays_until_its_new_owner_ends() {
        let tmp = tempfile::tempdir().unwrap();
        let layout = layout(tmp.path(), HYBRID, "hugetlb\n");
        let cgroup = layout.create("web", &limits()).unwrap();
        let (paths, info, view) = (cgroup.paths(), cgroup.info(), cgroup.view());
        let parts = cgroup.into_parts();
        // The old owner's part is over, and removed nothing.
        assert!(paths.iter().all(|p| p.is_dir()), "{paths:?}");
        let text = serde_json::to_string(&parts).unwrap();
        let back: CgroupParts = serde_json::from_str(&text).unwrap();
        assert_eq!(back, parts);
        let rebuilt = Cgroup::from_parts(back).unwrap();
        assert_eq!(rebuilt.paths(), paths);
        assert_eq!(rebuilt.info(), info);
        assert_eq!(rebuilt.view(), view);
        fs::write(paths[0].join("memory.oom_control"), "oom_kill 2\n").unwrap();
        assert_eq!(rebuilt.oom_kills(), Some(2));

        // Parts whose directory went away, or that name no controller, are refused by name.
        let gone = rebuilt.into_parts();
        fs::remove_dir_all(&paths[1]).unwrap();
        let err = Cgroup::from_parts(gone.clone()).unwrap_err().to_string();
        assert!(err.contains(&paths[1].display().to_string()), "{err}");
        let mut odd = gone;
        odd.dirs.remove(1);
        odd.dirs[0].controllers = vec!["memory".into(), "nonsense".into()];
        let err = Cgroup::from_parts(odd).unwrap_err();
        assert!(format!("{err:?}").contains("nonsense"), "{err:?}");
    }

    #[test]
    fn v1_memsw_gets_the_memory_limit_when_present() {
        let tmp = tempfile::tempdir().unwrap();
        fs::write(
            tmp.path().join("memory.memsw.limit_in_bytes"),
            "9223372036854771712\n",
        )
        .unwrap();
        let mut applied = AppliedLimits::default();
        v1::write_limits(tmp.path(), &["memory"], &limits(), &mut applied).unwrap();
        assert_eq!(
            read(tmp.path().join("memory.memsw.limit_in_bytes")),
            "67108864"
        );
        assert_eq!(read(tmp.path().join("memory.limit_in_bytes")), "67108864");
        assert!(applied.swap_capped);
        // Only the controllers bound to this directory are written.
        assert!(!tmp.path().join("pids.max").exists());
        assert_eq!(applied.pids_max, None);
    }

    #[test]
    fn comounted_cpu_cpuacct_shares_one_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let mountinfo = "\
1 0 0:1 / /cg/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct
2 0 0:2 / /cg/memory rw - cgroup cgroup rw,memory
3 0 0:3 / /cg/pids rw - cgroup cgroup rw,pids
";
        let cgroup = layout(tmp.path(), mountinfo, "")
            .create("a", &limits())
            .unwrap();
        let cpu = tmp.path().join("cg/cpu,cpuacct/warren/a");
        assert_eq!(cgroup.paths().len(), 3);
        assert_eq!(cgroup.paths()[2], cpu);
        assert_eq!(read(cpu.join("cpu.cfs_quota_us")), "50000");
    }

    #[test]
    fn an_existing_leaf_is_refused_and_left_intact() {
        // v1: the leaf exists only in the third hierarchy; the two made before it are removed.
        let tmp = tempfile::tempdir().unwrap();
        let layout = layout(tmp.path(), HYBRID, "hugetlb\n");
        let taken = cg(tmp.path(), "cpu/warren/web");
        fs::create_dir_all(&taken).unwrap();
        fs::write(taken.join("marker"), "other environment\n").unwrap();
        let err = layout.create("web", &limits()).unwrap_err();
        assert!(
            matches!(&err, CgroupError::LeafExists { leaf, path } if leaf == "web" && *path == taken),
            "{err:?}"
        );
        assert!(err.to_string().contains("\"web\""), "{err}");
        assert_eq!(read(taken.join("marker")), "other environment\n");
        assert!(!cg(tmp.path(), "memory/warren").exists());
        assert!(!cg(tmp.path(), "pids/warren").exists());
        assert!(!cg(tmp.path(), "freezer/warren").exists());

        // v2: the one directory.
        let tmp = tempfile::tempdir().unwrap();
        let layout = super::tests::layout(tmp.path(), PURE_V2, V2_CONTROLLERS);
        let taken = cg(tmp.path(), "warren/web");
        fs::create_dir_all(&taken).unwrap();
        fs::write(taken.join("memory.max"), "1000\n").unwrap();
        let err = layout.create("web", &limits()).unwrap_err();
        assert!(matches!(err, CgroupError::LeafExists { .. }), "{err:?}");
        assert_eq!(read(taken.join("memory.max")), "1000\n");
    }

    #[test]
    fn a_missing_controller_is_refused_with_nothing_left_behind() {
        // v1 without a pids hierarchy.
        let tmp = tempfile::tempdir().unwrap();
        let no_pids: String = HYBRID
            .lines()
            .filter(|l| !l.contains("rw,pids"))
            .map(|l| format!("{l}\n"))
            .collect();
        let layout = layout(tmp.path(), &no_pids, "hugetlb\n");
        let err = layout.create("web", &limits()).unwrap_err();
        assert!(
            matches!(
                err,
                CgroupError::ControllerUnavailable {
                    controller: "pids",
                    version: Version::V1,
                    ..
                }
            ),
            "{err:?}"
        );
        for h in ["memory", "cpu", "freezer", "pids"] {
            assert!(!cg(tmp.path(), &format!("{h}/warren")).exists(), "{h}");
        }
        // Without a pids limit the same host is fine.
        let cgroup = layout
            .create(
                "web",
                &Limits {
                    pids: None,
                    ..limits()
                },
            )
            .unwrap();
        // memory and cpu, and the view's cpuacct and cpuset.
        assert_eq!(cgroup.paths().len(), 4);

        // v2 whose root offers no cpu.
        let tmp = tempfile::tempdir().unwrap();
        let layout = super::tests::layout(tmp.path(), PURE_V2, "memory pids io\n");
        assert_eq!(layout.version(), Version::V2);
        let err = layout.create("web", &limits()).unwrap_err();
        assert!(
            matches!(
                err,
                CgroupError::ControllerUnavailable {
                    controller: "cpu",
                    version: Version::V2,
                    ..
                }
            ),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            "cannot limit cpu for cgroup \"web\": no v2 cpu controller"
        );
        assert!(!cg(tmp.path(), "warren").exists());
        assert!(!cg(tmp.path(), "cgroup.subtree_control").exists());
    }

    fn holder() -> Placement {
        Placement {
            parent: None,
            holds_children: true,
        }
    }

    fn under(parent: &str) -> Placement {
        Placement {
            parent: Some(parent.to_owned()),
            holds_children: false,
        }
    }

    #[test]
    fn v1_nests_a_child_under_its_parents_group_in_every_hierarchy() {
        let tmp = tempfile::tempdir().unwrap();
        let layout = layout(tmp.path(), HYBRID, "hugetlb\n");
        fs::write(cg(tmp.path(), "cpuset").join("cpuset.cpus"), "0-1\n").unwrap();
        fs::write(cg(tmp.path(), "cpuset").join("cpuset.mems"), "0\n").unwrap();
        // The parent: only a memory limit, but a group in every hierarchy, processes in `self`
        // (which repeats the limit for the parent's own view).
        let only_memory = Limits {
            memory: Some(MIB_64),
            ..Limits::default()
        };
        let parent = layout
            .create_placed("front", &holder(), &only_memory)
            .unwrap();
        assert_eq!(parent.leaf(), "front");
        let hierarchies = ["memory", "pids", "cpu", "cpuacct", "cpuset"];
        for h in hierarchies {
            assert!(
                cg(tmp.path(), &format!("{h}/warren/front/self")).is_dir(),
                "{h}"
            );
        }
        let own = cg(tmp.path(), "memory/warren/front/self");
        assert_eq!(read(own.join("memory.limit_in_bytes")), "67108864");
        assert_eq!(
            read(cg(tmp.path(), "memory/warren/front/memory.limit_in_bytes")),
            "67108864"
        );
        assert_eq!(
            read(cg(tmp.path(), "cpuset/warren/front/self/cpuset.cpus")),
            "0-1"
        );

        // A child asking for 512M and nothing else: in every hierarchy under the parent, so
        // the parent's memory limit (and any pids or cpu limit) bounds it.
        let big = Limits {
            memory: Some(512 << 20),
            ..Limits::default()
        };
        let child = layout
            .create_placed("req-1", &under("front"), &big)
            .unwrap();
        assert_eq!(child.leaf(), "front/children/req-1");
        let dirs: Vec<PathBuf> = hierarchies
            .iter()
            .map(|h| cg(tmp.path(), &format!("{h}/warren/front/children/req-1")))
            .collect();
        assert_eq!(child.paths(), dirs);
        assert_eq!(read(dirs[0].join("memory.limit_in_bytes")), "536870912");
        assert!(
            !dirs[0].join("self").exists(),
            "a child that spawns nothing has no self"
        );
        assert_eq!(
            read(cg(
                tmp.path(),
                "cpuset/warren/front/children/req-1/cpuset.mems"
            )),
            "0"
        );
        // A child without limits of its own: still under every limit hierarchy, but not in the
        // view-only ones (each v1 mkdir and rmdir takes the host-wide cgroup mutex).
        let plain = layout
            .create_placed("req-0", &under("front"), &Limits::default())
            .unwrap();
        let plain_dirs: Vec<PathBuf> = ["memory", "pids", "cpu"]
            .iter()
            .map(|h| cg(tmp.path(), &format!("{h}/warren/front/children/req-0")))
            .collect();
        assert_eq!(plain.paths(), plain_dirs);
        std::mem::forget(plain);
        // The parent's processes join `self`, never the group.
        parent.add_process(4242).unwrap();
        assert_eq!(read(own.join("cgroup.procs")), "4242");
        assert!(!cg(tmp.path(), "memory/warren/front/cgroup.procs").exists());

        // A grandchild needs a child that holds children.
        let err = layout
            .create_placed("sub", &under("front/children/req-1"), &big)
            .unwrap_err();
        assert!(matches!(err, CgroupError::NotAParent { .. }), "{err:?}");
        assert!(err.to_string().contains("front/children/req-1"), "{err}");
        assert!(!dirs[0].join("children").exists());
        // As does a child of an environment that does not exist; nothing is made.
        let err = layout.create_placed("x", &under("gone"), &big).unwrap_err();
        assert!(matches!(err, CgroupError::NotAParent { .. }), "{err:?}");
        assert!(!cg(tmp.path(), "memory/warren/gone").exists());
        // Parents are plain names.
        for bad in ["", "../etc", "a//b", "a/./b"] {
            let err = layout.create_placed("x", &under(bad), &big).unwrap_err();
            assert!(
                matches!(err, CgroupError::InvalidParent { .. }),
                "{bad:?}: {err:?}"
            );
        }
        // The same child name twice is refused, the first left intact.
        let err = layout
            .create_placed("req-1", &under("front"), &big)
            .unwrap_err();
        assert!(matches!(err, CgroupError::LeafExists { .. }), "{err:?}");
        assert_eq!(read(dirs[0].join("memory.limit_in_bytes")), "536870912");
        std::mem::forget(child);
        std::mem::forget(parent);
    }

    fn with_cpus(cpus: &str) -> Limits {
        Limits {
            cpu: Some(cpus.parse().unwrap()),
            ..Limits::default()
        }
    }

    /// The CPUs of a cpuset list, e.g. `0-1,3` -> [0, 1, 3].
    fn cpu_list(text: &str) -> Vec<u32> {
        cpuset::parse_list(text).unwrap_or_else(|| panic!("not a cpu list: {text:?}"))
    }

    #[test]
    fn v1_confines_a_cpu_limit_to_as_many_cpus_and_a_spawners_tree_to_its_own() {
        let tmp = tempfile::tempdir().unwrap();
        let layout = layout(tmp.path(), HYBRID, "hugetlb\n");
        fs::write(cg(tmp.path(), "cpuset").join("cpuset.cpus"), "0-3\n").unwrap();
        fs::write(cg(tmp.path(), "cpuset").join("cpuset.mems"), "0\n").unwrap();

        // Half a CPU: one of the four.
        let half = layout.create("web", &with_cpus("0.5")).unwrap();
        let web = read(cg(tmp.path(), "cpuset/warren/web/cpuset.cpus"));
        assert_eq!(cpu_list(&web).len(), 1, "{web}");
        assert!(cpu_list(&web)[0] < 4, "{web}");
        assert_eq!(half.info().limits.cpus.as_deref(), Some(web.as_str()));
        let info = serde_json::to_value(half.info()).unwrap();
        assert_eq!(info["limits"]["cpus"], web.as_str());
        std::mem::forget(half);

        // A limit of every CPU, or none: the parent's CPUs, and no `cpus` in the report.
        for (name, limits) in [
            ("all", with_cpus("4")),
            (
                "mem",
                Limits {
                    memory: Some(MIB_64),
                    ..Limits::default()
                },
            ),
        ] {
            let cgroup = layout.create(name, &limits).unwrap();
            assert_eq!(
                read(cg(tmp.path(), &format!("cpuset/warren/{name}/cpuset.cpus"))),
                "0-3"
            );
            assert_eq!(cgroup.info().limits.cpus, None);
            let info = serde_json::to_value(cgroup.info()).unwrap();
            assert!(info["limits"].get("cpus").is_none(), "{info}");
            std::mem::forget(cgroup);
        }

        // A spawner allowed 2.5 CPUs: three consecutive ones (wrapping), in its group and in
        // `self`, which the environment sees.
        let front = layout
            .create_placed("front", &holder(), &with_cpus("2.5"))
            .unwrap();
        let mine = read(cg(tmp.path(), "cpuset/warren/front/cpuset.cpus"));
        assert_eq!(cpu_list(&mine).len(), 3, "{mine}");
        assert_eq!(
            read(cg(tmp.path(), "cpuset/warren/front/self/cpuset.cpus")),
            mine
        );
        // Its children stay on its CPUs: one without limits of its own joins the cpuset
        // hierarchy (only because the spawner is confined) and has all three; one allowed a CPU
        // gets one of them.
        let plain = layout
            .create_placed("req-0", &under("front"), &Limits::default())
            .unwrap();
        let plain_dir = cg(tmp.path(), "cpuset/warren/front/children/req-0");
        assert!(plain.paths().contains(&plain_dir), "{:?}", plain.paths());
        assert_eq!(read(plain_dir.join("cpuset.cpus")), mine);
        assert_eq!(plain.info().limits.cpus, None);
        let one = layout
            .create_placed("req-1", &under("front"), &with_cpus("1"))
            .unwrap();
        let theirs = read(cg(
            tmp.path(),
            "cpuset/warren/front/children/req-1/cpuset.cpus",
        ));
        assert_eq!(cpu_list(&theirs).len(), 1, "{theirs}");
        assert!(
            cpu_list(&mine).contains(&cpu_list(&theirs)[0]),
            "{theirs} not in {mine}"
        );
        std::mem::forget(one);
        std::mem::forget(plain);
        std::mem::forget(front);

        // Under a spawner that is not confined (a memory limit only: a cpuset group for its
        // view), a child without limits stays out of the cpuset hierarchy (each v1 mkdir takes
        // the host-wide cgroup mutex); one with a cpu limit is confined all the same.
        let wide = layout
            .create_placed(
                "wide",
                &holder(),
                &Limits {
                    memory: Some(MIB_64),
                    ..Limits::default()
                },
            )
            .unwrap();
        assert_eq!(
            read(cg(tmp.path(), "cpuset/warren/wide/self/cpuset.cpus")),
            "0-3"
        );
        let plain = layout
            .create_placed("req-0", &under("wide"), &Limits::default())
            .unwrap();
        assert!(!cg(tmp.path(), "cpuset/warren/wide/children/req-0").exists());
        let one = layout
            .create_placed("req-1", &under("wide"), &with_cpus("1"))
            .unwrap();
        let theirs = read(cg(
            tmp.path(),
            "cpuset/warren/wide/children/req-1/cpuset.cpus",
        ));
        assert_eq!(cpu_list(&theirs).len(), 1, "{theirs}");
        std::mem::forget(one);
        std::mem::forget(plain);
        std::mem::forget(wide);

        // A spawner with no memory or cpu limit has no cpuset group (its children's views would
        // each cost one), so on v1 its children are not confined.
        let bare = layout
            .create_placed("bare", &holder(), &Limits::default())
            .unwrap();
        assert!(!cg(tmp.path(), "cpuset/warren/bare").exists());
        let one = layout
            .create_placed("req-1", &under("bare"), &with_cpus("1"))
            .unwrap();
        assert!(!cg(tmp.path(), "cpuset/warren/bare/children").exists());
        assert_eq!(one.info().limits.cpus, None);
        std::mem::forget(one);
        std::mem::forget(bare);
    }

    #[test]
    fn v2_confines_a_cpu_limit_within_what_its_parent_allows() {
        let tmp = tempfile::tempdir().unwrap();
        let layout = super::tests::layout(tmp.path(), PURE_V2, V2_CONTROLLERS);
        fs::create_dir_all(cg(tmp.path(), "warren")).unwrap();
        fs::write(cg(tmp.path(), "warren/cpuset.cpus.effective"), "2-5\n").unwrap();
        let front = layout
            .create_placed("front", &holder(), &with_cpus("1.5"))
            .unwrap();
        let group = cg(tmp.path(), "warren/front");
        let mine = read(group.join("cpuset.cpus"));
        let cpus = cpu_list(&mine);
        assert_eq!(cpus.len(), 2, "{mine}");
        assert!(cpus.iter().all(|c| (2..=5).contains(c)), "{mine}");
        assert_eq!(read(group.join("self/cpuset.cpus")), mine);
        assert_eq!(front.info().limits.cpus.as_deref(), Some(mine.as_str()));
        assert!(read(cg(tmp.path(), "cgroup.subtree_control")).contains("+cpuset"));
        assert!(read(group.join("cgroup.subtree_control")).contains("+cpuset"));
        std::mem::forget(front);
        // No cpu limit: no cpuset written.
        let plain = layout.create("plain", &Limits::default()).unwrap();
        assert!(!cg(tmp.path(), "warren/plain/cpuset.cpus").exists());
        assert_eq!(plain.info().limits.cpus, None);
        std::mem::forget(plain);
    }

    #[test]
    fn v2_enables_the_controllers_down_to_the_child_and_keeps_processes_out_of_groups() {
        let tmp = tempfile::tempdir().unwrap();
        let layout = super::tests::layout(tmp.path(), PURE_V2, V2_CONTROLLERS);
        let parent = layout.create_placed("front", &holder(), &limits()).unwrap();
        let group = cg(tmp.path(), "warren/front");
        assert_eq!(read(group.join("memory.max")), "67108864");
        assert_eq!(read(group.join("self/memory.max")), "67108864");
        assert_eq!(read(group.join("self/pids.max")), "32");
        // Enabled before `self` was made, so that it has the controllers' files.
        assert_eq!(
            read(group.join("cgroup.subtree_control")),
            "+memory +pids +cpu +cpuset"
        );
        let AttachHandles::CloneInto(_) = parent.attach_handles().unwrap() else {
            panic!("v2 clones into the cgroup");
        };
        parent.add_process(7).unwrap();
        assert_eq!(read(group.join("self/cgroup.procs")), "7");
        assert!(
            !group.join("cgroup.procs").exists(),
            "no process in a group with children"
        );

        let child = layout
            .create_placed("req-1", &under("front"), &Limits::default())
            .unwrap();
        assert_eq!(child.paths(), [group.join("children/req-1")]);
        assert_eq!(
            read(group.join("children/cgroup.subtree_control")),
            "+memory +pids +cpu"
        );
        // A child that may spawn in turn.
        let nested = Placement {
            parent: Some("front/children/req-1".into()),
            holds_children: false,
        };
        assert!(matches!(
            layout.create_placed("g", &nested, &Limits::default()),
            Err(CgroupError::NotAParent { .. })
        ));
        let spawner = Placement {
            parent: Some("front".into()),
            holds_children: true,
        };
        let mid = layout.create_placed("req-2", &spawner, &limits()).unwrap();
        assert_eq!(mid.leaf(), "front/children/req-2");
        let grandchild = layout
            .create_placed("g", &under("front/children/req-2"), &limits())
            .unwrap();
        assert_eq!(
            grandchild.paths(),
            [group.join("children/req-2/children/g")]
        );
        for c in [child, mid, grandchild, parent] {
            std::mem::forget(c);
        }
    }

    #[test]
    fn rejects_leaf_names_that_are_not_one_component() {
        let tmp = tempfile::tempdir().unwrap();
        let layout = layout(tmp.path(), PURE_V2, V2_CONTROLLERS);
        for leaf in ["", ".", "..", "a/b", "../web", "a\0b"] {
            let err = layout.create(leaf, &Limits::default()).unwrap_err();
            assert!(
                matches!(err, CgroupError::InvalidLeaf { .. }),
                "{leaf:?}: {err:?}"
            );
        }
        assert!(!cg(tmp.path(), "warren").exists());
    }

    #[test]
    fn reads_oom_kills_and_memory_peak() {
        let tmp = tempfile::tempdir().unwrap();
        let cgroup = layout(tmp.path(), PURE_V2, V2_CONTROLLERS)
            .create("a", &limits())
            .unwrap();
        assert_eq!((cgroup.oom_kills(), cgroup.memory_peak()), (None, None));
        let dir = &cgroup.paths()[0];
        fs::write(
            dir.join("memory.events"),
            "low 0\nhigh 0\nmax 7\noom 3\noom_kill 2\n",
        )
        .unwrap();
        fs::write(dir.join("memory.peak"), "123456\n").unwrap();
        assert_eq!(
            (cgroup.oom_kills(), cgroup.memory_peak()),
            (Some(2), Some(123456))
        );

        let tmp = tempfile::tempdir().unwrap();
        let cgroup = layout(tmp.path(), HYBRID, "")
            .create("a", &limits())
            .unwrap();
        let memory = cg(tmp.path(), "memory/warren/a");
        fs::write(
            memory.join("memory.oom_control"),
            "oom_kill_disable 0\nunder_oom 0\noom_kill 5\n",
        )
        .unwrap();
        fs::write(memory.join("memory.max_usage_in_bytes"), "4096\n").unwrap();
        assert_eq!(
            (cgroup.oom_kills(), cgroup.memory_peak()),
            (Some(5), Some(4096))
        );
    }

    // ---- on this machine's real cgroupfs ----

    static NEXT: AtomicU32 = AtomicU32::new(0);

    fn unique_leaf() -> String {
        format!(
            "test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        )
    }

    /// Kills and reaps the child if the test fails before the cgroup does it.
    struct Reap(Child);

    impl Drop for Reap {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    /// Wait (bounded) for `child` to exit and return the signal that ended it.
    fn exit_signal(child: &mut Child) -> Option<i32> {
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Some(status) = child.try_wait().unwrap() {
                return status.signal();
            }
            thread::sleep(POLL);
        }
        panic!("process {} still running", child.id());
    }

    /// Whether `pid` is gone or a zombie.
    fn is_dead(pid: i32) -> bool {
        match fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => true,
            Ok(stat) => stat
                .rsplit_once(") ")
                .is_some_and(|(_, rest)| rest.starts_with('Z')),
        }
    }

    fn pids_in(dir: &Path) -> Vec<i32> {
        procs(dir).unwrap()
    }

    #[test]
    fn real_v1_cgroup_limits_and_kills() {
        if !rustix::process::geteuid().is_root() || !Path::new("/sys/fs/cgroup/memory").exists() {
            eprintln!("skipped: needs root and the v1 memory hierarchy at /sys/fs/cgroup/memory");
            return;
        }
        let layout = Layout::discover(Path::new("/proc/self/mountinfo"), Path::new("/")).unwrap();
        assert_eq!(layout.version(), Version::V1);
        let leaf = unique_leaf();
        let cgroup = layout.create(&leaf, &limits()).unwrap();
        let paths = cgroup.paths();
        assert!(
            paths.iter().all(|p| p.ends_with(format!("warren/{leaf}"))),
            "{paths:?}"
        );

        // A shell that, once inside the cgroup, forks two sleeps: three processes to kill.
        let mut shell = Reap(
            Command::new("sh")
                .args(["-c", "read go; sleep 30 & sleep 30 & wait"])
                .stdin(Stdio::piped())
                .spawn()
                .unwrap(),
        );
        let pid = shell.0.id() as i32;
        cgroup.add_process(pid).unwrap();
        for dir in &paths {
            assert!(
                pids_in(dir).contains(&pid),
                "{pid} not in {}",
                dir.display()
            );
        }
        shell.0.stdin.take().unwrap().write_all(b"go\n").unwrap();
        assert!(wait_until(Duration::from_secs(5), || Ok(pids_in(&paths[0]).len() == 3)).unwrap());
        let all = pids_in(&paths[0]);

        let memory = &paths[0];
        assert_eq!(
            read(memory.join("memory.limit_in_bytes")).trim(),
            "67108864"
        );
        if memory.join("memory.memsw.limit_in_bytes").exists() {
            assert_eq!(
                read(memory.join("memory.memsw.limit_in_bytes")).trim(),
                "67108864"
            );
            assert!(cgroup.info().limits.swap_capped);
        }
        let pids = paths
            .iter()
            .find(|p| p.starts_with("/sys/fs/cgroup/pids"))
            .unwrap();
        assert_eq!(read(pids.join("pids.max")).trim(), "32");
        let cpu = paths
            .iter()
            .find(|p| p.join("cpu.cfs_quota_us").exists())
            .unwrap();
        assert_eq!(read(cpu.join("cpu.cfs_quota_us")).trim(), "50000");
        assert_eq!(read(cpu.join("cpu.cfs_period_us")).trim(), "100000");
        assert_eq!(cgroup.oom_kills(), Some(0));
        assert!(cgroup.memory_peak().is_some_and(|peak| peak > 0));

        cgroup.destroy().unwrap();
        for dir in &paths {
            assert!(!dir.exists(), "{} left behind", dir.display());
        }
        assert_eq!(exit_signal(&mut shell.0), Some(9));
        for pid in all {
            assert!(is_dead(pid), "{pid} survived");
        }
    }

    /// The hog: `tail` keeps the current line, and /dev/zero has no newline.
    const HOG: &str = "read go; head -c 400M /dev/zero | tail > /dev/null";

    #[test]
    fn real_v1_parent_limit_stops_a_childs_memory_bomb_and_spares_a_neighbour() {
        if !rustix::process::geteuid().is_root() || !Path::new("/sys/fs/cgroup/memory").exists() {
            eprintln!("skipped: needs root and the v1 memory hierarchy at /sys/fs/cgroup/memory");
            return;
        }
        let layout = Layout::discover(Path::new("/proc/self/mountinfo"), Path::new("/")).unwrap();
        let small = Limits {
            memory: Some(MIB_64),
            ..Limits::default()
        };
        let big = Limits {
            memory: Some(512 << 20),
            ..Limits::default()
        };
        let (front, other) = (unique_leaf(), unique_leaf());
        let parent = layout.create_placed(&front, &holder(), &small).unwrap();
        let neighbour = layout.create_placed(&other, &holder(), &small).unwrap();
        let child = layout.create_placed("bomb", &under(&front), &big).unwrap();
        let quiet = layout.create_placed("quiet", &under(&other), &big).unwrap();

        let start = |cgroup: &Cgroup, script: &str| {
            let mut sh = Reap(
                Command::new("sh")
                    .args(["-c", script])
                    .stdin(Stdio::piped())
                    .spawn()
                    .unwrap(),
            );
            cgroup.add_process(sh.0.id() as i32).unwrap();
            sh.0.stdin.take().unwrap().write_all(b"go\n").unwrap();
            sh
        };
        // The child may use 512M; its parent only 64M. (The positive control, the same hog
        // finishing under a parent without a limit, is the next test.)
        let mut bomb = start(&child, HOG);
        let mut calm = start(&quiet, "read go; sleep 30");
        let mut parent_own = start(&parent, "read go; sleep 30");
        let status = {
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                if let Some(s) = bomb.0.try_wait().unwrap() {
                    break s;
                }
                assert!(Instant::now() < deadline, "the memory bomb still runs");
                thread::sleep(POLL);
            }
        };
        // `sh` exits with the pipeline's status: tail killed by SIGKILL.
        assert_eq!(status.code(), Some(128 + 9), "{status:?}");
        assert!(
            child.oom_kills().is_some_and(|n| n > 0),
            "no oom kill in the child"
        );
        assert!(
            child.memory_peak().is_some_and(|p| p <= MIB_64),
            "child peak above 64M"
        );
        assert_eq!(
            parent.oom_kills(),
            Some(0),
            "the parent's own processes were spared"
        );
        assert!(
            calm.0.try_wait().unwrap().is_none(),
            "the neighbour tree was touched"
        );
        assert!(
            parent_own.0.try_wait().unwrap().is_none(),
            "the parent itself was killed"
        );

        // Destroying the parent takes the whole tree down, children first.
        let child_dirs = child.paths();
        std::mem::forget(child);
        let group_dirs = parent.paths();
        parent.destroy().unwrap();
        assert_eq!(exit_signal(&mut parent_own.0), Some(9));
        for d in child_dirs.iter().chain(&group_dirs) {
            assert!(!d.exists(), "{} left behind", d.display());
        }
        assert!(
            calm.0.try_wait().unwrap().is_none(),
            "the neighbour tree was touched"
        );
        drop(quiet);
        neighbour.destroy().unwrap();
        assert_eq!(exit_signal(&mut calm.0), Some(9));
    }

    #[test]
    fn real_v1_the_hog_runs_to_its_end_without_a_parent_limit() {
        // The positive control of the test above: the same hog, in a child whose parent has no
        // limit, is not killed (so that test's kill is the parent's limit at work).
        if !rustix::process::geteuid().is_root() || !Path::new("/sys/fs/cgroup/memory").exists() {
            eprintln!("skipped: needs root and the v1 memory hierarchy at /sys/fs/cgroup/memory");
            return;
        }
        let layout = Layout::discover(Path::new("/proc/self/mountinfo"), Path::new("/")).unwrap();
        let front = unique_leaf();
        let parent = layout
            .create_placed(&front, &holder(), &Limits::default())
            .unwrap();
        let child = layout
            .create_placed(
                "bomb",
                &under(&front),
                &Limits {
                    memory: Some(1 << 30),
                    ..Limits::default()
                },
            )
            .unwrap();
        let mut sh = Reap(
            Command::new("sh")
                .args(["-c", HOG])
                .stdin(Stdio::piped())
                .spawn()
                .unwrap(),
        );
        child.add_process(sh.0.id() as i32).unwrap();
        sh.0.stdin.take().unwrap().write_all(b"go\n").unwrap();
        let status = sh.0.wait().unwrap();
        assert_eq!(status.code(), Some(0), "{status:?}");
        assert!(child.memory_peak().is_some_and(|p| p > 300 << 20));
        drop(child);
        parent.destroy().unwrap();
    }

    #[test]
    fn real_v2_a_parents_destroy_kills_and_removes_its_childrens_groups() {
        // The unified mount of this host (no limit controllers): the nested layout, the
        // processes in `self` and in a child, and the subtree's kill and removal.
        let layout = match Layout::discover(Path::new("/proc/self/mountinfo"), Path::new("/")) {
            Ok(layout) if rustix::process::geteuid().is_root() => layout,
            _ => {
                eprintln!("skipped: needs root and cgroup mounts");
                return;
            }
        };
        let Some(unified) = layout.unified().cloned() else {
            eprintln!("skipped: no cgroup2 mount");
            return;
        };
        let v2_only = Layout {
            v1: Vec::new(),
            v2: Some(unified),
        };
        let front = unique_leaf();
        let parent = v2_only
            .create_placed(&front, &holder(), &Limits::default())
            .unwrap();
        let child = v2_only
            .create_placed("c", &under(&front), &Limits::default())
            .unwrap();
        let group = parent.paths()[0].clone();
        let mut own = Reap(Command::new("sleep").arg("30").spawn().unwrap());
        let mut kid = Reap(Command::new("sleep").arg("30").spawn().unwrap());
        parent.add_process(own.0.id() as i32).unwrap();
        child.add_process(kid.0.id() as i32).unwrap();
        assert_eq!(pids_in(&group.join("self")), [own.0.id() as i32]);
        assert_eq!(pids_in(&group.join("children/c")), [kid.0.id() as i32]);
        assert!(pids_in(&group).is_empty(), "no process in the group itself");
        std::mem::forget(child);
        parent.destroy().unwrap();
        assert_eq!(exit_signal(&mut own.0), Some(9));
        assert_eq!(exit_signal(&mut kid.0), Some(9));
        assert!(!group.exists(), "{} left behind", group.display());
    }

    #[test]
    fn real_v2_kill_on_the_unified_mount() {
        // This host's cgroup2 mount offers no memory, pids or cpu, but it does have cgroup.kill:
        // enough to exercise the v2 create, add and kill path without limits.
        let layout = match Layout::discover(Path::new("/proc/self/mountinfo"), Path::new("/")) {
            Ok(layout) if rustix::process::geteuid().is_root() => layout,
            _ => {
                eprintln!("skipped: needs root and cgroup mounts");
                return;
            }
        };
        let Some(unified) = layout.unified().cloned() else {
            eprintln!("skipped: no cgroup2 mount");
            return;
        };
        let v2_only = Layout {
            v1: Vec::new(),
            v2: Some(unified),
        };
        let leaf = unique_leaf();
        let cgroup = v2_only.create(&leaf, &Limits::default()).unwrap();
        let dir = cgroup.paths()[0].clone();
        let mut sleep = Reap(Command::new("sleep").arg("30").spawn().unwrap());
        cgroup.add_process(sleep.0.id() as i32).unwrap();
        assert_eq!(pids_in(&dir), [sleep.0.id() as i32]);
        cgroup.kill_all().unwrap();
        assert_eq!(exit_signal(&mut sleep.0), Some(9));
        cgroup.destroy().unwrap();
        assert!(!dir.exists());
    }
}
