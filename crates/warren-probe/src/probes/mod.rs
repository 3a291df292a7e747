//! The probe registry, the context probes run with, and shared helpers for file attempts.
//!
//! Every probe is a function from the [`Ctx`] to one [`Report`]. The runner (in `main.rs`)
//! executes each probe in a fresh child process (this binary re-executed with `__child NAME`), so
//! that a probe that changes its own process (chroot, unshare, capset) cannot influence the next
//! one, and so that a probe killed by the sandbox (`SIGSYS`, `SIGKILL`) is reported rather than
//! taking the whole run down.

use std::cell::OnceCell;
use std::io::{self, Read};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags};

use crate::cli::Options;
use crate::report::{Report, describe};

mod abuse;
mod dev;
mod fs;
mod id;
mod mnt;
mod net;
mod ns;
pub mod privs;
mod procs;
mod sys;
mod tty;

/// Environment variable through which a parent hands its scratch directory to its children.
pub const SCRATCH_ENV: &str = "WARREN_PROBE_SCRATCH";

/// One probe: a name (the contract with the tests) and the function that runs it.
pub struct Probe {
    /// `class.name`, e.g. `sys.keyctl`.
    pub name: &'static str,
    /// Runs the attempt and reports what it found.
    pub run: fn(&Ctx) -> Report,
    /// The attempt changes its own process (root, namespaces, capabilities) and must never run
    /// in the process that runs the other probes.
    pub isolated: bool,
}

impl Probe {
    const fn new(name: &'static str, run: fn(&Ctx) -> Report) -> Self {
        Probe {
            name,
            run,
            isolated: false,
        }
    }

    const fn isolated(name: &'static str, run: fn(&Ctx) -> Report) -> Self {
        Probe {
            name,
            run,
            isolated: true,
        }
    }

    /// The class prefix (`fs`, `sys`, ...).
    pub fn class(&self) -> &'static str {
        self.name.split('.').next().unwrap_or(self.name)
    }

    /// Abuse probes consume resources by design and only run when named (or their class is).
    pub fn is_abuse(&self) -> bool {
        self.class() == "abuse"
    }
}

