//! The measured-launch step: what the launcher's parent does while the child builds its
//! environment. It measures the image and the configuration into a
//! [`warren_attest::LaunchContent`], appends it to the state directory's event log and extends
//! the configured root of trust (see docs/attestation.md).

use warren_sandbox::state::StateDir;
use warren_sandbox::{Applied, LaunchPlan, Measurement, RootSource};

/// Measures the launch and records it. The error is a sentence for the launch error.
/// `spawn` is the provenance of a spawned child (`warren run --spawned-by`), recorded in its
/// launch record.
pub(crate) fn measure_and_record(
    plan: &LaunchPlan,
    applied: &Applied,
    env: &[(String, String)],
    state: &StateDir,
    spawn: Option<&warren_attest::SpawnProvenance>,
) -> Result<Measurement, String> {
    let (kind, tree) = match &plan.root {
        RootSource::Rootfs(dir) => (
            "rootfs",
            warren_attest::seal::root_digest(state.root(), dir, None),
        ),
        // The store's digest, computed when it imported the root (which it keeps read-only).
        RootSource::Image(dir) => (
            "image",
            warren_attest::seal::root_digest(state.root(), dir, plan.image_tree_digest.as_deref()),
        ),
        RootSource::Binary(_) => (
            "binary",
            warren_attest::measure::files_digest(&applied.root.files).map(|tree| {
                warren_attest::seal::RootDigest {
                    tree,
                    source: warren_attest::measure::DigestSource::Walk,
                }
            }),
        ),
    };
    let warren_attest::seal::RootDigest { tree, source } = tree.map_err(|e| error_chain(&e))?;
    let config = warren_attest::LaunchConfig {
        memory: plan.limits.memory,
        pids: Some(plan.limits.pids.unwrap_or(LaunchPlan::DEFAULT_PIDS)),
        cpu_micros: plan.limits.cpu.as_ref().map(|c| c.micros),
        tmpfs_size: plan.tmpfs_size,
        seccomp_profile: applied.seccomp.profile_digest.clone(),
        capabilities: applied.capabilities.clone(),
        no_new_privs: applied.no_new_privs,
        landlock_abi: (!applied.degraded.contains(&"landlock"))
            .then_some(applied.landlock.requested_abi),
        namespaces: applied.namespaces.iter().map(|s| (*s).to_owned()).collect(),
        network: applied.network.to_owned(),
        degraded: applied.degraded.iter().map(|s| (*s).to_owned()).collect(),
        mounts: plan
            .mounts
            .iter()
            .map(|m| warren_attest::LaunchMount {
                kind: match m.kind {
                    warren_sandbox::MountKind::Volume => "volume",
                    warren_sandbox::MountKind::Bind => "bind",
                }
                .to_owned(),
                source: match m.kind {
                    warren_sandbox::MountKind::Volume => m.source.clone(),
                    warren_sandbox::MountKind::Bind => m.host.to_string_lossy().into_owned(),
                },
                dest: m.dest.to_string_lossy().into_owned(),
                read_only: m.read_only,
            })
            .collect(),
        writable_root: plan.writable_root,
        etc_files: applied.etc_files.clone(),
    };
    let config_digest = config.digest();
    let content = warren_attest::LaunchContent {
        event: "launch".into(),
        name: plan.name.to_string(),
        image: warren_attest::measure::ImageMeasurement {
            kind: kind.into(),
            digest: tree.digest.clone(),
            format: warren_attest::measure::TREE_FORMAT.into(),
            manifest_digest: plan.image_manifest_digest.clone(),
            digest_source: Some(source.as_str().into()),
        },
        command: plan.argv.clone(),
        env: env.to_vec(),
        config,
        config_digest: config_digest.clone(),
        uid_base: applied.uid_map.host_base,
        uid_count: applied.uid_map.size,
        launched_at: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        spawn: spawn.cloned(),
    };
    let root_config =
        warren_attest::RootConfig::resolve(state.root()).map_err(|e| error_chain(&e))?;
    let mut root = root_config
        .open(state.root())
        .map_err(|e| error_chain(&e))?;
    let record = warren_attest::EventLog::new(state.root())
        .append(content, root.as_mut())
        .map_err(|e| error_chain(&e))?;
    let digest = format!("sha256:{}", record.digests[0].digest);
    if plan.cgroup.holds_children {
        // A spawner's workload may spawn as soon as it runs, before its launcher writes the live
        // record: the kernel reads its launch record from here meanwhile (the children's
        // provenance, `crate::daemon::spawn`). Written before the exec, so it is never missing;
        // `warren run` removes it once the live record holds the same.
        write_measured(state, plan.name.as_str(), record.recnum, &digest)?;
    }
    Ok(Measurement {
        root: root.kind().as_str(),
        recnum: record.recnum,
        digest,
        image_digest: tree.digest,
        image_manifest_digest: plan.image_manifest_digest.clone(),
        config_digest,
    })
}

/// Where a spawner's launch record (number and digest) waits for its live record.
pub(crate) fn measured_path(envs_dir: &std::path::Path, name: &str) -> std::path::PathBuf {
    envs_dir.join(format!("{name}.measured"))
}

/// Writes `measured_path` whole (a rename), so a reader sees the old file or the new one.
fn write_measured(state: &StateDir, name: &str, recnum: u64, digest: &str) -> Result<(), String> {
    let path = measured_path(&state.envs_dir(), name);
    let tmp = path.with_extension("measured.tmp");
    let body = serde_json::json!({ "recnum": recnum, "digest": digest }).to_string();
    std::fs::write(&tmp, body)
        .and_then(|()| std::fs::rename(&tmp, &path))
        .map_err(|e| {
            format!(
                "record the launch for the kernel at {}: {e}",
                path.display()
            )
        })
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(cause) = src {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        src = cause.source();
    }
    s
}
