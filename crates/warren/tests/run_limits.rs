//! `warren run`: cgroup limits, observed in the cgroup files from the host and by their effect
//! inside; and the cgroup removed afterwards.

mod common;
use common::*;

fn read(p: &std::path::Path) -> String {
    std::fs::read_to_string(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .trim()
        .to_owned()
}

#[test]
fn limits_are_written_to_the_cgroup_and_it_is_removed_afterwards() {
    let name = unique("lim");
    let root = busybox_root().to_str().unwrap().to_owned();
    let env = Background::start(
        &name,
        &[
            "--rootfs",
            &root,
            "--memory",
            "64M",
            "--pids",
            "32",
            "--cpus",
            "0.5",
            "--",
            "/bin/sleep",
            "30",
        ],
    );
    let info = env.inspect().unwrap();
    let version = info["applied"]["cgroup"]["version"]
        .as_str()
        .unwrap()
        .to_owned();
    let dirs = cgroup_dirs(&name);
    assert!(!dirs.is_empty(), "no cgroup for {name}");
    let pid = env.pid().to_string();
    let mut seen = (false, false, false);
    for d in &dirs {
        let procs = read(&d.join("cgroup.procs"));
        assert!(
            procs.lines().any(|l| l == pid),
            "{} lacks pid {pid}: {procs}",
            d.display()
        );
        if version == "v2" {
            assert_eq!(read(&d.join("memory.max")), (64u64 << 20).to_string());
            assert_eq!(read(&d.join("pids.max")), "32");
            assert_eq!(read(&d.join("cpu.max")), "50000 100000");
            seen = (true, true, true);
        } else {
            if d.join("memory.limit_in_bytes").exists() {
                assert_eq!(
                    read(&d.join("memory.limit_in_bytes")),
                    (64u64 << 20).to_string()
                );
                seen.0 = true;
            }
            if d.join("pids.max").exists() {
                assert_eq!(read(&d.join("pids.max")), "32");
                seen.1 = true;
            }
            if d.join("cpu.cfs_quota_us").exists() {
                assert_eq!(read(&d.join("cpu.cfs_quota_us")), "50000");
                assert_eq!(read(&d.join("cpu.cfs_period_us")), "100000");
                seen.2 = true;
            }
        }
    }
    assert_eq!(
        seen,
        (true, true, true),
        "not every limit was found in {dirs:?}"
    );
    // The cgroup namespace hides the host path: inside, the environment is at the root.
    let o = run_sh(&unique("cgns"), &[], "cat /proc/self/cgroup");
    assert!(
        stdout(&o).lines().all(|l| l.ends_with(":/")),
        "{}",
        stdout(&o)
    );
    let status = env.stop();
    assert_eq!(
        status.code(),
        Some(137),
        "the second SIGTERM kills the workload"
    );
    assert!(
        cgroup_dirs(&name).is_empty(),
        "cgroup left behind: {:?}",
        cgroup_dirs(&name)
    );
}

#[test]
fn a_killed_launcher_takes_its_environment_along_and_its_cgroup_is_swept() {
    let name = unique("crash");
    let root = busybox_root().to_str().unwrap().to_owned();
    let env = Background::start(&name, &["--rootfs", &root, "--", "/bin/sleep", "30"]);
    let workload = env.pid();
    env.crash(); // SIGKILL to `warren run`: no chance to clean up
    let gone = (0..300).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(10));
        !std::path::Path::new(&format!("/proc/{workload}")).exists()
            || host_status_field(workload, "State:").starts_with('Z')
    });
    assert!(gone, "the workload outlived its launcher");
    // The next launch of any environment sweeps the orphaned cgroup; the name is free again.
    assert_code(&run_sh(&name, &[], "true"), 0);
    assert!(cgroup_dirs(&name).is_empty(), "{:?}", cgroup_dirs(&name));
}

#[test]
fn cgroup_is_removed_after_a_normal_exit() {
    let name = unique("cgrm");
    let o = run_sh(&name, &["--pids", "8"], "true");
    assert_code(&o, 0);
    assert!(cgroup_dirs(&name).is_empty(), "{:?}", cgroup_dirs(&name));
}

#[test]
fn memory_limit_oom_kills_inside_only() {
    // Fill a 64M tmpfs-backed /dev/shm? No: plain anonymous memory through busybox `dd` into a
    // shell variable is awkward; `tail /dev/zero` buffers an endless line in memory.
    let name = unique("oom");
    let o = run_sh(
        &name,
        &["--memory", "32M", "--json"],
        "tail /dev/zero; echo survived $?",
    );
    let out = stdout(&o);
    // The memory hog was killed (SIGKILL: 137); the shell that started it lives on.
    assert!(out.contains("survived 137\n"), "{out}");
    let last: serde_json::Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert_eq!(last["oom_killed"], true, "{out}");
    // The host (this test) is alive and well, and the next environment runs.
    assert_code(&run_sh(&unique("after-oom"), &[], "true"), 0);
}

