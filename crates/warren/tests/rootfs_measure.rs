//! Where a `--rootfs` launch's image digest comes from, end to end through the real binary:
//! `warren rootfs seal|status|unseal`, launches that record `digest_source: seal` while the
//! seal holds and walk (and see a change) once it is lifted, and `warren run --rootfs /`, which
//! measures the host root without entering `/proc`, `/sys` or other mounts. Run as root.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{assert_code, stderr, stdout, unique};
use serde_json::Value;

/// A state directory and a private copy of the busybox root (a seal mounts over the root, so
/// it must not be the one other tests share); unmounted and removed on drop.
struct Fixture {
    base: PathBuf,
    state: PathBuf,
    root: PathBuf,
}

impl Fixture {
    fn new(tag: &str) -> Fixture {
        let base = std::env::temp_dir().join(unique(&format!("warren-rootfs-{tag}")));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(&base).unwrap();
        std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o755)).unwrap();
        let root = base.join("root");
        let o = Command::new("cp")
            .arg("-a")
            .arg(common::busybox_root())
            .arg(&root)
            .output()
            .unwrap();
        assert!(o.status.success(), "{o:?}");
        Fixture {
            state: PathBuf::from(format!("/run/{}", unique("warren-rootfs-state"))),
            base,
            root,
        }
    }

    fn warren(&self, args: &[&str]) -> Output {
        common::warren()
            .env("WARREN_STATE_DIR", &self.state)
            .args(args)
            .output()
            .unwrap()
    }

    fn root(&self) -> &str {
        self.root.to_str().unwrap()
    }

    /// Launches `/bin/true` from the root; returns the record's `image`.
    fn launch(&self) -> Value {
        let o = self.warren(&["run", "--rootfs", self.root(), "--", "/bin/true"]);
        assert_code(&o, 0);
        last_image(&self.state)
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        for _ in 0..3 {
            let _ = rustix::mount::unmount(&self.root, rustix::mount::UnmountFlags::DETACH);
        }
        let _ = std::fs::remove_dir_all(&self.base);
        let _ = std::fs::remove_dir_all(&self.state);
    }
}

/// The `image` of the last record in a state directory's event log.
fn last_image(state: &Path) -> Value {
    let log = std::fs::read_to_string(state.join("attest/events.jsonl")).unwrap();
    let rec: Value = serde_json::from_str(log.lines().last().unwrap()).unwrap();
    rec["content"]["image"].clone()
}

#[test]
fn a_sealed_root_is_recorded_from_its_seal_and_a_lifted_one_is_walked_again() {
    let f = Fixture::new("seal");
    let walked = f.launch();
    assert_eq!(walked["digest_source"], "walk", "{walked}");
    assert_eq!(walked["format"], "warren-tree/2");

    let o = f.warren(&["rootfs", "seal", "--json", f.root()]);
    assert_code(&o, 0);
    let seal: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(
        seal["digest"], walked["digest"],
        "the seal is the walk's digest"
    );
    let o = f.warren(&["rootfs", "status", "--json", f.root()]);
    assert_code(&o, 0);
    assert_eq!(
        serde_json::from_str::<Value>(&stdout(&o)).unwrap()["state"],
        "holds"
    );

    let sealed = f.launch();
    assert_eq!(sealed["digest_source"], "seal", "{sealed}");
    assert_eq!(sealed["digest"], walked["digest"]);
    // Nothing can be written into it, root included.
    assert!(std::fs::write(f.root.join("etc/passwd"), "x").is_err());
    // The same root named relatively (`./root` from its parent becomes `<cwd>/./root`) is
    // found sealed too, not walked.
    let o = common::warren()
        .env("WARREN_STATE_DIR", &f.state)
        .current_dir(&f.base)
        .args(["run", "--rootfs", "./root", "--", "/bin/true"])
        .output()
        .unwrap();
    assert_code(&o, 0);
    let relative = last_image(&f.state);
    assert_eq!(relative["digest_source"], "seal", "{relative}");
    assert_eq!(relative["digest"], walked["digest"]);

    // Lifted (unsealed), changed: the next launch walks and records the change.
    assert_code(&f.warren(&["rootfs", "unseal", f.root()]), 0);
    assert_code(&f.warren(&["rootfs", "status", f.root()]), 1);
    std::fs::write(f.root.join("etc/passwd"), "root:x:0:0::/:/bin/sh\n").unwrap();
    let changed = f.launch();
    assert_eq!(changed["digest_source"], "walk");
    assert_ne!(
        changed["digest"], walked["digest"],
        "the change is measured"
    );
}

