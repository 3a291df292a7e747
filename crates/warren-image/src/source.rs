//! Import sources: an OCI image layout (a directory, or a tar of one) and a `docker save`
//! archive, and the choice of the one image to import from them.
//!
//! A tar source is first unpacked into a scratch directory inside the store with the same
//! [`Unpacker`] that applies layers, so its own entries get the same scrutiny. Files of a
//! source are then opened with `openat2(RESOLVE_IN_ROOT)`: a symlink in a source (legacy
//! `docker save` links repeated layers) resolves inside it, never to the host.
//!
//! Every document and blob the chosen image needs is checked against what names it: the
//! manifest against the index's descriptor, config and layers against the manifest's (size
//! first, then the sha256 digest as they are read). A `docker save` archive has no
//! descriptors: its config must hash to the name it is stored under, and each layer's
//! uncompressed content must hash to the config's `diff_ids`.

use std::fs::File;
use std::io::Read;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags, ResolveFlags};

use crate::digest::Digest;
use crate::error::ImageError;
use crate::oci::{self, Descriptor, DockerSaveEntry, ImageConfig, Index, Manifest};
use crate::unpack::{Limits, Unpacker};

/// Which format a source is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// An OCI image layout.
    OciLayout,
    /// A `docker save` archive (the legacy layout with `manifest.json`).
    DockerSave,
}

impl Format {
    /// `oci-layout` or `docker-save`.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::OciLayout => "oci-layout",
            Format::DockerSave => "docker-save",
        }
    }
}

/// An opened source.
pub(crate) struct Source {
    dir: OwnedFd,
    path: PathBuf,
    pub format: Format,
}

/// One layer to read.
pub(crate) struct LayerSource {
    /// Its file, relative to the source.
    pub rel: String,
    /// The digest and size its descriptor promises (none for `docker save`).
    pub expect: Option<(Digest, u64)>,
    /// The media type, when a descriptor gives one.
    pub media_type: Option<String>,
    /// The uncompressed digest the config promises.
    pub diff_id: Digest,
}

/// The image chosen from a source, with its documents verified.
pub(crate) struct Selected {
    /// The manifest's bytes and digest (OCI); `None` for `docker save`, whose manifest Warren
    /// writes once the layers' digests are known.
    pub manifest: Option<(Vec<u8>, Digest)>,
    /// The config's bytes and digest.
    pub config_bytes: Vec<u8>,
    /// Its digest.
    pub config_digest: Digest,
    /// The parsed config.
    pub config: ImageConfig,
    /// The layers, base first.
    pub layers: Vec<LayerSource>,
    /// The name the source gives the image (an OCI `ref.name` annotation or a docker tag).
    pub ref_name: Option<String>,
}

const IN_ROOT: ResolveFlags = ResolveFlags::IN_ROOT
    .union(ResolveFlags::NO_MAGICLINKS)
    .union(ResolveFlags::NO_XDEV);

fn open_dir(path: &Path) -> Result<OwnedFd, ImageError> {
    rustix::fs::open(
        path,
        OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| ImageError::io("open", path)(e.into()))
}

impl Source {
    /// Open `path`: a layout directory as it is, a tar unpacked into `scratch` (an empty
    /// directory the caller removes).
    pub(crate) fn open(path: &Path, scratch: &Path, limits: Limits) -> Result<Source, ImageError> {
        let meta = std::fs::metadata(path).map_err(ImageError::io("read", path))?;
        let (dir, dir_path) = if meta.is_dir() {
            (open_dir(path)?, path.to_owned())
        } else {
            let file = File::open(path).map_err(ImageError::io("open", path))?;
            let mut unpacker = Unpacker::new(open_dir(scratch)?, limits, false);
            let label = path.display().to_string();
            let reader = crate::store::decompress(std::io::BufReader::new(file), &label)?;
            unpacker.apply_layer(&label, reader)?;
            (open_dir(scratch)?, scratch.to_owned())
        };
        let exists = |rel: &str| {
            rustix::fs::openat2(
                &dir,
                rel,
                OFlags::PATH | OFlags::CLOEXEC,
                Mode::empty(),
                IN_ROOT,
            )
            .is_ok()
        };
        let format = if exists("oci-layout") && exists("index.json") {
            Format::OciLayout
        } else if exists("manifest.json") {
            Format::DockerSave
        } else {
            return Err(ImageError::UnknownFormat {
                path: path.to_owned(),
            });
        };
        Ok(Source {
            dir,
            path: dir_path,
            format,
        })
    }

