//! The files in `contrib/` (issue 5), driven the way their tools drive them: Salt's `cmd.run`
//! with `stateful` through `contrib/salt/warren-salt-apply`, Puppet's `exec` with the
//! `command`, `unless` and `returns` written in `contrib/puppet/manifests/init.pp`, and
//! systemd's `Type=notify` start of `contrib/systemd/warren.service`. Each test reads the
//! contrib file itself, so that the file and what is tested cannot drift apart.
//!
//! Like `manifest_apply.rs`, the tests share one kernel on the default state directory and run
//! one at a time, since `apply` converges everything the kernel manages.

mod common;
use common::kernel::*;
use common::*;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

// ----- harness -----

/// The repository's `contrib/` directory.
fn contrib(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../contrib")
        .join(path)
}

fn read_contrib(path: &str) -> String {
    std::fs::read_to_string(contrib(path)).unwrap()
}

/// `[space.NAME]`: a long-running busybox shell that prints `colour=$COLOUR`.
fn table(name: &str, colour: &str) -> String {
    let root = serde_json::to_string(&busybox_root().display().to_string()).unwrap();
    format!(
        "[space.{name}]\nimage = {root}\n\
         command = [\"/bin/sh\", \"-c\", \"echo colour=$COLOUR; while :; do sleep 0.2; done\"]\n\
         env = {{ COLOUR = \"{colour}\" }}\n"
    )
}

/// `warren ps -a --json`, by name.
fn ps_all() -> BTreeMap<String, serde_json::Value> {
    let o = warren().args(["ps", "-a", "--json"]).output().unwrap();
    assert_code(&o, 0);
    stdout(&o)
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .map(|v| (v["name"].as_str().unwrap().to_owned(), v))
        .collect()
}

/// The workload pid of a running environment, once its launcher has recorded it.
fn pid(name: &str) -> Option<i64> {
    let o = warren().args(["inspect", name]).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).ok()?;
    v["pid"].as_i64()
}

