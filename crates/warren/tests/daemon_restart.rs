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

fn row(name: &str) -> Option<serde_json::Value> {
    let o = warren().args(["ps", "-a", "--json"]).output().unwrap();
    stdout(&o)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["name"] == name)
}

#[test]
fn environments_survive_a_kernel_restart_and_keep_their_mailbox() {
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
