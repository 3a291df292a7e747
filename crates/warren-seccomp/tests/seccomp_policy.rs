//! Behavioural test of the default seccomp profile on the running kernel.
//!
//! The test binary re-executes itself with `WARREN_SECCOMP_PROBE` set. In that child the entry
//! test [`probe_entry`] sets `no_new_privs`, installs the build-time compiled default program on its thread
//! and then makes real system calls (through `rustix` and `std`, and by spawning `busybox`,
//! `/bin/ls`, `unshare`), printing one `probe <name> <result>` line each. The parent asserts on
//! those lines. A control child runs the same probes without the filter, to show that each denial
//! observed under the filter comes from the filter and not from the probe or the machine.
//!
//! What cannot be probed without `unsafe` (raw `clone3`, `keyctl`, `ioctl(TIOCSTI)`, i386 and
//! x32 entry) is covered by the BPF interpreter tests in `src/policy.rs` and `src/bpf.rs`.

use std::collections::BTreeMap;
use std::ffi::CStr;
use std::fs::File;
use std::io::Write as _;
use std::os::fd::AsFd as _;
use std::path::Path;
use std::process::Command;

use rustix::net::{AddressFamily, SocketFlags, SocketType};
use warren_seccomp::Program;

/// Set in the child: `filtered` or `control`.
const MODE_ENV: &str = "WARREN_SECCOMP_PROBE";
/// Set in the child: a scratch directory it may write to.
const DIR_ENV: &str = "WARREN_SECCOMP_PROBE_DIR";
/// The name of the entry test, which the parent selects with `--exact`.
const ENTRY: &str = "probe_entry";

const EPERM: &str = "errno 1";

/// Entry point of the re-executed child. In an ordinary test run `WARREN_SECCOMP_PROBE` is unset
/// and this returns at once; the assertions live in the parent tests below.
#[test]
fn probe_entry() {
    let Some(mode) = std::env::var_os(MODE_ENV) else {
        return;
    };
    let dir = std::env::var_os(DIR_ENV).expect("the parent sets the probe directory");
    run_probes(mode == "filtered", Path::new(&dir));
}

fn errno_of<T>(r: rustix::io::Result<T>) -> String {
    match r {
        Ok(_) => "ok".to_owned(),
        Err(e) => format!("errno {}", e.raw_os_error()),
    }
}

fn std_errno_of<T>(r: std::io::Result<T>) -> String {
    match r {
        Ok(_) => "ok".to_owned(),
        Err(e) => format!("errno {}", e.raw_os_error().unwrap_or(-1)),
    }
}

/// Runs a command and reports `exit <code>` plus its stdout and stderr on one line.
fn command_result(cmd: &mut Command) -> String {
    match cmd.output() {
        Ok(out) => {
            let flat = |b: &[u8]| String::from_utf8_lossy(b).trim().replace('\n', "|");
            format!(
                "exit {} out={} err={}",
                out.status.code().unwrap_or(-1),
                flat(&out.stdout),
                flat(&out.stderr)
            )
        }
        Err(e) => format!("spawn-failed errno {}", e.raw_os_error().unwrap_or(-1)),
    }
}

