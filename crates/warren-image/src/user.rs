//! The image's `User` (`name`, `uid`, `name:group`, `uid:gid`, ...) resolved against the
//! image's own `/etc/passwd` and `/etc/group`, as Docker resolves it.
//!
//! The files are opened with `openat2(RESOLVE_IN_ROOT)`, so a `/etc/passwd` that is a symlink to
//! `/etc/shadow` reads the image's file of that name, never the host's. Ids must fall in the
//! 65536 an environment maps.

use std::io::Read;
use std::os::fd::OwnedFd;
use std::path::Path;

use rustix::fs::{Mode, OFlags, ResolveFlags};

use crate::error::ImageError;
use crate::unpack::MAX_ID;

/// Who the workload runs as.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RunAs {
    /// The uid inside the environment.
    pub uid: u32,
    /// The primary gid.
    pub gid: u32,
    /// Supplementary groups (the primary one first).
    pub groups: Vec<u32>,
    /// The home directory from `/etc/passwd`, when the user is listed.
    pub home: Option<String>,
}

/// The text of the regular file `rel` beneath the root directory `dir` (at most 1 MiB), if
/// there is one.
fn read_in_root(dir: &OwnedFd, rel: &str) -> Option<String> {
    // Non-blocking, and never a controlling terminal: a hostile root may put a FIFO (or a
    // device node, in a --rootfs tree) where /etc/passwd should be, and a blocking open would
    // hang the launcher before it reached the check below.
    let fd = rustix::fs::openat2(
        dir,
        rel,
        OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NONBLOCK | OFlags::NOCTTY,
        Mode::empty(),
        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS | ResolveFlags::NO_XDEV,
    )
    .ok()?;
    let f = std::fs::File::from(fd);
    let meta = f.metadata().ok()?;
    if !meta.is_file() {
        return None;
    }
    // Sized from the file, so that it is read in one call (`take` hides the size from
    // `read_to_end`, which would otherwise start at 32 bytes and double).
    let mut buf = Vec::with_capacity(meta.len().min(MAX_FILE) as usize + 1);
    f.take(MAX_FILE).read_to_end(&mut buf).ok()?;
    String::from_utf8(buf).ok()
}

/// The most of `/etc/passwd` or `/etc/group` read.
const MAX_FILE: u64 = 1 << 20;

struct Entry {
    name: String,
    id: u32,
    gid: u32,
    home: String,
    members: Vec<String>,
}

/// `name:x:uid:gid:gecos:home:shell` or `name:x:gid:members`.
fn parse(text: &str, group: bool) -> Vec<Entry> {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            let id = f.get(2)?.parse().ok()?;
            if group {
                Some(Entry {
                    name: f[0].to_owned(),
                    id,
                    gid: id,
                    home: String::new(),
                    members: f
                        .get(3)
                        .map(|m| {
                            m.split(',')
                                .filter(|x| !x.is_empty())
                                .map(str::to_owned)
                                .collect()
                        })
                        .unwrap_or_default(),
                })
            } else {
                Some(Entry {
                    name: f[0].to_owned(),
                    id,
                    gid: f.get(3)?.parse().ok()?,
                    home: f.get(5).map(|s| s.to_string()).unwrap_or_default(),
                    members: Vec::new(),
                })
            }
        })
        .collect()
}

