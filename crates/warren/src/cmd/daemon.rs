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
    // Checked before anything is written.
    let limits = limits(&args)?;
    if let Some(root) = &args.attest_root {
        super::attest::configure_root(state_dir, root, args.tpm.clone())?;
    }
    // Warren measures itself (binary, agent, configuration) into PCR 15 at kernel start, before
    // anything else uses the TPM root (docs/attestation.md, "Warren's PCR").
    let root = warren_attest::RootConfig::resolve(state_dir).context("the root of trust")?;
    if root.root == warren_attest::RootKind::Tpm {
        root.measure_self(state_dir)
            .context("measure Warren into PCR 15 (tpm root)")?;
    }
    let group = args.group.as_deref().map(group_id).transpose()?;
    let audit_log = args
        .audit_log
        .unwrap_or_else(|| state_dir.join("audit.jsonl"));
    let opts = crate::daemon::Options {
        state_dir: state_dir.to_owned(),
        group,
        audit_log,
        limits,
    };
    crate::daemon::run(opts, manifest)?;
    Ok(0)
}

/// A size flag within `min..=max`; the error names the flag.
fn size_flag(flag: &str, text: &Option<String>, min: u64, max: u64) -> anyhow::Result<Option<u64>> {
    let Some(t) = text else { return Ok(None) };
    let b = t
        .parse::<warren_spec::ByteSize>()
        .map_err(|e| anyhow::anyhow!("--{flag}: {e}"))?
        .0;
    if !(min..=max).contains(&b) {
        bail!("--{flag} {t}: must be between {min} and {max} bytes");
    }
    Ok(Some(b))
}

/// A count flag within `min..=max`; the error names the flag.
fn count_flag<T: Copy + PartialOrd + std::fmt::Display>(
    flag: &str,
    v: Option<T>,
    min: T,
    max: T,
) -> anyhow::Result<Option<T>> {
    match v {
        Some(n) if n < min || n > max => bail!("--{flag} {n}: must be between {min} and {max}"),
        v => Ok(v),
    }
}

/// The reactor's bounds from the flags, checked.
pub(super) fn limits(args: &DaemonArgs) -> anyhow::Result<crate::daemon::Limits> {
    let mut l = crate::daemon::Limits::default();
    if let Some(b) = size_flag("max-unsent", &args.max_unsent, 64 << 10, 1 << 30)? {
        l.max_unsent = b as usize;
    }
    if let Some(b) = size_flag("max-backlog", &args.max_backlog, 1 << 20, 4 << 30)? {
        l.max_backlog = b as usize;
    }
    if l.max_backlog < l.max_unsent + (1 << 20) {
        bail!(
            "--max-backlog ({} bytes) must be at least --max-unsent ({} bytes) + 1M",
            l.max_backlog,
            l.max_unsent
        );
    }
    if let Some(n) = count_flag("turn-packets", args.turn_packets, 1, 1024)? {
        l.turn_packets = n;
    }
    if let Some(n) = count_flag("turn-frames", args.turn_frames, 1, 65536)? {
        l.turn_frames = n;
    }
    if let Some(b) = size_flag("audit-max-size", &args.audit_max_size, 64 << 10, 1 << 40)? {
        l.audit_max_size = b;
    }
    if let Some(n) = count_flag("audit-keep", args.audit_keep, 0, 100)? {
        l.audit_keep = n;
    }
    Ok(l)
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
