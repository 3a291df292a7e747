//! The escape and abuse suite (issue 3): `warren-probe` runs inside environments and attempts
//! every attack of `docs/threat-model.md`; each result must be blocked by its expected mechanism,
//! and the host must be unchanged. The same probe run on the host as root is the positive
//! control (crates/warren-probe/tests/positive_control.rs asserts those attacks succeed there),
//! so a probe that could never see an escape cannot pass.

mod common;
use common::*;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The probe binary.
fn probe_bin() -> &'static Path {
    workspace_bin("warren-probe", "warren-probe")
}

/// One probe result.
#[derive(Debug, Clone)]
struct Outcome {
    outcome: String,
    errno: Option<String>,
    detail: String,
}

fn parse(stdout: &str) -> BTreeMap<String, Outcome> {
    // A line may start with characters a successful TIOCSTI pushed into the terminal.
    stdout
        .lines()
        .filter_map(|l| l.find("{\"probe\"").map(|i| &l[i..]))
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                v["probe"].as_str().unwrap().to_owned(),
                Outcome {
                    outcome: v["outcome"].as_str().unwrap().to_owned(),
                    errno: v["errno"].as_str().map(str::to_owned),
                    detail: v["detail"].as_str().unwrap_or("").to_owned(),
                },
            )
        })
        .collect()
}

/// Run the probe in a `--binary` environment with `extra` warren flags.
fn probe_in_env(
    extra: &[&str],
    args: &[&str],
) -> (std::process::Output, BTreeMap<String, Outcome>) {
    let mut c = warren();
    c.args(["run", "--name", &unique("probe"), "--binary"])
        .arg(probe_bin())
        .args(extra);
    c.arg("--").arg("/warren-probe").args(args);
    let o = c.output().unwrap();
    let results = parse(&stdout(&o));
    (o, results)
}

