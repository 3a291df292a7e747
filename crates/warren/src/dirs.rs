//! Where Warren keeps things: runtime state in the state directory (`/run/warren`: sockets,
//! locks, leases, records, logs; emptied by a reboot where `/run` is a tmpfs), persistent data
//! in the data directory (`/var/lib/warren`: images, volumes, attestation keys and event log,
//! the federation host key and journals). `docs/files.md` is the contract.
//!
//! Code that addresses persistent data through the state directory (the attestation crate and
//! the launcher's measurement use `<state>/attest`, the federation link `<state>/link`) keeps
//! working because those entries are relative symbolic links into the data directory, made by
//! [`Dirs::prepare`]; `<state>/data` is a link to the data directory itself, so a later
//! `warren` process on the same state directory (a launcher the kernel starts) finds the data
//! directory without being told. An older state directory's real `images`, `attest` and `link`
//! directories are moved into the data directory the first time.

use std::ffi::OsString;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};
use rustix::fs::{FlockOperation, Mode, OFlags};

/// The default state directory.
pub const DEFAULT_STATE_DIR: &str = "/run/warren";
/// The default data directory (for the default state directory).
pub const DEFAULT_DATA_DIR: &str = "/var/lib/warren";

/// Persistent subtrees other components address through the state directory; each becomes a
/// link `<state>/NAME -> data/NAME`.
const LINKED: [&str; 2] = ["attest", "link"];
/// Persistent subtrees addressed through the data directory itself, moved there from an older
/// state directory.
const MOVED: [&str; 1] = ["images"];

/// The state directory and the data directory of one invocation.
#[derive(Debug, Clone)]
pub struct Dirs {
    /// Runtime state.
    pub state: PathBuf,
    /// Persistent data.
    pub data: PathBuf,
}

impl Dirs {
    /// Work out the data directory: the one given (`--data-dir`, `WARREN_DATA_DIR`), else the
    /// one this state directory already links to, else `/var/lib/warren` for the default state
    /// directory and the state directory itself for any other (which keeps a private state
    /// directory, a test's or a second kernel's, self-contained).
    pub fn resolve(state: &Path, data: Option<&Path>) -> anyhow::Result<Dirs> {
        let state = absolute(state)?;
        let data = match data {
            Some(d) => absolute(d)?,
            None => match std::fs::read_link(state.join("data")) {
                Ok(target) => target,
                Err(_) if state == Path::new(DEFAULT_STATE_DIR) => DEFAULT_DATA_DIR.into(),
                Err(_) => state.clone(),
            },
        };
        Ok(Dirs { state, data })
    }

    /// Whether data and state share one directory (nothing to link or move).
    fn shared(&self) -> bool {
        self.data == self.state
    }

    /// The image store's parent directory (`warren_image::Store::new` takes it).
    pub fn images(&self) -> &Path {
        &self.data
    }

