//! The generated `/etc/hosts`, `/etc/hostname` and `/etc/resolv.conf` (issue 15,
//! docs/network.md): `--add-host`, `--dns` and `--hostname` reach the files inside, each with
//! its positive control (the entry is absent without the flag), the files are read-only, and
//! bad values are refused before anything is made, naming the value.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use common::{
    assert_code, cgroup_dirs, debian_root, stderr, stdout, test_state_dir, unique, warren,
};

/// `warren run --name NAME --rootfs ROOT EXTRA -- /bin/sh -c SCRIPT`.
fn run_in(root: &Path, name: &str, extra: &[&str], script: &str) -> Output {
    let mut c: Command = warren();
    c.args(["run", "--name", name, "--rootfs"])
        .arg(root)
        .args(extra)
        .args(["--", "/bin/sh", "-c", script]);
    c.output().unwrap()
}

/// A busybox root whose `/etc` holds empty `hosts`, `hostname` and `resolv.conf` (as an image
/// built for containers does), so that all three generated files can be bound.
fn etc_root() -> &'static Path {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("warren-etc-root-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for d in ["bin", "etc", "proc", "dev", "tmp", "sys"] {
            std::fs::create_dir_all(dir.join(d)).unwrap();
        }
        std::fs::copy("/bin/busybox", dir.join("bin/busybox")).unwrap();
        for applet in ["sh", "cat", "hostname", "grep"] {
            std::os::unix::fs::symlink("busybox", dir.join("bin").join(applet)).unwrap();
        }
        for f in ["hosts", "hostname", "resolv.conf"] {
            std::fs::write(dir.join("etc").join(f), "").unwrap();
        }
        dir
    })
}

/// What a launch of `name` may leave on the host: its cgroups and any state-directory entry
/// carrying its name (the generated files' private directory among them).
fn leftovers(name: &str) -> Vec<PathBuf> {
    let mut out = cgroup_dirs(name);
    if let Ok(rd) = std::fs::read_dir(test_state_dir()) {
        out.extend(
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| p.to_string_lossy().contains(name)),
        );
    }
    out
}

#[test]
fn add_host_and_hostname_reach_getent_and_the_files() {
    let name = unique("etc-hosts");
    let o = run_in(
        debian_root(),
        &name,
        &[
            "--add-host",
            "db.internal:10.0.0.5",
            "--add-host",
            "v6db:fd00::5",
            "--hostname",
            "web1",
        ],
        "getent hosts db.internal; getent hosts v6db; getent hosts web1; hostname; \
         cat /etc/hostname; getent hosts localhost; \
         if echo x > /etc/hosts; then echo WRITABLE; fi",
    );
    assert_code(&o, 0);
    let out = stdout(&o);
    let lines: Vec<Vec<&str>> = out
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(lines[0], ["10.0.0.5", "db.internal"], "{out}");
    assert_eq!(lines[1], ["fd00::5", "v6db"], "{out}");
    assert_eq!(lines[2], ["127.0.1.1", "web1"], "{out}");
    assert_eq!(lines[3], ["web1"], "{out}");
    assert_eq!(lines[4], ["web1"], "{out}");
    assert_eq!(lines[5][1], "localhost", "{out}");
    assert!(
        !out.contains("WRITABLE"),
        "/etc/hosts must be read-only: {out}"
    );
    assert!(
        stderr(&o).contains("Read-only file system"),
        "{}",
        stderr(&o)
    );
    assert!(leftovers(&name).is_empty(), "{:?}", leftovers(&name));

    // Positive control: without the flags the entries are absent, and the environment's own
    // name is its hostname and in /etc/hosts.
    let plain = unique("etc-plain");
    let o = run_in(
        debian_root(),
        &plain,
        &[],
        "getent hosts db.internal || echo ABSENT; hostname; cat /etc/hosts",
    );
    assert_code(&o, 0);
    let out = stdout(&o);
    assert!(out.starts_with("ABSENT\n"), "{out}");
    assert!(out.contains(&format!("\n{plain}\n")), "{out}");
    assert!(out.contains(&format!("127.0.1.1\t{plain}\n")), "{out}");
    assert!(
        out.contains("::1\tlocalhost ip6-localhost ip6-loopback\n"),
        "{out}"
    );
    assert!(!out.contains("10.0.0.5"), "{out}");
}

