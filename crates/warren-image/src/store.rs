//! The content-addressed image store under `<data-dir>/images`:
//!
//! ```text
//! images/              mode 0700: only root walks in (stored roots keep the images' owners)
//!   lock               flock: imports and removals take it (readers need no lock)
//!   index.json         name -> record (manifest, config, layers, root), replaced atomically
//!   blobs/sha256/HEX   manifests, configs and layers, by digest
//!   roots/ID/          unpacked roots, by the digest of their layer chain (see `root_id`)
//!   tmp/N/             one import's scratch space; renamed into place or removed
//! ```
//!
//! An import verifies everything in `tmp/` and only then renames blobs and the root into place
//! and rewrites the index, so a failed import leaves nothing behind (a crashed one leaves a
//! `tmp/` entry that the next import sweeps). Two images with the same layers share one root;
//! a root or blob no name references any more is deleted when a name is removed or replaced.
//! A launcher holds a shared `flock` on the root it runs for the life of its environment, and a
//! removal that would delete a root refuses while any such lock is held. Readers (`ls`,
//! `inspect`, resolving for `run`) take no store lock: the index is replaced by a rename.
//!
//! Stored roots never change: they are built in `tmp/` (0700) and renamed into `roots/`, which
//! only host root can reach (`images/` is 0700), nothing of Warren writes into them afterwards,
//! and environments get them through read-only mounts. So the tree digest computed at import
//! (`ImageRecord::tree_digest`) stays the digest of the root, and launches reuse it instead of
//! walking the tree again; only host root, which is trusted, could make it stale.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rustix::fs::{FlockOperation, Mode, OFlags};
use serde::{Deserialize, Serialize};
use warren_spec::ImageName;

use crate::digest::{Digest, HashReader};
use crate::error::ImageError;
use crate::oci::{self, Descriptor, Manifest, RunConfig};
use crate::source::{self, Format, Source};
use crate::unpack::{Limits, Unpacker};

/// Bump when the unpacking policy changes what a root holds: roots are keyed by it.
const ROOT_FORMAT: &str = "warren-root-v1";

/// The most trailing bytes accepted after a layer's end-of-archive marker or compressed stream
/// (tar pads to 10 KiB records; anything much longer is a smuggling attempt or a bomb).
const MAX_TRAILER: u64 = 1 << 20;

/// Feedback for long imports. The CLI draws a progress bar with it on a terminal.
pub trait Progress {
    /// The import will read `total` bytes of layers.
    fn begin(&self, total: u64);
    /// `n` more bytes were read.
    fn advance(&self, n: u64);
    /// A stage started (`layer 2/3`, `waiting for another import`).
    fn stage(&self, what: &str);
    /// The import ended.
    fn end(&self);
}

/// No feedback.
pub struct Silent;

impl Progress for Silent {
    fn begin(&self, _: u64) {}
    fn advance(&self, _: u64) {}
    fn stage(&self, _: &str) {}
    fn end(&self) {}
}

/// How to import.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// The name to store it under; derived from the source when absent.
    pub name: Option<ImageName>,
    /// Which image of a multi-image source (an OCI `ref.name` or a docker tag).
    pub reference: Option<String>,
    /// Keep set-uid/set-gid bits instead of refusing the image.
    pub allow_setuid: bool,
    /// Bounds against hostile archives.
    pub limits: Limits,
}

/// What an import did.
#[derive(Debug, Clone, Serialize)]
pub struct ImportReport {
    /// The name it is stored under.
    pub name: String,
    /// The manifest's digest: the image's identity, recorded in every launch.
    pub manifest_digest: Digest,
    /// The config's digest.
    pub config_digest: Digest,
    /// The source's format.
    pub format: &'static str,
    /// The number of layers.
    pub layers: usize,
    /// The unpacked root's id.
    pub root: String,
    /// Whether an identical root was already in the store (nothing was unpacked).
    pub reused_root: bool,
    /// Archive entries processed.
    pub entries: u64,
    /// Bytes of file content written.
    pub bytes: u64,
    /// Mount points Warren created in the root (`/proc`, `/dev`, `/tmp`, when missing).
    pub created: Vec<String>,
    /// Entries that were neutralised, and similar notices.
    pub notes: Vec<String>,
    /// The name pointed at another image before and was moved.
    pub replaced: Option<Digest>,
    /// The root's tree digest (`blake3:<hex>`), which launches of the image record.
    pub tree_digest: String,
}

