//! The one error type of the image store. Each variant says what was being done and names the
//! file, blob or archive entry concerned.

use std::path::PathBuf;

/// What went wrong while importing, listing, resolving or removing an image.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// A file or directory could not be read or written.
    #[error("{what} {}", path.display())]
    Io {
        /// What was being done (`read`, `create`, ...).
        what: &'static str,
        /// The file concerned.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The source is neither an OCI image layout nor a `docker save` archive.
    #[error(
        "{} is not an image: expected an OCI image layout (a directory or tar holding \
         oci-layout and index.json) or a docker save archive (a tar holding manifest.json)",
        path.display()
    )]
    UnknownFormat {
        /// The source.
        path: PathBuf,
    },
    /// A JSON document (index, manifest, config) is malformed or lacks a required field.
    #[error("{what} is not valid: {detail}")]
    BadDocument {
        /// Which document (`index.json`, `manifest sha256:...`).
        what: String,
        /// What is wrong.
        detail: String,
    },
    /// A blob's content does not match its descriptor.
    #[error("blob {expected} does not match its descriptor: {detail}")]
    BlobMismatch {
        /// The digest the descriptor names.
        expected: String,
        /// What differs (size or digest, with the values).
        detail: String,
    },
    /// A blob the manifest names is not in the source.
    #[error("blob {digest} is missing from the image")]
    MissingBlob {
        /// Its digest.
        digest: String,
    },
    /// The index holds several images and none was chosen.
    #[error("{detail}")]
    Ambiguous {
        /// The choices.
        detail: String,
    },
    /// A layer or config uses something Warren does not support.
    #[error("{0}")]
    Unsupported(String),
    /// A layer entry is unsafe or breaks the layer format; nothing was imported.
    #[error("layer {layer}: entry {entry:?}: {reason}")]
    UnsafeEntry {
        /// The layer (its digest or position).
        layer: String,
        /// The entry's path as written in the archive.
        entry: String,
        /// Why it was refused.
        reason: String,
    },
    /// An archive broke one of the import limits; nothing was imported.
    #[error("{what} exceeds the limit of {limit} ({flag}): refusing the image")]
    Limit {
        /// What was counted.
        what: String,
        /// The limit.
        limit: u64,
        /// The flag that raises it.
        flag: &'static str,
    },
    /// A tar stream could not be read.
    #[error("layer {layer}: the archive is corrupt")]
    Corrupt {
        /// The layer.
        layer: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// No image by that name.
    #[error("no image named {0}: see `warren image ls`")]
    NotFound(String),
    /// An environment uses the image.
    #[error("image {name} is in use by environment {env}: stop it first")]
    InUse {
        /// The image.
        name: String,
        /// The environment (or a description when unknown).
        env: String,
    },
    /// The image's `User` cannot be resolved.
    #[error("user {user:?} of the image: {reason}")]
    User {
        /// The user as the config says it.
        user: String,
        /// Why it cannot be used.
        reason: String,
    },
    /// The unpacked root could not be measured (its tree digest).
    #[error("measure the unpacked root")]
    Measure(#[source] warren_attest::measure::MeasureError),
    /// The store's index is damaged.
    #[error("the image index {} is damaged: {detail}", path.display())]
    Index {
        /// The index file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
}

impl ImageError {
    /// An `Io` error.
    pub(crate) fn io(
        what: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> ImageError {
        let path = path.into();
        move |source| ImageError::Io { what, path, source }
    }
}
