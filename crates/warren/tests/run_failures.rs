//! Bad input gets a clear error naming what was wrong, exit status 125 (or 126/127 for the
//! command), and leaves nothing behind: no cgroup, mount, namespace, process, uid range, lock or
//! temporary file.

mod common;
use common::*;

use std::path::Path;

/// The launch steps of a launch without a network, in order, as `WARREN_FAULT_INJECT` names
/// them.
static STEPS: std::sync::LazyLock<Vec<&str>> = std::sync::LazyLock::new(plain_launch_steps);

fn run_args(name: &str, args: &[&str]) -> std::process::Output {
    warren()
        .args(["run", "--name", name])
        .args(args)
        .output()
        .unwrap()
}

fn assert_error(o: &std::process::Output, code: i32, fragment: &str) {
    assert_code(o, code);
    let err = stderr(o);
    assert!(err.contains(fragment), "stderr lacks {fragment:?}: {err}");
    assert!(err.starts_with("warren: error: "), "{err}");
}

/// Counts and sizes past their bounds (warren-spec's one table, shared with the manifest and
/// the control socket) are refused with the flag, the key and the bound; so is a reserved
/// variable. Positive control: the ends of each range are accepted.
#[test]
fn values_past_their_bounds_name_the_flag_and_the_bound() {
    let root = busybox_root().to_str().unwrap().to_owned();
    let n = unique("bound");
    let cases: [(&[&str], &str); 12] = [
        (
            &["--mailbox-capacity", "0"],
            "invalid --mailbox-capacity: mailbox_capacity 0 is out of range: expected 1 to 65536",
        ),
        (
            &["--mailbox-capacity", "9223372036854775808"],
            "expected 1 to 65536",
        ),
        (
            &["--mailbox-bytes", "2G"],
            "invalid --mailbox-bytes: mailbox_bytes 2147483648 is out of range: expected 4096 to 1073741824",
        ),
        (&["--mailbox-bytes", "lots"], "\"lots\""),
        (
            &["--pids", "18446744073709551615"],
            "invalid --pids: pids 18446744073709551615 is out of range: expected 1 to 4194304",
        ),
        (
            &["--memory", "100k"],
            "invalid --memory: memory 102400 is out of range",
        ),
        // The launcher cannot start a workload under 4 MiB: refused here, with the range.
        (
            &["--memory", "1M"],
            "invalid --memory: memory 1048576 is out of range: expected 4194304 to 17592186044416",
        ),
        (&["--memory", "4194303"], "expected 4194304 to"),
        (&["--tmpfs-size", "2T"], "invalid --tmpfs-size: tmpfs_size"),
        // A writable root's size is checked against its own bound, not /tmp's.
        (
            &["--writable-root", "--writable-root-size", "2T"],
            "invalid --writable-root-size: writable_root_size 2199023255552 is out of range: expected 1048576 to 1099511627776",
        ),
        (
            &["--writable-root", "--writable-root-size", "512K"],
            "invalid --writable-root-size: writable_root_size 524288 is out of range: expected 1048576 to 1099511627776",
        ),
        (&["-e", "WARREN_FD=7"], "variable \"WARREN_FD\" is reserved"),
    ];
    for (flags, fragment) in cases {
        let mut args = vec!["--rootfs", root.as_str()];
        args.extend_from_slice(flags);
        args.extend_from_slice(&["--", "/bin/true"]);
        assert_error(&run_args(&n, &args), 125, fragment);
    }
    // The ends of the ranges pass.
    let o = run_args(
        &n,
        &[
            "--rootfs",
            &root,
            "--mailbox-capacity",
            "65536",
            "--mailbox-bytes",
            "1G",
            "--pids",
            "4194304",
            "--memory",
            "4M",
            "--",
            "/bin/true",
        ],
    );
    assert_code(&o, 0);
}

