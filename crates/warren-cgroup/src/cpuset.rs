//! Which CPUs an environment with a CPU limit runs on.
//!
//! A CFS quota alone (`cpu.max`, `cpu.cfs_quota_us`) bounds an environment's CPU time per period,
//! not how many CPUs it takes at once: a tenant allowed half a CPU with two spinning threads on a
//! two-CPU host burns its 50 ms of each 100 ms period on both CPUs in 25 ms, and every other
//! process of the host (the kernel daemon, the neighbours) waits behind it for a scheduler slice
//! on either CPU during that burst. So an environment with `cpus = C` is also confined (its
//! cpuset) to `ceil(C)` of the CPUs its parent group allows, when that is fewer than all of them:
//! its share is then taken on those CPUs only, and the others stay free of it. Programs that size
//! their thread pools by the CPUs they may use (`nproc`, Go, the JVM) see the same count as the
//! quota gives them.
//!
//! Which CPUs: a run of consecutive allowed CPUs starting at a pseudo-random one (from the
//! launcher's pid), so that environments spread over the host without any per-launch look at the
//! others.

/// The CPUs of a cpuset list such as `0-3,8,10-11` (`cpuset.cpus`), in increasing order;
/// `None` when the text is not such a list.
pub(crate) fn parse_list(text: &str) -> Option<Vec<u32>> {
    let mut cpus = Vec::new();
    for part in text.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (u32, u32) = (a.parse().ok()?, b.parse().ok()?);
                if a > b || b - a > 65_536 {
                    return None;
                }
                cpus.extend(a..=b);
            }
            None => cpus.push(part.parse().ok()?),
        }
    }
    cpus.sort_unstable();
    cpus.dedup();
    Some(cpus)
}

/// `cpus` (increasing) as a cpuset list, ranges joined: `[0, 1, 2, 5]` is `0-2,5`.
pub(crate) fn format_list(cpus: &[u32]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < cpus.len() {
        let mut j = i;
        while j + 1 < cpus.len() && cpus[j + 1] == cpus[j] + 1 {
            j += 1;
        }
        out.push(if i == j {
            cpus[i].to_string()
        } else {
            format!("{}-{}", cpus[i], cpus[j])
        });
        i = j + 1;
    }
    out.join(",")
}

/// The CPUs an environment allowed `micros` millionths of a CPU runs on, from the list its
/// parent allows (`allowed`, a cpuset list): `ceil(micros / 1e6)` consecutive allowed CPUs
/// (wrapping around) starting at the one `key` picks, as a cpuset list. `None` when that is all
/// of them (nothing to confine) or `allowed` cannot be read as a list.
pub(crate) fn confine(allowed: &str, micros: u64, key: u32) -> Option<String> {
    let cpus = parse_list(allowed)?;
    let want = micros.div_ceil(1_000_000).max(1);
    if cpus.is_empty() || want >= cpus.len() as u64 {
        return None;
    }
    let start = key as usize % cpus.len();
    let mut chosen: Vec<u32> = (0..want as usize)
        .map(|i| cpus[(start + i) % cpus.len()])
        .collect();
    chosen.sort_unstable();
    Some(format_list(&chosen))
}

/// The key [`confine`] starts from in this process: its pid, scattered (Knuth's multiplicative
/// hash), so that launches one after the other land on different CPUs whatever the pid steps.
pub(crate) fn launch_key() -> u32 {
    (u64::from(std::process::id()).wrapping_mul(2_654_435_761) >> 16) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_are_read_and_written_as_the_kernel_does() {
        assert_eq!(
            parse_list("0-3,8,10-11\n"),
            Some(vec![0, 1, 2, 3, 8, 10, 11])
        );
        assert_eq!(parse_list(""), Some(vec![]));
        assert_eq!(parse_list("1,0,1"), Some(vec![0, 1]));
        assert_eq!(parse_list("3-1"), None);
        assert_eq!(parse_list("a"), None);
        assert_eq!(format_list(&[0, 1, 2, 5]), "0-2,5");
        assert_eq!(format_list(&[7]), "7");
        assert_eq!(format_list(&[0, 2, 3]), "0,2-3");
    }

    #[test]
    fn a_fractional_limit_takes_one_cpu_and_a_whole_one_as_many() {
        assert_eq!(confine("0-1", 500_000, 0).as_deref(), Some("0"));
        assert_eq!(confine("0-1", 500_000, 1).as_deref(), Some("1"));
        assert_eq!(confine("0-7", 2_500_000, 6).as_deref(), Some("0,6-7"));
        assert_eq!(confine("0-7", 2_000_000, 2).as_deref(), Some("2-3"));
        // Only the parent's CPUs, whatever they are.
        assert_eq!(confine("4,6,9", 1_000_000, 2).as_deref(), Some("9"));
    }

    #[test]
    fn nothing_is_confined_when_the_limit_covers_every_cpu() {
        assert_eq!(confine("0-1", 1_500_000, 0), None);
        assert_eq!(confine("0-1", 2_000_000, 1), None);
        assert_eq!(confine("0", 100_000, 0), None);
        assert_eq!(confine("", 100_000, 0), None);
        assert_eq!(confine("x", 100_000, 0), None);
    }

    #[test]
    fn launches_spread_over_the_cpus() {
        let mut seen = [0u32; 4];
        for pid in 1000..1400u64 {
            let key = (pid.wrapping_mul(2_654_435_761) >> 16) as u32;
            let cpu: usize = confine("0-3", 1, key).unwrap().parse().unwrap();
            seen[cpu] += 1;
        }
        assert!(seen.iter().all(|&n| n > 60), "{seen:?}");
    }
}
