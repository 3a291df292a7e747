//! Spawn (issue 16, protocol version 3) end to end, as far as it is built: a real `warren up`
//! with a manifest declaring a template and an environment that may spawn from it, on a state
//! directory of this test's own (so no other suite's kernel or launcher meets it). Inside the
//! environment, `warren-msg` shows the SPAWN handle under `template:NAME`, finds it by name,
//! and spawns: the kernel accepts the spawn (it passes every check) and the daemon answers
//! `spawn-failed`, saying that it cannot start children yet; a template the environment was not
//! given is not found. The refusal is audited.

mod common;
use common::kernel::msg_bin;
use common::*;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A daemon on a private state directory, killed (SIGTERM, then reaped) when dropped.
struct Daemon {
    child: Child,
    state: tempfile::TempDir,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let pid = rustix::process::Pid::from_child(&self.child);
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        let _ = self.child.wait();
    }
}

impl Daemon {
    fn warren(&self) -> Command {
        let mut c = warren();
        c.env("WARREN_STATE_DIR", self.state.path());
        c
    }
}

#[test]
fn an_environment_spawns_through_its_template_handle_and_is_told_why_it_failed() {
    msg_bin();
    let root = busybox_root();
    let dir = tempfile::tempdir().unwrap();
    let front = unique("front");
    let template = unique("req").replace('-', "x");
    let script = format!(
        "warren-msg whoami; warren-msg lookup template:{template}; \
         warren-msg spawn {template} --name a --grant me=1 -- --once; echo spawn=$?; \
         warren-msg spawn other; echo other=$?; echo done"
    );
    let manifest = format!(
        "[template.{template}]\nimage = {root:?}\ncommand = [\"/bin/true\"]\nmax_instances = 2\n\
         args = true\n\n[space.{front}]\nimage = {root:?}\ncommand = [\"/bin/sh\", \"-c\", \
         {script:?}]\nmay_spawn = [\"{template}\"]\n"
    );
    let file = dir.path().join("spaces.toml");
    std::fs::write(&file, manifest).unwrap();
    let state = tempfile::tempdir().unwrap();
    let log = std::fs::File::create(dir.path().join("daemon.log")).unwrap();
    let child = warren()
        .env("WARREN_STATE_DIR", state.path())
        .arg("up")
        .arg(&file)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let d = Daemon { child, state };

    // Wait for the environment's script to finish.
    let start = Instant::now();
    let out = loop {
        let o = d.warren().args(["logs", &front]).output().unwrap();
        let text = stdout(&o);
        if text.contains("done") {
            break text;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no output from {front}: {text}\n{}\ndaemon log:\n{}",
            stderr(&o),
            std::fs::read_to_string(dir.path().join("daemon.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let lines: Vec<&str> = out.lines().collect();
    let whoami: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(
        whoami["handles"][1],
        serde_json::json!({
            "handle": 2,
            "target": format!("template:{template}"),
            "rights": ["grant", "spawn"],
        }),
        "{out}"
    );
    assert_eq!(
        lines[1], r#"{"handle":2,"rights":["grant","spawn"]}"#,
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "warren-msg: spawn: spawn-failed: the child could not be started: this kernel cannot \
             start children yet: the launcher does not serve templates (child \"{template}-a\""
        )),
        "{out}"
    );
    assert!(out.contains("spawn=1"), "{out}");
    assert!(
        out.contains("warren-msg: spawn: not-found:") && out.contains("other=1"),
        "{out}"
    );
    let audit = std::fs::read_to_string(d.state.path().join("audit.jsonl")).unwrap();
    assert!(
        audit.lines().any(|l| l.contains("\"op\":\"spawn\"")
            && l.contains("\"code\":\"spawn-failed\"")
            && l.contains(&format!("\"target\":\"{template}-a\""))),
        "{audit}"
    );
}