/// What blocks each attack, as (probe, accepted errnos, mechanism). An empty errno list means
/// the probe reports an observed effect rather than an errno (checked through its detail).
const EXPECTED: &[(&str, &[&str], &str)] = &[
    // 1. host files
    (
        "fs.read_marker_path",
        &["ENOENT"],
        "private root: the host tree is not in the mount namespace",
    ),
    (
        "fs.read_marker_dotdot",
        &["ENOENT"],
        "pivot_root: .. of / is /",
    ),
    (
        "fs.read_proc1_root_marker",
        &["ENOENT"],
        "pid namespace: pid 1 is the workload, its root is the environment's",
    ),
    (
        "fs.read_hostpid_root_marker",
        &["ENOENT"],
        "pid namespace: host pids do not exist inside",
    ),
    (
        "fs.open_by_handle_at",
        &["EPERM"],
        "seccomp (no open_by_handle_at, no CAP_DAC_READ_SEARCH)",
    ),
    // 2. the read-only image
    ("fs.write_root", &["EROFS"], "read-only root mount"),
    (
        "fs.write_bin",
        &["EROFS", "ETXTBSY", "EACCES"],
        "read-only root mount",
    ),
    (
        "fs.remount_root_rw",
        &["EPERM"],
        "seccomp denies mount; no CAP_SYS_ADMIN",
    ),
    // 3. launcher overwrite and leaked descriptors
    (
        "fs.proc_self_exe_write",
        &["EACCES", "ETXTBSY", "EROFS"],
        "Landlock and a read-only root: the program is a read-only bind; Warren's binary is never inside",
    ),
    ("fs.leaked_fds", &[], "close_range(CLOEXEC) before exec"),
    ("fs.cwd_inside_root", &[], "chdir / after pivot_root"),
    // 4. mount escapes
    ("mnt.chroot_escape", &["EPERM"], "seccomp denies chroot"),
    (
        "mnt.fchdir_escape",
        &["EPERM"],
        "seccomp denies chroot; no directory descriptor crosses exec",
    ),
    ("mnt.pivot_root", &["EPERM"], "seccomp denies pivot_root"),
    ("mnt.mount_tmpfs", &["EPERM"], "seccomp denies mount"),
    ("mnt.umount_masked", &["EPERM"], "seccomp denies umount2"),
    (
        "mnt.new_mount_api",
        &["EPERM"],
        "seccomp denies fsopen and open_tree",
    ),
    // 5. namespaces
    ("ns.unshare_user", &["EPERM"], "seccomp denies unshare"),
    ("ns.unshare_mount", &["EPERM"], "seccomp denies unshare"),
    ("ns.unshare_net", &["EPERM"], "seccomp denies unshare"),
    ("ns.unshare_pid", &["EPERM"], "seccomp denies unshare"),
    ("ns.unshare_uts", &["EPERM"], "seccomp denies unshare"),
    ("ns.unshare_ipc", &["EPERM"], "seccomp denies unshare"),
    ("ns.unshare_cgroup", &["EPERM"], "seccomp denies unshare"),
    ("ns.setns", &["EPERM"], "seccomp denies setns"),
    (
        "ns.clone3",
        &["ENOSYS"],
        "seccomp answers clone3 with ENOSYS so libc falls back to the filtered clone",
    ),
    // 6. other processes
    ("proc.ptrace_sibling", &["EPERM"], "seccomp denies ptrace"),
    (
        "proc.process_vm_readv",
        &["EPERM"],
        "seccomp denies process_vm_readv",
    ),
    ("proc.kill_host_pid", &["ESRCH"], "pid namespace"),
    (
        "proc.host_processes_visible",
        &[],
        "pid namespace and a fresh /proc",
    ),
    // 7. kernel attack surface
    ("sys.keyctl", &["EPERM"], "seccomp"),
    ("sys.add_key", &["EPERM"], "seccomp"),
    ("sys.bpf", &["EPERM"], "seccomp"),
    ("sys.perf_event_open", &["EPERM"], "seccomp"),
    ("sys.userfaultfd", &["EPERM"], "seccomp"),
    ("sys.io_uring_setup", &["EPERM"], "seccomp"),
    ("sys.kexec_load", &["EPERM"], "seccomp"),
    ("sys.init_module", &["EPERM"], "seccomp"),
    ("sys.reboot", &["EPERM"], "seccomp"),
    ("sys.swapon", &["EPERM"], "seccomp"),
    ("sys.acct", &["EPERM"], "seccomp"),
    ("sys.clock_settime", &["EPERM"], "seccomp"),
    ("sys.iopl", &["EPERM"], "seccomp"),
    ("sys.ioperm", &["EPERM"], "seccomp"),
    (
        "sys.i386_abi",
        &[],
        "seccomp kills a call made through the i386 gate (architecture check)",
    ),
    (
        "sys.x32_abi",
        &["EPERM"],
        "seccomp allow-list: x32 numbers match no entry",
    ),
    // 8. devices
    (
        "dev.mknod_block",
        &["EPERM"],
        "seccomp denies mknod; no CAP_MKNOD",
    ),
    (
        "dev.mknod_char",
        &["EPERM"],
        "seccomp denies mknod; no CAP_MKNOD",
    ),
    ("dev.open_mem", &["ENOENT"], "minimal /dev"),
    ("dev.open_kmsg", &["ENOENT"], "minimal /dev"),
    ("dev.open_host_disk", &["ENOENT"], "minimal /dev"),
    // 9. /proc and /sys
    (
        "proc.write_sysctl",
        &["EACCES", "EROFS"],
        "unprivileged host uid (DAC), Landlock, read-only /proc/sys",
    ),
    ("sys.write_sys", &["ENOENT"], "no /sys"),
    (
        "proc.kallsyms_addresses",
        &[],
        "no CAP_SYSLOG in the host namespace: addresses read as zero",
    ),
    ("proc.read_timer_list", &[], "masked with /dev/null"),
    ("proc.read_keys", &[], "masked with /dev/null"),
    // 11. network
    ("net.raw_socket", &["EPERM"], "no CAP_NET_RAW"),
    (
        "net.packet_socket",
        &["EPERM"],
        "seccomp allows only unix, inet, inet6 and route netlink",
    ),
    ("net.netlink_route_change", &["EPERM"], "no CAP_NET_ADMIN"),
    ("net.vsock", &["EPERM"], "seccomp socket-family filter"),
    ("net.interfaces", &[], "own network namespace: lo only"),
    // 12, 13, 20. privileges
    ("priv.setuid_exec", &[], "no_new_privs and a nosuid root"),
    (
        "priv.capabilities",
        &[],
        "all five capability sets emptied, securebits locked",
    ),
    (
        "priv.capset",
        &["EPERM"],
        "seccomp denies capset; the bounding set is empty",
    ),
    ("priv.no_new_privs", &[], "no_new_privs"),
    ("priv.seccomp_mode", &[], "seccomp filter installed last"),
    (
        "priv.landlock",
        &["EACCES"],
        "Landlock allows writes only under /tmp, /dev/shm and the devices",
    ),
    // 19. identity
    ("id.uid_map", &[], "own unprivileged host uid range"),
    (
        "id.tmp_file_owner",
        &[],
        "files created inside belong to the range on the host",
    ),
];

