//! Named volumes (issue 15, storage): `warren volume create|ls|inspect|rm` through the real
//! binary as root, each with the input it must refuse; volumes live in the data directory and
//! are found again after the state directory is emptied (as a reboot empties a tmpfs `/run`);
//! a volume someone holds is not removed (positive control: the same `rm` succeeds once the
//! holder is gone).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{assert_code, stderr, stdout, unique, warren};

/// A private state directory under /run and a data directory on disk, removed at the end.
struct Dirs {
    state: PathBuf,
    data: tempfile::TempDir,
}

impl Dirs {
    fn new(tag: &str) -> Dirs {
        common::sweep_stale_runs("warren-vol-");
        Dirs {
            state: PathBuf::from(format!("/run/warren-vol-{}", unique(tag))),
            data: tempfile::Builder::new()
                .prefix("warren-vol-data-")
                .tempdir_in("/var/tmp")
                .unwrap(),
        }
    }

    fn warren(&self) -> Command {
        let mut c = warren();
        c.env("WARREN_STATE_DIR", &self.state)
            .env("WARREN_DATA_DIR", self.data.path());
        c
    }

    fn volume(&self, args: &[&str]) -> Output {
        self.warren().arg("volume").args(args).output().unwrap()
    }

    fn vol_dir(&self, name: &str) -> PathBuf {
        self.data.path().join("volumes").join(name)
    }

    /// What `volumes/` holds, hidden entries included (nothing half-made may stay).
    fn entries(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.data.path().join("volumes"))
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }
}

impl Drop for Dirs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.state);
    }
}

fn refused(o: &Output, needle: &str) {
    assert_code(o, 125);
    assert!(
        stderr(o).contains(needle),
        "wanted {needle:?} in: {}",
        stderr(o)
    );
}

#[test]
fn volumes_are_created_listed_inspected_and_survive_an_emptied_state_directory() {
    let d = Dirs::new("life");
    assert_code(&d.volume(&["create", "plain"]), 0);
    let o = d.volume(&["create", "--size", "32M", "--json", "limited"]);
    assert_code(&o, 0);
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(v["kind"], "ext4_image");
    assert_eq!(v["size_limit"], 32 << 20);
    assert_eq!(v["version"], 1);

    // The limit is a real ext4 file system of that size, sparse on the host.
    let img = d.vol_dir("limited").join("image.ext4");
    let meta = std::fs::metadata(&img).unwrap();
    assert_eq!(meta.len(), 32 << 20);
    assert!(
        std::os::unix::fs::MetadataExt::blocks(&meta) * 512 < 16 << 20,
        "the image is sparse"
    );
    let dumpe2fs = Command::new("dumpe2fs")
        .arg("-h")
        .arg(&img)
        .output()
        .unwrap();
    assert!(dumpe2fs.status.success(), "{}", stderr(&dumpe2fs));
    assert!(stdout(&dumpe2fs).contains("warren-vol"));
    assert!(d.vol_dir("plain").join("data").is_dir());
    assert!(!d.vol_dir("plain").join("image.ext4").exists());

    // A file written into the volume stays with it.
    std::fs::write(d.vol_dir("plain").join("data/kept"), "kept").unwrap();

    // A reboot empties /run: the volumes are found again.
    std::fs::remove_dir_all(&d.state).unwrap();
    let o = d.volume(&["ls", "-q"]);
    assert_code(&o, 0);
    assert_eq!(stdout(&o), "limited\nplain\n");
    let o = d.volume(&["ls", "--json"]);
    let lines: Vec<serde_json::Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[1]["name"], "plain");
    assert_eq!(lines[1]["kind"], "directory");
    assert_eq!(lines[1]["size_limit"], serde_json::Value::Null);
    assert_eq!(lines[1]["in_use"], false);
    let o = d.volume(&["inspect", "plain"]);
    assert_code(&o, 0);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(
        Path::new(v["path"].as_str().unwrap()),
        d.vol_dir("plain").as_path()
    );
    assert_eq!(
        std::fs::read_to_string(d.vol_dir("plain").join("data/kept")).unwrap(),
        "kept"
    );
    let o = d.volume(&["ls"]);
    assert!(stdout(&o).starts_with("NAME"), "{}", stdout(&o));
    assert!(stdout(&o).contains("32M"), "{}", stdout(&o));
}

