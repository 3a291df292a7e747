//! Capabilities inside the environment's own namespaces (issue 15): `--cap-add` keeps a
//! capability that acts only on what the environment's user namespace owns, none is kept by
//! default (the positive control of each case), and the rest are refused before anything
//! starts. Driven through the real `warren` binary as root.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

use common::{
    Background, assert_code, debian_layout, debian_root, run_sh, stderr, stdout, test_state_dir,
    unique, warren,
};

/// The `config` of the launch record of environment `name` in the shared state directory.
fn launch_config(name: &str) -> Value {
    let log = std::fs::read_to_string(test_state_dir().join("attest/events.jsonl")).unwrap();
    log.lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|r| r["content"]["name"] == name)
        .map(|r| r["content"]["config"].clone())
        .unwrap_or_else(|| panic!("no launch record for {name}"))
}

/// The `CapEff` line of `/proc/self/status` as a number, from a script's output.
fn cap_eff(out: &str) -> u64 {
    let hex = out
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .unwrap_or_else(|| panic!("no CapEff in {out}"))
        .trim();
    u64::from_str_radix(hex, 16).unwrap()
}

const CHOWN_SCRIPT: &str = "cat /proc/self/status | grep -E '^Cap(Eff|Bnd|Amb)'; \
     touch /tmp/f && chown 1000:1000 /tmp/f && stat -c owner=%u:%g /tmp/f";

#[test]
fn cap_add_chown_lets_root_inside_chown_and_none_is_kept_by_default() {
    // Positive control: without --cap-add, root inside has no capability and chown fails.
    let name = unique("nocap");
    let o = run_sh(&name, &[], CHOWN_SCRIPT);
    assert_ne!(o.status.code(), Some(0), "{}", stdout(&o));
    assert!(
        stderr(&o).contains("Operation not permitted"),
        "{}",
        stderr(&o)
    );
    assert_eq!(cap_eff(&stdout(&o)), 0, "{}", stdout(&o));
    assert_eq!(launch_config(&name)["capabilities"], serde_json::json!([]));

    let name = unique("cap");
    let o = run_sh(&name, &["--cap-add", "chown"], CHOWN_SCRIPT);
    assert_code(&o, 0);
    let out = stdout(&o);
    assert!(out.contains("owner=1000:1000"), "{out}");
    // Exactly CAP_CHOWN (bit 0), in the effective, bounding and ambient sets.
    assert_eq!(cap_eff(&out), 1, "{out}");
    assert!(out.contains("CapBnd:\t0000000000000001"), "{out}");
    assert!(out.contains("CapAmb:\t0000000000000001"), "{out}");
    // The launch record lists it.
    assert_eq!(
        launch_config(&name)["capabilities"],
        serde_json::json!(["CAP_CHOWN"])
    );
}

/// `warren run --name NAME --rootfs <debian> [extra] -- sh -c SCRIPT`.
fn debian_sh(name: &str, extra: &[&str], script: &str) -> Output {
    warren()
        .args(["run", "--name", name, "--rootfs"])
        .arg(debian_root())
        .args(extra)
        .args(["--", "/bin/sh", "-c", script])
        .output()
        .unwrap()
}

