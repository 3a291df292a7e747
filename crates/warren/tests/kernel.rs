//! The kernel (issue 4), end to end: a real `warren daemon`, environments started with
//! `warren run` on a busybox root with no network, talking only through their mailboxes with
//! the in-environment client `warren-msg`.

mod common;
use common::*;

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

/// The static `warren-msg` client.
fn msg_bin() -> &'static Path {
    workspace_bin("warren-client", "warren-msg")
}

/// One kernel for this test binary, on the default state directory. It is started from a
/// thread that lives as long as the test process, with a parent-death signal, so it goes away
/// with the tests.
fn kernel() {
    static UP: OnceLock<()> = OnceLock::new();
    UP.get_or_init(|| {
        msg_bin();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut child = Command::new("setpriv")
                .args(["--pdeathsig", "KILL", "--"])
                .arg(env!("CARGO_BIN_EXE_warren"))
                .arg("daemon")
                .stdin(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            tx.send(()).unwrap();
            let _ = child.wait();
            // Keep this thread (the daemon's parent) alive for the whole test run.
            loop {
                std::thread::park();
            }
        });
        rx.recv().unwrap();
        for _ in 0..300 {
            if Path::new("/run/warren/kernel.sock").exists() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("the kernel did not come up");
    });
}

/// `warren run` of a shell script in a mailbox-connected environment.
fn env_cmd(name: &str, extra: &[&str], script: &str) -> Command {
    kernel();
    let mut c = warren();
    c.env("WARREN_MSG_BIN", msg_bin());
    c.args(["run", "--name", name, "--rootfs"])
        .arg(busybox_root())
        .args(extra);
    c.args(["--", "/bin/sh", "-c", script]);
    c
}

fn run_env(name: &str, extra: &[&str], script: &str) -> std::process::Output {
    env_cmd(name, extra, script).output().unwrap()
}

