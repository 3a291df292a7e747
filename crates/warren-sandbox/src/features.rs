//! Host feature probe for `warren doctor`: which isolation mechanisms this kernel offers, and
//! what assurance Warren can give here.
//!
//! Each [`Feature`] is one named mechanism with a one-line detail; the required ones are the
//! layers every environment is built from (namespaces, seccomp, Landlock, cgroup controllers),
//! the optional ones change how well something works (freezer, TPM) or are host settings worth
//! knowing (sysctls). [`Assurance`] sums them up so the CLI can say, never silently, what is
//! missing.
//!
//! Every file is read under a [`ProbeRoots`], so tests describe a host as a tempdir. The one
//! exception is Landlock: its ABI version is a system call (`warren_sys::landlock_abi_version`).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use rustix::io::Errno;
use serde::Serialize;

use warren_cgroup::{Layout, LayoutInfo, Version};

/// Where the probe looks for the host's pseudo-filesystems.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeRoots {
    /// procfs (`/proc`).
    pub proc: PathBuf,
    /// sysfs (`/sys`).
    pub sys: PathBuf,
    /// devtmpfs (`/dev`).
    pub dev: PathBuf,
    /// The mountinfo file cgroup discovery reads (`/proc/self/mountinfo`).
    pub mountinfo: PathBuf,
    /// The root the mount points in `mountinfo` are relative to (`/`).
    pub fs_root: PathBuf,
}

impl Default for ProbeRoots {
    /// The real host: `/proc`, `/sys`, `/dev`, `/proc/self/mountinfo`, `/`.
    fn default() -> ProbeRoots {
        ProbeRoots {
            proc: PathBuf::from("/proc"),
            sys: PathBuf::from("/sys"),
            dev: PathBuf::from("/dev"),
            mountinfo: PathBuf::from("/proc/self/mountinfo"),
            fs_root: PathBuf::from("/"),
        }
    }
}

/// One probed mechanism.
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub struct Feature {
    /// Stable name, e.g. `namespace.user`, `cgroup.memory`, `tpm`.
    pub name: String,
    /// Whether the host offers it.
    pub available: bool,
    /// What was found (a version, a path, a value) or why it is missing.
    pub detail: String,
    /// Whether full assurance needs it.
    pub required: bool,
}

/// How much of Warren's isolation this host supports.
#[derive(Serialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum AssuranceLevel {
    /// Every required feature is present.
    Full,
    /// Environments still get namespaces and seccomp, but a defence-in-depth layer (Landlock)
    /// or a resource limit (a cgroup controller) is missing.
    Degraded,
    /// A namespace, user namespaces or seccomp filtering is missing: the isolation boundary
    /// itself cannot be built.
    Insufficient,
}

/// The summary of a probe.
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub struct Assurance {
    /// The overall level.
    pub level: AssuranceLevel,
    /// Names of the required features that are missing.
    pub missing: Vec<String>,
    /// Consequences of missing optional features and noteworthy host settings.
    pub notes: Vec<String>,
}

/// Everything `warren doctor` reports about the host.
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub struct HostFeatures {
    /// The kernel release (`<proc>/sys/kernel/osrelease`), or `unknown`.
    pub kernel: String,
    /// Every probed feature, in a fixed order.
    pub features: Vec<Feature>,
    /// The Landlock ABI version, when Landlock is available.
    pub landlock_abi: Option<i32>,
    /// The discovered cgroup layout, when discovery succeeded.
    pub cgroup: Option<LayoutInfo>,
    /// The summary.
    pub assurance: Assurance,
}

impl HostFeatures {
    /// The feature called `name`, if it was probed.
    pub fn feature(&self, name: &str) -> Option<&Feature> {
        self.features.iter().find(|f| f.name == name)
    }
}