/// Every probe, in the order `all` runs them. `fs.leaked_fds` comes first so that no probe's
/// own descriptor can be mistaken for a leak.
pub const PROBES: &[Probe] = &[
    Probe::new("fs.leaked_fds", fs::leaked_fds),
    Probe::new("fs.read_marker_path", fs::read_marker_path),
    Probe::new("fs.read_marker_dotdot", fs::read_marker_dotdot),
    Probe::new("fs.read_proc1_root_marker", fs::read_proc1_root_marker),
    Probe::new("fs.read_hostpid_root_marker", fs::read_hostpid_root_marker),
    Probe::new("fs.open_by_handle_at", fs::open_by_handle_at),
    Probe::new("fs.write_root", fs::write_root),
    Probe::new("fs.write_bin", fs::write_bin),
    Probe::isolated("fs.remount_root_rw", fs::remount_root_rw),
    Probe::new("fs.proc_self_exe_write", fs::proc_self_exe_write),
    Probe::new("fs.cwd_inside_root", fs::cwd_inside_root),
    Probe::isolated("mnt.chroot_escape", mnt::chroot_escape),
    Probe::isolated("mnt.fchdir_escape", mnt::fchdir_escape),
    Probe::isolated("mnt.pivot_root", mnt::pivot_root),
    Probe::isolated("mnt.mount_tmpfs", mnt::mount_tmpfs),
    Probe::isolated("mnt.umount_masked", mnt::umount_masked),
    Probe::new("mnt.new_mount_api", mnt::new_mount_api),
    Probe::isolated("ns.unshare_user", ns::unshare_user),
    Probe::isolated("ns.unshare_mount", ns::unshare_mount),
    Probe::isolated("ns.unshare_net", ns::unshare_net),
    Probe::isolated("ns.unshare_pid", ns::unshare_pid),
    Probe::isolated("ns.unshare_uts", ns::unshare_uts),
    Probe::isolated("ns.unshare_ipc", ns::unshare_ipc),
    Probe::isolated("ns.unshare_cgroup", ns::unshare_cgroup),
    Probe::isolated("ns.setns", ns::setns),
    Probe::new("ns.clone3", ns::clone3),
    Probe::new("proc.ptrace_sibling", procs::ptrace_sibling),
    Probe::new("proc.process_vm_readv", procs::process_vm_readv),
    Probe::new("proc.kill_host_pid", procs::kill_host_pid),
    Probe::new("proc.host_processes_visible", procs::host_processes_visible),
    Probe::new("proc.write_sysctl", procs::write_sysctl),
    Probe::new("proc.write_sysrq", procs::write_sysrq),
    Probe::new("proc.read_kcore", procs::read_kcore),
    Probe::new("proc.kallsyms_addresses", procs::kallsyms_addresses),
    Probe::new("proc.read_timer_list", procs::read_timer_list),
    Probe::new("proc.read_keys", procs::read_keys),
    Probe::new("sys.keyctl", sys::keyctl),
    Probe::new("sys.add_key", sys::add_key),
    Probe::new("sys.bpf", sys::bpf),
    Probe::new("sys.perf_event_open", sys::perf_event_open),
    Probe::new("sys.userfaultfd", sys::userfaultfd),
    Probe::new("sys.io_uring_setup", sys::io_uring_setup),
    Probe::new("sys.kexec_load", sys::kexec_load),
    Probe::new("sys.init_module", sys::init_module),
    Probe::new("sys.reboot", sys::reboot),
    Probe::new("sys.swapon", sys::swapon),
    Probe::new("sys.acct", sys::acct),
    Probe::new("sys.clock_settime", sys::clock_settime),
    Probe::new("sys.iopl", sys::iopl),
    Probe::new("sys.i386_abi", sys::i386_abi),
    Probe::new("sys.x32_abi", sys::x32_abi),
    Probe::new("sys.ioperm", sys::ioperm),
    Probe::new("sys.write_sys", sys::write_sys),
    Probe::new("dev.mknod_block", dev::mknod_block),
    Probe::new("dev.mknod_char", dev::mknod_char),
    Probe::new("dev.open_mem", dev::open_mem),
    Probe::new("dev.open_kmsg", dev::open_kmsg),
    Probe::new("dev.open_host_disk", dev::open_host_disk),
    Probe::new("tty.tiocsti", tty::tiocsti),
    Probe::new("tty.tiocsti_highbits", tty::tiocsti_highbits),
    Probe::new("tty.tioclinux", tty::tioclinux),
    Probe::new("net.raw_socket", net::raw_socket),
    Probe::new("net.packet_socket", net::packet_socket),
    Probe::new("net.connect_tcp", net::connect_tcp),
    Probe::new("net.abstract_unix", net::abstract_unix),
    Probe::new("net.netlink_route_change", net::netlink_route_change),
    Probe::new("net.vsock", net::vsock),
    Probe::new("net.interfaces", net::interfaces),
    Probe::new("priv.setuid_exec", privs::setuid_exec),
    Probe::new("priv.capabilities", privs::capabilities_probe),
    Probe::isolated("priv.capset", privs::capset),
    Probe::new("priv.no_new_privs", privs::no_new_privs),
    Probe::new("priv.seccomp_mode", privs::seccomp_mode),
    Probe::new("priv.landlock", privs::landlock),
    Probe::new("id.uid_map", id::uid_map),
    Probe::new("id.tmp_file_owner", id::tmp_file_owner),
    Probe::new("abuse.fork_bomb", abuse::fork_bomb),
    Probe::new("abuse.fill_tmp", abuse::fill_tmp),
];

/// Look a probe up by exact name.
pub fn find(name: &str) -> Option<&'static Probe> {
    PROBES.iter().find(|p| p.name == name)
}

