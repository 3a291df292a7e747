//! What a measured launch records: the digest of an image tree, and the launch record itself.
//!
//! The tree digest (`warren-tree/1`) is BLAKE3 over a stream of entries in byte order of their
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

use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The name of the tree digest format, recorded next to every digest.
pub const TREE_FORMAT: &str = "warren-tree/1";

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
    state.entry(root, b"", &meta)?;
    if meta.is_dir() {
        walk(root, &mut Vec::new(), &mut state)?;
    }
    if let Some(path) = cache {
        state.cache.save(path);
    }
    Ok(state.finish())
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
    changed: bool,
}

impl ContentCache {
    /// The smallest file whose digest is cached.
    pub const MIN_SIZE: u64 = 64 << 10;

    fn load(path: &Path) -> ContentCache {
        let mut known = std::collections::HashMap::new();
        if let Ok(text) = std::fs::read_to_string(path) {
            for line in text.lines() {
                if let Some((k, v)) = line.rsplit_once(' ') {
                    if let Ok(h) = blake3::Hash::from_hex(v) {
                        known.insert(k.to_owned(), h);
                    }
                }
            }
        }
        ContentCache {
            known,
            used: Vec::new(),
            changed: false,
        }
    }

    fn key(meta: &std::fs::Metadata) -> String {
        format!(
            "{}:{}:{}:{}.{}:{}.{}",
            meta.dev(),
            meta.ino(),
            meta.len(),
            meta.mtime(),
            meta.mtime_nsec(),
            meta.ctime(),
            meta.ctime_nsec()
        )
    }

    fn digest(
        &mut self,
        path: &Path,
        meta: &std::fs::Metadata,
    ) -> Result<blake3::Hash, MeasureError> {
        if meta.len() < Self::MIN_SIZE {
            return file_digest(path);
        }
        let key = Self::key(meta);
        let hash = match self.known.get(&key) {
            Some(h) => *h,
            None => {
                self.changed = true;
                file_digest(path)?
            }
        };
        self.used.push((key, hash));
        Ok(hash)
    }

