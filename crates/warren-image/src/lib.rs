//! Warren's image store: run what people already build.
//!
//! This crate imports container images in the two formats tools write to disk, an **OCI image
//! layout** (a directory or a tar of one, as `umoci`, `skopeo`, `buildah` and `docker buildx`
//! write it) and a **`docker save` archive**, into a content-addressed store under the state
//! directory (`<data-dir>/images`, docs/files.md), and resolves a stored image for `warren run --image`.
//!
//! * [`oci`]: the JSON documents (index, manifest, config, `docker save`'s `manifest.json`).
//! * [`digest`]: `sha256:` digests and the hashing reader that checks every blob's digest and
//!   size against its descriptor while it is read, once.
//! * [`source`]: reading an import source (directory or tar) into verified blobs.
//! * [`unpack`]: applying layers (tar, tar+gzip, tar+zstd) onto one root without ever leaving it:
//!   every path is resolved beneath the root with `openat2`, nothing goes through a symlink,
//!   whiteouts and opaque directories are applied, hostile entries are refused by name, and
//!   limits bound file counts, sizes and depth.
//! * [`store`]: the store itself: blobs by digest, unpacked roots deduplicated by the digest of
//!   their layer chain, the name index, locking, garbage collection, and atomic imports (a failed
//!   import leaves nothing behind).
//! * [`user`]: the image's `User` resolved against its own `/etc/passwd` and `/etc/group`.
//!
//! File ownership: an unpacked root keeps the image's own uids and gids on disk (image uid 1000
//! is host uid 1000 in the store). The launcher mounts the root through an idmapped mount with
//! the environment's user namespace, so the one copy appears with the right owners inside every
//! environment, whatever its host uid range. `docs/images.md` explains the choice.
#![forbid(unsafe_code)]

pub mod digest;
mod error;
pub mod oci;
pub mod source;
pub mod store;
pub mod unpack;
pub mod user;

pub use digest::Digest;
pub use error::ImageError;
pub use store::{ImageRecord, ImportOptions, ImportReport, Progress, ResolvedImage, Store};
pub use unpack::Limits;
