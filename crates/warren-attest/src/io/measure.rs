//! What a measured launch records: the digest of an image tree, and the launch record itself.
//!
//! The tree digest (`warren-tree/2`) is BLAKE3 over a stream of entries in byte order of their
//! paths relative to the image root; the root itself is the entry with the empty path. Each
//! entry is encoded as:
//!
//! ```text
//! u8 kind ('d' dir, 'f' file, 'l' symlink, 'c' char dev, 'b' block dev, 'p' fifo, 's' socket)
//! u32 path length, path bytes (relative, '/'-separated, no leading '/')
//! u32 mode (permission bits incl. setuid/setgid/sticky), u32 uid, u32 gid
//! file:    u64 size, 32 bytes BLAKE3 of the content
//! symlink: u32 target length, target bytes
//! device:  u64 rdev
//! ```
//!
//! Integers are little-endian. Symbolic links are never followed, so the digest describes the
//! tree exactly as the environment's read-only bind mount shows it.
//!
//! What the walk covers (`warren-tree/2`; `/1` differed only in descending everywhere): the
//! tree of the root's own mount, as a non-recursive bind mount of it shows it, which is what
//! an environment's root is. Where the launcher is allowed to (host root), the walk goes
//! through a detached, non-recursive clone of the root's mount (`open_tree(OPEN_TREE_CLONE)`),
//! so a directory another filesystem is mounted on is measured as the environment sees it:
//! the directory underneath, not the mounted filesystem. Without that privilege it walks the
//! path and stops at mount points (an entry on another mount than its parent is recorded, not
//! entered). In both cases the top-level `proc`, `dev` and `tmp` directories are recorded
//! (kind, mode, owner) but not entered: every environment mounts its own `/proc`, `/dev` and
//! `/tmp` over them, so what lies beneath is never visible inside. That is what lets
//! `--rootfs /` be measured: the host's `/proc`, `/sys` and `/dev` mounts are not walked.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, Mode, OFlags};

pub use crate::evidence::launch::{
    DigestSource, ImageMeasurement, LaunchConfig, LaunchContent, LaunchMount, SpawnProvenance,
    TREE_FORMAT,
};

/// Top-level directories of a root that every environment mounts over: recorded, not entered.
pub const REPLACED_DIRS: [&str; 3] = ["dev", "proc", "tmp"];

/// Why an image could not be measured.
#[derive(Debug, thiserror::Error)]
pub enum MeasureError {
    /// A file or directory of the image could not be read.
    #[error("measure {}", path.display())]
    Read {
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

fn read_err(path: &Path) -> impl FnOnce(io::Error) -> MeasureError + '_ {
    move |source| MeasureError::Read {
        path: path.to_owned(),
        source,
    }
}

/// The result of measuring a tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeDigest {
    /// `blake3:<hex>`.
    pub digest: String,
    /// Entries measured.
    pub entries: u64,
    /// Bytes of file content hashed.
    pub bytes: u64,
}

/// Runs both hash functions once (BLAKE3 for trees, SHA-256 for records), so that their CPU
/// feature detection (a few `cpuid` instructions, each a trap to the hypervisor on a VM:
/// 6-8 us here) is done and cached in this process. The kernel's launch helper calls it before
/// it forks launchers, which then inherit the result instead of detecting again in each launch.
pub fn prime_hashers() {
    use sha2::Digest as _;
    std::hint::black_box(blake3::hash(b""));
    std::hint::black_box(sha2::Sha256::digest(b""));
}

/// Measures the tree under `root` (see the module documentation for the format).
pub fn tree_digest(root: &Path) -> Result<TreeDigest, MeasureError> {
    tree_digest_cached(root, None)
}

