//! `warren run --binary`: a minimal root holding the program, its ELF interpreter and its
//! libraries, and nothing else.

mod common;
use common::*;

fn run_binary(binary: &str, cmd: &[&str]) -> std::process::Output {
    let mut c = warren();
    c.args(["run", "--name", &unique("bin"), "--binary", binary]);
    if !cmd.is_empty() {
        c.arg("--").args(cmd);
    }
    c.output().unwrap()
}

#[test]
fn the_root_holds_the_program_and_its_libraries_only() {
    let o = run_binary("/bin/ls", &["/bin/ls", "-1", "/"]);
    assert_code(&o, 0);
    // /ls is the short alias of the program; lib and lib64 hold the loader and libraries.
    assert_eq!(stdout(&o), "bin\ndev\nlib\nlib64\nls\nproc\ntmp\n");
    let o = run_binary("/bin/ls", &["/bin/ls", "-R", "/bin", "/lib", "/lib64"]);
    assert_code(&o, 0);
    let out = stdout(&o);
    let files: Vec<&str> = out
        .lines()
        .filter(|l| l.contains(".so") || *l == "ls")
        .collect();
    let ldd = std::process::Command::new("ldd")
        .arg("/bin/ls")
        .output()
        .unwrap();
    let libs: Vec<String> = stdout(&ldd)
        .lines()
        .filter_map(|l| {
            l.split_whitespace()
                .find(|w| w.starts_with('/'))
                .map(str::to_owned)
        })
        .collect();
    assert!(
        libs.len() >= 2,
        "control: ldd names the loader and libc: {libs:?}"
    );
    for lib in &libs {
        let name = std::path::Path::new(lib)
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        assert!(files.contains(&name.as_str()), "{lib} missing from {out}");
    }
    // The program, the loader and the libraries: nothing else.
    assert_eq!(
        files.len(),
        1 + libs.len(),
        "unexpected files: {files:?} (ldd: {libs:?})"
    );
}

#[test]
fn the_command_defaults_to_the_binary_and_status_passes_through() {
    assert_code(&run_binary("/bin/true", &[]), 0);
    assert_code(&run_binary("/bin/false", &[]), 1);
}

#[test]
fn the_minimal_root_is_read_only_but_tmp_is_writable() {
    let o = run_binary("/usr/bin/touch", &["/usr/bin/touch", "/x"]);
    assert_code(&o, 1);
    assert!(
        stderr(&o).contains("Read-only file system"),
        "{}",
        stderr(&o)
    );
    assert_code(
        &run_binary("/usr/bin/touch", &["/usr/bin/touch", "/tmp/x"]),
        0,
    );
}

#[test]
fn a_static_binary_gets_a_root_with_nothing_but_itself() {
    let o = run_binary("/bin/busybox", &["/bin/busybox", "ls", "/", "/bin"]);
    assert_code(&o, 0);
    let out = stdout(&o);
    assert_eq!(
        out, "/:\nbin\nbusybox\ndev\nproc\ntmp\n\n/bin:\nbusybox\n",
        "{out}"
    );
}

#[test]
fn a_program_under_tmp_keeps_its_path_read_only_above_the_fresh_tmp() {
    // A program built in a temporary directory: /tmp is the environment's own tmpfs, which
    // would hide a file bound below it before it was mounted.
    let dir = tempfile::Builder::new()
        .prefix("warren-bin-")
        .tempdir_in("/tmp")
        .unwrap();
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let prog = dir.path().join("busybox");
    std::fs::copy("/bin/busybox", &prog).unwrap();
    let p = prog.to_str().unwrap();
    let o = run_binary(p, &[p, "echo", "hello from tmp"]);
    assert_code(&o, 0);
    assert_eq!(stdout(&o), "hello from tmp\n");
    // /tmp is still the environment's writable tmpfs, and the program in it is read-only.
    let script = format!("echo x > /tmp/new && cat /tmp/new && ! echo y > {p} && echo ro");
    let o = run_binary(p, &[p, "sh", "-c", &script]);
    assert_code(&o, 0);
    assert_eq!(stdout(&o), "x\nro\n", "{}", stderr(&o));
}
