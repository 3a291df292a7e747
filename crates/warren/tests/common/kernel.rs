//! A kernel on the default state directory for the suites that drive `apply` (manifests,
//! contrib): one long-lived thread starts and stops `warren daemon` processes (each with a
//! parent-death signal tied to that thread), so a kernel goes away with its test binary, and a
//! test can stop and restart it as `systemctl restart` would.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock, mpsc};
use std::time::{Duration, Instant};

use super::warren;

/// This test binary's suite name (`contrib`, `manifest_apply`), for file names.
fn suite() -> String {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.file_name().map(|f| f.to_string_lossy().into_owned()))
        .and_then(|f| f.rsplit_once('-').map(|(s, _)| s.to_owned()))
        .unwrap_or_else(|| "tests".into())
}

/// Held for a whole test by suites that `apply`: `apply` converges *everything* the kernel
/// manages to one file, so two tests applying at once would stop each other's environments.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// The static `warren-msg` client next to `warren`.
pub fn msg_bin() -> &'static Path {
    super::workspace_bin("warren-client", "warren-msg")
}

/// Where the daemons this binary starts write their log (shown when a test fails).
pub fn kernel_log() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{}-kernel.log", suite()))
}

pub fn kernel_log_tail() -> String {
    let text = std::fs::read_to_string(kernel_log()).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// Requests to the thread that starts and stops daemons. A daemon runs with a parent-death
/// signal tied to the thread that started it, so one long-lived thread starts them all.
pub enum KernelRequest {
    Start(mpsc::Sender<u32>),
    Stop(u32, mpsc::Sender<()>),
}

pub fn keeper() -> &'static Mutex<mpsc::Sender<KernelRequest>> {
    static KEEPER: OnceLock<Mutex<mpsc::Sender<KernelRequest>>> = OnceLock::new();
    KEEPER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<KernelRequest>();
        std::thread::spawn(move || {
            let mut children: Vec<std::process::Child> = Vec::new();
            // The sender lives in a static: this loop (and so this thread) lasts as long as the
            // test process.
            for req in rx {
                match req {
                    KernelRequest::Start(reply) => {
                        let log = std::fs::OpenOptions::new()
                            .create(true)
                            .append(true)
                            .open(kernel_log())
                            .unwrap();
                        let child = Command::new("setpriv")
                            .args(["--pdeathsig", "KILL", "--"])
                            .arg(env!("CARGO_BIN_EXE_warren"))
                            .arg("daemon")
                            .env("WARREN_MSG_BIN", msg_bin())
                            .stdin(Stdio::null())
                            .stdout(log.try_clone().unwrap())
                            .stderr(log)
                            .spawn()
                            .unwrap();
                        let _ = reply.send(child.id());
                        children.push(child);
                    }
                    KernelRequest::Stop(pid, reply) => {
                        if let Some(i) = children.iter().position(|c| c.id() == pid) {
                            let mut child = children.remove(i);
                            let _ = Command::new("kill")
                                .args(["-TERM", &pid.to_string()])
                                .status();
                            let _ = child.wait();
                        }
                        let _ = reply.send(());
                    }
                }
            }
        });
        Mutex::new(tx)
    })
}

/// The pid of the daemon this binary started and that is running now, if any.
pub fn current_kernel() -> &'static Mutex<Option<u32>> {
    static CURRENT: Mutex<Option<u32>> = Mutex::new(None);
    &CURRENT
}

/// An empty manifest: applying it stops everything; diffing it tells whether a kernel answers.
pub fn empty_manifest() -> &'static Path {
    static EMPTY: OnceLock<PathBuf> = OnceLock::new();
    EMPTY.get_or_init(|| {
        let p = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{}-empty.toml", suite()));
        std::fs::write(&p, "# no environments\n").unwrap();
        p
    })
}

/// Whether a kernel answers on the default state directory (`diff` exits 0 or 1 then, 2 when
/// no kernel runs).
pub fn kernel_answers() -> bool {
    let o = warren().arg("diff").arg(empty_manifest()).output().unwrap();
    matches!(o.status.code(), Some(0 | 1))
}