/// [`tree_digest`], reusing content digests of large files from the cache file `cache` (see
/// [`ContentCache`]) and updating it.
pub fn tree_digest_cached(root: &Path, cache: Option<&Path>) -> Result<TreeDigest, MeasureError> {
    let mut state = TreeHasher {
        cache: cache.map(ContentCache::load).unwrap_or_default(),
        ..TreeHasher::default()
    };
    let meta = std::fs::symlink_metadata(root).map_err(read_err(root))?;
    state.entry(Source::Path(root), b"", &Meta::from_std(&meta))?;
    if meta.is_dir() {
        let fd = open_root(root)?;
        let root_mnt = mount_id(&fd).map_err(|e| read_err(root)(e.into()))?;
        walk(&fd, root, root_mnt, &mut Vec::new(), &mut state)?;
    }
    if let Some(path) = cache {
        state.cache.save(path);
    }
    Ok(state.finish())
}

/// A descriptor of `root` to walk from: the root of a detached, non-recursive clone of its
/// mount where the caller may make one (what a non-recursive bind mount, the environment's
/// root, shows), else the directory itself.
fn open_root(root: &Path) -> Result<OwnedFd, MeasureError> {
    use rustix::mount::{OpenTreeFlags, open_tree};
    if let Ok(tree) = open_tree(
        rustix::fs::CWD,
        root,
        OpenTreeFlags::OPEN_TREE_CLONE
            | OpenTreeFlags::OPEN_TREE_CLOEXEC
            | OpenTreeFlags::AT_SYMLINK_NOFOLLOW,
    ) {
        // The tree's descriptor is an `O_PATH` one: open its root for reading. The detached
        // mount lives as long as a descriptor of it does.
        return rustix::fs::openat(
            &tree,
            c".",
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| read_err(root)(e.into()));
    }
    rustix::fs::open(
        root,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
        Mode::empty(),
    )
    .map_err(|e| read_err(root)(e.into()))
}

/// The mount id of an open file.
fn mount_id(fd: &OwnedFd) -> rustix::io::Result<u64> {
    let st = rustix::fs::statx(fd, c"", AtFlags::EMPTY_PATH, rustix::fs::StatxFlags::MNT_ID)?;
    Ok(st.stx_mnt_id)
}

/// Content digests of large files from earlier launches, keyed by what changes whenever a
/// file's content can have changed: device, inode, size, modification and **change** time
/// (nanoseconds). The change time cannot be set by any system call; it moves on every write,
/// `chmod`, `utimes` or rename, so a file rewritten and given back its old mtime still misses.
/// Only files of at least [`ContentCache::MIN_SIZE`] bytes are cached; smaller ones cost less
/// to hash than to look up. The cache is a text file, one `key digest` line per file seen in
/// the last measurement that used it.
#[derive(Debug, Default)]
pub struct ContentCache {
    known: std::collections::HashMap<String, blake3::Hash>,
    used: Vec<(String, blake3::Hash)>,
    /// Symbolic links' targets under the same key. No system call changes a link's target in
    /// place (it takes a new link: a new inode and change time), so the key that proves a
    /// file's content unchanged proves a link's target unchanged too. Saves a `readlinkat` per
    /// link: busybox roots are mostly links.
    known_links: std::collections::HashMap<String, Vec<u8>>,
    used_links: Vec<(String, Vec<u8>)>,
    changed: bool,
}

impl ContentCache {
    /// The smallest file whose digest is cached.
    pub const MIN_SIZE: u64 = 64 << 10;

    fn load(path: &Path) -> ContentCache {
        let mut known = std::collections::HashMap::new();
        let mut known_links = std::collections::HashMap::new();
        if let Ok(text) = std::fs::read_to_string(path) {
            for line in text.lines() {
                let Some((k, v)) = line.rsplit_once(' ') else {
                    continue;
                };
                if let Some(k) = k.strip_prefix("L") {
                    if let Ok(target) = hex::decode(v) {
                        known_links.insert(k.to_owned(), target);
                    }
                } else if let Ok(h) = blake3::Hash::from_hex(v) {
                    known.insert(k.to_owned(), h);
                }
            }
        }
        ContentCache {
            known,
            used: Vec::new(),
            known_links,
            used_links: Vec::new(),
            changed: false,
        }
    }