/// Resolve `spec` (empty means root) in the image at `root`.
pub fn resolve(root: &Path, spec: &str) -> Result<RunAs, ImageError> {
    let err = |reason: String| ImageError::User {
        user: spec.to_owned(),
        reason,
    };
    let dir = rustix::fs::open(
        root,
        OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .ok();
    let passwd = dir
        .as_ref()
        .and_then(|d| read_in_root(d, "etc/passwd"))
        .map(|t| parse(&t, false))
        .unwrap_or_default();
    let groups = dir
        .as_ref()
        .and_then(|d| read_in_root(d, "etc/group"))
        .map(|t| parse(&t, true))
        .unwrap_or_default();
    let (u, g) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let u = if u.is_empty() { "0" } else { u };
    let (uid, mut gid, name, home) = match u.parse::<u32>() {
        Ok(uid) => match passwd.iter().find(|e| e.id == uid) {
            Some(e) => (uid, e.gid, Some(e.name.clone()), Some(e.home.clone())),
            None => (uid, 0, None, None),
        },
        Err(_) => match passwd.iter().find(|e| e.name == u) {
            Some(e) => (e.id, e.gid, Some(e.name.clone()), Some(e.home.clone())),
            None => return Err(err(format!("no user {u:?} in the root's /etc/passwd"))),
        },
    };
    if let Some(g) = g {
        gid = match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => match groups.iter().find(|e| e.name == g) {
                Some(e) => e.gid,
                None => return Err(err(format!("no group {g:?} in the root's /etc/group"))),
            },
        };
    }
    if u64::from(uid) > MAX_ID || u64::from(gid) > MAX_ID {
        return Err(err(format!(
            "{uid}:{gid} is beyond the 65536 ids an environment maps"
        )));
    }
    let mut all = vec![gid];
    if g.is_none() {
        if let Some(n) = &name {
            for e in &groups {
                if e.members.iter().any(|m| m == n)
                    && !all.contains(&e.gid)
                    && u64::from(e.gid) <= MAX_ID
                {
                    all.push(e.gid);
                }
            }
        }
    }
    Ok(RunAs {
        uid,
        gid,
        groups: all,
        home: home.filter(|h| !h.is_empty()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir(t.path().join("etc")).unwrap();
        std::fs::write(
            t.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1001:App:/home/app:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(
            t.path().join("etc/group"),
            "root:x:0:\napp:x:1001:\nwheel:x:10:app,other\n",
        )
        .unwrap();
        t
    }

    #[test]
    fn resolves_names_numbers_and_groups_like_docker() {
        let t = root();
        let r = |s: &str| resolve(t.path(), s);
        assert_eq!(r("").unwrap().uid, 0);
        let app = r("app").unwrap();
        assert_eq!(
            (app.uid, app.gid, app.groups.clone()),
            (1000, 1001, vec![1001, 10])
        );
        assert_eq!(app.home.as_deref(), Some("/home/app"));
        assert_eq!(r("1000").unwrap().gid, 1001);
        assert_eq!(r("1000:wheel").unwrap().groups, vec![10]);
        assert_eq!(
            r("4242").unwrap(),
            RunAs {
                uid: 4242,
                gid: 0,
                groups: vec![0],
                home: None
            }
        );
        assert_eq!(r("4242:7").unwrap().gid, 7);
        assert!(
            r("nobody")
                .unwrap_err()
                .to_string()
                .contains("no user \"nobody\"")
        );
        assert!(r("app:staff").unwrap_err().to_string().contains("no group"));
        assert!(r("70000").unwrap_err().to_string().contains("beyond"));
    }

    #[test]
    fn passwd_symlinks_resolve_inside_the_root() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir(t.path().join("etc")).unwrap();
        // A link to the host's passwd: read inside the root, where it does not exist.
        std::os::unix::fs::symlink("/etc/passwd", t.path().join("etc/passwd")).unwrap();
        assert!(
            resolve(t.path(), "root").is_err(),
            "the host's root entry must not be seen"
        );
        assert_eq!(resolve(t.path(), "0").unwrap().uid, 0);
    }

    #[test]
    fn a_fifo_for_passwd_is_not_read_and_does_not_hang() {
        // Positive control: the same name resolves from a regular file.
        let t = root();
        assert_eq!(resolve(t.path(), "app").unwrap().uid, 1000);
        // A hostile root's /etc/passwd is a FIFO nobody writes: a blocking open would wait
        // for a writer forever, holding the launcher before the environment starts.
        std::fs::remove_file(t.path().join("etc/passwd")).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            t.path().join("etc/passwd"),
            rustix::fs::FileType::Fifo,
            Mode::from_raw_mode(0o644),
            0,
        )
        .unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let dir = t.path().to_owned();
        std::thread::spawn(move || {
            let _ = tx.send((
                resolve(&dir, "app").is_err(),
                resolve(&dir, "7").map(|r| r.uid),
            ));
        });
        let got = rx.recv_timeout(std::time::Duration::from_secs(5));
        if got.is_err() {
            // Let the blocked reader go (a writer that opens and closes) before failing.
            let _ = std::fs::OpenOptions::new()
                .write(true)
                .open(t.path().join("etc/passwd"));
        }
        let (name_refused, numeric) = got.expect("resolve blocked on a FIFO /etc/passwd");
        assert!(name_refused, "a name must not resolve from a FIFO");
        assert_eq!(numeric.unwrap(), 7);
    }
}