    /// Create both directories (mode 0700), move an older state directory's persistent data
    /// into the data directory, and make the links. Safe to run concurrently (a lock on the
    /// data directory) and repeatedly.
    pub fn prepare(&self) -> anyhow::Result<()> {
        if self.prepared() {
            return Ok(());
        }
        // Refused before anything is made: another data directory is not created, empty.
        if !self.shared() {
            if let Ok(t) = std::fs::read_link(self.state.join("data")) {
                if t != self.data {
                    self.link(&self.state.join("data"), self.data.as_os_str().to_owned())?;
                }
            }
        }
        let mut b = std::fs::DirBuilder::new();
        // The state directory is traversable, as the launcher keeps it (`StateDir::mount_point`).
        for (d, mode) in [(&self.state, 0o711), (&self.data, 0o700)] {
            b.recursive(true)
                .mode(mode)
                .create(d)
                .with_context(|| format!("cannot create {}", d.display()))?;
        }
        b.mode(0o700);
        if self.shared() {
            return Ok(());
        }
        let lock = rustix::fs::open(
            &self.data,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .with_context(|| format!("cannot open {}", self.data.display()))?;
        rustix::fs::flock(&lock, FlockOperation::LockExclusive)
            .with_context(|| format!("cannot lock {}", self.data.display()))?;
        self.link(&self.state.join("data"), self.data.as_os_str().to_owned())?;
        for name in MOVED.iter().chain(LINKED.iter()) {
            self.migrate(name)?;
        }
        for name in LINKED {
            b.create(self.data.join(name))
                .with_context(|| format!("cannot create {}", self.data.join(name).display()))?;
            self.link(&self.state.join(name), Path::new("data").join(name).into())?;
        }
        Ok(())
    }

    /// Whether [`Dirs::prepare`] has nothing to do: every link is in place and no older
    /// state directory's data is left to move. Checked first because every `warren run` calls
    /// `prepare`, and the full path (a lock on the data directory and a dozen system calls) is
    /// a measurable part of a launch; this is six `readlink`/`stat` calls.
    fn prepared(&self) -> bool {
        if self.shared() {
            return false;
        }
        let links = |at: &Path, target: &Path| std::fs::read_link(at).is_ok_and(|t| t == target);
        links(&self.state.join("data"), &self.data)
            && LINKED.iter().all(|name| {
                let at = self.state.join(name);
                links(&at, &Path::new("data").join(name))
                    && std::fs::metadata(&at).is_ok_and(|m| m.is_dir())
            })
            && MOVED
                .iter()
                .all(|name| std::fs::symlink_metadata(self.state.join(name)).is_err())
    }

    /// Make `at` a symbolic link to `target`, or check that it is one.
    fn link(&self, at: &Path, target: OsString) -> anyhow::Result<()> {
        match std::fs::read_link(at) {
            Ok(t) if t.as_os_str() == target => return Ok(()),
            Ok(t) => bail!(
                "{} points to {}, not {}: this state directory is used with another data \
                 directory (pass the same --data-dir, or remove the link when nothing runs)",
                at.display(),
                t.display(),
                Path::new(&target).display()
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(_) => bail!(
                "{} exists and is not a link to the data directory",
                at.display()
            ),
        }
        std::os::unix::fs::symlink(&target, at)
            .with_context(|| format!("cannot link {}", at.display()))
    }

    /// Move `<state>/NAME`, a real directory an older Warren left, to `<data>/NAME`.
    fn migrate(&self, name: &str) -> anyhow::Result<()> {
        let old = self.state.join(name);
        if !std::fs::symlink_metadata(&old).is_ok_and(|m| m.is_dir()) {
            return Ok(());
        }
        let new = self.data.join(name);
        if std::fs::symlink_metadata(&new).is_ok() {
            if dir_is_empty(&new) {
                std::fs::remove_dir(&new)
                    .with_context(|| format!("cannot remove the empty {}", new.display()))?;
            } else {
                bail!(
                    "both {} (from an older Warren) and {} exist: move or remove one of them",
                    old.display(),
                    new.display()
                );
            }
        }
        match std::fs::rename(&old, &new) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::XDEV.raw_os_error()) => {
                copy_across(&old, &new)?
            }
            Err(e) => {
                return Err(e).with_context(|| {
                    format!("cannot move {} to {}", old.display(), new.display())
                });
            }
        }
        eprintln!(
            "warren: moved {} to the data directory {}",
            old.display(),
            new.display()
        );
        Ok(())
    }
}

/// Copy `old` to `new` across filesystems with everything a stored root keeps (owners, modes,
/// links, hard links, times, extended attributes): `cp -a` into `new.migrating`, renamed into
/// place, then `old` removed. A failure leaves `old` untouched.
fn copy_across(old: &Path, new: &Path) -> anyhow::Result<()> {
    let mut tmp = new.as_os_str().to_owned();
    tmp.push(".migrating");
    let tmp = PathBuf::from(tmp);
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp)
            .with_context(|| format!("cannot remove the stale {}", tmp.display()))?;
    }
    let st = Command::new("cp")
        .arg("-a")
        .arg("--")
        .arg(old)
        .arg(&tmp)
        .status()
        .context("cannot run cp to move the data across filesystems")?;
    if !st.success() {
        let _ = std::fs::remove_dir_all(&tmp);
        bail!("cp -a {} {} failed ({st})", old.display(), tmp.display());
    }
    std::fs::rename(&tmp, new)
        .with_context(|| format!("cannot rename {} to {}", tmp.display(), new.display()))?;
    std::fs::remove_dir_all(old)
        .with_context(|| format!("moved, but cannot remove {}", old.display()))
}

fn dir_is_empty(p: &Path) -> bool {
    std::fs::read_dir(p).is_ok_and(|mut d| d.next().is_none())
}