#[test]
fn bad_input_is_named_in_the_error() {
    let root = busybox_root().to_str().unwrap().to_owned();
    let n = unique("bad");
    assert_error(
        &run_args(&n, &["--rootfs", "/nonexistent/root", "--", "/bin/true"]),
        125,
        "/nonexistent/root",
    );
    assert_error(
        &run_args(
            &n,
            &["--rootfs", &root, "--memory", "12Q", "--", "/bin/true"],
        ),
        125,
        "\"12Q\"",
    );
    assert_error(
        &run_args(
            &n,
            &["--rootfs", &root, "--tmpfs-size", "lots", "--", "/bin/true"],
        ),
        125,
        "\"lots\"",
    );
    assert_error(
        &run_args(&n, &["--rootfs", &root, "--cpus=-1", "--", "/bin/true"]),
        125,
        "\"-1\"",
    );
    assert_error(
        &run_args(&n, &["--rootfs", &root, "--pids", "0", "--", "/bin/true"]),
        125,
        "--pids",
    );
    assert_error(
        &run_args("Bad/Name", &["--rootfs", &root, "--", "/bin/true"]),
        125,
        "Bad/Name",
    );
    assert_error(
        &run_args(
            &n,
            // `-e KEY` alone passes Warren's own value (Docker's meaning); a name that is no
            // variable name is bad input.
            &["--rootfs", &root, "-e", "NO EQUALS", "--", "/bin/true"],
        ),
        125,
        "NO EQUALS",
    );
    assert_error(&run_args(&n, &["--rootfs", &root]), 125, "no command");
    assert_error(
        &run_args(
            &n,
            &[
                "--rootfs",
                &root,
                "--allow-missing",
                "ptrace",
                "--",
                "/bin/true",
            ],
        ),
        125,
        "\"ptrace\"",
    );
    // A root without the mount points Warren needs is refused before anything is created.
    let empty = tempfile::tempdir().unwrap();
    assert_error(
        &run_args(
            &n,
            &[
                "--rootfs",
                empty.path().to_str().unwrap(),
                "--",
                "/bin/true",
            ],
        ),
        125,
        "has no /proc directory",
    );
    // A root the environment's unprivileged root user could not read.
    let private = tempfile::tempdir().unwrap();
    for d in ["proc", "dev", "tmp"] {
        std::fs::create_dir(private.path().join(d)).unwrap();
    }
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(private.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    assert_error(
        &run_args(
            &n,
            &[
                "--rootfs",
                private.path().to_str().unwrap(),
                "--",
                "/bin/true",
            ],
        ),
        125,
        "chmod o+rx",
    );
    // A file, not a directory.
    assert_error(
        &run_args(&n, &["--rootfs", "/etc/hostname", "--", "/bin/true"]),
        125,
        "not a directory",
    );
    assert!(cgroup_dirs(&n).is_empty());
}

#[test]
fn a_name_in_use_is_refused_and_the_running_one_is_untouched() {
    let name = unique("dup");
    let root = busybox_root().to_str().unwrap().to_owned();
    let first = Background::start(&name, &["--rootfs", &root, "--", "/bin/sleep", "30"]);
    let pid = first.pid();
    let o = run_args(&name, &["--rootfs", &root, "--", "/bin/true"]);
    assert_error(
        &o,
        125,
        &format!("an environment named \"{name}\" is already running"),
    );
    assert_eq!(first.pid(), pid, "the running environment was disturbed");
    assert!(
        !cgroup_dirs(&name).is_empty(),
        "the running environment lost its cgroup"
    );
}

#[test]
fn a_binary_whose_libraries_cannot_be_resolved_is_refused() {
    // A copy of a dynamic program in a directory, with a library it needs made unresolvable by
    // pointing the copy's interpreter elsewhere is hard to build portably; instead use a file
    // that claims to be a program but is not ELF, and a missing binary.
    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join("fake");
    std::fs::write(&fake, "#!/bin/sh\necho hi\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let n = unique("bin");
    assert_error(
        &run_args(&n, &["--binary", fake.to_str().unwrap()]),
        125,
        "fake",
    );
    assert_error(
        &run_args(&n, &["--binary", "/nonexistent/program"]),
        125,
        "/nonexistent/program",
    );
}

/// Everything a launch could leave on the host, for the names starting with `prefix`.
fn leftovers(prefix: &str) -> Vec<String> {
    let mut found = Vec::new();
    for h in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
        for base in [h.path().join("warren"), h.path()] {
            if let Ok(rd) = std::fs::read_dir(&base) {
                for e in rd.flatten() {
                    if e.file_name().to_string_lossy().starts_with(prefix) {
                        found.push(format!("cgroup {}", e.path().display()));
                    }
                }
            }
        }
    }
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    for l in mountinfo.lines().filter(|l| l.contains("/run/warren")) {
        // Any mount point under a state directory would be a leak.
        found.push(format!("mount {l}"));
    }
    if let Ok(rd) = std::fs::read_dir(test_state_dir().join("mnt")) {
        for e in rd.flatten() {
            found.push(format!("file in the mount point {}", e.path().display()));
        }
    }
    if let Ok(rd) = std::fs::read_dir(test_state_dir().join("envs")) {
        for e in rd.flatten() {
            if e.file_name().to_string_lossy().starts_with(prefix) {
                found.push(format!("name lock {}", e.path().display()));
            }
        }
    }
    // Processes: any process whose cgroup names one of ours.
    for p in std::fs::read_dir("/proc").unwrap().flatten() {
        if p.file_name().to_string_lossy().parse::<u32>().is_err() {
            continue;
        }
        if let Ok(cg) = std::fs::read_to_string(p.path().join("cgroup")) {
            if cg.contains(&format!("/warren/{prefix}")) {
                found.push(format!(
                    "process {} in {}",
                    p.file_name().to_string_lossy(),
                    cg.trim()
                ));
            }
        }
    }
    found
}

/// Uid-range lock files that no live launcher holds (`flock -n` succeeds on them).
fn leaked_uid_slots() -> Vec<String> {
    let mut leaked = Vec::new();
    let Ok(rd) = std::fs::read_dir("/run/warren/uids") else {
        return leaked;
    };
    for e in rd.flatten() {
        let path = e.path();
        let free = |p: &Path| {
            std::process::Command::new("flock")
                .args(["-n"])
                .arg(p)
                .arg("true")
                .status()
                .map(|s| s.success())
                .unwrap_or(false)
        };
        // Checked twice, apart, so a launcher between creating and locking its file is not
        // mistaken for a leak; a file that vanished meanwhile was released properly.
        if path.exists() && free(&path) {
            std::thread::sleep(std::time::Duration::from_millis(200));
            if path.exists() && free(&path) {
                leaked.push(path.display().to_string());
            }
        }
    }
    leaked
}

#[test]
fn a_hundred_launches_failing_at_every_step_leave_nothing_behind() {
    let prefix = format!("leak-{}-", std::process::id());
    let root = busybox_root().to_str().unwrap().to_owned();
    let mut failures_by_step = std::collections::BTreeMap::new();
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let prefix = prefix.clone();
            let root = root.clone();
            std::thread::spawn(move || {
                let mut results = Vec::new();
                for i in (t..100).step_by(4) {
                    let name = format!("{prefix}{i}");
                    // Steps in turn, then every fourth launch fails for real instead: a missing
                    // command (exec), a bad size, a missing root.
                    let mut c = warren();
                    c.args(["run", "--name", &name, "--memory", "32M", "--pids", "16"]);
                    let kind = if i < STEPS.len() * 3 {
                        Some(STEPS[i % STEPS.len()])
                    } else {
                        None
                    };
                    match (kind, i % 3) {
                        (Some(step), _) => {
                            c.env("WARREN_FAULT_INJECT", step).args([
                                "--rootfs",
                                &root,
                                "--",
                                "/bin/true",
                            ]);
                        }
                        (None, 0) => {
                            c.args(["--rootfs", &root, "--", "/bin/no-such-program"]);
                        }
                        (None, 1) => {
                            c.args(["--rootfs", "/no/such/root", "--", "/bin/true"]);
                        }
                        (None, _) => {
                            c.args([
                                "--rootfs",
                                &root,
                                "--",
                                "/bin/sh",
                                "-c",
                                "sleep 0.1 & exit 3",
                            ]);
                        }
                    }
                    let o = c.output().unwrap();
                    results.push((
                        kind.unwrap_or("real"),
                        o.status.code(),
                        String::from_utf8_lossy(&o.stderr).into_owned(),
                    ));
                }
                results
            })
        })
        .collect();
    for t in threads {
        for (step, code, err) in t.join().unwrap() {
            if step != "real" {
                assert_eq!(
                    code,
                    Some(125),
                    "fault at {step} did not fail the launch: {err}"
                );
                assert!(
                    err.contains(step),
                    "the error does not name step {step}: {err}"
                );
                *failures_by_step.entry(step).or_insert(0) += 1;
            } else {
                assert!(
                    matches!(code, Some(125) | Some(127) | Some(3)),
                    "{code:?}: {err}"
                );
            }
        }
    }
    assert_eq!(
        failures_by_step.len(),
        STEPS.len(),
        "not every step was failed: {failures_by_step:?}"
    );
    let left = leftovers(&prefix);
    assert!(left.is_empty(), "left behind:\n{}", left.join("\n"));
    let leaked = leaked_uid_slots();
    assert!(leaked.is_empty(), "uid ranges leaked: {leaked:?}");
}

