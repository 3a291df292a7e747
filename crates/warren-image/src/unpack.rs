//! Applying layers onto one root directory without ever leaving it.
//!
//! Every operation is relative to a descriptor of the root. A parent directory is opened with
//! `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV)`,
//! so no path can climb out with `..`, jump to the host with an absolute symlink, or go
//! *through* any symlink at all; the last component is created with `O_NOFOLLOW`/`*at` calls.
//! An archive written from a real filesystem never goes through a symlink (the path was a
//! directory when it was archived), so refusing that costs nothing and removes the classic
//! "symlink, then write through it" escape outright.
//!
//! The refusals, each naming the entry ([`ImageError::UnsafeEntry`]):
//! * absolute paths and paths with `..`;
//! * entries that go through a symlink, or whose parent is not a directory;
//! * relative symlinks that climb above the root (absolute symlinks are kept: inside an
//!   environment they name paths in the image, and they are never followed here);
//! * hard links whose target is absolute, climbs with `..`, goes through a symlink, is missing
//!   or is a directory;
//! * character and block devices;
//! * set-uid and set-gid bits on files, unless the import allows them (`--allow-setuid`);
//! * entry types Warren does not know.
//!
//! Neutralised with a note: owners above the 65536 ids an environment maps (they become
//! 65534, `nobody`); set-uid bits on directories (meaningless) are dropped. Extended attributes
//! (file capabilities among them) are not applied.
//!
//! Whiteouts (`.wh.NAME`) remove `NAME` from lower layers and opaque markers (`.wh..wh..opq`)
//! empty their directory of what lower layers put there; entries of the same layer are kept,
//! as the OCI specification says. Limits ([`Limits`]) bound the number of entries, the bytes
//! written and the depth of paths, across all layers of an image.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

use rustix::fs::{AtFlags, FileType, Gid, Mode, OFlags, ResolveFlags, Timespec, Timestamps, Uid};

use crate::error::ImageError;

/// Bounds that keep a hostile archive from exhausting the host.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Most archive entries across all layers (every entry counts, whiteouts included).
    pub max_entries: u64,
    /// Most bytes of file content written across all layers.
    pub max_bytes: u64,
    /// Most path components in one entry's path.
    pub max_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_entries: 1_000_000,
            max_bytes: 32 << 30,
            max_depth: 128,
        }
    }
}

/// The highest uid/gid an environment maps (its range holds 65536 ids).
pub const MAX_ID: u64 = 65_535;
/// What owners above [`MAX_ID`] become.
pub const OVERFLOW_ID: u32 = 65_534;

const RESOLVE: ResolveFlags = ResolveFlags::BENEATH
    .union(ResolveFlags::NO_SYMLINKS)
    .union(ResolveFlags::NO_MAGICLINKS)
    .union(ResolveFlags::NO_XDEV);

/// The layer applier for one root.
pub(crate) struct Unpacker {
    root: OwnedFd,
    limits: Limits,
    allow_setuid: bool,
    entries: u64,
    bytes: u64,
    /// Neutralised entries and other things the user should know.
    pub notes: Vec<String>,
    cache: Option<(Vec<u8>, OwnedFd)>,
    /// Paths (and their ancestors) this layer created: whiteouts do not apply to them.
    this_layer: HashSet<Vec<u8>>,
    /// The process's umask, which file creation applies.
    umask: u32,
    /// The copy buffer for file contents.
    buf: Vec<u8>,
}

/// Copy `from` to `to` through `buf`; returns the bytes copied.
fn copy_with(buf: &mut [u8], from: &mut impl Read, to: &mut impl io::Write) -> io::Result<u64> {
    let mut n = 0;
    loop {
        let k = match from.read(buf) {
            Ok(0) => return Ok(n),
            Ok(k) => k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        to.write_all(&buf[..k])?;
        n += k as u64;
    }
}

type Refusal = String;

/// Why one entry failed: refused (a reason for the user) or an I/O error.
enum EntryError {
    Refused(Refusal),
    Limit(ImageError),
    Io(&'static str, io::Error),
}

impl From<io::Error> for EntryError {
    fn from(e: io::Error) -> Self {
        EntryError::Io("write", e)
    }
}

impl From<rustix::io::Errno> for EntryError {
    fn from(e: rustix::io::Errno) -> Self {
        EntryError::Io("write", e.into())
    }
}

/// Split an archive path into clean components, refusing absolute paths and `..`.
fn clean(raw: &[u8]) -> Result<Vec<&[u8]>, Refusal> {
    if raw.first() == Some(&b'/') {
        return Err("absolute path: entries must be relative to the image root".into());
    }
    let mut out = Vec::new();
    for c in raw.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => return Err("path climbs out of the root with '..'".into()),
            _ => out.push(c),
        }
    }
    Ok(out)
}

