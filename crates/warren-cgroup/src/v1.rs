//! The cgroup v1 path: one directory per hierarchy Warren uses.
//!
//! The leaf is `<hierarchy>/warren/<leaf>` in each of the memory, pids and cpu hierarchies whose
//! limit was asked for (cpu may be co-mounted as `cpu,cpuacct`; co-mounted controllers share one
//! directory), and in the cpuset hierarchy where a cpu limit confines it to some CPUs
//! (`super::cpuset`). Leaves found in the freezer hierarchy (made by earlier versions) are still
//! used to kill reliably: with a freezer a fork bomb cannot outrun a SIGKILL loop.

use std::path::{Path, PathBuf};
use std::time::Duration;

use warren_spec::CpuQuota;

use super::{
    AppliedLimits, Cgroup, CgroupError, Created, KILL_TIMEOUT, Layout, Limits, Placement, Prep,
    Version, procs, read_optional, requested, sigkill, subtree, wait_until, write_file,
};

/// The v1 hierarchies where Warren looks for its leaves (to adopt and sweep them).
pub(super) const HIERARCHIES: [&str; 6] = ["memory", "pids", "cpu", "freezer", "cpuacct", "cpuset"];

/// The hierarchies an environment with a memory or cpu limit also joins, without limits, so
/// that its view of its own cgroup (`/sys/fs/cgroup`, see [`super::Cgroup::view`]) has every
/// controller a JVM requires before it reads any limit (OpenJDK 17 gives up on cgroup v1
/// without cpu, cpuacct, cpuset and memory).
const VIEW_HIERARCHIES: [&str; 3] = ["cpu", "cpuacct", "cpuset"];

/// How long to wait for `freezer.state` to read `FROZEN` before killing anyway.
const FREEZE_TIMEOUT: Duration = Duration::from_millis(200);

