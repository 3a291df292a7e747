//! `proc.*`: other processes (ptrace, `process_vm_readv`, signals, visibility) and the
//! sensitive files of `/proc` (sysctls, sysrq, kcore, kallsyms, timer_list, keys).

use std::io;
use std::path::Path;

use rustix::fs::OFlags;
use rustix::process::{Pid, Signal, WaitOptions, kill_process, test_kill_process, waitpid};

use super::{Ctx, open_attempts, read_prefix};
use crate::procfs;
use crate::report::{Report, describe, strict_report};

/// Bytes `proc.process_vm_readv` expects to read from its sibling: a fork shares our layout.
static CANARY: [u8; 8] = *b"WPROBE42";

/// A sleeping forked child, killed and reaped when dropped.
struct Sibling(i32);

impl Sibling {
    fn spawn() -> io::Result<Self> {
        warren_sys::probe::fork_sleeper(60).map(Sibling)
    }
}

impl Drop for Sibling {
    fn drop(&mut self) {
        let Some(pid) = Pid::from_raw(self.0) else {
            return;
        };
        let _ = kill_process(pid, Signal::KILL);
        // A traced child reports its stop first; reap until it is gone.
        while let Ok(Some((_, status))) = waitpid(Some(pid), WaitOptions::empty()) {
            if status.exited() || status.signaled() {
                break;
            }
        }
    }
}

/// `proc.ptrace_sibling`: `PTRACE_ATTACH` to a sleeping child of our own.
pub fn ptrace_sibling(_: &Ctx) -> Report {
    const P: &str = "proc.ptrace_sibling";
    let sibling = match Sibling::spawn() {
        Ok(s) => s,
        Err(e) => return Report::skipped(P, format!("cannot fork a sibling: {}", describe(&e))),
    };
    strict_report(
        P,
        &format!("ptrace(PTRACE_ATTACH, {})", sibling.0),
        warren_sys::probe::ptrace_attach(sibling.0),
    )
}

/// `proc.process_vm_readv`: read 8 known bytes out of a sleeping child of our own.
pub fn process_vm_readv(_: &Ctx) -> Report {
    const P: &str = "proc.process_vm_readv";
    let sibling = match Sibling::spawn() {
        Ok(s) => s,
        Err(e) => return Report::skipped(P, format!("cannot fork a sibling: {}", describe(&e))),
    };
    let addr = std::hint::black_box(&CANARY).as_ptr() as usize;
    let mut buf = [0u8; 8];
    match warren_sys::probe::process_vm_read(sibling.0, addr, &mut buf) {
        Ok(n) if buf[..n] == CANARY[..n] && n > 0 => {
            Report::open(P, format!("read {n} bytes of pid {}'s memory", sibling.0))
        }
        Ok(n) => Report::blocked(P, format!("read {n} bytes that do not match")),
        Err(e) => strict_report(
            P,
            &format!("process_vm_readv({})", sibling.0),
            Err::<(), _>(e),
        ),
    }
}