#[test]
fn a_kept_capability_is_lost_when_the_workload_leaves_uid_0() {
    // With SETUID, SETGID and CHOWN, root inside drops to uid 1000 with plain setgid/setuid,
    // as nginx's master does for its workers: chown then fails, since the kernel's setuid
    // fix-up clears the sets (the securebit that suppressed it during the launch is locked
    // off).
    let name = unique("capsu");
    let o = debian_sh(
        &name,
        &[
            "--cap-add",
            "SETUID",
            "--cap-add",
            "CAP_CHOWN",
            "--cap-add",
            "setgid",
        ],
        "touch /tmp/f && chown 5:5 /tmp/f && echo chowned-as-root; \
         exec python3 -c 'import os; os.setgroups([]); os.setgid(1000); os.setuid(1000); \
         print(open(\"/proc/self/status\").read()); print(os.getuid(), flush=True); \
         os.chown(\"/tmp/f\", 6, 6); print(\"chowned-as-1000\")'",
    );
    let out = stdout(&o);
    assert!(out.contains("chowned-as-root\n"), "{out}{}", stderr(&o));
    assert!(out.contains("\n1000\n"), "{out}{}", stderr(&o));
    assert_eq!(cap_eff(&out), 0, "{out}");
    assert!(!out.contains("chowned-as-1000"), "{out}");
    assert!(stderr(&o).contains("PermissionError"), "{}", stderr(&o));
    // Positive control: without SETUID, root inside cannot become uid 1000 at all.
    let o = debian_sh(
        &unique("capsu"),
        &["--cap-add", "CHOWN"],
        "python3 -c 'import os; os.setuid(1000); print(os.getuid())'",
    );
    assert_ne!(o.status.code(), Some(0), "{}", stdout(&o));
    assert!(stderr(&o).contains("PermissionError"), "{}", stderr(&o));
}

#[test]
fn a_refused_capability_is_refused_before_anything_starts() {
    for (cap, named, why) in [
        ("SYS_ADMIN", "CAP_SYS_ADMIN", "mounts"),
        ("CAP_NET_RAW", "CAP_NET_RAW", "raw"),
        ("sys_ptrace", "CAP_SYS_PTRACE", "seccomp"),
    ] {
        let name = unique("refcap");
        let o = run_sh(&name, &["--cap-add", cap], "echo started");
        assert_code(&o, 125);
        let err = stderr(&o);
        assert!(err.contains("invalid --cap-add"), "{err}");
        assert!(err.contains(&format!("{named} is refused")), "{err}");
        assert!(err.contains(why), "{err}");
        assert!(!stdout(&o).contains("started"));
        assert!(common::cgroup_dirs(&name).is_empty(), "a cgroup was left");
    }
    let o = run_sh(&unique("refcap"), &["--cap-add", "FLY"], "echo started");
    assert_code(&o, 125);
    assert!(
        stderr(&o).contains("unknown capability \"FLY\""),
        "{}",
        stderr(&o)
    );
}

#[test]
fn port_80_needs_no_capability_inside() {
    // Every environment has its own network namespace with ports from 0 unprivileged, so a
    // server as an ordinary user binds port 80 there (loopback only and with --net auto).
    for extra in [&[][..], &["--net", "auto"][..]] {
        let name = unique("port80");
        let mut args = vec!["--user", "65534:65534"];
        args.extend_from_slice(extra);
        let o = run_sh(
            &name,
            &args,
            "cat /proc/sys/net/ipv4/ip_unprivileged_port_start; id -u; \
             mkdir /tmp/www && echo hello > /tmp/www/index.html && \
             httpd -p 80 -h /tmp/www && sleep 0.2 && \
             wget -qO- http://127.0.0.1:80/ && echo connected",
        );
        assert_code(&o, 0);
        let out = stdout(&o);
        assert!(out.starts_with("0\n65534\n"), "{out}{}", stderr(&o));
        assert!(out.contains("hello\n"), "{out}{}", stderr(&o));
        assert!(out.contains("connected"), "{out}{}", stderr(&o));
    }
    // Positive control: the host's own network namespace still has its usual limit (the
    // environment's setting did not leak out).
    let host = std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start").unwrap();
    assert_ne!(
        host.trim(),
        "0",
        "the host itself has ip_unprivileged_port_start = 0"
    );
}

