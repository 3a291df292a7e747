//! `priv.*`: privileges the process holds or could gain: capability sets, `capset`, set-id
//! execution, `no_new_privs`, the seccomp mode and Landlock.

use std::path::Path;
use std::process::Stdio;

use rustix::fs::OFlags;
use rustix::thread::{CapabilitySet, capabilities, set_capabilities};
use serde::{Deserialize, Serialize};

use super::{Ctx, open, self_status};
use crate::procfs::{capability_sets, status_field};
use crate::report::{Report, describe, is_denied};

/// What the hidden `__ids` subcommand prints: the ids and capabilities an `execve` produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ids {
    /// Real uid.
    pub uid: u32,
    /// Effective uid.
    pub euid: u32,
    /// Real gid.
    pub gid: u32,
    /// Effective gid.
    pub egid: u32,
    /// Effective capability set.
    pub cap_eff: u64,
    /// Permitted capability set.
    pub cap_prm: u64,
}

impl Ids {
    /// This process's ids and capabilities.
    pub fn current() -> Self {
        let caps = capabilities(None).unwrap_or(rustix::thread::CapabilitySets {
            effective: CapabilitySet::empty(),
            permitted: CapabilitySet::empty(),
            inheritable: CapabilitySet::empty(),
        });
        Ids {
            uid: rustix::process::getuid().as_raw(),
            euid: rustix::process::geteuid().as_raw(),
            gid: rustix::process::getgid().as_raw(),
            egid: rustix::process::getegid().as_raw(),
            cap_eff: caps.effective.bits(),
            cap_prm: caps.permitted.bits(),
        }
    }

    /// What `after` gained over `self`, in words; empty if nothing.
    pub fn gained(&self, after: &Ids) -> Vec<String> {
        let mut gained = Vec::new();
        if after.euid != self.euid {
            gained.push(format!("euid {} -> {}", self.euid, after.euid));
        }
        if after.egid != self.egid {
            gained.push(format!("egid {} -> {}", self.egid, after.egid));
        }
        let extra = (after.cap_eff | after.cap_prm) & !(self.cap_eff | self.cap_prm);
        if extra != 0 {
            gained.push(format!("capabilities {extra:#x}"));
        }
        gained
    }
}

/// `priv.setuid_exec`: execute each `--setuid-exe` (a set-id or file-capability copy of this
/// probe) and compare the ids it reports with ours. Without one, report `no_new_privs`, which
/// decides whether such a binary could grant anything.
pub fn setuid_exec(ctx: &Ctx) -> Report {
    const P: &str = "priv.setuid_exec";
    let before = Ids::current();
    if ctx.opts.setuid_exe.is_empty() {
        let nnp = self_status()
            .ok()
            .and_then(|s| status_field(&s, "NoNewPrivs").map(str::to_owned));
        return match nnp.as_deref() {
            Some("1") => Report::blocked(
                P,
                "no_new_privs is set: execve ignores set-id bits and file capabilities (no --setuid-exe given)",
            ),
            Some(v) => Report::open(
                P,
                format!(
                    "no_new_privs is {v}: a set-id or file-capability binary would grant privileges (no --setuid-exe given)"
                ),
            ),
            None => Report::skipped(P, "NoNewPrivs unreadable and no --setuid-exe given"),
        };
    }
    let mut notes = Vec::new();
    for exe in &ctx.opts.setuid_exe {
        let out = std::process::Command::new(exe)
            .arg("__ids")
            .stdin(Stdio::null())
            .output();
        let after = match out {
            Ok(o) => serde_json::from_slice::<Ids>(&o.stdout).map_err(|e| e.to_string()),
            Err(e) => Err(describe(&e)),
        };
        match after {
            Ok(after) => {
                let gained = before.gained(&after);
                if !gained.is_empty() {
                    return Report::open(
                        P,
                        format!("{} gained {}", exe.display(), gained.join(", ")),
                    );
                }
                notes.push(format!("{}: nothing gained", exe.display()));
            }
            Err(why) => notes.push(format!("{}: {why}", exe.display())),
        }
    }
    Report::blocked(P, notes.join("; "))
}

/// `priv.capabilities`: open if any of CapInh, CapPrm, CapEff, CapBnd, CapAmb is non-zero.
pub fn capabilities_probe(_: &Ctx) -> Report {
    const P: &str = "priv.capabilities";
    let status = match self_status() {
        Ok(s) => s,
        Err(e) => {
            let ids = Ids::current();
            return if ids.cap_eff | ids.cap_prm == 0 {
                Report::blocked(
                    P,
                    format!(
                        "effective and permitted sets empty (status unreadable: {})",
                        describe(&e)
                    ),
                )
            } else {
                Report::open(
                    P,
                    format!("CapEff={:#x} CapPrm={:#x}", ids.cap_eff, ids.cap_prm),
                )
            };
        }
    };
    let sets = capability_sets(&status);
    let detail = sets
        .iter()
        .map(|(name, v)| match v {
            Some(v) => format!("{name}={v:016x}"),
            None => format!("{name}=?"),
        })
        .collect::<Vec<_>>()
        .join(" ");
    if sets.iter().any(|(_, v)| v.unwrap_or(0) != 0) {
        Report::open(P, detail)
    } else {
        Report::blocked(P, detail)
    }
}

