//! The applied-isolation record: what an environment actually got, as `--json`, `inspect` and the
//! launch measurement show it.

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde::Serialize;
use warren_cgroup::CgroupInfo;

use crate::plan::{LaunchPlan, Protection, RootSource};

/// What isolation an environment actually got: recorded at launch, shown by `--json` and
/// `inspect`. Every field is what was applied, not what was asked for.
#[derive(Debug, Clone, Serialize)]
pub struct Applied {
    /// The environment's name (also its hostname).
    pub name: String,
    /// The workload's pid in the host's pid namespace.
    pub host_pid: i32,
    /// Namespaces the environment has of its own.
    pub namespaces: Vec<&'static str>,
    /// The id mapping: uid/gid 0 inside is `host_base` outside.
    pub uid_map: IdMap,
    /// The root filesystem.
    pub root: RootInfo,
    /// Size of the writable `/tmp` and `/dev/shm` tmpfs in bytes.
    pub tmpfs_size: u64,
    /// Masked `/proc` paths.
    pub masked_paths: Vec<String>,
    /// Read-only `/proc` paths.
    pub readonly_paths: Vec<String>,
    /// Device nodes present in `/dev`.
    pub devices: Vec<String>,
    /// The cgroup, or `None` if allowed to be missing.
    pub cgroup: Option<CgroupInfo>,
    /// Capabilities the workload keeps (`--cap-add`: in its permitted, effective, inheritable,
    /// ambient and bounding sets; empty by default).
    pub capabilities: Vec<String>,
    /// Whether `no_new_privs` is set (always true).
    pub no_new_privs: bool,
    /// The seccomp filter.
    pub seccomp: SeccompInfo,
    /// Landlock.
    pub landlock: LandlockInfo,
    /// Network.
    pub network: &'static str,
    /// The virtual interface, when the environment has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub net: Option<crate::net::NetInfo>,
    /// Protections allowed to be missing that actually were.
    pub degraded: Vec<&'static str>,
    /// The image's name, for an image root.
    pub image_name: Option<String>,
    /// The image's manifest digest, for an image root: what `inspect` shows and the launch
    /// measurement records.
    pub image_manifest_digest: Option<String>,
    /// The volumes and host directories mounted in, by identity (name or host path, place,
    /// mode), never their contents.
    pub mounts: Vec<crate::plan::MountSpec>,
    /// With a writable root, the size in bytes of its upper tmpfs (left out when the root is
    /// read-only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub writable_root: Option<u64>,
    /// The digest of the generated `/etc/hosts`, `/etc/hostname` and `/etc/resolv.conf`
    /// (`crate::etcfiles::digest`); `None` for a `--binary` root.
    pub etc_files: Option<String>,
    /// The user the workload runs as (`uid:gid`), when not root.
    pub user: Option<String>,
    /// How long the launch took, from `launch` being called to the workload's `execve`, in
    /// microseconds (start-up, without the caller's own work and without teardown).
    pub launch_us: u64,
    /// The launch's record in the event log (measured launch).
    pub measurement: Option<Measurement>,
}

/// Where a launch was recorded in the event log, and the digests golden values compare.
#[derive(Debug, Clone, Serialize)]
pub struct Measurement {
    /// The root of trust the record was extended into.
    pub root: &'static str,
    /// The record's number in the log.
    pub recnum: u64,
    /// The record's digest, `sha256:<hex>`.
    pub digest: String,
    /// The image tree digest, `blake3:<hex>`.
    pub image_digest: String,
    /// The OCI manifest digest, when the image came from one.
    pub image_manifest_digest: Option<String>,
    /// The digest of the isolation configuration, `sha256:<hex>`.
    pub config_digest: String,
}

/// The uid/gid mapping of an environment.
#[derive(Debug, Clone, Serialize)]
pub struct IdMap {
    /// The first id inside (0).
    pub inside: u32,
    /// The first host id.
    pub host_base: u32,
    /// How many ids are mapped.
    pub size: u32,
}

/// The root filesystem of an environment.
#[derive(Debug, Clone, Serialize)]
pub struct RootInfo {
    /// `rootfs`, `binary` or `image`.
    pub kind: &'static str,
    /// The image directory, or the binary.
    pub source: PathBuf,
    /// Whether the root is read-only: true unless it is a writable root (an overlay whose
    /// lower layer, the measured root, stays read-only).
    pub read_only: bool,
    /// For `binary` roots: the files placed in it, and every entry below a directory added with
    /// `--with` (or for an interpreter), as (host, target). The measurement covers all of them.
    pub files: Vec<(PathBuf, PathBuf)>,
}

