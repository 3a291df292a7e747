//! Shared harness for the black-box tests: the real `warren` binary, a busybox root built once
//! per test binary, unique names, and helpers to look at the host from outside.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

pub mod kernel;
pub mod swtpm;

/// A binary of another workspace package (`warren-msg`, `warren-probe`), next to `warren`;
/// built once per test binary, since `cargo test -p warren` alone does not build it.
pub fn workspace_bin(package: &str, bin: &str) -> &'static Path {
    static BUILT: std::sync::Mutex<Vec<(String, &'static Path)>> =
        std::sync::Mutex::new(Vec::new());
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, p)) = built.iter().find(|(b, _)| b == bin) {
        return p;
    }
    let path = Path::new(env!("CARGO_BIN_EXE_warren")).with_file_name(bin);
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let st = Command::new(cargo)
        .args(["build", "-q", "-p", package, "--bin", bin])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .unwrap();
    assert!(
        st.success() && path.exists(),
        "cannot build {bin} at {}",
        path.display()
    );
    let path: &'static Path = Box::leak(path.into_boxed_path());
    built.push((bin.to_owned(), path));
    path
}

/// The test suites that drive a kernel on the default state directory (`/run/warren`).
const KERNEL_SUITES: [&str; 4] = ["kernel", "contrib", "manifest_apply", "daemon_restart"];

/// The `warren` binary under test. The suites that test the kernel use the default state
/// directory, where they start it; every other suite uses a state directory of its own, so
/// that a kernel running on the host does not give its environments a mailbox they do not
/// expect.
pub fn warren() -> Command {
    assert!(
        rustix_is_root(),
        "these tests start environments and must run as root"
    );
    let mut c = Command::new(env!("CARGO_BIN_EXE_warren"));
    c.stdin(Stdio::null());
    let suite = std::env::current_exe()
        .ok()
        .and_then(|p| p.file_name().map(|f| f.to_string_lossy().into_owned()))
        .unwrap_or_default();
    if !KERNEL_SUITES
        .iter()
        .any(|k| suite.starts_with(&format!("{k}-")))
    {
        c.env("WARREN_STATE_DIR", test_state_dir());
    }
    c
}

fn rustix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}

/// The state directory of the suites that run without a kernel (name locks and records; uid
/// ranges are registered host-wide in any case).
pub fn test_state_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| PathBuf::from("/run/warren-test"))
}

/// A name no other test uses.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