/// Whether `pattern` (a probe name or a class prefix) selects `probe`.
fn matches(pattern: &str, probe: &Probe) -> bool {
    pattern == probe.name || pattern == probe.class()
}

/// The probes a target (`all`, a class, or a name) and `--only` filter select, in run order.
/// `all` leaves out the abuse class; naming an abuse probe or its class includes it.
pub fn select(target: &str, only: &[String]) -> Result<Vec<&'static Probe>, String> {
    for pattern in std::iter::once(target).chain(only.iter().map(String::as_str)) {
        if pattern != "all" && !PROBES.iter().any(|p| matches(pattern, p)) {
            return Err(format!(
                "unknown probe or class {pattern:?} (try `warren-probe list`)"
            ));
        }
    }
    Ok(PROBES
        .iter()
        .filter(|p| match target {
            "all" if only.is_empty() => !p.is_abuse(),
            "all" => true,
            t => matches(t, p),
        })
        .filter(|p| only.is_empty() || only.iter().any(|o| matches(o, p)))
        .collect())
}

/// What every probe gets: the options and a scratch directory.
pub struct Ctx {
    /// The parsed command-line options.
    pub opts: Options,
    scratch: OnceCell<Result<PathBuf, String>>,
    owns_scratch: bool,
}

impl Ctx {
    /// A context for the top-level run, which creates (and later removes) its scratch directory.
    pub fn new(opts: Options) -> Self {
        Ctx {
            opts,
            scratch: OnceCell::new(),
            owns_scratch: true,
        }
    }

    /// A context for a re-executed child, which uses its parent's scratch directory.
    pub fn for_child(opts: Options) -> Self {
        Ctx {
            opts,
            scratch: OnceCell::new(),
            owns_scratch: false,
        }
    }

    /// A private directory under `/tmp` for this run (created on first use), or why there is none.
    pub fn scratch(&self) -> Result<&Path, String> {
        self.scratch
            .get_or_init(|| {
                if !self.owns_scratch {
                    return std::env::var_os(SCRATCH_ENV)
                        .map(PathBuf::from)
                        .ok_or_else(|| "no scratch directory was handed down".to_owned());
                }
                let dir = PathBuf::from(format!("/tmp/warren-probe.{}", std::process::id()));
                std::fs::create_dir(&dir)
                    .map(|()| dir)
                    .map_err(|e| format!("cannot create a scratch directory in /tmp: {e}"))
            })
            .as_deref()
            .map_err(Clone::clone)
    }

    /// The scratch directory, if it was created already (for handing to children).
    pub fn existing_scratch(&self) -> Option<&Path> {
        self.scratch.get().and_then(|r| r.as_deref().ok())
    }