fn run_probes(filtered: bool, dir: &Path) -> ! {
    if filtered {
        rustix::thread::set_no_new_privs(true).expect("set no_new_privs");
        Program::host().install().expect("install the filter");
    }
    // Everything below runs under the filter (in the filtered child).
    let mut report: Vec<(&str, String)> = Vec::new();

    // The filter is per thread: look at this thread's status, not the main thread's.
    let status = std::fs::read_to_string("/proc/thread-self/status").unwrap_or_default();
    let mode = status
        .lines()
        .find_map(|l| l.strip_prefix("Seccomp:"))
        .map_or("missing".to_owned(), |v| v.trim().to_owned());
    report.push(("seccomp_mode", mode));

    report.push((
        "getpid",
        if rustix::process::getpid().as_raw_nonzero().get() > 0 {
            "ok"
        } else {
            "zero"
        }
        .to_owned(),
    ));

    let file = dir.join("data");
    let io = std::fs::write(&file, b"warren")
        .and_then(|()| std::fs::read(&file))
        .map(|bytes| bytes == b"warren");
    report.push(("file_io", format!("{io:?}")));
    report.push(("metadata", std_errno_of(std::fs::metadata(&file))));

    // glibc's pthread_create tries clone3 first and falls back to clone on ENOSYS.
    let thread = std::thread::spawn(|| 7).join();
    report.push(("thread", format!("{thread:?}")));
    // So do posix_spawn (Rust's Command) and fork.
    report.push(("spawn_true", command_result(&mut Command::new("/bin/true"))));
    report.push((
        "glibc_ls",
        command_result(Command::new("/bin/ls").args(["-la", "/"])),
    ));
    report.push((
        "dash_pipeline",
        command_result(Command::new("/bin/sh").args(["-c", "echo pipeline | cat | wc -c"])),
    ));
    if Path::new("/bin/busybox").exists() {
        let script = "set -e; cd \"$1\"; mkdir d; touch d/f; ls d; rm -r d; \
                      seq 3 | head -n 2 | tail -n 1; yes | head -n 2 | wc -l; \
                      dd if=/dev/zero bs=512 count=2 2>/dev/null | wc -c; id -u >/dev/null; \
                      hostname >/dev/null; cat /proc/self/stat >/dev/null; ps >/dev/null; \
                      sleep 0; echo done";
        let dir_arg = dir.to_string_lossy().into_owned();
        report.push((
            "busybox",
            command_result(Command::new("/bin/busybox").args(["sh", "-c", script, "sh", &dir_arg])),
        ));
    }
    if Path::new("/usr/bin/unshare").exists() {
        let cmd = &mut Command::new("/usr/bin/unshare");
        report.push((
            "unshare_user",
            command_result(cmd.args(["--user", "/bin/true"])),
        ));
    }

    let netns = File::open("/proc/thread-self/ns/net").expect("open own netns");
    report.push((
        "setns",
        errno_of(rustix::thread::move_into_link_name_space(
            netns.as_fd(),
            None,
        )),
    ));
    if filtered {
        // Never attempted unfiltered: as root it would really mount.
        let target = dir.join("mnt");
        std::fs::create_dir(&target).expect("create mount point");
        let mount = rustix::mount::mount(
            "none",
            &target,
            "tmpfs",
            rustix::mount::MountFlags::empty(),
            None::<&CStr>,
        );
        report.push(("mount", errno_of(mount)));
    }
    report.push(("chroot", errno_of(rustix::process::chroot("/"))));
    let uname = rustix::system::uname();
    report.push((
        "sethostname_same",
        errno_of(rustix::system::sethostname(uname.nodename().to_bytes())),
    ));

    report.push((
        "prctl_set_name",
        errno_of(rustix::thread::set_name(c"probe")),
    ));
    report.push((
        "prctl_securebits",
        errno_of(rustix::thread::capabilities_secure_bits()),
    ));
    report.push((
        "prctl_subreaper",
        errno_of(rustix::process::set_child_subreaper(None)),
    ));
    report.push((
        "prctl_keepcaps",
        errno_of(rustix::thread::set_keep_capabilities(true)),
    ));
    let _ = rustix::thread::set_keep_capabilities(false);
    report.push(("capget", errno_of(rustix::thread::capabilities(None))));

    // ioctl reaches the kernel: TCGETS on a regular file is ENOTTY (25), not EPERM.
    let regular = File::open(&file).expect("open probe file");
    report.push((
        "ioctl_tcgets",
        errno_of(rustix::termios::tcgetattr(&regular)),
    ));

    let socket = |family, kind, protocol| errno_of(rustix::net::socket(family, kind, protocol));
    use rustix::net::netlink;
    report.push((
        "socket_unix",
        socket(AddressFamily::UNIX, SocketType::STREAM, None),
    ));
    report.push((
        "socket_inet_dgram",
        socket(AddressFamily::INET, SocketType::DGRAM, None),
    ));
    report.push((
        "socket_inet6",
        socket(AddressFamily::INET6, SocketType::STREAM, None),
    ));
    report.push((
        "socket_netlink_route",
        socket(AddressFamily::NETLINK, SocketType::RAW, None),
    ));
    report.push((
        "socket_netlink_diag",
        socket(
            AddressFamily::NETLINK,
            SocketType::RAW,
            Some(netlink::SOCK_DIAG),
        ),
    ));
    report.push((
        "socket_packet",
        socket(AddressFamily::PACKET, SocketType::RAW, None),
    ));
    report.push((
        "socket_vsock",
        socket(AddressFamily::VSOCK, SocketType::STREAM, None),
    ));
    let pair = |family| {
        errno_of(rustix::net::socketpair(
            family,
            SocketType::STREAM,
            SocketFlags::empty(),
            None,
        ))
    };
    report.push(("socketpair_unix", pair(AddressFamily::UNIX)));
    report.push(("socketpair_inet", pair(AddressFamily::INET)));

    let mut out = std::io::stdout().lock();
    // libtest has printed "test probe_entry ... " without a newline.
    writeln!(out).expect("write the report");
    for (name, result) in report {
        writeln!(out, "probe {name} {result}").expect("write the report");
    }
    out.flush().expect("flush the report");
    std::process::exit(0)
}