/// Start an environment in the background (its output is collected with `finish`).
fn spawn_env(name: &str, extra: &[&str], script: &str) -> std::process::Child {
    let mut c = env_cmd(name, extra, script);
    c.stdout(Stdio::piped()).stderr(Stdio::piped());
    let child = c.spawn().unwrap();
    // Wait until the kernel knows it (its name lock holds a record).
    for _ in 0..500 {
        let o = warren().args(["inspect", name]).output().unwrap();
        if o.status.success() && String::from_utf8_lossy(&o.stdout).contains("\"pid\"") {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child
}

fn finish(child: std::process::Child) -> (String, String) {
    let o = child.wait_with_output().unwrap();
    (stdout(&o), stderr(&o))
}

fn json_field(line: &str, field: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    match &v[field] {
        serde_json::Value::Null => None,
        x => Some(x.to_string().trim_matches('"').to_owned()),
    }
}

#[test]
fn two_environments_exchange_messages_through_their_mailboxes_only() {
    let (db, web) = (unique("db"), unique("web"));
    let server = spawn_env(&db, &[], "warren-msg recv --timeout 10000");
    let o = run_env(
        &web,
        &["--may-send", &db],
        &format!("warren-msg send {db} hello-from-web"),
    );
    assert_code(&o, 0);
    let (out, err) = finish(server);
    let line = out.lines().last().unwrap_or_default().to_owned();
    assert_eq!(
        json_field(&line, "body").as_deref(),
        Some("hello-from-web"),
        "{out}{err}"
    );
    // The receiver sees the sender's identity as the kernel saw it.
    assert_eq!(
        json_field(&line, "from").as_deref(),
        Some(web.as_str()),
        "{line}"
    );
    // Neither has any network to go around the kernel: only loopback.
    let o = run_env(
        &unique("net"),
        &[],
        "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '",
    );
    assert_eq!(stdout(&o).trim(), "lo");
}

#[test]
fn without_a_capability_no_operation_reaches_a_mailbox() {
    let (db, web, stranger) = (unique("db"), unique("web"), unique("stranger"));
    let server = spawn_env(
        &db,
        &[],
        "warren-msg recv --timeout 3000; echo recv-exit=$?",
    );
    // The web environment holds handle 2 for db; the stranger holds nothing but its own (1).
    let o = run_env(&web, &["--may-send", &db], "warren-msg whoami");
    assert!(
        stdout(&o).contains(&format!("\"handle\":2,\"target\":\"{db}\"")),
        "{}",
        stdout(&o)
    );
    let script = format!(
        "exec 2>&1; for h in 2 3 4 5 7 100 65535 4294967295; do warren-msg send $h guess; done; \
         warren-msg lookup {db}; warren-msg send {db} by-name; warren-msg monitor 2; \
         warren-msg attenuate 2; warren-msg revoke 2"
    );
    let o = run_env(&stranger, &[], &script);
    let out = stdout(&o);
    assert_eq!(out.matches("send: no-such-handle").count(), 8, "{out}");
    assert!(out.contains("lookup: not-found"), "{out}");
    assert!(
        out.contains("send: not-found"),
        "sending by name found it: {out}"
    );
    assert!(
        out.contains("monitor: no-such-handle")
            && out.contains("attenuate: no-such-handle")
            && out.contains("revoke: no-such-handle"),
        "{out}"
    );
    assert!(!out.contains("\"sent\":true"), "{out}");
    // db received nothing at all.
    let (out, _) = finish(server);
    assert!(out.contains("recv-exit=1"), "db got a message: {out}");
    // Every denial is in the audit log, with who and why: the first ones one by one, the rest
    // (past the per-environment rate limit) counted in aggregates written when the window
    // ends (10 s).
    let counted = |audit: &str| -> u64 {
        audit
            .lines()
            .filter(|l| l.contains(&format!("\"env\":\"{stranger}\"")))
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .map(|r| r["count"].as_u64().unwrap_or(1))
            .sum()
    };
    let t = std::time::Instant::now();
    let audit = loop {
        let audit = std::fs::read_to_string("/run/warren/audit.jsonl").unwrap();
        if counted(&audit) >= 12 || t.elapsed() > std::time::Duration::from_secs(20) {
            break audit;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    assert!(
        counted(&audit) >= 12,
        "{} denials counted for {stranger}",
        counted(&audit)
    );
    let mine: Vec<&str> = audit
        .lines()
        .filter(|l| l.contains(&format!("\"env\":\"{stranger}\"")))
        .collect();
    assert!(
        mine.iter()
            .any(|l| l.contains("\"op\":\"send\"") && l.contains("\"code\":\"no-such-handle\""))
    );
    assert!(
        mine.iter()
            .any(|l| l.contains("\"op\":\"lookup\"") && l.contains("\"code\":\"not-found\""))
    );
}

#[test]
fn capabilities_travel_in_messages_and_revocation_reaches_them() {
    let (a, b, c) = (unique("a"), unique("b"), unique("c"));
    // C prints what it receives: one message from B, then nothing.
    let sink = spawn_env(
        &c,
        &[],
        "warren-msg recv --timeout 15000; warren-msg recv --timeout 1500; echo c-done",
    );
    // B waits for a capability from A, uses it, acknowledges through the reply capability,
    // then is told to try again after A revoked it.
    let bob = spawn_env(
        &b,
        &[],
        r#"exec 2>&1
        m=$(warren-msg recv --timeout 15000)
        h=$(echo "$m" | sed -n 's/.*"caps":\[\([0-9]*\)\].*/\1/p')
        r=$(echo "$m" | sed -n 's/.*"reply":\([0-9]*\).*/\1/p')
        warren-msg send $h from-b-first
        warren-msg send $r done
        warren-msg recv --timeout 15000 >/dev/null
        warren-msg send $h from-b-second
        echo b-done"#,
    );
    let script = format!(
        r#"exec 2>&1
        h=$(warren-msg attenuate {c} --rights send,grant | sed 's/.*"handle":\([0-9]*\).*/\1/')
        warren-msg send {b} take-this --cap $h --reply
        warren-msg recv --timeout 15000 --body
        warren-msg revoke $h
        warren-msg send {b} try-again
        warren-msg send {c} a-still-can"#
    );
    let o = run_env(&a, &["--may-send", &b, "--may-send", &c], &script);
    assert_code(&o, 0);
    assert!(stdout(&o).contains("done"), "{}", stdout(&o));
    let (bout, _) = finish(bob);
    assert!(
        bout.contains("send: revoked"),
        "B's send after revocation: {bout}"
    );
    assert_eq!(
        bout.matches("\"sent\":true").count(),
        2,
        "B's first send and its reply: {bout}"
    );
    let (cout, _) = finish(sink);
    let bodies: Vec<String> = cout.lines().filter_map(|l| json_field(l, "body")).collect();
    assert_eq!(bodies, ["from-b-first", "a-still-can"], "{cout}");
    // C saw who sent each message, as the kernel saw it.
    let froms: Vec<String> = cout.lines().filter_map(|l| json_field(l, "from")).collect();
    assert_eq!(froms, [b.clone(), a.clone()]);
}

#[test]
fn one_shot_replies_and_expiry_are_enforced() {
    let (client, server) = (unique("cli"), unique("srv"));
    let srv = spawn_env(
        &server,
        &[],
        r#"exec 2>&1
        m=$(warren-msg recv --timeout 15000)
        r=$(echo "$m" | sed -n 's/.*"reply":\([0-9]*\).*/\1/p')
        c=$(echo "$m" | sed -n 's/.*"correlation":\([0-9]*\).*/\1/p')
        warren-msg send $r pong --correlation $c
        warren-msg send $r pong-again --correlation $c
        echo srv-done
        sleep 5"#,
    );
    let script = format!(
        r#"exec 2>&1
        warren-msg call {server} ping --timeout 15000
        h=$(warren-msg attenuate {server} --rights send --expires 200 | sed 's/.*"handle":\([0-9]*\).*/\1/')
        sleep 0.5
        warren-msg send $h too-late
        u=$(warren-msg attenuate {server} --rights send --uses 1 | sed 's/.*"handle":\([0-9]*\).*/\1/')
        warren-msg send $u once --nowait
        warren-msg send $u twice --nowait"#
    );
    let o = run_env(&client, &["--may-send", &server], &script);
    let out = stdout(&o);
    assert!(
        out.contains("\"body\":\"pong\""),
        "the reply did not arrive: {out}"
    );
    assert!(out.contains("send: expired"), "{out}");
    assert!(out.contains("send: used-up"), "{out}");
    let (sout, _) = finish(srv);
    // Spent, the reply handle left the server's table by itself.
    assert!(
        sout.contains("send: no-such-handle"),
        "a one-shot reply worked twice: {sout}"
    );
}

#[test]
fn a_down_notice_arrives_when_a_monitored_environment_exits_or_is_killed() {
    let (watcher, quiet, victim) = (unique("watch"), unique("quiet"), unique("victim"));
    let q = spawn_env(&quiet, &[], "sleep 1");
    let v = spawn_env(&victim, &[], "sleep 30");
    let w = spawn_env(
        &watcher,
        &["--may-send", &quiet, "--may-send", &victim],
        &format!(
            "warren-msg monitor {quiet}; warren-msg monitor {victim}; warren-msg recv --timeout 15000; warren-msg recv --timeout 15000"
        ),
    );
    std::thread::sleep(Duration::from_millis(300));
    // The victim is killed from outside (its workload, pid 1 of its namespace).
    let pid = warren().args(["inspect", &victim]).output().unwrap();
    let pid = json_field(&stdout(&pid), "pid").unwrap();
    assert!(
        Command::new("kill")
            .args(["-9", &pid])
            .status()
            .unwrap()
            .success()
    );
    let _ = finish(v);
    let _ = finish(q);
    let (out, err) = finish(w);
    let downs: Vec<&str> = out
        .lines()
        .filter(|l| l.contains("\"down\":") && !l.contains("\"down\":null"))
        .collect();
    assert_eq!(downs.len(), 2, "{out}{err}");
    let froms: Vec<String> = downs.iter().filter_map(|l| json_field(l, "from")).collect();
    assert!(
        froms.contains(&quiet) && froms.contains(&victim),
        "{froms:?}"
    );
    assert!(downs.iter().all(|l| l.contains("warren-down")), "{out}");
}

#[test]
fn discovery_follows_policy_and_hides_what_it_denies() {
    let (target, finder, blind) = (unique("svc"), unique("finder"), unique("blind"));
    let svc = spawn_env(&target, &[], "warren-msg recv --timeout 10000 --body");
    let o = run_env(
        &finder,
        &["--may-discover", &target],
        &format!("warren-msg lookup {target} && warren-msg send {target} found-you"),
    );
    assert_code(&o, 0);
    assert!(
        stdout(&o).contains("\"rights\":[\"send\",\"monitor\"]"),
        "{}",
        stdout(&o)
    );
    let (out, _) = finish(svc);
    assert_eq!(out.trim(), "found-you");
    // Without the declaration: the same answer for a running name and a name that never was.
    let o = run_env(
        &blind,
        &[],
        &format!(
            "exec 2>&1; warren-msg lookup {target}; warren-msg lookup no-such-env-{}",
            std::process::id()
        ),
    );
    let out = stdout(&o);
    assert_eq!(out.matches("lookup: not-found").count(), 2, "{out}");
}

#[test]
fn a_full_mailbox_pushes_back_instead_of_dropping() {
    let (slow, fast) = (unique("slow"), unique("fast"));
    let s = spawn_env(
        &slow,
        &["--mailbox-capacity", "2"],
        "sleep 1; for i in 1 2 3; do warren-msg recv --timeout 5000 --body; done",
    );
    let o = run_env(
        &fast,
        &["--may-send", &slow],
        &format!(
            "exec 2>&1; for i in 1 2 3; do warren-msg send {slow} m$i --nowait; done; warren-msg send {slow} m4"
        ),
    );
    let out = stdout(&o);
    assert_eq!(out.matches("\"sent\":true").count(), 3, "{out}");
    assert!(out.contains("send: full"), "{out}");
    // The waiting send (m4) got in once room was made; order is kept; nothing was dropped.
    let (sout, _) = finish(s);
    assert_eq!(
        sout.lines().collect::<Vec<_>>(),
        ["m1", "m2", "m4"],
        "{sout}"
    );
}

#[test]
fn malformed_frames_close_only_that_connection() {
    let (bad, good) = (unique("bad"), unique("good"));
    let o = run_env(
        &bad,
        &[],
        "exec 2>&1; printf 'not a frame' >&3; sleep 0.3; warren-msg whoami; echo rc=$?",
    );
    let out = stdout(&o);
    assert!(
        out.contains("rc=1"),
        "the connection survived garbage: {out}"
    );
    // The kernel and everyone else carry on.
    let o = run_env(&good, &[], "warren-msg whoami");
    assert_code(&o, 0);
    assert!(stdout(&o).contains(&format!("\"env\":\"{good}\"")));
    let audit = std::fs::read_to_string("/run/warren/audit.jsonl").unwrap();
    assert!(
        audit
            .lines()
            .any(|l| l.contains(&format!("\"env\":\"{bad}\"")) && l.contains("malformed packet")),
        "no audit record"
    );
}

#[test]
fn only_root_may_use_the_control_socket() {
    kernel();
    // The socket file is root's, mode 0660 (the first gate); the daemon's SO_PEERCRED check
    // is the second, for members of a configured group.
    let meta = std::fs::metadata("/run/warren/kernel.sock").unwrap();
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    assert_eq!(
        meta.permissions().mode() & 0o777,
        0o660,
        "the control socket is not root-only"
    );
    assert_eq!(meta.uid(), 0);
    // An unprivileged `warren run --may-send` cannot register (the socket refuses it).
    let o = Command::new("setpriv")
        .args([
            "--reuid",
            "65534",
            "--regid",
            "65534",
            "--clear-groups",
            "--",
        ])
        .arg(env!("CARGO_BIN_EXE_warren"))
        .args(["run", "--name", &unique("nobody"), "--rootfs"])
        .arg(busybox_root())
        .args(["--may-send", "x", "--", "/bin/true"])
        .output()
        .unwrap();
    assert_ne!(
        o.status.code(),
        Some(0),
        "an unprivileged user registered: {}",
        stderr(&o)
    );
    assert!(
        stderr(&o).to_lowercase().contains("permission denied"),
        "{}",
        stderr(&o)
    );
}

/// A flood of denied requests (issue 14: pipelined lookups of unknown names wrote 1.4 GB of
/// audit log in 9 s): the live kernel writes its first 10 records, then one aggregate per
/// (operation, code) when the 10 s window ends, whose count accounts for every denial; a
/// neighbour's denial is written at once meanwhile (positive control: the limit is per
/// environment).
#[test]
fn a_flood_of_denied_requests_writes_a_bounded_audit_and_counts_every_denial() {
    let (flooder, neighbour) = (unique("flood"), unique("nbr"));
    let audit = || std::fs::read_to_string("/run/warren/audit.jsonl").unwrap_or_default();
    let records = |who: &str| -> Vec<serde_json::Value> {
        audit()
            .lines()
            .filter(|l| l.contains(&format!("\"env\":\"{who}\"")))
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    };
    // The kernel answers (a socket left by an earlier run may exist before it listens).
    for i in 0.. {
        let o = run_env(&unique("probe"), &[], "warren-msg whoami");
        if stdout(&o).contains("\"env\"") {
            break;
        }
        assert!(i < 50, "the kernel does not answer: {}", stderr(&o));
        std::thread::sleep(Duration::from_millis(100));
    }
    let n = 1500;
    let t = std::time::Instant::now();
    let o = run_env(
        &flooder,
        &[],
        &format!(
            "i=0; while [ $i -lt {n} ]; do warren-msg lookup nobody-$i 2>/dev/null; i=$((i+1)); done; \
             warren-msg lookup also-nobody 2>/dev/null; echo flood-done"
        ),
    );
    assert!(stdout(&o).contains("flood-done"), "{}", stdout(&o));
    let flood_secs = t.elapsed().as_secs();
    let o = run_env(&neighbour, &[], "warren-msg lookup nobody 2>&1; true");
    assert!(stdout(&o).contains("not-found"), "{}", stdout(&o));
    assert_eq!(
        records(&neighbour).len(),
        1,
        "the neighbour's denial is written at once"
    );
    // While the flooder's window is open, at most its 10 single records are written.
    if t.elapsed() < Duration::from_secs(9) {
        assert!(records(&flooder).len() <= 10, "{:#?}", records(&flooder));
    }
    let counted = |rs: &[serde_json::Value]| -> u64 {
        rs.iter().map(|r| r["count"].as_u64().unwrap_or(1)).sum()
    };
    let start = std::time::Instant::now();
    while counted(&records(&flooder)) < n + 1 && start.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(200));
    }
    let mine = records(&flooder);
    assert_eq!(counted(&mine), n + 1, "{mine:#?}");
    // Per 10 s window it spans: at most 10 single records and one aggregate (one operation
    // and code here).
    let windows = flood_secs / 10 + 1;
    assert!(
        mine.len() as u64 <= 11 * windows,
        "{} records for {} denials over {flood_secs} s",
        mine.len(),
        n + 1
    );
    let agg = mine
        .iter()
        .find(|r| r["count"].is_u64())
        .expect("an aggregate");
    assert_eq!(
        (agg["op"].as_str(), agg["code"].as_str()),
        (Some("lookup"), Some("not-found"))
    );
    assert!(agg["first"].as_u64() <= agg["last"].as_u64());
    let bytes: usize = audit()
        .lines()
        .filter(|l| l.contains(&format!("\"env\":\"{flooder}\"")))
        .map(|l| l.len() + 1)
        .sum();
    println!(
        "{} denials in {flood_secs} s -> {} audit records, {bytes} bytes",
        n + 1,
        mine.len()
    );
}