fn join(c: &[&[u8]]) -> Vec<u8> {
    c.join(&b'/')
}

fn ts(secs: u64) -> Timestamps {
    let t = Timespec {
        tv_sec: secs.min(i64::MAX as u64) as i64,
        tv_nsec: 0,
    };
    Timestamps {
        last_access: t,
        last_modification: t,
    }
}

impl Unpacker {
    /// An applier for the (empty or partly filled) directory `root`.
    pub(crate) fn new(root: OwnedFd, limits: Limits, allow_setuid: bool) -> Self {
        Unpacker {
            root,
            limits,
            allow_setuid,
            entries: 0,
            bytes: 0,
            notes: Vec::new(),
            cache: None,
            this_layer: HashSet::new(),
            umask: {
                // Read the umask (the only way is to set it) and put it back at once.
                let m = rustix::process::umask(Mode::from_raw_mode(0o022));
                rustix::process::umask(m);
                m.as_raw_mode()
            },
            buf: vec![0; 256 << 10],
        }
    }

    /// Entries and bytes so far.
    pub(crate) fn counts(&self) -> (u64, u64) {
        (self.entries, self.bytes)
    }

    /// Apply one layer's uncompressed tar stream. `layer` names it in errors.
    pub(crate) fn apply_layer<R: Read>(
        &mut self,
        layer: &str,
        reader: R,
    ) -> Result<(), ImageError> {
        self.this_layer.clear();
        self.cache = None;
        let mut archive = tar::Archive::new(reader);
        let corrupt = |source| ImageError::Corrupt {
            layer: layer.to_owned(),
            source,
        };
        for entry in archive.entries().map_err(corrupt)? {
            let mut entry = match entry {
                Ok(e) => e,
                // The stream ends inside the padding after the last entry's data, which was
                // read whole (checked below), with no end-of-archive blocks: `umoci insert`
                // writes layers like this. Nothing is lost, so it is accepted as the end.
                Err(e) if e.to_string().contains("unexpected EOF during skip") => break,
                Err(e) => return Err(corrupt(e)),
            };
            self.entries += 1;
            if self.entries > self.limits.max_entries {
                return Err(ImageError::Limit {
                    what: "the number of archive entries".into(),
                    limit: self.limits.max_entries,
                    flag: "--max-files",
                });
            }
            let path = entry.path_bytes().into_owned();
            match self.entry(&mut entry, &path) {
                Ok(()) => {}
                Err(EntryError::Refused(reason)) => {
                    return Err(ImageError::UnsafeEntry {
                        layer: layer.to_owned(),
                        entry: String::from_utf8_lossy(&path).into_owned(),
                        reason,
                    });
                }
                Err(EntryError::Limit(e)) => return Err(e),
                Err(EntryError::Io(what, e)) => {
                    // A corrupt stream surfaces as an I/O error while reading the entry's data.
                    return Err(ImageError::UnsafeEntry {
                        layer: layer.to_owned(),
                        entry: String::from_utf8_lossy(&path).into_owned(),
                        reason: format!("cannot {what} it: {e}"),
                    });
                }
            }
        }
        Ok(())
    }

    fn remember(&mut self, comps: &[&[u8]]) {
        for i in 1..=comps.len() {
            self.this_layer.insert(join(&comps[..i]));
        }
    }