/// A busybox root: `/bin/busybox` with its applets as links, `/etc/passwd`, the mount points
/// Warren needs, a non-executable file `/etc/not-executable` and a script `/bin/hello`.
pub fn busybox_root() -> &'static Path {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        let busybox = Path::new("/bin/busybox");
        assert!(
            busybox.exists(),
            "busybox-static is needed: run scripts/setup.sh"
        );
        let dir = std::env::temp_dir().join(format!("warren-test-root-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for d in ["bin", "etc", "proc", "dev", "tmp", "sys"] {
            std::fs::create_dir_all(dir.join(d)).unwrap();
        }
        std::fs::copy(busybox, dir.join("bin/busybox")).unwrap();
        let list = Command::new(busybox).arg("--list").output().unwrap();
        for applet in String::from_utf8(list.stdout).unwrap().lines() {
            if applet != "busybox" {
                std::os::unix::fs::symlink("busybox", dir.join("bin").join(applet)).unwrap();
            }
        }
        std::fs::write(dir.join("etc/passwd"), "root:x:0:0:root:/:/bin/sh\n").unwrap();
        std::fs::write(dir.join("etc/group"), "root:x:0:\n").unwrap();
        std::fs::write(dir.join("etc/not-executable"), "#!/bin/sh\necho no\n").unwrap();
        std::fs::write(
            dir.join("bin/hello"),
            "#!/bin/sh\necho hello from $(hostname)\n",
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            dir.join("bin/hello"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        std::fs::set_permissions(
            dir.join("etc/not-executable"),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        dir
    })
}

/// Run `warren run --name NAME --rootfs <busybox> [extra] -- sh -c SCRIPT`.
pub fn run_sh(name: &str, extra: &[&str], script: &str) -> Output {
    let mut c = warren();
    c.args(["run", "--name", name, "--rootfs"])
        .arg(busybox_root())
        .args(extra);
    c.args(["--", "/bin/sh", "-c", script]);
    c.output().unwrap()
}

/// Standard output as a string.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Standard error as a string.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Assert the run exited with `code`, showing its output otherwise.
pub fn assert_code(o: &Output, code: i32) {
    assert_eq!(
        o.status.code(),
        Some(code),
        "stdout:\n{}\nstderr:\n{}",
        stdout(o),
        stderr(o)
    );
}

/// A running environment started in the background; killed on drop.
pub struct Background {
    pub name: String,
    pub child: Option<std::process::Child>,
    /// The state directory, when not the suite's default.
    pub state_dir: Option<PathBuf>,
}

impl Background {
    /// Start `warren run` in the background with `args` and wait until `warren inspect` sees it.
    pub fn start(name: &str, args: &[&str]) -> Background {
        Background::start_in(None, name, args)
    }

    /// [`Background::start`] with the state directory `state_dir` (the suite's default if
    /// `None`); `inspect` looks there too.
    pub fn start_in(state_dir: Option<&Path>, name: &str, args: &[&str]) -> Background {
        let mut c = warren();
        if let Some(dir) = state_dir {
            c.env("WARREN_STATE_DIR", dir);
        }
        c.args(["run", "--name", name]).args(args);
        c.stdout(Stdio::piped()).stderr(Stdio::piped());
        let child = c.spawn().unwrap();
        let bg = Background {
            name: name.to_owned(),
            child: Some(child),
            state_dir: state_dir.map(Path::to_path_buf),
        };
        for _ in 0..500 {
            if bg.inspect().is_some() {
                return bg;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        panic!("environment {name} did not come up");
    }

    /// `warren inspect NAME` as JSON, if it is running.
    pub fn inspect(&self) -> Option<serde_json::Value> {
        let mut c = warren();
        if let Some(dir) = &self.state_dir {
            c.env("WARREN_STATE_DIR", dir);
        }
        let o = c.args(["inspect", &self.name]).output().unwrap();
        if !o.status.success() {
            return None;
        }
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).ok()?;
        if v["pid"].is_i64() { Some(v) } else { None }
    }

    /// The workload's host pid.
    pub fn pid(&self) -> i32 {
        self.inspect().expect("running")["pid"].as_i64().unwrap() as i32
    }

    /// Stop the environment the way a user would: SIGTERM to `warren run` twice (the second
    /// kills a workload that ignores the first), then wait for it to finish.
    pub fn stop(mut self) -> std::process::ExitStatus {
        let pid = self.child().id().to_string();
        for _ in 0..2 {
            let _ = Command::new("kill").args(["-TERM", &pid]).status();
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        self.child().wait().unwrap()
    }

    /// Wait for `warren run` to finish and collect its output.
    pub fn finish(mut self) -> Output {
        self.child
            .take()
            .expect("running")
            .wait_with_output()
            .unwrap()
    }

    fn child(&mut self) -> &mut std::process::Child {
        self.child.as_mut().expect("running")
    }

    /// Wait for `warren run` to finish.
    pub fn wait(mut self) -> std::process::ExitStatus {
        self.child().wait().unwrap()
    }
}

impl Background {
    /// Kill `warren run` itself with SIGKILL, as a crash would: it gets no chance to clean up.
    pub fn crash(mut self) {
        let _ = self.child().kill();
        let _ = self.child().wait();
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        // Stop gracefully (as `stop` does) so tests leave nothing behind; SIGKILL only as a
        // last resort.
        let Some(child) = self.child.as_mut() else {
            return;
        };
        let pid = child.id().to_string();
        for _ in 0..2 {
            let _ = Command::new("kill").args(["-TERM", &pid]).status();
            for _ in 0..100 {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// A field (`Uid:`, `CapEff:` ...) of `/proc/<pid>/status` on the host.
pub fn host_status_field(pid: i32, field: &str) -> String {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix(field))
        .map(|v| v.trim().to_owned())
        .unwrap_or_default()
}

/// Every cgroup directory on the host named `name` under a `warren` parent.
pub fn cgroup_dirs(name: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(hier) = std::fs::read_dir("/sys/fs/cgroup") {
        for h in hier.flatten() {
            let p = h.path().join("warren").join(name);
            if p.exists() {
                out.push(p);
            }
        }
    }
    let p = Path::new("/sys/fs/cgroup/warren").join(name);
    if p.exists() {
        out.push(p);
    }
    out
}

/// Removes what earlier runs of a suite left under /run: `/run/<prefix><pid>-*` whose process
/// is gone (a suite's fixtures live in statics, which are never dropped, so each run sweeps
/// after the ones before it).
pub fn sweep_stale_runs(prefix: &str) {
    let Ok(entries) = std::fs::read_dir("/run") else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(prefix) else {
            continue;
        };
        let pid = rest.split(['-', '.']).next().unwrap_or("");
        if pid.parse::<u32>().is_ok() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(e.path());
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// Every launch step, in order, as `WARREN_FAULT_INJECT` names them (docs/launch-sequence.md).
pub const LAUNCH_STEPS: [&str; 37] = [
    "validate",
    "features",
    "seccomp-compile",
    "claim-name",
    "claim-uids",
    "net-claim",
    "cgroup",
    "net-rules",
    "clone",
    "uid-map",
    "net-link",
    "wait-parent",
    "cgroup-attach",
    "set-ids",
    "parent-death",
    "cgroup-ns",
    "hostname",
    "loopback",
    "net-config",
    "mount-private",
    "mount-root",
    "mount-proc",
    "mount-dev",
    "mount-tmp",
    "mask-paths",
    "readonly-root",
    "mount-volumes",
    "pivot-root",
    "rlimits",
    "fds",
    "setsid",
    "landlock",
    "capabilities",
    "no-new-privs",
    "seccomp",
    "measure",
    "exec",
];

/// The steps only a launch with a virtual interface takes.
pub const NET_STEPS: [&str; 4] = ["net-claim", "net-rules", "net-link", "net-config"];

/// The steps of a launch without a network, in order.
pub fn plain_launch_steps() -> Vec<&'static str> {
    LAUNCH_STEPS
        .into_iter()
        .filter(|s| !NET_STEPS.contains(s))
        .collect()
}

/// The Debian bookworm root with ordinary packages (`scripts/debian-root.sh`, cached).
pub fn debian_root() -> &'static std::path::Path {
    static ROOT: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    ROOT.get_or_init(|| {
        let script =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/debian-root.sh");
        let o = Command::new("bash").arg(script).output().unwrap();
        assert!(o.status.success(), "debian-root.sh: {}", stderr(&o));
        std::path::PathBuf::from(stdout(&o).trim())
    })
}

/// An OCI layout of the Debian root (one uncompressed layer, made by GNU tar, without the
/// device nodes of its /dev), cached next to
/// the root and built once: in a temporary directory renamed into place when complete.
pub fn debian_layout() -> std::path::PathBuf {
    let root = debian_root();
    let layout = std::path::PathBuf::from(format!("{}-workloads-oci", root.display()));
    if layout.join("index.json").exists() {
        return layout;
    }
    let tmp = std::path::PathBuf::from(format!("{}.tmp-{}", layout.display(), std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(tmp.join("blobs/sha256")).unwrap();
    let layer = tmp.join("layer.tar");
    let st = Command::new("tar")
        // Device nodes are refused by the store (an environment's /dev is Warren's own).
        .args(["--numeric-owner", "--xattrs", "--exclude=./dev/*", "-C"])
        .arg(root)
        .arg("-cf")
        .arg(&layer)
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success(), "tar of the Debian root");
    let sum = |p: &std::path::Path| {
        let o = Command::new("sha256sum").arg(p).output().unwrap();
        stdout(&o).split_whitespace().next().unwrap().to_owned()
    };
    let layer_hex = sum(&layer);
    let layer_size = std::fs::metadata(&layer).unwrap().len();
    std::fs::rename(&layer, tmp.join("blobs/sha256").join(&layer_hex)).unwrap();
    let blob = |bytes: &[u8]| {
        use sha2::Digest;
        let hex = hex::encode(sha2::Sha256::digest(bytes));
        std::fs::write(tmp.join("blobs/sha256").join(&hex), bytes).unwrap();
        (format!("sha256:{hex}"), bytes.len())
    };
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": { "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"], "Cmd": ["/bin/sh"] },
        "rootfs": { "type": "layers", "diff_ids": [format!("sha256:{layer_hex}")] }
    });
    let (cd, cs) = blob(config.to_string().as_bytes());
    let manifest = serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": { "mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cs },
        "layers": [{ "mediaType": "application/vnd.oci.image.layer.v1.tar",
                     "digest": format!("sha256:{layer_hex}"), "size": layer_size }]
    });
    let (md, ms) = blob(manifest.to_string().as_bytes());
    let index = serde_json::json!({ "schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": ms }] });
    std::fs::write(tmp.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    std::fs::write(tmp.join("index.json"), index.to_string()).unwrap();
    if std::fs::rename(&tmp, &layout).is_err() {
        // Another test binary finished it first.
        let _ = std::fs::remove_dir_all(&tmp);
    }
    layout
}