/// The namespaces every environment gets: feature name, `<proc>/self/ns` entry, what it buys.
const NAMESPACES: [(&str, &str, &str); 7] = [
    (
        "namespace.user",
        "user",
        "own uid range; root inside is an unprivileged host uid",
    ),
    (
        "namespace.pid",
        "pid",
        "own process tree; host processes invisible",
    ),
    (
        "namespace.mount",
        "mnt",
        "private root filesystem via pivot_root",
    ),
    ("namespace.uts", "uts", "own hostname"),
    (
        "namespace.ipc",
        "ipc",
        "own System V IPC and POSIX message queues",
    ),
    (
        "namespace.net",
        "net",
        "own network stack; no host interfaces",
    ),
    ("namespace.cgroup", "cgroup", "host cgroup paths hidden"),
];

/// Required features without which the isolation boundary cannot be built at all; any other
/// missing required feature only degrades assurance.
const FOUNDATION: [&str; 9] = [
    "namespace.user",
    "namespace.pid",
    "namespace.mount",
    "namespace.uts",
    "namespace.ipc",
    "namespace.net",
    "namespace.cgroup",
    "userns.limit",
    "seccomp.filter",
];

/// Probe the host below `roots`; the Landlock ABI comes from the running kernel.
pub fn probe(roots: &ProbeRoots) -> HostFeatures {
    probe_with(roots, warren_sys::landlock_abi_version())
}

/// [`probe`] with the Landlock ABI query's result passed in, so tests can describe a kernel
/// without Landlock.
fn probe_with(roots: &ProbeRoots, landlock: io::Result<i32>) -> HostFeatures {
    let mut features = Vec::new();
    let mut notes = Vec::new();

    for (name, entry, purpose) in NAMESPACES {
        let path = roots.proc.join("self/ns").join(entry);
        let available = fs::symlink_metadata(&path).is_ok();
        let detail = if available {
            purpose.to_owned()
        } else {
            format!("{} not found; needed for: {purpose}", path.display())
        };
        features.push(Feature::required(name, available, detail));
    }
    features.push(userns_limit(&roots.proc));
    features.push(seccomp(&roots.proc));

    let landlock_abi = landlock.as_ref().ok().copied().filter(|abi| *abi >= 1);
    features.push(landlock_feature(&landlock, &roots.sys));

    let layout = Layout::discover(&roots.mountinfo, &roots.fs_root);
    features.extend(cgroup_features(&layout));
    let cgroup = layout.as_ref().ok().map(Layout::describe);

    let kvm = roots.dev.join("kvm");
    features.push(match kvm.exists() {
        true => Feature::optional("dev.kvm", true, format!("{} present", kvm.display())),
        false => Feature::optional("dev.kvm", false, format!("no {}", kvm.display())),
    });
    features.push(tpm(&roots.dev, &roots.sys));
    features.push(tiocsti(&roots.proc));
    features.extend(hardening_sysctls(&roots.proc, &mut notes));

    for feature in features.iter().filter(|f| !f.required && !f.available) {
        match feature.name.as_str() {
            "cgroup.freezer" => notes.push(
                "no cgroup freezer: environments are killed by repeated SIGKILL sweeps, which a \
                 fork loop can briefly outrun (pids.max still bounds it)"
                    .to_owned(),
            ),
            "dev.kvm" => notes.push("no /dev/kvm: hardware virtualisation unavailable".to_owned()),
            "tpm" => notes.push("no TPM: attestation root will be software".to_owned()),
            _ => {}
        }
    }

    let missing: Vec<String> = features
        .iter()
        .filter(|f| f.required && !f.available)
        .map(|f| f.name.clone())
        .collect();
    let level = if missing.iter().any(|m| FOUNDATION.contains(&m.as_str())) {
        AssuranceLevel::Insufficient
    } else if missing.is_empty() {
        AssuranceLevel::Full
    } else {
        AssuranceLevel::Degraded
    };

    HostFeatures {
        kernel: read_trimmed(&roots.proc.join("sys/kernel/osrelease"))
            .unwrap_or_else(|_| "unknown".to_owned()),
        features,
        landlock_abi,
        cgroup,
        assurance: Assurance {
            level,
            missing,
            notes,
        },
    }
}

