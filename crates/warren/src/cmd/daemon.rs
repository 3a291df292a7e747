//! `warren daemon`: run the kernel in the foreground.

use std::path::Path;

use anyhow::{Context, bail};

use crate::cli::DaemonArgs;

/// Resolve a group name or number through `/etc/group`.
fn group_id(spec: &str) -> anyhow::Result<u32> {
    if let Ok(n) = spec.parse::<u32>() {
        return Ok(n);
    }
    let groups = std::fs::read_to_string("/etc/group").context("read /etc/group")?;
    for line in groups.lines() {
        let mut f = line.split(':');
        if f.next() == Some(spec) {
            if let Some(gid) = f.nth(1).and_then(|g| g.parse().ok()) {
                return Ok(gid);
            }
        }
    }
    bail!("no group named {spec:?} in /etc/group")
}

/// `warren daemon`.
pub fn daemon(state_dir: &Path, args: DaemonArgs) -> anyhow::Result<i32> {
    let group = args.group.as_deref().map(group_id).transpose()?;
    let audit_log = args
        .audit_log
        .unwrap_or_else(|| state_dir.join("audit.jsonl"));
    crate::daemon::run(crate::daemon::Options {
        state_dir: state_dir.to_owned(),
        group,
        audit_log,
    })?;
    Ok(0)
}
