//! Sealed roots (`warren_attest::seal`): a seal gives the walk's digest, holds only while its
//! read-only mount does, and no change to a sealed root goes unnoticed: writes through the
//! mount fail (for root and for an unprivileged owner of a file alike), and once the mount is
//! lifted, remounted writable or the path replaced, launches walk the tree again and record
//! what is there now. Run as root (the seal mounts).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use warren_attest::measure::{DigestSource, tree_digest};
use warren_attest::seal::{SealState, check, root_digest, seal, unseal};

/// Lifts any mount left on the path, on drop (a failed assertion must not leave mounts).
struct Cleanup(PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for _ in 0..3 {
            let _ = rustix::mount::unmount(&self.0, rustix::mount::UnmountFlags::DETACH);
        }
    }
}

fn fixture() -> (tempfile::TempDir, PathBuf, PathBuf, Cleanup) {
    assert!(
        rustix::process::geteuid().is_root(),
        "sealing mounts: run these tests as root"
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let state = dir.path().join("state");
    let root = dir.path().join("root");
    for d in ["bin", "etc", "proc", "dev", "tmp", "home"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::write(root.join("bin/tool"), vec![3u8; 200 << 10]).unwrap();
    std::fs::write(root.join("etc/conf"), b"x = 1\n").unwrap();
    // A file an unprivileged user owns and may write.
    std::fs::write(root.join("home/notes"), b"mine\n").unwrap();
    std::os::unix::fs::chown(root.join("home/notes"), Some(65534), Some(65534)).unwrap();
    std::os::unix::fs::chown(root.join("home"), Some(65534), Some(65534)).unwrap();
    let cleanup = Cleanup(root.clone());
    (dir, state, root, cleanup)
}

fn as_nobody(script: &str) -> std::process::ExitStatus {
    use std::os::unix::process::CommandExt;
    Command::new("/bin/sh")
        .args(["-c", script])
        .uid(65534)
        .gid(65534)
        .status()
        .unwrap()
}

#[test]
fn a_seal_gives_the_walks_digest_and_a_launch_reuses_it() {
    let (_d, state, root, _c) = fixture();
    let walked = tree_digest(&root).unwrap();
    let unsealed = root_digest(&state, &root, None).unwrap();
    assert_eq!(unsealed.source, DigestSource::Walk);
    assert_eq!(unsealed.tree.digest, walked.digest);

    let s = seal(&state, &root).unwrap();
    assert_eq!(s.digest, walked.digest);
    assert!(matches!(check(&state, &root), SealState::Holds(_)));
    let sealed = root_digest(&state, &root, None).unwrap();
    assert_eq!(sealed.source, DigestSource::Seal);
    assert_eq!(sealed.tree.digest, walked.digest);
    // A store digest, when given, is used as it is.
    let stored = root_digest(&state, &root, Some("blake3:ab")).unwrap();
    assert_eq!(
        (stored.source, stored.tree.digest.as_str()),
        (DigestSource::Store, "blake3:ab")
    );
    // Sealing again re-measures through the same mount.
    assert_eq!(seal(&state, &root).unwrap().mount_id, s.mount_id);
    unseal(&state, &root).unwrap();
    assert_eq!(check(&state, &root), SealState::Unsealed);
}

#[test]
fn nobody_can_change_a_sealed_root() {
    let (_d, state, root, _c) = fixture();
    // Positive control: before the seal, the unprivileged owner can write their file, and
    // root can write anywhere.
    assert!(as_nobody(&format!("echo more >> {}/home/notes", root.display())).success());
    std::fs::write(root.join("etc/conf"), b"x = 2\n").unwrap();
    seal(&state, &root).unwrap();
    assert!(!as_nobody(&format!("echo more >> {}/home/notes", root.display())).success());
    assert!(!as_nobody(&format!("echo new > {}/home/new", root.display())).success());
    let err = std::fs::write(root.join("etc/conf"), b"x = 3\n").unwrap_err();
    assert_eq!(
        err.raw_os_error(),
        Some(rustix::io::Errno::ROFS.raw_os_error())
    );
    assert!(std::fs::remove_file(root.join("bin/tool")).is_err());
    assert_eq!(
        root_digest(&state, &root, None).unwrap().tree.digest,
        tree_digest(&root).unwrap().digest
    );
}

#[test]
fn a_lifted_seal_is_not_trusted_and_the_change_is_measured() {
    let (_d, state, root, _c) = fixture();
    let s = seal(&state, &root).unwrap();
    // Someone (root) lifts the mount and changes a file: the seal no longer holds and the
    // launch walks the tree and records the new digest.
    rustix::mount::unmount(&root, rustix::mount::UnmountFlags::empty()).unwrap();
    assert!(matches!(check(&state, &root), SealState::Broken(_)));
    let same = root_digest(&state, &root, None).unwrap();
    assert_eq!(same.source, DigestSource::Walk);
    assert_eq!(same.tree.digest, s.digest, "unchanged tree, same digest");
    std::fs::write(root.join("bin/tool"), vec![4u8; 200 << 10]).unwrap();
    let changed = root_digest(&state, &root, None).unwrap();
    assert_eq!(changed.source, DigestSource::Walk);
    assert_ne!(changed.tree.digest, s.digest, "the change is in the record");
    // Mounting a read-only bind there again (even of the same tree) is another mount.
    rustix::mount::mount_bind(&root, &root).unwrap();
    rustix::mount::mount_remount(
        &root,
        rustix::mount::MountFlags::BIND | rustix::mount::MountFlags::RDONLY,
        c"",
    )
    .unwrap();
    assert!(matches!(check(&state, &root), SealState::Broken(_)));
}

#[test]
fn a_seal_remounted_writable_is_not_trusted() {
    let (_d, state, root, _c) = fixture();
    seal(&state, &root).unwrap();
    rustix::mount::mount_remount(&root, rustix::mount::MountFlags::BIND, c"").unwrap();
    match check(&state, &root) {
        SealState::Broken(why) => assert!(why.contains("writable"), "{why}"),
        other => panic!("{other:?}"),
    }
    std::fs::write(root.join("etc/conf"), b"changed\n").unwrap();
    let d = root_digest(&state, &root, None).unwrap();
    assert_eq!(d.source, DigestSource::Walk);
    assert_eq!(d.tree.digest, tree_digest(&root).unwrap().digest);
}

#[test]
fn a_different_directory_at_the_sealed_path_is_walked() {
    let (d, state, root, _c) = fixture();
    let s = seal(&state, &root).unwrap();
    // The sealed mount moved away (root's doing; an unprivileged user cannot move mounts) and
    // another tree put at the path: it is measured, not taken for the sealed one.
    let elsewhere = d.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    let _c2 = Cleanup(elsewhere.clone());
    rustix::mount::mount_move(&root, &elsewhere).unwrap();
    std::fs::write(root.join("etc/conf"), b"other\n").unwrap();
    let got = root_digest(&state, &root, None).unwrap();
    assert_eq!(got.source, DigestSource::Walk);
    assert_ne!(got.tree.digest, s.digest);
}

#[test]
fn a_root_whose_parent_others_can_write_is_refused() {
    let (d, state, _root, _c) = fixture();
    let open = d.path().join("open");
    std::fs::create_dir_all(open.join("root")).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    let err = seal(&state, &open.join("root")).unwrap_err().to_string();
    assert!(err.contains("users other than root"), "{err}");
    // Nothing mounted, nothing recorded.
    assert_eq!(check(&state, &open.join("root")), SealState::Unsealed);
    let err = seal(&state, Path::new("/")).unwrap_err().to_string();
    assert!(err.contains("cannot seal /"), "{err}");
}
