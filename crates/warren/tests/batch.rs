//! Batch frames (protocol version 2) end to end: a real `warren daemon` on a state directory
//! of this suite's own, two environments on a busybox root that talk through `warren-msg
//! send-many` / `recv-many`. A sender's batch larger than the receiver's mailbox waits for room
//! and arrives whole and in order, in receives of at most the asked size, with the sender's
//! identity as the kernel saw it; a single message larger than the daemon's usual packets
//! (64 KiB) still arrives whole behind it.

mod common;
use common::*;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A kernel on a state directory of its own, stopped (and its directory removed) on drop.
struct Kernel {
    dir: PathBuf,
    daemon: Child,
}

impl Kernel {
    fn start() -> Kernel {
        let dir = PathBuf::from(format!("/run/warren-perf-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let daemon = Command::new("setpriv")
            .args(["--pdeathsig", "KILL", "--"])
            .arg(env!("CARGO_BIN_EXE_warren"))
            .arg("--state-dir")
            .arg(&dir)
            .arg("daemon")
            .arg("--audit-log")
            .arg(dir.join("audit.jsonl"))
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let sock = dir.join("kernel.sock");
        let start = Instant::now();
        while !sock.exists() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "no kernel came up"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        Kernel { dir, daemon }
    }

    /// `warren run` on this kernel of a shell script, on the busybox root.
    fn env(&self, name: &str, extra: &[&str], script: &str) -> Command {
        let mut c = warren();
        c.env(
            "WARREN_MSG_BIN",
            workspace_bin("warren-client", "warren-msg"),
        );
        c.arg("--state-dir").arg(&self.dir);
        c.args(["run", "--name", name, "--rootfs"])
            .arg(busybox_root())
            .args(extra)
            .args(["--", "/bin/sh", "-c", script]);
        c.stdout(Stdio::piped()).stderr(Stdio::piped());
        c
    }

    /// Whether the kernel has registered environment `name` (its name lock holds a record).
    fn knows(&self, name: &str) -> bool {
        let o = warren()
            .arg("--state-dir")
            .arg(&self.dir)
            .args(["inspect", name])
            .output()
            .unwrap();
        o.status.success() && String::from_utf8_lossy(&o.stdout).contains("\"pid\"")
    }
}

impl Drop for Kernel {
    fn drop(&mut self) {
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn finish(child: Child) -> (bool, String, String) {
    let o = child.wait_with_output().unwrap();
    (o.status.success(), stdout(&o), stderr(&o))
}

#[test]
fn a_batch_larger_than_the_mailbox_waits_for_room_and_arrives_whole_and_in_order() {
    assert!(Path::new("/bin/busybox").exists() || busybox_root().exists());
    let k = Kernel::start();
    let rcv = unique("brcv");
    let snd = unique("bsnd");
    // The receiver: 4 messages of room; takes at most 3 per receive until it has all eleven
    // (the ten of the batch and the large one, which is plain too and may come in the same
    // receive as the last of the batch).
    let rcv_script = "n=0; while [ $n -lt 11 ]; do \
            out=$(warren-msg recv-many --max 3 --timeout 20000) || exit 1; \
            echo \"$out\"; echo \"batch $(echo \"$out\" | wc -l)\"; \
            n=$((n + $(echo \"$out\" | wc -l))); \
        done";
    let receiver = k
        .env(&rcv, &["--mailbox-capacity", "4"], rcv_script)
        .spawn()
        .unwrap();
    let start = Instant::now();
    while !k.knows(&rcv) {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the receiver did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let bodies: Vec<String> = (0..10).map(|i| format!("m{i}")).collect();
    let snd_script = format!(
        "warren-msg send-many {rcv} {} && \
         big=$(head -c 100000 /dev/zero | tr '\\0' x) && warren-msg send {rcv} \"$big\"",
        bodies.join(" ")
    );
    let sender = k
        .env(&snd, &["--may-send", &rcv], &snd_script)
        .spawn()
        .unwrap();
    let (ok, out, err) = finish(sender);
    assert!(ok, "sender failed: {out}\n{err}");
    assert!(out.contains("{\"accepted\":10}"), "{out}");
    let (ok, out, err) = finish(receiver);
    assert!(ok, "receiver failed: {out}\n{err}");

    let mut got = Vec::new();
    let mut sizes = Vec::new();
    for line in out.lines() {
        if let Some(n) = line.strip_prefix("batch ") {
            sizes.push(n.trim().parse::<usize>().unwrap());
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| {
            panic!("{line:?}: {e}\n{out}");
        });
        assert_eq!(
            v["from"],
            snd.as_str(),
            "the sender as the kernel saw it: {line}"
        );
        assert_eq!(v["badge"], 0);
        assert_eq!(v["mailbox"], 1);
        got.push(v["body"].as_str().unwrap().to_owned());
    }
    assert_eq!(got.len(), 11, "{out}");
    let big = got.pop().unwrap();
    assert_eq!(got, bodies, "all ten, in the order sent: {out}");
    assert!(
        big.len() == 100_000 && big.bytes().all(|b| b == b'x'),
        "the large message arrives whole, last"
    );
    assert!(sizes.iter().all(|&n| (1..=3).contains(&n)), "{sizes:?}");
    assert_eq!(sizes.iter().sum::<usize>(), 11);
}
