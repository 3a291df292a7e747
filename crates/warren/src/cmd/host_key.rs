//! `warren host-key`: the host's federation key (`docs/federation.md`).

use std::path::Path;

use anyhow::Context;

use crate::cli::HostKeyArgs;

/// Create the key if needed and print its trusted-keys line.
pub fn host_key(state_dir: &Path, args: HostKeyArgs) -> anyhow::Result<i32> {
    if args.name.parse::<warren_spec::EnvName>().is_err() {
        anyhow::bail!(
            "host name {:?} is not valid: use 1 to 63 lowercase letters, digits and '-'",
            args.name
        );
    }
    let file = args
        .file
        .unwrap_or_else(|| state_dir.join("link").join("host.key"));
    let key = warren_link::trust::load_or_create_host_key(&file)
        .with_context(|| format!("the host key {}", file.display()))?;
    println!(
        "{} {}",
        args.name,
        warren_link::trust::format_public(&key.verifying_key())
    );
    Ok(0)
}
