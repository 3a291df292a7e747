//! What a newcomer ran into, fixed: a state directory inside a mode-0700 parent, and
//! `warren run --binary /usr/bin/python3` (the example of docs/cli.md) with `--with PATH`.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::{assert_code, busybox_root, stderr, stdout, unique, warren};
use serde_json::Value;

/// A directory under /run, removed at the end.
fn scratch(prefix: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in("/run")
        .unwrap()
}

#[test]
fn a_state_directory_inside_a_closed_parent_works() {
    let home = scratch("warren-closed-home-");
    std::fs::set_permissions(home.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let state = home.path().join("state");
    let o = warren()
        .env("WARREN_STATE_DIR", &state)
        .args(["run", "--name", &unique("closed"), "--rootfs"])
        .arg(busybox_root())
        .args(["--", "/bin/sh", "-c", "echo inside; hostname"])
        .output()
        .unwrap();
    assert_code(&o, 0);
    assert!(stdout(&o).starts_with("inside\n"), "{}", stdout(&o));
    // Control: the parent really is closed to the environment's unprivileged root, and the
    // state directory's own mount point lies behind it.
    let mode = std::fs::metadata(home.path()).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700);
    assert!(state.join("mnt").starts_with(home.path()));
    // The launch was measured and recorded in that state directory.
    let log = std::fs::read_to_string(state.join("attest/events.jsonl")).unwrap();
    assert_eq!(log.lines().count(), 1);
}

/// `warren run --json --binary BIN [extra] -- CMD...`: the output and the JSON report.
fn run_binary(bin: &str, extra: &[&str], cmd: &[&str]) -> (std::process::Output, Value) {
    let o = warren()
        .args(["run", "--json", "--name", &unique("bin"), "--binary", bin])
        .args(extra)
        .arg("--")
        .args(cmd)
        .output()
        .unwrap();
    let report = stdout(&o)
        .lines()
        .last()
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or(Value::Null);
    (o, report)
}

fn root_targets(report: &Value) -> Vec<String> {
    report["applied"]["root"]["files"]
        .as_array()
        .map(|files| {
            files
                .iter()
                .map(|f| f[1].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn python3_from_binary_starts_with_its_standard_library() {
    assert!(
        Path::new("/usr/bin/python3").exists(),
        "python3 is needed: run scripts/setup.sh"
    );
    let (o, report) = run_binary(
        "/usr/bin/python3",
        &[],
        &[
            "/usr/bin/python3",
            "-c",
            "import json, encodings, os, sys; print(json.dumps(sys.prefix))",
        ],
    );
    assert_code(&o, 0);
    assert!(stdout(&o).starts_with("\"/usr\"\n"), "{}", stdout(&o));
    let targets = root_targets(&report);
    let os_py = targets
        .iter()
        .find(|t| t.starts_with("/usr/lib/python3.") && t.ends_with("/os.py"));
    assert!(os_py.is_some(), "the standard library is in the root");
    // Nothing but the program, its libraries and the standard library: no dist-packages.
    assert!(
        targets.iter().all(|t| !t.contains("dist-packages")),
        "{targets:?}"
    );
}

#[test]
fn with_adds_read_only_paths_and_the_measurement_covers_their_contents() {
    let data = scratch("warren-with-");
    std::fs::set_permissions(data.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let dir = data.path().join("share");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("greeting"), "hello\n").unwrap();
    let file = dir.join("greeting");
    let script = format!("cat {0}; echo more > {0} || echo refused", file.display());
    let with = ["--with", dir.to_str().unwrap()];
    let (o, first) = run_binary(
        "/bin/busybox",
        &with,
        &["/bin/busybox", "sh", "-c", &script],
    );
    assert_code(&o, 0);
    assert!(stdout(&o).starts_with("hello\nrefused\n"), "{}", stdout(&o));
    assert!(
        stderr(&o).contains("Read-only file system"),
        "{}",
        stderr(&o)
    );
    assert!(root_targets(&first).contains(&file.display().to_string()));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "hello\n");

    // Another content is another measurement.
    std::fs::write(&file, "changed\n").unwrap();
    let (o, second) = run_binary(
        "/bin/busybox",
        &with,
        &["/bin/busybox", "cat", file.to_str().unwrap()],
    );
    assert_code(&o, 0);
    assert!(stdout(&o).starts_with("changed\n"));
    let digest = |r: &Value| r["applied"]["measurement"]["image_digest"].clone();
    assert!(digest(&first).is_string());
    assert_ne!(digest(&first), digest(&second));

    // Without --with, the path is not there (control).
    let (o, _) = run_binary(
        "/bin/busybox",
        &[],
        &["/bin/busybox", "cat", file.to_str().unwrap()],
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
}

#[test]
fn bad_with_paths_are_refused_and_named() {
    for (extra, want) in [
        (
            vec!["--with", "relative/path"],
            "--with relative/path: the path must be absolute",
        ),
        (vec!["--with", "/no/such/path"], "--with /no/such/path"),
        (vec!["--with", "/proc"], "/proc is provided by Warren"),
    ] {
        let (o, _) = run_binary("/bin/busybox", &extra, &["/bin/busybox", "true"]);
        assert_eq!(o.status.code(), Some(125), "{extra:?}");
        assert!(stderr(&o).contains(want), "{extra:?}: {}", stderr(&o));
    }
    let o = warren()
        .args(["run", "--rootfs"])
        .arg(busybox_root())
        .args(["--with", "/etc", "--", "/bin/true"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(125));
    assert!(
        stderr(&o).contains("--with adds paths to a --binary root"),
        "{}",
        stderr(&o)
    );
}
