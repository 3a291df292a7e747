//! The cgroup v2 (unified hierarchy) path: one directory per environment.
//!
//! The leaf is `<mount>/warren/<leaf>`. Controllers reach it only if they are enabled in the
//! `cgroup.subtree_control` of every ancestor, so memory, pids and cpu are enabled in the root
//! and in `warren` where they are not yet. Killing uses `cgroup.kill` (Linux 5.14) when present.

use std::path::Path;

use warren_spec::CpuQuota;

use super::{
    AppliedLimits, Cgroup, CgroupError, Created, KILL_TIMEOUT, LIMIT_CONTROLLERS, Limits,
    Placement, Prep, UnifiedMount, Version, procs, read_optional, requested, sigkill, subtree,
    wait_until, write_file,
};

/// Create `<mount>/warren/<leaf>` with `limits`; see [`super::Layout::create`].
pub(super) fn create(
    mount: &UnifiedMount,
    leaf: &str,
    placement: &Placement,
    limits: &Limits,
) -> Result<Cgroup, CgroupError> {
    if let Some(controller) = requested(limits).find(|c| !mount.offers(c)) {
        return Err(CgroupError::ControllerUnavailable {
            controller,
            leaf: leaf.to_owned(),
            version: Version::V2,
        });
    }
    let mut enable: Vec<&'static str> = LIMIT_CONTROLLERS
        .into_iter()
        .filter(|c| mount.offers(c))
        .collect();
    // The cpuset, where a cpu limit confines the environment to its share of CPUs
    // (`super::cpuset`); a child group with an empty `cpuset.cpus` has its parent's, so a
    // spawner's children stay on its CPUs.
    let confining = limits.cpu.is_some() && mount.offers("cpuset");
    if confining {
        enable.push("cpuset");
    }
    enable_in_subtree(&mount.mount_point, &enable)?;
    if confining {
        // Every group above the new one must pass the cpuset down (`make_group` enables the
        // controllers only in the directory right above it).
        let mut above = mount.mount_point.join(super::PARENT);
        let mut parts = placement.parent.as_deref().unwrap_or("").split('/');
        loop {
            if above.is_dir() {
                enable_in_subtree(&above, &["cpuset"])?;
            }
            match parts.next() {
                Some(part) if !part.is_empty() => above.push(part),
                _ => break,
            }
        }
    }

    let mut created = Created::new();
    let prep = V2Prep { enable: &enable };
    let mut dir = created.make_group(&mount.mount_point, leaf, placement, &prep)?;
    dir.controllers = enable;
    let mut applied = write_limits(&dir.path, limits)?;
    if let (true, Some(cpu)) = (confining, limits.cpu) {
        applied.cpus = confine(&dir, cpu)?;
    }
    if dir.procs != dir.path {
        // The environment's view (its cgroup namespace root is `self`) shows its limits.
        write_limits(&dir.procs, limits)?;
        if let Some(list) = &applied.cpus {
            write_file(&dir.procs.join("cpuset.cpus"), list)?;
        }
    }
    created.disarm();
    Ok(Cgroup {
        version: Version::V2,
        leaf: placement.group(leaf),
        dirs: vec![dir],
        applied,
        nested: placement.nested(),
        destroyed: false,
    })
}

/// Confine the new group `dir` to the CPUs a limit of `cpu` takes of those its parent allows
/// (`cpuset.cpus.effective`, [`super::cpuset::confine`]). Returns the list written, `None`
/// when the limit covers every CPU the parent allows.
fn confine(dir: &super::Dir, cpu: CpuQuota) -> Result<Option<String>, CgroupError> {
    let Some(parent) = dir.path.parent() else {
        return Ok(None);
    };
    let allowed = read_optional(&parent.join("cpuset.cpus.effective"))?;
    let Some(list) = super::cpuset::confine(&allowed, cpu.micros, super::cpuset::launch_key())
    else {
        return Ok(None);
    };
    write_file(&dir.path.join("cpuset.cpus"), &list)?;
    Ok(Some(list))
}

/// v2: the controllers reach a directory's children only once its `cgroup.subtree_control`
/// enables them (which the kernel refuses while the directory holds processes: hence `self`).
struct V2Prep<'a> {
    enable: &'a [&'static str],
}

impl Prep for V2Prep<'_> {
    fn made(&self, _dir: &Path) -> Result<(), CgroupError> {
        Ok(())
    }

    fn will_have_children(&self, dir: &Path) -> Result<(), CgroupError> {
        enable_in_subtree(dir, self.enable)
    }
}

/// Enable `controllers` for the children of `dir` where `cgroup.subtree_control` lacks them,
/// in one write (`+memory +pids +cpu`).
fn enable_in_subtree(dir: &Path, controllers: &[&str]) -> Result<(), CgroupError> {
    let path = dir.join("cgroup.subtree_control");
    let current = read_optional(&path)?;
    let missing: Vec<String> = controllers
        .iter()
        .filter(|c| {
            !current
                .split_whitespace()
                .any(|have| have.trim_start_matches('+') == **c)
        })
        .map(|c| format!("+{c}"))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    write_file(&path, &missing.join(" "))
}

/// Write `limits` into the leaf directory `dir`: `memory.max`, then `memory.swap.max = 0` when
/// the kernel has swap accounting, `pids.max`, `cpu.max`.
pub(super) fn write_limits(dir: &Path, limits: &Limits) -> Result<AppliedLimits, CgroupError> {
    let mut applied = AppliedLimits::default();
    if let Some(bytes) = limits.memory {
        write_file(&dir.join("memory.max"), &bytes.to_string())?;
        applied.memory_bytes = Some(bytes);
        let swap = dir.join("memory.swap.max");
        if swap.exists() {
            write_file(&swap, "0")?;
            applied.swap_capped = true;
        }
    }
    if let Some(pids) = limits.pids {
        write_file(&dir.join("pids.max"), &pids.to_string())?;
        applied.pids_max = Some(pids);
    }
    if let Some(cpu) = limits.cpu {
        let (quota, period) = (cpu.quota_us(), CpuQuota::PERIOD_US);
        write_file(&dir.join("cpu.max"), &format!("{quota} {period}"))?;
        applied.cpu_quota_us = Some(quota);
        applied.cpu_period_us = Some(period);
    }
    Ok(applied)
}

/// Kill everything in `dir` and wait until `cgroup.procs` is empty (bounded); with `nested`,
/// every directory below it too (`cgroup.kill` kills the whole subtree).
pub(super) fn kill_all(dir: &Path, nested: bool) -> Result<(), CgroupError> {
    let kill_file = dir.join("cgroup.kill");
    let has_kill = kill_file.exists();
    if has_kill {
        write_file(&kill_file, "1")?;
    }
    let mut remaining = 0;
    let empty = wait_until(KILL_TIMEOUT, || {
        let dirs = if nested {
            subtree(dir)
        } else {
            vec![dir.to_owned()]
        };
        remaining = 0;
        for d in &dirs {
            let pids = procs(d)?;
            remaining += pids.len();
            if !has_kill {
                for &pid in &pids {
                    sigkill(pid, d)?;
                }
            }
        }
        Ok(remaining == 0)
    })?;
    if empty {
        Ok(())
    } else {
        Err(CgroupError::KillTimeout {
            path: dir.to_owned(),
            remaining,
            timeout: KILL_TIMEOUT,
        })
    }
}