/// The seccomp filter of an environment.
#[derive(Debug, Clone, Serialize)]
pub struct SeccompInfo {
    /// `filter`, or `none` when allowed to be missing.
    pub mode: &'static str,
    /// `sha256:<hex>` of the installed program's bytes, exactly as handed to `seccomp(2)`
    /// (`warren_seccomp::Program::digest`).
    pub profile_digest: Option<String>,
    /// What a denied system call gets.
    pub default_action: &'static str,
    /// The profile: `default`, `strict` or `file PATH (sha256:<digest of the file>)`.
    pub profile: String,
}

/// Landlock as applied to an environment.
#[derive(Debug, Clone, Serialize)]
pub struct LandlockInfo {
    /// The kernel's Landlock ABI, if it has one.
    pub kernel_abi: Option<i32>,
    /// The ABI whose rights Warren requested.
    pub requested_abi: i32,
    /// `full`, `partial` or `none`, as reported by the environment.
    pub status: String,
}

/// The record of what a launch of `plan` applies, as known in the parent right after the fork;
/// the child's reports and the measurement fill in the rest.
pub(crate) fn initial(
    plan: &LaunchPlan,
    pid: i32,
    landlock_abi: Option<i32>,
    profile_digest: &str,
    degraded: &BTreeSet<Protection>,
) -> Applied {
    let root = match &plan.root {
        RootSource::Rootfs(dir) => RootInfo {
            kind: "rootfs",
            source: dir.clone(),
            read_only: plan.writable_root.is_none(),
            files: vec![],
        },
        RootSource::Image(dir) => RootInfo {
            kind: "image",
            source: dir.clone(),
            read_only: plan.writable_root.is_none(),
            files: vec![],
        },
        RootSource::Binary(b) => {
            let mut files = vec![(b.binary.host.clone(), b.binary.target.clone())];
            files.extend(
                b.interpreter
                    .iter()
                    .chain(&b.libraries)
                    .chain(b.added.iter().flat_map(|a| &a.files))
                    .map(|e| (e.host.clone(), e.target.clone())),
            );
            RootInfo {
                kind: "binary",
                source: b.binary.host.clone(),
                read_only: plan.writable_root.is_none(),
                files,
            }
        }
    };
    Applied {
        name: plan.name.to_string(),
        host_pid: pid,
        namespaces: vec!["user", "pid", "mount", "uts", "ipc", "cgroup", "net"],
        uid_map: IdMap {
            inside: 0,
            host_base: 0,
            size: 0,
        },
        root,
        tmpfs_size: plan.tmpfs_size,
        masked_paths: crate::policy::MASKED_PROC_PATHS
            .iter()
            .map(|(p, _)| format!("/proc/{p}"))
            .collect(),
        readonly_paths: crate::policy::READONLY_PROC_PATHS
            .iter()
            .map(|(p, _)| format!("/proc/{p}"))
            .collect(),
        devices: crate::policy::DEVICES
            .iter()
            .map(|(d, _)| format!("/dev/{d}"))
            .collect(),
        cgroup: None,
        capabilities: plan
            .capabilities
            .iter()
            .map(|c| c.name.to_owned())
            .collect(),
        no_new_privs: true,
        seccomp: SeccompInfo {
            mode: "filter",
            profile_digest: Some(profile_digest.to_owned()),
            default_action: "errno EPERM",
            profile: plan.seccomp.name().to_owned(),
        },
        landlock: LandlockInfo {
            kernel_abi: landlock_abi,
            requested_abi: crate::confine::LANDLOCK_ABI as i32,
            status: "none".into(),
        },
        network: "none (loopback only)",
        net: None,
        launch_us: 0,
        degraded: degraded.iter().map(|p| p.as_str()).collect(),
        measurement: None,
        image_name: plan.image_name.clone(),
        image_manifest_digest: plan.image_manifest_digest.clone(),
        mounts: plan.mounts.clone(),
        writable_root: plan.writable_root,
        etc_files: None,
        user: plan.user.as_ref().map(|u| format!("{}:{}", u.uid, u.gid)),
    }
}
