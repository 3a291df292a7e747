//! A launcher hands its running environment to its parent and ends; the parent waits for the
//! environment, collects its status and releases what it held (`warren_sandbox::handoff`).
//!
//! Its own `main` (`harness = false`): the test forks launchers, which the test harness's
//! threads would forbid. Needs root and busybox-static (`scripts/setup.sh`).

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, poll};
use rustix::process::{WaitId, WaitIdOptions, waitid};
use warren_sandbox::handoff::{HandOff, HandOffError};
use warren_sandbox::state::StateDir;
use warren_sandbox::{LaunchPlan, Parentage, RootSource};

fn main() {
    assert!(
        rustix::process::geteuid().is_root(),
        "the hand-off test launches environments: run it as root"
    );
    let tmp = tempfile::tempdir().unwrap();
    let root = busybox_root(tmp.path());
    let state = StateDir::with_uid_registry(tmp.path().join("state"), tmp.path().join("uids"));

    the_parent_takes_over_and_collects_the_status(&root, &state, tmp.path());
    println!("test the_parent_takes_over_and_collects_the_status ... ok");
    a_process_that_is_not_the_parent_is_refused_and_nothing_is_left(&root, &state, tmp.path());
    println!("test a_process_that_is_not_the_parent_is_refused_and_nothing_is_left ... ok");
    // As libtest ends, for scripts/test.sh's count.
    println!("\ntest result: ok. 2 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out");
}

fn the_parent_takes_over_and_collects_the_status(root: &Path, state: &StateDir, tmp: &Path) {
    let name = format!("handoff-{}", std::process::id());
    // Runs until it gets SIGTERM, then exits 7.
    let script = "trap 'exit 7' TERM; while :; do sleep 0.05; done";
    let plan = plan(&name, root, script);
    let (launcher, sock) = launcher(&plan, state, Parentage::LaunchersParent);
    let handoff = received(&sock, &launcher);
    let pid = handoff.pid();
    // The launcher ended (status 0) once it had sent it.
    assert_eq!(reap(&launcher), Some(0));
    // Positive controls: the environment runs on without its launcher, holding its name, its
    // uid range and its cgroup.
    assert!(alive(pid), "the environment ended with its launcher");
    assert!(state.name_in_use(&name).unwrap());
    assert_eq!(uid_slots(tmp).len(), 1);
    let cgroups = cgroup_dirs(&name);
    assert!(!cgroups.is_empty(), "no cgroup directory for {name}");

    let sup = handoff.take_over().expect("the parent takes it over");
    assert_eq!(sup.pid(), pid);
    // SIGTERM until it ends: one sent before the shell set its trap would be ignored (pid 1).
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        sup.signal(rustix::process::Signal::TERM).unwrap();
        let mut fds = [PollFd::from_borrowed_fd(sup.exit_fd(), PollFlags::IN)];
        let tick = rustix::time::Timespec {
            tv_sec: 0,
            tv_nsec: 100_000_000,
        };
        if poll(&mut fds, Some(&tick)).unwrap_or(0) > 0 || Instant::now() > deadline {
            break;
        }
    }
    let exit = sup.wait(&mut |_| {}).unwrap();
    assert_eq!((exit.code, exit.signal), (7, None));
    // Everything it held is released.
    assert!(!state.name_in_use(&name).unwrap(), "the name is still held");
    assert_eq!(uid_slots(tmp), Vec::<PathBuf>::new());
    for dir in &cgroups {
        assert!(!dir.exists(), "{} is left", dir.display());
    }
}

fn a_process_that_is_not_the_parent_is_refused_and_nothing_is_left(
    root: &Path,
    state: &StateDir,
    tmp: &Path,
) {
    let name = format!("handoff-np-{}", std::process::id());
    let plan = plan(&name, root, "sleep 1000");
    // The environment is the launcher's child: this process cannot wait for it.
    let (launcher, sock) = launcher(&plan, state, Parentage::Launcher);
    let handoff = received(&sock, &launcher);
    let pid = handoff.pid();
    let cgroups = cgroup_dirs(&name);
    assert!(!cgroups.is_empty(), "no cgroup directory for {name}");
    assert!(alive(pid));
    match handoff.take_over() {
        Err(HandOffError::NotParent(p)) => assert_eq!(p, pid),
        other => panic!("taken over by a process that is not its parent: {other:?}"),
    }
    drop(sock);
    assert_eq!(reap(&launcher), Some(0));
    let deadline = Instant::now() + Duration::from_secs(10);
    while alive(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!alive(pid), "the refused environment still runs");
    assert!(!state.name_in_use(&name).unwrap(), "the name is still held");
    assert_eq!(uid_slots(tmp), Vec::<PathBuf>::new());
    for dir in &cgroups {
        assert!(!dir.exists(), "{} is left", dir.display());
    }
}

/// Fork a launcher that launches `plan` as `parentage` says, sends the hand-off on its end of
/// a socket pair and exits 0 (101 and a message if anything failed). Returns its pidfd and
/// the test's end.
fn launcher(plan: &LaunchPlan, state: &StateDir, parentage: Parentage) -> (OwnedFd, OwnedFd) {
    let (ours, theirs) = rustix::net::socketpair(
        rustix::net::AddressFamily::UNIX,
        rustix::net::SocketType::SEQPACKET,
        rustix::net::SocketFlags::CLOEXEC,
        None,
    )
    .unwrap();
    match warren_sys::fork_into_namespaces(0, None).unwrap() {
        warren_sys::Forked::Child => {
            drop(ours);
            let code = match launch_and_send(plan, state, parentage, theirs) {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("launcher: {e}");
                    101
                }
            };
            std::process::exit(code)
        }
        warren_sys::Forked::Parent { pidfd, .. } => (pidfd, ours),
    }
}

