//! A kernel restart does not take managed environments down: they keep running, the next
//! kernel re-adopts them, and their kernel connection (descriptor 3) carries on.

mod common;
use common::*;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

fn msg_bin() -> PathBuf {
    workspace_bin("warren-client", "warren-msg").to_owned()
}

/// The tests of this file take turns: each runs its own kernel on the default state directory.
static ONE_KERNEL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A kernel on the default state directory, killed with the test if the test dies. Returns
/// once it says it is ready.
fn start_kernel(msg: &Path) -> Child {
    use std::io::BufRead;
    let mut child = Command::new("setpriv")
        .args(["--pdeathsig", "KILL", "--"])
        .arg(env!("CARGO_BIN_EXE_warren"))
        .arg("daemon")
        .env("WARREN_MSG_BIN", msg)
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    loop {
        match lines.next() {
            Some(Ok(l)) if l.contains("kernel ready") => break,
            Some(Ok(_)) => continue,
            _ => panic!("the kernel did not come up"),
        }
    }
    // Keep draining what it logs so it never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    child
}

fn stop_kernel(mut k: Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &k.id().to_string()])
        .status();
    let _ = k.wait();
}

/// The workload's pid (`ps`), while it runs.
fn live_pid(name: &str) -> Option<u32> {
    row(name)?["pid"].as_u64().map(|p| p as u32)
}

fn row(name: &str) -> Option<serde_json::Value> {
    let o = warren().args(["ps", "-a", "--json"]).output().unwrap();
    stdout(&o)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["name"] == name)
}