    fn key(meta: &Meta) -> String {
        format!(
            "{}:{}:{}:{}.{}:{}.{}",
            meta.dev, meta.ino, meta.size, meta.mtime.0, meta.mtime.1, meta.ctime.0, meta.ctime.1
        )
    }

    fn digest(&mut self, src: Source<'_>, meta: &Meta) -> Result<blake3::Hash, MeasureError> {
        if meta.size < Self::MIN_SIZE {
            return src.file_digest();
        }
        let key = Self::key(meta);
        let hash = match self.known.get(&key) {
            Some(h) => *h,
            None => {
                self.changed = true;
                src.file_digest()?
            }
        };
        self.used.push((key, hash));
        Ok(hash)
    }

    /// A link's target, from the cache when its key is known.
    fn link_target(&mut self, src: Source<'_>, meta: &Meta) -> Result<Vec<u8>, MeasureError> {
        let key = Self::key(meta);
        let target = match self.known_links.get(&key) {
            Some(t) => t.clone(),
            None => {
                self.changed = true;
                src.read_link()?
            }
        };
        self.used_links.push((key, target.clone()));
        Ok(target)
    }

    fn save(&self, path: &Path) {
        if !self.changed
            && self.used.len() == self.known.len()
            && self.used_links.len() == self.known_links.len()
        {
            return;
        }
        let mut text = String::new();
        for (k, h) in &self.used {
            text.push_str(k);
            text.push(' ');
            text.push_str(&h.to_hex());
            text.push('\n');
        }
        for (k, t) in &self.used_links {
            text.push('L');
            text.push_str(k);
            text.push(' ');
            text.push_str(&hex::encode(t));
            text.push('\n');
        }
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        if std::fs::write(&tmp, text).is_ok() && std::fs::rename(&tmp, path).is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
    }
}

/// Measures a root made of single files (`--binary` roots): each `(host, target)` pair is an
/// entry whose path is `target` and whose metadata and content are the host file's.
pub fn files_digest(files: &[(PathBuf, PathBuf)]) -> Result<TreeDigest, MeasureError> {
    let mut sorted: Vec<&(PathBuf, PathBuf)> = files.iter().collect();
    sorted.sort_by(|a, b| a.1.as_os_str().as_bytes().cmp(b.1.as_os_str().as_bytes()));
    let mut state = TreeHasher::default();
    for (host, target) in sorted {
        let meta = std::fs::metadata(host).map_err(read_err(host))?;
        let rel = target.as_os_str().as_bytes();
        let rel = rel.strip_prefix(b"/").unwrap_or(rel);
        state.entry(Source::Path(host), rel, &Meta::from_std(&meta))?;
    }
    Ok(state.finish())
}

#[derive(Default)]
struct TreeHasher {
    hasher: blake3::Hasher,
    entries: u64,
    bytes: u64,
    cache: ContentCache,
}

impl TreeHasher {
    fn entry(&mut self, src: Source<'_>, rel: &[u8], meta: &Meta) -> Result<(), MeasureError> {
        let h = &mut self.hasher;
        h.update(&[meta.kind]);
        h.update(&(rel.len() as u32).to_le_bytes());
        h.update(rel);
        h.update(&(meta.mode & 0o7777).to_le_bytes());
        h.update(&meta.uid.to_le_bytes());
        h.update(&meta.gid.to_le_bytes());
        match meta.kind {
            b'f' => {
                let content = self.cache.digest(src, meta)?;
                self.hasher.update(&meta.size.to_le_bytes());
                self.hasher.update(content.as_bytes());
                self.bytes += meta.size;
            }
            b'l' => {
                let target = self.cache.link_target(src, meta)?;
                self.hasher.update(&(target.len() as u32).to_le_bytes());
                self.hasher.update(&target);
            }
            b'c' | b'b' => {
                self.hasher.update(&meta.rdev.to_le_bytes());
            }
            _ => {}
        }
        self.entries += 1;
        Ok(())
    }