fn wait_pid(name: &str) -> i64 {
    let start = Instant::now();
    loop {
        if let Some(p) = pid(name) {
            return p;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "{name} did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

// ----- Salt -----

/// What Salt's `cmd.run` makes of a `stateful` command: the state's result (`None` is "would
/// change", under `test=True` only) and whether it reports changes.
#[derive(Debug, PartialEq)]
struct SaltState {
    result: Option<bool>,
    changed: bool,
    comment: String,
}

/// Split a line of `key=value` pairs where values may be single- or double-quoted (the subset
/// of shell quoting the stateful protocol uses).
fn key_values(line: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut chars = line.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            return out;
        }
        let mut token = String::new();
        let mut quote = None;
        for c in chars.by_ref() {
            match (quote, c) {
                (None, '\'' | '"') => quote = Some(c),
                (Some(q), c) if c == q => quote = None,
                (None, c) if c.is_whitespace() => break,
                (_, c) => token.push(c),
            }
        }
        let (k, v) = token.split_once('=').expect("a key=value pair");
        out.insert(k.to_owned(), v.to_owned());
    }
}

/// Salt's reading of a stateful command's output and status (salt/states/cmd.py: the last
/// non-empty line carries `changed` and `comment`; a non-zero status fails the state; under
/// `test=True` a successful run with changes is `None`).
fn salt_reads(o: &Output, test: bool) -> SaltState {
    let out = stdout(o);
    let last = out
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    let kv = key_values(last);
    let changed = match kv.get("changed").map(String::as_str) {
        Some("yes" | "true" | "1") => true,
        Some("no" | "false" | "0") | None => false,
        Some(other) => panic!("Salt cannot parse changed={other}"),
    };
    let ok = o.status.success();
    let result = match (ok, test && changed) {
        (false, _) => Some(false),
        (true, true) => None,
        (true, false) => Some(true),
    };
    SaltState {
        result,
        changed,
        comment: kv.get("comment").cloned().unwrap_or_default(),
    }
}

/// Run `warren-salt-apply MODE FILE` as the state does (WARREN names the binary).
fn salt(mode: &str, file: &Path) -> Output {
    Command::new("sh")
        .arg(contrib("salt/warren-salt-apply"))
        .arg(mode)
        .arg(file)
        .env("WARREN", env!("CARGO_BIN_EXE_warren"))
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn the_salt_state_applies_with_test_true_as_a_check_and_reports_changes_by_exit_code() {
    let _serial = serial();
    // The state runs the helper with `apply`, and with `check` under test=True.
    let sls = read_contrib("salt/warren.sls");
    assert!(
        sls.contains("- name: {{ helper }} apply {{ manifest }}"),
        "{sls}"
    );
    assert!(
        sls.contains("- test_name: {{ helper }} check {{ manifest }}"),
        "{sls}"
    );
    let helper = read_contrib("salt/warren-salt-apply");
    assert!(helper.contains(r#""$WARREN" apply --detailed-exitcodes "$manifest""#));
    assert!(helper.contains(r#""$WARREN" apply --check --detailed-exitcodes "$manifest""#));

    let mut space = Space::new();
    let (web, db) = (space.name("ct-web"), space.name("ct-db"));
    let file = space.write(&(table(&web, "blue") + &table(&db, "blue")));

    // test=True on a new manifest: "would change" (None), and nothing starts.
    let o = salt("check", &file);
    let s = salt_reads(&o, true);
    assert_eq!((s.result, s.changed), (None, true), "{}", stdout(&o));
    assert!(s.comment.contains("would change"), "{s:?}");
    assert!(
        stdout(&o).contains(&format!("{web:<24} create   would-change")),
        "{}",
        stdout(&o)
    );
    std::thread::sleep(Duration::from_millis(300));
    assert!(!ps_all().contains_key(&web), "the check started {web}");

    // The real run: True with changes, and both run.
    let o = salt("apply", &file);
    let s = salt_reads(&o, false);
    assert_eq!((s.result, s.changed), (Some(true), true), "{}", stdout(&o));
    assert!(
        stdout(&o).contains("2 changed, 0 unchanged"),
        "{}",
        stdout(&o)
    );
    let (pw, pd) = (wait_pid(&web), wait_pid(&db));

    // Again: True, no changes; under test=True too.
    let o = salt("apply", &file);
    let s = salt_reads(&o, false);
    assert_eq!((s.result, s.changed), (Some(true), false), "{}", stdout(&o));
    assert!(s.comment.contains("already match"), "{s:?}");
    let s = salt_reads(&salt("check", &file), true);
    assert_eq!((s.result, s.changed), (Some(true), false));
    assert_eq!((pid(&web), pid(&db)), (Some(pw), Some(pd)));

    // One field changes: test=True says so without touching anything; the run replaces only
    // that environment.
    let file = space.write(&(table(&web, "red") + &table(&db, "blue")));
    let s = salt_reads(&salt("check", &file), true);
    assert_eq!((s.result, s.changed), (None, true));
    assert_eq!(pid(&web), Some(pw));
    let o = salt("apply", &file);
    let s = salt_reads(&o, false);
    assert_eq!((s.result, s.changed), (Some(true), true), "{}", stdout(&o));
    assert!(
        stdout(&o).contains(&format!("{web:<24} replace  replaced")),
        "{}",
        stdout(&o)
    );
    assert!(
        stdout(&o).contains(&format!("{db:<24} keep     unchanged")),
        "{}",
        stdout(&o)
    );
    assert_ne!(wait_pid(&web), pw);
    assert_eq!(pid(&db), Some(pd));

    // An invalid manifest fails the state (exit 4), with warren's error naming file, line and
    // key in the output; under test=True as well.
    let file = space.write(&(table(&web, "red") + "colour = \"red\"\n"));
    for (mode, test) in [("apply", false), ("check", true)] {
        let o = salt(mode, &file);
        assert_eq!(o.status.code(), Some(4), "{mode}: {}", stdout(&o));
        let s = salt_reads(&o, test);
        assert_eq!((s.result, s.changed), (Some(false), false), "{mode}");
        assert!(s.comment.contains("exit 4"), "{s:?}");
        let place = format!(
            "{}:5:1: unknown key \"colour\" in [space.{web}]",
            file.display()
        );
        assert!(stdout(&o).contains(&place), "{mode}: {}", stdout(&o));
    }
    // Nothing was stopped by the failed runs.
    assert_eq!(pid(&db), Some(pd));

    // Usage errors are failures too, not "no changes".
    let o = salt("converge", &file);
    assert_eq!(o.status.code(), Some(64));
}

// ----- Puppet -----

/// The `exec` of `contrib/puppet/manifests/init.pp`: its command, its `unless` check and the
/// exit codes it accepts, with the class parameters filled in.
struct PuppetExec {
    command: Vec<String>,
    unless: Vec<String>,
    returns: Vec<i32>,
}

/// What one Puppet run does with the exec.
#[derive(Debug, PartialEq)]
enum PuppetEvent {
    /// `unless` exited 0: the exec is in sync, nothing runs.
    InSync,
    /// The command ran and exited with one of `returns`: a change.
    Changed(i32),
    /// The command ran and exited with anything else: a failed resource.
    Failed(i32),
    /// `--noop`: `unless` found a difference, the command would run.
    WouldRun,
}

fn puppet_attr(pp: &str, attr: &str) -> String {
    let line = pp
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with(attr) && l[attr.len()..].trim_start().starts_with("=>"))
        .unwrap_or_else(|| panic!("no {attr} in the exec"));
    let value = line
        .split_once("=>")
        .unwrap()
        .1
        .trim()
        .trim_end_matches(',');
    value.to_owned()
}

fn puppet_exec(file: &Path) -> PuppetExec {
    let pp = read_contrib("puppet/manifests/init.pp");
    assert!(pp.contains("exec { 'warren apply':"), "{pp}");
    let fill = |s: String| -> Vec<String> {
        s.trim_matches('"')
            .replace("${warren}", env!("CARGO_BIN_EXE_warren"))
            .replace("${manifest}", &file.display().to_string())
            .replace("${stop_timeout}", "1")
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    };
    let returns = puppet_attr(&pp, "returns");
    PuppetExec {
        command: fill(puppet_attr(&pp, "command")),
        unless: fill(puppet_attr(&pp, "unless")),
        returns: returns
            .trim_matches(['[', ']'])
            .split(',')
            .map(|n| n.trim().parse().unwrap())
            .collect(),
    }
}

fn exec(argv: &[String]) -> Output {
    Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// One `puppet agent` run (or `--noop` run) of the exec.
fn puppet_run(file: &Path, noop: bool) -> (PuppetEvent, Output) {
    let e = puppet_exec(file);
    let check = exec(&e.unless);
    if check.status.success() {
        return (PuppetEvent::InSync, check);
    }
    if noop {
        return (PuppetEvent::WouldRun, check);
    }
    let o = exec(&e.command);
    let code = o.status.code().unwrap_or(-1);
    let event = if e.returns.contains(&code) {
        PuppetEvent::Changed(code)
    } else {
        PuppetEvent::Failed(code)
    };
    (event, o)
}

#[test]
fn the_puppet_exec_runs_apply_only_when_diff_finds_a_change_and_fails_on_4() {
    let _serial = serial();
    let space_file = PathBuf::from("/etc/warren/spaces.toml");
    let e = puppet_exec(&space_file);
    assert_eq!(e.returns, [0, 2]);
    assert_eq!(
        e.command[1..4],
        ["apply", "--detailed-exitcodes", "--timeout"]
    );
    assert_eq!(e.unless[1..], ["diff", "/etc/warren/spaces.toml"]);

    let mut space = Space::new();
    let (web, db) = (space.name("ct-pweb"), space.name("ct-pdb"));
    let file = space.write(&(table(&web, "blue") + &table(&db, "blue")));

    // --noop: would run, runs nothing.
    let (ev, _) = puppet_run(&file, true);
    assert_eq!(ev, PuppetEvent::WouldRun);
    assert!(!ps_all().contains_key(&web));

    // First run: `warren diff` exits 1, the command runs and exits 2: a change.
    let (ev, o) = puppet_run(&file, false);
    assert_eq!(ev, PuppetEvent::Changed(2), "{}{}", stdout(&o), stderr(&o));
    let (pw, pd) = (wait_pid(&web), wait_pid(&db));

    // Second run: `warren diff` exits 0: in sync, nothing runs.
    let (ev, o) = puppet_run(&file, false);
    assert_eq!(ev, PuppetEvent::InSync, "{}", stdout(&o));
    assert_eq!(puppet_run(&file, true).0, PuppetEvent::InSync);
    assert_eq!((pid(&web), pid(&db)), (Some(pw), Some(pd)));

    // A changed field: a change, and only that environment is replaced.
    let file = space.write(&(table(&web, "blue") + &table(&db, "green")));
    let (ev, o) = puppet_run(&file, false);
    assert_eq!(ev, PuppetEvent::Changed(2), "{}{}", stdout(&o), stderr(&o));
    assert!(
        stdout(&o).contains(&format!("{db:<24} replace  replaced")),
        "{}",
        stdout(&o)
    );
    assert_ne!(wait_pid(&db), pd);
    assert_eq!(pid(&web), Some(pw));
    assert_eq!(puppet_run(&file, false).0, PuppetEvent::InSync);

    // An invalid manifest: `warren diff` exits 2 (not 0), so the command runs and exits 4,
    // which `returns` does not accept: the resource fails, naming file, line and key.
    let file = space.write(&(table(&web, "blue") + &table(&db, "green") + "pids = 0\n"));
    let e = puppet_exec(&file);
    assert_eq!(exec(&e.unless).status.code(), Some(2));
    let (ev, o) = puppet_run(&file, false);
    assert_eq!(ev, PuppetEvent::Failed(4));
    let place = format!("{}:9:8: \"pids\" in [space.{db}]", file.display());
    assert!(stderr(&o).contains(&place), "{}", stderr(&o));
    // A removed environment: a change, and it is stopped.
    let file = space.write(&table(&web, "blue"));
    let (ev, o) = puppet_run(&file, false);
    assert_eq!(ev, PuppetEvent::Changed(2), "{}{}", stdout(&o), stderr(&o));
    assert!(!ps_all().contains_key(&db));
    assert_eq!(pid(&web), Some(pw));
}

// ----- systemd -----

#[test]
fn the_systemd_unit_is_type_notify_keeps_environments_on_stop_and_verifies() {
    let unit = read_contrib("systemd/warren.service");
    let directives: Vec<&str> = unit
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#') && l.contains('='))
        .collect();
    for want in [
        "Type=notify",
        "NotifyAccess=main",
        "ExecStart=/usr/local/bin/warren daemon",
        "KillMode=process",
        "Restart=on-failure",
    ] {
        assert!(directives.contains(&want), "no {want}");
    }
    // Options that would break the launcher, be inherited by every environment, or remove the
    // state directory between two daemons.
    for banned in [
        "RuntimeDirectory=",
        "NoNewPrivileges=",
        "ProtectSystem=",
        "PrivateTmp=",
        "ProtectControlGroups=",
        "ProtectKernelTunables=",
        "SystemCallFilter=",
        "RestrictNamespaces=",
        "User=",
    ] {
        assert!(
            !directives.iter().any(|d| d.starts_with(banned)),
            "{banned} is set"
        );
    }

    // systemd-analyze verify, with ExecStart pointing at the binary under test.
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("warren.service");
    std::fs::write(
        &copy,
        unit.replace("/usr/local/bin/warren", env!("CARGO_BIN_EXE_warren")),
    )
    .unwrap();
    match Command::new("systemd-analyze")
        .arg("verify")
        .arg(&copy)
        .output()
    {
        Ok(o) => {
            assert_code(&o, 0);
            assert_eq!(stderr(&o).trim(), "", "systemd-analyze has remarks");
        }
        Err(e) => eprintln!("systemd-analyze is not available ({e}): the unit was not verified"),
    }
}

#[test]
fn the_daemon_reports_ready_to_systemd_once_its_control_socket_answers() {
    // A kernel of its own, on a private state directory: it starts no environment, so it never
    // touches another state directory's names, uid ranges or cgroups.
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let notify = dir.path().join("notify.sock");
    let listener = std::os::unix::net::UnixDatagram::bind(&notify).unwrap();
    listener
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let log = dir.path().join("daemon.log");
    let mut daemon = Command::new("setpriv")
        .args(["--pdeathsig", "KILL", "--"])
        .arg(env!("CARGO_BIN_EXE_warren"))
        .arg("--state-dir")
        .arg(&state)
        .arg("daemon")
        .env("NOTIFY_SOCKET", &notify)
        .env("JOURNAL_STREAM", "8:12345")
        .stdin(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();

    let mut buf = [0u8; 512];
    let n = listener.recv(&mut buf).expect("no readiness notification");
    let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
    // At the moment systemd hears READY=1, `warren apply` already works.
    let answers = warren()
        .arg("--state-dir")
        .arg(&state)
        .arg("diff")
        .arg(empty_manifest())
        .output()
        .unwrap();
    assert_code(&answers, 0);
    assert!(msg.lines().any(|l| l == "READY=1"), "{msg:?}");
    let sock = state.join("kernel.sock");
    assert!(
        msg.contains(&format!("STATUS=kernel listening on {}", sock.display())),
        "{msg:?}"
    );

    // SIGTERM, as `systemctl stop` sends: a clean exit, and the socket is gone.
    let _ = Command::new("kill")
        .args(["-TERM", &daemon.id().to_string()])
        .status();
    let status = daemon.wait().unwrap();
    assert!(status.success(), "{status:?}");
    assert!(!sock.exists());
    // Under systemd (JOURNAL_STREAM set) journald stamps the time: the lines carry none.
    let text = std::fs::read_to_string(&log).unwrap();
    let ready = text
        .lines()
        .find(|l| l.contains("kernel ready"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(!ready.trim_start().starts_with(char::is_numeric), "{ready}");
}
