//! `ns.*`: create namespaces (`unshare` of each kind), join one (`setns`), and reach `clone3`.
//! Each runs in its own child process, so a namespace that is created changes nothing else.

use std::io;
use std::os::fd::AsFd;
use std::path::Path;

use rustix::fs::OFlags;
use rustix::thread::{LinkNameSpaceType, move_into_link_name_space};
use warren_sys::ns;

use super::{Ctx, open};
use crate::report::{Report, describe, strict_report, syscall_report};

fn unshare_probe(probe: &str, flag: u64, what: &str) -> Report {
    strict_report(
        probe,
        &format!("unshare({what})"),
        warren_sys::probe::unshare(flag),
    )
}

/// `ns.unshare_user`: create a nested user namespace; if that works, also try to create mount
/// and network namespaces inside it (the CVE-2022-0185 / CVE-2024-1086 path).
pub fn unshare_user(_: &Ctx) -> Report {
    const P: &str = "ns.unshare_user";
    match warren_sys::probe::unshare(ns::USER) {
        Ok(()) => {
            let nested = match warren_sys::probe::unshare(ns::MOUNT | ns::NET) {
                Ok(()) => "then unshare(CLONE_NEWNS|CLONE_NEWNET) inside it: succeeded".to_owned(),
                Err(e) => format!(
                    "then unshare(CLONE_NEWNS|CLONE_NEWNET) inside it: {}",
                    describe(&e)
                ),
            };
            Report::open(P, format!("unshare(CLONE_NEWUSER): succeeded; {nested}"))
        }
        Err(e) => strict_report(P, "unshare(CLONE_NEWUSER)", Err::<(), _>(e)),
    }
}

/// `ns.unshare_mount`: `unshare(CLONE_NEWNS)`.
pub fn unshare_mount(_: &Ctx) -> Report {
    unshare_probe("ns.unshare_mount", ns::MOUNT, "CLONE_NEWNS")
}

/// `ns.unshare_net`: `unshare(CLONE_NEWNET)`.
pub fn unshare_net(_: &Ctx) -> Report {
    unshare_probe("ns.unshare_net", ns::NET, "CLONE_NEWNET")
}

/// `ns.unshare_pid`: `unshare(CLONE_NEWPID)` (applies to later children only).
pub fn unshare_pid(_: &Ctx) -> Report {
    unshare_probe("ns.unshare_pid", ns::PID, "CLONE_NEWPID")
}

/// `ns.unshare_uts`: `unshare(CLONE_NEWUTS)`.
pub fn unshare_uts(_: &Ctx) -> Report {
    unshare_probe("ns.unshare_uts", ns::UTS, "CLONE_NEWUTS")
}

/// `ns.unshare_ipc`: `unshare(CLONE_NEWIPC)`.
pub fn unshare_ipc(_: &Ctx) -> Report {
    unshare_probe("ns.unshare_ipc", ns::IPC, "CLONE_NEWIPC")
}

/// `ns.unshare_cgroup`: `unshare(CLONE_NEWCGROUP)`.
pub fn unshare_cgroup(_: &Ctx) -> Report {
    unshare_probe("ns.unshare_cgroup", ns::CGROUP, "CLONE_NEWCGROUP")
}

/// `ns.setns`: join our own network and uts namespaces through `/proc/self/ns/*`. The kernel
/// allows that with `CAP_SYS_ADMIN` over the namespace; a confined process must get `EPERM`.
pub fn setns(_: &Ctx) -> Report {
    const P: &str = "ns.setns";
    let mut notes = Vec::new();
    let mut first_err: Option<io::Error> = None;
    let kinds = [
        ("net", LinkNameSpaceType::Network),
        ("uts", LinkNameSpaceType::HostNameAndNISDomainName),
    ];
    for (name, kind) in kinds {
        let path = format!("/proc/self/ns/{name}");
        let result = open(Path::new(&path), OFlags::RDONLY)
            .and_then(|fd| Ok(move_into_link_name_space(fd.as_fd(), Some(kind))?));
        match result {
            Ok(()) => {
                notes.push(format!("setns({path}): succeeded"));
                return Report::open(P, notes.join("; "));
            }
            Err(e) => {
                notes.push(format!("setns({path}): {}", describe(&e)));
                first_err.get_or_insert(e);
            }
        }
    }
    let report = Report::blocked(P, notes.join("; "));
    match first_err {
        Some(e) => report.with_errno(&e),
        None => report,
    }
}

/// `ns.clone3`: `clone3(NULL, 0)`. `EINVAL` means the call reached the kernel (open); a sandbox
/// answers `ENOSYS` (so libc falls back to `clone`, whose flags seccomp can inspect) or `EPERM`.
pub fn clone3(_: &Ctx) -> Report {
    syscall_report(
        "ns.clone3",
        "clone3(NULL, 0)",
        warren_sys::probe::clone3_invalid_size(),
    )
}