/// Create `<hierarchy>/warren/<leaf>` in each hierarchy with `limits`; see
/// [`super::Layout::create`].
pub(super) fn create(
    layout: &Layout,
    leaf: &str,
    placement: &Placement,
    limits: &Limits,
) -> Result<Cgroup, CgroupError> {
    if let Some(controller) = requested(limits).find(|c| layout.v1_hierarchy(c).is_none()) {
        return Err(CgroupError::ControllerUnavailable {
            controller,
            leaf: leaf.to_owned(),
            version: Version::V1,
        });
    }
    // Only the hierarchies whose limits were asked for (pids when none was): every extra
    // hierarchy costs a mkdir, a join and an rmdir per launch. No freezer: the workload is pid 1
    // of its own pid namespace, and when it ends the kernel kills everything else inside.
    let mut wanted: Vec<&'static str> = requested(limits).collect();
    if placement.nested() {
        // A tree: every hierarchy, so that no child escapes a limit of an ancestor.
        for c in super::LIMIT_CONTROLLERS {
            if !wanted.contains(&c) && layout.v1_hierarchy(c).is_some() {
                wanted.push(c);
            }
        }
    }
    if wanted.is_empty() {
        wanted.push("pids");
    }
    // Under a parent, only where the parent's group is (a view is not a limit).
    let parent_has = |h: &super::V1Hierarchy| {
        placement
            .parent
            .as_ref()
            .is_none_or(|p| h.mount_point.join(super::PARENT).join(p).is_dir())
    };
    // (Not for a nested group without such limits of its own: every v1 mkdir and rmdir takes
    // the host-wide cgroup mutex, about 6 ms each here, and a tree multiplies them.)
    if limits.memory.is_some() || limits.cpu.is_some() {
        for c in VIEW_HIERARCHIES {
            if !wanted.contains(&c) && layout.v1_hierarchy(c).is_some_and(parent_has) {
                wanted.push(c);
            }
        }
    }
    // The cpuset: where a cpu limit confines the environment to its share of CPUs
    // (`super::cpuset`), and under a confined spawner, so that its children stay on its CPUs (a
    // child outside the hierarchy would stay in the host's cpuset, where its launcher runs). Not
    // for every spawner: a v1 cpuset group costs 0.2-0.3 ms to make and remove here, which each
    // of its children with a memory limit would then pay for its view too. So under a spawner
    // with neither a memory nor a cpu limit (no cpuset group), a child is not confined.
    if !wanted.contains(&"cpuset")
        && layout.v1_hierarchy("cpuset").is_some_and(|h| {
            parent_has(h) && (limits.cpu.is_some() || parent_confined(h, placement))
        })
    {
        wanted.push("cpuset");
    }
    let mut plan: Vec<(&super::V1Hierarchy, Vec<&'static str>)> = Vec::new();
    for controller in wanted {
        let Some(hierarchy) = layout.v1_hierarchy(controller) else {
            continue;
        };
        match plan
            .iter_mut()
            .find(|(h, _)| h.mount_point == hierarchy.mount_point)
        {
            Some((_, controllers)) => controllers.push(controller),
            None => plan.push((hierarchy, vec![controller])),
        }
    }
    if plan.is_empty() {
        return Err(CgroupError::NoUsableHierarchy {
            leaf: leaf.to_owned(),
            version: Version::V1,
        });
    }

    let mut created = Created::new();
    let mut dirs = Vec::with_capacity(plan.len());
    for (hierarchy, controllers) in plan {
        let prep = V1Prep {
            cpuset: hierarchy.controllers.iter().any(|c| c == "cpuset"),
        };
        let mut dir = created.make_group(&hierarchy.mount_point, leaf, placement, &prep)?;
        dir.controllers = controllers;
        dir.hierarchy = hierarchy.controllers.clone();
        dirs.push(dir);
    }
    let mut applied = AppliedLimits::default();
    for dir in &dirs {
        if let (true, Some(cpu)) = (dir.hierarchy.iter().any(|c| c == "cpuset"), limits.cpu) {
            applied.cpus = confine(dir, cpu)?;
        }
        write_limits(&dir.path, &dir.controllers, limits, &mut applied)?;
        if dir.procs != dir.path {
            // The environment's view (its cgroup namespace root is `self`) shows its limits.
            write_limits(&dir.procs, &dir.controllers, limits, &mut applied)?;
        }
    }
    created.disarm();
    Ok(Cgroup {
        version: Version::V1,
        leaf: placement.group(leaf),
        dirs,
        applied,
        nested: placement.nested(),
        destroyed: false,
    })
}

/// v1: a new cpuset directory inherits its parent's cpus and memory nodes.
struct V1Prep {
    cpuset: bool,
}

impl Prep for V1Prep {
    fn made(&self, dir: &Path) -> Result<(), CgroupError> {
        if self.cpuset {
            // A new v1 cpuset has no cpus and no memory nodes (unless the parent clones them),
            // and nothing can join it then.
            inherit_cpuset(dir)?;
        }
        Ok(())
    }

    fn will_have_children(&self, _dir: &Path) -> Result<(), CgroupError> {
        Ok(())
    }
}

/// Whether the group an environment at `placement` is nested under runs on fewer CPUs than
/// Warren's own cpuset group in hierarchy `h` (a spawner confined by its cpu limit).
fn parent_confined(h: &super::V1Hierarchy, placement: &Placement) -> bool {
    let Some(parent) = &placement.parent else {
        return false;
    };
    let top = h.mount_point.join(super::PARENT);
    let cpus = |dir: &Path| read_optional(&dir.join("cpuset.cpus")).unwrap_or_default();
    cpus(&top.join(parent)).trim() != cpus(&top).trim()
}

/// Confine the new cpuset group `dir` to the CPUs a limit of `cpu` takes of those its parent
/// allows ([`super::cpuset::confine`]): its `self` first (v1 wants every child's CPUs within
/// its parent's), then the group. Returns the list written, `None` when the limit covers every
/// CPU the parent allows.
fn confine(dir: &super::Dir, cpu: CpuQuota) -> Result<Option<String>, CgroupError> {
    let Some(parent) = dir.path.parent() else {
        return Ok(None);
    };
    let mut allowed = read_optional(&parent.join("cpuset.effective_cpus"))?;
    if allowed.trim().is_empty() {
        allowed = read_optional(&parent.join("cpuset.cpus"))?;
    }
    let Some(list) = super::cpuset::confine(&allowed, cpu.micros, super::cpuset::launch_key())
    else {
        return Ok(None);
    };
    if dir.procs != dir.path {
        write_file(&dir.procs.join("cpuset.cpus"), &list)?;
    }
    write_file(&dir.path.join("cpuset.cpus"), &list)?;
    Ok(Some(list))
}

/// Give the cpuset `dir` its parent's cpus and memory nodes where it has none.
fn inherit_cpuset(dir: &Path) -> Result<(), CgroupError> {
    let Some(parent) = dir.parent() else {
        return Ok(());
    };
    for file in ["cpuset.cpus", "cpuset.mems"] {
        if read_optional(&dir.join(file))?.trim().is_empty() {
            let value = read_optional(&parent.join(file))?;
            write_file(&dir.join(file), value.trim())?;
        }
    }
    Ok(())
}

/// Write the limits that belong to `controllers` into the directory `dir`, recording them in
/// `applied`: `memory.limit_in_bytes` then `memory.memsw.limit_in_bytes` (the same value, when
/// the kernel has swap accounting; it must not be lower than the memory limit, so it comes
/// second), `pids.max`, `cpu.cfs_period_us` then `cpu.cfs_quota_us`.
pub(super) fn write_limits(
    dir: &Path,
    controllers: &[&str],
    limits: &Limits,
    applied: &mut AppliedLimits,
) -> Result<(), CgroupError> {
    if let (true, Some(bytes)) = (controllers.contains(&"memory"), limits.memory) {
        write_file(&dir.join("memory.limit_in_bytes"), &bytes.to_string())?;
        applied.memory_bytes = Some(bytes);
        let memsw = dir.join("memory.memsw.limit_in_bytes");
        if memsw.exists() {
            write_file(&memsw, &bytes.to_string())?;
            applied.swap_capped = true;
        }
    }
    if let (true, Some(pids)) = (controllers.contains(&"pids"), limits.pids) {
        write_file(&dir.join("pids.max"), &pids.to_string())?;
        applied.pids_max = Some(pids);
    }
    if let (true, Some(cpu)) = (controllers.contains(&"cpu"), limits.cpu) {
        let (quota, period) = (cpu.quota_us(), CpuQuota::PERIOD_US);
        write_file(&dir.join("cpu.cfs_period_us"), &period.to_string())?;
        write_file(&dir.join("cpu.cfs_quota_us"), &quota.to_string())?;
        applied.cpu_quota_us = Some(quota);
        applied.cpu_period_us = Some(period);
    }
    Ok(())
}

/// Kill everything listed in any of `dirs` until all are empty (bounded): freeze, SIGKILL every
/// pid, thaw, and look again.
/// With `nested`, every directory below each of `dirs` is killed too.
pub(super) fn kill_all(
    groups: &[&Path],
    freezer: Option<&Path>,
    nested: bool,
) -> Result<(), CgroupError> {
    let walked: Vec<PathBuf>;
    let dirs: Vec<&Path> = if nested {
        walked = groups.iter().flat_map(|g| subtree(g)).collect();
        walked.iter().map(PathBuf::as_path).collect()
    } else {
        groups.to_vec()
    };
    let dirs = dirs.as_slice();
    // The common case at teardown: the workload has exited and the cgroup is already empty, so
    // there is nothing to freeze (a freeze and thaw cost two state changes per call).
    let mut all_empty = true;
    for dir in dirs {
        if !procs(dir)?.is_empty() {
            all_empty = false;
            break;
        }
    }
    if all_empty {
        return Ok(());
    }
    let mut busiest: (PathBuf, usize) = (PathBuf::new(), 0);
    let empty = wait_until(KILL_TIMEOUT, || {
        // Kill even when freezing failed, and thaw whatever happened: a cgroup must never be
        // left frozen, or its killed tasks would never run to their exit.
        let frozen = freezer.map_or(Ok(()), freeze);
        let killed = kill_listed(dirs);
        let thawed = freezer.map_or(Ok(()), |dir| {
            write_file(&dir.join("freezer.state"), "THAWED")
        });
        frozen?;
        busiest = killed?;
        thawed?;
        Ok(busiest.1 == 0)
    })?;
    if empty {
        Ok(())
    } else {
        Err(CgroupError::KillTimeout {
            path: busiest.0,
            remaining: busiest.1,
            timeout: KILL_TIMEOUT,
        })
    }
}

/// SIGKILL every pid listed in `dirs`; returns the directory listing the most pids and how many.
fn kill_listed(dirs: &[&Path]) -> Result<(PathBuf, usize), CgroupError> {
    let mut busiest: (PathBuf, usize) = (PathBuf::new(), 0);
    for dir in dirs {
        let pids = procs(dir)?;
        for &pid in &pids {
            sigkill(pid, dir)?;
        }
        if pids.len() > busiest.1 {
            busiest = (dir.to_path_buf(), pids.len());
        }
    }
    Ok(busiest)
}

/// Ask the freezer to stop every task in `dir` and wait briefly until it reports `FROZEN`.
/// A cgroup that stays `FREEZING` (a task in uninterruptible sleep) is killed all the same.
fn freeze(dir: &Path) -> Result<(), CgroupError> {
    let state = dir.join("freezer.state");
    write_file(&state, "FROZEN")?;
    wait_until(FREEZE_TIMEOUT, || {
        Ok(read_optional(&state)?.trim() == "FROZEN")
    })?;
    Ok(())
}
