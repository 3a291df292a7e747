//! What to launch: the validated description of one environment that the launcher turns into
//! namespaces, mounts, limits and an `execve`.

use std::collections::BTreeSet;
use std::path::PathBuf;

use warren_spec::EnvName;

use warren_cgroup::Limits;
use warren_elf::BinaryRoot;

/// Where an environment's root filesystem comes from.
#[derive(Debug, Clone)]
pub enum RootSource {
    /// A directory holding a complete root (e.g. a busybox tree or an unpacked image).
    /// It is mounted read-only; Warren never writes to it.
    Rootfs(PathBuf),
    /// A minimal root built for one program: the binary, its ELF interpreter and its libraries,
    /// each bind-mounted read-only onto an otherwise empty tmpfs.
    Binary(BinaryRoot),
    /// An unpacked image root from Warren's image store. Its files keep the image's own owners
    /// (image uid N is host uid N on disk), so it is mounted read-only through an idmapped
    /// mount with the environment's user namespace: image uid N is uid N inside.
    Image(PathBuf),
}

/// The user a workload runs as, inside the environment's user namespace (from an image's
/// `User`, resolved against its `/etc/passwd` and `/etc/group`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RunAs {
    /// The uid.
    pub uid: u32,
    /// The primary gid.
    pub gid: u32,
    /// Supplementary groups.
    pub groups: Vec<u32>,
}

/// A protection the user may explicitly allow to be missing on a host that lacks it.
/// Without that permission, a launch on such a host fails closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Protection {
    /// Landlock filesystem and scope restrictions.
    Landlock,
    /// The seccomp allow-list.
    Seccomp,
    /// cgroup limits (memory, pids, cpu).
    Cgroup,
}

impl Protection {
    /// Every protection, in display order.
    pub const ALL: [Protection; 3] = [
        Protection::Landlock,
        Protection::Seccomp,
        Protection::Cgroup,
    ];

    /// The name users type (`--allow-missing landlock`).
    pub fn as_str(&self) -> &'static str {
        match self {
            Protection::Landlock => "landlock",
            Protection::Seccomp => "seccomp",
            Protection::Cgroup => "cgroup",
        }
    }
}

impl std::str::FromStr for Protection {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Protection::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| {
                format!("unknown protection {s:?}: expected one of landlock, seccomp, cgroup")
            })
    }
}

/// What `warren run --init` puts before the command (the recorded and measured `command` starts
/// with it): `warren-msg init` is pid 1 and the command runs as its child. A launch whose argv
/// starts with it starts the command itself, just before it executes the init (see `child`):
/// the init's own start-up is then off the command's way.
pub const INIT_PREFIX: [&str; 3] = ["/dev/warren/warren-msg", "init", "--"];

/// The directories a command name without `/` is searched in: the workload's `PATH` (the last
/// one given), or `execvp`'s default. The launcher's check that the command exists and the
/// launch's start of it under the init search the same way.
pub fn search_path(env: &[(String, String)]) -> &str {
    env.iter().rev().find(|(k, _)| k == "PATH").map_or(
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        |(_, v)| v.as_str(),
    )
}

/// The variable in the init's own environment (not the command's) that names the pid of the
/// command the launch started for it to adopt (`warren-msg init` reads it).
pub const INIT_ADOPT_ENV: &str = "WARREN_INIT_ADOPT";

