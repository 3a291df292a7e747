//! Security policy as data: the tables the launcher applies, each entry with the reason it is
//! there. Review a change here like a change to code; `docs/threat-model.md` explains the threats
//! these entries answer. The seccomp allow-list lives beside this in `seccomp/policy.json`.

/// Paths under `/proc` hidden from the environment. Files are covered with `/dev/null`,
/// directories with an empty read-only directory (the skeleton's, `crate::skeleton`).
pub const MASKED_PROC_PATHS: &[(&str, &str)] = &[
    ("acpi", "host firmware tables and ACPI event interfaces"),
    ("asound", "host sound hardware state"),
    (
        "interrupts",
        "per-cpu interrupt counts leak host activity (side channel)",
    ),
    ("kcore", "an image of host physical memory"),
    (
        "keys",
        "keys of every keyring the reader can view, across namespaces",
    ),
    ("latency_stats", "host-wide latency tracing data"),
    (
        "sched_debug",
        "scheduler state of every task on the host, with names and pids",
    ),
    (
        "scsi",
        "host SCSI devices and a write interface to rescan them",
    ),
    (
        "timer_list",
        "pending timers of the whole host with kernel addresses and task names",
    ),
    ("timer_stats", "host-wide timer statistics (older kernels)"),
    (
        "kpagecount",
        "host physical page usage (row-hammer and layout side channels)",
    ),
    (
        "kpageflags",
        "host physical page flags (row-hammer and layout side channels)",
    ),
    ("kpagecgroup", "host physical page ownership"),
    ("vmallocinfo", "kernel virtual memory layout with addresses"),
    (
        "sysrq-trigger",
        "host-wide magic SysRq actions (crash, reboot, oom-kill)",
    ),
];

/// The entries of [`MASKED_PROC_PATHS`] that procfs makes directories (where a kernel has
/// them): they are covered with the skeleton's empty read-only directory at once. A bind of the null device
/// onto a directory fails only after the kernel has cloned the source mount, and dropping that
/// clone waits for an expedited RCU grace period (about 70 µs on every launch here).
pub const MASKED_PROC_DIRS: &[&str] = &["acpi", "asound", "scsi"];

/// Whether `/proc/kallsyms` would show real kernel addresses to the environment, which has no
/// `CAP_SYSLOG` in the host namespace: the kernel shows them anyway when `kptr_restrict` is 0
/// and `perf_event_paranoid` is 1 or less (addresses "for perf"). Then Warren masks the file;
/// otherwise it stays readable with every address zero, as programs that read symbols expect.
/// Unknown values count as leaking.
pub fn kallsyms_would_leak(kptr_restrict: Option<i64>, perf_event_paranoid: Option<i64>) -> bool {
    match (kptr_restrict, perf_event_paranoid) {
        (Some(k), _) if k >= 1 => false,
        (Some(0), Some(p)) => p <= 1,
        _ => true,
    }
}

/// Paths under `/proc` left visible but read-only.
pub const READONLY_PROC_PATHS: &[(&str, &str)] = &[
    ("bus", "host PCI/USB device interfaces"),
    ("fs", "host filesystem tunables (nfsd, xfs)"),
    ("irq", "interrupt affinity of the host"),
    (
        "sys",
        "kernel tunables: most are host-global (core_pattern, modprobe, vm.*)",
    ),
];

/// Device nodes bind-mounted from the host into the environment's otherwise empty `/dev`.
/// Nothing else: no disks, no `/dev/mem`, no `/dev/kmsg`, no terminals.
pub const DEVICES: &[(&str, &str)] = &[
    (
        "null",
        "discarding output; also the object Warren uses to mask files",
    ),
    ("zero", "zero pages for mmap and dd"),
    ("full", "programs test ENOSPC handling with it"),
    ("random", "entropy; identical to urandom on current kernels"),
    ("urandom", "entropy for every TLS library and hash seed"),
];

/// Symbolic links in `/dev` that programs expect.
pub const DEV_SYMLINKS: &[(&str, &str)] = &[
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
];

/// Resource limits set before exec: (resource, soft, hard, reason). `pids` limits process count
/// per host uid as a second line behind the pids cgroup and is filled in from the plan.
pub const RLIMITS: &[(Rlimit, u64, u64, &str)] = &[
    (
        Rlimit::Core,
        0,
        0,
        "no core dumps: they would write workload memory to the host",
    ),
    (
        Rlimit::NoFile,
        1024,
        65_536,
        "bounded descriptors per process, Docker's soft default",
    ),
    (
        Rlimit::RtPrio,
        0,
        0,
        "no real-time scheduling: it can starve the host",
    ),
    (
        Rlimit::Nice,
        0,
        0,
        "no raising of priority above the default",
    ),
    (
        Rlimit::MemLock,
        8 << 20,
        8 << 20,
        "bounded locked memory (io and crypto libraries lock a little)",
    ),
    (
        Rlimit::MsgQueue,
        819_200,
        819_200,
        "POSIX message queues bounded as on a default host",
    ),
];

/// The resources Warren limits with `setrlimit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rlimit {
    /// RLIMIT_CORE
    Core,
    /// RLIMIT_NOFILE
    NoFile,
    /// RLIMIT_RTPRIO
    RtPrio,
    /// RLIMIT_NICE
    Nice,
    /// RLIMIT_MEMLOCK
    MemLock,
    /// RLIMIT_MSGQUEUE
    MsgQueue,
    /// RLIMIT_NPROC
    NProc,
}

/// The `PATH` an environment gets unless the user sets one.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// How many host uids (and gids) each environment gets: root inside is the first of them.
pub const UID_RANGE_SIZE: u32 = 65_536;

/// The first host uid of the first environment's range. Above the ranges of /etc/subuid
/// conventions (100000 + 65536 n for a few thousand users) and below 2^31.
pub const UID_RANGE_BASE: u32 = 1_000_000_000;

/// How many environments may hold a uid range at once on one host.
pub const UID_RANGE_SLOTS: u32 = 16_384;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_entry_has_a_reason_and_a_plain_name() {
        for (path, why) in MASKED_PROC_PATHS
            .iter()
            .chain(READONLY_PROC_PATHS)
            .chain(DEVICES)
        {
            assert!(!why.is_empty(), "{path} has no reason");
            assert!(
                !path.contains('/') && !path.contains(".."),
                "{path} must be one component"
            );
        }
    }

    #[test]
    fn kallsyms_is_masked_exactly_when_the_kernel_would_show_addresses() {
        assert!(!kallsyms_would_leak(Some(1), Some(-1)));
        assert!(!kallsyms_would_leak(Some(2), None));
        assert!(!kallsyms_would_leak(Some(0), Some(2)));
        assert!(kallsyms_would_leak(Some(0), Some(1)));
        assert!(kallsyms_would_leak(Some(0), Some(-1)));
        assert!(kallsyms_would_leak(None, Some(2)));
        assert!(kallsyms_would_leak(Some(0), None));
    }

    #[test]
    fn uid_ranges_fit_below_2_pow_31() {
        let last = UID_RANGE_BASE as u64 + UID_RANGE_SLOTS as u64 * UID_RANGE_SIZE as u64;
        assert!(last < 1 << 31, "uid ranges end at {last}");
    }
}
