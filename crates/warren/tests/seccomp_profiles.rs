//! Per-environment seccomp profiles: `--seccomp default|strict|FILE` (docs/seccomp.md).
//!
//! `strict` refuses what `default` allows (mkfifo: the control runs under `default`); a profile
//! file adds from the safe set, and the digest recorded is that of the program the kernel runs
//! (read back with `PTRACE_SECCOMP_GET_FILTER`); a bad file, an unknown name, a deny-listed or
//! argument-ruled syscall and anything outside the safe set are refused before anything starts,
//! naming the syscall and why, with nothing left behind.

mod common;

use std::io::Write;

use common::{Background, assert_code, busybox_root, stderr, stdout, unique, warren};

fn profile(json: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::Builder::new().suffix(".json").tempfile().unwrap();
    f.write_all(json.as_bytes()).unwrap();
    f
}

fn run(name: &str, seccomp: Option<&str>, script: &str) -> std::process::Output {
    let mut c = warren();
    c.args(["run", "--name", name]);
    if let Some(s) = seccomp {
        c.args(["--seccomp", s]);
    }
    c.arg("--rootfs")
        .arg(busybox_root())
        .args(["--", "/bin/sh", "-c", script])
        .output()
        .unwrap()
}

#[test]
fn strict_refuses_what_default_allows_and_says_so() {
    let script = "mkfifo /tmp/f && echo made";
    let control = run(&unique("sc-default"), Some("default"), script);
    assert_code(&control, 0);
    assert!(stdout(&control).contains("made"), "{}", stderr(&control));
    let name = unique("sc-strict");
    let o = run(&name, Some("strict"), script);
    assert_code(&o, 1);
    assert!(!stdout(&o).contains("made"));
    let err = stderr(&o);
    assert!(err.contains("Operation not permitted"), "{err}");
    assert!(
        err.contains(&format!(
            "refused syscall mknod (133) in environment {name}"
        )) || err.contains(&format!(
            "refused syscall mknodat (259) in environment {name}"
        )),
        "{err}"
    );
    assert!(err.contains("the strict profile leaves mknod"), "{err}");
}

#[test]
fn a_profile_file_adds_from_the_safe_set_and_the_record_names_the_loaded_program() {
    let f = profile(
        r#"{"base": "strict", "add": [
            {"syscall": "mknod", "reason": "mkfifo"},
            {"syscall": "mknodat", "reason": "mkfifo"}]}"#,
    );
    let path = f.path().to_str().unwrap();
    let o = run(&unique("sc-file"), Some(path), "mkfifo /tmp/f && echo made");
    assert_code(&o, 0);
    assert!(stdout(&o).contains("made"), "{}", stderr(&o));

    let name = unique("sc-file-bg");
    let root = busybox_root().to_str().unwrap();
    let bg = Background::start(
        &name,
        &["--seccomp", path, "--rootfs", root, "--", "sleep", "60"],
    );
    let record = bg.inspect().expect("running");
    let seccomp = &record["applied"]["seccomp"];
    let filters = warren_sys::seccomp_filters(bg.pid()).expect("PTRACE_SECCOMP_GET_FILTER");
    assert_eq!(filters.len(), 1);
    let loaded = warren_seccomp::digest_of(&filters[0]);
    assert_eq!(seccomp["profile_digest"].as_str(), Some(loaded.as_str()));
    assert_ne!(loaded, warren_seccomp::Program::host_notifying().digest());
    assert_ne!(
        loaded,
        warren_seccomp::Program::strict_for_arch(warren_seccomp::Arch::host(), true).digest()
    );
    let profile_name = seccomp["profile"].as_str().unwrap();
    assert!(
        profile_name.starts_with(&format!("file {path} (sha256:")),
        "{profile_name}"
    );
    drop(bg);
}

#[test]
fn bad_profiles_are_refused_before_anything_starts() {
    let files = [
        ("{ not json", "not a profile"),
        (
            r#"{"base":"default","add":[{"syscall":"frobnicate","reason":"x"}]}"#,
            "cannot add \"frobnicate\": not a system call Warren knows",
        ),
        (
            r#"{"base":"default","add":[{"syscall":"ptrace","reason":"gdb"}]}"#,
            "cannot add \"ptrace\": it is on the deny list and never allowed: Debugging other",
        ),
        (
            r#"{"base":"default","add":[{"syscall":"mount","reason":"x"}]}"#,
            "cannot add \"mount\": it is on the deny list",
        ),
        (
            r#"{"base":"default","add":[{"syscall":"socket","reason":"raw"}]}"#,
            "cannot add \"socket\": it is allowed only with the argument rules",
        ),
        (
            r#"{"base":"default","add":[{"syscall":"sched_setattr","reason":"rt"}]}"#,
            "cannot add \"sched_setattr\": it is not in the safe set",
        ),
    ];
    let kept: Vec<(tempfile::NamedTempFile, &str)> =
        files.iter().map(|(j, w)| (profile(j), *w)).collect();
    let mut cases: Vec<(String, &str)> = vec![(
        "/nonexistent/warren-profile.json".into(),
        "/nonexistent/warren-profile.json: No such file",
    )];
    for (f, want) in &kept {
        cases.push((f.path().to_str().unwrap().to_owned(), want));
    }
    for (arg, want) in cases {
        let name = unique("sc-bad");
        let o = run(&name, Some(&arg), "echo ran");
        assert_code(&o, 125);
        assert!(!stdout(&o).contains("ran"));
        let err = stderr(&o);
        assert!(err.contains("invalid --seccomp"), "{arg}: {err}");
        assert!(err.contains(want), "{arg}: {err}");
        // Nothing was started: no record of the name is left.
        let ps = warren().args(["ps", "-a"]).output().unwrap();
        assert!(!stdout(&ps).contains(&name), "{}", stdout(&ps));
    }
}