fn launch_and_send(
    plan: &LaunchPlan,
    state: &StateDir,
    parentage: Parentage,
    sock: OwnedFd,
) -> Result<(), Box<dyn std::error::Error>> {
    let mut measure =
        |_: &LaunchPlan,
         _: &warren_sandbox::Applied,
         _: &[(String, String)]|
         -> Result<warren_sandbox::Measurement, Box<dyn std::error::Error + Send + Sync>> {
            // Not recorded anywhere: the launch only needs a measurement to go on.
            Ok(warren_sandbox::Measurement {
                root: "none",
                recnum: 0,
                digest: String::new(),
                image_digest: String::new(),
                image_manifest_digest: None,
                config_digest: String::new(),
            })
        };
    let running = warren_sandbox::launch_as(plan, state, None, &mut measure, parentage)?;
    let handoff = HandOff::new(running.into_supervised()).map_err(|b| b.1)?;
    handoff.send(sock.as_fd())?;
    if parentage == Parentage::Launcher {
        // The environment dies with this process (its parent-death signal): stay until the
        // test hangs up.
        let _ = rustix::io::read(&sock, &mut [0u8; 1]);
    }
    Ok(())
}

fn plan(name: &str, root: &Path, script: &str) -> LaunchPlan {
    LaunchPlan {
        name: name.parse().unwrap(),
        root: RootSource::Rootfs(root.to_owned()),
        argv: vec!["/bin/sh".into(), "-c".into(), script.into()],
        env: vec![("PATH".into(), "/bin".into())],
        limits: warren_cgroup::Limits {
            memory: Some(64 << 20),
            pids: Some(64),
            cpu: None,
        },
        cgroup: warren_cgroup::Placement::default(),
        tmpfs_size: LaunchPlan::DEFAULT_TMPFS_SIZE,
        writable_root: None,
        tty: false,
        allow_missing: Default::default(),
        client_tool: None,
        net: None,
        user: None,
        hostname: None,
        add_hosts: Vec::new(),
        dns: Vec::new(),
        capabilities: Vec::new(),
        workdir: None,
        image_name: None,
        image_manifest_digest: None,
        image_tree_digest: None,
        mounts: Vec::new(),
        seccomp: Default::default(),
    }
}

/// The hand-off from the launcher, or a failure that says how the launcher ended.
fn received(sock: &OwnedFd, launcher: &OwnedFd) -> HandOff {
    match HandOff::receive(sock.as_fd()) {
        Ok(Some(h)) => h,
        other => panic!(
            "no hand-off ({other:?}); the launcher exited with {:?}",
            reap(launcher)
        ),
    }
}

/// Reap the launcher (bounded); its exit code.
fn reap(pidfd: &OwnedFd) -> Option<i32> {
    let mut fds = [PollFd::new(pidfd, PollFlags::IN)];
    let _ = poll(
        &mut fds,
        Some(&rustix::time::Timespec {
            tv_sec: 30,
            tv_nsec: 0,
        }),
    );
    waitid(WaitId::PidFd(pidfd.as_fd()), WaitIdOptions::EXITED)
        .unwrap()
        .and_then(|s| s.exit_status())
}

fn alive(pid: i32) -> bool {
    // A zombie is not alive: it has ended and waits for its parent.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z')),
        Err(_) => false,
    }
}

fn uid_slots(tmp: &Path) -> Vec<PathBuf> {
    match std::fs::read_dir(tmp.join("uids")) {
        Ok(d) => d.flatten().map(|e| e.path()).collect(),
        Err(_) => Vec::new(),
    }
}

/// The environment's cgroup directories, in whichever hierarchies this host has.
fn cgroup_dirs(leaf: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    if let Ok(d) = std::fs::read_dir("/sys/fs/cgroup") {
        for h in d.flatten() {
            let dir = h.path().join("warren").join(leaf);
            if dir.is_dir() {
                found.push(dir);
            }
        }
    }
    let unified = Path::new("/sys/fs/cgroup/warren").join(leaf);
    if unified.is_dir() {
        found.push(unified);
    }
    found
}

/// A busybox root: the binary, its applets as links, the mount points a launch needs.
fn busybox_root(tmp: &Path) -> PathBuf {
    let dir = tmp.join("root");
    for d in ["bin", "proc", "dev", "tmp", "sys", "etc", "root"] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
    let busybox = Path::new("/bin/busybox");
    assert!(
        busybox.exists(),
        "busybox-static is needed: run scripts/setup.sh"
    );
    std::fs::copy(busybox, dir.join("bin/busybox")).unwrap();
    for applet in ["sh", "sleep"] {
        std::os::unix::fs::symlink("busybox", dir.join("bin").join(applet)).unwrap();
    }
    std::fs::write(dir.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    std::fs::write(dir.join("etc/group"), "root:x:0:\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    for p in [tmp, dir.as_path()] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    dir
}
