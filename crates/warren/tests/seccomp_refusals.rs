//! Seccomp refusals explain themselves (docs/seccomp.md, "Refusals that explain themselves").
//!
//! A workload's refused system call still fails with `EPERM` — exactly what the plain filter
//! returned — but the launcher, the filter's listener, writes one line naming the call, its
//! number, the environment and how to allow it (or why it never is), on `warren run`'s standard
//! error and so in `warren logs` for a detached environment; `--json` counts the refusals. A run
//! without refused calls writes no such line (the control), and a flood of refusals gives one
//! line and an exact count, answered every time.

mod common;

use common::{assert_code, busybox_root, debian_root, run_sh, stderr, stdout, unique, warren};

#[test]
fn a_refused_call_is_named_with_its_environment_and_still_fails_with_eperm() {
    let name = unique("sc-refuse");
    // sethostname is on the deny list; busybox reports the EPERM it gets.
    let o = run_sh(&name, &[], "hostname intruder; echo status=$?");
    assert_code(&o, 0);
    assert!(
        stderr(&o).contains("Operation not permitted") && stdout(&o).contains("status=1"),
        "the workload sees EPERM as before: {}{}",
        stdout(&o),
        stderr(&o)
    );
    let line = format!("warren: seccomp: refused syscall sethostname (170) in environment {name}");
    assert!(stderr(&o).contains(&line), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("sethostname is never allowed: "),
        "{}",
        stderr(&o)
    );
    assert_eq!(stderr(&o).matches("refused syscall").count(), 1);
}

#[test]
fn no_refusal_no_line() {
    let name = unique("sc-quiet");
    let o = run_sh(&name, &[], "hostname; echo ok");
    assert_code(&o, 0);
    assert!(stdout(&o).contains("ok"));
    assert!(!stderr(&o).contains("seccomp"), "{}", stderr(&o));
}

#[test]
fn an_argument_refusal_says_which_arguments_are_allowed() {
    let name = unique("sc-args");
    // SCHED_FIFO is refused; SCHED_BATCH (3) is allowed by the same rule.
    let o = warren()
        .args(["run", "--name", &name, "--rootfs"])
        .arg(debian_root())
        .args([
            "--",
            "/bin/sh",
            "-c",
            "chrt -b 0 true && echo batch-ok; chrt -f 1 true; echo fifo=$?",
        ])
        .output()
        .unwrap();
    assert_code(&o, 0);
    assert!(stdout(&o).contains("batch-ok"), "{}", stdout(&o));
    assert!(stdout(&o).contains("fifo=1"), "{}", stdout(&o));
    let err = stderr(&o);
    assert!(
        err.contains(&format!(
            "refused syscall sched_setscheduler (144) in environment {name}"
        )),
        "{err}"
    );
    assert!(
        err.contains("sched_setscheduler is allowed only with the arguments docs/seccomp.md lists"),
        "{err}"
    );
    assert_eq!(err.matches("refused syscall").count(), 1, "{err}");
}

#[test]
fn a_flood_of_refusals_is_answered_every_time_logged_once_and_counted() {
    let name = unique("sc-flood");
    let script = "import ctypes, os\n\
                  libc = ctypes.CDLL(None, use_errno=True)\n\
                  bad = 0\n\
                  for i in range(20000):\n\
                  \x20   if libc.syscall(250, 0, 0, 0) != -1 or ctypes.get_errno() != 1:\n\
                  \x20       bad += 1\n\
                  print('wrong answers', bad)\n";
    let o = warren()
        .args(["run", "--json", "--name", &name, "--rootfs"])
        .arg(debian_root())
        .args(["--", "python3", "-c", script])
        .output()
        .unwrap();
    assert_code(&o, 0);
    let out = stdout(&o);
    assert!(out.contains("wrong answers 0"), "{out}");
    let err = stderr(&o);
    assert_eq!(
        err.matches("refused syscall keyctl (250)").count(),
        1,
        "{err}"
    );
    assert!(err.contains("seccomp refused: keyctl 20000 times"), "{err}");
    let json: serde_json::Value = out
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .expect("the --json summary");
    assert_eq!(
        json["seccomp_refusals"],
        serde_json::json!([{ "syscall": "keyctl", "count": 20000 }])
    );
}

#[test]
fn a_detached_environment_has_its_refusals_in_warren_logs() {
    let name = unique("sc-logs");
    let o = warren()
        .args(["run", "-d", "--name", &name, "--rootfs"])
        .arg(busybox_root())
        .args(["--", "/bin/sh", "-c", "hostname x; sleep 30"])
        .output()
        .unwrap();
    assert_code(&o, 0);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let logs = loop {
        let l = warren().args(["logs", &name]).output().unwrap();
        let text = format!("{}{}", stdout(&l), stderr(&l));
        if text.contains("refused syscall sethostname") || std::time::Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let _ = warren().args(["stop", "-t", "1", &name]).output();
    let _ = warren().args(["rm", "-f", &name]).output();
    assert!(
        logs.contains(&format!(
            "seccomp: refused syscall sethostname (170) in environment {name}"
        )),
        "{logs}"
    );
}
