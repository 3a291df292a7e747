//! `abuse.*`: resource exhaustion that the environment's limits must stop: a fork bomb (the pids
//! limit) and filling `/tmp` (the tmpfs size). Both are bounded (`--fork-cap`, `--fill-cap-mb`)
//! and clean up after themselves; they run only when named, never as part of `all`.

use std::io::{self, Write};
use std::time::Instant;

use rustix::process::{Pid, Signal, WaitOptions, kill_process, waitpid};

use super::Ctx;
use crate::report::{Report, describe};

/// `abuse.fork_bomb`: fork sleeping children until `fork` fails or `--fork-cap` is reached,
/// then kill and reap them all. Blocked if a limit stopped it below the cap.
pub fn fork_bomb(ctx: &Ctx) -> Report {
    const P: &str = "abuse.fork_bomb";
    let cap = ctx.opts.fork_cap;
    let start = Instant::now();
    let mut children = Vec::new();
    let mut failure = None;
    while children.len() < cap as usize {
        match warren_sys::probe::fork_sleeper(120) {
            Ok(pid) => children.push(pid),
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    let created = children.len();
    for &pid in &children {
        if let Some(pid) = Pid::from_raw(pid) {
            let _ = kill_process(pid, Signal::KILL);
        }
    }
    for &pid in &children {
        if let Some(pid) = Pid::from_raw(pid) {
            let _ = waitpid(Some(pid), WaitOptions::empty());
        }
    }
    let took = start.elapsed();
    match failure {
        Some(e) => Report::blocked(
            P,
            format!(
                "fork failed after {created} children ({:.2?}): {}; all killed",
                took,
                describe(&e)
            ),
        )
        .with_errno(&e),
        None => Report::open(
            P,
            format!("created {created} children (the cap) in {took:.2?}; all killed"),
        ),
    }
}

/// `abuse.fill_tmp`: write zeros to a file in `/tmp` until the write fails or `--fill-cap-mb`
/// is reached, then delete it. Blocked if `ENOSPC`/`EDQUOT`/`EFBIG` stopped it below the cap.
pub fn fill_tmp(ctx: &Ctx) -> Report {
    const P: &str = "abuse.fill_tmp";
    let path = format!("/tmp/warren-probe-fill-{}", std::process::id());
    let mut file = match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
    {
        Ok(f) => f,
        Err(e) => {
            return Report::blocked(P, format!("create {path}: {}", describe(&e))).with_errno(&e);
        }
    };
    let chunk = vec![0u8; 1 << 20];
    let cap = ctx.opts.fill_cap_mb << 20;
    let mut written: u64 = 0;
    let mut failure: Option<io::Error> = None;
    while written < cap {
        let want = chunk.len().min((cap - written) as usize);
        match file.write(&chunk[..want]) {
            Ok(0) => break,
            Ok(n) => written += n as u64,
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    if failure.is_none() {
        if let Err(e) = file.sync_all() {
            failure = Some(e);
        }
    }
    drop(file);
    let removed = std::fs::remove_file(&path).is_ok();
    let mib = written as f64 / f64::from(1 << 20);
    match failure {
        Some(e) => {
            let limited = [
                rustix::io::Errno::NOSPC,
                rustix::io::Errno::DQUOT,
                rustix::io::Errno::FBIG,
            ]
            .iter()
            .any(|x| e.raw_os_error() == Some(x.raw_os_error()));
            let what = if limited {
                "stopped by a limit"
            } else {
                "stopped"
            };
            Report::blocked(
                P,
                format!(
                    "{what} after {written} bytes ({mib:.1} MiB): {}; removed: {removed}",
                    describe(&e)
                ),
            )
            .with_errno(&e)
        }
        None => Report::open(
            P,
            format!("wrote {written} bytes ({mib:.1} MiB, the cap) to {path}; removed: {removed}"),
        ),
    }
}