#[test]
fn the_leak_checks_see_a_live_environment() {
    // Positive control for the test above: while an environment runs, its cgroup, process and
    // name lock are all found by the same checks.
    let prefix = format!("ctl-{}-", std::process::id());
    let root = busybox_root().to_str().unwrap().to_owned();
    let env = Background::start(
        &format!("{prefix}0"),
        &["--rootfs", &root, "--", "/bin/sleep", "30"],
    );
    let left = leftovers(&prefix);
    assert!(left.iter().any(|l| l.starts_with("cgroup ")), "{left:?}");
    assert!(left.iter().any(|l| l.starts_with("process ")), "{left:?}");
    assert!(left.iter().any(|l| l.starts_with("name lock ")), "{left:?}");
    let _ = env.stop();
    assert!(leftovers(&prefix).is_empty());
}

/// `warren rm NAME` deletes the log an ended `run -d` environment left (docs/cli.md: "`warren
/// rm NAME` deletes the log"); until then `logs NAME` shows it, afterwards `logs` and `rm`
/// exit 1.
#[test]
fn rm_deletes_the_log_of_an_ended_background_environment() {
    let root = busybox_root().to_str().unwrap().to_owned();
    let n = unique("rmlog");
    let o = run_args(
        &n,
        &[
            "-d",
            "--rootfs",
            &root,
            "--",
            "/bin/sh",
            "-c",
            "echo from-the-workload; sleep 1; exit 3",
        ],
    );
    assert_code(&o, 0);
    let log = test_state_dir().join("logs").join(format!("{n}.log"));
    let start = std::time::Instant::now();
    while StateDirProbe::running(&n) {
        assert!(start.elapsed().as_secs() < 20, "{n} did not end");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let o = warren().args(["logs", &n]).output().unwrap();
    assert_code(&o, 0);
    assert!(stdout(&o).contains("from-the-workload"), "{}", stdout(&o));
    let o = warren().args(["rm", &n]).output().unwrap();
    assert_code(&o, 0);
    assert_eq!(stdout(&o), format!("{n}\n"));
    assert!(!log.exists(), "{} is still there", log.display());
    assert_error(
        &warren().args(["logs", &n]).output().unwrap(),
        1,
        "no logs for",
    );
    assert_error(
        &warren().args(["rm", &n]).output().unwrap(),
        1,
        "no environment named",
    );
}

/// Whether `ps` lists a running environment of that name.
struct StateDirProbe;
impl StateDirProbe {
    fn running(name: &str) -> bool {
        let o = warren().args(["ps", "-q"]).output().unwrap();
        stdout(&o).lines().any(|l| l == name)
    }
}

/// `stop` and `rm -f` of an environment the kernel manages, while no kernel runs, are refused
/// (exit 1, saying why) instead of signalling its launcher: the next kernel would start it again
/// as declared. With the kernel back, `stop` works and lasts, and the environment's `command`
/// is the same stopped as running. On the way: a manifest writing the documented defaults out
/// is the same declaration (`diff` exits 0).
#[test]
fn stop_of_a_managed_environment_without_a_kernel_is_refused() {
    use std::process::{Command, Stdio};
    let state = std::path::PathBuf::from(format!("/run/warren-nokernel-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&state);
    let msg = workspace_bin("warren-client", "warren-msg");
    let w = || {
        let mut c = warren();
        c.arg("--state-dir").arg(&state).env("WARREN_MSG_BIN", msg);
        c
    };
    let n = unique("nok");
    let dir = tempfile_dir(&n);
    // Also when an assertion fails: end the environment (its launcher outlives the kernel)
    // and remove the state and manifest directories.
    struct Cleanup(std::path::PathBuf, std::path::PathBuf, String);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            let o = warren()
                .arg("--state-dir")
                .arg(&self.0)
                .args(["inspect", &self.2])
                .output()
                .unwrap();
            let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
            if let Some(pid) = v["launcher_pid"].as_i64() {
                for _ in 0..2 {
                    let _ = Command::new("kill")
                        .args(["-TERM", &pid.to_string()])
                        .status();
                    std::thread::sleep(std::time::Duration::from_millis(500));
                }
            }
            let _ = std::fs::remove_dir_all(&self.0);
            let _ = std::fs::remove_dir_all(&self.1);
        }
    }
    let _cleanup = Cleanup(state.clone(), dir.clone(), n.clone());
    let probe = dir.join("probe.toml");
    std::fs::write(&probe, "").unwrap();
    let start_kernel = || {
        let mut c = Command::new("setpriv");
        c.args(["--pdeathsig", "KILL", "--"])
            .arg(env!("CARGO_BIN_EXE_warren"))
            .arg("--state-dir")
            .arg(&state)
            .arg("daemon")
            .env("WARREN_MSG_BIN", msg)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let k = c.spawn().unwrap();
        let start = std::time::Instant::now();
        // `diff` exits 2 while no kernel answers.
        while w().arg("diff").arg(&probe).output().unwrap().status.code() == Some(2) {
            assert!(start.elapsed().as_secs() < 20, "the kernel did not come up");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        k
    };
    let stop_kernel = |mut k: std::process::Child| {
        let _ = Command::new("kill")
            .args(["-TERM", &k.id().to_string()])
            .status();
        let _ = k.wait();
    };
    let file = dir.join("m.toml");
    std::fs::write(
        &file,
        format!(
            "[space.{n}]\nimage = \"{}\"\ncommand = [\"/bin/sleep\", \"1000\"]\n",
            busybox_root().display()
        ),
    )
    .unwrap();
    let k = start_kernel();
    let o = w().arg("apply").arg(&file).output().unwrap();
    assert_code(&o, 0);
    // The documented defaults written out are the same declaration: nothing would change.
    let explicit = dir.join("explicit.toml");
    std::fs::write(
        &explicit,
        format!(
            "{}pids = 1024\ntmpfs_size = \"16M\"\nmailbox_capacity = 64\n\
             mailbox_bytes = \"16M\"\nseccomp = \"default\"\nrestart = \"no\"\n\
             max_restarts = 5\ninit = true\nread_only = true\nnet = \"none\"\n",
            std::fs::read_to_string(&file).unwrap()
        ),
    )
    .unwrap();
    let o = w().arg("diff").arg(&explicit).output().unwrap();
    assert_code(&o, 0);
    assert!(
        stdout(&o).contains("0 would change, 1 unchanged"),
        "{}",
        stdout(&o)
    );
    stop_kernel(k);
    let pid_of = || {
        let o = w().args(["inspect", &n]).output().unwrap();
        serde_json::from_slice::<serde_json::Value>(&o.stdout).ok()?["pid"].as_i64()
    };
    let pid = pid_of().expect("the managed environment runs on without the kernel");
    for args in [&["stop", "-t", "1"][..], &["rm", "-f"][..]] {
        let o = w().args(args).arg(&n).output().unwrap();
        assert_error(&o, 1, "is managed by the kernel, which is not running");
        assert!(stdout(&o).is_empty(), "{}", stdout(&o));
    }
    assert_eq!(pid_of(), Some(pid), "the refused stop left it running");
    // With the kernel back, the same stop works and lasts.
    let k = start_kernel();
    let row = || {
        let o = w().args(["ps", "-a", "--json"]).output().unwrap();
        stdout(&o)
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|v| v["name"] == n.as_str())
            .expect("listed")
    };
    let running = row();
    assert_eq!(
        running["command"],
        serde_json::json!(["/dev/warren/warren-msg", "init", "--", "/bin/sleep", "1000"])
    );
    let o = w().args(["stop", "-t", "1", &n]).output().unwrap();
    assert_code(&o, 0);
    let stopped = row();
    assert_eq!(stopped["state"], "stopped");
    // The command is the same whether it runs or not (docs/cli.md, `ps --json`).
    assert_eq!(stopped["command"], running["command"]);
    let o = w().args(["inspect", &n]).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["command"], running["command"]);
    let o = w().arg("apply").arg(&probe).output().unwrap();
    assert_code(&o, 0);
    stop_kernel(k);
}