impl Feature {
    fn required(name: &str, available: bool, detail: String) -> Feature {
        Feature {
            name: name.to_owned(),
            available,
            detail,
            required: true,
        }
    }

    fn optional(name: &str, available: bool, detail: String) -> Feature {
        Feature {
            name: name.to_owned(),
            available,
            detail,
            required: false,
        }
    }
}

fn read_trimmed(path: &Path) -> io::Result<String> {
    Ok(fs::read_to_string(path)?.trim().to_owned())
}

/// A sysctl's integer value, or a detail saying why there is none.
fn read_sysctl(path: &Path) -> Result<i64, String> {
    let text = read_trimmed(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    text.parse()
        .map_err(|_| format!("unexpected value {text:?} in {}", path.display()))
}

fn userns_limit(proc: &Path) -> Feature {
    let path = proc.join("sys/user/max_user_namespaces");
    let (available, detail) = match read_sysctl(&path) {
        Ok(n) if n > 0 => (true, format!("max_user_namespaces = {n}")),
        Ok(n) => (
            false,
            format!("max_user_namespaces = {n}: user namespaces are disabled"),
        ),
        Err(detail) => (false, detail),
    };
    Feature::required("userns.limit", available, detail)
}

fn seccomp(proc: &Path) -> Feature {
    let actions_path = proc.join("sys/kernel/seccomp/actions_avail");
    let status_path = proc.join("self/status");
    let actions = read_trimmed(&actions_path);
    let in_status = fs::read_to_string(&status_path)
        .is_ok_and(|s| s.lines().any(|l| l.starts_with("Seccomp:")));
    let (available, detail) = match actions {
        Err(e) => (
            false,
            format!("cannot read {}: {e}", actions_path.display()),
        ),
        Ok(_) if !in_status => (
            false,
            format!("no Seccomp: line in {}", status_path.display()),
        ),
        Ok(list) => {
            let needed = ["errno", "kill_process"];
            let lacking: Vec<&str> = needed
                .into_iter()
                .filter(|a| !list.split_whitespace().any(|x| x == *a))
                .collect();
            if lacking.is_empty() {
                (true, format!("filter actions: {list}"))
            } else {
                (
                    false,
                    format!("filter actions lack {}: {list}", lacking.join(", ")),
                )
            }
        }
    };
    Feature::required("seccomp.filter", available, detail)
}

fn landlock_feature(abi: &io::Result<i32>, sys: &Path) -> Feature {
    let lsm = read_trimmed(&sys.join("kernel/security/lsm")).ok();
    let (available, mut detail) = match abi {
        Ok(n) if *n >= 1 => (true, format!("abi {n}")),
        Ok(n) => (false, format!("unexpected abi {n}")),
        Err(e) => match e.raw_os_error().map(Errno::from_raw_os_error) {
            Some(Errno::NOSYS) => (false, "not built into this kernel".to_owned()),
            Some(Errno::OPNOTSUPP) => (
                false,
                "built in but not enabled at boot (add landlock to lsm=)".to_owned(),
            ),
            _ => (false, format!("abi query failed: {e}")),
        },
    };
    if let Some(lsm) = lsm {
        detail.push_str(&format!(" (active security modules: {lsm})"));
    }
    Feature::required("landlock", available, detail)
}

/// `cgroup.memory`, `cgroup.pids`, `cgroup.cpu` (required) and `cgroup.freezer` (optional).
fn cgroup_features(layout: &Result<Layout, warren_cgroup::CgroupError>) -> Vec<Feature> {
    let layout = match layout {
        Ok(layout) => layout,
        Err(e) => {
            let detail = error_chain(e);
            let mut out: Vec<Feature> = ["cgroup.memory", "cgroup.pids", "cgroup.cpu"]
                .into_iter()
                .map(|name| Feature::required(name, false, detail.clone()))
                .collect();
            out.push(Feature::optional("cgroup.freezer", false, detail));
            return out;
        }
    };
    let version = layout.version();
    let mut out = Vec::new();
    for controller in ["memory", "pids", "cpu"] {
        let name = format!("cgroup.{controller}");
        let feature = match layout.controller_mount(controller) {
            Some(path) => {
                Feature::required(&name, true, format!("{version} at {}", path.display()))
            }
            None => Feature::required(
                &name,
                false,
                match (version, layout.unified()) {
                    (Version::V2, Some(m)) => format!(
                        "v2: not offered in {}",
                        m.mount_point.join("cgroup.controllers").display()
                    ),
                    _ => format!("{version}: no {controller} hierarchy mounted"),
                },
            ),
        };
        out.push(feature);
    }
    let freezer = match (version, layout.unified()) {
        (Version::V2, Some(m)) => Feature::optional(
            "cgroup.freezer",
            true,
            format!(
                "v2: built into every cgroup under {}",
                m.mount_point.display()
            ),
        ),
        _ => match layout.controller_mount("freezer") {
            Some(path) => {
                Feature::optional("cgroup.freezer", true, format!("v1 at {}", path.display()))
            }
            None => Feature::optional(
                "cgroup.freezer",
                false,
                "v1: no freezer hierarchy mounted".to_owned(),
            ),
        },
    };
    out.push(freezer);
    out
}

fn tpm(dev: &Path, sys: &Path) -> Feature {
    let device = ["tpmrm0", "tpm0"]
        .into_iter()
        .map(|d| dev.join(d))
        .find(|p| p.exists());
    let (available, detail) = match device {
        Some(path) => (true, format!("{} present", path.display())),
        None => {
            let class = sys.join("class/tpm");
            let listed = fs::read_dir(&class).is_ok_and(|mut d| d.next().is_some());
            let mut detail = "no TPM device: attestation will use the software root".to_owned();
            if listed {
                detail.push_str(&format!(
                    " ({} lists one, but it has no device node)",
                    class.display()
                ));
            }
            (false, detail)
        }
    };
    Feature::optional("tpm", available, detail)
}

fn tiocsti(proc: &Path) -> Feature {
    let path = proc.join("sys/dev/tty/legacy_tiocsti");
    let (available, detail) = match read_sysctl(&path) {
        Ok(0) => (
            true,
            "legacy_tiocsti = 0: TIOCSTI injection is off on the host".to_owned(),
        ),
        Ok(n) => (
            true,
            format!("legacy_tiocsti = {n}: the host allows TIOCSTI injection"),
        ),
        Err(detail) => (
            false,
            format!("{detail} (kernels before 6.2 always allow TIOCSTI)"),
        ),
    };
    let detail = format!("{detail}; warren blocks TIOCSTI with seccomp anyway");
    Feature::optional("sysctl.tiocsti", available, detail)
}

/// The informational hardening sysctls; a lax `perf_event_paranoid` adds a note.
fn hardening_sysctls(proc: &Path, notes: &mut Vec<String>) -> Vec<Feature> {
    let mut out = Vec::new();
    // Each of these reaches a syscall that warren's seccomp policy refuses inside environments
    // whatever the host setting; the value says how exposed the rest of the host is.
    let sysctl = |name: &str, file: &str, syscall: &str, meaning: fn(i64) -> &'static str| {
        let path = proc.join("sys/kernel").join(file);
        let refused = format!("warren's seccomp policy refuses {syscall} anyway");
        match read_sysctl(&path) {
            Ok(n) => {
                let detail = format!("{file} = {n}: {}; {refused}", meaning(n));
                (Some(n), Feature::optional(name, true, detail))
            }
            Err(detail) => (
                None,
                Feature::optional(name, false, format!("{detail}; {refused}")),
            ),
        }
    };
    let (_, io_uring) = sysctl(
        "sysctl.io_uring_disabled",
        "io_uring_disabled",
        "io_uring_setup",
        |n| match n {
            0 => "io_uring is open to every process",
            1 => "io_uring is limited to the io_uring_group",
            _ => "io_uring is disabled",
        },
    );
    out.push(io_uring);
    let (_, bpf) = sysctl(
        "sysctl.unprivileged_bpf_disabled",
        "unprivileged_bpf_disabled",
        "bpf",
        |n| match n {
            0 => "unprivileged bpf() is allowed",
            _ => "unprivileged bpf() is refused",
        },
    );
    out.push(bpf);
    let (paranoid, perf) = sysctl(
        "sysctl.perf_event_paranoid",
        "perf_event_paranoid",
        "perf_event_open",
        |n| match n {
            i64::MIN..=-1 => "perf events are open to everyone",
            0 | 1 => "unprivileged users may profile the kernel",
            _ => "unprivileged users may profile only their own processes",
        },
    );
    out.push(perf);
    if paranoid.is_some_and(|n| n <= 1) {
        notes.push(
            "perf_event_paranoid <= 1: /proc/kallsyms may show kernel addresses to unprivileged \
             readers on the host"
                .to_owned(),
        );
    }
    out
}