/// Whether `pid` runs (exists and is not a zombie waiting to be reaped).
pub fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z'))
    })
}

pub fn keeper_send(req: KernelRequest) {
    keeper().lock().unwrap().send(req).unwrap();
}

/// Reap (and if need be stop) daemon `pid`.
pub fn reap(pid: u32) {
    let (tx, rx) = mpsc::channel();
    keeper_send(KernelRequest::Stop(pid, tx));
    rx.recv().unwrap();
}

/// Start a kernel of this binary's own. A kernel started by someone else on the same state
/// directory (another test binary run concurrently) makes ours exit at once: then wait for it
/// to go away and try again, rather than run the tests against a kernel that may vanish.
pub fn start_kernel() {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (tx, rx) = mpsc::channel();
        keeper_send(KernelRequest::Start(tx));
        let pid = rx.recv().unwrap();
        let start = Instant::now();
        while running(pid) && start.elapsed() < Duration::from_secs(10) {
            if kernel_answers() {
                // Still ours a moment later: a daemon that finds another kernel exits at once.
                std::thread::sleep(Duration::from_millis(100));
                if running(pid) {
                    *current_kernel().lock().unwrap() = Some(pid);
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        reap(pid);
        assert!(
            Instant::now() < deadline,
            "no kernel of this test binary could start on /run/warren (another one runs there):\n{}",
            kernel_log_tail()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Make sure this binary's kernel runs (started once; again after a test stopped it).
pub fn kernel() {
    msg_bin();
    let ours = *current_kernel().lock().unwrap();
    match ours {
        Some(pid) if running(pid) && kernel_answers() => {}
        Some(pid) => {
            reap(pid);
            *current_kernel().lock().unwrap() = None;
            start_kernel();
        }
        None => start_kernel(),
    }
}

/// Stop the kernel this binary started (SIGTERM), as `systemctl restart` would, and wait until
/// it is gone.
pub fn stop_kernel() {
    let pid = current_kernel()
        .lock()
        .unwrap()
        .take()
        .expect("no kernel of this test binary runs");
    reap(pid);
    assert!(!kernel_answers(), "a kernel still answers after the stop");
}

/// A manifest in a temporary directory, and the environments it declared; whatever the kernel
/// manages is removed when it is dropped (the kernel suites run one test at a time).
pub struct Space {
    dir: tempfile::TempDir,
    names: Vec<String>,
}

impl Space {
    /// A space on the suite's kernel (started if need be).
    pub fn new() -> Space {
        kernel();
        Space {
            dir: tempfile::tempdir().unwrap(),
            names: Vec::new(),
        }
    }

    /// A fresh environment name, remembered for the clean-up.
    pub fn name(&mut self, prefix: &str) -> String {
        let n = super::unique(prefix);
        self.names.push(n.clone());
        n
    }

    /// The manifest's path.
    pub fn file(&self) -> PathBuf {
        self.dir.path().join("spaces.toml")
    }

    /// Write the manifest and return its path.
    pub fn write(&self, text: &str) -> PathBuf {
        std::fs::write(self.file(), text).unwrap();
        self.file()
    }

    /// Write a manifest made of these `[space.NAME]` tables and return its path.
    pub fn write_tables(&self, tables: &[String]) -> PathBuf {
        self.write(&tables.join("\n"))
    }
}

impl Drop for Space {
    fn drop(&mut self) {
        // What the kernel manages now is this test's (also what a tool such as Salt declared
        // under names the test did not pick): an empty manifest stops and forgets all of it, in
        // parallel.
        let _ = warren()
            .args(["apply", "--timeout", "1"])
            .arg(empty_manifest())
            .output();
        // Forgotten environments keep their logs; these names will not come back.
        for n in &self.names {
            let _ = std::fs::remove_file(Path::new("/run/warren/logs").join(format!("{n}.log")));
        }
    }
}