/// The JVM's `MaxHeapSize` from `java -XX:+PrintFlagsFinal -version` in the Debian root.
fn jvm_max_heap(extra: &[&str]) -> u64 {
    let o = warren()
        .args(["run", "--name", &unique("jvm"), "--rootfs"])
        .arg(debian_root())
        .args(extra)
        .args(["--", "java", "-XX:+PrintFlagsFinal", "-version"])
        .output()
        .unwrap();
    assert_code(&o, 0);
    stdout(&o)
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some("MaxHeapSize"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no MaxHeapSize in {}", stdout(&o)))
}

#[test]
fn a_jvm_sizes_its_heap_to_the_memory_limit() {
    // OpenJDK's default: a quarter of the memory it believes it has.
    let limited = jvm_max_heap(&["--memory", "512M"]);
    assert_eq!(limited, 128 << 20, "MaxHeapSize under --memory 512M");
    // Positive control: without a limit it sizes itself to the host.
    let host_mem: u64 = std::fs::read_to_string("/proc/meminfo")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap()
        * 1024;
    let unlimited = jvm_max_heap(&[]);
    assert!(
        unlimited > host_mem / 8 && unlimited > 4 * limited,
        "MaxHeapSize without --memory: {unlimited} (host {host_mem})"
    );
}

#[test]
fn the_cgroup_view_is_the_environments_own_and_read_only() {
    let o = run_sh(
        &unique("cgview"),
        &["--memory", "64M"],
        // v2 hosts: the unified hierarchy at /sys/fs/cgroup; v1: one directory per hierarchy.
        "cat /proc/self/cgroup; \
         if [ -f /sys/fs/cgroup/memory.max ]; then d=/sys/fs/cgroup; f=memory.max; \
         else d=/sys/fs/cgroup/memory; f=memory.limit_in_bytes; fi; \
         cat $d/$f; ls $d | grep -c warren; \
         echo 1 > $d/$f || echo write-refused; \
         mkdir $d/x || echo mkdir-refused",
    );
    let out = stdout(&o);
    let err = stderr(&o);
    // Its own cgroup is the root of its namespace, and the limit is the one it was given.
    assert!(
        out.contains(":memory:/\n") || out.starts_with("0::/\n"),
        "{out}"
    );
    assert!(out.contains("67108864\n"), "{out}{err}");
    // No other cgroup (Warren's parent, other environments) is visible; nothing is writable.
    assert!(out.contains("\n0\n"), "{out}");
    assert!(out.contains("write-refused"), "{out}");
    assert!(out.contains("mkdir-refused"), "{out}");
}

/// GET / on `addr` from the host, retried while the server inside may still be starting.
fn http_get_eventually(addr: &str) -> Result<String, String> {
    use std::io::{Read, Write};
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let r = (|| {
            let sa: std::net::SocketAddr = addr.parse().unwrap();
            let mut s =
                std::net::TcpStream::connect_timeout(&sa, std::time::Duration::from_secs(2))
                    .map_err(|e| e.to_string())?;
            s.set_read_timeout(Some(std::time::Duration::from_secs(2)))
                .unwrap();
            s.write_all(b"GET / HTTP/1.0\r\n\r\n")
                .map_err(|e| e.to_string())?;
            let mut out = String::new();
            s.read_to_string(&mut out).map_err(|e| e.to_string())?;
            Ok(out)
        })();
        if r.is_ok() || std::time::Instant::now() > deadline {
            return r;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// nginx exactly as packaged: its own `/etc/nginx/nginx.conf`, unmodified, in the foreground.
const NGINX: [&str; 3] = ["nginx", "-g", "daemon off;"];

/// The writable places nginx's packaged configuration needs, each a fresh volume filled from
/// the root on first use (copy-up keeps `/var/log/nginx`'s log files owned by `www-data`, and
/// `/run` its other contents): the temporary directories under `/var/lib/nginx` the master
/// creates and chowns to `www-data`, the logs, and the pid file `/run/nginx.pid`.
const NGINX_WRITABLE: [&str; 3] = ["/var/lib/nginx", "/var/log/nginx", "/run"];

/// Volumes for nginx made through `w` (a `warren` command in the right directories), removed
/// when dropped; `args()` gives the `-v` flags.
struct NginxVolumes<'a> {
    w: &'a dyn Fn() -> Command,
    names: Vec<(String, &'static str)>,
}

impl<'a> NginxVolumes<'a> {
    fn new(w: &'a dyn Fn() -> Command) -> Self {
        let names = NGINX_WRITABLE
            .iter()
            .map(|d| {
                let n = unique("ngxvol");
                assert_code(&w().args(["volume", "create", &n]).output().unwrap(), 0);
                (n, *d)
            })
            .collect();
        NginxVolumes { w, names }
    }

    fn args(&self) -> Vec<String> {
        self.names
            .iter()
            .flat_map(|(n, d)| ["-v".to_owned(), format!("{n}:{d}")])
            .collect()
    }
}

impl Drop for NginxVolumes<'_> {
    fn drop(&mut self) {
        for (n, _) in &self.names {
            let _ = (self.w)().args(["volume", "rm", n]).output();
        }
    }
}

#[test]
fn nginx_runs_as_packaged_with_its_capabilities_on_port_80_published() {
    // 127.0.0.1:8080 as a user would publish it, unless something on the host holds it.
    let port = if std::net::TcpListener::bind("127.0.0.1:8080").is_ok() {
        8080
    } else {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let publish = format!("127.0.0.1:{port}:80");
    let root = debian_root().to_str().unwrap().to_owned();
    let caps = [
        "--cap-add",
        "CHOWN",
        "--cap-add",
        "SETUID",
        "--cap-add",
        "SETGID",
        "--cap-add",
        "DAC_OVERRIDE",
    ];

    let nginx = &NGINX;
    // Positive controls: on the read-only root alone, nginx cannot open its logs; with the
    // volumes but without the capabilities, the master (root inside) cannot chown its
    // temporary directories. Each says so.
    let o = warren()
        .args(["run", "--name", &unique("ngx0"), "--rootfs", &root])
        .args(["--net", "auto", "-p", &publish, "--"])
        .args(nginx)
        .output()
        .unwrap();
    assert_ne!(o.status.code(), Some(0));
    assert!(
        stderr(&o).contains("Read-only file system"),
        "{}",
        stderr(&o)
    );
    let w = warren;
    let vols = NginxVolumes::new(&w);
    let o = warren()
        .args(["run", "--name", &unique("ngx0"), "--rootfs", &root])
        .args(vols.args())
        .args(["--net", "auto", "-p", &publish, "--"])
        .args(nginx)
        .output()
        .unwrap();
    assert_ne!(o.status.code(), Some(0));
    assert!(
        stderr(&o)
            .contains("chown(\"/var/lib/nginx/body\", 33) failed (1: Operation not permitted)"),
        "{}",
        stderr(&o)
    );

    let vol_args = vols.args();
    let mut args = vec!["--rootfs", root.as_str(), "--memory", "256M"];
    args.extend(caps);
    args.extend(vol_args.iter().map(String::as_str));
    args.extend(["--net", "auto", "-p", &publish, "--"]);
    args.extend(nginx);
    let web = Background::start(&unique("ngx"), &args);
    let body = http_get_eventually(&format!("127.0.0.1:{port}"));
    // The master (pid 1 inside) holds exactly the capabilities given; its workers, which it
    // switched to www-data, hold none.
    let pid = web.pid();
    let status = |p: &str, field: &str| common::host_status_field(p.parse().unwrap(), field);
    let master_caps = status(&pid.to_string(), "CapEff:");
    let workers =
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    let worker_caps: Vec<String> = workers
        .split_whitespace()
        .map(|w| status(w, "CapEff:"))
        .collect();
    web.stop();
    let body = body.expect("nginx answers on the published port");
    assert!(body.starts_with("HTTP/1.1 200 OK"), "{body}");
    assert!(body.contains("Welcome to nginx!"), "{body}");
    // CHOWN (bit 0), DAC_OVERRIDE (1: root opens the www-data log files, as on any Debian
    // host), SETGID (6), SETUID (7).
    assert_eq!(master_caps, "00000000000000c3");
    assert!(!worker_caps.is_empty(), "no worker under {pid}");
    for c in worker_caps {
        assert_eq!(c, "0000000000000000");
    }
    // nginx wrote its own files where it is packaged to: the access log (a www-data file,
    // copied up from the root) has the request, the temporary directories belong to www-data.
    let o = warren()
        .args(["run", "--name", &unique("ngxlog"), "--rootfs", &root])
        .args(vols.args())
        .args([
            "--user",
            "www-data",
            "--",
            "/bin/sh",
            "-c",
            "grep -c 'GET / ' /var/log/nginx/access.log; stat -c '%U %n' /var/lib/nginx/body",
        ])
        .output()
        .unwrap();
    assert_code(&o, 0);
    assert_eq!(stdout(&o), "1\nwww-data /var/lib/nginx/body\n");
}

/// The Debian image in the store the Debian workloads test keeps next to the cached root
/// (`<root>-workloads-data`, found through a fresh state directory as after a reboot), imported
/// the same way if it is not there yet. Returns the data directory.
fn debian_image_data(state: &Path) -> PathBuf {
    let data = PathBuf::from(format!("{}-workloads-data", debian_root().display()));
    let w = || {
        let mut c = warren();
        c.env("WARREN_STATE_DIR", state)
            .env("WARREN_DATA_DIR", &data);
        c
    };
    let o = w().args(["image", "ls", "-q"]).output().unwrap();
    if !stdout(&o).lines().any(|l| l == "debian:latest") {
        let layout = debian_layout();
        let o = w()
            .args([
                "image",
                "import",
                "-q",
                "--allow-setuid",
                "--name",
                "debian",
            ])
            .arg(&layout)
            .output()
            .unwrap();
        assert_code(&o, 0);
        let _ = std::fs::remove_dir_all(&layout);
    }
    data
}

#[test]
fn nginx_runs_from_the_debian_image_too_with_volumes_or_a_writable_root() {
    let state = PathBuf::from(format!("/run/warren-caps-{}", unique("img")));
    let data = debian_image_data(&state);
    let w = || {
        let mut c = warren();
        c.env("WARREN_STATE_DIR", &state)
            .env("WARREN_DATA_DIR", &data);
        c
    };
    let vols = NginxVolumes::new(&w);
    // Its writable places as volumes, or the whole root writable (an overlay on a tmpfs).
    let writable_root = ["--writable-root".to_owned()];
    for (how, extra) in [
        ("volumes", &vols.args()[..]),
        ("writable root", &writable_root[..]),
    ] {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let publish = format!("127.0.0.1:{port}:80");
        let child = w()
            .args(["run", "--name", &unique("ngximg"), "--image", "debian"])
            .args(extra)
            .args([
                "--memory",
                "256M",
                "--cap-add",
                "CHOWN",
                "--cap-add",
                "SETUID",
                "--cap-add",
                "SETGID",
                "--cap-add",
                "DAC_OVERRIDE",
            ])
            .args(["--net", "auto", "-p", &publish, "--"])
            .args(NGINX)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let body = http_get_eventually(&format!("127.0.0.1:{port}"));
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let out = child.wait_with_output().unwrap();
        let body = body.unwrap_or_else(|e| panic!("{how}: {e}: {}", stderr(&out)));
        assert!(body.starts_with("HTTP/1.1 200 OK"), "{how}: {body}");
        assert!(body.contains("Welcome to nginx!"), "{how}: {body}");
    }
    drop(vols);
    let _ = std::fs::remove_dir_all(&state);
}

#[test]
fn a_jvm_from_the_debian_image_sizes_its_heap_to_the_memory_limit() {
    let state = PathBuf::from(format!("/run/warren-caps-{}", unique("jvmimg")));
    let data = debian_image_data(&state);
    let o = warren()
        .env("WARREN_STATE_DIR", &state)
        .env("WARREN_DATA_DIR", &data)
        .args(["run", "--name", &unique("jvmimg"), "--image", "debian"])
        .args([
            "--memory",
            "512M",
            "--",
            "java",
            "-XX:+PrintFlagsFinal",
            "-version",
        ])
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&state);
    assert_code(&o, 0);
    let heap = stdout(&o)
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some("MaxHeapSize"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse::<u64>().ok());
    assert_eq!(heap, Some(128 << 20), "{}", stdout(&o));
}