/// A fresh directory under /tmp for a test's files.
fn tempfile_dir(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("warren-{tag}"));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The help says what the docs say: `ps -a` adds the managed environments that are not
/// running (docs/cli.md, `warren ps`), and the host key's default file is in the data
/// directory (docs/cli.md, `warren host-key`).
#[test]
fn the_help_agrees_with_the_docs() {
    let help = |args: &[&str]| {
        let o = warren().args(args).arg("--help").output().unwrap();
        assert_code(&o, 0);
        // As one line: the help wraps to the terminal's width.
        stdout(&o).split_whitespace().collect::<Vec<_>>().join(" ")
    };
    let ps = help(&["ps"]);
    assert!(
        ps.contains("Also the managed environments that are not running (exited, restarting, stopped, failed)"),
        "{ps}"
    );
    assert!(!ps.contains("no record"), "{ps}");
    let key = help(&["host-key"]);
    assert!(key.contains("Default: `<data-dir>/link/host.key`"), "{key}");
}

/// Names are unique per state directory, cgroups host-wide: a launch under another state
/// directory with the name of a running environment is refused (125, `already exists`) and
/// leaves that environment running. Positive control: once it has ended, the same launch runs.
#[test]
fn a_running_environment_of_the_same_name_under_another_state_directory_is_left_alone() {
    let name = unique("clash");
    let other = tempfile::tempdir().unwrap();
    let mut first = warren()
        .args(["run", "--name", &name, "--rootfs"])
        .arg(busybox_root())
        .args(["--", "/bin/sleep", "30"])
        .spawn()
        .unwrap();
    // Running: its process is in its cgroup (the directory alone exists from the launcher's
    // step 6, before the child joins it at step 13a).
    let running = || {
        cgroup_dirs(&name).iter().any(|d| {
            std::fs::read_to_string(d.join("cgroup.procs")).is_ok_and(|p| !p.trim().is_empty())
        })
    };
    let started = std::time::Instant::now();
    while !running() && started.elapsed() < std::time::Duration::from_secs(10) {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let second = |o: &Path| {
        warren()
            .arg("--state-dir")
            .arg(o)
            .args(["run", "--name", &name, "--rootfs"])
            .arg(busybox_root())
            .args(["--", "/bin/true"])
            .output()
            .unwrap()
    };
    let o = second(other.path());
    assert_error(&o, 125, "already exists");
    assert!(
        first.try_wait().unwrap().is_none(),
        "the first environment was ended by the second launch"
    );
    assert!(!cgroup_dirs(&name).is_empty(), "its cgroup is gone");
    let _ = rustix::process::kill_process(
        rustix::process::Pid::from_raw(first.id() as i32).unwrap(),
        rustix::process::Signal::TERM,
    );
    let _ = rustix::process::kill_process(
        rustix::process::Pid::from_raw(first.id() as i32).unwrap(),
        rustix::process::Signal::INT,
    );
    first.wait().unwrap();
    assert_code(&second(other.path()), 0);
    assert!(
        cgroup_dirs(&name).is_empty(),
        "left: {:?}",
        cgroup_dirs(&name)
    );
}

/// A launcher whose standard error cannot be written still starts its environment. The
/// supervisor's launchers write to `STATE/logs/NAME.log`; with the state directory's filesystem
/// full, the launch record cannot be written either, and the launcher's warning about it went
/// to a standard error that could not take it: Rust's `eprintln!` panics then (exit 101), so
/// `apply` reported `failed: the launcher exited with status 101` for an environment that
/// could run. A diagnostic that cannot be written is not a failure. Positive control: the same
/// launch with a writable standard error prints the warning and runs too.
#[test]
fn a_launcher_whose_stderr_cannot_be_written_still_runs_its_environment() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=256k", "tmpfs"])
        .arg(&state)
        .status()
        .unwrap();
    assert!(mounted.success());
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(&self.0)
                .status();
        }
    }
    let _unmount = Unmount(state.clone());
    let data = dir.path().join("data");
    let launch = |name: &str, stderr: std::process::Stdio| {
        warren()
            .env("WARREN_STATE_DIR", &state)
            .env("WARREN_DATA_DIR", &data)
            .args(["run", "--name", name, "--rootfs"])
            .arg(busybox_root())
            .args(["--", "/bin/echo", "ran"])
            .stderr(stderr)
            .output()
            .unwrap()
    };
    // Prepare the state directory (its staging directory and the attestation choice), then
    // fill its filesystem.
    let o = launch(&unique("prep"), std::process::Stdio::piped());
    assert_code(&o, 0);
    let filler = state.join("filler");
    let _ = std::process::Command::new("dd")
        .args(["if=/dev/zero", "bs=4k", "count=1000"])
        .arg(format!("of={}", filler.display()))
        .stderr(std::process::Stdio::null())
        .status();
    let o = launch(&unique("full"), std::process::Stdio::piped());
    assert_code(&o, 0);
    assert!(stdout(&o).contains("ran"), "{}", stdout(&o));
    assert!(
        stderr(&o).contains("No space left on device"),
        "the positive control warns: {}",
        stderr(&o)
    );
    let full = std::fs::File::options()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let o = launch(&unique("full"), std::process::Stdio::from(full));
    assert_code(&o, 0);
    assert!(stdout(&o).contains("ran"), "{}", stdout(&o));
}