#[test]
fn environments_survive_a_kernel_restart_and_keep_their_mailbox() {
    let _turn = ONE_KERNEL.lock().unwrap_or_else(|e| e.into_inner());
    let msg = msg_bin();
    let k1 = start_kernel(&msg);
    let keeper = unique("keeper");
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("spaces.toml");
    std::fs::write(
        &manifest,
        format!(
            "[space.{keeper}]\nimage = \"{}\"\ncommand = [\"/bin/sh\", \"-c\", \"sleep 3; warren-msg recv --timeout 20000 --body; sleep 60\"]\nrestart = \"always\"\n",
            busybox_root().display()
        ),
    )
    .unwrap();
    let o = warren().arg("apply").arg(&manifest).output().unwrap();
    assert_code(&o, 0);
    std::thread::sleep(Duration::from_millis(500));
    let before = row(&keeper).expect("managed");
    let pid = before["pid"].clone();
    assert!(pid.is_i64(), "{before}");

    // The kernel goes away: the environment keeps running.
    stop_kernel(k1);
    let live = warren().args(["ps", "--json"]).output().unwrap();
    assert!(stdout(&live).contains(&keeper), "{}", stdout(&live));

    // A new kernel re-adopts it: same workload, still managed.
    let k2 = start_kernel(&msg);
    let after = row(&keeper).expect("re-adopted");
    assert_eq!(
        after["pid"], pid,
        "the environment was restarted instead of re-adopted"
    );
    assert_eq!(after["managed"], true);
    assert_eq!(after["state"], "running");

    // Its descriptor 3 still reaches the (new) kernel: a message sent now arrives.
    let mut delivered = false;
    for _ in 0..50 {
        let o = warren()
            .env("WARREN_MSG_BIN", &msg)
            .args(["run", "--name", &unique("sender"), "--rootfs"])
            .arg(busybox_root())
            .args(["--may-send", &keeper, "--", "/bin/sh", "-c"])
            .arg(format!("warren-msg send {keeper} after-restart"))
            .output()
            .unwrap();
        if o.status.success() {
            delivered = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(delivered, "no send reached the re-adopted environment");
    let mut seen = String::new();
    for _ in 0..100 {
        seen = stdout(&warren().args(["logs", &keeper]).output().unwrap());
        if seen.contains("after-restart") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(seen.contains("after-restart"), "logs: {seen}");

    let o = warren().args(["rm", "-f", &keeper]).output().unwrap();
    assert_code(&o, 0);
    assert!(row(&keeper).is_none(), "still managed after rm -f");
    stop_kernel(k2);
}

/// The command line of process `pid`, split at its NULs.
fn cmdline(pid: u32) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .unwrap_or_default()
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect()
}

/// The parent pid of process `pid` (`/proc/PID/stat`, after the command name).
fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

#[test]
fn launchers_are_forked_by_the_launch_helper_and_hand_their_environments_to_its_waiter() {
    let _turn = ONE_KERNEL.lock().unwrap_or_else(|e| e.into_inner());
    let msg = msg_bin();
    let k = start_kernel(&msg);
    let kernel = k.id();
    let (sleeper, failer, big) = (unique("forked"), unique("forkexit"), unique("forkbig"));
    // A command line over the helper's 64 KiB request (`daemon::helper::MAX_REQUEST`), under
    // Linux's 128 KiB per argument: that launcher is executed instead.
    let long = "a".repeat(70_000);
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("spaces.toml");
    let root = busybox_root();
    std::fs::write(
        &manifest,
        format!(
            "[space.{sleeper}]\nimage = \"{r}\"\ncommand = [\"/bin/sleep\", \"60\"]\n\
             [space.{failer}]\nimage = \"{r}\"\ncommand = [\"/bin/sh\", \"-c\", \"exit 7\"]\n\
             [space.{big}]\nimage = \"{r}\"\ncommand = [\"/bin/sh\", \"-c\", \"sleep 60\", \"{long}\"]\n",
            r = root.display()
        ),
    )
    .unwrap();
    let o = warren().arg("apply").arg(&manifest).output().unwrap();
    assert_code(&o, 0);

    // The kernel's children: the launch helper's waiter, and the executed launcher (the long
    // command line); the waiter's: the factory, and the environments it took over.
    let children_of = |parent: u32| -> Vec<u32> {
        std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .filter(|p| parent_of(*p) == Some(parent))
            .collect()
    };
    let children = children_of(kernel);
    let waiter = *children
        .iter()
        .find(|p| cmdline(**p) == ["warren", "launch-waiter"])
        .unwrap_or_else(|| panic!("no launch waiter among the kernel's children {children:?}"));
    let waited = children_of(waiter);
    assert!(
        waited
            .iter()
            .any(|p| cmdline(*p) == ["warren", "launch-factory"]),
        "no launch factory among the waiter's children {waited:?}"
    );
    let launcher_of = |name: &str| -> Option<u32> {
        let o = warren().args(["inspect", name]).output().unwrap();
        let v: serde_json::Value = serde_json::from_str(&stdout(&o)).ok()?;
        let pid = v["launcher_pid"].as_u64()? as u32;
        cmdline(pid)
            .windows(2)
            .any(|w| w[0] == "--name" && w[1] == name)
            .then_some(pid)
    };
    // The sleeper's launcher handed its environment to the waiter and ended: the workload is
    // the waiter's child, and no launcher of it is left.
    let mut workload = 0;
    for _ in 0..100 {
        workload = live_pid(&sleeper).unwrap_or(0);
        if workload != 0 && launcher_of(&sleeper).is_none() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        launcher_of(&sleeper),
        None,
        "the sleeper's launcher still runs"
    );
    assert_eq!(parent_of(workload), Some(waiter), "workload {workload}");
    assert_eq!(row(&sleeper).unwrap_or_default()["state"], "running");

    // The one with the long command line was executed (its first word is the binary's path),
    // runs as the kernel's child and waits for its environment itself, in one thread (its log
    // copy and its watch of the kernel connection are done by the thread that waits).
    let executed = launcher_of(&big).expect("the executed launcher runs");
    assert_eq!(parent_of(executed), Some(kernel));
    let first = cmdline(executed).into_iter().next().unwrap_or_default();
    assert!(
        first.ends_with("/warren") && first.starts_with('/'),
        "{first}"
    );
    assert_eq!(row(&big).unwrap_or_default()["state"], "running");
    assert_eq!(parent_of(live_pid(&big).expect("big runs")), Some(executed));
    let tasks = |p: u32| {
        std::fs::read_dir(format!("/proc/{p}/task"))
            .map(|d| d.count())
            .unwrap_or(0)
    };
    assert!(
        tasks(kernel) > 1,
        "positive control: the kernel's own threads are counted"
    );
    assert_eq!(tasks(executed), 1, "the waiting launcher has threads");
    assert_eq!(tasks(waiter), 1, "the waiter has threads");

    // A forked launcher's status reaches the kernel: the failer's 7.
    let mut last = serde_json::Value::Null;
    for _ in 0..100 {
        last = row(&failer).unwrap_or_default();
        if last["state"] == "exited" || last["state"] == "failed" {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let inspect = warren().args(["inspect", &failer]).output().unwrap();
    let text = stdout(&inspect);
    assert!(text.contains("\"last_exit\": 7"), "{last}\n{text}");

    for name in [&sleeper, &failer, &big] {
        let o = warren().args(["rm", "-f", name]).output().unwrap();
        assert_code(&o, 0);
    }
    stop_kernel(k);
    // With nothing left to wait for, the waiter ends with its kernel.
    let mut gone = false;
    for _ in 0..150 {
        if cmdline(waiter).is_empty() {
            gone = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        gone,
        "the launch waiter outlived its kernel with nothing to wait for"
    );
}

/// How many lines of `warren logs NAME` are exactly `line`.
fn log_lines(name: &str, line: &str) -> usize {
    let o = warren().args(["logs", name]).output().unwrap();
    stdout(&o).lines().filter(|l| *l == line).count()
}

/// An environment that ends while no kernel runs is judged by its restart policy when the next
/// kernel starts, as if that kernel had seen it end: its launcher left its exit status, so a
/// `restart = "no"` environment stays exited with that status (not started again), and an
/// `on-failure` one that failed is started again.
#[test]
fn an_environment_that_ends_while_no_kernel_runs_is_judged_by_its_restart_policy() {
    let _turn = ONE_KERNEL.lock().unwrap_or_else(|e| e.into_inner());
    let msg = msg_bin();
    let k1 = start_kernel(&msg);
    let (once, retry) = (unique("once"), unique("retry"));
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("spaces.toml");
    let space = |name: &str, restart: &str, code: i32| {
        format!(
            "[space.{name}]\nimage = \"{}\"\ncommand = [\"/bin/sh\", \"-c\", \"echo run; sleep 2; exit {code}\"]\nrestart = \"{restart}\"\n",
            busybox_root().display()
        )
    };
    std::fs::write(
        &manifest,
        space(&once, "no", 4) + &space(&retry, "on-failure", 3),
    )
    .unwrap();
    let o = warren().arg("apply").arg(&manifest).output().unwrap();
    assert_code(&o, 0);
    for name in [&once, &retry] {
        let mut n = 0;
        while log_lines(name, "run") == 0 && n < 100 {
            std::thread::sleep(Duration::from_millis(100));
            n += 1;
        }
        assert_eq!(log_lines(name, "run"), 1, "{name} did not start");
    }

    // No kernel while both end (2 s after they started).
    stop_kernel(k1);
    std::thread::sleep(Duration::from_secs(4));
    let k2 = start_kernel(&msg);

    let gone = row(&once).expect("still managed");
    assert_eq!(gone["state"], "exited", "{gone}");
    assert_eq!(gone["last_exit"], 4, "{gone}");
    let mut n = 0;
    while log_lines(&retry, "run") < 2 && n < 100 {
        std::thread::sleep(Duration::from_millis(100));
        n += 1;
    }
    assert_eq!(
        log_lines(&retry, "run"),
        2,
        "the on-failure environment was not started again"
    );
    assert_eq!(row(&retry).expect("managed")["last_exit"], 3);
    assert_eq!(
        log_lines(&once, "run"),
        1,
        "the restart = \"no\" environment ran again"
    );

    for name in [&once, &retry] {
        let o = warren().args(["rm", "-f", name]).output().unwrap();
        assert_code(&o, 0);
    }
    stop_kernel(k2);
}

/// After a kernel restart, the environments the previous kernel's launch waiter holds are
/// re-adopted; the waiter leaves each one's status in `exits/NAME` as it ends. If that waiter
/// is killed instead (SIGKILL: its environments die with it, by their parent-death signal, and
/// no status is left), the kernel waits for the missing statuses side by side, not one after
/// the other while its loop stands still: every end is reported within about one wait (2 s,
/// `LATE_STATUS_MS`) rather than one wait each, with the status lost (255), and the kernel
/// answers meanwhile. Positive controls: the environments were the old waiter's children, and
/// re-adopted as running.
/// `count` sleepers applied on a fresh kernel and handed to its launch waiter; that kernel is
/// killed and a new one re-adopts them. Returns the new kernel, the names, the old waiter and
/// the workloads.
fn handed_then_readopted(msg: &Path, count: usize) -> (Child, Vec<String>, u32, Vec<u32>) {
    let mut k = start_kernel(msg);
    let kernel = k.id();
    let names: Vec<String> = (0..count).map(|_| unique("lostwaiter")).collect();
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("spaces.toml");
    let root = busybox_root();
    let text: String = names
        .iter()
        .map(|n| {
            format!(
                "[space.{n}]\nimage = \"{}\"\ncommand = [\"/bin/sleep\", \"60\"]\n",
                root.display()
            )
        })
        .collect();
    std::fs::write(&manifest, text).unwrap();
    let o = warren().arg("apply").arg(&manifest).output().unwrap();
    assert_code(&o, 0);
    let waiter = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .find(|p| parent_of(*p) == Some(kernel) && cmdline(*p) == ["warren", "launch-waiter"])
        .expect("the kernel's launch waiter");
    // Every environment handed to the waiter: its launcher gone after the first second (the
    // environment is the waiter's child from its start: a launcher clones it as a sibling).
    let launcher_left = |name: &str| {
        std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .any(|p| {
                let c = cmdline(p);
                c.iter().any(|a| a == "run")
                    && c.windows(2).any(|w| w[0] == "--name" && w[1] == name)
            })
    };
    let mut workloads = Vec::new();
    for _ in 0..200 {
        workloads = names.iter().filter_map(|n| live_pid(n)).collect();
        if workloads.len() == names.len() && !names.iter().any(|n| launcher_left(n)) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(workloads.len(), names.len());
    for (n, p) in names.iter().zip(&workloads) {
        assert!(!launcher_left(n), "{n}'s launcher still runs");
        assert_eq!(
            parent_of(*p),
            Some(waiter),
            "workload {p} is not the waiter's"
        );
    }
    // The kernel goes (SIGKILL), the next one re-adopts them.
    let _ = k.kill();
    let _ = k.wait();
    let k2 = start_kernel(msg);
    for n in &names {
        assert_eq!(row(n).unwrap_or_default()["state"], "running", "{n}");
    }
    (k2, names, waiter, workloads)
}

#[test]
fn ends_whose_status_never_comes_after_a_restart_do_not_hold_the_kernel_up() {
    let _turn = ONE_KERNEL.lock().unwrap_or_else(|e| e.into_inner());
    let msg = msg_bin();
    let (k2, names, waiter, workloads) = handed_then_readopted(&msg, 5);
    // Positive control for the cgroups checked at the end: each environment has one.
    for n in &names {
        assert!(!cgroup_dirs(n).is_empty(), "{n} has no cgroup");
    }
    // The old waiter is killed: its environments die with it, and nobody leaves a status.
    let _ = Command::new("kill")
        .args(["-KILL", &waiter.to_string()])
        .status();
    let killed = std::time::Instant::now();
    for p in &workloads {
        while Path::new(&format!("/proc/{p}")).exists() {
            assert!(
                killed.elapsed() < Duration::from_secs(10),
                "workload {p} outlived its waiter"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    // The kernel answers while it waits for the statuses.
    let asked = std::time::Instant::now();
    let o = warren().args(["ps", "-a", "--json"]).output().unwrap();
    assert_code(&o, 0);
    let answered = asked.elapsed();
    // Every end is reported, together, after about one wait.
    let mut ended = Vec::new();
    while ended.len() < names.len() {
        assert!(
            killed.elapsed() < Duration::from_secs(9),
            "only {ended:?} of {names:?} were reported ended after {:?}",
            killed.elapsed()
        );
        ended = names
            .iter()
            .filter(|n| row(n).is_some_and(|r| r["state"] == "exited"))
            .cloned()
            .collect();
        std::thread::sleep(Duration::from_millis(20));
    }
    let all_reported = killed.elapsed();
    // One wait each, one after the other, would be 10 s (and the kernel deaf meanwhile).
    assert!(
        all_reported < Duration::from_secs(6),
        "the ends took {all_reported:?} to be reported"
    );
    assert!(
        answered < Duration::from_millis(1500),
        "ps took {answered:?} while the kernel waited for the statuses"
    );
    for n in &names {
        let o = warren().args(["inspect", n]).output().unwrap();
        let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap_or_default();
        assert_eq!(v["last_exit"], 255, "{n}: {v}");
        // What the killed waiter would have removed is removed by the kernel.
        assert_eq!(
            cgroup_dirs(n),
            Vec::<PathBuf>::new(),
            "{n}'s cgroup is left"
        );
        let o = warren().args(["rm", "-f", n]).output().unwrap();
        assert_code(&o, 0);
    }
    stop_kernel(k2);
}

/// The same, but the kernel is stopped (SIGTERM) while it still waits for the statuses: it
/// reports those ends before it goes (status 255), so the next kernel finds them exited and
/// does not start these `restart = "no"` environments again. Positive control: each was
/// running under the second kernel.
#[test]
fn a_kernel_stopped_while_it_waits_for_statuses_reports_the_ends_first() {
    let _turn = ONE_KERNEL.lock().unwrap_or_else(|e| e.into_inner());
    let msg = msg_bin();
    let (k2, names, waiter, workloads) = handed_then_readopted(&msg, 2);
    let _ = Command::new("kill")
        .args(["-KILL", &waiter.to_string()])
        .status();
    for p in &workloads {
        while Path::new(&format!("/proc/{p}")).exists() {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    // Within the wait (2 s) for the statuses that will not come.
    std::thread::sleep(Duration::from_millis(200));
    stop_kernel(k2);
    let k3 = start_kernel(&msg);
    for n in &names {
        let v = row(n).unwrap_or_default();
        assert_eq!(v["state"], "exited", "{n}: {v}");
        let o = warren().args(["inspect", n]).output().unwrap();
        let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap_or_default();
        assert_eq!(v["last_exit"], 255, "{n}: {v}");
    }
    // And none of them was started again.
    std::thread::sleep(Duration::from_millis(500));
    for n in &names {
        assert_eq!(live_pid(n), None, "{n} was started again");
        let o = warren().args(["rm", "-f", n]).output().unwrap();
        assert_code(&o, 0);
    }
    stop_kernel(k3);
}