    /// Open a file of the source, resolved inside it; returns it and its size.
    pub(crate) fn open_file(&self, rel: &str) -> Result<(File, u64), ImageError> {
        let full = self.path.join(rel);
        let fd = rustix::fs::openat2(
            &self.dir,
            rel,
            OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
            IN_ROOT,
        )
        .map_err(|e| ImageError::io("open", &full)(e.into()))?;
        let file = File::from(fd);
        let meta = file.metadata().map_err(ImageError::io("stat", &full))?;
        if !meta.is_file() {
            return Err(ImageError::io("read", &full)(std::io::Error::other(
                "not a regular file",
            )));
        }
        Ok((file, meta.len()))
    }

    /// A small document, at most [`oci::MAX_DOCUMENT`] bytes.
    fn document(&self, rel: &str) -> Result<Vec<u8>, ImageError> {
        let (file, len) = self.open_file(rel)?;
        if len > oci::MAX_DOCUMENT {
            return Err(ImageError::BadDocument {
                what: rel.to_owned(),
                detail: format!("{len} bytes, more than the {} allowed", oci::MAX_DOCUMENT),
            });
        }
        let mut buf = Vec::with_capacity(len as usize);
        file.take(oci::MAX_DOCUMENT)
            .read_to_end(&mut buf)
            .map_err(ImageError::io("read", self.path.join(rel)))?;
        Ok(buf)
    }

    /// A blob named by `desc`, whole and verified (for documents).
    fn blob_document(
        &self,
        desc: &Descriptor,
        what: &str,
    ) -> Result<(Vec<u8>, Digest), ImageError> {
        let digest = parse_digest(&desc.digest, what)?;
        if desc.size > oci::MAX_DOCUMENT {
            return Err(ImageError::BadDocument {
                what: what.to_owned(),
                detail: format!("its descriptor says {} bytes, more than allowed", desc.size),
            });
        }
        let rel = blob_rel(&digest);
        let bytes = match self.document(&rel) {
            Ok(b) => b,
            Err(ImageError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                return Err(ImageError::MissingBlob {
                    digest: digest.to_string(),
                });
            }
            Err(e) => return Err(e),
        };
        verify(&digest, desc.size, &Digest::of(&bytes), bytes.len() as u64)?;
        Ok((bytes, digest))
    }

    /// Choose the image to import and verify its documents.
    pub(crate) fn select(&self, want: Option<&str>) -> Result<Selected, ImageError> {
        match self.format {
            Format::OciLayout => self.select_oci(want),
            Format::DockerSave => self.select_docker(want),
        }
    }

    fn select_oci(&self, want: Option<&str>) -> Result<Selected, ImageError> {
        let index: Index = parse_json(&self.document("index.json")?, "index.json")?;
        let (desc, ref_name) = self.choose(&index, want, 0)?;
        let what = format!("manifest {}", desc.digest);
        let (bytes, digest) = self.blob_document(&desc, &what)?;
        let manifest: Manifest = parse_json(&bytes, &what)?;
        if manifest.schema_version != 2 {
            return Err(ImageError::BadDocument {
                what,
                detail: format!("schemaVersion {} (expected 2)", manifest.schema_version),
            });
        }
        let cwhat = format!("config {}", manifest.config.digest);
        let (config_bytes, config_digest) = self.blob_document(&manifest.config, &cwhat)?;
        let config = parse_config(&config_bytes, &cwhat)?;
        if config.rootfs.diff_ids.len() != manifest.layers.len() {
            return Err(ImageError::BadDocument {
                what: cwhat,
                detail: format!(
                    "{} diff_ids for {} layers",
                    config.rootfs.diff_ids.len(),
                    manifest.layers.len()
                ),
            });
        }
        let mut layers = Vec::new();
        for (l, diff) in manifest.layers.iter().zip(&config.rootfs.diff_ids) {
            let d = parse_digest(&l.digest, "a layer descriptor")?;
            layers.push(LayerSource {
                rel: blob_rel(&d),
                expect: Some((d, l.size)),
                media_type: Some(l.media_type.clone()),
                diff_id: parse_digest(diff, &cwhat)?,
            });
        }
        Ok(Selected {
            manifest: Some((bytes, digest)),
            config_bytes,
            config_digest,
            config,
            layers,
            ref_name,
        })
    }

