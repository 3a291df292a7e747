//! The last steps before `execve`, in the order they must run: Landlock, dropping every
//! capability but those `--cap-add` keeps, `no_new_privs`, then the seccomp filter (child side).
//!
//! Landlock comes first because creating its domain needs either `no_new_privs` or
//! `CAP_SYS_ADMIN`; seccomp comes last so that the steps before it may use system calls the
//! workload never may.

use landlock::{
    ABI, Access, AccessFs, CompatLevel, Compatible, RulesetAttr, RulesetCreatedAttr, RulesetStatus,
    Scope, path_beneath_rules,
};
use rustix::thread::{CapabilitiesSecureBits, CapabilitySet, CapabilitySets};

/// The Landlock ABI whose rights Warren has reviewed and asks for; newer kernels are asked for
/// no more than this, older ones for what they have (reported, and refused unless allowed).
pub(crate) const LANDLOCK_ABI: ABI = ABI::V6;

/// How far Landlock was enforced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LandlockOutcome {
    /// Every right Warren asked for is enforced.
    Full,
    /// Some rights are enforced; the kernel lacks the rest.
    Partial,
    /// The kernel has no Landlock.
    None,
}

impl LandlockOutcome {
    pub(crate) fn as_str(&self) -> &'static str {
        match self {
            LandlockOutcome::Full => "full",
            LandlockOutcome::Partial => "partial",
            LandlockOutcome::None => "none",
        }
    }
}

/// Restrict the filesystem to: read and execute everywhere in the (already read-only) root;
/// read, write and create in `/tmp`, `/dev/shm` and every writable volume or bind mount; read
/// and write the device nodes. Scope abstract unix sockets and signals to the environment.
///
/// With a writable root, writes are also allowed beneath every top-level directory of the root
/// but `/proc`, `/sys` and `/dev` (and `/dev/shm`, as always): Landlock grants rights only
/// beneath a path, so new entries directly in `/` stay refused.
pub(crate) fn landlock(
    mounts: &[crate::plan::MountSpec],
    writable_root: bool,
) -> Result<LandlockOutcome, landlock::RulesetError> {
    let abi = LANDLOCK_ABI;
    let top: Vec<std::path::PathBuf> = if writable_root {
        std::fs::read_dir("/")
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .map(|e| std::path::Path::new("/").join(e.file_name()))
            .filter(|p| {
                !["/proc", "/sys", "/dev"]
                    .iter()
                    .any(|r| p == std::path::Path::new(r))
            })
            .collect()
    } else {
        Vec::new()
    };
    let status = landlock::Ruleset::default()
        .set_compatibility(CompatLevel::BestEffort)
        .handle_access(AccessFs::from_all(abi))?
        .scope(Scope::from_all(abi))?
        .create()?
        .add_rules(path_beneath_rules(["/"], AccessFs::from_read(abi)))?
        .add_rules(path_beneath_rules(
            ["/tmp", "/dev/shm"],
            AccessFs::from_all(abi),
        ))?
        .add_rules(path_beneath_rules(
            mounts.iter().filter(|m| !m.read_only).map(|m| &m.dest),
            AccessFs::from_all(abi),
        ))?
        .add_rules(path_beneath_rules(&top, AccessFs::from_all(abi)))?
        // The device nodes of `policy::DEVICES` (and with `-t` the environment's own ptys and
        // its controlling terminal): one rule beneath `/dev` instead of one per node. It grants
        // no more, because `/dev` is the read-only skeleton (`crate::skeleton`) holding only
        // those nodes, four links, `/dev/shm` (allowed everything above), the read-only mailbox
        // client and, with `-t`, `/dev/pts` and `/dev/tty`; each rule costs the launch five
        // system calls.
        .add_rules(path_beneath_rules(["/dev"], AccessFs::from_file(abi)))?
        .restrict_self()?;
    Ok(match status.ruleset {
        RulesetStatus::FullyEnforced => LandlockOutcome::Full,
        RulesetStatus::PartiallyEnforced => LandlockOutcome::Partial,
        RulesetStatus::NotEnforced => LandlockOutcome::None,
    })
}

