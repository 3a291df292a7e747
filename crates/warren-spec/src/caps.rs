//! Linux capabilities an environment may be given (`warren run --cap-add`, manifest
//! `capabilities = [...]`): the closed set that acts only on objects the environment's own user
//! namespace owns, and, for every other capability, the reason it is refused
//! (`docs/threat-model.md` carries the same table).

use std::fmt;

/// A capability an environment may hold: its kernel number and its name (`CAP_CHOWN`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Capability {
    /// The kernel's number (`CAP_CHOWN` is 0).
    pub number: u32,
    /// The kernel's name, `CAP_` included.
    pub name: &'static str,
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}

/// The capabilities `--cap-add` accepts, with why each stays inside the environment.
pub const ALLOWED: &[(u32, &str, &str)] = &[
    (
        0,
        "CAP_CHOWN",
        "chown only to uids/gids mapped into the environment's user namespace, on files it can reach (its tmpfs; the root is read-only)",
    ),
    (
        1,
        "CAP_DAC_OVERRIDE",
        "bypasses permission bits only on inodes whose owner is mapped into its user namespace",
    ),
    (
        3,
        "CAP_FOWNER",
        "acts as owner only of inodes whose owner is mapped into its user namespace",
    ),
    (
        4,
        "CAP_FSETID",
        "keeps set-id bits on its own files; no_new_privs makes every set-id bit inert at execve",
    ),
    (
        5,
        "CAP_KILL",
        "signals only processes of its own user namespace, which its pid namespace already confines to itself",
    ),
    (
        6,
        "CAP_SETGID",
        "switches only among gids mapped into its user namespace (its own unprivileged range)",
    ),
    (
        7,
        "CAP_SETUID",
        "switches only among uids mapped into its user namespace (its own unprivileged range)",
    ),
    (
        8,
        "CAP_SETPCAP",
        "could only drop capabilities from its own bounding set, which seccomp refuses anyway (PR_CAPBSET_DROP, capset); it never adds one, as the securebits are locked; accepted for programs that ask for it",
    ),
    (
        10,
        "CAP_NET_BIND_SERVICE",
        "binds ports below 1024 only in its own network namespace",
    ),
    (
        29,
        "CAP_AUDIT_WRITE",
        "grants nothing: the kernel refuses audit messages from a non-initial user namespace; accepted so programs that ask for it start",
    ),
];

/// Every other capability, with the reason it is refused.
pub const REFUSED: &[(u32, &str, &str)] = &[
    (
        2,
        "CAP_DAC_READ_SEARCH",
        "it enables open_by_handle_at, which reaches files outside the environment's root",
    ),
    (
        9,
        "CAP_LINUX_IMMUTABLE",
        "the environment's files are a read-only root and its own tmpfs, where immutable flags serve no purpose",
    ),
    (
        11,
        "CAP_NET_BROADCAST",
        "unused by the kernel; nothing needs it",
    ),
    (
        12,
        "CAP_NET_ADMIN",
        "it would let the environment change its interface's addresses and routes, forging the identity the host's firewall rules trust",
    ),
    (
        13,
        "CAP_NET_RAW",
        "raw and packet sockets forge source addresses and ARP toward the host's bridge and other environments",
    ),
    (
        14,
        "CAP_IPC_LOCK",
        "locked memory escapes the pressure the memory limit relies on",
    ),
    (
        15,
        "CAP_IPC_OWNER",
        "nothing inside needs to bypass System V IPC permissions",
    ),
    (
        16,
        "CAP_SYS_MODULE",
        "loading kernel modules changes the host's kernel",
    ),
    (
        17,
        "CAP_SYS_RAWIO",
        "raw I/O reaches the host's devices and ports",
    ),
    (
        18,
        "CAP_SYS_CHROOT",
        "the seccomp profile refuses chroot (a chroot with a writable directory is an escape aid), so the capability would grant nothing",
    ),
    (
        19,
        "CAP_SYS_PTRACE",
        "tracing processes can rewrite their system calls past the seccomp filter and read the init's memory",
    ),
    (20, "CAP_SYS_PACCT", "process accounting is the host's"),
    (
        21,
        "CAP_SYS_ADMIN",
        "it opens mounts, namespaces and a large kernel attack surface",
    ),
    (22, "CAP_SYS_BOOT", "rebooting is the host's"),
    (
        23,
        "CAP_SYS_NICE",
        "real-time priorities let one environment starve the host's CPUs",
    ),
    (
        24,
        "CAP_SYS_RESOURCE",
        "it overrides resource limits the environment's confinement counts on",
    ),
    (25, "CAP_SYS_TIME", "the clock is the host's"),
    (26, "CAP_SYS_TTY_CONFIG", "terminals are the host's"),
    (
        27,
        "CAP_MKNOD",
        "device nodes are never created inside (seccomp allows mknod of FIFOs and sockets only, which need no capability)",
    ),
    (
        28,
        "CAP_LEASE",
        "nothing inside needs leases on files it does not own",
    ),
    (
        30,
        "CAP_AUDIT_CONTROL",
        "the audit configuration is the host's",
    ),
    (
        31,
        "CAP_SETFCAP",
        "file capabilities are ignored under no_new_privs, and the root is read-only",
    ),
    (
        32,
        "CAP_MAC_OVERRIDE",
        "mandatory access control policy is the host's",
    ),
    (
        33,
        "CAP_MAC_ADMIN",
        "mandatory access control policy is the host's",
    ),
    (
        34,
        "CAP_SYSLOG",
        "the kernel log is the host's and shows kernel addresses",
    ),
    (35, "CAP_WAKE_ALARM", "wake alarms are the host's"),
    (36, "CAP_BLOCK_SUSPEND", "suspend is the host's"),
    (37, "CAP_AUDIT_READ", "the audit log is the host's"),
    (
        38,
        "CAP_PERFMON",
        "performance monitoring observes the host and other environments",
    ),
    (39, "CAP_BPF", "BPF programs run in the host's kernel"),
    (
        40,
        "CAP_CHECKPOINT_RESTORE",
        "it lets the environment choose pids and read other processes' state",
    ),
];

