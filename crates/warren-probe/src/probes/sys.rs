//! `sys.*`: kernel attack-surface system calls, each with harmless arguments (see
//! `warren_sys::probe`), and writes into `/sys`.
//!
//! Outcome rule (see [`syscall_report`]): success is open; `EPERM`, `EACCES` or `ENOSYS` is
//! blocked; any other error means the call got past the sandbox and the kernel's permission
//! checks and was refused only for its deliberately invalid argument, which is open too.

use rustix::fs::OFlags;
use warren_sys::probe;

use super::{Ctx, open_attempts};
use crate::report::{Report, syscall_report};

/// `sys.keyctl`: `keyctl(KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, 0)`.
pub fn keyctl(_: &Ctx) -> Report {
    syscall_report(
        "sys.keyctl",
        "keyctl(GET_KEYRING_ID, session)",
        probe::keyctl_get_session_keyring(),
    )
}

/// `sys.add_key`: `add_key` of an unknown key type (`ENODEV` once reachable).
pub fn add_key(_: &Ctx) -> Report {
    syscall_report(
        "sys.add_key",
        "add_key(unknown type)",
        probe::add_key_bogus_type(),
    )
}

/// `sys.bpf`: create a one-entry BPF array map.
pub fn bpf(_: &Ctx) -> Report {
    syscall_report(
        "sys.bpf",
        "bpf(BPF_MAP_CREATE, 1-entry array)",
        probe::bpf_map_create_tiny(),
    )
}

/// `sys.perf_event_open`: a disabled software dummy event on this process, kernel included.
pub fn perf_event_open(_: &Ctx) -> Report {
    syscall_report(
        "sys.perf_event_open",
        "perf_event_open(software dummy, self)",
        probe::perf_event_open_dummy(),
    )
}

/// `sys.userfaultfd`: `userfaultfd(O_CLOEXEC | O_NONBLOCK)`.
pub fn userfaultfd(_: &Ctx) -> Report {
    syscall_report("sys.userfaultfd", "userfaultfd()", probe::userfaultfd())
}

/// `sys.io_uring_setup`: `io_uring_setup(1, zeroed params)`.
pub fn io_uring_setup(_: &Ctx) -> Report {
    syscall_report(
        "sys.io_uring_setup",
        "io_uring_setup(1)",
        probe::io_uring_setup_one(),
    )
}

/// `sys.kexec_load`: invalid segment count and flags (`EINVAL` once reachable; `ENOSYS` when the
/// kernel has no kexec).
pub fn kexec_load(_: &Ctx) -> Report {
    syscall_report(
        "sys.kexec_load",
        "kexec_load(invalid)",
        probe::kexec_load_invalid(),
    )
}

/// `sys.init_module`: an empty module image (`ENOEXEC` once reachable).
pub fn init_module(_: &Ctx) -> Report {
    syscall_report(
        "sys.init_module",
        "init_module(NULL, 0)",
        probe::init_module_empty(),
    )
}

/// `sys.reboot`: wrong magic numbers (`EINVAL` once past the `CAP_SYS_BOOT` check).
pub fn reboot(_: &Ctx) -> Report {
    syscall_report(
        "sys.reboot",
        "reboot(wrong magic)",
        probe::reboot_bad_magic(),
    )
}

/// `sys.swapon`: a path that does not exist (`ENOENT` once past the `CAP_SYS_ADMIN` check).
pub fn swapon(_: &Ctx) -> Report {
    syscall_report(
        "sys.swapon",
        "swapon(/nonexistent-warren-probe)",
        probe::swapon_nonexistent(),
    )
}

/// `sys.acct`: a path that does not exist (`ENOENT` once past the `CAP_SYS_PACCT` check).
pub fn acct(_: &Ctx) -> Report {
    syscall_report(
        "sys.acct",
        "acct(/nonexistent-warren-probe)",
        probe::acct_nonexistent(),
    )
}

/// `sys.clock_settime`: an invalid clock id. The kernel checks the clock before the capability,
/// so `EINVAL` shows only that the call is reachable (not filtered).
pub fn clock_settime(_: &Ctx) -> Report {
    syscall_report(
        "sys.clock_settime",
        "clock_settime(invalid clock)",
        probe::clock_settime_invalid_clock(),
    )
}

/// `sys.iopl`: `iopl(0)`, which needs no privilege once reachable: shows only reachability.
pub fn iopl(_: &Ctx) -> Report {
    syscall_report("sys.iopl", "iopl(0)", probe::iopl_zero())
}

/// `sys.i386_abi`: a system call through the i386 gate (`int 0x80`). Open if it returns; a
/// filter that checks the architecture kills the child (reported blocked with SIGSYS).
pub fn i386_abi(_: &Ctx) -> Report {
    syscall_report("sys.i386_abi", "int 0x80 getpid", probe::i386_getpid())
}

/// `sys.x32_abi`: getpid with the x32 bit set. ENOSYS means the kernel lacks x32 (no
/// evidence either way); EPERM means the filter refused it; success is open.
pub fn x32_abi(_: &Ctx) -> Report {
    syscall_report("sys.x32_abi", "getpid | 0x40000000", probe::x32_getpid())
}

/// `sys.ioperm`: `ioperm(0x80, 1, 0)` (turn off), which needs no privilege once reachable.
pub fn ioperm(_: &Ctx) -> Report {
    syscall_report("sys.ioperm", "ioperm(0x80, 1, off)", probe::ioperm_off())
}

/// Writable-for-root files in `/sys` that `sys.write_sys` opens (never writes).
const SYS_FILES: &[&str] = &[
    "/sys/kernel/uevent_helper",
    "/sys/kernel/mm/transparent_hugepage/enabled",
    "/sys/power/state",
];

/// `sys.write_sys`: open writable `/sys` files for writing (never writing); the detail also
/// says how much of `/sys` is visible at all.
pub fn write_sys(_: &Ctx) -> Report {
    let mut report = open_attempts("sys.write_sys", SYS_FILES, OFlags::WRONLY);
    let visible = match std::fs::read_dir("/sys") {
        Ok(d) => format!("/sys has {} entries", d.count()),
        Err(e) => format!("/sys unreadable ({e})"),
    };
    report.detail = format!("{}; {visible}", report.detail);
    report
}