#[test]
fn every_attack_is_blocked_by_its_expected_mechanism() {
    let marker = std::env::temp_dir().join(format!("warren-escape-marker-{}", std::process::id()));
    std::fs::write(&marker, "host secret").unwrap();
    let mut sleeper = Command::new("sleep").arg("60").spawn().unwrap();
    let host_pid = sleeper.id().to_string();
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let (o, results) = probe_in_env(
        &[],
        &[
            "--marker",
            marker.to_str().unwrap(),
            "--host-pid",
            &host_pid,
            "all",
        ],
    );
    assert_code(&o, 0);
    let mut failures = Vec::new();
    for (probe, errnos, mechanism) in EXPECTED {
        let Some(r) = results.get(*probe) else {
            failures.push(format!("{probe}: no result"));
            continue;
        };
        if r.outcome != "blocked" {
            failures.push(format!(
                "{probe}: {} ({:?}) — expected blocked by {mechanism}: {}",
                r.outcome, r.errno, r.detail
            ));
        } else if !errnos.is_empty() && !errnos.iter().any(|e| r.errno.as_deref() == Some(e)) {
            failures.push(format!(
                "{probe}: blocked with {:?}, expected one of {errnos:?} ({mechanism}): {}",
                r.errno, r.detail
            ));
        }
    }
    // Nothing the probe ran may be open, whether or not this table names it.
    for (probe, r) in &results {
        if r.outcome == "open" {
            failures.push(format!("{probe}: OPEN: {}", r.detail));
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // Specific effects behind the effect-only rows.
    assert!(
        results["fs.leaked_fds"].detail.contains("[0, 1, 2]"),
        "{:?}",
        results["fs.leaked_fds"]
    );
    assert!(
        results["proc.kallsyms_addresses"]
            .detail
            .contains("read as zero")
            || results["proc.kallsyms_addresses"].detail.contains("empty")
    );
    assert!(
        results["net.interfaces"].detail.ends_with(": lo"),
        "{:?}",
        results["net.interfaces"]
    );
    assert!(results["priv.seccomp_mode"].detail.contains("Seccomp: 2"));
    assert!(
        results["sys.i386_abi"].detail.contains("SIGSYS"),
        "{:?}",
        results["sys.i386_abi"]
    );
    // From the host: nothing changed.
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), "host secret");
    assert_eq!(
        std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap(),
        hostname
    );
    assert!(
        sleeper.try_wait().unwrap().is_none(),
        "the host process was harmed"
    );
    sleeper.kill().unwrap();
    let _ = sleeper.wait();
    std::fs::remove_file(&marker).unwrap();
}

#[test]
fn the_launcher_cannot_be_signalled_read_or_reached() {
    // The probe is given the pid of its own launcher (`warren run`) and of the test process.
    let mut c = warren();
    let name = unique("launcher");
    c.args(["run", "--name", &name, "--binary"])
        .arg(probe_bin());
    c.args(["--", "/warren-probe", "--host-pid"])
        .arg(std::process::id().to_string());
    c.args(["--only", "proc.kill_host_pid,proc.process_vm_readv,proc.host_processes_visible,fs.read_hostpid_root_marker,fs.leaked_fds"]);
    let o = c.output().unwrap();
    assert_code(&o, 0);
    let r = parse(&stdout(&o));
    assert_eq!(
        r["proc.kill_host_pid"].errno.as_deref(),
        Some("ESRCH"),
        "{:?}",
        r["proc.kill_host_pid"]
    );
    assert_eq!(r["proc.host_processes_visible"].outcome, "blocked");
    assert_eq!(
        r["fs.leaked_fds"].outcome, "blocked",
        "a launcher descriptor crossed: {:?}",
        r["fs.leaked_fds"]
    );
}