/// A capability name that was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CapabilityError {
    /// Not a capability the kernel knows.
    #[error(
        "unknown capability {0:?}: expected a name such as CHOWN or CAP_CHOWN (allowed: {allowed})",
        allowed = allowed_names()
    )]
    Unknown(String),
    /// A capability that would reach beyond the environment.
    #[error(
        "capability {name} is refused: {reason} (allowed: {allowed})",
        allowed = allowed_names()
    )]
    Refused {
        /// Its name.
        name: &'static str,
        /// Why it is refused.
        reason: &'static str,
    },
}

fn allowed_names() -> String {
    ALLOWED
        .iter()
        .map(|(_, n, _)| n.trim_start_matches("CAP_"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl std::str::FromStr for Capability {
    type Err = CapabilityError;

    /// `CHOWN`, `CAP_CHOWN`, `chown` or `cap_chown`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let upper = s.trim().to_ascii_uppercase();
        let full = if upper.starts_with("CAP_") {
            upper
        } else {
            format!("CAP_{upper}")
        };
        if let Some((number, name, _)) = ALLOWED.iter().find(|(_, n, _)| *n == full) {
            return Ok(Capability {
                number: *number,
                name,
            });
        }
        match REFUSED.iter().find(|(_, n, _)| *n == full) {
            Some((_, name, reason)) => Err(CapabilityError::Refused { name, reason }),
            None => Err(CapabilityError::Unknown(s.to_owned())),
        }
    }
}

/// Parses a list of names into a sorted set without duplicates.
pub fn parse_list<S: AsRef<str>>(names: &[S]) -> Result<Vec<Capability>, CapabilityError> {
    let mut out = names
        .iter()
        .map(|n| n.as_ref().parse::<Capability>())
        .collect::<Result<Vec<_>, _>>()?;
    out.sort();
    out.dedup();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_in_every_spelling() {
        for s in ["CHOWN", "CAP_CHOWN", "chown", "cap_chown"] {
            let c: Capability = s.parse().unwrap();
            assert_eq!((c.number, c.name), (0, "CAP_CHOWN"));
        }
        let c: Capability = "net_bind_service".parse().unwrap();
        assert_eq!(c.number, 10);
    }

    #[test]
    fn refused_ones_name_themselves_and_why() {
        let e = "SYS_ADMIN".parse::<Capability>().unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("CAP_SYS_ADMIN is refused"), "{msg}");
        assert!(msg.contains("mounts"), "{msg}");
        assert!("NET_RAW".parse::<Capability>().is_err());
        let e = "FLY".parse::<Capability>().unwrap_err();
        assert!(e.to_string().contains("unknown capability \"FLY\""), "{e}");
        assert!("ALL".parse::<Capability>().is_err());
    }

    #[test]
    fn every_kernel_capability_is_decided_once() {
        let mut numbers: Vec<u32> = ALLOWED.iter().chain(REFUSED).map(|(n, _, _)| *n).collect();
        numbers.sort();
        assert_eq!(numbers, (0..=40).collect::<Vec<_>>());
    }

    #[test]
    fn lists_are_sorted_and_deduplicated() {
        let l = parse_list(&["SETUID", "chown", "CAP_CHOWN"]).unwrap();
        let names: Vec<_> = l.iter().map(|c| c.name).collect();
        assert_eq!(names, ["CAP_CHOWN", "CAP_SETUID"]);
    }
}