/// Runs the probe child in `mode` and returns its report.
fn run_child(mode: &str) -> BTreeMap<String, String> {
    let dir = tempfile::tempdir().expect("create a scratch directory");
    let exe = std::env::current_exe().expect("find the test binary");
    let out = Command::new(exe)
        .args([ENTRY, "--exact", "--nocapture", "--test-threads=1"])
        .env(MODE_ENV, mode)
        .env(DIR_ENV, dir.path())
        .output()
        .expect("run the probe child");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "probe child ({mode}) failed: {:?}\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let report: BTreeMap<String, String> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("probe "))
        .filter_map(|l| l.split_once(' '))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    assert!(
        report.len() > 20,
        "short report from the {mode} child:\n{stdout}"
    );
    report
}

fn get<'a>(report: &'a BTreeMap<String, String>, probe: &str) -> &'a str {
    report.get(probe).map_or_else(
        || panic!("probe {probe} missing: {report:#?}"),
        String::as_str,
    )
}

#[test]
fn filtered_child_is_confined_and_ordinary_programs_still_work() {
    let r = run_child("filtered");
    let check = |probe: &str, expected: &str| assert_eq!(get(&r, probe), expected, "{probe}");

    check("seccomp_mode", "2");
    // What programs need still works.
    check("getpid", "ok");
    check("file_io", "Ok(true)");
    check("metadata", "ok");
    check("thread", "Ok(7)");
    check("spawn_true", "exit 0 out= err=");
    assert!(
        get(&r, "glibc_ls").starts_with("exit 0 out=total"),
        "{}",
        get(&r, "glibc_ls")
    );
    check("dash_pipeline", "exit 0 out=9 err=");
    if let Some(busybox) = r.get("busybox") {
        assert_eq!(busybox, "exit 0 out=f|2|2|1024|done err=", "busybox");
    }
    check("prctl_set_name", "ok");
    check("prctl_securebits", "ok");
    check("prctl_subreaper", "ok");
    check("capget", "ok");
    check("ioctl_tcgets", "errno 25");
    check("socket_unix", "ok");
    check("socket_inet_dgram", "ok");
    assert!(
        ["ok", "errno 97"].contains(&get(&r, "socket_inet6")),
        "socket_inet6"
    );
    check("socket_netlink_route", "ok");
    check("socketpair_unix", "ok");

    // What the policy denies fails with EPERM.
    if let Some(unshare) = r.get("unshare_user") {
        assert!(unshare.starts_with("exit 1 "), "unshare: {unshare}");
        assert!(
            unshare.contains("Operation not permitted"),
            "unshare: {unshare}"
        );
    }
    for probe in [
        "setns",
        "mount",
        "chroot",
        "sethostname_same",
        "prctl_keepcaps",
        "socket_netlink_diag",
        "socket_packet",
        "socket_vsock",
        "socketpair_inet",
    ] {
        check(probe, EPERM);
    }
}

/// Whether this process could do what the filter forbids, so that the control run must show it.
fn privileged() -> bool {
    use rustix::thread::CapabilitySet;
    let needed = CapabilitySet::SYS_ADMIN | CapabilitySet::SYS_CHROOT | CapabilitySet::NET_RAW;
    rustix::process::geteuid().is_root()
        && rustix::thread::capabilities(None).is_ok_and(|c| c.effective.contains(needed))
}

#[test]
fn control_child_without_the_filter_gets_past_every_probe() {
    let r = run_child("control");
    assert!(!r.contains_key("mount"), "the control child must not mount");
    // Independent of privilege: the kernel's own answers differ from the filter's EPERM.
    assert_eq!(
        get(&r, "socketpair_inet"),
        "errno 95",
        "EOPNOTSUPP from the kernel"
    );
    assert_eq!(get(&r, "ioctl_tcgets"), "errno 25");
    assert_eq!(get(&r, "prctl_keepcaps"), "ok");
    assert_eq!(get(&r, "thread"), "Ok(7)");
    assert_ne!(get(&r, "socket_vsock"), EPERM);
    if privileged() {
        for probe in [
            "setns",
            "chroot",
            "sethostname_same",
            "socket_packet",
            "socket_netlink_diag",
        ] {
            assert_eq!(
                get(&r, probe),
                "ok",
                "{probe} should work as root without the filter"
            );
        }
        if let Some(unshare) = r.get("unshare_user") {
            assert!(unshare.starts_with("exit 0 "), "unshare as root: {unshare}");
        }
    }
}