#[test]
fn host_loopback_abstract_sockets_and_other_environments_are_unreachable() {
    // A listener on the host's loopback and a host abstract socket.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    let abs_name = format!("warren-escape-{}", std::process::id());
    let abs = std::os::unix::net::UnixListener::bind_addr(
        &<std::os::unix::net::SocketAddr as std::os::linux::net::SocketAddrExt>::from_abstract_name(abs_name.as_bytes()).unwrap(),
    )
    .unwrap();
    abs.set_nonblocking(true).unwrap();
    // Another environment listening on its own loopback.
    let other_port = 40_000 + (std::process::id() % 20_000) as u16;
    let other = Background::start(
        &unique("listener"),
        &[
            "--binary",
            probe_bin().to_str().unwrap(),
            "--",
            "/warren-probe",
            "listen-tcp",
            &other_port.to_string(),
            "30",
        ],
    );
    let target = format!("127.0.0.1:{port}");
    let other_target = format!("127.0.0.1:{other_port}");
    let (o, r) = probe_in_env(
        &[],
        &[
            "--tcp",
            &target,
            "--tcp",
            &other_target,
            "--abstract",
            &abs_name,
            "--only",
            "net.connect_tcp,net.abstract_unix,net.interfaces",
        ],
    );
    assert_code(&o, 0);
    assert_eq!(
        r["net.connect_tcp"].outcome, "blocked",
        "{:?}",
        r["net.connect_tcp"]
    );
    assert_eq!(
        r["net.connect_tcp"].errno.as_deref(),
        Some("ECONNREFUSED"),
        "{:?}",
        r["net.connect_tcp"]
    );
    assert_eq!(
        r["net.abstract_unix"].outcome, "blocked",
        "{:?}",
        r["net.abstract_unix"]
    );
    // Nothing arrived on the host side.
    assert!(listener.accept().is_err(), "the host listener was reached");
    assert!(
        abs.accept().is_err(),
        "the host abstract socket was reached"
    );
    // Positive controls: the host reaches its own listener, and the other environment's
    // listener works from inside that environment's namespace (it answered `ready`).
    assert!(std::net::TcpStream::connect(&target).is_ok());
    assert!(other.inspect().is_some());
}

