//! `warren daemon` and `warren up`: run the kernel in the foreground.

use std::path::Path;

use anyhow::{Context, bail};

use crate::cli::{DaemonArgs, UpArgs};

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

/// `warren daemon` (and `warren up` without a running kernel): with `manifest`, its
/// environments are applied as soon as the kernel is listening.
pub fn daemon(
    state_dir: &Path,
    args: DaemonArgs,
    manifest: Option<warren_spec::Manifest>,
) -> anyhow::Result<i32> {
    if let Some(root) = &args.attest_root {
        super::attest::configure_root(state_dir, root, args.tpm.clone())?;
    }
    let group = args.group.as_deref().map(group_id).transpose()?;
    let audit_log = args
        .audit_log
        .unwrap_or_else(|| state_dir.join("audit.jsonl"));
    let opts = crate::daemon::Options {
        state_dir: state_dir.to_owned(),
        group,
        audit_log,
    };
    crate::daemon::run(opts, manifest)?;
    Ok(0)
}

/// `warren up [FILE]`: apply FILE to a running kernel, or start the kernel with it.
pub fn up(state_dir: &Path, args: UpArgs) -> anyhow::Result<i32> {
    let manifest = match &args.file {
        Some(f) => match warren_spec::load_manifest(f) {
            Ok(m) => Some(m),
            Err(e) => {
                eprintln!("warren: error: {e}");
                return Ok(1);
            }
        },
        None => None,
    };
    if crate::control::connect_daemon(state_dir)?.is_some() {
        let Some(file) = args.file else {
            bail!("a Warren kernel is already running");
        };
        let apply = crate::cli::ApplyArgs {
            file,
            check: false,
            diff: false,
            json: false,
            detailed_exitcodes: false,
            timeout: 10,
        };
        return super::apply::apply(state_dir, apply);
    }
    daemon(state_dir, args.daemon, manifest)
}
