//! Positive control: the probe run directly on the host as root must report the attacks that
//! root can perform there as `open`. A probe that reported "blocked" here could never detect an
//! escape from an environment, so the sandbox tests would prove nothing. The run must also leave
//! the host as it found it.
//!
//! Needs root; without it each test prints why it did nothing and passes.

use std::collections::BTreeMap;
use std::io::Read;
use std::net::TcpListener;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

const PROBE: &str = env!("CARGO_BIN_EXE_warren-probe");

/// Attacks that root on any Linux host can perform, independent of kernel configuration.
const MUST_BE_OPEN: &[&str] = &[
    "fs.read_marker_path",
    "fs.read_marker_dotdot",
    "fs.read_hostpid_root_marker",
    "fs.open_by_handle_at",
    "fs.write_root",
    "fs.remount_root_rw",
    "mnt.chroot_escape",
    "mnt.fchdir_escape",
    "mnt.pivot_root",
    "mnt.mount_tmpfs",
    "mnt.umount_masked",
    "mnt.new_mount_api",
    "ns.unshare_user",
    "ns.unshare_mount",
    "ns.unshare_net",
    "ns.unshare_pid",
    "ns.unshare_uts",
    "ns.unshare_ipc",
    "ns.unshare_cgroup",
    "ns.setns",
    "ns.clone3",
    "proc.ptrace_sibling",
    "proc.process_vm_readv",
    "proc.kill_host_pid",
    "proc.host_processes_visible",
    "proc.write_sysctl",
    "proc.read_timer_list",
    "sys.keyctl",
    "sys.i386_abi",
    "sys.add_key",
    "sys.bpf",
    "sys.userfaultfd",
    "sys.reboot",
    "sys.swapon",
    "sys.clock_settime",
    "dev.mknod_block",
    "dev.mknod_char",
    "net.raw_socket",
    "net.packet_socket",
    "net.connect_tcp",
    "net.abstract_unix",
    "net.netlink_route_change",
    "priv.setuid_exec",
    "priv.capabilities",
    "priv.capset",
    "priv.no_new_privs",
    "priv.seccomp_mode",
    "priv.landlock",
    "id.uid_map",
    "id.tmp_file_owner",
];

/// Attacks on files that a kernel may not have; when the file exists, root must get through.
const OPEN_WHEN_PRESENT: &[(&str, &str)] = &[
    ("proc.read_kcore", "/proc/kcore"),
    ("proc.write_sysrq", "/proc/sysrq-trigger"),
    ("dev.open_mem", "/dev/mem"),
    ("dev.open_kmsg", "/dev/kmsg"),
];

/// The host-side tests look at shared places (`/tmp`, `/`), so they run one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Run the probe and parse its output: one JSON object per line, keyed by probe name.
fn run_probe(args: &[&str]) -> (Vec<String>, BTreeMap<String, Value>) {
    let out = Command::new(PROBE)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run warren-probe");
    assert!(out.status.success(), "warren-probe {args:?}: {out:?}");
    let text = String::from_utf8(out.stdout).expect("utf-8 output");
    let mut order = Vec::new();
    let mut reports = BTreeMap::new();
    for line in text.lines() {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        let obj = v.as_object().expect("an object per line");
        let keys: Vec<&str> = obj.keys().map(String::as_str).collect();
        assert_eq!(keys.len(), 4, "exactly probe/outcome/errno/detail: {line}");
        let name = obj["probe"].as_str().expect("probe is a string").to_owned();
        let outcome = obj["outcome"].as_str().expect("outcome is a string");
        assert!(["open", "blocked", "skipped"].contains(&outcome), "{line}");
        assert!(
            obj["errno"].is_null() || obj["errno"].as_str().is_some_and(|e| e.starts_with('E')),
            "{line}"
        );
        assert!(
            obj["detail"].as_str().is_some_and(|d| !d.is_empty()),
            "{line}"
        );
        assert!(
            reports.insert(name.clone(), v.clone()).is_none(),
            "{name} reported twice"
        );
        order.push(name);
    }
    (order, reports)
}

fn outcome<'a>(reports: &'a BTreeMap<String, Value>, name: &str) -> &'a str {
    reports
        .get(name)
        .unwrap_or_else(|| panic!("{name} missing"))
        .get("outcome")
        .and_then(Value::as_str)
        .unwrap()
}

/// Entries of `dir` whose names start with `prefix`.
fn entries_with_prefix(dir: &str, prefix: &str) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found
}

/// A directory with a marker file, removed on drop.
struct MarkerDir(PathBuf);