/// One stored image.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImageRecord {
    /// Its name.
    pub name: String,
    /// Its manifest's digest.
    pub manifest: Digest,
    /// Its config's digest.
    pub config: Digest,
    /// Its layers' blob digests, base first.
    pub layers: Vec<Digest>,
    /// The unpacked root's id (a directory under `roots/`).
    pub root: String,
    /// The source format.
    pub format: String,
    /// When it was imported (seconds since the epoch).
    pub imported: u64,
    /// Whether set-uid bits were kept.
    pub allow_setuid: bool,
    /// Bytes of file content in the root.
    pub size: u64,
    /// The image's run configuration (entrypoint, cmd, env, user, working directory).
    pub run: RunConfig,
    /// The CPU architecture.
    pub architecture: String,
    /// The root's tree digest (`blake3:<hex>`, `warren-tree/2`), computed at import over the
    /// root as stored. A launch records it instead of walking the tree: nothing changes a
    /// stored root (see the module documentation). Absent in records of older stores; such a
    /// launch walks the root, and importing the image again adds it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tree_digest: Option<String>,
    /// The image's user (`run.user`, root when empty) as resolved at import in the root's own
    /// `/etc/passwd` and `/etc/group`: a launch without `--user` takes it from here instead of
    /// reading those files (the root never changes). Absent when the user did not resolve (the
    /// launch then resolves it, and fails as it should) and in records of older stores.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_as: Option<crate::user::RunAs>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct IndexFile {
    version: u32,
    images: BTreeMap<String, ImageRecord>,
}

/// A stored image, resolved for a launch: its root stays in the store while this lives.
#[derive(Debug)]
pub struct ResolvedImage {
    /// The record.
    pub record: ImageRecord,
    /// The unpacked root.
    pub root: PathBuf,
    _lock: OwnedFd,
}

impl ResolvedImage {
    /// The shared lock that keeps the root in the store, for another process to hold until the
    /// environment ends (a launcher handing its environment over).
    pub fn into_lock(self) -> OwnedFd {
        self._lock
    }
}

/// The store at `<data-dir>/images`.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

struct Locked(#[allow(dead_code)] OwnedFd);

/// Removes a scratch directory on drop.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The compression of a layer stream, from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    fn media_type(self) -> &'static str {
        match self {
            Compression::None => oci::MEDIA_LAYER_TAR,
            Compression::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
            Compression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
        }
    }
}

fn sniff<R: BufRead>(r: &mut R) -> io::Result<Compression> {
    let head = r.fill_buf()?;
    Ok(if head.starts_with(&[0x1f, 0x8b]) {
        Compression::Gzip
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Compression::Zstd
    } else {
        Compression::None
    })
}

/// A decompressing reader for a tar stream that may be plain, gzip or zstd (by its magic).
pub(crate) fn decompress<'a, R: BufRead + 'a>(
    mut r: R,
    label: &str,
) -> Result<Box<dyn Read + 'a>, ImageError> {
    let err = |source| ImageError::Corrupt {
        layer: label.to_owned(),
        source,
    };
    Ok(match sniff(&mut r).map_err(err)? {
        Compression::None => Box::new(r),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(r)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(r).map_err(err)?),
    })
}

/// Copies everything read into a writer as well.
struct Tee<'a, R> {
    inner: R,
    out: Option<&'a mut File>,
    progress: &'a dyn Progress,
}

impl<R: Read> Read for Tee<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(out) = self.out.as_mut() {
            out.write_all(&buf[..n])?;
        }
        self.progress.advance(n as u64);
        Ok(n)
    }
}

/// The id of the root a chain of layers unpacks to: the digest of the unpacking format, the
/// set-uid policy and the layers' uncompressed digests in order.
fn root_id(diff_ids: &[Digest], allow_setuid: bool) -> String {
    let mut s = format!(
        "{ROOT_FORMAT}\nsetuid={}\n",
        if allow_setuid { "kept" } else { "refused" }
    );
    for d in diff_ids {
        s.push_str(&d.to_string());
        s.push('\n');
    }
    Digest::of(s.as_bytes()).hex().to_owned()
}