#[test]
fn dns_servers_reach_resolv_conf() {
    let name = unique("etc-dns");
    let o = run_in(
        etc_root(),
        &name,
        &["--dns", "192.0.2.53", "--dns", "2001:db8::53"],
        "cat /etc/resolv.conf",
    );
    assert_code(&o, 0);
    let servers: Vec<String> = stdout(&o)
        .lines()
        .filter(|l| l.starts_with("nameserver "))
        .map(str::to_owned)
        .collect();
    assert_eq!(
        servers,
        ["nameserver 192.0.2.53", "nameserver 2001:db8::53"],
        "{}",
        stdout(&o)
    );
    // Positive control: without --dns the file names no server (Warren never picks one).
    let o = run_in(
        etc_root(),
        &unique("etc-nodns"),
        &[],
        "cat /etc/resolv.conf; hostname",
    );
    assert_code(&o, 0);
    assert!(!stdout(&o).contains("nameserver"), "{}", stdout(&o));
    assert!(
        stdout(&o).contains("# Generated by Warren"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn a_networked_environment_finds_itself_at_its_own_address() {
    let name = unique("etc-net");
    let o = run_in(
        etc_root(),
        &name,
        &["--net", "auto"],
        "grep -w \"$(hostname)\" /etc/hosts",
    );
    assert_code(&o, 0);
    let line = stdout(&o);
    let addr = line.split_whitespace().next().unwrap_or_default();
    assert!(addr.starts_with("10.88."), "{line}");
    assert!(line.trim_end().ends_with(&name), "{line}");
}

#[test]
fn bad_values_are_refused_naming_them_and_leave_nothing() {
    for (args, named) in [
        (&["--add-host", "db:10.0.0.300"][..], "10.0.0.300"),
        (&["--add-host", "bad_name:10.0.0.1"][..], "bad_name"),
        (&["--add-host=-db:10.0.0.1"][..], "-db"),
        (&["--add-host", "db10.0.0.1"][..], "db10.0.0.1"),
        (&["--dns", "1.2.3"][..], "1.2.3"),
        (&["--dns", "dns.example"][..], "dns.example"),
        (&["--hostname", "web_1"][..], "web_1"),
    ] {
        let name = unique("etc-bad");
        let o = run_in(etc_root(), &name, args, "echo RAN");
        assert_code(&o, 125);
        assert!(!stdout(&o).contains("RAN"), "{args:?}");
        let err = stderr(&o);
        assert!(err.contains(&format!("{named:?}")), "{args:?}: {err}");
        assert!(
            leftovers(&name).is_empty(),
            "{args:?}: {:?}",
            leftovers(&name)
        );
    }
    let name = unique("etc-bad");
    let o = run_in(
        etc_root(),
        &name,
        &[
            "--dns", "1.1.1.1", "--dns", "1.0.0.1", "--dns", "9.9.9.9", "--dns", "8.8.8.8",
        ],
        "echo RAN",
    );
    assert_code(&o, 125);
    assert!(stderr(&o).contains("at most 3"), "{}", stderr(&o));
    // A root without /etc/resolv.conf cannot carry the asked-for servers: refused, naming the
    // file, after the launch began — and still nothing is left behind.
    let name = unique("etc-nofile");
    let o = run_in(debian_root(), &name, &["--dns", "192.0.2.53"], "echo RAN");
    assert_code(&o, 125);
    assert!(!stdout(&o).contains("RAN"));
    assert!(stderr(&o).contains("/etc/resolv.conf"), "{}", stderr(&o));
    assert!(leftovers(&name).is_empty(), "{:?}", leftovers(&name));
}

#[test]
fn the_launch_record_carries_the_files_digest() {
    let run = |extra: &[&str]| -> serde_json::Value {
        let mut args = vec!["--json", "--hostname", "h1"];
        args.extend_from_slice(extra);
        let o = run_in(etc_root(), &unique("etc-rec"), &args, "true");
        assert_code(&o, 0);
        serde_json::from_str(&stdout(&o)).unwrap()
    };
    let a = run(&["--add-host", "db:10.0.0.5", "--dns", "192.0.2.53"]);
    let b = run(&[]);
    let c = run(&["--add-host", "db:10.0.0.5", "--dns", "192.0.2.53"]);
    let digest = |v: &serde_json::Value| v["applied"]["etc_files"].as_str().unwrap().to_owned();
    let config = |v: &serde_json::Value| v["applied"]["measurement"]["config_digest"].clone();
    assert!(digest(&a).starts_with("sha256:"), "{a}");
    assert_eq!(digest(&a), digest(&c));
    // Positive control: other inputs, another digest, and so another configuration digest.
    assert_ne!(digest(&a), digest(&b));
    assert_ne!(config(&a), config(&b));
}

/// The digest is the documented formula over what the environment sees: a file the root keeps
/// (skipped: here a root whose `/etc/resolv.conf` is a symbolic link) counts as the byte 0xFF,
/// not as the generated text it never got. Positive control: the same launch on a root that
/// takes all three gives the formula with the three generated texts, read back from inside.
#[test]
fn the_files_digest_says_which_files_were_bound() {
    use sha2::Digest;
    let linked = std::env::temp_dir().join(format!("warren-etc-linked-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&linked);
    std::fs::create_dir_all(&linked).unwrap();
    assert!(
        Command::new("cp")
            .args(["-a"])
            .arg(etc_root().join("."))
            .arg(&linked)
            .status()
            .unwrap()
            .success()
    );
    std::fs::remove_file(linked.join("etc/resolv.conf")).unwrap();
    std::fs::write(linked.join("etc/own-resolv"), "nameserver 192.0.2.1\n").unwrap();
    std::os::unix::fs::symlink("own-resolv", linked.join("etc/resolv.conf")).unwrap();
    let name = unique("etc-dig");
    let run = |root: &Path| -> (serde_json::Value, String) {
        let o = run_in(
            root,
            &name,
            &["--json", "--hostname", "h1"],
            "cat /etc/hosts; echo @@; cat /etc/hostname; echo @@; cat /etc/resolv.conf",
        );
        assert_code(&o, 0);
        // The workload's output, then the report on the last line.
        let out = stdout(&o);
        let (body, json) = out.trim_end().rsplit_once('\n').unwrap();
        (serde_json::from_str(json).unwrap(), format!("{body}\n"))
    };
    let formula = |texts: [Option<&str>; 3]| {
        let mut h = sha2::Sha256::new();
        for (path, t) in ["/etc/hosts", "/etc/hostname", "/etc/resolv.conf"]
            .iter()
            .zip(texts)
        {
            h.update(path.as_bytes());
            h.update([0]);
            match t {
                Some(t) => h.update(t.as_bytes()),
                None => h.update([0xff]),
            }
            h.update([0]);
        }
        format!("sha256:{}", hex::encode(h.finalize()))
    };
    let parts = |body: &str| -> Vec<String> { body.split("@@\n").map(str::to_owned).collect() };
    let (all, out) = run(etc_root());
    let p = parts(&out);
    assert_eq!(p.len(), 3, "{out}");
    assert_eq!(
        all["applied"]["etc_files"],
        formula([Some(&p[0]), Some(&p[1]), Some(&p[2])]),
        "{out}"
    );
    let (kept, out) = run(&linked);
    let p2 = parts(&out);
    assert_eq!(
        p2[2], "nameserver 192.0.2.1\n",
        "the root's own resolv.conf: {out}"
    );
    assert_eq!(
        kept["applied"]["etc_files"],
        formula([Some(&p2[0]), Some(&p2[1]), None]),
        "{out}"
    );
    assert_ne!(all["applied"]["etc_files"], kept["applied"]["etc_files"]);
    let _ = std::fs::remove_dir_all(&linked);
}