#[test]
fn bad_volume_input_is_refused_by_name_and_leaves_nothing_behind() {
    let d = Dirs::new("bad");
    assert_code(&d.volume(&["create", "one"]), 0);
    refused(&d.volume(&["create", "one"]), "volume one already exists");
    refused(&d.volume(&["create", "a/b"]), "invalid volume name \"a/b\"");
    refused(&d.volume(&["create", ".."]), "invalid volume name");
    refused(&d.volume(&["create", "_x"]), "invalid volume name");
    refused(
        &d.volume(&["create", &"x".repeat(65)]),
        "invalid volume name",
    );
    refused(
        &d.volume(&["create", "--size", "1M", "small"]),
        "below the smallest volume size, 16M",
    );
    refused(
        &d.volume(&["create", "--size", "lots", "bad"]),
        "invalid --size",
    );
    refused(
        &d.volume(&["create", "--size", "1000T", "huge"]),
        "larger than the data directory's whole file system",
    );
    assert_eq!(d.entries(), ["one"], "nothing half-made stays");
    refused(
        &d.volume(&["inspect", "missing"]),
        "no such volume: missing",
    );
    let o = d.volume(&["rm", "missing"]);
    assert_code(&o, 1);
    assert!(
        stderr(&o).contains("no such volume: missing"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn a_volume_in_use_is_not_removed() {
    let d = Dirs::new("rm");
    assert_code(&d.volume(&["create", "held"]), 0);
    assert_code(&d.volume(&["create", "--size", "16M", "free"]), 0);
    // A user holds the volume's lock shared, as an environment's launcher does.
    let lock = d.vol_dir("held").join("lock");
    let mut holder = Command::new("flock")
        .args(["-s", "-o"])
        .arg(&lock)
        .args(["sleep", "30"])
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let v: serde_json::Value =
            serde_json::from_str(&stdout(&d.volume(&["inspect", "held"]))).unwrap();
        if v["in_use"] == true {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "flock never took the lock"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let o = d.volume(&["rm", "held", "free"]);
    assert_code(&o, 1);
    assert!(
        stderr(&o).contains("cannot remove volume held: volume held is in use"),
        "{}",
        stderr(&o)
    );
    assert_eq!(stdout(&o), "free\n", "the free one is removed");
    assert!(d.vol_dir("held").join("volume.json").exists());
    // Positive control: once the holder is gone, the same rm succeeds.
    holder.kill().unwrap();
    holder.wait().unwrap();
    let o = d.volume(&["rm", "held"]);
    assert_code(&o, 0);
    assert_eq!(d.entries(), Vec::<String>::new());
}

/// A busybox root with the mount points `/mnt`, `/srv` and `/srv2` (the root is read-only, so
/// Warren creates no mount points in it), and a file `/etc/motd` (not a directory).
fn mount_root() -> &'static Path {
    static ROOT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    ROOT.get_or_init(|| {
        // Roots earlier runs of this suite left (their process is gone) are removed first.
        for e in std::fs::read_dir(std::env::temp_dir()).unwrap().flatten() {
            let file = e.file_name().to_string_lossy().into_owned();
            if let Some(pid) = file.strip_prefix("warren-vol-root-") {
                if !Path::new("/proc").join(pid).exists() {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
        let dir = std::env::temp_dir().join(format!("warren-vol-root-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let cp = Command::new("cp")
            .arg("-a")
            .arg(common::busybox_root())
            .arg(&dir)
            .status()
            .unwrap();
        assert!(cp.success());
        for d in ["mnt", "srv", "srv2"] {
            std::fs::create_dir_all(dir.join(d)).unwrap();
        }
        // `/seed`: a directory with content, owners and modes for copy-up to carry over.
        let seed = dir.join("seed");
        std::fs::create_dir_all(seed.join("sub")).unwrap();
        std::fs::write(seed.join("conf"), "seeded\n").unwrap();
        std::os::unix::fs::symlink("/etc/motd", seed.join("link")).unwrap();
        std::os::unix::fs::chown(seed.join("conf"), Some(1234), Some(1235)).unwrap();
        std::os::unix::fs::chown(seed.join("sub"), Some(1234), Some(1234)).unwrap();
        std::os::unix::fs::chown(&seed, Some(70), Some(71)).unwrap();
        let chmod = Command::new("chmod")
            .args(["0751"])
            .arg(&seed)
            .status()
            .unwrap();
        assert!(chmod.success());
        std::fs::write(dir.join("etc/motd"), "hello\n").unwrap();
        dir
    })
}

impl Dirs {
    fn run(&self, name: &str, extra: &[&str], script: &str) -> Output {
        self.warren()
            .args(["run", "--name", &unique(name), "--rootfs"])
            .arg(mount_root())
            .args(extra)
            .args(["--", "sh", "-c", script])
            .output()
            .unwrap()
    }
}

#[test]
fn volumes_and_binds_are_mounted_idmapped_and_outlive_the_environment() {
    let d = Dirs::new("mnt");
    assert_code(&d.volume(&["create", "store"]), 0);
    let host = tempfile::Builder::new()
        .prefix("warren-vol-bind-")
        .tempdir_in("/var/tmp")
        .unwrap();
    std::fs::write(host.path().join("from-host"), "host data\n").unwrap();
    let ro = tempfile::Builder::new()
        .prefix("warren-vol-ro-")
        .tempdir_in("/var/tmp")
        .unwrap();
    std::fs::write(ro.path().join("f"), "read only\n").unwrap();
    let bind = format!("{}:/srv", host.path().display());
    let ro_bind = format!("type=bind,src={},dst=/srv2,ro", ro.path().display());

    // Root inside writes to the volume and the bind; a read-only bind refuses writes.
    let o = d.run(
        "mnt",
        &[
            "-v",
            "store:/mnt",
            "-v",
            &bind,
            "--mount",
            &ro_bind,
            "--json",
        ],
        "echo one > /mnt/by-root && cat /srv/from-host && echo back > /srv/from-env && \
         cat /srv2/f && if echo x > /srv2/g; then echo WROTE-RO; fi; \
         if echo x > /etc/new; then echo WROTE-ROOT; fi",
    );
    assert_code(&o, 0);
    let out = stdout(&o);
    assert!(out.contains("host data"), "{out}");
    assert!(out.contains("read only"), "{out}");
    assert!(
        !out.contains("WROTE-RO"),
        "a read-only bind took a write: {out}"
    );
    assert!(!out.contains("WROTE-ROOT"), "the root took a write: {out}");
    assert!(
        stderr(&o).contains("Read-only file system"),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        std::fs::read_to_string(host.path().join("from-env")).unwrap(),
        "back\n"
    );
    assert!(!ro.path().join("g").exists());

    // The launch record names the mounts (identity and mode), not their contents.
    let last: serde_json::Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    let mounts = &last["applied"]["mounts"];
    assert_eq!(mounts.as_array().unwrap().len(), 3, "{mounts}");
    assert_eq!(mounts[0]["kind"], "volume");
    assert_eq!(mounts[0]["source"], "store");
    assert_eq!(mounts[0]["dest"], "/mnt");
    assert_eq!(mounts[0]["read_only"], false);
    assert_eq!(mounts[1]["kind"], "bind");
    assert_eq!(mounts[2]["read_only"], true);
    // The measured launch record carries them too (inside `config`, so `config_digest` pins
    // them); a launch without mounts has no `mounts` key at all.
    let log = std::fs::read_to_string(d.data.path().join("attest/events.jsonl")).unwrap();
    let rec: serde_json::Value = serde_json::from_str(log.lines().last().unwrap()).unwrap();
    let measured = &rec["content"]["config"]["mounts"];
    assert_eq!(
        measured[0],
        serde_json::json!({"kind": "volume", "source": "store", "dest": "/mnt", "read_only": false})
    );
    assert_eq!(
        Path::new(measured[1]["source"].as_str().unwrap()),
        std::fs::canonicalize(host.path()).unwrap()
    );
    assert_eq!(measured[2]["read_only"], true);

    // Idmapped: uid N inside is uid N on the volume's disk, whatever the host range; a
    // non-root user writes as itself.
    let data = d.vol_dir("store").join("data");
    let owner = |p: &Path| {
        let m = std::fs::metadata(p).unwrap();
        (
            std::os::unix::fs::MetadataExt::uid(&m),
            std::os::unix::fs::MetadataExt::gid(&m),
        )
    };
    assert_eq!(owner(&data.join("by-root")), (0, 0));
    std::fs::create_dir(data.join("shared")).unwrap();
    let chmod = Command::new("chmod")
        .arg("1777")
        .arg(data.join("shared"))
        .status()
        .unwrap();
    assert!(chmod.success());
    let o = d.run(
        "user",
        &["-v", "store:/mnt", "--user", "1000:1000"],
        "id -u && echo two > /mnt/shared/by-user && ls -ln /mnt/by-root",
    );
    assert_code(&o, 0);
    assert!(stdout(&o).starts_with("1000\n"), "{}", stdout(&o));
    assert_eq!(owner(&data.join("shared/by-user")), (1000, 1000));
    // Negative: that user cannot write where root inside owns the directory.
    let o = d.run(
        "user",
        &["-v", "store:/mnt", "--user", "1000:1000"],
        "echo x > /mnt/not-mine",
    );
    assert_ne!(o.status.code(), Some(0));
    assert!(stderr(&o).contains("Permission denied"), "{}", stderr(&o));

    // A new environment on the same volume reads what the first wrote.
    let o = d.run(
        "again",
        &["-v", "store:/mnt:ro"],
        "cat /mnt/by-root /mnt/shared/by-user",
    );
    assert_code(&o, 0);
    assert_eq!(stdout(&o), "one\ntwo\n");
}

#[test]
fn a_volume_is_not_removed_while_an_environment_uses_it() {
    let d = Dirs::new("busy");
    assert_code(&d.volume(&["create", "busy"]), 0);
    let name = unique("busy");
    let root = mount_root().to_str().unwrap().to_owned();
    // The state directory links its data directory, so `Background` (told only the state
    // directory) finds the volume.
    let bg = common::Background::start_in(
        Some(&d.state),
        &name,
        &["--rootfs", &root, "-v", "busy:/mnt", "--", "sleep", "30"],
    );
    let o = d.volume(&["rm", "busy"]);
    assert_code(&o, 1);
    assert!(
        stderr(&o).contains("volume busy is in use"),
        "{}",
        stderr(&o)
    );
    let v: serde_json::Value =
        serde_json::from_str(&stdout(&d.volume(&["inspect", "busy"]))).unwrap();
    assert_eq!(v["in_use"], true);
    bg.stop();
    // Positive control: once the environment has ended, the same rm succeeds.
    assert_code(&d.volume(&["rm", "busy"]), 0);
}

#[test]
fn bad_mounts_are_refused_by_name_before_anything_starts() {
    let d = Dirs::new("badmnt");
    assert_code(&d.volume(&["create", "ok"]), 0);
    assert_code(&d.volume(&["create", "--size", "16M", "sized"]), 0);
    let host = tempfile::tempdir_in("/var/tmp").unwrap();
    let h = host.path().display().to_string();
    let state_sub = d.state.display().to_string();
    let data_sub = d.data.path().display().to_string();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["-v".into(), "missing:/mnt".into()],
            "no such volume: missing",
        ),
        (
            vec!["-v".into(), "ok:mnt".into()],
            "is not an absolute path",
        ),
        (
            vec!["-v".into(), "ok:/mnt/../etc".into()],
            "climbs out with '..'",
        ),
        (vec!["-v".into(), "ok:/proc/sys".into()], "under /proc"),
        (vec!["-v".into(), "ok:/".into()], "the root itself"),
        (
            vec!["-v".into(), "a/b:/mnt".into()],
            "volume name or an absolute host path",
        ),
        (vec!["-v".into(), format!("{h}/nope:/mnt")], "bind source"),
        (vec!["-v".into(), "/proc/self:/mnt".into()], "under /proc"),
        (vec!["-v".into(), "/:/mnt".into()], "the host's whole tree"),
        (
            vec!["-v".into(), format!("{state_sub}:/mnt")],
            "overlaps Warren's state directory",
        ),
        (
            vec!["-v".into(), format!("{data_sub}:/mnt")],
            "overlaps Warren's data directory",
        ),
        (vec!["-v".into(), format!("{h}/../..:/mnt")], "climbs out"),
        (vec!["-v".into(), "ok:/mnt:rx".into()], "unknown mode"),
        (
            vec![
                "-v".into(),
                "ok:/mnt".into(),
                "-v".into(),
                format!("{h}:/mnt"),
            ],
            "two mounts on /mnt",
        ),
        (
            vec!["--mount".into(), "type=tmpfs,dst=/mnt".into()],
            "unknown type",
        ),
        (
            vec!["--mount".into(), "type=volume,src=ok".into()],
            "dst= is missing",
        ),
        (
            vec!["-v".into(), "/srv:/mnt:nocopy".into()],
            "applies to a volume",
        ),
        (
            vec!["-v".into(), "sized:/nowhere".into()],
            "mount point /nowhere",
        ),
        (
            vec!["-v".into(), "ok:/nowhere".into()],
            "mount point /nowhere",
        ),
        (
            vec!["-v".into(), "ok:/etc/motd".into()],
            "is not a directory",
        ),
    ];
    for (args, why) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = d.run("bad", &args, "echo RAN");
        assert_code(&o, 125);
        assert!(
            stderr(&o).contains(why),
            "{args:?}: wanted {why:?} in {}",
            stderr(&o)
        );
        assert!(!stdout(&o).contains("RAN"), "{args:?} ran");
    }
    // Positive control: the same root and volume, well formed, run.
    let o = d.run("good", &["-v", "ok:/mnt"], "echo RAN");
    assert_code(&o, 0);
    assert_eq!(stdout(&o), "RAN\n");
    // Nothing was left locked or half-made: the volumes are free, and the size-limited one,
    // refused after its file system was mounted, left no loop device behind.
    no_loop_device(&d.vol_dir("sized").join("image.ext4"));
    assert_code(&d.volume(&["rm", "ok"]), 0);
    assert_code(&d.volume(&["rm", "sized"]), 0);
}

/// The loop devices backing `image` (`losetup -j`).
fn loop_devices(image: &Path) -> String {
    let o = Command::new("losetup")
        .arg("-j")
        .arg(image)
        .output()
        .unwrap();
    assert!(o.status.success(), "losetup: {}", stderr(&o));
    stdout(&o)
}

/// No loop device backs `image` and no mount of it is in this mount namespace; the loop
/// device's autoclear runs when the file system's last mount has gone, which the kernel may
/// finish a moment after the launcher exits, so this waits up to 5 s.
fn no_loop_device(image: &Path) {
    let t = std::time::Instant::now();
    while !loop_devices(image).is_empty() && t.elapsed() < std::time::Duration::from_secs(5) {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(
        loop_devices(image),
        "",
        "a loop device still backs {}",
        image.display()
    );
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.lines().any(|l| l.contains("warren-vol-data-")),
        "a mount of the data directory was left: {mounts}"
    );
}

#[test]
fn a_size_limited_volume_is_mounted_holds_its_limit_persists_and_leaves_no_loop_device() {
    let d = Dirs::new("sized");
    assert_code(&d.volume(&["create", "--size", "20M", "lim"]), 0);
    let image = d.vol_dir("lim").join("image.ext4");
    // Within the limit a write succeeds; past it the file system is full.
    let o = d.run(
        "lim",
        &["-v", "lim:/mnt"],
        "echo one > /mnt/kept && \
         dd if=/dev/zero of=/mnt/small bs=1024 count=4096 2>/dev/null && echo SMALL-OK; \
         dd if=/dev/zero of=/mnt/big bs=1024 count=40960 2>&1; rm /mnt/big; \
         stat -c '%u %g' /mnt/small",
    );
    assert_code(&o, 0);
    let out = stdout(&o);
    assert!(out.contains("SMALL-OK"), "{out}");
    assert!(out.contains("No space left on device"), "{out}");
    assert!(out.ends_with("0 0\n"), "{out}");
    no_loop_device(&image);
    // The image file never grows past its size.
    assert_eq!(std::fs::metadata(&image).unwrap().len(), 20 << 20);
    // A new environment finds the data.
    let o = d.run("lim2", &["-v", "lim:/srv:ro"], "cat /srv/kept");
    assert_code(&o, 0);
    assert_eq!(stdout(&o), "one\n");
    no_loop_device(&image);

    // One environment at a time: a second one is refused while the first holds it ...
    let name = unique("limbg");
    let root = mount_root().to_str().unwrap().to_owned();
    let bg = common::Background::start_in(
        Some(&d.state),
        &name,
        &["--rootfs", &root, "-v", "lim:/mnt", "--", "sleep", "30"],
    );
    let o = d.run("lim3", &["-v", "lim:/mnt"], "echo RAN");
    assert_code(&o, 125);
    assert!(
        stderr(&o).contains("volume lim is in use by another environment"),
        "{}",
        stderr(&o)
    );
    assert_eq!(loop_devices(&image).lines().count(), 1);
    bg.stop();
    no_loop_device(&image);
    // ... and accepted once it has gone (positive control).
    let o = d.run("lim4", &["-v", "lim:/mnt"], "cat /mnt/kept");
    assert_code(&o, 0);
    assert_eq!(stdout(&o), "one\n");
    no_loop_device(&image);
    // A launch that fails at any step, with the volume mounted and a writable root, leaves no
    // loop device, no mount and no lock behind (the next launch takes the volume).
    for step in common::plain_launch_steps() {
        let o = d
            .warren()
            .env("WARREN_FAULT_INJECT", step)
            .args(["run", "--name", &unique("limfault"), "--rootfs"])
            .arg(mount_root())
            .args(["--writable-root", "-v", "lim:/mnt", "--", "/bin/true"])
            .output()
            .unwrap();
        assert_ne!(o.status.code(), Some(0), "{step}");
        no_loop_device(&image);
    }
    let o = d.run(
        "lim5",
        &["-v", "lim:/mnt", "--writable-root"],
        "cat /mnt/kept",
    );
    assert_code(&o, 0);
    assert_eq!(stdout(&o), "one\n");
    no_loop_device(&image);
    assert_code(&d.volume(&["rm", "lim"]), 0);
}

/// `stat -c '%u %g %a %n'` of the copied tree, as the environment sees it.
const STAT_SEED: &str = "cd /seed && stat -c '%u %g %a %n' . conf sub && cat conf && readlink link";

#[test]
fn an_empty_volume_is_filled_from_the_root_on_first_use_unless_nocopy() {
    let d = Dirs::new("copy");
    let want = "70 71 751 .\n1234 1235 644 conf\n1234 1234 755 sub\nseeded\n/etc/motd\n";
    for (vol, size) in [("plain", None), ("sized", Some("16M"))] {
        let mut args = vec!["create"];
        args.extend(size.map(|s| ["--size", s]).into_iter().flatten());
        args.push(vol);
        assert_code(&d.volume(&args), 0);
        let spec = format!("{vol}:/seed");
        let o = d.run("copy", &["-v", &spec], STAT_SEED);
        assert_code(&o, 0);
        assert_eq!(stdout(&o), want, "{vol}: {}", stderr(&o));
        // Owners on disk are the root's numbers (the mount is idmapped).
        if size.is_none() {
            let data = d.vol_dir(vol).join("data");
            let m = std::fs::metadata(data.join("conf")).unwrap();
            use std::os::unix::fs::MetadataExt;
            assert_eq!((m.uid(), m.gid(), m.mode() & 0o7777), (1234, 1235, 0o644));
            let m = std::fs::metadata(&data).unwrap();
            assert_eq!((m.uid(), m.gid(), m.mode() & 0o7777), (70, 71, 0o751));
        }
    }
    // A volume that is not empty is never filled: what the environment changed stays.
    // (`/seed` is 0751 and owned by 70: its owner changes it.)
    let o = d.run(
        "copy",
        &["-v", "plain:/seed", "--user", "70:71"],
        "echo changed > /seed/new && rm /seed/conf",
    );
    assert_code(&o, 0);
    let o = d.run(
        "copy",
        &["-v", "plain:/seed", "--user", "70:71"],
        "ls /seed",
    );
    assert_code(&o, 0);
    assert_eq!(stdout(&o), "link\nnew\nsub\n");
    // nocopy (and --mount's volume-nocopy) leaves a fresh volume empty.
    assert_code(&d.volume(&["create", "bare"]), 0);
    assert_code(&d.volume(&["create", "bare2"]), 0);
    let o = d.run(
        "nocopy",
        &[
            "-v",
            "bare:/seed:nocopy",
            "--mount",
            "type=volume,src=bare2,dst=/srv,volume-nocopy",
        ],
        "ls -A /seed /srv; stat -c '%u' /seed",
    );
    assert_code(&o, 0);
    assert_eq!(stdout(&o), "/seed:\n\n/srv:\n0\n");
    // --owner: the top directory belongs to that id inside, and copy-up keeps it.
    for sized in [false, true] {
        let name = format!("own{sized}");
        let mut args = vec!["create", "--owner", "1000:1001"];
        if sized {
            args.extend(["--size", "16M"]);
        }
        args.push(&name);
        assert_code(&d.volume(&args), 0);
        let spec = format!("{name}:/seed");
        let o = d.run(
            "own",
            &["-v", &spec, "--user", "1000:1001"],
            "stat -c '%u %g %a' /seed && cat /seed/conf && echo mine > /seed/new && cat /seed/new",
        );
        assert_code(&o, 0);
        assert_eq!(
            stdout(&o),
            "1000 1001 751\nseeded\nmine\n",
            "{}",
            stderr(&o)
        );
    }
    for (bad, why) in [
        ("70000:0", "uid 70000 is out of range"),
        ("postgres:1", "is not a number"),
        ("5", "expected UID:GID"),
    ] {
        let o = d.volume(&["create", "--owner", bad, "badowner"]);
        refused(&o, why);
        assert!(!d.vol_dir("badowner").exists());
    }
    // A mount point that is not a directory of the root copies nothing (binary roots, ...).
    assert!(
        std::fs::read_dir(d.vol_dir("bare").join("data"))
            .unwrap()
            .next()
            .is_none()
    );
}

#[test]
fn a_writable_root_takes_writes_in_memory_and_leaves_the_root_unchanged() {
    let d = Dirs::new("wroot");
    let script = "echo new > /etc/new && cat /etc/new && rm /etc/motd && \
                  if [ -e /etc/motd ]; then echo MOTD-LEFT; fi; \
                  dd if=/dev/zero of=/etc/big bs=1024 count=8192 2>&1 | grep -o 'No space left'";
    // Positive control: the root is read-only by default.
    let o = d.run("wroot", &[], script);
    assert_ne!(o.status.code(), Some(0));
    assert!(
        stderr(&o).contains("can't create /etc/new: Read-only file system"),
        "{}",
        stderr(&o)
    );
    let o = d.run(
        "wroot",
        &["--writable-root", "--writable-root-size", "4M", "--json"],
        script,
    );
    assert_code(&o, 0);
    let out = stdout(&o);
    assert!(out.starts_with("new\nNo space left\n"), "{out}");
    // The record says so; the measured root is the read-only lower layer, the same digest as
    // a read-only launch of the same root.
    let last: serde_json::Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert_eq!(last["applied"]["writable_root"], 4 << 20);
    assert_eq!(last["applied"]["root"]["read_only"], false);
    let log = std::fs::read_to_string(d.data.path().join("attest/events.jsonl")).unwrap();
    let recs: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let (ro, rw) = (&recs[recs.len() - 2], &recs[recs.len() - 1]);
    assert_eq!(rw["content"]["config"]["writable_root"], 4 << 20);
    assert!(ro["content"]["config"].get("writable_root").is_none());
    assert_eq!(
        rw["content"]["image"]["digest"],
        ro["content"]["image"]["digest"]
    );
    // Nothing reached the root on disk, and the next environment starts from it again.
    assert!(!mount_root().join("etc/new").exists());
    assert!(mount_root().join("etc/motd").exists());
    let o = d.run(
        "wroot",
        &["--writable-root"],
        "cat /etc/motd; ls /etc/new 2>&1",
    );
    assert_code(&o, 1);
    assert!(stdout(&o).starts_with("hello\n"), "{}", stdout(&o));
    assert!(stdout(&o).contains("No such file"), "{}", stdout(&o));
    // Bad input is refused by name before anything starts.
    for (args, why) in [
        (
            vec!["--writable-root-size", "8M"],
            "--writable-root-size needs --writable-root",
        ),
        (
            vec!["--writable-root", "--writable-root-size", "lots"],
            "invalid --writable-root-size",
        ),
        (
            vec!["--writable-root", "--writable-root-size", "64K"],
            "writable_root_size 65536 is out of range: expected 1048576 to 1099511627776",
        ),
    ] {
        let o = d.run("wbad", &args, "echo RAN");
        refused(&o, why);
        assert!(!stdout(&o).contains("RAN"));
    }
    let o = d
        .warren()
        .args(["run", "--writable-root", "--rootfs", "/", "--", "/bin/true"])
        .output()
        .unwrap();
    refused(&o, "--writable-root over --rootfs / is refused");
    let o = d
        .warren()
        .args([
            "run",
            "--writable-root",
            "--binary",
            "/bin/true",
            "--",
            "/bin/true",
        ])
        .output()
        .unwrap();
    refused(&o, "--writable-root needs --rootfs or --image");
}
