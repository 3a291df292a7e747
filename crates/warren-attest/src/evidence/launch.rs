//! The content of a launch record: what was launched, from which image, with which
//! isolation. Field order is the canonical serialisation (compact JSON, `serde_json`), and the
//! record's digest is SHA-256 of those bytes.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The name of the tree digest format, recorded next to every digest.
pub const TREE_FORMAT: &str = "warren-tree/2";

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
    /// For an environment spawned by another (protocol §16): which environment made it, from
    /// which template, and that environment's own launch record, so a verifier can follow the
    /// chain to an environment the administrator declared. Left out of the canonical bytes
    /// when absent, so other launches keep the digests they had before the field existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spawn: Option<SpawnProvenance>,
}

/// Where a spawned environment came from, as its launch record states it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpawnProvenance {
    /// The spawner's name.
    pub parent: String,
    /// The template the child was made from.
    pub template: String,
    /// The record number of the spawner's current launch record in the same log (`None` when
    /// the kernel did not know it: the spawner then cannot be followed).
    pub parent_recnum: Option<u64>,
    /// That record's digest, `sha256:<hex>`.
    pub parent_digest: Option<String>,
}

/// The image an environment was started from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageMeasurement {
    /// `rootfs` (a directory tree), `image` (a root from the image store) or `binary` (single
    /// files).
    pub kind: String,
    /// The tree digest, `blake3:<hex>`.
    pub digest: String,
    /// The tree digest's format, [`TREE_FORMAT`].
    pub format: String,
    /// The OCI manifest digest (`sha256:<hex>`) when the launch came from an OCI image.
    pub manifest_digest: Option<String>,
    /// How `digest` was obtained for this launch ([`DigestSource`]): `walk` (the tree was
    /// walked now), `store` (computed when the image store imported the root, which no one can
    /// change since) or `seal` (computed by `warren rootfs seal`, whose read-only mount still
    /// holds). Absent in records written before the field existed (they were all walks); left
    /// out of the canonical bytes when absent, so those records keep their digests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest_source: Option<String>,
}

/// How a launch obtained its image digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DigestSource {
    /// The tree was walked at launch (large files' content digests may come from the
    /// content cache of the measuring walk).
    Walk,
    /// The image store's digest, computed at import over the root it stores read-only.
    Store,
    /// A `warren rootfs seal` digest whose read-only mount was checked at launch.
    Seal,
}

impl DigestSource {
    /// The name recorded in `image.digest_source`.
    pub fn as_str(self) -> &'static str {
        match self {
            DigestSource::Walk => "walk",
            DigestSource::Store => "store",
            DigestSource::Seal => "seal",
        }
    }
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
    /// The volumes and host directories mounted in, by identity (never their contents), in
    /// the order mounted. Left out of the serialisation when empty, so launches without
    /// mounts keep the digests they had before the field existed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mounts: Vec<LaunchMount>,
    /// With a writable root, the size of its upper tmpfs: the measured tree is then the
    /// read-only lower layer, and writes go to memory. Left out when the root is read-only
    /// (digests of earlier launches are unchanged).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub writable_root: Option<u64>,
    /// The digest of the generated `/etc/hosts`, `/etc/hostname` and `/etc/resolv.conf`
    /// (their contents are configuration: the host names, addresses and name servers given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etc_files: Option<String>,
}

/// One volume or bind mount of a launch, as measured.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LaunchMount {
    /// `volume` or `bind`.
    pub kind: String,
    /// The volume's name, or the bind's host path (as resolved).
    pub source: String,
    /// The absolute path inside.
    pub dest: String,
    /// Whether it is read-only.
    pub read_only: bool,
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

    /// The canonical JSON rules of docs/attestation.md ("Canonical JSON"), byte for byte.
    #[test]
    fn canonical_json_escapes() {
        let c = LaunchConfig {
            memory: None,
            pids: Some(64),
            cpu_micros: None,
            tmpfs_size: 0,
            seccomp_profile: None,
            capabilities: vec![],
            no_new_privs: true,
            landlock_abi: Some(-1),
            namespaces: vec!["é/\"\\\u{8}\u{9}\u{a}\u{c}\u{d}\u{1b}\u{7f}".into()],
            network: "none".into(),
            degraded: vec![],
            mounts: vec![],
            writable_root: None,
            etc_files: None,
        };
        let bytes = serde_json::to_vec(&c).unwrap();
        let want = "{\"memory\":null,\"pids\":64,\"cpu_micros\":null,\"tmpfs_size\":0,\
                    \"seccomp_profile\":null,\"capabilities\":[],\"no_new_privs\":true,\
                    \"landlock_abi\":-1,\"namespaces\":[\"\u{e9}/\\\"\\\\\\b\\t\\n\\f\\r\\u001b\u{7f}\"],\
                    \"network\":\"none\",\"degraded\":[]}";
        assert_eq!(String::from_utf8(bytes).unwrap(), want);
    }
}