/// An error and its sources, joined with `: `, for a one-line detail.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(&format!(": {s}"));
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    const PURE_V2: &str = "28 24 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n";

    /// A tempdir laid out like a fully capable host.
    struct Host {
        tmp: tempfile::TempDir,
        roots: ProbeRoots,
    }

    impl Host {
        fn full() -> Host {
            let tmp = tempfile::tempdir().unwrap();
            let root = tmp.path().to_owned();
            let roots = ProbeRoots {
                proc: root.join("proc"),
                sys: root.join("sys"),
                dev: root.join("dev"),
                mountinfo: root.join("mountinfo"),
                fs_root: root.clone(),
            };
            let host = Host { tmp, roots };
            for ns in ["user", "pid", "mnt", "uts", "ipc", "net", "cgroup"] {
                host.write(&format!("proc/self/ns/{ns}"), "");
            }
            host.write(
                "proc/self/status",
                "Name:\tprobe\nSeccomp:\t0\nSeccomp_filters:\t0\n",
            );
            host.write("proc/sys/user/max_user_namespaces", "15000\n");
            host.write(
                "proc/sys/kernel/seccomp/actions_avail",
                "kill_process kill_thread trap errno user_notif trace log allow\n",
            );
            host.write("proc/sys/kernel/osrelease", "6.18.0-test\n");
            host.write("proc/sys/dev/tty/legacy_tiocsti", "0\n");
            host.write("proc/sys/kernel/io_uring_disabled", "2\n");
            host.write("proc/sys/kernel/unprivileged_bpf_disabled", "2\n");
            host.write("proc/sys/kernel/perf_event_paranoid", "2\n");
            host.write("sys/kernel/security/lsm", "lockdown,capability,landlock\n");
            host.write(
                "sys/fs/cgroup/cgroup.controllers",
                "cpuset cpu io memory hugetlb pids\n",
            );
            host.write("mountinfo", PURE_V2);
            host.write("dev/kvm", "");
            host.write("dev/tpmrm0", "");
            host
        }

        fn path(&self, rel: &str) -> PathBuf {
            self.tmp.path().join(rel)
        }

        fn write(&self, rel: &str, text: &str) {
            let path = self.path(rel);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, text).unwrap();
        }

        fn remove(&self, rel: &str) {
            fs::remove_file(self.path(rel)).unwrap();
        }

        fn probe(&self) -> HostFeatures {
            probe_with(&self.roots, Ok(6))
        }
    }

    fn feature<'a>(host: &'a HostFeatures, name: &str) -> &'a Feature {
        host.feature(name)
            .unwrap_or_else(|| panic!("no feature {name}"))
    }

    #[test]
    fn a_full_host_has_full_assurance() {
        let host = Host::full();
        let found = host.probe();
        let names: Vec<&str> = found.features.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "namespace.user",
                "namespace.pid",
                "namespace.mount",
                "namespace.uts",
                "namespace.ipc",
                "namespace.net",
                "namespace.cgroup",
                "userns.limit",
                "seccomp.filter",
                "landlock",
                "cgroup.memory",
                "cgroup.pids",
                "cgroup.cpu",
                "cgroup.freezer",
                "dev.kvm",
                "tpm",
                "sysctl.tiocsti",
                "sysctl.io_uring_disabled",
                "sysctl.unprivileged_bpf_disabled",
                "sysctl.perf_event_paranoid",
            ]
        );
        let unavailable: Vec<&str> = found
            .features
            .iter()
            .filter(|f| !f.available)
            .map(|f| f.name.as_str())
            .collect();
        assert!(unavailable.is_empty(), "{unavailable:?}");
        let required: Vec<&str> = found
            .features
            .iter()
            .filter(|f| f.required)
            .map(|f| f.name.as_str())
            .collect();
        assert_eq!(required.len(), 13);
        assert!(
            required
                .iter()
                .all(|r| !r.starts_with("sysctl.") && *r != "tpm")
        );

        assert_eq!(found.kernel, "6.18.0-test");
        assert_eq!(found.landlock_abi, Some(6));
        assert_eq!(
            feature(&found, "landlock").detail,
            "abi 6 (active security modules: lockdown,capability,landlock)"
        );
        assert_eq!(
            feature(&found, "userns.limit").detail,
            "max_user_namespaces = 15000"
        );
        let cgroup_dir = host.path("sys/fs/cgroup");
        assert_eq!(
            feature(&found, "cgroup.memory").detail,
            format!("v2 at {}", cgroup_dir.display())
        );
        assert_eq!(found.cgroup.as_ref().map(|c| c.version), Some(Version::V2));
        assert_eq!(
            found.assurance,
            Assurance {
                level: AssuranceLevel::Full,
                missing: vec![],
                notes: vec![]
            }
        );
        let json = serde_json::to_value(&found).unwrap();
        assert_eq!(json["assurance"]["level"], "full");
        assert_eq!(json["cgroup"]["version"], "v2");
        assert_eq!(json["features"][0]["required"], true);
    }

    #[test]
    fn without_landlock_assurance_is_degraded() {
        let host = Host::full();
        let nosys = probe_with(&host.roots, Err(io::Error::from(Errno::NOSYS)));
        assert_eq!(nosys.assurance.level, AssuranceLevel::Degraded);
        assert_eq!(nosys.assurance.missing, ["landlock"]);
        assert_eq!(nosys.landlock_abi, None);
        assert!(
            feature(&nosys, "landlock")
                .detail
                .starts_with("not built into this kernel")
        );

        host.remove("sys/kernel/security/lsm");
        let off = probe_with(&host.roots, Err(io::Error::from(Errno::OPNOTSUPP)));
        assert_eq!(off.assurance.missing, ["landlock"]);
        assert_eq!(
            feature(&off, "landlock").detail,
            "built in but not enabled at boot (add landlock to lsm=)"
        );
    }

    #[test]
    fn without_cgroups_assurance_is_degraded_and_names_the_controllers() {
        let host = Host::full();
        host.write("mountinfo", "22 26 0:20 / /proc rw - proc proc rw\n");
        let found = host.probe();
        assert_eq!(found.assurance.level, AssuranceLevel::Degraded);
        assert_eq!(
            found.assurance.missing,
            ["cgroup.memory", "cgroup.pids", "cgroup.cpu"]
        );
        assert_eq!(found.cgroup, None);
        assert!(
            feature(&found, "cgroup.pids")
                .detail
                .starts_with("no cgroup hierarchy")
        );
        assert!(
            found
                .assurance
                .notes
                .iter()
                .any(|n| n.starts_with("no cgroup freezer"))
        );

        // A v1 host with memory and cpu but no pids hierarchy.
        host.write(
            "mountinfo",
            "1 0 0:1 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n\
             2 0 0:2 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n\
             3 0 0:3 / /sys/fs/cgroup/freezer rw - cgroup cgroup rw,freezer\n",
        );
        let found = host.probe();
        assert_eq!(found.assurance.level, AssuranceLevel::Degraded);
        assert_eq!(found.assurance.missing, ["cgroup.pids"]);
        assert_eq!(
            feature(&found, "cgroup.cpu").detail,
            format!("v1 at {}", host.path("sys/fs/cgroup/cpu,cpuacct").display())
        );
        assert_eq!(
            feature(&found, "cgroup.pids").detail,
            "v1: no pids hierarchy mounted"
        );
        assert!(feature(&found, "cgroup.freezer").available);
    }

    #[test]
    fn missing_optional_features_only_add_notes() {
        let host = Host::full();
        host.remove("dev/kvm");
        host.remove("dev/tpmrm0");
        host.remove("proc/sys/dev/tty/legacy_tiocsti");
        host.write("proc/sys/kernel/perf_event_paranoid", "1\n");
        let found = host.probe();
        assert_eq!(found.assurance.level, AssuranceLevel::Full);
        assert!(found.assurance.missing.is_empty());
        assert_eq!(
            found.assurance.notes,
            [
                "perf_event_paranoid <= 1: /proc/kallsyms may show kernel addresses to \
                 unprivileged readers on the host",
                "no /dev/kvm: hardware virtualisation unavailable",
                "no TPM: attestation root will be software",
            ]
        );
        assert!(
            feature(&found, "tpm")
                .detail
                .contains("attestation will use the software root")
        );
        let tiocsti = feature(&found, "sysctl.tiocsti");
        assert!(!tiocsti.available);
        assert!(
            tiocsti
                .detail
                .ends_with("warren blocks TIOCSTI with seccomp anyway")
        );

        host.write("dev/tpm0", "");
        assert!(feature(&host.probe(), "tpm").available);
    }

    #[test]
    fn a_missing_namespace_or_seccomp_is_insufficient() {
        let host = Host::full();
        host.remove("proc/self/ns/user");
        host.write("proc/sys/user/max_user_namespaces", "0\n");
        host.write(
            "proc/sys/kernel/seccomp/actions_avail",
            "kill_thread trap errno allow\n",
        );
        let found = probe_with(&host.roots, Err(io::Error::from(Errno::NOSYS)));
        assert_eq!(found.assurance.level, AssuranceLevel::Insufficient);
        assert_eq!(
            found.assurance.missing,
            [
                "namespace.user",
                "userns.limit",
                "seccomp.filter",
                "landlock"
            ]
        );
        assert!(
            feature(&found, "seccomp.filter")
                .detail
                .starts_with("filter actions lack kill_process")
        );
        assert!(
            feature(&found, "userns.limit")
                .detail
                .ends_with("user namespaces are disabled")
        );

        // Seccomp also needs the Seccomp: line in /proc/self/status.
        let host = Host::full();
        host.write("proc/self/status", "Name:\tprobe\n");
        let found = host.probe();
        assert_eq!(found.assurance.missing, ["seccomp.filter"]);
        assert_eq!(found.assurance.level, AssuranceLevel::Insufficient);
    }

    #[test]
    fn probes_this_machine() {
        let found = probe(&ProbeRoots::default());
        for name in NAMESPACES
            .iter()
            .map(|(name, _, _)| *name)
            .chain(["seccomp.filter"])
        {
            let f = feature(&found, name);
            assert!(f.available, "{name}: {}", f.detail);
        }
        assert_ne!(found.kernel, "unknown");
        eprintln!("{}", serde_json::to_string_pretty(&found).unwrap());
    }
}