    fn save(&self, path: &Path) {
        if !self.changed && self.used.len() == self.known.len() {
            return;
        }
        let mut text = String::new();
        for (k, h) in &self.used {
            text.push_str(k);
            text.push(' ');
            text.push_str(&h.to_hex());
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
        state.entry(host, rel, &meta)?;
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
    fn entry(
        &mut self,
        path: &Path,
        rel: &[u8],
        meta: &std::fs::Metadata,
    ) -> Result<(), MeasureError> {
        let ft = meta.file_type();
        let kind = if ft.is_dir() {
            b'd'
        } else if ft.is_file() {
            b'f'
        } else if ft.is_symlink() {
            b'l'
        } else if ft.is_char_device() {
            b'c'
        } else if ft.is_block_device() {
            b'b'
        } else if ft.is_fifo() {
            b'p'
        } else {
            b's'
        };
        let h = &mut self.hasher;
        h.update(&[kind]);
        h.update(&(rel.len() as u32).to_le_bytes());
        h.update(rel);
        h.update(&(meta.mode() & 0o7777).to_le_bytes());
        h.update(&meta.uid().to_le_bytes());
        h.update(&meta.gid().to_le_bytes());
        match kind {
            b'f' => {
                let content = self.cache.digest(path, meta)?;
                self.hasher.update(&meta.len().to_le_bytes());
                self.hasher.update(content.as_bytes());
                self.bytes += meta.len();
            }
            b'l' => {
                let target = std::fs::read_link(path).map_err(read_err(path))?;
                let t = target.as_os_str().as_bytes();
                self.hasher.update(&(t.len() as u32).to_le_bytes());
                self.hasher.update(t);
            }
            b'c' | b'b' => {
                self.hasher.update(&meta.rdev().to_le_bytes());
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

fn walk(dir: &Path, rel: &mut Vec<u8>, state: &mut TreeHasher) -> Result<(), MeasureError> {
    let mut names: Vec<std::ffi::OsString> = std::fs::read_dir(dir)
        .map_err(read_err(dir))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()
        .map_err(read_err(dir))?;
    names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    for name in names {
        let path = dir.join(&name);
        let len = rel.len();
        if !rel.is_empty() {
            rel.push(b'/');
        }
        rel.extend_from_slice(name.as_bytes());
        let meta = std::fs::symlink_metadata(&path).map_err(read_err(&path))?;
        state.entry(&path, rel, &meta)?;
        if meta.is_dir() {
            walk(&path, rel, state)?;
        }
        rel.truncate(len);
    }
    Ok(())
}

/// The content of one launch record in the event log: everything that decides what runs.
/// Field order is the canonical serialisation; the record's digest is SHA-256 of
/// `serde_json::to_vec` of this struct.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LaunchContent {
    /// Always `launch`.
    pub event: String,
    /// The environment's name.
    pub name: String,
    /// The image.
    pub image: ImageMeasurement,
    /// The command and its arguments.
    pub command: Vec<String>,
    /// The workload's environment variables, in the order given.
    pub env: Vec<(String, String)>,
    /// The isolation configuration (the part golden values compare as one digest).
    pub config: LaunchConfig,
    /// `sha256:<hex>` of the canonical serialisation of `config`.
    pub config_digest: String,
    /// The host uid range: uid 0 inside is `uid_base` outside.
    pub uid_base: u32,
    /// How many ids are mapped.
    pub uid_count: u32,
    /// Seconds since the Unix epoch at measurement (informational, not compared).
    pub launched_at: u64,
}

/// The image an environment was started from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageMeasurement {
    /// `rootfs` (a directory tree) or `binary` (single files).
    pub kind: String,
    /// The tree digest, `blake3:<hex>`.
    pub digest: String,
    /// The tree digest's format, [`TREE_FORMAT`].
    pub format: String,
    /// The OCI manifest digest (`sha256:<hex>`) when the launch came from an OCI image.
    pub manifest_digest: Option<String>,
}

/// The isolation an environment is launched with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LaunchConfig {
    /// Memory limit in bytes.
    pub memory: Option<u64>,
    /// Pids limit.
    pub pids: Option<u64>,
    /// Cpu quota in millionths of one cpu, if any.
    pub cpu_micros: Option<u64>,
    /// Size of `/tmp` and `/dev/shm`.
    pub tmpfs_size: u64,
    /// `sha256:<hex>` of the seccomp policy, or `None` without a filter.
    pub seccomp_profile: Option<String>,
    /// Capabilities left (always empty).
    pub capabilities: Vec<String>,
    /// Whether `no_new_privs` is set.
    pub no_new_privs: bool,
    /// The Landlock ABI whose rights are requested, or `None` when Landlock is missing.
    pub landlock_abi: Option<i32>,
    /// The namespaces the environment has of its own.
    pub namespaces: Vec<String>,
    /// The network mode.
    pub network: String,
    /// Protections allowed to be missing that were.
    pub degraded: Vec<String>,
}

impl LaunchConfig {
    /// `sha256:<hex>` of the canonical serialisation.
    pub fn digest(&self) -> String {
        let bytes = serde_json::to_vec(self).unwrap_or_default();
        format!("sha256:{}", hex::encode(Sha256::digest(&bytes)))
    }
}

impl LaunchContent {
    /// The canonical bytes that are hashed into the record's digest.
    pub fn canonical(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
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
    fn renaming_a_file_changes_the_digest() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("x"), b"1").unwrap();
        let a = tree_digest(dir.path()).unwrap();
        std::fs::rename(dir.path().join("x"), dir.path().join("y")).unwrap();
        assert_ne!(a.digest, tree_digest(dir.path()).unwrap().digest);
    }
}
