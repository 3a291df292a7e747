//! `warren run -t/-i` (issue 15): the workload gets a pty of the environment's own devpts, the
//! launcher's terminal is put in raw mode and restored, input and window size reach the
//! workload, and ^C is the environment's own job control. Driven as a user would, through a
//! real terminal on the test side: `script` runs `warren` on a pty whose input is a timed
//! script of keystrokes.

mod common;

use std::process::{Command, Stdio};

use common::{assert_code, stderr, stdout, unique, warren};

/// Run `inner` (a shell command line) under `script` on a fresh pty, feeding it `keys`: each
/// `(delay in ms, bytes)` written after its delay. Returns its output and status.
fn on_a_terminal(inner: &str, keys: &[(u64, &str)]) -> std::process::Output {
    let mut child = Command::new("script")
        .args(["-qec", inner, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    for (delay, bytes) in keys {
        std::thread::sleep(std::time::Duration::from_millis(*delay));
        use std::io::Write;
        let _ = stdin.write_all(bytes.as_bytes());
        let _ = stdin.flush();
    }
    drop(stdin);
    child.wait_with_output().unwrap()
}

#[test]
fn run_it_gives_an_interactive_shell_on_its_own_pty_and_restores_the_terminal() {
    let w = common::workspace_bin("warren", "warren");
    let root = common::busybox_root().display().to_string();
    let tag = unique("tty");
    let before = std::env::temp_dir().join(format!("{tag}.before"));
    let after = std::env::temp_dir().join(format!("{tag}.after"));
    let state = common::test_state_dir().display().to_string();
    // The outer shell (on script's pty) sets a window size, records the terminal's mode, runs
    // warren, changes the window size while it runs, and records the mode again afterwards.
    let inner = format!(
        "stty cols 123 rows 45; stty -g > {b}; (sleep 3; stty cols 80 rows 20 < /dev/tty) & \
         WARREN_STATE_DIR={state} {w} run -it --name {tag} --rootfs {root} -- /bin/sh; \
         echo rc=$?; stty -g > {a}",
        b = before.display(),
        a = after.display(),
        w = w.display(),
    );
    let t = std::time::Instant::now();
    let o = on_a_terminal(
        &inner,
        &[
            (1500, "tty\n"),
            (300, "stty size\n"),
            (300, "sleep 100\n"),
            (1000, "\x03"),
            (500, "echo after-$?\n"),
            (1200, "stty size\n"),
            (300, "exit 3\n"),
        ],
    );
    eprintln!("on a terminal: {:?}", t.elapsed());
    let out = stdout(&o).replace('\r', "");
    let b = std::fs::read_to_string(&before).unwrap_or_default();
    let a = std::fs::read_to_string(&after).unwrap_or_default();
    let _ = std::fs::remove_file(&before);
    let _ = std::fs::remove_file(&after);
    assert!(o.status.success(), "{out}\n{}", stderr(&o));
    // The environment's own pty (its devpts starts at 0), input reached the shell.
    assert!(out.contains("tty\n/dev/pts/0\n"), "{out}");
    // The window size at the start, and after a SIGWINCH.
    assert!(out.contains("stty size\n45 123\n"), "{out}");
    assert!(out.contains("stty size\n20 80\n"), "{out}");
    // ^C went through the environment's line discipline to the foreground job only: sleep
    // died of SIGINT, the shell went on.
    assert!(out.contains("after-130\n"), "{out}");
    assert!(out.contains("rc=3\n"), "{out}");
    // Raw mode was undone: the terminal's settings are as before.
    assert!(!b.is_empty());
    assert_eq!(a, b, "the terminal was not restored");
}

#[test]
fn without_t_there_is_no_terminal_and_t_with_detach_is_refused() {
    // Positive control: the same launch without -t has no terminal, even on a terminal.
    let w = common::workspace_bin("warren", "warren");
    let root = common::busybox_root().display().to_string();
    let inner = format!(
        "WARREN_STATE_DIR={} {} run --rootfs {root} -- /bin/sh -c 'tty; ls /dev/pts 2>&1'",
        common::test_state_dir().display(),
        w.display()
    );
    let o = on_a_terminal(&inner, &[]);
    let out = stdout(&o).replace('\r', "");
    assert!(out.starts_with("not a tty\n"), "{out}");
    assert!(out.contains("No such file or directory"), "{out}");
    // -t without a terminal on the launcher's side still gives the workload one.
    let o = warren()
        .args(["run", "-t", "--rootfs", &root, "--", "/bin/sh", "-c", "tty"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_code(&o, 0);
    assert_eq!(stdout(&o).replace('\r', ""), "/dev/pts/0\n");
    let o = warren()
        .args(["run", "-t", "-d", "--rootfs", &root, "--", "/bin/true"])
        .output()
        .unwrap();
    assert_code(&o, 125);
    assert!(
        stderr(&o).contains("-t/--tty needs this terminal: it cannot be combined with -d"),
        "{}",
        stderr(&o)
    );
}