    /// Pick one manifest from an index, following one nested index.
    fn choose(
        &self,
        index: &Index,
        want: Option<&str>,
        depth: u32,
    ) -> Result<(Descriptor, Option<String>), ImageError> {
        let ref_of = |d: &Descriptor| d.annotations.get(oci::ANNOTATION_REF_NAME).cloned();
        let mut cands: Vec<&Descriptor> = index.manifests.iter().collect();
        if let Some(w) = want {
            cands.retain(|d| {
                d.digest == w || ref_of(d).is_some_and(|r| r == w || r.ends_with(&format!(":{w}")))
            });
            if cands.is_empty() && depth == 0 {
                let refs: Vec<String> = index.manifests.iter().filter_map(ref_of).collect();
                return Err(ImageError::Ambiguous {
                    detail: format!(
                        "no image tagged {w:?} in the layout (it has: {})",
                        refs.join(", ")
                    ),
                });
            }
        }
        if cands.len() > 1 {
            let arch = std::env::consts::ARCH
                .replace("x86_64", "amd64")
                .replace("aarch64", "arm64");
            let on_host: Vec<&Descriptor> = cands
                .iter()
                .copied()
                .filter(|d| {
                    d.platform
                        .as_ref()
                        .is_some_and(|p| p.os == "linux" && p.architecture == arch)
                })
                .collect();
            if on_host.len() == 1 {
                cands = on_host;
            }
        }
        let desc = match cands.as_slice() {
            [one] => (*one).clone(),
            [] => {
                return Err(ImageError::BadDocument {
                    what: "index.json".into(),
                    detail: "it lists no image manifest".into(),
                });
            }
            many => {
                let refs: Vec<String> = many
                    .iter()
                    .map(|d| ref_of(d).unwrap_or_else(|| d.digest.clone()))
                    .collect();
                return Err(ImageError::Ambiguous {
                    detail: format!(
                        "the layout holds {} images ({}): choose one with --ref",
                        many.len(),
                        refs.join(", ")
                    ),
                });
            }
        };
        let name = ref_of(&desc);
        if desc.media_type == oci::MEDIA_INDEX || desc.media_type == oci::MEDIA_DOCKER_LIST {
            if depth > 0 {
                return Err(ImageError::Unsupported(
                    "indexes nested more than one deep".into(),
                ));
            }
            let what = format!("index {}", desc.digest);
            let (bytes, _) = self.blob_document(&desc, &what)?;
            let nested: Index = parse_json(&bytes, &what)?;
            let (d, n) = self.choose(&nested, None, depth + 1)?;
            return Ok((d, n.or(name)));
        }
        Ok((desc, name))
    }

