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