/// Everything the launcher needs to start one environment.
#[derive(Debug, Clone)]
pub struct LaunchPlan {
    /// The environment's name: its hostname, cgroup leaf and lock.
    pub name: EnvName,
    /// Its root filesystem.
    pub root: RootSource,
    /// The command and its arguments; `argv[0]` is looked up in `PATH` inside the root when it
    /// has no `/`.
    pub argv: Vec<String>,
    /// Extra environment variables (`KEY`, `VALUE`), on top of `PATH`, `HOME` and `HOSTNAME`.
    pub env: Vec<(String, String)>,
    /// cgroup limits.
    pub limits: Limits,
    /// Where its cgroup sits (`warren_cgroup::Placement`): under the group of the environment
    /// that spawned it (`--cgroup-parent`), so that the parent's limits bound it, and whether
    /// it holds children of its own (its processes then go in `GROUP/self`). The default is a
    /// plain leaf under `warren`. Every launch path (`warren run`, a pre-forked spawn helper)
    /// gets nesting by filling this in.
    pub cgroup: warren_cgroup::Placement,
    /// Size of the writable `/tmp` (and `/dev/shm`) tmpfs, in bytes.
    pub tmpfs_size: u64,
    /// A writable root (`--writable-root`): an overlay of the root whose upper layer is a tmpfs
    /// of this many bytes. `None` keeps the root read-only (the default). Needs a `--rootfs`
    /// or image root.
    pub writable_root: Option<u64>,
    /// `-t`: the workload's standard input, output and error are the slave of a pty of the
    /// environment's own devpts, whose master the launcher gets (`Running::take_pty`).
    pub tty: bool,
    /// Protections the user allowed to be missing on this host.
    pub allow_missing: BTreeSet<Protection>,
    /// The in-environment mailbox client (`warren-msg`, a static binary) to expose read-only as
    /// `/dev/warren/warren-msg`: given when the environment has a mailbox connection or runs
    /// `warren-msg init` as pid 1 (`warren run --init`).
    pub client_tool: Option<PathBuf>,
    /// A virtual interface (`docs/network.md`); `None` leaves the environment with `lo` only.
    pub net: Option<warren_spec::VethSpec>,
    /// The user to run as; `None` is root (uid 0 inside).
    pub user: Option<RunAs>,
    /// The hostname inside (`--hostname`); `None` is the environment's name.
    pub hostname: Option<String>,
    /// Extra `/etc/hosts` lines (`--add-host`, manifest `add_hosts`), in order, validated by
    /// `warren_spec::etc`.
    pub add_hosts: Vec<warren_spec::etc::HostEntry>,
    /// Name servers for `/etc/resolv.conf` (`--dns`, manifest `dns`); empty writes none.
    pub dns: Vec<std::net::IpAddr>,
    /// Capabilities the workload keeps inside its own user namespace (`--cap-add`), sorted;
    /// empty (the default) drops every one.
    pub capabilities: Vec<warren_spec::Capability>,
    /// The working directory inside the root; `None` is `/`.
    pub workdir: Option<PathBuf>,
    /// The image's name, for an image root (recorded, and measured by the launch measurement).
    pub image_name: Option<String>,
    /// The image's manifest digest (`sha256:...`), for an image root: the identity of what runs,
    /// recorded in `Applied` and read by the launch measurement.
    pub image_manifest_digest: Option<String>,
    /// The image store's tree digest of an image root (`blake3:...`, computed at import over
    /// the root the store keeps read-only): the launch measurement records it instead of
    /// walking the tree. `None` makes the measurement walk the root.
    pub image_tree_digest: Option<String>,
    /// Named volumes and host directories mounted into the environment, in order, after the
    /// root is in place (`docs/launch-sequence.md`, step `mount-volumes`).
    pub mounts: Vec<MountSpec>,
    /// The seccomp profile (`--seccomp default|strict|FILE`; docs/seccomp.md).
    pub seccomp: warren_seccomp::Selection,
}

pub use warren_spec::mount::MountKind;

/// One mount into the environment: `host` bound at `dest`, idmapped through the environment's
/// user namespace, nosuid and nodev, read-only when asked. The caller has validated it (`dest`
/// absolute and normalised, `host` an existing directory the policy allows).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MountSpec {
    /// Volume or bind.
    pub kind: MountKind,
    /// What the user named: the volume's name or the host path (the record keeps this).
    pub source: String,
    /// The host directory bound (a volume's `data` directory, or the bind's path).
    pub host: PathBuf,
    /// The absolute path inside the environment (it must exist in the root as a directory).
    pub dest: PathBuf,
    /// Mounted read-only.
    pub read_only: bool,
    /// A detached mount the caller already made (a size-limited volume's ext4 file system,
    /// mounted from its loop device): used instead of a clone of `host`. Not recorded.
    #[serde(skip)]
    pub tree: Option<PreparedTree>,
}

/// A detached mount (from `fsmount`, never attached, not yet idmapped), shared so a plan can be
/// cloned; equal when it is the same descriptor.
#[derive(Debug, Clone)]
pub struct PreparedTree(pub std::sync::Arc<std::os::fd::OwnedFd>);

impl PartialEq for PreparedTree {
    fn eq(&self, other: &Self) -> bool {
        std::sync::Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for PreparedTree {}

impl LaunchPlan {
    /// The default size of `/tmp`.
    pub const DEFAULT_TMPFS_SIZE: u64 = 16 << 20;
    /// The default pids limit: enough for a shell pipeline, small enough to stop a fork bomb.
    pub const DEFAULT_PIDS: u64 = 1024;

    /// The hostname inside: `hostname` when given, else the environment's name.
    pub fn hostname(&self) -> &str {
        self.hostname.as_deref().unwrap_or(self.name.as_str())
    }
}