    fn select_docker(&self, want: Option<&str>) -> Result<Selected, ImageError> {
        let entries: Vec<DockerSaveEntry> =
            parse_json(&self.document("manifest.json")?, "manifest.json")?;
        let tags = |e: &DockerSaveEntry| e.repo_tags.clone().unwrap_or_default();
        let mut cands: Vec<&DockerSaveEntry> = entries.iter().collect();
        if let Some(w) = want {
            cands.retain(|e| {
                tags(e)
                    .iter()
                    .any(|t| t == w || t.ends_with(&format!(":{w}")))
            });
        }
        let entry = match cands.as_slice() {
            [one] => *one,
            [] => {
                return Err(ImageError::Ambiguous {
                    detail: "no matching image in manifest.json".into(),
                });
            }
            many => {
                let all: Vec<String> = many.iter().flat_map(|e| tags(e)).collect();
                return Err(ImageError::Ambiguous {
                    detail: format!(
                        "the archive holds {} images ({}): choose one with --ref",
                        many.len(),
                        all.join(", ")
                    ),
                });
            }
        };
        let cwhat = format!("config {}", entry.config);
        let config_bytes = self.document(&entry.config)?;
        let config_digest = Digest::of(&config_bytes);
        // The config's file name is its digest (`<hex>.json` or `blobs/sha256/<hex>`).
        let stem = entry
            .config
            .rsplit('/')
            .next()
            .unwrap_or("")
            .trim_end_matches(".json");
        if stem.len() == 64 && stem != config_digest.hex() {
            return Err(ImageError::BlobMismatch {
                expected: format!("sha256:{stem}"),
                detail: format!("{} hashes to {config_digest}", entry.config),
            });
        }
        let config = parse_config(&config_bytes, &cwhat)?;
        if config.rootfs.diff_ids.len() != entry.layers.len() {
            return Err(ImageError::BadDocument {
                what: cwhat,
                detail: format!(
                    "{} diff_ids for {} layers",
                    config.rootfs.diff_ids.len(),
                    entry.layers.len()
                ),
            });
        }
        let mut layers = Vec::new();
        for (rel, diff) in entry.layers.iter().zip(&config.rootfs.diff_ids) {
            layers.push(LayerSource {
                rel: rel.clone(),
                expect: None,
                media_type: None,
                diff_id: parse_digest(diff, &cwhat)?,
            });
        }
        Ok(Selected {
            manifest: None,
            config_bytes,
            config_digest,
            config,
            layers,
            ref_name: entry.repo_tags.as_ref().and_then(|t| t.first().cloned()),
        })
    }

    /// The source's path (or its scratch copy).
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

/// `blobs/sha256/<hex>`.
pub(crate) fn blob_rel(d: &Digest) -> String {
    format!("blobs/sha256/{}", d.hex())
}

fn parse_digest(s: &str, what: &str) -> Result<Digest, ImageError> {
    s.parse()
        .map_err(|e: crate::digest::BadDigest| ImageError::BadDocument {
            what: what.to_owned(),
            detail: e.to_string(),
        })
}

fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, ImageError> {
    serde_json::from_slice(bytes).map_err(|e| ImageError::BadDocument {
        what: what.to_owned(),
        detail: e.to_string(),
    })
}

fn parse_config(bytes: &[u8], what: &str) -> Result<ImageConfig, ImageError> {
    let config: ImageConfig = parse_json(bytes, what)?;
    if config.rootfs.kind != "layers" {
        return Err(ImageError::BadDocument {
            what: what.to_owned(),
            detail: format!("rootfs.type {:?} (expected \"layers\")", config.rootfs.kind),
        });
    }
    if !config.os.is_empty() && config.os != "linux" {
        return Err(ImageError::Unsupported(format!(
            "the image is for {:?}, not linux",
            config.os
        )));
    }
    Ok(config)
}

/// Check a blob's measured digest and size against what its descriptor promised.
pub(crate) fn verify(
    expected: &Digest,
    size: u64,
    got: &Digest,
    got_size: u64,
) -> Result<(), ImageError> {
    if got_size != size {
        return Err(ImageError::BlobMismatch {
            expected: expected.to_string(),
            detail: format!("the descriptor says {size} bytes, the blob has {got_size}"),
        });
    }
    if got != expected {
        return Err(ImageError::BlobMismatch {
            expected: expected.to_string(),
            detail: format!("its content hashes to {got}"),
        });
    }
    Ok(())
}