    /// Remove the scratch directory if this context created it.
    pub fn cleanup(&self) {
        if let (true, Some(dir)) = (self.owns_scratch, self.existing_scratch()) {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// `open(path, flags | O_CLOEXEC)`.
pub fn open(path: &Path, flags: OFlags) -> io::Result<OwnedFd> {
    Ok(rustix::fs::open(
        path,
        flags | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// Read at most `max` bytes of a file.
pub fn read_prefix(path: &Path, max: u64) -> io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    std::fs::File::open(path)?.take(max).read_to_end(&mut buf)?;
    Ok(buf)
}

/// Try to read each path; open if any yields bytes. Skipped when there is nothing to try.
pub fn read_attempts(probe: &str, paths: &[PathBuf], skip_reason: &str) -> Report {
    if paths.is_empty() {
        return Report::skipped(probe, skip_reason);
    }
    let mut notes = Vec::new();
    let mut first_err = None;
    for path in paths {
        match read_prefix(path, 256) {
            Ok(bytes) => {
                return Report::open(
                    probe,
                    format!("read {} bytes of {}", bytes.len(), path.display()),
                );
            }
            Err(e) => {
                notes.push(format!("{}: {}", path.display(), describe(&e)));
                first_err.get_or_insert(e);
            }
        }
    }
    let report = Report::blocked(probe, notes.join("; "));
    match first_err {
        Some(e) => report.with_errno(&e),
        None => report,
    }
}

/// Try to open each existing path with `flags` (never writing); open if any opens. Paths that
/// do not exist are listed but do not decide the outcome unless none exists.
pub fn open_attempts(probe: &str, paths: &[&str], flags: OFlags) -> Report {
    let mut notes = Vec::new();
    let mut first_err: Option<io::Error> = None;
    let mut missing: Option<io::Error> = None;
    for path in paths {
        match open(Path::new(path), flags) {
            Ok(_fd) => return Report::open(probe, format!("opened {path} ({flags:?})")),
            Err(e) => {
                notes.push(format!("{path}: {}", describe(&e)));
                if e.kind() == io::ErrorKind::NotFound {
                    missing.get_or_insert(e);
                } else {
                    first_err.get_or_insert(e);
                }
            }
        }
    }
    let report = Report::blocked(probe, notes.join("; "));
    match first_err.or(missing) {
        Some(e) => report.with_errno(&e),
        None => report,
    }
}

/// Read this process's `/proc/self/status`.
pub fn self_status() -> io::Result<String> {
    std::fs::read_to_string("/proc/self/status")
}

/// Try to make this (child) process's mount namespace private: `unshare(CLONE_NEWNS)` and then
/// `MS_REC | MS_PRIVATE` on `/`, so that mounts made afterwards can never reach any other
/// process. Returns whether that worked.
pub fn private_mount_ns() -> bool {
    use rustix::mount::{MountPropagationFlags, mount_change};
    warren_sys::probe::unshare(warren_sys::ns::MOUNT).is_ok()
        && mount_change(
            "/",
            MountPropagationFlags::REC | MountPropagationFlags::PRIVATE,
        )
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_classed() {
        let mut names: Vec<_> = PROBES.iter().map(|p| p.name).collect();
        let n = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), n, "duplicate probe names");
        for p in PROBES {
            assert!(
                [
                    "fs", "mnt", "ns", "proc", "sys", "dev", "tty", "net", "priv", "id", "abuse"
                ]
                .contains(&p.class()),
                "{}",
                p.name
            );
        }
        assert_eq!(PROBES[0].name, "fs.leaked_fds");
    }

    #[test]
    fn selection_rules() {
        let all = select("all", &[]).unwrap();
        assert!(all.iter().all(|p| !p.is_abuse()));
        assert_eq!(all.len(), PROBES.len() - 2);
        let fs = select("fs", &[]).unwrap();
        assert!(fs.iter().all(|p| p.class() == "fs") && fs.len() == 11);
        let one = select("sys.bpf", &[]).unwrap();
        assert_eq!(one.len(), 1);
        let only = select("all", &["abuse.fork_bomb".into(), "net".into()]).unwrap();
        assert!(only.iter().any(|p| p.name == "abuse.fork_bomb"));
        assert!(
            only.iter()
                .all(|p| p.class() == "net" || p.name == "abuse.fork_bomb")
        );
        assert!(select("nope", &[]).is_err());
        assert!(select("all", &["sys.nope".into()]).is_err());
    }

    #[test]
    fn read_attempts_report_first_error() {
        let r = read_attempts(
            "t",
            &[PathBuf::from("/nonexistent-warren-probe-test")],
            "none",
        );
        assert_eq!(r.outcome, crate::report::Outcome::Blocked);
        assert_eq!(r.errno.as_deref(), Some("ENOENT"));
        let r = read_attempts("t", &[], "no markers");
        assert_eq!(r.outcome, crate::report::Outcome::Skipped);
        let r = read_attempts("t", &[PathBuf::from("/proc/self/status")], "none");
        assert_eq!(r.outcome, crate::report::Outcome::Open);
    }
}