/// `SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED`, which rustix does not name.
const NO_CAP_AMBIENT_RAISE_LOCKED: CapabilitiesSecureBits =
    CapabilitiesSecureBits::from_bits_retain(1 << 7);

/// Empty all five capability sets but for `keep` (`--cap-add`), and lock the securebits so
/// that `execve` of a root-owned or file-capability binary cannot bring any back.
///
/// With `user`, the workload's ids change to it between locking the securebits and emptying
/// the sets: `NO_SETUID_FIXUP` keeps `CAP_SETUID`/`CAP_SETGID` usable across the change, and
/// is switched off (and locked off) right after, so a workload that later changes its own
/// uid away from 0 loses its capabilities as on any Linux system (nginx's workers do).
///
/// `keep` ends up in the permitted, effective, inheritable and ambient sets (the ambient set
/// carries it across the workload's `execve`, since `NO_ROOT` gives uid 0 nothing) and in the
/// bounding set; `NO_CAP_AMBIENT_RAISE` is locked on, so nothing outside `keep` comes back.
pub(crate) fn drop_capabilities(
    user: Option<&crate::plan::RunAs>,
    keep: &[warren_spec::Capability],
) -> std::io::Result<()> {
    let kept = keep.iter().fold(CapabilitySet::empty(), |set, c| {
        set | CapabilitySet::from_bits_retain(1 << c.number)
    });
    for cap in 0..64 {
        if kept.bits() & (1 << cap) != 0 {
            continue;
        }
        match warren_sys::capbset_drop(cap) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(22) => break, // EINVAL: past the last capability
            Err(e) => return Err(e),
        }
    }
    rustix::thread::clear_ambient_capability_set()?;
    rustix::thread::set_capabilities_secure_bits(
        CapabilitiesSecureBits::NO_ROOT
            | CapabilitiesSecureBits::NO_ROOT_LOCKED
            | CapabilitiesSecureBits::NO_SETUID_FIXUP
            | CapabilitiesSecureBits::KEEP_CAPS_LOCKED,
    )?;
    if let Some(u) = user {
        let groups: Vec<rustix::process::Gid> = u
            .groups
            .iter()
            .map(|g| rustix::process::Gid::from_raw(*g))
            .collect();
        rustix::thread::set_thread_groups(&groups)?;
        let gid = rustix::process::Gid::from_raw(u.gid);
        rustix::thread::set_thread_res_gid(gid, gid, gid)?;
        let uid = rustix::process::Uid::from_raw(u.uid);
        rustix::thread::set_thread_res_uid(uid, uid, uid)?;
    }
    // Keep CAP_SETPCAP until the securebits are final.
    let setpcap = CapabilitySet::SETPCAP;
    rustix::thread::set_capabilities(
        None,
        CapabilitySets {
            effective: kept | setpcap,
            permitted: kept | setpcap,
            inheritable: kept,
        },
    )?;
    for c in keep {
        rustix::thread::configure_capability_in_ambient_set(
            CapabilitySet::from_bits_retain(1 << c.number),
            true,
        )?;
    }
    rustix::thread::set_capabilities_secure_bits(
        CapabilitiesSecureBits::NO_ROOT
            | CapabilitiesSecureBits::NO_ROOT_LOCKED
            | CapabilitiesSecureBits::NO_SETUID_FIXUP_LOCKED
            | CapabilitiesSecureBits::KEEP_CAPS_LOCKED
            | CapabilitiesSecureBits::NO_CAP_AMBIENT_RAISE
            | NO_CAP_AMBIENT_RAISE_LOCKED,
    )?;
    rustix::thread::set_capabilities(
        None,
        CapabilitySets {
            effective: kept,
            permitted: kept,
            inheritable: kept,
        },
    )?;
    Ok(())
}