fn absolute(p: &Path) -> anyhow::Result<PathBuf> {
    if p.is_absolute() {
        Ok(p.to_owned())
    } else {
        Ok(std::env::current_dir()
            .context("current directory")?
            .join(p))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dirs(t: &Path) -> Dirs {
        Dirs::resolve(&t.join("run"), Some(&t.join("lib"))).unwrap()
    }

    #[test]
    fn prepare_links_and_later_invocations_find_the_data_dir() {
        let t = tempfile::tempdir().unwrap();
        let d = dirs(t.path());
        d.prepare().unwrap();
        d.prepare().unwrap();
        assert_eq!(
            std::fs::read_link(t.path().join("run/data")).unwrap(),
            t.path().join("lib")
        );
        assert_eq!(
            std::fs::read_link(t.path().join("run/attest")).unwrap(),
            Path::new("data/attest")
        );
        std::fs::write(t.path().join("run/attest/x"), "k").unwrap();
        assert!(t.path().join("lib/attest/x").exists());
        // A data directory removed under an intact state directory is made again: the quick
        // check that skips the full preparation looks through the links.
        std::fs::remove_dir_all(t.path().join("lib")).unwrap();
        d.prepare().unwrap();
        assert!(t.path().join("lib/attest").is_dir() && t.path().join("lib/link").is_dir());
        // Without --data-dir, the link says where the data is.
        let again = Dirs::resolve(&t.path().join("run"), None).unwrap();
        assert_eq!(again.data, t.path().join("lib"));
        // Another data dir on the same state dir is refused, by name.
        let other = Dirs::resolve(&t.path().join("run"), Some(&t.path().join("x"))).unwrap();
        let e = other.prepare().unwrap_err().to_string();
        assert!(e.contains("used with another data directory"), "{e}");
        // ... and leaves nothing behind: the refused data directory was not made.
        assert!(!t.path().join("x").exists());
    }

    #[test]
    fn a_custom_state_dir_keeps_its_data_unless_told() {
        let t = tempfile::tempdir().unwrap();
        let d = Dirs::resolve(&t.path().join("s"), None).unwrap();
        assert_eq!(d.data, d.state);
        d.prepare().unwrap();
        assert!(!t.path().join("s/data").exists());
        let d = Dirs::resolve(Path::new(DEFAULT_STATE_DIR), None).unwrap();
        if std::fs::read_link("/run/warren/data").is_err() {
            assert_eq!(d.data, Path::new(DEFAULT_DATA_DIR));
        }
    }

    #[test]
    fn an_older_state_dirs_data_is_moved_and_a_conflict_refused() {
        let t = tempfile::tempdir().unwrap();
        let run = t.path().join("run");
        std::fs::create_dir_all(run.join("images/roots")).unwrap();
        std::fs::write(run.join("images/index.json"), "{}").unwrap();
        std::fs::create_dir_all(run.join("attest")).unwrap();
        std::fs::write(run.join("attest/software.key"), "k").unwrap();
        let d = dirs(t.path());
        d.prepare().unwrap();
        assert!(t.path().join("lib/images/index.json").exists());
        assert!(!run.join("images").exists());
        assert_eq!(
            std::fs::read_to_string(run.join("attest/software.key")).unwrap(),
            "k"
        );
        assert!(
            std::fs::symlink_metadata(run.join("attest"))
                .unwrap()
                .is_symlink()
        );

        // An older state dir next to a data dir that already has a store: refused, by path.
        std::fs::create_dir_all(run.join("images")).unwrap();
        std::fs::write(run.join("images/index.json"), "{}").unwrap();
        let e = d.prepare().unwrap_err().to_string();
        assert!(e.contains("move or remove one of them"), "{e}");
        assert!(run.join("images/index.json").exists());
    }

    #[test]
    fn copy_across_keeps_owners_links_and_modes() {
        let t = tempfile::tempdir().unwrap();
        let old = t.path().join("old");
        std::fs::create_dir_all(old.join("d")).unwrap();
        std::fs::write(old.join("d/f"), "x").unwrap();
        std::os::unix::fs::symlink("d/f", old.join("l")).unwrap();
        std::os::unix::fs::chown(old.join("d/f"), Some(1234), Some(5678)).unwrap();
        copy_across(&old, &t.path().join("new")).unwrap();
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(t.path().join("new/d/f")).unwrap();
        assert_eq!((m.uid(), m.gid()), (1234, 5678));
        assert_eq!(
            std::fs::read_link(t.path().join("new/l")).unwrap(),
            Path::new("d/f")
        );
        assert!(!old.exists());
    }
}
