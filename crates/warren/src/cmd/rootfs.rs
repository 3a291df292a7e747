//! `warren rootfs seal|unseal|status`: sealed roots for `warren run --rootfs`
//! (`warren_attest::seal`; docs/attestation.md says what a seal covers).

use std::path::Path;

use anyhow::Context;
use serde_json::json;
use warren_attest::seal::{self, Seal, SealState};

use crate::cli::{RootfsArgs, RootfsCommand};

/// Dispatch `warren rootfs ...`.
pub fn rootfs(state_dir: &Path, cmd: RootfsCommand) -> anyhow::Result<i32> {
    match cmd {
        RootfsCommand::Seal(a) => do_seal(state_dir, &a),
        RootfsCommand::Unseal(a) => do_unseal(state_dir, &a),
        RootfsCommand::Status(a) => status(state_dir, &a),
    }
}

fn seal_json(s: &Seal) -> serde_json::Value {
    json!({
        "version": 1,
        "path": s.path,
        "digest": s.digest,
        "format": s.tree_format,
        "entries": s.entries,
        "bytes": s.bytes,
        "mount_id": s.mount_id,
        "sealed_at": s.sealed_at,
    })
}

fn do_seal(state_dir: &Path, a: &RootfsArgs) -> anyhow::Result<i32> {
    let s = seal::seal(state_dir, &a.dir)
        .with_context(|| format!("cannot seal {}", a.dir.display()))?;
    if a.json {
        println!("{}", seal_json(&s));
    } else {
        println!(
            "sealed {} {} ({} entries, {} bytes of content); it is mounted read-only over \
             itself until `warren rootfs unseal`",
            s.path.display(),
            s.digest,
            s.entries,
            s.bytes
        );
    }
    Ok(0)
}

fn do_unseal(state_dir: &Path, a: &RootfsArgs) -> anyhow::Result<i32> {
    let s = seal::unseal(state_dir, &a.dir)
        .with_context(|| format!("cannot unseal {}", a.dir.display()))?;
    if a.json {
        println!(
            "{}",
            json!({ "version": 1, "path": s.path, "unsealed": true })
        );
    } else {
        println!("unsealed {}", s.path.display());
    }
    Ok(0)
}

fn status(state_dir: &Path, a: &RootfsArgs) -> anyhow::Result<i32> {
    let path = std::fs::canonicalize(&a.dir)
        .with_context(|| format!("cannot resolve {}", a.dir.display()))?;
    let (code, value, text) = match seal::check(state_dir, &path) {
        SealState::Unsealed => (
            1,
            json!({ "version": 1, "path": path, "state": "unsealed" }),
            format!("{} is not sealed", path.display()),
        ),
        SealState::Broken(why) => (
            1,
            json!({ "version": 1, "path": path, "state": "broken", "reason": why }),
            format!(
                "{}: the seal no longer holds ({why}); launches walk the tree",
                path.display()
            ),
        ),
        SealState::Holds(s) => {
            let mut v = seal_json(&s);
            v["state"] = json!("holds");
            (0, v, format!("{} is sealed: {}", path.display(), s.digest))
        }
    };
    if a.json {
        println!("{value}");
    } else {
        println!("{text}");
    }
    Ok(code)
}