#[test]
fn files_created_inside_belong_to_the_environment_range_on_the_host() {
    let name = unique("owner");
    let env = Background::start(
        &name,
        &[
            "--rootfs",
            busybox_root().to_str().unwrap(),
            "--",
            "/bin/sh",
            "-c",
            "echo x > /tmp/made-inside; sleep 30",
        ],
    );
    let pid = env.pid();
    let base = env.inspect().unwrap()["applied"]["uid_map"]["host_base"]
        .as_u64()
        .unwrap();
    let path = format!("/proc/{pid}/root/tmp/made-inside");
    let mut meta = None;
    for _ in 0..100 {
        if let Ok(m) = std::fs::metadata(&path) {
            meta = Some(m);
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    use std::os::unix::fs::MetadataExt;
    let meta = meta.expect("the file made inside is visible from the host");
    assert_eq!(
        meta.uid() as u64,
        base,
        "owned by host uid {} (not the range base {base})",
        meta.uid()
    );
    assert_eq!(meta.gid() as u64, base);
    assert_ne!(meta.uid(), 0, "a file made inside belongs to host root");
}

#[test]
fn a_fork_bomb_is_stopped_inside_and_a_neighbour_keeps_running() {
    let neighbour = Background::start(
        &unique("nb"),
        &[
            "--rootfs",
            busybox_root().to_str().unwrap(),
            "--",
            "/bin/sleep",
            "30",
        ],
    );
    let (o, r) = probe_in_env(
        &["--pids", "32"],
        &["--fork-cap", "5000", "abuse.fork_bomb"],
    );
    assert_code(&o, 0);
    let fb = &r["abuse.fork_bomb"];
    assert_eq!(fb.outcome, "blocked", "{fb:?}");
    assert_eq!(fb.errno.as_deref(), Some("EAGAIN"), "{fb:?}");
    assert!(neighbour.inspect().is_some(), "the neighbour died");
    // The host can still fork.
    assert!(Command::new("true").status().unwrap().success());
}

#[test]
fn a_memory_bomb_is_oom_killed_inside_only() {
    let neighbour = Background::start(
        &unique("nb"),
        &[
            "--rootfs",
            busybox_root().to_str().unwrap(),
            "--",
            "/bin/sleep",
            "30",
        ],
    );
    let mut c = warren();
    c.args([
        "run",
        "--name",
        &unique("mem"),
        "--memory",
        "48M",
        "--json",
        "--binary",
    ])
    .arg(probe_bin());
    c.args(["--", "/warren-probe", "memory-bomb", "512"]);
    let o = c.output().unwrap();
    assert_code(&o, 137);
    let last: serde_json::Value = serde_json::from_str(stdout(&o).lines().last().unwrap()).unwrap();
    assert_eq!(last["oom_killed"], true);
    assert_eq!(last["signal"], 9);
    assert!(neighbour.inspect().is_some(), "the neighbour died");
}

#[test]
fn filling_tmp_stops_at_the_tmpfs_limit() {
    let before = rustix_statvfs_free("/");
    let (o, r) = probe_in_env(
        &["--tmpfs-size", "8M"],
        &["--fill-cap-mb", "64", "abuse.fill_tmp"],
    );
    assert_code(&o, 0);
    let f = &r["abuse.fill_tmp"];
    assert_eq!(f.outcome, "blocked", "{f:?}");
    assert_eq!(f.errno.as_deref(), Some("ENOSPC"), "{f:?}");
    let after = rustix_statvfs_free("/");
    // The host disk did not lose anything near 8 MiB to the environment.
    assert!(
        before.saturating_sub(after) < 64 << 20,
        "host disk shrank by {}",
        before - after
    );
}

fn rustix_statvfs_free(path: &str) -> u64 {
    let out = Command::new("df")
        .args(["-B1", "--output=avail", path])
        .output()
        .unwrap();
    stdout(&out).lines().nth(1).unwrap().trim().parse().unwrap()
}

#[test]
fn a_cpu_hog_is_held_to_its_share_and_a_neighbour_progresses() {
    // Two hogs side by side for two seconds: one limited to 0.2 cpu, one unlimited.
    let spin = |extra: &'static [&'static str]| {
        let bin = probe_bin().to_owned();
        std::thread::spawn(move || {
            let mut c = warren();
            c.args(["run", "--name", &unique("hog"), "--binary"])
                .arg(bin)
                .args(extra);
            c.args(["--", "/warren-probe", "spin", "2"]);
            let o = c.output().unwrap();
            assert_code(&o, 0);
            // `spin` ends with {"seconds":N,"total_iterations":M}.
            let last: serde_json::Value =
                serde_json::from_str(stdout(&o).lines().last().unwrap()).unwrap();
            last["total_iterations"].as_f64().unwrap() / last["seconds"].as_f64().unwrap()
        })
    };
    // On a loaded machine the unlimited hog may get little more than 0.2 cpu itself: a pair of
    // runs in which it did is no evidence either way, so up to three pairs are run.
    let mut seen = Vec::new();
    for _ in 0..3 {
        let limited = spin(&["--cpus", "0.2"]);
        let free = spin(&[]);
        let (limited, free) = (limited.join().unwrap(), free.join().unwrap());
        if limited * 2.0 < free {
            return;
        }
        seen.push((limited, free));
    }
    panic!("a 0.2-cpu hog was never held below half an unlimited one's rate: {seen:?}");
}

/// A busybox root that also holds the probe, its libraries, a set-uid-root copy and a copy with
/// file capabilities, as a hostile image would.
fn probe_rootfs() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let st = Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", busybox_root().display()))
        .arg(root)
        .status()
        .unwrap();
    assert!(st.success());
    let resolved = warren_sandbox_files(probe_bin());
    for (host, target) in &resolved {
        let dst = root.join(target.strip_prefix("/").unwrap());
        std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
        std::fs::copy(host, &dst).unwrap();
    }
    std::fs::copy(probe_bin(), root.join("bin/warren-probe")).unwrap();
    std::fs::copy(probe_bin(), root.join("bin/probe-suid")).unwrap();
    std::fs::copy(probe_bin(), root.join("bin/probe-caps")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        root.join("bin/probe-suid"),
        std::fs::Permissions::from_mode(0o6755),
    )
    .unwrap();
    let st = Command::new("setcap")
        .arg("cap_sys_admin,cap_setuid,cap_dac_override+eip")
        .arg(root.join("bin/probe-caps"))
        .status()
        .unwrap();
    assert!(st.success(), "setcap failed");
    std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

/// The files `ldd` says a program loads, as (host file, path the loader opens).
fn warren_sandbox_files(bin: &Path) -> Vec<(PathBuf, PathBuf)> {
    let out = Command::new("ldd").arg(bin).output().unwrap();
    stdout(&out)
        .lines()
        .filter_map(|l| {
            let path = l.split_whitespace().find(|w| w.starts_with('/'))?;
            Some((std::fs::canonicalize(path).ok()?, PathBuf::from(path)))
        })
        .collect()
}

#[test]
fn setuid_and_file_capability_binaries_grant_nothing() {
    let root = probe_rootfs();
    let r = root.path().to_str().unwrap();
    let args = [
        "--setuid-exe",
        "/bin/probe-suid",
        "--setuid-exe",
        "/bin/probe-caps",
        "--only",
        "priv.setuid_exec,priv.capabilities",
    ];
    let o = warren()
        .args([
            "run",
            "--name",
            &unique("suid"),
            "--rootfs",
            r,
            "--",
            "/bin/warren-probe",
        ])
        .args(args)
        .output()
        .unwrap();
    assert_code(&o, 0);
    let res = parse(&stdout(&o));
    let s = &res["priv.setuid_exec"];
    assert_eq!(s.outcome, "blocked", "{s:?}");
    assert!(
        s.detail.contains("probe-suid: nothing gained")
            && s.detail.contains("probe-caps: nothing gained"),
        "{s:?}"
    );
    assert_eq!(res["priv.capabilities"].outcome, "blocked");
    // Positive control: the same binaries, run on the host by an unprivileged user, do grant.
    let ctl = Command::new("setpriv")
        .args([
            "--reuid",
            "65534",
            "--regid",
            "65534",
            "--clear-groups",
            "--",
        ])
        .arg(root.path().join("bin/warren-probe"))
        .args(["--setuid-exe"])
        .arg(root.path().join("bin/probe-suid"))
        .args(["--only", "priv.setuid_exec"])
        .output()
        .unwrap();
    let ctl = parse(&stdout(&ctl));
    assert_eq!(
        ctl["priv.setuid_exec"].outcome, "open",
        "control: {:?}",
        ctl["priv.setuid_exec"]
    );
}

#[test]
fn tiocsti_and_tioclinux_on_an_inherited_terminal_are_refused() {
    // `script` gives the command a pseudo-terminal as standard input.
    let cmd = format!(
        "{} run --name {} --binary {} -- /warren-probe --tty-fd 0 --only tty.tiocsti,tty.tiocsti_highbits,tty.tioclinux",
        env!("CARGO_BIN_EXE_warren"),
        unique("tty"),
        probe_bin().display()
    );
    let o = Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let text = stdout(&o).replace('\r', "");
    let r = parse(&text);
    for p in ["tty.tiocsti", "tty.tiocsti_highbits", "tty.tioclinux"] {
        let x = r.get(p).unwrap_or_else(|| panic!("{p} missing: {text}"));
        assert_eq!(x.outcome, "blocked", "{p}: {x:?}");
        assert_eq!(x.errno.as_deref(), Some("EPERM"), "{p}: {x:?}");
    }
    // Positive control: on the host, under the same pseudo-terminal, TIOCSTI works.
    let ctl = format!(
        "{} --tty-fd 0 --only tty.tiocsti,tty.tiocsti_highbits",
        probe_bin().display()
    );
    let o = Command::new("script")
        .args(["-qec", &ctl, "/dev/null"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let r = parse(&stdout(&o).replace('\r', ""));
    assert_eq!(
        r["tty.tiocsti"].outcome, "open",
        "control: {:?}",
        r["tty.tiocsti"]
    );
    assert_eq!(
        r["tty.tiocsti_highbits"].outcome, "open",
        "control: {:?}",
        r["tty.tiocsti_highbits"]
    );
}

/// A copy of the busybox root that `hostile` then alters, as the owner of a `--rootfs` tree
/// (or an image) would.
fn hostile_root(hostile: impl FnOnce(&Path)) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let st = Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", busybox_root().display()))
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(st.success());
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    hostile(dir.path());
    dir
}

/// What the environment sees of its `/proc` and `/sys`: the type of the file system on
/// `/proc`, whether its own status file is there, and whether a cgroup view is mounted.
const PROC_AND_SYS: &str = "echo proc=$(stat -f -c %T /proc); \
     [ -r /proc/self/status ] && echo status=yes; \
     [ -d /sys/fs/cgroup ] && [ -n \"$(ls /sys/fs/cgroup)\" ] && echo view=/sys; \
     [ -d /proc/fs/cgroup ] && echo view=/proc; true";

/// Runs [`PROC_AND_SYS`] in a copy of the busybox root whose `/sys` is a link to `target`.
fn run_with_sys_linked_to(target: &Path, name: &str) -> std::process::Output {
    let root = hostile_root(|r| {
        std::fs::remove_dir(r.join("sys")).unwrap();
        std::os::unix::fs::symlink(target, r.join("sys")).unwrap();
    });
    warren()
        .args(["run", "--name", &unique(name), "--rootfs"])
        .arg(root.path())
        .args(["--", "/bin/sh", "-c", PROC_AND_SYS])
        .output()
        .unwrap()
}

#[test]
fn a_root_whose_sys_is_a_symlink_steers_no_mount() {
    // Positive control: with a real /sys directory the cgroup view is mounted there, so a
    // link at /sys would be followed if the launcher looked through it.
    let o = run_sh(&unique("sysdir"), &[], PROC_AND_SYS);
    assert_code(&o, 0);
    let out = stdout(&o);
    assert!(
        out.contains("proc=proc") && out.contains("status=yes") && out.contains("view=/sys"),
        "control: {out}"
    );

    // `sys -> proc`: the view's tmpfs used to land on the fresh procfs and hide it (and every
    // /proc mask then found nothing to cover). Now the link is not a directory to mount on:
    // the environment keeps its procfs and gets no view.
    let o = run_with_sys_linked_to(Path::new("proc"), "syslink");
    assert_code(&o, 0);
    let out = stdout(&o);
    assert!(
        out.contains("proc=proc") && out.contains("status=yes"),
        "a /sys link redirected a mount onto /proc: {out}"
    );
    assert!(!out.contains("view="), "{out}");

    // `sys -> <a host directory>`: absolute links resolve against the host's tree before the
    // pivot; the launch must not mount there (nothing of it is visible inside either).
    let host = tempfile::tempdir().unwrap();
    std::fs::write(host.path().join("marker"), "host").unwrap();
    let o = run_with_sys_linked_to(host.path(), "syshost");
    assert_code(&o, 0);
    assert!(!stdout(&o).contains("view="), "{}", stdout(&o));
    assert_eq!(
        std::fs::read_to_string(host.path().join("marker")).unwrap(),
        "host"
    );
}

#[test]
fn inherited_host_descriptors_open_nothing_else_on_the_host() {
    // A host directory as standard input, a host file as standard output: both world-readable
    // (and the directory world-writable), so only Landlock stands between the workload and
    // what lies beneath them or a second, read-write opening of them.
    let host = tempfile::tempdir().unwrap();
    let dir = host.path().join("dir");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("secret"), "HOSTSECRET\n").unwrap();
    let out = host.path().join("out");
    std::fs::write(&out, "HOSTOUT\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(host.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    std::fs::set_permissions(dir.join("secret"), std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o666)).unwrap();
    let script = "cat /proc/self/fd/0/secret >&2 && echo read-beneath-stdin >&2; \
                  touch /proc/self/fd/0/planted && echo made-a-file >&2; \
                  exec 9>&1; cat /proc/self/fd/9 >&2 && echo reopened-stdout >&2; \
                  echo written-through-fd-1; true";
    let run = |cmd: &mut Command| {
        cmd.stdin(std::fs::File::open(&dir).unwrap())
            .stdout(std::fs::OpenOptions::new().append(true).open(&out).unwrap())
            .output()
            .unwrap()
    };

    // Positive control: the same script on the host reaches both.
    let o = run(Command::new("/bin/sh").args(["-c", script]));
    let err = stderr(&o);
    assert!(
        err.contains("HOSTSECRET")
            && err.contains("made-a-file")
            && err.contains("reopened-stdout"),
        "control: {err}"
    );
    std::fs::remove_file(dir.join("planted")).unwrap();
    std::fs::write(&out, "HOSTOUT\n").unwrap();

    let mut c = warren();
    c.args(["run", "--name", &unique("fds"), "--rootfs"])
        .arg(busybox_root())
        .args(["--", "/bin/sh", "-c", script]);
    let o = run(&mut c);
    assert_code(&o, 0);
    let err = stderr(&o);
    assert!(
        !err.contains("HOSTSECRET") && !err.contains("read-beneath-stdin"),
        "read beneath an inherited directory: {err}"
    );
    assert!(!err.contains("made-a-file"), "{err}");
    assert!(!dir.join("planted").exists());
    assert!(!err.contains("reopened-stdout"), "{err}");
    assert!(err.contains("Permission denied"), "{err}");
    // The descriptor itself still works as given.
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        "HOSTOUT\nwritten-through-fd-1\n"
    );
}

/// The most an environment's log holds (crates/warren/src/logcap.rs, docs/cli.md).
const LOG_MAX: u64 = 64 << 20;

/// `warren run -d NAME` running `script`, waited for until it ended; its log's bytes.
fn detached_log(name: &str, script: &str) -> Vec<u8> {
    let o = warren()
        .args(["run", "-d", "--name", name, "--rootfs"])
        .arg(busybox_root())
        .args(["--", "/bin/sh", "-c", script])
        .output()
        .unwrap();
    assert_code(&o, 0);
    let start = std::time::Instant::now();
    loop {
        let ps = warren().args(["ps", "-q"]).output().unwrap();
        if !stdout(&ps).lines().any(|l| l == name) {
            break;
        }
        assert!(start.elapsed().as_secs() < 60, "{name} did not end");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let log = test_state_dir().join("logs").join(format!("{name}.log"));
    let bytes = std::fs::read(&log).unwrap();
    let o = warren().args(["rm", name]).output().unwrap();
    assert_code(&o, 0);
    assert!(!log.exists());
    bytes
}

#[test]
fn a_detached_environment_cannot_grow_its_log_past_the_limit() {
    // Positive control: what fits arrives whole, standard output and error alike, and the
    // workload's status is unchanged (the wait above saw it end).
    let log = detached_log(
        &unique("logok"),
        "echo first-line; echo on-stderr >&2; sleep 0.3",
    );
    assert_eq!(
        String::from_utf8_lossy(&log),
        "first-line\non-stderr\n",
        "the log of a quiet environment"
    );

    // 80 MiB of output: the file stops at the limit and says so once; the workload is never
    // blocked (it reaches its last line and ends, which the wait above needs). What the
    // launcher says afterwards (the line for a refused `sethostname`, which
    // `seccomp_refusals::a_detached_environment_has_its_refusals_in_warren_logs` sees reach a
    // log under the limit) is discarded too.
    let log = detached_log(
        &unique("logbomb"),
        "echo first-line; dd if=/dev/zero bs=1M count=80 2>/dev/null; hostname x; \
         echo ended >&2",
    );
    let len = log.len() as u64;
    assert!(
        len <= LOG_MAX + 512,
        "the log grew to {len} bytes, past its limit of {LOG_MAX}"
    );
    assert!(len >= LOG_MAX, "{len}");
    assert!(log.starts_with(b"first-line\n"));
    let tail = String::from_utf8_lossy(&log[log.len() - 512..]).into_owned();
    assert_eq!(
        tail.matches("the log reached its limit of 67108864 bytes")
            .count(),
        1,
        "{tail}"
    );
    assert!(!tail.contains("ended"), "{tail}");
    assert!(!tail.contains("refused syscall"), "{tail}");
}