impl MarkerDir {
    fn new() -> Self {
        let dir =
            std::env::temp_dir().join(format!("warren-positive-control-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("marker"), b"host secret\n").unwrap();
        MarkerDir(dir)
    }

    fn marker(&self) -> PathBuf {
        self.0.join("marker")
    }
}

impl Drop for MarkerDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn root_on_the_host_sees_every_attack_open_and_nothing_changes() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !is_root() {
        eprintln!("positive control skipped: needs root on the host");
        return;
    }
    let markers = MarkerDir::new();
    let marker = markers.marker();
    // A host process of our own, so /proc/<pid>/root is reachable for root.
    let mut sleeper = Command::new(PROBE)
        .args(["sleep", "120"])
        .spawn()
        .expect("start a sleeper");
    let host_pid = sleeper.id().to_string();
    let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
    let tcp_target = tcp.local_addr().unwrap().to_string();
    let abstract_name = format!("warren-positive-control-{}", std::process::id());
    let _unix =
        UnixListener::bind_addr(&SocketAddr::from_abstract_name(abstract_name.as_bytes()).unwrap())
            .expect("bind an abstract socket");

    let hostname_before = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let scratch_before = entries_with_prefix("/tmp", "warren-probe");
    let root_before = entries_with_prefix("/", "warren-probe");

    let (order, reports) = run_probe(&[
        "--marker",
        marker.to_str().unwrap(),
        "--host-pid",
        &host_pid,
        "--tcp",
        &tcp_target,
        "--abstract",
        &abstract_name,
        "all",
    ]);
    let _ = sleeper.kill();
    let _ = sleeper.wait();

    // `all` is every listed probe except the abuse class, in list order.
    let list = Command::new(PROBE).arg("list").output().unwrap();
    let listed: Vec<String> = String::from_utf8(list.stdout)
        .unwrap()
        .lines()
        .filter(|n| !n.starts_with("abuse."))
        .map(str::to_owned)
        .collect();
    assert_eq!(order, listed);

    let mut not_open = Vec::new();
    for name in MUST_BE_OPEN {
        if outcome(&reports, name) != "open" {
            not_open.push(format!("{name}: {}", reports[*name]));
        }
    }
    for (name, path) in OPEN_WHEN_PRESENT {
        if Path::new(path).exists() && outcome(&reports, name) != "open" {
            not_open.push(format!("{name} ({path} exists): {}", reports[*name]));
        }
    }
    assert!(
        not_open.is_empty(),
        "the positive control must see these open:\n{}",
        not_open.join("\n")
    );

    // A successful call reports no errno; the ones that only reached the kernel name its error.
    assert!(reports["sys.keyctl"]["errno"].is_null());
    assert_eq!(reports["sys.reboot"]["errno"], "EINVAL");
    assert_eq!(reports["sys.add_key"]["errno"], "ENODEV");
    // The marker read is the file's own content, not some other file.
    assert!(
        reports["fs.read_marker_path"]["detail"]
            .as_str()
            .unwrap()
            .contains("read 12 bytes")
    );

    // Harmless: nothing on the host changed.
    assert_eq!(
        std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap(),
        hostname_before
    );
    assert_eq!(
        entries_with_prefix("/tmp", "warren-probe"),
        scratch_before,
        "left files in /tmp"
    );
    assert_eq!(
        entries_with_prefix("/", "warren-probe"),
        root_before,
        "left files in /"
    );
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mountinfo.contains("warren-probe"),
        "left a mount behind:\n{mountinfo}"
    );
    // The listener saw the probe's connection.
    tcp.set_nonblocking(true).unwrap();
    assert!(
        tcp.accept().is_ok(),
        "net.connect_tcp did not reach the host listener"
    );
}

#[test]
fn abuse_probes_reach_their_caps_on_the_host() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !is_root() {
        eprintln!("positive control skipped: needs root on the host");
        return;
    }
    let (order, reports) = run_probe(&["--fork-cap", "40", "--fill-cap-mb", "4", "abuse"]);
    assert_eq!(order, ["abuse.fork_bomb", "abuse.fill_tmp"]);
    assert_eq!(
        outcome(&reports, "abuse.fork_bomb"),
        "open",
        "{}",
        reports["abuse.fork_bomb"]
    );
    assert!(
        reports["abuse.fork_bomb"]["detail"]
            .as_str()
            .unwrap()
            .contains("created 40 children")
    );
    assert_eq!(
        outcome(&reports, "abuse.fill_tmp"),
        "open",
        "{}",
        reports["abuse.fill_tmp"]
    );
    assert!(
        reports["abuse.fill_tmp"]["detail"]
            .as_str()
            .unwrap()
            .contains("wrote 4194304 bytes")
    );
    assert!(
        entries_with_prefix("/tmp", "warren-probe-fill").is_empty(),
        "fill file left behind"
    );
}

#[test]
fn hidden_helpers_behave() {
    // No privilege needed: these are what the environment tests start directly.
    let out = Command::new(PROBE)
        .args(["memory-bomb", "20"])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success());
    assert_eq!(text.lines().last(), Some(r#"{"done_mib":20}"#), "{text}");

    let out = Command::new(PROBE).args(["spin", "1"]).output().unwrap();
    let first: Value = serde_json::from_str(
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    assert!(first["iterations"].as_u64().unwrap() > 0);

    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut listener = Command::new(PROBE)
        .args(["listen-tcp", &port.to_string(), "5"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = listener.stdout.take().unwrap();
    let mut ready = [0u8; 6];
    stdout.read_exact(&mut ready).unwrap();
    assert_eq!(&ready, b"ready\n");
    let mut reply = String::new();
    std::net::TcpStream::connect(("127.0.0.1", port))
        .unwrap()
        .read_to_string(&mut reply)
        .unwrap();
    assert_eq!(reply, "warren-probe\n");
    let _ = listener.kill();
    let _ = listener.wait();

    let out = Command::new(PROBE).arg("__ids").output().unwrap();
    let ids: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        ids["euid"].as_u64().unwrap(),
        u64::from(rustix::process::geteuid().as_raw())
    );

    let bad = Command::new(PROBE)
        .args(["no.such_probe"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
}
