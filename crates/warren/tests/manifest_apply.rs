//! Manifests and supervision (issue 5), end to end: a real `warren daemon` on the default state
//! directory, manifests written to temporary directories, environments on a busybox root, and
//! only the command line to look at them (`apply`, `diff`, `ps -a --json`, `inspect`, `logs`,
//! `stop`, `rm`).
//!
//! `apply` converges *everything* the kernel manages to one file, so two tests applying at once
//! would stop each other's environments: every test holds [`serial`] for its whole run, and
//! removes what it started when it ends (also when it fails).

mod common;
use common::kernel::*;
use common::*;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use serde_json::Value;

// ----- harness -----

/// Poll `f` every 50 ms until it gives a value, for at most `secs` seconds.
fn wait_for<T>(what: &str, secs: u64, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            start.elapsed() < Duration::from_secs(secs),
            "timed out waiting for {what}; kernel log:\n{}",
            kernel_log_tail()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A `[space.NAME]` table running `script` with busybox sh, plus `extra` TOML lines.
fn table(name: &str, script: &str, extra: &[&str]) -> String {
    // A JSON string is a valid TOML basic string (serde_json never writes `\/`).
    let script = serde_json::to_string(script).unwrap();
    let root = serde_json::to_string(&busybox_root().display().to_string()).unwrap();
    let mut t =
        format!("[space.{name}]\nimage = {root}\ncommand = [\"/bin/sh\", \"-c\", {script}]\n");
    for line in extra {
        t.push_str(line);
        t.push('\n');
    }
    t
}

/// A workload that says hello, runs until told to stop, and stops promptly on SIGTERM.
const SERVE: &str = "trap 'echo stopping; exit 0' TERM; echo hello from $(hostname) colour=$COLOUR; \
     while :; do sleep 0.2; done";

fn run(args: &[&str], file: &Path) -> Output {
    warren().args(args).arg(file).output().unwrap()
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

/// `warren ps -a --json`, by name.
fn ps_all() -> BTreeMap<String, Value> {
    let o = warren().args(["ps", "-a", "--json"]).output().unwrap();
    assert_code(&o, 0);
    stdout(&o)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .map(|v| (v["name"].as_str().unwrap().to_owned(), v))
        .collect()
}

/// `warren inspect NAME`, when it exits 0.
fn inspect(name: &str) -> Option<Value> {
    let o = warren().args(["inspect", name]).output().unwrap();
    o.status
        .success()
        .then(|| serde_json::from_slice(&o.stdout).unwrap())
}

/// The (workload pid, launcher pid) of a running environment, once its launcher has recorded
/// it.
fn pids(name: &str) -> Option<(i64, i64)> {
    let v = inspect(name)?;
    Some((v["pid"].as_i64()?, v["launcher_pid"].as_i64()?))
}

fn wait_running(name: &str) -> (i64, i64) {
    wait_for(&format!("{name} to run"), 15, || pids(name))
}

fn alive(pid: i64) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// The JSON Lines of `apply --json` / `diff --json`, by name.
fn steps(o: &Output) -> BTreeMap<String, Value> {
    stdout(o)
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .map(|v| (v["name"].as_str().unwrap().to_owned(), v))
        .collect()
}

fn logs(name: &str) -> String {
    stdout(&warren().args(["logs", name]).output().unwrap())
}

/// Apply `tables` plus a client environment `cli` that sends `body` to `target`, retrying while
/// the name is unknown (as right after a kernel restart, until `target` has re-attached); the
/// client must exit 0 within `secs` seconds, and `body` must then show in `target`'s log.
fn send_through_a_client(
    space: &Space,
    tables: &[String],
    cli: &str,
    target: &str,
    body: &str,
    secs: u64,
) {
    let mut tables = tables.to_vec();
    tables.push(table(
        cli,
        &format!(
            "for i in $(seq 50); do warren-msg send {target} {body} && exit 0; \
             sleep 0.2; done; exit 1"
        ),
        &[&format!("may_send = [\"{target}\"]")],
    ));
    let file = space.write_tables(&tables);
    let o = run(&["apply", "--detailed-exitcodes"], &file);
    assert_eq!(code(&o), 2, "{}{}", stdout(&o), stderr(&o));
    let v = wait_for("the client to finish", secs, || {
        ps_all()
            .get(cli)
            .filter(|v| v["state"] == "exited")
            .cloned()
    });
    assert_eq!(v["last_exit"], 0, "{v}; client log: {}", logs(cli));
    wait_for("the message after the restart", 10, || {
        Some(logs(target)).filter(|l| l.contains(body))
    });
}

// ----- apply -----

#[test]
fn apply_twice_changes_nothing_the_second_time_and_check_changes_nothing() {
    let _serial = serial();
    let mut space = Space::new();
    let (a, b) = (space.name("ma-a"), space.name("ma-b"));
    let file = space.write_tables(&[
        table(&a, SERVE, &["env = { COLOUR = \"blue\" }"]),
        table(&b, SERVE, &["memory = \"32M\"", "pids = 16"]),
    ]);

    // diff: both would be created; nothing runs yet.
    let o = run(&["diff"], &file);
    assert_eq!(code(&o), 1, "{}{}", stdout(&o), stderr(&o));
    assert!(
        stdout(&o).contains(&format!("{a:<24} create")),
        "{}",
        stdout(&o)
    );

    // --check: says what would change, exit 2, starts nothing.
    let o = run(
        &["apply", "--check", "--detailed-exitcodes", "--json"],
        &file,
    );
    assert_eq!(code(&o), 2, "{}{}", stdout(&o), stderr(&o));
    let s = steps(&o);
    assert_eq!(s[&a]["action"], "create");
    assert_eq!(s[&a]["result"], "would-change");
    assert_eq!(s[&b]["result"], "would-change");
    // Every field of a created environment is listed, old null.
    let fields: Vec<&str> = s[&b]["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["field"].as_str().unwrap())
        .collect();
    assert!(
        fields.contains(&"memory") && fields.contains(&"pids"),
        "{fields:?}"
    );
    assert!(
        s[&b]["changes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["old"].is_null())
    );
    std::thread::sleep(Duration::from_millis(300));
    let ps = ps_all();
    assert!(
        !ps.contains_key(&a) && !ps.contains_key(&b),
        "--check started something: {ps:?}"
    );

    // The first apply creates both: exit 2.
    let o = run(&["apply", "--detailed-exitcodes"], &file);
    assert_eq!(code(&o), 2, "{}{}", stdout(&o), stderr(&o));
    assert!(
        stdout(&o).contains(&format!("{a:<24} create   created")),
        "{}",
        stdout(&o)
    );
    assert!(
        stdout(&o).contains("2 changed, 0 unchanged"),
        "{}",
        stdout(&o)
    );
    let (pa, la) = wait_running(&a);
    let (pb, lb) = wait_running(&b);
    // What the manifest declared is what runs.
    let ib = inspect(&b).unwrap();
    assert_eq!(ib["spec"]["memory"], 32 << 20);
    assert_eq!(ib["spec"]["pids"], 16);
    assert_eq!(ib["state"], "running");
    assert_eq!(ib["oci_state"], "running");
    assert!(
        wait_for("a's hello", 10, || Some(logs(&a))
            .filter(|l| l.contains("colour=blue")))
        .contains(&format!("hello from {a}"))
    );

    // The second apply changes nothing and says so: exit 0, the same processes.
    let o = run(&["apply", "--detailed-exitcodes"], &file);
    assert_eq!(code(&o), 0, "{}{}", stdout(&o), stderr(&o));
    assert!(
        stdout(&o).contains(&format!("{a:<24} keep     unchanged")),
        "{}",
        stdout(&o)
    );
    assert!(
        stdout(&o).contains("0 changed, 2 unchanged"),
        "{}",
        stdout(&o)
    );
    // Without --detailed-exitcodes success is 0 either way.
    assert_eq!(code(&run(&["apply"], &file)), 0);
    assert_eq!(code(&run(&["diff"], &file)), 0);
    assert_eq!(pids(&a), Some((pa, la)));
    assert_eq!(pids(&b), Some((pb, lb)));

    // --check against a changed manifest: exit 2, and still nothing changes.
    space.write_tables(&[
        table(&a, SERVE, &["env = { COLOUR = \"red\" }"]),
        table(&b, SERVE, &["memory = \"32M\"", "pids = 16"]),
    ]);
    let o = run(&["apply", "--check", "--detailed-exitcodes"], &file);
    assert_eq!(code(&o), 2, "{}{}", stdout(&o), stderr(&o));
    assert!(
        stdout(&o).contains("1 would change, 1 unchanged"),
        "{}",
        stdout(&o)
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(pids(&a), Some((pa, la)), "--check replaced {a}");
    assert_eq!(inspect(&a).unwrap()["spec"]["env"]["COLOUR"], "blue");
    assert_eq!(code(&run(&["diff"], &file)), 1);
}

#[test]
fn changing_one_field_replaces_only_that_environment() {
    let _serial = serial();
    let mut space = Space::new();
    let (a, b) = (space.name("ma-chg"), space.name("ma-same"));
    let file = space.write_tables(&[
        table(&a, SERVE, &["env = { COLOUR = \"blue\" }"]),
        table(&b, SERVE, &[]),
    ]);
    assert_eq!(code(&run(&["apply", "--detailed-exitcodes"], &file)), 2);
    let (pa, la) = wait_running(&a);
    let (pb, lb) = wait_running(&b);

    space.write_tables(&[
        table(&a, SERVE, &["env = { COLOUR = \"red\" }"]),
        table(&b, SERVE, &[]),
    ]);
    // diff shows the one field, old and new.
    let o = run(&["diff"], &file);
    assert_eq!(code(&o), 1);
    assert!(
        stdout(&o).contains(r#"env: {"COLOUR":"blue"} -> {"COLOUR":"red"}"#),
        "{}",
        stdout(&o)
    );

    let o = run(
        &["apply", "--detailed-exitcodes", "--json", "--timeout", "1"],
        &file,
    );
    assert_eq!(code(&o), 2, "{}{}", stdout(&o), stderr(&o));
    let s = steps(&o);
    assert_eq!(s[&a]["action"], "replace");
    assert_eq!(s[&a]["result"], "replaced");
    assert_eq!(
        s[&a]["changes"],
        serde_json::json!([{"field": "env", "old": {"COLOUR": "blue"}, "new": {"COLOUR": "red"}}])
    );
    assert_eq!(s[&b]["action"], "keep");
    assert_eq!(s[&b]["result"], "unchanged");
    assert_eq!(s[&b]["changes"], serde_json::json!([]));

    // a runs again, as new processes with the new value; b was not touched.
    let (pa2, la2) = wait_for("the replacement", 15, || {
        pids(&a).filter(|&(p, l)| p != pa && l != la)
    });
    assert!(!alive(pa) && !alive(la), "the old {a} still runs");
    assert!(alive(pa2) && alive(la2));
    assert_eq!(pids(&b), Some((pb, lb)), "{b} was replaced too");
    assert_eq!(inspect(&a).unwrap()["spec"]["env"]["COLOUR"], "red");
    let log = wait_for("the new hello", 10, || {
        Some(logs(&a)).filter(|l| l.contains("colour=red"))
    });
    // The log goes on across the replacement: the old run's hello, then the new one's.
    assert!(
        log.find("colour=blue").unwrap() < log.find("colour=red").unwrap(),
        "{log}"
    );
    assert_eq!(code(&run(&["apply", "--detailed-exitcodes"], &file)), 0);
}

#[test]
fn removing_an_environment_from_the_manifest_stops_it() {
    let _serial = serial();
    let mut space = Space::new();
    let (a, b) = (space.name("ma-gone"), space.name("ma-stay"));
    let file = space.write_tables(&[table(&a, SERVE, &[]), table(&b, SERVE, &[])]);
    assert_eq!(code(&run(&["apply", "--detailed-exitcodes"], &file)), 2);
    let (pa, la) = wait_running(&a);
    let (pb, lb) = wait_running(&b);

    space.write_tables(&[table(&b, SERVE, &[])]);
    let o = run(&["apply", "--detailed-exitcodes", "--json"], &file);
    assert_eq!(code(&o), 2, "{}{}", stdout(&o), stderr(&o));
    let s = steps(&o);
    assert_eq!(s[&a]["action"], "stop");
    assert_eq!(s[&a]["result"], "stopped");
    assert_eq!(
        s[&a]["changes"],
        serde_json::json!([{"field": "state", "old": "running", "new": "absent"}])
    );
    assert_eq!(s[&b]["action"], "keep");
    // Gone: no process, not listed, not even by `ps -a`.
    assert!(!alive(pa) && !alive(la));
    let ps = ps_all();
    assert!(!ps.contains_key(&a), "{a} is still listed: {:?}", ps[&a]);
    assert_eq!(ps[&b]["state"], "running");
    assert_eq!(code(&warren().args(["inspect", &a]).output().unwrap()), 1);
    assert_eq!(pids(&b), Some((pb, lb)));

    // An empty manifest stops everything the kernel manages.
    let o = warren()
        .args(["apply", "--detailed-exitcodes"])
        .arg(empty_manifest())
        .output()
        .unwrap();
    assert_eq!(code(&o), 2, "{}{}", stdout(&o), stderr(&o));
    assert!(!alive(pb) && !alive(lb));
    assert!(!ps_all().contains_key(&b));
    let o = warren()
        .args(["apply", "--detailed-exitcodes"])
        .arg(empty_manifest())
        .output()
        .unwrap();
    assert_eq!(code(&o), 0, "{}", stdout(&o));
}

#[test]
fn invalid_manifests_are_refused_with_file_line_and_key_and_change_nothing() {
    let _serial = serial();
    let mut space = Space::new();
    let (a, b) = (space.name("ma-ok"), space.name("ma-bad"));
    let cases: Vec<(String, usize, &str)> = vec![
        // A typo in a key: the line of the key, its name, and a suggestion.
        (
            table(&a, SERVE, &[]) + &table(&b, SERVE, &["memroy = \"64M\""]),
            7,
            "unknown key \"memroy\" in [space.ma-bad",
        ),
        // A bad value: the line of the value and the key it belongs to.
        (
            table(&a, SERVE, &[]) + &table(&b, SERVE, &["pids = 16", "memory = \"64Q\""]),
            8,
            "\"memory\" in [space.ma-bad",
        ),
        // A missing required key: the environment's table.
        (
            format!("[space.{a}]\ncommand = [\"/bin/true\"]\n"),
            1,
            "has no \"image\"",
        ),
        // Not TOML at all.
        (format!("[space.{a}\nimage = \"/\"\n"), 1, ""),
    ];
    for (text, line, key) in &cases {
        std::fs::write(space.file(), text).unwrap();
        let file = space.file();
        let place = format!("{}:{line}:", file.display());
        for (args, want) in [
            (&["apply"][..], 1),
            (&["apply", "--detailed-exitcodes"][..], 4),
            (&["apply", "--check", "--detailed-exitcodes"][..], 4),
            (&["diff"][..], 2),
        ] {
            let o = run(args, &file);
            assert_eq!(code(&o), want, "{args:?} on\n{text}\n{}", stderr(&o));
            let err = stderr(&o);
            assert!(err.contains(&place), "{args:?}: no {place:?} in {err}");
            assert!(err.contains(key), "{args:?}: no {key:?} in {err}");
        }
    }
    // The typo case suggests the right key.
    std::fs::write(space.file(), &cases[0].0).unwrap();
    let o = run(&["apply"], &space.file());
    assert!(
        stderr(&o).contains("(did you mean \"memory\"?)"),
        "{}",
        stderr(&o)
    );
    // Nothing was started by any of them (the valid environment in the same file included).
    let ps = ps_all();
    assert!(!ps.contains_key(&a) && !ps.contains_key(&b), "{ps:?}");

    // No kernel: apply fails (1, or 4 detailed), diff exits 2, and says how to start one.
    let nowhere = tempfile::tempdir().unwrap();
    std::fs::write(space.file(), table(&a, SERVE, &[])).unwrap();
    for (args, want) in [
        (&["apply"][..], 1),
        (&["apply", "--detailed-exitcodes"][..], 4),
        (&["diff"][..], 2),
    ] {
        let o = warren()
            .arg("--state-dir")
            .arg(nowhere.path())
            .args(args)
            .arg(space.file())
            .output()
            .unwrap();
        assert_eq!(code(&o), want, "{args:?}: {}", stderr(&o));
        assert!(
            stderr(&o).contains("no Warren kernel is running"),
            "{}",
            stderr(&o)
        );
    }
}

#[test]
fn a_failed_start_is_reported_as_a_failure() {
    let _serial = serial();
    let mut space = Space::new();
    let (good, bad) = (space.name("ma-good"), space.name("ma-nolog"));
    // The kernel cannot open the log of `bad` (a directory sits where the file goes), so its
    // launcher cannot be started.
    let blocker = Path::new("/run/warren/logs").join(format!("{bad}.log"));
    std::fs::create_dir_all(&blocker).unwrap();
    struct RemoveDir(PathBuf);
    impl Drop for RemoveDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let _blocker = RemoveDir(blocker);

    let file = space.write_tables(&[table(&good, SERVE, &[]), table(&bad, SERVE, &[])]);
    let o = run(&["apply", "--detailed-exitcodes", "--json"], &file);
    // One environment changed, one failed: 6.
    assert_eq!(code(&o), 6, "{}{}", stdout(&o), stderr(&o));
    let s = steps(&o);
    assert_eq!(s[&good]["result"], "created");
    let result = s[&bad]["result"].as_str().unwrap();
    assert!(result.starts_with("failed: open "), "{result}");
    // Without --detailed-exitcodes a failure is 1.
    let o = run(&["apply"], &file);
    assert_eq!(code(&o), 1, "{}{}", stdout(&o), stderr(&o));
    wait_running(&good);
    assert_eq!(ps_all()[&bad]["state"], "failed");
}

#[test]
fn a_failure_that_changes_nothing_exits_4() {
    let _serial = serial();
    let mut space = Space::new();
    let bad = space.name("ma-only-bad");
    let blocker = Path::new("/run/warren/logs").join(format!("{bad}.log"));
    std::fs::create_dir_all(&blocker).unwrap();
    let file = space.write_tables(&[table(&bad, SERVE, &[])]);
    let o = run(&["apply", "--detailed-exitcodes"], &file);
    let _ = std::fs::remove_dir_all(&blocker);
    assert_eq!(code(&o), 4, "{}{}", stdout(&o), stderr(&o));
}

#[test]
fn stop_and_replace_ask_politely_first() {
    let _serial = serial();
    let mut space = Space::new();
    let name = space.name("ma-polite");
    let file = space.write_tables(&[table(&name, SERVE, &["env = { COLOUR = \"blue\" }"])]);
    assert_eq!(code(&run(&["apply", "--detailed-exitcodes"], &file)), 2);
    let (pid, _) = wait_running(&name);
    wait_for("the hello", 10, || {
        Some(logs(&name)).filter(|l| l.contains("hello"))
    });
    // Managed environments run under the init (`init = true` by default), which keeps the
    // signals it forwards blocked and reads them from a signalfd: the workload is its child.
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    assert!(
        cmdline.starts_with(b"/dev/warren/warren-msg\0init\0"),
        "{cmdline:?}"
    );
    let pid = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap()
        .split_whitespace()
        .next()
        .expect("the workload under the init")
        .to_owned();
    let sigblk = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("SigBlk:").map(|v| v.trim().to_owned()))
        .unwrap();
    assert_eq!(
        sigblk, "0000000000000000",
        "the workload starts with signals blocked"
    );

    // A replacement: the old workload's TERM trap runs, well before the 10 s timeout.
    space.write_tables(&[table(&name, SERVE, &["env = { COLOUR = \"red\" }"])]);
    let start = Instant::now();
    let o = run(&["apply", "--detailed-exitcodes", "--timeout", "10"], &file);
    assert_eq!(code(&o), 2, "{}{}", stdout(&o), stderr(&o));
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    let log = wait_for("the new hello", 10, || {
        Some(logs(&name)).filter(|l| l.contains("colour=red"))
    });
    let stop = log
        .find("stopping")
        .expect("the old workload saw no SIGTERM");
    assert!(stop < log.find("colour=red").unwrap(), "{log}");

    // stop: the same.
    wait_running(&name);
    let start = Instant::now();
    let o = warren().args(["stop", "-t", "10", &name]).output().unwrap();
    assert_code(&o, 0);
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(
        logs(&name).matches("stopping").count(),
        2,
        "{}",
        logs(&name)
    );
}

#[test]
fn rm_force_is_prompt_and_leaves_nothing_running() {
    let _serial = serial();
    let mut space = Space::new();
    let name = space.name("ma-force");
    // A workload that ignores SIGTERM: only the launcher's kill ends it.
    let file = space.write_tables(&[table(
        &name,
        "trap '' TERM; while :; do sleep 0.2; done",
        &[],
    )]);
    assert_eq!(code(&run(&["apply", "--detailed-exitcodes"], &file)), 2);
    let (pid, launcher) = wait_running(&name);
    let start = Instant::now();
    let o = warren().args(["rm", "-f", &name]).output().unwrap();
    assert_code(&o, 0);
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "{:?}",
        start.elapsed()
    );
    assert!(
        !alive(launcher) && !alive(pid),
        "rm -f returned with processes left"
    );
}

// ----- supervision -----

/// The `run <uptime>` lines an environment wrote at each start, as seconds.
fn start_times(name: &str) -> Vec<f64> {
    logs(name)
        .lines()
        .filter_map(|l| l.strip_prefix("run "))
        .map(|t| t.trim().parse().unwrap())
        .collect()
}

#[test]
fn restart_policies_back_off_and_give_up_after_max_restarts() {
    let _serial = serial();
    let mut space = Space::new();
    let (fails, clean, always, never) = (
        space.name("ma-fails"),
        space.name("ma-clean"),
        space.name("ma-always"),
        space.name("ma-never"),
    );
    // /proc/uptime has 10 ms resolution and is the host's clock: it times the starts.
    let stamp = "echo run $(cut -d' ' -f1 /proc/uptime);";
    let file = space.write_tables(&[
        table(
            &fails,
            &format!("{stamp} exit 1"),
            &["restart = \"on-failure\"", "max_restarts = 3"],
        ),
        table(
            &clean,
            &format!("{stamp} exit 0"),
            &["restart = \"on-failure\"", "max_restarts = 3"],
        ),
        table(
            &always,
            &format!("{stamp} exit 0"),
            &["restart = \"always\"", "max_restarts = 1"],
        ),
        table(&never, &format!("{stamp} exit 7"), &[]),
    ]);
    assert_eq!(code(&run(&["apply", "--detailed-exitcodes"], &file)), 2);

    let done = |n: &str, state: &str| {
        let ps = ps_all();
        ps.get(n).filter(|v| v["state"] == state).cloned()
    };
    // on-failure, exit 1: three restarts (100, 200, 400 ms of backoff), then it gives up.
    let v = wait_for("the failing environment to give up", 30, || {
        done(&fails, "failed")
    });
    assert_eq!(v["restarts"], 3, "{v}");
    assert_eq!(v["last_exit"], 1, "{v}");
    assert_eq!(v["restart_policy"], "on-failure");
    assert_eq!(v["pid"], Value::Null);
    let t = start_times(&fails);
    assert_eq!(t.len(), 4, "one first run and three restarts: {t:?}");
    let gaps: Vec<f64> = t.windows(2).map(|w| w[1] - w[0]).collect();
    for (gap, backoff) in gaps.iter().zip([0.1, 0.2, 0.4]) {
        // Each restart waited at least its backoff (less the clock's 10 ms resolution).
        assert!(*gap >= backoff - 0.02, "gaps {gaps:?}");
    }
    assert!(gaps[2] > gaps[0] + 0.2, "the delays do not grow: {gaps:?}");
    let i = inspect(&fails).unwrap();
    assert_eq!(i["state"], "failed");
    assert_eq!(i["oci_state"], "stopped");
    assert_eq!(i["restarts"], 3);

    // on-failure, exit 0: not restarted.
    let v = wait_for("the clean exit", 10, || done(&clean, "exited"));
    assert_eq!(
        (v["restarts"].as_u64(), v["last_exit"].as_i64()),
        (Some(0), Some(0))
    );
    // always: restarted after a clean exit too, until its limit.
    let v = wait_for("the always-restarted one to give up", 10, || {
        done(&always, "failed")
    });
    assert_eq!(v["restarts"], 1, "{v}");
    assert_eq!(start_times(&always).len(), 2);
    // no: never restarted, whatever the status.
    let v = wait_for("the unrestarted one", 10, || done(&never, "exited"));
    assert_eq!(
        (v["restarts"].as_u64(), v["last_exit"].as_i64()),
        (Some(0), Some(7))
    );
    assert_eq!(start_times(&never).len(), 1);
    // Exited environments are not listed without -a.
    let o = warren().args(["ps", "-q"]).output().unwrap();
    assert!(!stdout(&o).contains(&never), "{}", stdout(&o));

    // Applying again leaves alone what finished the way its policy intends (a one-shot job is
    // not run again), and starts again what gave up: its state is the difference.
    let o = run(&["diff", "--json"], &file);
    assert_eq!(code(&o), 1);
    let s = steps(&o);
    assert_eq!(s[&never]["action"], "keep", "{}", s[&never]);
    assert_eq!(s[&always]["action"], "replace");
    // The state in the plan is the real one: it gave up, so `failed`.
    assert_eq!(
        s[&always]["changes"],
        serde_json::json!([{"field": "state", "old": "failed", "new": "running"}])
    );
}

#[test]
fn a_start_that_fails_is_failed_and_the_next_apply_starts_it_again() {
    let _serial = serial();
    let mut space = Space::new();
    let (good, bad) = (space.name("ma-fgood"), space.name("ma-fbad"));
    let root = serde_json::to_string(&busybox_root().display().to_string()).unwrap();
    let bad_table =
        format!("[space.{bad}]\nimage = {root}\ncommand = [\"/bin/no-such-program\"]\n");
    let file = space.write_tables(&[table(&good, SERVE, &[]), bad_table]);

    // One created, one failed: the summary counts them apart, and the exit code agrees (6).
    let o = run(&["apply", "--detailed-exitcodes"], &file);
    assert_eq!(code(&o), 6, "{}{}", stdout(&o), stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains(&format!("{bad:<24} create   failed: ")),
        "{out}"
    );
    assert!(out.contains("1 changed, 1 failed, 0 unchanged"), "{out}");
    wait_running(&good);
    let v = ps_all()[&bad].clone();
    assert_eq!(v["state"], "failed", "{v}");
    assert_eq!(v["pid"], Value::Null, "{v}");

    // Not converged: diff says it would start it again, with its real state.
    let o = run(&["diff", "--json"], &file);
    assert_eq!(code(&o), 1, "{}{}", stdout(&o), stderr(&o));
    let s = steps(&o);
    assert_eq!(s[&good]["action"], "keep");
    assert_eq!(s[&bad]["action"], "replace");
    assert_eq!(
        s[&bad]["changes"],
        serde_json::json!([{"field": "state", "old": "failed", "new": "running"}])
    );

    // The next apply tries again and reports the failure again; nothing changed: 4 (1 without
    // --detailed-exitcodes).
    let o = run(&["apply", "--detailed-exitcodes"], &file);
    assert_eq!(code(&o), 4, "{}{}", stdout(&o), stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains(&format!("{bad:<24} replace  failed: ")),
        "{out}"
    );
    assert!(out.contains("0 changed, 1 failed, 1 unchanged"), "{out}");
    let o = run(&["apply", "--json"], &file);
    assert_eq!(code(&o), 1, "{}{}", stdout(&o), stderr(&o));
    let result = steps(&o)[&bad]["result"].as_str().unwrap().to_owned();
    assert!(result.starts_with("failed: "), "{result}");
    assert_eq!(ps_all()[&bad]["state"], "failed");
}

#[test]
fn stopping_a_finished_one_shot_job_keeps_it_exited_and_plans_show_real_states() {
    let _serial = serial();
    let mut space = Space::new();
    let (once, serve) = (space.name("ma-once"), space.name("ma-serve"));
    let file = space.write_tables(&[table(&once, "echo ran", &[]), table(&serve, SERVE, &[])]);
    assert_eq!(code(&run(&["apply", "--detailed-exitcodes"], &file)), 2);
    wait_running(&serve);
    let exited = |n: &str| ps_all().get(n).filter(|v| v["state"] == "exited").cloned();
    wait_for("the one-shot job to exit", 15, || exited(&once));

    // Stopping it is a no-op: it was not running, it stays `exited`.
    let o = warren().args(["stop", "-t", "1", &once]).output().unwrap();
    assert_code(&o, 0);
    assert_eq!(stdout(&o).trim(), once);
    let v = ps_all()[&once].clone();
    assert_eq!(v["state"], "exited", "{v}");
    assert_eq!(v["last_exit"], 0, "{v}");

    // So it is still converged: the next apply does not run it again.
    let o = run(&["diff"], &file);
    assert_eq!(code(&o), 0, "{}{}", stdout(&o), stderr(&o));
    let o = run(&["apply", "--detailed-exitcodes"], &file);
    assert_eq!(code(&o), 0, "{}{}", stdout(&o), stderr(&o));
    assert!(
        stdout(&o).contains("0 changed, 2 unchanged"),
        "{}",
        stdout(&o)
    );
    std::thread::sleep(Duration::from_millis(300));
    let log = logs(&once);
    assert_eq!(log.lines().filter(|l| *l == "ran").count(), 1, "{log}");

    // A stopped one is planned with its real state.
    let o = warren().args(["stop", "-t", "1", &serve]).output().unwrap();
    assert_code(&o, 0);
    let o = run(&["diff", "--json"], &file);
    assert_eq!(code(&o), 1, "{}{}", stdout(&o), stderr(&o));
    assert_eq!(
        steps(&o)[&serve]["changes"],
        serde_json::json!([{"field": "state", "old": "stopped", "new": "running"}])
    );

    // Removing them: each `state -> absent` names the state it has.
    let o = run(&["diff", "--json"], empty_manifest());
    assert_eq!(code(&o), 1, "{}{}", stdout(&o), stderr(&o));
    let s = steps(&o);
    let change = |n: &str| s[n]["changes"].clone();
    assert_eq!(
        change(&once),
        serde_json::json!([{"field": "state", "old": "exited", "new": "absent"}])
    );
    assert_eq!(
        change(&serve),
        serde_json::json!([{"field": "state", "old": "stopped", "new": "absent"}])
    );
    assert_eq!(code(&run(&["apply", "--detailed-exitcodes"], &file)), 2);
    wait_running(&serve);
    let o = run(&["diff", "--json"], empty_manifest());
    assert_eq!(
        steps(&o)[&serve]["changes"],
        serde_json::json!([{"field": "state", "old": "running", "new": "absent"}])
    );
}

#[test]
fn a_manifest_cannot_take_the_name_of_a_running_run_d_environment() {
    let _serial = serial();
    let mut space = Space::new();
    let name = space.name("ma-clash");
    let _remove = run_d(&name, &["/bin/sleep", "100"]);
    let running = || {
        ps_all()
            .get(&name)
            .filter(|v| v["state"] == "running" && v["pid"].is_i64())
            .cloned()
    };
    let pid = wait_for("the run -d environment", 15, running)["pid"]
        .as_i64()
        .unwrap();

    let file = space.write_tables(&[table(&name, SERVE, &[])]);
    let o = run(&["apply", "--detailed-exitcodes", "--json"], &file);
    assert_eq!(code(&o), 4, "{}{}", stdout(&o), stderr(&o));
    assert_eq!(
        steps(&o)[&name]["result"],
        format!(
            "failed: the kernel refused the environment: environment name {name:?} is already \
             used by a running environment"
        )
    );
    // No managed record: the running one is listed as it was.
    let v = ps_all()[&name].clone();
    assert_eq!(v["managed"], false, "{v}");
    assert_eq!(v["state"], "running", "{v}");
    assert_eq!(v["pid"], pid, "{v}");
    // Still not converged: the next diff would create it.
    let o = run(&["diff", "--json"], &file);
    assert_eq!(code(&o), 1, "{}{}", stdout(&o), stderr(&o));
    assert_eq!(steps(&o)[&name]["action"], "create");

    // stop acts on the running environment.
    let o = warren().args(["stop", "-t", "1", &name]).output().unwrap();
    assert_code(&o, 0);
    wait_for("the run -d workload to end", 15, || {
        (!alive(pid)).then_some(())
    });
}

#[test]
fn stop_rm_and_logs() {
    let _serial = serial();
    let mut space = Space::new();
    let name = space.name("ma-life");
    let file = space.write_tables(&[table(&name, SERVE, &["env = { COLOUR = \"green\" }"])]);
    assert_eq!(code(&run(&["apply", "--detailed-exitcodes"], &file)), 2);
    let (pid, launcher) = wait_running(&name);

    // logs: what the environment wrote.
    let log = wait_for("the hello", 10, || {
        Some(logs(&name)).filter(|l| l.contains("hello"))
    });
    assert_eq!(log.trim(), format!("hello from {name} colour=green"));
    let o = warren()
        .args(["logs", "--tail", "1", &name])
        .output()
        .unwrap();
    assert_code(&o, 0);
    assert_eq!(stdout(&o).lines().count(), 1);

    // rm refuses a running environment without -f.
    let o = warren().args(["rm", &name]).output().unwrap();
    assert_eq!(code(&o), 1);
    assert!(
        stderr(&o).contains("stop it first, or use -f"),
        "{}",
        stderr(&o)
    );
    assert!(alive(pid));

    // stop: the environment ends, and stays stopped and managed.
    let o = warren().args(["stop", "-t", "1", &name]).output().unwrap();
    assert_code(&o, 0);
    assert_eq!(stdout(&o).trim(), name);
    assert!(!alive(pid) && !alive(launcher));
    let o = warren().args(["ps", "-q"]).output().unwrap();
    assert!(!stdout(&o).contains(&name));
    let ps = ps_all();
    assert_eq!(ps[&name]["state"], "stopped");
    assert_eq!(ps[&name]["managed"], true);
    // It is not restarted behind the user's back.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(ps_all()[&name]["state"], "stopped");
    // apply would start it again.
    assert_eq!(code(&run(&["diff"], &file)), 1);

    // rm: forgotten, logs removed.
    let o = warren().args(["rm", &name]).output().unwrap();
    assert_code(&o, 0);
    assert!(!ps_all().contains_key(&name));
    let o = warren().args(["logs", &name]).output().unwrap();
    assert_eq!(code(&o), 1);

    // Unknown names: exit 1 with the name in the message.
    for verb in ["stop", "rm", "inspect", "logs"] {
        let o = warren().args([verb, "ma-no-such-env"]).output().unwrap();
        assert_eq!(code(&o), 1, "{verb}");
        assert!(
            stderr(&o).contains("ma-no-such-env"),
            "{verb}: {}",
            stderr(&o)
        );
    }

    // rm -f stops a running one first.
    assert_eq!(code(&run(&["apply", "--detailed-exitcodes"], &file)), 2);
    let (pid, launcher) = wait_running(&name);
    let o = warren().args(["rm", "-f", &name]).output().unwrap();
    assert_code(&o, 0);
    assert!(!alive(launcher));
    assert!(!ps_all().contains_key(&name));
    wait_for("the workload to end", 10, || (!alive(pid)).then_some(()));
}

#[test]
fn a_kernel_restart_keeps_environments_running_and_connected() {
    let _serial = serial();
    let mut space = Space::new();
    let (idle, srv, cli) = (
        space.name("ma-idle"),
        space.name("ma-srv"),
        space.name("ma-cli"),
    );
    // The server starts receiving only after the kernel has been restarted (see the ignored
    // test below for a receive in flight across the restart).
    let serve = "echo ready; sleep 3; while :; do warren-msg recv --timeout 1000 --body; done";
    let tables = vec![table(&idle, SERVE, &[]), table(&srv, serve, &[])];
    let file = space.write_tables(&tables);
    assert_eq!(code(&run(&["apply", "--detailed-exitcodes"], &file)), 2);
    let before_idle = wait_running(&idle);
    let before_srv = wait_running(&srv);

    // The kernel goes away (SIGTERM, as `systemctl restart` sends); the environments do not.
    stop_kernel();
    for (p, l) in [before_idle, before_srv] {
        assert!(alive(p) && alive(l), "an environment died with the kernel");
    }
    // ps still lists them without a kernel, from their launchers' records.
    let o = warren().args(["ps", "-q"]).output().unwrap();
    assert!(
        stdout(&o).contains(&idle) && stdout(&o).contains(&srv),
        "{}",
        stdout(&o)
    );

    // A new kernel takes them back: same processes, and applying the same file changes nothing.
    start_kernel();
    assert_eq!(pids(&idle), Some(before_idle));
    assert_eq!(pids(&srv), Some(before_srv));
    let ps = ps_all();
    assert_eq!(ps[&idle]["state"], "running");
    assert_eq!(ps[&idle]["managed"], true);
    let o = run(&["apply", "--detailed-exitcodes"], &file);
    assert_eq!(code(&o), 0, "{}{}", stdout(&o), stderr(&o));
    assert_eq!(pids(&idle), Some(before_idle));

    // The server's mailbox survived: a client started after the restart reaches it.
    // Environments re-attach to the new kernel shortly after it starts: until the server has,
    // its name is unknown, so the client tries for a while.
    send_through_a_client(&space, &tables, &cli, &srv, "after-the-restart", 15);
    assert_eq!(pids(&srv), Some(before_srv));
}

#[test]
fn a_receive_in_flight_across_a_kernel_restart_returns() {
    let _serial = serial();
    let mut space = Space::new();
    let (srv, cli) = (space.name("ma-busy"), space.name("ma-late"));
    let serve = "while :; do warren-msg recv --timeout 1000 --body; done";
    let srv_table = table(&srv, serve, &[]);
    let file = space.write_tables(std::slice::from_ref(&srv_table));
    assert_eq!(code(&run(&["apply", "--detailed-exitcodes"], &file)), 2);
    wait_running(&srv);
    std::thread::sleep(Duration::from_millis(1500));
    stop_kernel();
    start_kernel();
    let file = space.write_tables(&[
        srv_table,
        table(
            &cli,
            &format!(
                "for i in $(seq 50); do warren-msg send {srv} still-there && exit 0; \
                 sleep 0.2; done; exit 1"
            ),
            &[&format!("may_send = [\"{srv}\"]")],
        ),
    ]);
    assert_eq!(code(&run(&["apply", "--detailed-exitcodes"], &file)), 2);
    wait_for("the server to receive again", 10, || {
        Some(logs(&srv)).filter(|l| l.contains("still-there"))
    });
}

/// Removes a `warren run -d` environment (`rm -f`) when dropped.
struct Remove(String);

impl Drop for Remove {
    fn drop(&mut self) {
        let _ = warren().args(["rm", "-f", &self.0]).output();
    }
}

/// `warren run -d --name NAME` of `command` on the busybox root, removed when the guard drops.
fn run_d(name: &str, command: &[&str]) -> Remove {
    let root = busybox_root().display().to_string();
    let o = warren()
        .args(["run", "-d", "--name", name, "--rootfs", &root, "--"])
        .args(command)
        .output()
        .unwrap();
    assert_code(&o, 0);
    Remove(name.to_owned())
}

/// The pids of processes whose command line is exactly `args`.
fn pids_running(args: &[&str]) -> Vec<i32> {
    let want: Vec<u8> = args
        .iter()
        .flat_map(|a| [a.as_bytes(), b"\0"].concat())
        .collect();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|p| std::fs::read(format!("/proc/{p}/cmdline")).is_ok_and(|c| c == want))
        .collect()
}

/// A managed environment that does not run, and a `warren run -d` environment that took its
/// name meanwhile: what [`clash_after_stop`] leaves.
struct Clash {
    name: String,
    /// The run -d workload's pid.
    other: i32,
    /// The second `apply`'s output (exit 4, the clash refused).
    apply: Output,
    _remove: Remove,
}

/// Apply an environment named from `prefix`, stop it, start `warren run -d --name` the same
/// name running `sleep SECS`, and apply the same file again (which must fail with 4).
fn clash_after_stop(space: &mut Space, prefix: &str, secs: &str) -> Clash {
    let name = space.name(prefix);
    let file = space.write_tables(&[table(&name, SERVE, &[])]);
    assert_eq!(code(&run(&["apply", "--detailed-exitcodes"], &file)), 2);
    let (pid, _) = wait_running(&name);
    assert_code(
        &warren().args(["stop", "-t", "1", &name]).output().unwrap(),
        0,
    );
    wait_for("the managed workload to end", 15, || {
        (!alive(pid)).then_some(())
    });
    let sleeper = ["/bin/sleep", secs];
    let _remove = run_d(&name, &sleeper);
    let other = wait_for("the run -d workload", 15, || {
        pids_running(&sleeper).first().copied()
    });
    let apply = run(&["apply", "--detailed-exitcodes", "--json"], &file);
    assert_eq!(code(&apply), 4, "{}{}", stdout(&apply), stderr(&apply));
    Clash {
        name,
        other,
        apply,
        _remove,
    }
}

/// A managed environment that does not run, whose name a `warren run -d` took meanwhile, is not
/// started by the next `apply` either (as a create would not be): `failed`, and the other one
/// runs on. Positive control: the same apply replaced it before the name was taken.
#[test]
fn a_replace_does_not_take_a_name_a_run_d_took_meanwhile() {
    let _serial = serial();
    let mut space = Space::new();
    let Clash {
        name,
        other,
        apply: o,
        _remove,
    } = clash_after_stop(&mut space, "ma-clash2", "97531");
    let result = steps(&o)[&name]["result"].as_str().unwrap().to_owned();
    assert!(
        result.starts_with("failed: the kernel refused the environment"),
        "{result}"
    );
    assert!(alive(other.into()), "the run -d environment was ended");
    // `rm` and `stop` act on the environment that runs (docs/cli.md, "apply"): `rm` without
    // `-f` refuses a running one and leaves it running, `stop` ends it.
    let o = warren().args(["rm", &name]).output().unwrap();
    assert_eq!(code(&o), 1, "{}{}", stdout(&o), stderr(&o));
    assert!(stderr(&o).contains("is running"), "{}", stderr(&o));
    assert!(
        alive(other.into()),
        "rm without -f ended the run -d environment"
    );
    let o = warren().args(["stop", "-t", "1", &name]).output().unwrap();
    assert_code(&o, 0);
    wait_for("the run -d workload to end after stop", 15, || {
        (!alive(other.into())).then_some(())
    });
}

/// The same clash, ended by `rm -f`: the run -d environment is stopped and the managed record
/// forgotten.
#[test]
fn rm_f_of_a_clashing_name_stops_the_run_d_environment_too() {
    let _serial = serial();
    let mut space = Space::new();
    let Clash {
        name,
        other,
        _remove,
        ..
    } = clash_after_stop(&mut space, "ma-clash3", "97532");
    assert!(
        alive(other.into()),
        "the run -d environment was ended by apply"
    );
    let o = warren().args(["rm", "-f", &name]).output().unwrap();
    assert_code(&o, 0);
    wait_for("the run -d workload to end after rm -f", 15, || {
        (!alive(other.into())).then_some(())
    });
    assert!(
        !ps_all().contains_key(&name),
        "{name} still listed after rm -f"
    );
}

/// A tenant that floods its output, handed with a quiet neighbour to the kernel's launch
/// waiter (one process for all of them), neither starves the neighbour nor makes the kernel
/// hold more than its log's bound: the neighbour's lines are copied, its kernel connection
/// re-attaches across a kernel restart during the flood (the waiter re-registers the
/// connection's new descriptor) so a message sent afterwards reaches it, and its stop is prompt
/// and its end reported, while the flooder's log stops at 64 MiB (docs/cli.md, `warren logs`)
/// and the flooder runs on, never blocked. Positive controls: the flooder's log reached the
/// bound (it did flood), and both launchers had handed over (the waiter does the copying).
#[test]
fn a_tenant_flooding_its_output_neither_starves_its_neighbour_nor_grows_past_the_log_bound() {
    const LOG_MAX: u64 = 64 << 20;
    let _serial = serial();
    let mut space = Space::new();
    let flood = space.name("ma-flood");
    let quiet = space.name("ma-quiet");
    let tables = vec![
        table(&flood, "while :; do cat /bin/busybox; done", &[]),
        table(
            &quiet,
            "trap 'echo stopping; exit 0' TERM; sleep 3; echo still heard; \
             while :; do warren-msg recv --timeout 500 --body; done",
            &[],
        ),
    ];
    let file = space.write_tables(&tables);
    assert_eq!(code(&run(&["apply", "--detailed-exitcodes"], &file)), 2);
    let (flood_pid, flood_launcher) = wait_running(&flood);
    let (quiet_pid, quiet_launcher) = wait_running(&quiet);
    // Both launchers hand over after the first second and end.
    wait_for("both launchers to hand over", 20, || {
        (!alive(flood_launcher) && !alive(quiet_launcher)).then_some(())
    });
    let log_path = Path::new("/run/warren/logs").join(format!("{flood}.log"));
    let size = || std::fs::metadata(&log_path).map_or(0, |m| m.len());
    wait_for("the flood to reach the log's bound", 60, || {
        (size() >= LOG_MAX).then_some(())
    });
    // The neighbour is heard while the flood goes on.
    wait_for("the neighbour's line", 20, || {
        Some(logs(&quiet)).filter(|l| l.contains("still heard"))
    });
    // The flooder still runs and writes (it is never blocked), and its log stays bounded: the
    // bound plus the one line that says the rest is discarded. Its shell (the init's child)
    // counts the writes of every `cat` it has reaped; one that blocked would never be reaped.
    let shell = wait_for("the flooder's shell", 10, || {
        std::fs::read_dir("/proc").ok()?.find_map(|e| {
            let pid: i64 = e.ok()?.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let ppid: i64 = stat.rsplit_once(") ")?.1.split(' ').nth(1)?.parse().ok()?;
            (ppid == flood_pid).then_some(pid)
        })
    });
    let written = || -> u64 {
        std::fs::read_to_string(format!("/proc/{shell}/io"))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("wchar: "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    let before = written();
    std::thread::sleep(Duration::from_secs(2));
    let after = written();
    assert!(alive(flood_pid), "the flooder ended");
    // (At least one more copy of busybox, a few hundred KiB, went out.)
    assert!(
        after > before + (256 << 10),
        "the flooder is not writing: {before} then {after} bytes"
    );
    let final_size = size();
    assert!(
        (LOG_MAX..LOG_MAX + 512).contains(&final_size),
        "the flooder's log holds {final_size} bytes"
    );
    let tail = std::fs::read(&log_path).unwrap();
    let tail = String::from_utf8_lossy(&tail[tail.len().saturating_sub(400)..]).into_owned();
    assert!(
        tail.contains("further output of this environment is discarded"),
        "{tail}"
    );
    // The kernel restarts during the flood, twice; the waiter re-attaches both connections
    // each time, and a message sent afterwards reaches the neighbour (from a client started
    // then, which retries until the neighbour's name is known again). The second restart is
    // seen only on the connection the first re-attach made: the waiter must be watching it.
    for round in ["first", "second"] {
        stop_kernel();
        start_kernel();
        assert_eq!(pids(&quiet).map(|p| p.0), Some(quiet_pid));
        let client = space.name("ma-floodcli");
        let body = format!("after-the-{round}-restart");
        send_through_a_client(&space, &tables, &client, &quiet, &body, 20);
    }
    // The neighbour's stop is prompt and its end is seen, flood or not.
    let started = Instant::now();
    let o = warren()
        .args(["stop", "-t", "10", &quiet])
        .output()
        .unwrap();
    assert_code(&o, 0);
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "the neighbour's stop took {:?} (its TERM handler exits at once)",
        started.elapsed()
    );
    assert!(!alive(quiet_pid));
    assert_eq!(ps_all()[&quiet]["state"], "stopped");
    wait_for("the neighbour's last line", 10, || {
        Some(logs(&quiet)).filter(|l| l.contains("stopping"))
    });
    // And the flooder's own stop (its shell is pid 2 under the init, which forwards the TERM).
    let o = warren().args(["stop", "-t", "2", &flood]).output().unwrap();
    assert_code(&o, 0);
    assert!(!alive(flood_pid));
}