    fn finish(self) -> TreeDigest {
        TreeDigest {
            digest: format!("blake3:{}", self.hasher.finalize().to_hex()),
            entries: self.entries,
            bytes: self.bytes,
        }
    }
}

/// BLAKE3 of one file's content (memory-mapped when large).
pub fn file_digest(path: &Path) -> Result<blake3::Hash, MeasureError> {
    let mut h = blake3::Hasher::new();
    h.update_mmap(path).map_err(read_err(path))?;
    Ok(h.finalize())
}

/// The metadata an entry contributes, from `std` or from a raw `stat`.
struct Meta {
    kind: u8,
    mode: u32,
    uid: u32,
    gid: u32,
    size: u64,
    rdev: u64,
    dev: u64,
    ino: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

fn kind_of(ft: rustix::fs::FileType) -> u8 {
    use rustix::fs::FileType as T;
    match ft {
        T::Directory => b'd',
        T::RegularFile => b'f',
        T::Symlink => b'l',
        T::CharacterDevice => b'c',
        T::BlockDevice => b'b',
        T::Fifo => b'p',
        _ => b's',
    }
}

impl Meta {
    fn from_std(m: &std::fs::Metadata) -> Meta {
        Meta {
            kind: kind_of(rustix::fs::FileType::from_raw_mode(m.mode())),
            mode: m.mode(),
            uid: m.uid(),
            gid: m.gid(),
            size: m.len(),
            rdev: m.rdev(),
            dev: m.dev(),
            ino: m.ino(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
        }
    }

    fn from_statx(st: &rustix::fs::Statx) -> Meta {
        let mode = u32::from(st.stx_mode);
        Meta {
            kind: kind_of(rustix::fs::FileType::from_raw_mode(mode as _)),
            mode,
            uid: st.stx_uid,
            gid: st.stx_gid,
            size: st.stx_size,
            rdev: rustix::fs::makedev(st.stx_rdev_major, st.stx_rdev_minor),
            dev: rustix::fs::makedev(st.stx_dev_major, st.stx_dev_minor),
            ino: st.stx_ino,
            mtime: (st.stx_mtime.tv_sec, i64::from(st.stx_mtime.tv_nsec)),
            ctime: (st.stx_ctime.tv_sec, i64::from(st.stx_ctime.tv_nsec)),
        }
    }
}

/// Where an entry is: a path, or a name in an open directory (one path component to resolve
/// per system call instead of the whole path).
#[derive(Clone, Copy)]
enum Source<'a> {
    Path(&'a Path),
    At {
        dir: BorrowedFd<'a>,
        dir_path: &'a Path,
        name: &'a std::ffi::CStr,
    },
}

impl Source<'_> {
    fn path(&self) -> PathBuf {
        match self {
            Source::Path(p) => p.to_path_buf(),
            Source::At { dir_path, name, .. } => {
                dir_path.join(std::ffi::OsStr::from_bytes(name.to_bytes()))
            }
        }
    }

    fn read_link(&self) -> Result<Vec<u8>, MeasureError> {
        match self {
            Source::Path(p) => std::fs::read_link(p)
                .map(|t| t.into_os_string().into_vec())
                .map_err(read_err(p)),
            Source::At { dir, name, .. } => rustix::fs::readlinkat(*dir, *name, Vec::new())
                .map(|t| t.into_bytes())
                .map_err(|e| read_err(&self.path())(e.into())),
        }
    }