impl Store {
    /// The store of the state directory `state_dir`.
    pub fn new(state_dir: &Path) -> Store {
        Store {
            dir: state_dir.join("images"),
        }
    }

    /// Its directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn blob_path(&self, d: &Digest) -> PathBuf {
        self.dir.join("blobs/sha256").join(d.hex())
    }

    fn root_path(&self, id: &str) -> PathBuf {
        self.dir.join("roots").join(id)
    }

    fn ensure(&self) -> Result<(), ImageError> {
        let mut b = std::fs::DirBuilder::new();
        b.recursive(true).mode(0o700);
        for sub in ["", "blobs/sha256", "roots", "tmp"] {
            let p = self.dir.join(sub);
            b.create(&p).map_err(ImageError::io("create", &p))?;
        }
        std::fs::set_permissions(&self.dir, std::fs::Permissions::from_mode(0o700))
            .map_err(ImageError::io("chmod", &self.dir))?;
        Ok(())
    }

    /// The store's writer lock: imports and removals run one at a time.
    fn lock(&self, progress: &dyn Progress) -> Result<Locked, ImageError> {
        let p = self.dir.join("lock");
        let fd = rustix::fs::open(
            &p,
            OFlags::RDWR | OFlags::CREATE | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .map_err(|e| ImageError::io("open", &p)(e.into()))?;
        if rustix::fs::flock(&fd, FlockOperation::NonBlockingLockExclusive).is_err() {
            progress.stage("waiting for another import or removal to finish");
            rustix::fs::flock(&fd, FlockOperation::LockExclusive)
                .map_err(|e| ImageError::io("lock", &p)(e.into()))?;
        }
        Ok(Locked(fd))
    }

    fn read_index(&self) -> Result<IndexFile, ImageError> {
        let p = self.dir.join("index.json");
        match std::fs::read(&p) {
            Ok(b) => parse_index(p, &b),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(IndexFile {
                version: 1,
                images: BTreeMap::new(),
            }),
            Err(e) => Err(ImageError::io("read", p)(e)),
        }
    }

    fn write_index(&self, index: &IndexFile) -> Result<(), ImageError> {
        let p = self.dir.join("index.json");
        let tmp = self.dir.join("index.json.tmp");
        let bytes = serde_json::to_vec_pretty(index).expect("the index serialises");
        let mut f = File::create(&tmp).map_err(ImageError::io("create", &tmp))?;
        f.write_all(&bytes).map_err(ImageError::io("write", &tmp))?;
        f.sync_all().map_err(ImageError::io("sync", &tmp))?;
        std::fs::rename(&tmp, &p).map_err(ImageError::io("replace", &p))
    }

    /// Every stored image, by name.
    pub fn list(&self) -> Result<Vec<ImageRecord>, ImageError> {
        // No lock: the index is replaced by a rename, so a reader sees the old or the new one,
        // and a long import does not hold up `ls`.
        if !self.dir.join("index.json").exists() {
            return Ok(Vec::new());
        }
        Ok(self.read_index()?.images.into_values().collect())
    }

    /// The record of `name`.
    pub fn get(&self, name: &ImageName) -> Result<ImageRecord, ImageError> {
        self.list()?
            .into_iter()
            .find(|r| r.name == name.as_str())
            .ok_or_else(|| ImageError::NotFound(name.to_string()))
    }

    /// The stored manifest and config documents of `name`.
    pub fn documents(
        &self,
        rec: &ImageRecord,
    ) -> Result<(serde_json::Value, serde_json::Value), ImageError> {
        let read = |d: &Digest| -> Result<serde_json::Value, ImageError> {
            let p = self.blob_path(d);
            let b = std::fs::read(&p).map_err(ImageError::io("read", &p))?;
            serde_json::from_slice(&b).map_err(|e| ImageError::BadDocument {
                what: d.to_string(),
                detail: e.to_string(),
            })
        };
        Ok((read(&rec.manifest)?, read(&rec.config)?))
    }

    /// Resolve `name` for a launch: the record and its root, which stays in the store (a
    /// shared lock on it) until the result is dropped.
    ///
    /// It takes no store lock, so a long import never holds up a launch: it reads the index
    /// (keeping it open), locks the root, then checks that the index is still the file it
    /// read. Every change replaces the index by a rename, and a removal deletes a root only
    /// after taking an exclusive lock on it and after the index no longer names it; so if the
    /// path still leads to the inode held open (which cannot be reused while it is held), the
    /// name still maps to the locked root, which stays until the lock is released. If the
    /// index was replaced meanwhile, the new one is read and must map the name to the same root.
    pub fn resolve(&self, name: &ImageName) -> Result<ResolvedImage, ImageError> {
        let path = self.dir.join("index.json");
        let not_found = || ImageError::NotFound(name.to_string());
        let lookup = || -> Result<ImageRecord, ImageError> {
            self.read_index()?
                .images
                .remove(name.as_str())
                .ok_or_else(not_found)
        };
        for _ in 0..3 {
            let mut file = match File::open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(not_found()),
                Err(e) => return Err(ImageError::io("read", &path)(e)),
            };
            let mut bytes = Vec::new();
            file.read_to_end(&mut bytes)
                .map_err(ImageError::io("read", &path))?;
            let record = parse_index(path.clone(), &bytes)?
                .images
                .remove(name.as_str())
                .ok_or_else(not_found)?;
            let root = self.root_path(&record.root);
            let fd = match rustix::fs::open(
                &root,
                OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
                Mode::empty(),
            ) {
                Ok(fd) => fd,
                // Removed or replaced meanwhile: look again.
                Err(rustix::io::Errno::NOENT) => continue,
                Err(e) => return Err(ImageError::io("open the image root", &root)(e.into())),
            };
            rustix::fs::flock(&fd, FlockOperation::LockShared)
                .map_err(|e| ImageError::io("lock", &root)(e.into()))?;
            let held =
                rustix::fs::fstat(&file).map_err(|e| ImageError::io("stat", &path)(e.into()))?;
            let unchanged = rustix::fs::stat(&path)
                .is_ok_and(|now| (now.st_dev, now.st_ino) == (held.st_dev, held.st_ino));
            if unchanged || lookup()?.root == record.root {
                return Ok(ResolvedImage {
                    record,
                    root,
                    _lock: fd,
                });
            }
        }
        Err(not_found())
    }

    /// Remove `name`. `in_use` names the environment using a record, if any (from the state
    /// directory's live records). Blobs and roots no other name uses are deleted.
    pub fn remove(
        &self,
        name: &ImageName,
        in_use: &dyn Fn(&ImageRecord) -> Option<String>,
    ) -> Result<ImageRecord, ImageError> {
        if !self.dir.join("index.json").exists() {
            return Err(ImageError::NotFound(name.to_string()));
        }
        let _l = self.lock(&Silent)?;
        let mut index = self.read_index()?;
        let rec = index
            .images
            .get(name.as_str())
            .cloned()
            .ok_or_else(|| ImageError::NotFound(name.to_string()))?;
        if let Some(env) = in_use(&rec) {
            return Err(ImageError::InUse {
                name: name.to_string(),
                env,
            });
        }
        let shared = index
            .images
            .values()
            .any(|r| r.name != rec.name && r.root == rec.root);
        if !shared && self.root_busy(&rec.root) {
            return Err(ImageError::InUse {
                name: name.to_string(),
                env: "a running environment (its launcher holds the root)".into(),
            });
        }
        index.images.remove(name.as_str());
        self.write_index(&index)?;
        self.gc(&index);
        Ok(rec)
    }

    fn root_busy(&self, id: &str) -> bool {
        let p = self.root_path(id);
        let Ok(fd) = rustix::fs::open(
            &p,
            OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        ) else {
            return false;
        };
        rustix::fs::flock(&fd, FlockOperation::NonBlockingLockExclusive).is_err()
    }

    /// Delete blobs and roots no record references (roots only when no launcher holds them).
    fn gc(&self, index: &IndexFile) {
        let mut blobs = BTreeSet::new();
        let mut roots = BTreeSet::new();
        for r in index.images.values() {
            blobs.insert(r.manifest.hex().to_owned());
            blobs.insert(r.config.hex().to_owned());
            blobs.extend(r.layers.iter().map(|d| d.hex().to_owned()));
            roots.insert(r.root.clone());
        }
        if let Ok(rd) = std::fs::read_dir(self.dir.join("blobs/sha256")) {
            for e in rd.flatten() {
                if !blobs.contains(&*e.file_name().to_string_lossy()) {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        if let Ok(rd) = std::fs::read_dir(self.dir.join("roots")) {
            for e in rd.flatten() {
                let id = e.file_name().to_string_lossy().into_owned();
                if !roots.contains(&id) && !self.root_busy(&id) {
                    // Rename first so a half-deleted root is never mistaken for a whole one.
                    let doomed = self.dir.join("tmp").join(format!("gc-{id}"));
                    if std::fs::rename(e.path(), &doomed).is_ok() {
                        let _ = std::fs::remove_dir_all(&doomed);
                    }
                }
            }
        }
    }

    /// Import the image at `source` (an OCI layout directory or tar, or a `docker save` tar).
    pub fn import(
        &self,
        source: &Path,
        opts: &ImportOptions,
        progress: &dyn Progress,
    ) -> Result<ImportReport, ImageError> {
        self.ensure()?;
        let _lock = self.lock(progress)?;
        // Anything in tmp/ now belongs to an import that died: we hold the lock.
        if let Ok(rd) = std::fs::read_dir(self.dir.join("tmp")) {
            for e in rd.flatten() {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
        let mut rnd = [0u8; 8];
        File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut rnd))
            .map_err(ImageError::io("read", "/dev/urandom"))?;
        let scratch = Scratch(self.dir.join("tmp").join(hex::encode(rnd)));
        let sdir = &scratch.0;
        for sub in ["src", "root", "blobs"] {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(sdir.join(sub))
                .map_err(ImageError::io("create", sdir.join(sub)))?;
        }
        progress.stage("reading the source");
        let src = Source::open(source, &sdir.join("src"), opts.limits)?;
        let sel = src.select(opts.reference.as_deref())?;
        let name = match &opts.name {
            Some(n) => n.clone(),
            None => derive_name(source, sel.ref_name.as_deref())?,
        };
        let diff_ids: Vec<Digest> = sel.layers.iter().map(|l| l.diff_id.clone()).collect();
        let root_id = root_id(&diff_ids, opts.allow_setuid);
        let final_root = self.root_path(&root_id);
        let reuse = final_root.is_dir();

        let tmp_root = sdir.join("root");
        std::fs::set_permissions(&tmp_root, std::fs::Permissions::from_mode(0o755))
            .map_err(ImageError::io("chmod", &tmp_root))?;
        let root_fd = rustix::fs::open(
            &tmp_root,
            OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| ImageError::io("open", &tmp_root)(e.into()))?;
        let mut unpacker = Unpacker::new(root_fd, opts.limits, opts.allow_setuid);

        let mut total = 0;
        for l in &sel.layers {
            let (_, len) = src.open_file(&l.rel)?;
            total += len;
        }
        progress.begin(total);
        let mut layer_digests = Vec::new();
        let mut layer_descs = Vec::new();
        let mut staged_blobs: Vec<(PathBuf, Digest)> = Vec::new();
        let count = sel.layers.len();
        for (i, l) in sel.layers.iter().enumerate() {
            let label = match &l.expect {
                Some((d, _)) => format!("{}/{count} ({d})", i + 1),
                None => format!("{}/{count} ({})", i + 1, l.rel),
            };
            progress.stage(&format!("layer {}/{count}", i + 1));
            let (file, len) = match src.open_file(&l.rel) {
                Ok(f) => f,
                Err(ImageError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                    return Err(ImageError::MissingBlob {
                        digest: l
                            .expect
                            .as_ref()
                            .map_or(l.rel.clone(), |(d, _)| d.to_string()),
                    });
                }
                Err(e) => return Err(e),
            };
            if let Some((d, size)) = &l.expect {
                if len != *size {
                    return Err(ImageError::BlobMismatch {
                        expected: d.to_string(),
                        detail: format!("the descriptor says {size} bytes, the blob has {len}"),
                    });
                }
            }
            let need_blob = l
                .expect
                .as_ref()
                .is_none_or(|(d, _)| !self.blob_path(d).exists());
            let staged = sdir.join("blobs").join(format!("layer-{i}"));
            let mut out = if need_blob {
                Some(File::create(&staged).map_err(ImageError::io("create", &staged))?)
            } else {
                None
            };
            let mut raw = HashReader::new(Tee {
                inner: file,
                out: out.as_mut(),
                progress,
            });
            let must_read = !reuse || l.expect.is_none();
            let mut compression = Compression::None;
            if must_read {
                let mut buffered = BufReader::with_capacity(256 << 10, &mut raw);
                compression = sniff(&mut buffered).map_err(|source| ImageError::Corrupt {
                    layer: label.clone(),
                    source,
                })?;
                let dec = decompress(buffered, &label)?;
                let mut diff = HashReader::new(dec);
                if reuse {
                    io::copy(&mut diff, &mut io::sink()).map_err(|source| ImageError::Corrupt {
                        layer: label.clone(),
                        source,
                    })?;
                } else {
                    unpacker.apply_layer(&label, &mut diff)?;
                    let trailing =
                        diff.drain(MAX_TRAILER)
                            .map_err(|source| ImageError::Corrupt {
                                layer: label.clone(),
                                source,
                            })?;
                    if trailing.is_none() {
                        return Err(ImageError::Corrupt {
                            layer: label,
                            source: io::Error::other(
                                "more than 1 MiB of data after the end of the archive",
                            ),
                        });
                    }
                }
                let (got, _) = diff.finish();
                if got != l.diff_id {
                    return Err(ImageError::BlobMismatch {
                        expected: l.diff_id.to_string(),
                        detail: format!(
                            "layer {}: its uncompressed content hashes to {got} (the config's diff_id differs)",
                            i + 1
                        ),
                    });
                }
            }
            let rest = raw
                .drain(u64::MAX - 1)
                .map_err(|source| ImageError::Corrupt {
                    layer: label.clone(),
                    source,
                })?;
            let _ = rest;
            let (got, got_len) = raw.finish();
            if let Some((d, size)) = &l.expect {
                source::verify(d, *size, &got, got_len)?;
            }
            drop(out);
            if need_blob {
                staged_blobs.push((staged, got.clone()));
            }
            let media_type = l
                .media_type
                .clone()
                .unwrap_or_else(|| compression.media_type().to_owned());
            layer_descs.push(Descriptor {
                media_type,
                digest: got.to_string(),
                size: got_len,
                annotations: BTreeMap::new(),
                platform: None,
            });
            layer_digests.push(got);
        }
        progress.end();

        let (entries, bytes) = unpacker.counts();
        let mut created = Vec::new();
        let run = sel.config.config.clone().unwrap_or_default();
        if !reuse {
            created = unpacker.mount_points()?;
            if let Some(wd) = run.working_dir.as_deref().filter(|w| !w.is_empty()) {
                if unpacker.ensure_dir(wd)? {
                    created.push(format!("{wd} (the working directory)"));
                }
            }
        }
        let notes = std::mem::take(&mut unpacker.notes);
        drop(unpacker);

        // The documents: the source's manifest, or one Warren writes for a docker save archive.
        let (manifest_bytes, manifest_digest) = match sel.manifest {
            Some(m) => m,
            None => {
                let m = Manifest {
                    schema_version: 2,
                    media_type: Some(oci::MEDIA_MANIFEST.to_owned()),
                    config: Descriptor {
                        media_type: oci::MEDIA_CONFIG.to_owned(),
                        digest: sel.config_digest.to_string(),
                        size: sel.config_bytes.len() as u64,
                        annotations: BTreeMap::new(),
                        platform: None,
                    },
                    layers: layer_descs,
                };
                let b = serde_json::to_vec(&m).expect("a manifest serialises");
                let d = Digest::of(&b);
                (b, d)
            }
        };
        for (bytes, d) in [
            (&manifest_bytes, &manifest_digest),
            (&sel.config_bytes, &sel.config_digest),
        ] {
            if !self.blob_path(d).exists() {
                let p = sdir.join("blobs").join(d.hex());
                std::fs::write(&p, bytes).map_err(ImageError::io("write", &p))?;
                staged_blobs.push((p, d.clone()));
            }
        }

        // Commit: blobs, then the root, then the index.
        for (p, d) in &staged_blobs {
            let dst = self.blob_path(d);
            std::fs::rename(p, &dst).map_err(ImageError::io("store the blob", &dst))?;
        }
        let mut index = self.read_index()?;
        // The tree digest launches record: over the root as it is stored (its path does not
        // enter the digest), from a record sharing the root when there is one.
        let known = index
            .images
            .values()
            .filter(|r| r.root == root_id)
            .find_map(|r| r.tree_digest.clone());
        let tree_digest = match known {
            Some(d) if reuse => d,
            _ => {
                progress.stage("measuring the root");
                let at = if reuse { &final_root } else { &tmp_root };
                warren_attest::measure::tree_digest(at)
                    .map_err(ImageError::Measure)?
                    .digest
            }
        };
        let size = if reuse {
            index
                .images
                .values()
                .find(|r| r.root == root_id)
                .map_or(bytes, |r| r.size)
        } else {
            std::fs::rename(&tmp_root, &final_root)
                .map_err(ImageError::io("store the root", &final_root))?;
            bytes
        };
        let run_as = crate::user::resolve(&final_root, run.user.as_deref().unwrap_or("")).ok();
        let record = ImageRecord {
            name: name.to_string(),
            manifest: manifest_digest.clone(),
            config: sel.config_digest.clone(),
            layers: layer_digests,
            root: root_id.clone(),
            format: src.format.as_str().to_owned(),
            imported: now(),
            allow_setuid: opts.allow_setuid,
            size,
            run,
            architecture: sel.config.architecture.clone(),
            tree_digest: Some(tree_digest.clone()),
            run_as,
        };
        let replaced = index
            .images
            .insert(name.to_string(), record)
            .map(|old| old.manifest)
            .filter(|old| *old != manifest_digest);
        index.version = 1;
        self.write_index(&index)?;
        self.gc(&index);
        let _ = src.path();
        Ok(ImportReport {
            name: name.to_string(),
            manifest_digest,
            config_digest: sel.config_digest,
            format: match src.format {
                Format::OciLayout => "oci-layout",
                Format::DockerSave => "docker-save",
            },
            layers: count,
            root: root_id,
            reused_root: reuse,
            entries,
            bytes,
            created,
            notes,
            replaced,
            tree_digest,
        })
    }
}

/// A name from the source: a full `ref.name`/docker tag as it is; a bare tag (what `umoci`
/// writes) after the source file's name.
fn derive_name(source: &Path, reference: Option<&str>) -> Result<ImageName, ImageError> {
    let base = source
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // Every archive suffix `import` reads (tar, gzip, zstd), once.
    let stem = [".tar.gz", ".tar.zst", ".tar.zstd", ".tgz", ".tar"]
        .iter()
        .find_map(|s| base.strip_suffix(s))
        .unwrap_or(&base);
    let base = stem.to_ascii_lowercase();
    let candidate = match reference {
        Some(r) if r.contains(':') || r.contains('/') => r.to_owned(),
        Some(tag) => format!("{base}:{tag}"),
        None => base,
    };
    candidate.parse().map_err(|e: warren_spec::ImageNameError| {
        ImageError::Unsupported(format!(
            "cannot name the image from the source ({e}): give --name"
        ))
    })
}

/// The index `bytes`, read from `path` (named in the error).
fn parse_index(path: PathBuf, bytes: &[u8]) -> Result<IndexFile, ImageError> {
    serde_json::from_slice(bytes).map_err(|e| ImageError::Index {
        path,
        detail: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store whose index maps `a:latest` to the root `r1` (made by hand: no import).
    fn store_with_one_root() -> (tempfile::TempDir, Store, ImageName) {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::new(tmp.path());
        std::fs::create_dir_all(store.root_path("r1")).unwrap();
        let d: Digest = format!("sha256:{}", "a".repeat(64)).parse().unwrap();
        let record = ImageRecord {
            name: "a:latest".into(),
            manifest: d.clone(),
            config: d.clone(),
            layers: vec![d],
            root: "r1".into(),
            format: "oci".into(),
            imported: 0,
            allow_setuid: false,
            size: 0,
            run: RunConfig::default(),
            architecture: "amd64".into(),
            tree_digest: None,
            run_as: None,
        };
        let index = IndexFile {
            version: 1,
            images: BTreeMap::from([("a:latest".to_owned(), record)]),
        };
        store.write_index(&index).unwrap();
        (tmp, store, "a:latest".parse().unwrap())
    }

    /// Whether another open of `root` can take an exclusive lock on it now.
    fn exclusive_lock_free(root: &Path) -> bool {
        let fd = rustix::fs::open(root, OFlags::DIRECTORY | OFlags::RDONLY, Mode::empty()).unwrap();
        rustix::fs::flock(&fd, FlockOperation::NonBlockingLockExclusive).is_ok()
    }

    /// Resolving reads the index once and holds the root with a shared lock for as long as the
    /// result lives (control: the lock is free before and after), whatever happens to the
    /// index meanwhile; a name the index lacks, a store without an index, and a record whose
    /// root is gone are `NotFound`.
    #[test]
    fn resolve_holds_the_root_until_dropped_and_refuses_what_is_not_there() {
        let (_tmp, store, name) = store_with_one_root();
        let root = store.root_path("r1");
        assert!(
            exclusive_lock_free(&root),
            "control: nothing holds the root yet"
        );
        let resolved = store.resolve(&name).unwrap();
        assert_eq!(resolved.root, root);
        assert_eq!(resolved.record.root, "r1");
        assert!(!exclusive_lock_free(&root), "the resolved root is not held");
        // Replaced afterwards (a removal would wait for the lock): the holder keeps it.
        store
            .write_index(&IndexFile {
                version: 1,
                images: BTreeMap::new(),
            })
            .unwrap();
        assert!(!exclusive_lock_free(&root));
        drop(resolved);
        assert!(
            exclusive_lock_free(&root),
            "the root stays held after the result is dropped"
        );
        let missing =
            |r: Result<ResolvedImage, ImageError>| matches!(r, Err(ImageError::NotFound(_)));
        assert!(
            missing(store.resolve(&name)),
            "a name the index no longer has"
        );
        let (_tmp2, store2, name2) = store_with_one_root();
        std::fs::remove_dir(store2.root_path("r1")).unwrap();
        assert!(
            missing(store2.resolve(&name2)),
            "a record whose root is gone"
        );
        std::fs::remove_file(store2.dir.join("index.json")).unwrap();
        assert!(missing(store2.resolve(&name2)), "a store without an index");
    }

    #[test]
    fn root_ids_differ_by_chain_order_and_setuid_policy() {
        let a: Digest = format!("sha256:{}", "a".repeat(64)).parse().unwrap();
        let b: Digest = format!("sha256:{}", "b".repeat(64)).parse().unwrap();
        let ab = root_id(&[a.clone(), b.clone()], false);
        assert_eq!(ab, root_id(&[a.clone(), b.clone()], false));
        assert_ne!(ab, root_id(&[b.clone(), a.clone()], false));
        assert_ne!(ab, root_id(&[a, b], true));
    }

    #[test]
    fn names_come_from_the_reference_or_the_file() {
        let n = |p: &str, r: Option<&str>| derive_name(Path::new(p), r).map(|n| n.to_string());
        assert_eq!(n("/x/busybox", Some("1.36")).unwrap(), "busybox:1.36");
        assert_eq!(n("/x/app.tar", None).unwrap(), "app:latest");
        for file in ["bb.tar.gz", "bb.tgz", "bb.tar.zst", "bb.tar.zstd", "bb"] {
            assert_eq!(
                n(&format!("/x/{file}"), Some("1.36")).unwrap(),
                "bb:1.36",
                "{file}"
            );
        }
        assert_eq!(
            n("/x/whatever.tar", Some("reg:5000/team/app:v2")).unwrap(),
            "reg:5000/team/app:v2"
        );
        assert!(
            n("/x/Bad Name", None)
                .unwrap_err()
                .to_string()
                .contains("--name")
        );
    }
}