/// `proc.kill_host_pid`: `kill(pid, 0)` for each `--host-pid` (signal 0 only checks). Pass host
/// pids that do not also exist inside the environment's pid namespace (not 1).
pub fn kill_host_pid(ctx: &Ctx) -> Report {
    const P: &str = "proc.kill_host_pid";
    if ctx.opts.host_pids.is_empty() {
        return Report::skipped(P, "no --host-pid given");
    }
    let mut notes = Vec::new();
    let mut first_err = None;
    for &pid in &ctx.opts.host_pids {
        let result = Pid::from_raw(pid)
            .ok_or_else(|| io::Error::from_raw_os_error(rustix::io::Errno::SRCH.raw_os_error()))
            .and_then(|p| Ok(test_kill_process(p)?));
        match result {
            Ok(()) => return Report::open(P, format!("kill({pid}, 0): succeeded")),
            Err(e) => {
                notes.push(format!("kill({pid}, 0): {}", describe(&e)));
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

/// `proc.host_processes_visible`: list `/proc/<pid>`. Open if a `--host-pid` is visible, or
/// (without `--host-pid`) if any process other than this one and its ancestors is visible.
pub fn host_processes_visible(ctx: &Ctx) -> Report {
    const P: &str = "proc.host_processes_visible";
    let proc_root = Path::new("/proc");
    let pids = match procfs::visible_pids(proc_root) {
        Ok(p) => p,
        Err(e) => {
            return Report::blocked(P, format!("/proc unreadable: {}", describe(&e)))
                .with_errno(&e);
        }
    };
    let ours = procfs::self_and_ancestors(proc_root);
    let others: Vec<i32> = pids.iter().copied().filter(|p| !ours.contains(p)).collect();
    let shown: Vec<String> = pids.iter().take(40).map(i32::to_string).collect();
    let detail = format!(
        "{} processes visible ({}{}); {} are not this probe or its ancestors",
        pids.len(),
        shown.join(" "),
        if pids.len() > 40 { " ..." } else { "" },
        others.len()
    );
    let host_visible: Vec<i32> = ctx
        .opts
        .host_pids
        .iter()
        .copied()
        .filter(|p| pids.contains(p))
        .collect();
    if !host_visible.is_empty() {
        Report::open(P, format!("host pids {host_visible:?} visible; {detail}"))
    } else if ctx.opts.host_pids.is_empty() && !others.is_empty() {
        Report::open(P, detail)
    } else {
        Report::blocked(P, detail)
    }
}

/// `proc.write_sysctl`: open `/proc/sys/kernel/hostname` and `/proc/sys/vm/drop_caches` for
/// writing (never writing).
pub fn write_sysctl(_: &Ctx) -> Report {
    open_attempts(
        "proc.write_sysctl",
        &["/proc/sys/kernel/hostname", "/proc/sys/vm/drop_caches"],
        OFlags::WRONLY,
    )
}

/// `proc.write_sysrq`: open `/proc/sysrq-trigger` for writing (never writing).
pub fn write_sysrq(_: &Ctx) -> Report {
    open_attempts("proc.write_sysrq", &["/proc/sysrq-trigger"], OFlags::WRONLY)
}

/// Read a masked file: open if it yields bytes; blocked if unreadable or empty.
fn read_masked(probe: &str, path: &str, max: u64) -> Report {
    match read_prefix(Path::new(path), max) {
        Ok(bytes) if bytes.is_empty() => Report::blocked(
            probe,
            format!("empty: {path} has no content (masked, or nothing visible)"),
        ),
        Ok(bytes) => Report::open(probe, format!("read {} bytes of {path}", bytes.len())),
        Err(e) => Report::blocked(probe, format!("{path}: {}", describe(&e))).with_errno(&e),
    }
}

/// `proc.read_kcore`: open `/proc/kcore` and read one byte.
pub fn read_kcore(_: &Ctx) -> Report {
    read_masked("proc.read_kcore", "/proc/kcore", 1)
}

/// `proc.kallsyms_addresses`: open if any symbol in `/proc/kallsyms` shows a non-zero address.
pub fn kallsyms_addresses(_: &Ctx) -> Report {
    const P: &str = "proc.kallsyms_addresses";
    match read_prefix(Path::new("/proc/kallsyms"), 256 << 20) {
        Ok(bytes) => {
            let (lines, nonzero) = procfs::kallsyms_addresses(&String::from_utf8_lossy(&bytes));
            match (lines, nonzero) {
                (0, _) => Report::blocked(P, "empty: /proc/kallsyms has no content (masked)"),
                (n, 0) => Report::blocked(P, format!("all {n} addresses read as zero")),
                (n, k) => Report::open(P, format!("{k} of {n} symbols show real addresses")),
            }
        }
        Err(e) => Report::blocked(P, format!("/proc/kallsyms: {}", describe(&e))).with_errno(&e),
    }
}

/// `proc.read_timer_list`: open if `/proc/timer_list` has content.
pub fn read_timer_list(_: &Ctx) -> Report {
    read_masked("proc.read_timer_list", "/proc/timer_list", 4096)
}

/// `proc.read_keys`: open if `/proc/keys` lists any key.
pub fn read_keys(_: &Ctx) -> Report {
    read_masked("proc.read_keys", "/proc/keys", 4096)
}