    /// BLAKE3 of the file's content, opened relative to its directory's descriptor (so a
    /// walk through a detached mount reads that mount's file, never what the host path shows).
    fn file_digest(&self) -> Result<blake3::Hash, MeasureError> {
        match self {
            Source::Path(p) => file_digest(p),
            Source::At { dir, name, .. } => {
                let fd = rustix::fs::openat(
                    *dir,
                    *name,
                    OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW | OFlags::NOCTTY,
                    Mode::empty(),
                )
                .map_err(|e| read_err(&self.path())(e.into()))?;
                let mut h = blake3::Hasher::new();
                let mut file =
                    std::io::BufReader::with_capacity(256 << 10, std::fs::File::from(fd));
                h.update_reader(&mut file).map_err(read_err(&self.path()))?;
                Ok(h.finalize())
            }
        }
    }
}

fn walk(
    dir: &OwnedFd,
    dir_path: &Path,
    dir_mnt: u64,
    rel: &mut Vec<u8>,
    state: &mut TreeHasher,
) -> Result<(), MeasureError> {
    let io = |e: rustix::io::Errno| read_err(dir_path)(e.into());
    let mut names: Vec<std::ffi::CString> = Vec::new();
    for entry in rustix::fs::Dir::read_from(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let name = entry.file_name();
        if name != c"." && name != c".." {
            names.push(name.to_owned());
        }
    }
    names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    let top = rel.is_empty();
    for name in &names {
        let len = rel.len();
        if !rel.is_empty() {
            rel.push(b'/');
        }
        rel.extend_from_slice(name.as_bytes());
        let src = Source::At {
            dir: dir.as_fd(),
            dir_path,
            name,
        };
        let st = rustix::fs::statx(
            dir,
            name.as_c_str(),
            AtFlags::SYMLINK_NOFOLLOW | AtFlags::NO_AUTOMOUNT,
            rustix::fs::StatxFlags::BASIC_STATS | rustix::fs::StatxFlags::MNT_ID,
        )
        .map_err(|e| read_err(&src.path())(e.into()))?;
        let meta = Meta::from_statx(&st);
        state.entry(src, rel, &meta)?;
        let replaced = top
            && REPLACED_DIRS
                .iter()
                .any(|d| d.as_bytes() == name.as_bytes());
        // Another mount's root: not part of this root's mount, so not what the environment
        // sees there (it sees the directory underneath); recorded, not entered.
        let mount_point = st.stx_mnt_id != dir_mnt;
        if meta.kind == b'd' && !replaced && !mount_point {
            let path = src.path();
            let child = rustix::fs::openat(
                dir,
                name.as_c_str(),
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
                Mode::empty(),
            )
            .map_err(|e| read_err(&path)(e.into()))?;
            walk(&child, &path, dir_mnt, rel, state)?;
        }
        rel.truncate(len);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tree_digest_sees_content_mode_and_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("bin")).unwrap();
        std::fs::write(dir.path().join("bin/a"), b"hello").unwrap();
        std::os::unix::fs::symlink("a", dir.path().join("bin/b")).unwrap();
        let d0 = tree_digest(dir.path()).unwrap();
        assert_eq!(d0, tree_digest(dir.path()).unwrap(), "deterministic");
        assert_eq!(d0.entries, 4);
        assert_eq!(d0.bytes, 5);

        std::fs::write(dir.path().join("bin/a"), b"hellp").unwrap();
        let d1 = tree_digest(dir.path()).unwrap();
        assert_ne!(d0.digest, d1.digest, "content");

        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            dir.path().join("bin/a"),
            std::fs::Permissions::from_mode(0o4755),
        )
        .unwrap();
        let d2 = tree_digest(dir.path()).unwrap();
        assert_ne!(d1.digest, d2.digest, "mode");

        std::fs::remove_file(dir.path().join("bin/b")).unwrap();
        std::os::unix::fs::symlink("c", dir.path().join("bin/b")).unwrap();
        let d3 = tree_digest(dir.path()).unwrap();
        assert_ne!(d2.digest, d3.digest, "symlink target");