#[test]
fn pids_limit_stops_a_fork_bomb_inside() {
    let name = unique("fork");
    let o = run_sh(
        &name,
        &["--pids", "16"],
        "exec 2>&1; i=0; while [ $i -lt 40 ]; do sleep 5 & i=$((i+1)); echo $i; done",
    );
    let out = stdout(&o);
    assert!(out.contains("can't fork"), "{out}");
    let started: u32 = out
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .max()
        .unwrap_or(0);
    // The shell is one of the 16; the others are sleeps.
    assert!(
        (10..16).contains(&started),
        "{started} processes started despite --pids 16: {out}"
    );
    // Control: without the tight limit all 40 start.
    let o = run_sh(
        &unique("fork"),
        &[],
        "i=0; while [ $i -lt 40 ]; do sleep 1 & i=$((i+1)); done; echo $i",
    );
    assert_eq!(stdout(&o).trim(), "40");
}

#[test]
fn cpu_limit_holds() {
    // Half a cpu: over one second of wall time, the environment gets about 0.5 s of cpu.
    let name = unique("cpu");
    let o = run_sh(
        &name,
        &["--cpus", "0.2"],
        "timeout 1 sh -c 'while :; do :; done'; cat /proc/self/stat > /dev/null; times",
    );
    let out = stdout(&o);
    // `times` prints the children's user and system time on its second line: "0m0.19s 0m0.00s".
    let line = out.lines().nth(1).unwrap_or_default().to_owned();
    let secs: f64 = line
        .split_whitespace()
        .map(|t| {
            let (m, s) = t.trim_end_matches('s').split_once('m').unwrap();
            m.parse::<f64>().unwrap() * 60.0 + s.parse::<f64>().unwrap()
        })
        .sum();
    assert!(
        secs < 0.45,
        "a 0.2-cpu environment used {secs} s of cpu in 1 s: {out}"
    );
    assert!(secs > 0.05, "the loop did not run: {out}");
}

/// The CPUs the test may use, as a cpuset list's members.
fn host_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// A cpu limit also confines the environment to `ceil(cpus)` CPUs (its cpuset), which nothing
/// inside can widen; the positive control shows that an environment may change its own affinity
/// where no cpuset holds it (so the probe would see a widening), and one allowed every CPU keeps
/// them all.
#[test]
fn a_cpu_limit_confines_the_environment_to_as_many_cpus() {
    let n = host_cpus();
    if n < 2 {
        eprintln!("skipped: this host lets the test use {n} CPU, nothing to confine");
        return;
    }
    let all = format!("{:x}", (1u64 << n.min(63)) - 1);
    // The affinity the environment has, then after asking for every CPU.
    let probe = format!(
        "nproc; taskset -p {all} $$ >/dev/null 2>&1; nproc; \
         sed -n 's/^Cpus_allowed_list:[[:space:]]*//p' /proc/self/status"
    );

    let o = run_sh(&unique("cpuset"), &["--cpus", "0.5", "--json"], &probe);
    assert_code(&o, 0);
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[..2], ["1", "1"], "half a CPU: one CPU, kept: {out}");
    let report: serde_json::Value = serde_json::from_str(lines.last().unwrap()).unwrap();
    let inside = lines[2];
    assert_eq!(
        report["applied"]["cgroup"]["limits"]["cpus"], inside,
        "the report names the CPU the environment runs on: {out}"
    );

    // Positive control: without a cpu limit the environment narrows and widens its own
    // affinity at will.
    let o = run_sh(
        &unique("cpuset"),
        &[],
        &format!("nproc; taskset -p 1 $$ >/dev/null; nproc; {probe}"),
    );
    assert_code(&o, 0);
    let n_s = n.to_string();
    assert_eq!(
        stdout(&o).lines().take(4).collect::<Vec<_>>(),
        [n_s.as_str(), "1", "1", n_s.as_str()],
        "an unconfined environment: every CPU, one after narrowing, all again after widening"
    );

    // A limit of every CPU confines nothing.
    let o = run_sh(&unique("cpuset"), &["--cpus", &n_s], "nproc");
    assert_code(&o, 0);
    assert_eq!(stdout(&o).trim(), n_s);
}