/// `priv.capset`: add `CAP_SYS_ADMIN` to the effective and permitted sets.
pub fn capset(_: &Ctx) -> Report {
    const P: &str = "priv.capset";
    let current = match capabilities(None) {
        Ok(c) => c,
        Err(e) => {
            let e = std::io::Error::from(e);
            return Report::skipped(P, format!("capget: {}", describe(&e)));
        }
    };
    let held = current.effective.contains(CapabilitySet::SYS_ADMIN);
    let mut wanted = current;
    wanted.effective |= CapabilitySet::SYS_ADMIN;
    wanted.permitted |= CapabilitySet::SYS_ADMIN;
    match set_capabilities(None, wanted) {
        Ok(()) if held => Report::open(P, "capset(+CAP_SYS_ADMIN): succeeded (already effective)"),
        Ok(()) => Report::open(P, "capset(+CAP_SYS_ADMIN): succeeded (raised)"),
        Err(e) => {
            let e = std::io::Error::from(e);
            Report::blocked(P, format!("capset(+CAP_SYS_ADMIN): {}", describe(&e))).with_errno(&e)
        }
    }
}

fn status_probe(probe: &str, key: &str, verdict: fn(&str) -> bool, extra: &[&str]) -> Report {
    let status = match self_status() {
        Ok(s) => s,
        Err(e) => return Report::skipped(probe, format!("/proc/self/status: {}", describe(&e))),
    };
    let Some(value) = status_field(&status, key) else {
        return Report::skipped(probe, format!("no {key} line in /proc/self/status"));
    };
    let mut detail = format!("{key}: {value}");
    for k in extra {
        if let Some(v) = status_field(&status, k) {
            detail.push_str(&format!(", {k}: {v}"));
        }
    }
    if verdict(value) {
        Report::blocked(probe, detail)
    } else {
        Report::open(probe, detail)
    }
}

/// `priv.no_new_privs`: `NoNewPrivs: 1` is blocked, anything else open.
pub fn no_new_privs(_: &Ctx) -> Report {
    status_probe("priv.no_new_privs", "NoNewPrivs", |v| v == "1", &[])
}

/// `priv.seccomp_mode`: `Seccomp: 2` (filter) or 1 (strict) is blocked; 0 is open.
pub fn seccomp_mode(_: &Ctx) -> Report {
    status_probe(
        "priv.seccomp_mode",
        "Seccomp",
        |v| v != "0",
        &["Seccomp_filters"],
    )
}

/// `priv.landlock`: Landlock cannot be queried from inside a domain, so this tries a write that
/// plain permissions allow but Warren's ruleset (write only under `/tmp`, `/dev/shm` and device
/// nodes) denies: opening `/proc/self/comm` for writing (never writing). `EACCES` is blocked
/// (Landlock), success is open; anything else is skipped as inconclusive. The detail adds the
/// ABI version and whether the parent can be signalled (Landlock's signal scope).
pub fn landlock(_: &Ctx) -> Report {
    const P: &str = "priv.landlock";
    let abi = match warren_sys::landlock_abi_version() {
        Ok(v) => format!("Landlock ABI {v}"),
        Err(e) => format!("Landlock unavailable ({})", describe(&e)),
    };
    let signal = match rustix::process::getppid() {
        Some(ppid) => match rustix::process::test_kill_process(ppid) {
            Ok(()) => format!("kill(parent {}, 0): succeeded", ppid.as_raw_pid()),
            Err(e) => format!(
                "kill(parent {}, 0): {}",
                ppid.as_raw_pid(),
                describe(&std::io::Error::from(e))
            ),
        },
        None => "parent outside the pid namespace".to_owned(),
    };
    let dumpable = match rustix::process::dumpable_behavior() {
        Ok(d) => format!("{d:?}"),
        Err(_) => "?".to_owned(),
    };
    let detail = |what: String| format!("{what}; {abi}; {signal}; dumpable: {dumpable}");
    match open(Path::new("/proc/self/comm"), OFlags::WRONLY) {
        Ok(_) => Report::open(
            P,
            detail("open(/proc/self/comm, O_WRONLY): succeeded".into()),
        ),
        Err(e) if is_denied(&e) => Report::blocked(
            P,
            detail(format!("open(/proc/self/comm, O_WRONLY): {}", describe(&e))),
        )
        .with_errno(&e),
        Err(e) => Report::skipped(
            P,
            detail(format!(
                "inconclusive: open(/proc/self/comm, O_WRONLY): {}",
                describe(&e)
            )),
        )
        .with_errno(&e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gains_are_detected() {
        let before = Ids {
            uid: 1000,
            euid: 1000,
            gid: 1000,
            egid: 1000,
            cap_eff: 0,
            cap_prm: 0,
        };
        assert!(before.gained(&before).is_empty());
        let root = Ids { euid: 0, ..before };
        assert_eq!(before.gained(&root), ["euid 1000 -> 0"]);
        let capped = Ids {
            cap_prm: 1 << 21,
            ..before
        };
        assert_eq!(before.gained(&capped), ["capabilities 0x200000"]);
        // Losing privileges is not a gain.
        assert!(capped.gained(&before).is_empty());
    }
}