#[test]
fn a_seal_lifted_behind_warrens_back_is_noticed() {
    let f = Fixture::new("lifted");
    assert_code(&f.warren(&["rootfs", "seal", f.root()]), 0);
    let sealed = f.launch();
    assert_eq!(sealed["digest_source"], "seal");
    // Root unmounts it by hand and changes a file; the seal file is still there.
    rustix::mount::unmount(&f.root, rustix::mount::UnmountFlags::empty()).unwrap();
    std::fs::write(f.root.join("etc/group"), "root:x:0:\nwheel:x:10:\n").unwrap();
    let o = f.warren(&["rootfs", "status", "--json", f.root()]);
    assert_code(&o, 1);
    assert_eq!(
        serde_json::from_str::<Value>(&stdout(&o)).unwrap()["state"],
        "broken"
    );
    let after = f.launch();
    assert_eq!(after["digest_source"], "walk");
    assert_ne!(after["digest"], sealed["digest"]);
}

#[test]
fn bad_seal_requests_fail_clearly_and_leave_nothing() {
    let f = Fixture::new("bad");
    let missing = f.base.join("missing");
    let o = f.warren(&["rootfs", "seal", missing.to_str().unwrap()]);
    assert_code(&o, 125);
    assert!(stderr(&o).contains("missing"), "{}", stderr(&o));
    let o = f.warren(&["rootfs", "unseal", f.root()]);
    assert_code(&o, 125);
    assert!(stderr(&o).contains("is not sealed"), "{}", stderr(&o));
    let o = f.warren(&["rootfs", "seal", "/"]);
    assert_code(&o, 125);
    assert!(stderr(&o).contains("cannot seal /"), "{}", stderr(&o));
    // A root under a directory others may write.
    std::fs::set_permissions(&f.base, std::fs::Permissions::from_mode(0o777)).unwrap();
    let o = f.warren(&["rootfs", "seal", f.root()]);
    assert_code(&o, 125);
    assert!(
        stderr(&o).contains("users other than root"),
        "{}",
        stderr(&o)
    );
    // Nothing was mounted: the root is still writable, and not sealed.
    std::fs::write(f.root.join("etc/x"), "x").unwrap();
    assert_code(&f.warren(&["rootfs", "status", f.root()]), 1);
}

/// `warren run --rootfs / -- /bin/true`, as on a host, in a mount namespace whose `/` is a small
/// tree with `/proc`, `/sys` and a tmpfs mounted in it (the host's own `/` is far too large to
/// hash in a test): it works, is measured, and the digest is that of the tree alone.
#[test]
fn rootfs_slash_is_measured_without_entering_proc_sys_or_other_mounts() {
    let f = Fixture::new("slash");
    let m = &f.root;
    for d in ["sys", "run", "old", "tmp"] {
        std::fs::create_dir_all(m.join(d)).unwrap();
    }
    let bin = Path::new(env!("CARGO_BIN_EXE_warren"));
    std::fs::copy(bin, m.join("bin/warren")).unwrap();
    let script = format!(
        r#"set -e
M={m}
mount --bind "$M" "$M"
mount -t proc proc "$M/proc"
mount -t sysfs sysfs "$M/sys"
mount --rbind /dev "$M/dev"
mount -t tmpfs tmpfs "$M/run"
cd "$M"
pivot_root . old
umount -l /old
# The state and data directories are on the tmpfs (another mount: not part of the measured
# tree; the default data directory, /var/lib/warren, would be created inside it); the record is
# copied to /tmp, whose contents the walk does not enter either.
/bin/warren --state-dir /run/warren --data-dir /run/warren-data run --name {name} --allow-missing cgroup --rootfs / -- /bin/true
cp /run/warren/attest/events.jsonl /tmp/events.jsonl
"#,
        m = m.display(),
        name = unique("slash"),
    );
    let o = Command::new("unshare")
        .args([
            "--mount",
            "--propagation",
            "private",
            "/bin/sh",
            "-c",
            &script,
        ])
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let log = std::fs::read_to_string(m.join("tmp/events.jsonl")).unwrap();
    let rec: Value = serde_json::from_str(log.lines().last().unwrap()).unwrap();
    let image = &rec["content"]["image"];
    assert_eq!(image["kind"], "rootfs");
    assert_eq!(image["digest_source"], "walk");
    // The namespace is gone: its mounts too. The tree alone gives the recorded digest.
    let here = warren_attest::measure::tree_digest(m).unwrap();
    assert_eq!(image["digest"], here.digest.as_str(), "{image}");
    // Positive control: a file in the tree itself does change it.
    std::fs::write(m.join("etc/extra"), "x").unwrap();
    assert_ne!(
        warren_attest::measure::tree_digest(m).unwrap().digest,
        here.digest
    );
}