        std::os::unix::fs::chown(dir.path().join("bin"), Some(1), Some(1)).unwrap();
        assert_ne!(
            d3.digest,
            tree_digest(dir.path()).unwrap().digest,
            "ownership"
        );
    }

    /// The byte stream docs/attestation.md ("The image digest") gives, written out by hand
    /// for a tree whose depth-first order differs from the byte order of whole paths (`a/b`
    /// comes before `a-c`, though `-` sorts below `/`).
    #[test]
    fn the_digest_is_the_documented_depth_first_stream() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir(root.join("a")).unwrap();
        std::fs::write(root.join("a/b"), b"bee").unwrap();
        std::fs::write(root.join("a-c"), b"sea").unwrap();
        std::os::unix::fs::symlink("a/b", root.join("l")).unwrap();
        let entry = |h: &mut blake3::Hasher, rel: &str| {
            let m = std::fs::symlink_metadata(root.join(rel)).unwrap();
            let kind = if m.is_dir() {
                b'd'
            } else if m.is_symlink() {
                b'l'
            } else {
                b'f'
            };
            h.update(&[kind]);
            h.update(&(rel.len() as u32).to_le_bytes());
            h.update(rel.as_bytes());
            h.update(&(m.mode() & 0o7777).to_le_bytes());
            h.update(&m.uid().to_le_bytes());
            h.update(&m.gid().to_le_bytes());
            if kind == b'f' {
                h.update(&m.size().to_le_bytes());
                h.update(blake3::hash(&std::fs::read(root.join(rel)).unwrap()).as_bytes());
            } else if kind == b'l' {
                h.update(&3u32.to_le_bytes());
                h.update(b"a/b");
            }
        };
        let stream = |order: &[&str]| {
            let mut h = blake3::Hasher::new();
            for rel in order {
                entry(&mut h, rel);
            }
            format!("blake3:{}", h.finalize().to_hex())
        };
        let got = tree_digest(root).unwrap().digest;
        assert_eq!(got, stream(&["", "a", "a/b", "a-c", "l"]), "depth first");
        // Control: byte order of whole paths is another digest, so the test tells them apart.
        assert_ne!(got, stream(&["", "a", "a-c", "a/b", "l"]));
    }

    #[test]
    fn the_content_cache_gives_the_same_digest_and_misses_on_a_rewrite() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir(&root).unwrap();
        let big = root.join("big");
        std::fs::write(&big, vec![1u8; 100 << 10]).unwrap();
        let cache = dir.path().join("cache");
        let plain = tree_digest(&root).unwrap();
        assert_eq!(plain, tree_digest_cached(&root, Some(&cache)).unwrap());
        assert!(std::fs::read_to_string(&cache).unwrap().lines().count() == 1);
        assert_eq!(
            plain,
            tree_digest_cached(&root, Some(&cache)).unwrap(),
            "hit"
        );
        // Same size, and the old mtime put back: the change time still differs.
        let mtime = std::fs::metadata(&big).unwrap().modified().unwrap();
        std::fs::write(&big, vec![2u8; 100 << 10]).unwrap();
        std::fs::File::options()
            .write(true)
            .open(&big)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
        let after = tree_digest_cached(&root, Some(&cache)).unwrap();
        assert_ne!(plain.digest, after.digest);
        assert_eq!(after, tree_digest(&root).unwrap());
    }

    #[test]
    fn the_cache_keeps_link_targets_and_misses_on_a_replaced_link() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir(&root).unwrap();
        std::fs::write(root.join("busybox"), b"x").unwrap();
        for n in ["sh", "ls", "cat"] {
            std::os::unix::fs::symlink("busybox", root.join(n)).unwrap();
        }
        let cache = dir.path().join("cache");
        let plain = tree_digest(&root).unwrap();
        assert_eq!(plain, tree_digest_cached(&root, Some(&cache)).unwrap());
        let text = std::fs::read_to_string(&cache).unwrap();
        assert_eq!(
            text.lines().filter(|l| l.starts_with('L')).count(),
            3,
            "{text}"
        );
        // Served from the cache: the same digest.
        assert_eq!(plain, tree_digest_cached(&root, Some(&cache)).unwrap());
        // A link replaced by one with another target of the same length misses the cache.
        std::fs::remove_file(root.join("ls")).unwrap();
        std::os::unix::fs::symlink("busyboy", root.join("ls")).unwrap();
        let after = tree_digest_cached(&root, Some(&cache)).unwrap();
        assert_eq!(after, tree_digest(&root).unwrap());
        assert_ne!(after, plain);
    }

    #[test]
    fn renaming_a_file_changes_the_digest() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("x"), b"1").unwrap();
        let a = tree_digest(dir.path()).unwrap();
        std::fs::rename(dir.path().join("x"), dir.path().join("y")).unwrap();
        assert_ne!(a.digest, tree_digest(dir.path()).unwrap().digest);
    }

    #[test]
    fn the_walk_records_proc_dev_and_tmp_but_not_what_they_hold() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for d in ["proc", "dev", "tmp", "etc"] {
            std::fs::create_dir(root.join(d)).unwrap();
        }
        let before = tree_digest(root).unwrap();
        std::fs::write(root.join("tmp/x"), b"1").unwrap();
        std::fs::write(root.join("dev/null"), b"1").unwrap();
        std::fs::create_dir(root.join("proc/1")).unwrap();
        let hidden = tree_digest(root).unwrap();
        assert_eq!(
            before, hidden,
            "what the environment's own mounts hide is not measured"
        );
        // Positive controls: the same change elsewhere, and the directories themselves.
        std::fs::write(root.join("etc/x"), b"1").unwrap();
        let etc = tree_digest(root).unwrap();
        assert_ne!(hidden.digest, etc.digest, "a file elsewhere is measured");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(root.join("tmp"), std::fs::Permissions::from_mode(0o1777))
            .unwrap();
        assert_ne!(
            etc.digest,
            tree_digest(root).unwrap().digest,
            "tmp's own mode is"
        );
        // Only at the top: a `tmp` deeper down is an ordinary directory.
        std::fs::create_dir(root.join("etc/tmp")).unwrap();
        let deep = tree_digest(root).unwrap();
        std::fs::write(root.join("etc/tmp/y"), b"1").unwrap();
        assert_ne!(deep.digest, tree_digest(root).unwrap().digest);
    }

    /// Unmounts on drop.
    struct Mounted(PathBuf);

    impl Drop for Mounted {
        fn drop(&mut self) {
            let _ = rustix::mount::unmount(&self.0, rustix::mount::UnmountFlags::DETACH);
        }
    }

    #[test]
    fn a_filesystem_mounted_inside_the_root_is_not_walked() {
        assert!(
            rustix::process::geteuid().is_root(),
            "this test mounts a tmpfs: run it as root"
        );
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir(root.join("data")).unwrap();
        std::fs::write(root.join("a"), b"a").unwrap();
        let before = tree_digest(root).unwrap();
        rustix::mount::mount(
            "tmpfs",
            root.join("data"),
            "tmpfs",
            rustix::mount::MountFlags::empty(),
            c"mode=0700",
        )
        .unwrap();
        let guard = Mounted(root.join("data"));
        std::fs::write(root.join("data/secret"), vec![7u8; 100 << 10]).unwrap();
        // What an environment's (non-recursive) bind of the root shows: the directory under
        // the mount, empty, with its own mode.
        assert_eq!(before, tree_digest(root).unwrap());
        drop(guard);
        // Positive control: the same file in the root's own filesystem is measured.
        std::fs::write(root.join("data/secret"), vec![7u8; 100 << 10]).unwrap();
        assert_ne!(before.digest, tree_digest(root).unwrap().digest);
    }
}