/// Under the init (the manifest's default), a command missing from a binary image's root was
/// left to the init's exec: the launch reported success (`apply`: `created`), and the init
/// then exited 127 (`ps -a`: `exited`, and with `restart = "no"` the next `apply` kept it
/// `unchanged`). The launcher looks the command up among what the root holds (the binary, its
/// loader and libraries, the added paths) and fails with 127 before the launch. Positive
/// controls: the binary itself, by path and by a name searched in `PATH`, and a file of a
/// `--with` directory run.
#[test]
fn under_the_init_a_command_missing_from_a_binary_root_is_127_before_the_launch() {
    let run = |extra: &[&str], argv: &[&str]| {
        warren()
            .args([
                "run",
                "--name",
                &unique("binroot"),
                "--init",
                "--binary",
                "/bin/sleep",
            ])
            .args(extra)
            .arg("--")
            .args(argv)
            .output()
            .unwrap()
    };
    let o = run(&[], &["/bin/no-such", "0"]);
    assert_error(
        &o,
        127,
        "command not found in the environment: /bin/no-such",
    );
    let o = run(&[], &["no-such", "0"]);
    assert_error(&o, 127, "command not found in the environment: no-such");
    assert_code(&run(&[], &["/bin/sleep", "0"]), 0);
    assert_code(&run(&[], &["/bin/../bin/sleep", "0"]), 0);
    assert_code(&run(&[], &["sleep", "0"]), 0);
    // The binary is also at `/<its name>`.
    assert_code(&run(&[], &["/sleep", "0"]), 0);
    let dir = tempfile::tempdir().unwrap();
    let tool = dir.path().join("true");
    std::fs::copy("/bin/busybox", &tool).unwrap();
    let with = dir.path().to_str().unwrap();
    let o = run(&["--with", with], &[tool.to_str().unwrap()]);
    assert_code(&o, 0);
}