    /// Open the directory `comps` beneath the root, creating missing ones when `create`.
    fn dir(&mut self, comps: &[&[u8]], create: bool) -> Result<BorrowedFd<'_>, EntryError> {
        if comps.is_empty() {
            return Ok(self.root.as_fd());
        }
        let key = join(comps);
        if self.cache.as_ref().is_some_and(|(k, _)| *k == key) {
            return Ok(self
                .cache
                .as_ref()
                .map(|(_, fd)| fd.as_fd())
                .expect("checked"));
        }
        let flags = OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW;
        let fd = match rustix::fs::openat2(&self.root, &key[..], flags, Mode::empty(), RESOLVE) {
            Ok(fd) => fd,
            Err(rustix::io::Errno::NOENT) if create => {
                // Implicit parents, as tar creates them: root-owned, 0755.
                let mut cur = rustix::fs::openat2(&self.root, ".", flags, Mode::empty(), RESOLVE)?;
                for c in comps {
                    match rustix::fs::mkdirat(&cur, *c, Mode::from_raw_mode(0o755)) {
                        Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                        Err(e) => return Err(e.into()),
                    }
                    cur = rustix::fs::openat2(&cur, *c, flags, Mode::empty(), RESOLVE)
                        .map_err(|e| self.resolve_error(e, comps))?;
                }
                cur
            }
            Err(e) => return Err(self.resolve_error(e, comps)),
        };
        self.cache = Some((key, fd));
        Ok(self
            .cache
            .as_ref()
            .map(|(_, fd)| fd.as_fd())
            .expect("just set"))
    }

    fn resolve_error(&self, e: rustix::io::Errno, comps: &[&[u8]]) -> EntryError {
        let p = String::from_utf8_lossy(&join(comps)).into_owned();
        match e {
            rustix::io::Errno::LOOP => EntryError::Refused(format!(
                "goes through a symlink on the way ({p:?} or one of its parents is a symlink)"
            )),
            rustix::io::Errno::NOTDIR => {
                let is_link =
                    rustix::fs::statat(&self.root, &join(comps)[..], AtFlags::SYMLINK_NOFOLLOW)
                        .is_ok_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::Symlink);
                if is_link {
                    EntryError::Refused(format!(
                        "goes through a symlink on the way ({p:?} is a symlink)"
                    ))
                } else {
                    EntryError::Refused(format!("its parent {p:?} is not a directory"))
                }
            }
            rustix::io::Errno::XDEV => EntryError::Refused(format!("{p:?} leaves the root")),
            other => EntryError::Io("open the parent of", other.into()),
        }
    }

    /// Remove `name` in `parent` (recursively for a directory); nothing if it does not exist.
    fn remove(parent: BorrowedFd<'_>, name: &[u8]) -> Result<bool, EntryError> {
        let st = match rustix::fs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(rustix::io::Errno::NOENT) => return Ok(false),
            Err(e) => return Err(e.into()),
        };
        if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
            let fd = rustix::fs::openat(
                parent,
                name,
                OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
                Mode::empty(),
            )?;
            Self::empty_dir(fd.as_fd(), |_| true)?;
            rustix::fs::unlinkat(parent, name, AtFlags::REMOVEDIR)?;
            Ok(true)
        } else {
            rustix::fs::unlinkat(parent, name, AtFlags::empty())?;
            Ok(false)
        }
    }

    /// Remove the children of `dir` for which `keep_not` says true.
    fn empty_dir(
        dir: BorrowedFd<'_>,
        mut remove: impl FnMut(&[u8]) -> bool,
    ) -> Result<(), EntryError> {
        let mut names = Vec::new();
        let mut d = rustix::fs::Dir::read_from(dir)?;
        while let Some(e) = d.read() {
            let e = e?;
            let n = e.file_name().to_bytes();
            if n != b"." && n != b".." && remove(n) {
                names.push(n.to_vec());
            }
        }
        for n in names {
            Self::remove(dir, &n)?;
        }
        Ok(())
    }

    fn owner(&mut self, path: &[u8], uid: u64, gid: u64) -> (Uid, Gid) {
        let fix = |id: u64| -> u32 { if id > MAX_ID { OVERFLOW_ID } else { id as u32 } };
        if uid > MAX_ID || gid > MAX_ID {
            self.notes.push(format!(
                "{:?} is owned by {uid}:{gid}, beyond the 65536 ids an environment maps: it \
                 belongs to 65534 (nobody) instead",
                String::from_utf8_lossy(path)
            ));
        }
        (Uid::from_raw(fix(uid)), Gid::from_raw(fix(gid)))
    }

    fn entry<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        raw: &[u8],
    ) -> Result<(), EntryError> {
        use tar::EntryType as T;
        let kind = entry.header().entry_type();
        if matches!(
            kind,
            T::XGlobalHeader | T::XHeader | T::GNULongName | T::GNULongLink
        ) {
            return Ok(());
        }
        let comps = clean(raw).map_err(EntryError::Refused)?;
        if comps.len() > self.limits.max_depth {
            return Err(EntryError::Limit(ImageError::Limit {
                what: format!("the depth of {:?}", String::from_utf8_lossy(raw)),
                limit: self.limits.max_depth as u64,
                flag: "--max-depth",
            }));
        }
        let Some((&name, parent)) = comps.split_last() else {
            // The root itself ("./"): its metadata stays Warren's.
            return Ok(());
        };
        if let Some(target) = name.strip_prefix(b".wh.") {
            return self.whiteout(parent, target);
        }
        let h = entry.header();
        let mut mode = h
            .mode()
            .map_err(|e| EntryError::Refused(format!("bad mode field: {e}")))?
            & 0o7777;
        let (mut uid, mut gid) = (h.uid().unwrap_or(0), h.gid().unwrap_or(0));
        if let Ok(Some(pax)) = entry.pax_extensions() {
            for ext in pax.flatten() {
                let num = || ext.value().ok().and_then(|v| v.parse::<u64>().ok());
                match ext.key_bytes() {
                    b"uid" => uid = num().unwrap_or(uid),
                    b"gid" => gid = num().unwrap_or(gid),
                    _ => {}
                }
            }
        }
        let mtime = entry.header().mtime().unwrap_or(0);
        let size = entry.header().size().unwrap_or(0);
        let (uid, gid) = self.owner(raw, uid, gid);
        let kind_is_dir = kind == T::Directory;
        if mode & 0o6000 != 0
            && !kind_is_dir
            && !self.allow_setuid
            && kind != T::Link
            && kind != T::Symlink
        {
            return Err(EntryError::Refused(format!(
                "set-uid/set-gid bit (mode {mode:o}): refused; import with --allow-setuid to \
                 keep such bits (they never take effect: environments run with no_new_privs \
                 on a nosuid root)"
            )));
        }
        if kind_is_dir && mode & 0o4000 != 0 {
            mode &= !0o4000;
        }
        let mode = Mode::from_raw_mode(mode);
        let stamps = ts(mtime);
        match kind {
            T::Regular | T::Continuous | T::GNUSparse => {
                if self.bytes.saturating_add(size) > self.limits.max_bytes {
                    return Err(EntryError::Limit(ImageError::Limit {
                        what: "the size of the unpacked files".into(),
                        limit: self.limits.max_bytes,
                        flag: "--max-bytes",
                    }));
                }
                // Created with its final permission bits (less the umask, and without set-id
                // bits, which `fchown` would clear): `fchmod` only when those differ. An entry
                // already there (from a lower layer) is replaced.
                let create_mode = Mode::from_raw_mode(mode.as_raw_mode() & 0o1777);
                let flags = OFlags::WRONLY
                    | OFlags::CREATE
                    | OFlags::EXCL
                    | OFlags::NOFOLLOW
                    | OFlags::CLOEXEC;
                let pfd = self.dir(parent, true)?;
                let fd = match rustix::fs::openat(pfd, name, flags, create_mode) {
                    Ok(fd) => fd,
                    Err(rustix::io::Errno::EXIST) => {
                        if Self::remove(pfd, name)? {
                            self.cache = None;
                        }
                        let pfd = self.dir(parent, true)?;
                        rustix::fs::openat(pfd, name, flags, create_mode)?
                    }
                    Err(e) => return Err(e.into()),
                };
                let mut file = std::fs::File::from(fd);
                let n = copy_with(&mut self.buf, &mut entry.take(size), &mut file)
                    .map_err(|e| EntryError::Io("read", e))?;
                if n != size {
                    return Err(EntryError::Refused(format!(
                        "truncated: the archive ends after {n} of its {size} bytes"
                    )));
                }
                self.bytes += n;
                rustix::fs::fchown(&file, Some(uid), Some(gid))?;
                if mode.as_raw_mode() & (0o6000 | self.umask) != 0 {
                    rustix::fs::fchmod(&file, mode)?;
                }
                rustix::fs::futimens(&file, &stamps)?;
            }
            T::Directory => {
                let pfd = self.dir(parent, true)?;
                match rustix::fs::statat(pfd, name, AtFlags::SYMLINK_NOFOLLOW) {
                    Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => {}
                    Ok(_) => {
                        Self::remove(pfd, name)?;
                        rustix::fs::mkdirat(pfd, name, Mode::from_raw_mode(0o700))?;
                    }
                    Err(rustix::io::Errno::NOENT) => {
                        rustix::fs::mkdirat(pfd, name, Mode::from_raw_mode(0o700))?
                    }
                    Err(e) => return Err(e.into()),
                }
                let fd = rustix::fs::openat(
                    pfd,
                    name,
                    OFlags::DIRECTORY | OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )?;
                rustix::fs::fchown(&fd, Some(uid), Some(gid))?;
                rustix::fs::fchmod(&fd, mode)?;
                rustix::fs::futimens(&fd, &stamps)?;
            }
            T::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| EntryError::Refused("symlink without a target".into()))?
                    .into_owned();
                check_symlink(parent.len(), &target).map_err(EntryError::Refused)?;
                let pfd = self.dir(parent, true)?;
                if Self::remove(pfd, name)? {
                    self.cache = None;
                }
                let pfd = self.dir(parent, true)?;
                rustix::fs::symlinkat(&target[..], pfd, name)?;
                rustix::fs::chownat(pfd, name, Some(uid), Some(gid), AtFlags::SYMLINK_NOFOLLOW)?;
                rustix::fs::utimensat(pfd, name, &stamps, AtFlags::SYMLINK_NOFOLLOW)?;
            }
            T::Link => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| EntryError::Refused("hard link without a target".into()))?
                    .into_owned();
                self.hard_link(parent, name, &target)?;
            }
            T::Fifo => {
                let pfd = self.dir(parent, true)?;
                if Self::remove(pfd, name)? {
                    self.cache = None;
                }
                let pfd = self.dir(parent, true)?;
                rustix::fs::mknodat(pfd, name, FileType::Fifo, mode, 0)?;
                rustix::fs::chownat(pfd, name, Some(uid), Some(gid), AtFlags::SYMLINK_NOFOLLOW)?;
                rustix::fs::chmodat(pfd, name, mode, AtFlags::empty())?;
                rustix::fs::utimensat(pfd, name, &stamps, AtFlags::SYMLINK_NOFOLLOW)?;
            }
            T::Char | T::Block => {
                return Err(EntryError::Refused(
                    "device node: images may not carry devices (an environment's /dev is \
                     Warren's own)"
                        .into(),
                ));
            }
            other => {
                return Err(EntryError::Refused(format!(
                    "unsupported entry type {:?}",
                    other.as_byte() as char
                )));
            }
        }
        self.remember(&comps);
        Ok(())
    }

    fn hard_link(
        &mut self,
        parent: &[&[u8]],
        name: &[u8],
        target: &[u8],
    ) -> Result<(), EntryError> {
        let shown = String::from_utf8_lossy(target).into_owned();
        let tcomps = clean(target)
            .map_err(|why| EntryError::Refused(format!("hard link to {shown:?}: {why}")))?;
        let Some((&tname, tparent)) = tcomps.split_last() else {
            return Err(EntryError::Refused("hard link to the root".into()));
        };
        let flags = OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW;
        let tkey = join(tparent);
        let tdir = if tparent.is_empty() {
            rustix::fs::openat2(&self.root, ".", flags, Mode::empty(), RESOLVE)
        } else {
            rustix::fs::openat2(&self.root, &tkey[..], flags, Mode::empty(), RESOLVE)
        }
        .map_err(|e| match e {
            rustix::io::Errno::NOENT => {
                EntryError::Refused(format!("hard link to {shown:?}, which is not in the root"))
            }
            e => match self.resolve_error(e, tparent) {
                EntryError::Refused(why) => {
                    EntryError::Refused(format!("hard link to {shown:?}: its target {why}"))
                }
                other => other,
            },
        })?;
        match rustix::fs::statat(&tdir, tname, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => {
                return Err(EntryError::Refused(format!(
                    "hard link to the directory {shown:?}"
                )));
            }
            Ok(_) => {}
            Err(rustix::io::Errno::NOENT) => {
                return Err(EntryError::Refused(format!(
                    "hard link to {shown:?}, which is not in the root"
                )));
            }
            Err(e) => return Err(e.into()),
        }
        if tparent == parent && tname == name {
            return Ok(());
        }
        let pfd = self.dir(parent, true)?;
        if Self::remove(pfd, name)? {
            self.cache = None;
        }
        let pfd = self.dir(parent, true)?;
        rustix::fs::linkat(&tdir, tname, pfd, name, AtFlags::empty())?;
        Ok(())
    }

    fn whiteout(&mut self, parent: &[&[u8]], target: &[u8]) -> Result<(), EntryError> {
        let prefix = join(parent);
        let child_key = |n: &[u8]| -> Vec<u8> {
            if prefix.is_empty() {
                n.to_vec()
            } else {
                [&prefix[..], b"/", n].concat()
            }
        };
        let pfd = match self.dir(parent, false) {
            Ok(fd) => rustix::io::dup(fd)?,
            // Nothing below to hide.
            Err(EntryError::Io(_, e)) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        let pfd = pfd.as_fd();
        if target == b".wh..opq" {
            let this_layer = &self.this_layer;
            Self::empty_dir(pfd, |n| !this_layer.contains(&child_key(n)))?;
            self.cache = None;
            return Ok(());
        }
        if target.starts_with(b".wh.") {
            // Other aufs bookkeeping (.wh..wh.plnk, .wh..wh.aufs): meaningless here.
            return Ok(());
        }
        if target.is_empty() || target == b"." || target == b".." || target.contains(&b'/') {
            return Err(EntryError::Refused("whiteout of an invalid name".into()));
        }
        if self.this_layer.contains(&child_key(target)) {
            return Ok(());
        }
        if Self::remove(pfd, target)? {
            self.cache = None;
        }
        Ok(())
    }

    /// After the last layer: make sure the directories Warren mounts onto exist, as real
    /// directories. Returns what was created or replaced.
    pub(crate) fn mount_points(&mut self) -> Result<Vec<String>, ImageError> {
        let mut done = Vec::new();
        for (name, mode) in [("proc", 0o555), ("dev", 0o755), ("tmp", 0o1777)] {
            let root = self.root.as_fd();
            let err = ImageError::io("create the mount point", format!("/{name}"));
            match rustix::fs::statat(root, name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => continue,
                Ok(_) => {
                    Self::remove(root, name.as_bytes())
                        .map_err(|_| err(io::Error::other("cannot remove what is there")))?;
                    done.push(format!("/{name} (replaced a non-directory)"));
                }
                Err(_) => done.push(format!("/{name}")),
            }
            let err = ImageError::io("create the mount point", format!("/{name}"));
            rustix::fs::mkdirat(root, name, Mode::from_raw_mode(mode))
                .map_err(|e| err(e.into()))?;
            rustix::fs::chmodat(root, name, Mode::from_raw_mode(mode), AtFlags::empty())
                .map_err(|e| ImageError::io("chmod", format!("/{name}"))(e.into()))?;
        }
        Ok(done)
    }

    /// Make sure the working directory exists (creating it like Docker does), resolving within
    /// the root. Returns whether it was created.
    pub(crate) fn ensure_dir(&mut self, path: &str) -> Result<bool, ImageError> {
        let flags = OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC;
        let rel = path.trim_start_matches('/');
        if rel.is_empty() {
            return Ok(false);
        }
        let in_root = ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS | ResolveFlags::NO_XDEV;
        if rustix::fs::openat2(&self.root, rel, flags, Mode::empty(), in_root).is_ok() {
            return Ok(false);
        }
        let comps = clean(rel.as_bytes()).map_err(|why| ImageError::BadDocument {
            what: "the image config".into(),
            detail: format!("working directory {path:?}: {why}"),
        })?;
        self.cache = None;
        self.dir(&comps, true)
            .map_err(|_| ImageError::BadDocument {
                what: "the image config".into(),
                detail: format!("working directory {path:?} cannot be created inside the root"),
            })?;
        Ok(true)
    }
}

/// A relative symlink target may not climb above the root from where the link sits (`depth`
/// components below it). Absolute targets name paths in the image and are kept.
fn check_symlink(depth: usize, target: &[u8]) -> Result<(), Refusal> {
    if target.is_empty() {
        return Err("symlink with an empty target".into());
    }
    if target.first() == Some(&b'/') {
        return Ok(());
    }
    let mut d = depth as i64;
    for c in target.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                d -= 1;
                if d < 0 {
                    return Err(format!(
                        "symlink to {:?} points out of the root",
                        OsStr::from_bytes(target)
                    ));
                }
            }
            _ => d += 1,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
