//! `warren run`: each isolation property of an environment, observed from inside and from the
//! host. Every test asserts the specific outcome; most carry a control showing the probe would
//! have seen the property missing.

mod common;
use common::*;

#[test]
fn demo_shows_root_inside_hostname_image_files_and_no_privileges() {
    let name = unique("demo");
    let o = run_sh(&name, &[], "id; hostname; ls /; cat /proc/self/status");
    assert_code(&o, 0);
    let out = stdout(&o);
    assert!(out.contains("uid=0(root) gid=0(root)"), "{out}");
    assert!(
        out.lines().any(|l| l == name),
        "hostname {name} missing: {out}"
    );
    let listing: Vec<&str> = out
        .lines()
        .skip(2)
        .take_while(|l| !l.starts_with("Name:"))
        .collect();
    assert_eq!(
        listing,
        ["bin", "dev", "etc", "proc", "sys", "tmp"],
        "{out}"
    );
    for field in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        assert!(
            out.contains(&format!("{field}:\t0000000000000000")),
            "{field} not empty: {out}"
        );
    }
    assert!(out.contains("NoNewPrivs:\t1"), "{out}");
    assert!(out.contains("Seccomp:\t2"), "{out}");
}

#[test]
fn host_sees_an_unprivileged_uid_unique_per_environment() {
    let (a, b) = (unique("uida"), unique("uidb"));
    let root = busybox_root().to_str().unwrap().to_owned();
    let ea = Background::start(&a, &["--rootfs", &root, "--", "/bin/sleep", "30"]);
    let eb = Background::start(&b, &["--rootfs", &root, "--", "/bin/sleep", "30"]);
    let uid = |pid| -> Vec<u64> {
        host_status_field(pid, "Uid:")
            .split_whitespace()
            .map(|x| x.parse().unwrap())
            .collect()
    };
    let (ua, ub) = (uid(ea.pid()), uid(eb.pid()));
    // Control: this process is host root, so a 0 would be visible here.
    assert_eq!(uid(std::process::id() as i32)[0], 0);
    assert!(
        ua.iter().all(|&u| u >= 1_000_000_000),
        "env a runs as host uid {ua:?}"
    );
    assert!(
        ub.iter().all(|&u| u >= 1_000_000_000),
        "env b runs as host uid {ub:?}"
    );
    assert!(
        ua[0].abs_diff(ub[0]) >= 65_536,
        "ranges overlap: {ua:?} {ub:?}"
    );
    let map = std::fs::read_to_string(format!("/proc/{}/uid_map", ea.pid())).unwrap();
    let cols: Vec<u64> = map.split_whitespace().map(|x| x.parse().unwrap()).collect();
    assert_eq!(cols, [0, ua[0], 65_536]);
}

#[test]
fn every_namespace_differs_from_the_host() {
    let name = unique("ns");
    let kinds = ["user", "pid", "mnt", "uts", "ipc", "net", "cgroup"];
    let script: String = kinds
        .iter()
        .map(|k| format!("readlink /proc/self/ns/{k}; "))
        .collect();
    let o = run_sh(&name, &[], &script);
    assert_code(&o, 0);
    let inside: Vec<String> = stdout(&o).lines().map(str::to_owned).collect();
    assert_eq!(inside.len(), kinds.len(), "{inside:?}");
    for (k, line) in kinds.iter().zip(&inside) {
        let host = std::fs::read_link(format!("/proc/self/ns/{k}")).unwrap();
        assert!(line.starts_with(&format!("{k}:[")), "{line}");
        assert_ne!(
            line,
            host.to_str().unwrap(),
            "{k} namespace is shared with the host"
        );
    }
}

#[test]
fn pid_namespace_shows_only_the_environment() {
    let o = run_sh(
        &unique("pid"),
        &[],
        "echo $$; ls /proc | grep -E '^[0-9]+$' | wc -l",
    );
    assert_code(&o, 0);
    let out = stdout(&o);
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("1"), "the workload is not pid 1: {out}");
    let count: u32 = lines.next().unwrap().trim().parse().unwrap();
    // sh, ls, grep, wc: at most a handful, against hundreds on the host.
    assert!(count <= 5, "{count} processes visible");
    let host = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
        .count();
    assert!(host > 5, "control: the host shows {host} processes");
}

#[test]
fn network_namespace_has_only_loopback_and_it_is_up() {
    let o = run_sh(
        &unique("net"),
        &[],
        "cat /proc/net/dev | tail -n +3 | cut -d: -f1 | tr -d ' '; ip -o link show lo",
    );
    assert_code(&o, 0);
    let out = stdout(&o);
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("lo"), "{out}");
    let lo = lines.next().unwrap_or("");
    assert!(lo.contains("<LOOPBACK,UP,LOWER_UP>"), "lo is not up: {out}");
    let o = run_sh(
        &unique("net"),
        &[],
        // The listener may start late on a busy machine: connect until it answers (5 s at most),
        // then wait for what it wrote. Its standard input stays open (`sleep |`): BusyBox `nc`
        // stops at end of input, and from the workload's /dev/null it could stop before reading
        // what the client sent (seen on a loaded machine: 6 failures in 15 runs).
        "(sleep 30 | nc -l -p 7777 > /tmp/got &); i=0; \
         while [ $i -lt 50 ] && ! (echo ping | nc 127.0.0.1 7777 2>/dev/null); do sleep 0.1; i=$((i+1)); done; \
         i=0; while [ $i -lt 50 ] && [ ! -s /tmp/got ]; do sleep 0.1; i=$((i+1)); done; cat /tmp/got",
    );
    assert_code(&o, 0);
    assert_eq!(stdout(&o), "ping\n", "loopback does not carry traffic");
}

#[test]
fn root_is_read_only_and_tmp_is_a_size_limited_tmpfs() {
    let o = run_sh(
        &unique("ro"),
        &["--tmpfs-size", "1M"],
        "exec 2>&1; touch /bin/x; mount -o remount,rw /; echo ok > /tmp/f && cat /tmp/f; \
         dd if=/dev/zero of=/tmp/big bs=64k count=100; grep ' /tmp ' /proc/mounts",
    );
    let out = stdout(&o);
    assert!(
        out.contains("touch: /bin/x: Read-only file system"),
        "{out}"
    );
    assert!(
        out.to_lowercase().contains("permission denied"),
        "remount allowed: {out}"
    );
    assert!(out.contains("15+0 records out"), "{out}");
    assert!(out.contains("ok\n"), "{out}");
    assert!(
        out.contains("No space left on device"),
        "tmpfs limit did not hold: {out}"
    );
    assert!(
        out.contains("tmpfs /tmp tmpfs rw,nosuid,nodev") && out.contains("size=1024k"),
        "{out}"
    );
}

#[test]
fn host_files_and_the_old_root_are_unreachable() {
    let marker = std::env::temp_dir().join(format!("warren-marker-{}", std::process::id()));
    std::fs::write(&marker, "secret").unwrap();
    let m = marker.to_str().unwrap();
    let o = run_sh(
        &unique("host"),
        &[],
        &format!("cat {m} 2>&1; cat /../../..{m} 2>&1; cat /proc/1/root{m} 2>&1; cat /proc/mounts"),
    );
    let out = stdout(&o);
    assert!(!out.contains("secret"), "host marker read: {out}");
    assert_eq!(out.matches("No such file or directory").count(), 3, "{out}");
    // Only the environment's own mounts: no host filesystem other than the image's root.
    for line in out
        .lines()
        .filter(|l| l.contains(" / ") || l.starts_with("/dev/"))
    {
        assert!(
            line.split_whitespace().nth(1) == Some("/"),
            "host mount visible: {line}"
        );
    }
    assert!(
        !out.contains("/run/warren"),
        "the staging path leaks: {out}"
    );
    // Control: the marker is readable from the host.
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), "secret");
    std::fs::remove_file(&marker).unwrap();
}

#[test]
fn proc_is_masked_and_sys_and_devices_are_absent() {
    // Only paths this kernel has can be checked; the control is that the host shows them.
    let masked: Vec<&str> = [
        "/proc/kcore",
        "/proc/keys",
        "/proc/timer_list",
        "/proc/sched_debug",
        "/proc/interrupts",
    ]
    .into_iter()
    .filter(|p| std::path::Path::new(p).exists())
    .collect();
    assert!(
        masked.len() >= 2,
        "too few maskable paths on this host to test: {masked:?}"
    );
    let host_keys = std::fs::read_to_string("/proc/interrupts").unwrap_or_default();
    assert!(
        !host_keys.is_empty(),
        "control: /proc/interrupts has content on the host"
    );
    let mut script = String::from("exec 2>&1; ");
    for p in &masked {
        script.push_str(&format!("echo \"{p} $(wc -c < {p})\"; "));
    }
    script
        .push_str("echo acpi $(ls -A /proc/acpi | wc -l); (echo x > /proc/sys/kernel/hostname); ");
    // How the directory masks are mounted: the skeleton's empty directory, read-only.
    script.push_str("grep ' /proc/acpi ' /proc/self/mountinfo; ");
    if std::path::Path::new("/proc/sysrq-trigger").exists() {
        script.push_str("(echo x > /proc/sysrq-trigger); ");
    }
    // /sys holds only fs/cgroup, the read-only view of the environment's own cgroup.
    script.push_str("echo sys $(ls -A /sys) $(ls -A /sys/fs); ls /dev");
    let o = run_sh(&unique("proc"), &[], &script);
    let out = stdout(&o);
    for p in &masked {
        assert!(out.contains(&format!("{p} 0\n")), "{p} is readable: {out}");
    }
    if std::path::Path::new("/proc/acpi").is_dir() {
        assert!(out.contains("acpi 0\n"), "/proc/acpi has entries: {out}");
        let line = out
            .lines()
            .find(|l| l.contains(" /proc/acpi "))
            .unwrap_or_else(|| panic!("/proc/acpi is not masked: {out}"));
        assert!(
            line.contains(" /empty /proc/acpi ro,") && line.contains(" - tmpfs "),
            "/proc/acpi is not the skeleton's empty read-only directory: {line}"
        );
    }
    assert!(
        out.contains("/proc/sys/kernel/hostname: Read-only file system"),
        "/proc/sys writable: {out}"
    );
    if std::path::Path::new("/proc/sysrq-trigger").exists() {
        assert!(
            out.contains("/proc/sysrq-trigger: Read-only file system"),
            "{out}"
        );
    }
    assert!(
        out.contains("sys fs cgroup\n"),
        "/sys has other content: {out}"
    );
    let devs: Vec<&str> = out
        .lines()
        .skip_while(|l| !l.starts_with("sys "))
        .skip(1)
        .collect();
    assert_eq!(
        devs,
        [
            "fd", "full", "null", "random", "shm", "stderr", "stdin", "stdout", "urandom", "zero"
        ]
    );
}

#[test]
fn no_descriptor_but_0_1_2_crosses_and_cwd_is_inside() {
    // Leak a descriptor into warren deliberately (not close-on-exec, like a careless caller).
    let o = std::process::Command::new("/bin/sh")
        .env("WARREN_STATE_DIR", test_state_dir())
        .arg("-c")
        .arg(format!(
            "exec 7</etc/hostname; {} run --name {} --rootfs {} -- /bin/sh -c 'ls /proc/self/fd; readlink /proc/self/cwd'",
            env!("CARGO_BIN_EXE_warren"),
            unique("fds"),
            busybox_root().display()
        ))
        .output()
        .unwrap();
    assert_code(&o, 0);
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    // ls itself holds one descriptor for the directory it lists (3).
    assert_eq!(lines[..lines.len() - 1], ["0", "1", "2", "3"], "{out}");
    assert_eq!(lines.last(), Some(&"/"), "{out}");
}

#[test]
fn landlock_confines_writes_even_where_permissions_allow() {
    // /proc/self/comm is writable by its own process; Landlock allows writes only under /tmp,
    // /dev/shm and the device nodes.
    let o = run_sh(
        &unique("ll"),
        &[],
        "exec 2>&1; echo renamed > /proc/self/comm; echo ok > /dev/null && echo devnull-ok",
    );
    let out = stdout(&o);
    assert!(
        out.contains("Permission denied"),
        "write outside the allowed paths: {out}"
    );
    assert!(out.contains("devnull-ok"), "{out}");
    // Control: the same write works on the host.
    let host = std::process::Command::new("/bin/busybox")
        .args(["sh", "-c", "echo renamed > /proc/self/comm && echo host-ok"])
        .output()
        .unwrap();
    assert!(stdout(&host).contains("host-ok"));
}

#[test]
fn seccomp_denies_with_eperm_not_sigsys() {
    // unshare -U would create a user namespace; the filter answers EPERM and the shell survives.
    let o = run_sh(&unique("sc"), &[], "unshare -U true 2>&1; echo after=$?");
    let out = stdout(&o);
    assert!(out.contains("Operation not permitted"), "{out}");
    assert!(out.contains("after=1"), "{out}");
    // Control: on the host (root), the same command succeeds.
    let host = std::process::Command::new("/bin/busybox")
        .args(["unshare", "-U", "true"])
        .status()
        .unwrap();
    assert!(host.success());
}

#[test]
fn exit_status_passes_through() {
    assert_code(&run_sh(&unique("exit"), &[], "exit 7"), 7);
    assert_code(&run_sh(&unique("exit"), &[], "exit 0"), 0);
    // Killed by a signal from the host: 128 + 9, as Docker reports it.
    let root = busybox_root().to_str().unwrap().to_owned();
    let env = Background::start(
        &unique("kill"),
        &["--rootfs", &root, "--", "/bin/sleep", "30"],
    );
    rustix_kill(env.pid());
    assert_eq!(env.wait().code(), Some(137));
}

fn rustix_kill(pid: i32) {
    let st = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    assert!(st.success());
}

#[test]
fn missing_and_non_executable_commands_exit_127_and_126() {
    let root = busybox_root();
    let o = warren()
        .args(["run", "--name", &unique("nf"), "--rootfs"])
        .arg(root)
        .args(["--", "/bin/nope"])
        .output()
        .unwrap();
    assert_code(&o, 127);
    assert!(stderr(&o).contains("/bin/nope"), "{}", stderr(&o));
    let o = warren()
        .args(["run", "--name", &unique("nf"), "--rootfs"])
        .arg(root)
        .args(["--", "nope-in-path"])
        .output()
        .unwrap();
    assert_code(&o, 127);
    let o = warren()
        .args(["run", "--name", &unique("nx"), "--rootfs"])
        .arg(root)
        .args(["--", "/etc/not-executable"])
        .output()
        .unwrap();
    assert_code(&o, 126);
    assert!(stderr(&o).contains("not-executable"), "{}", stderr(&o));
    let o = warren()
        .args(["run", "--name", &unique("ok"), "--rootfs"])
        .arg(root)
        .args(["--", "hello"])
        .output()
        .unwrap();
    assert_code(&o, 0);
}

#[test]
fn environment_variables_are_clean_and_settable() {
    let o = run_sh(&unique("env"), &["-e", "GREETING=hi there"], "env | sort");
    assert_code(&o, 0);
    let out = stdout(&o);
    let keys: Vec<&str> = out.lines().filter_map(|l| l.split('=').next()).collect();
    assert!(out.contains("GREETING=hi there"), "{out}");
    for k in &keys {
        assert!(
            ["GREETING", "HOME", "HOSTNAME", "PATH", "PWD", "SHLVL"].contains(k),
            "unexpected variable {k}: {out}"
        );
    }
}

#[test]
fn json_report_records_what_was_applied() {
    let name = unique("json");
    let o = run_sh(
        &name,
        &["--json", "--memory", "64M", "--pids", "32", "--cpus", "0.5"],
        "true",
    );
    assert_code(&o, 0);
    let last = stdout(&o).lines().last().unwrap().to_owned();
    let v: serde_json::Value = serde_json::from_str(&last).unwrap();
    assert_eq!(v["name"], name.as_str());
    assert_eq!(v["exit_code"], 0);
    let a = &v["applied"];
    assert_eq!(a["namespaces"].as_array().unwrap().len(), 7);
    assert_eq!(a["no_new_privs"], true);
    assert_eq!(a["seccomp"]["mode"], "filter");
    assert!(
        a["seccomp"]["profile_digest"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
    assert_eq!(a["landlock"]["status"], "full");
    assert!(a["landlock"]["kernel_abi"].as_i64().unwrap() >= 6);
    assert_eq!(a["root"]["read_only"], true);
    assert!(a["uid_map"]["host_base"].as_u64().unwrap() >= 1_000_000_000);
    let limits = &a["cgroup"]["limits"];
    assert_eq!(limits["memory_bytes"], 64 << 20);
    assert_eq!(limits["pids_max"], 32);
    assert_eq!(limits["cpu_quota_us"], 50_000);
}

/// The workload runs on exactly the CPUs its launcher may run on. (During the setup the
/// launcher keeps its child off the parent's own CPU, `launch::spread`; the child must undo
/// that before the exec.) Control: a launcher confined to one CPU with `taskset` gives its
/// workload that one CPU, so the probe does read the mask the workload got.
#[test]
fn the_workload_gets_the_launchers_cpu_affinity() {
    let own = |status: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
            .map(|v| v.trim().to_owned())
            .unwrap_or_default()
    };
    let mine = own(&std::fs::read_to_string("/proc/self/status").unwrap());
    let probe = "grep Cpus_allowed_list /proc/self/status";
    let o = run_sh(&unique("cpus"), &[], probe);
    assert_code(&o, 0);
    assert_eq!(own(&stdout(&o)), mine, "{}", stdout(&o));

    let first = mine.split([',', '-']).next().unwrap_or("0").to_owned();
    let launcher = warren();
    let mut c = std::process::Command::new("taskset");
    c.args(["-c", &first])
        .arg(launcher.get_program())
        .args(["run", "--name", &unique("cpus1"), "--rootfs"])
        .arg(busybox_root())
        .args(["--", "/bin/sh", "-c", probe])
        .envs(
            launcher
                .get_envs()
                .filter_map(|(k, v)| v.map(|v| (k.to_owned(), v.to_owned()))),
        );
    let o = c.output().unwrap();
    assert_code(&o, 0);
    assert_eq!(own(&stdout(&o)), first, "{}", stdout(&o));
}

/// The file systems an environment mounts of its own (a `--rootfs` root, without `-t` or a
/// writable root) are three: `/proc`, one writable tmpfs whose `tmp/` and `shm/` are `/tmp`
/// and `/dev/shm` (`noexec` there), and the read-only skeleton behind `/dev`, `/sys` and the
/// `/proc` directory masks (each superblock costs every memory cgroup on the host shrinker
/// tables: BENCHMARKS.md, "Spawn"). Host file systems seen inside (the root, the bound device
/// nodes, the cgroup view) are not counted. `/tmp` and `/dev/shm` share `tmpfs_size`: once
/// `/tmp` is full, `/dev/shm` takes nothing more.
#[test]
fn an_environment_mounts_three_file_systems_of_its_own() {
    let o = run_sh(
        &unique("sbs"),
        &["--memory", "64M", "--tmpfs-size", "1M"],
        "cat /proc/self/mountinfo; echo ==; \
         dd if=/dev/zero of=/tmp/fill bs=4k count=1024 2>/dev/null; echo tmp-full=$?; \
         echo x > /dev/shm/more; echo shm-write=$?; \
         rm /tmp/fill; echo x > /dev/shm/more; echo shm-write-after=$?",
    );
    assert_code(&o, 0);
    let all = stdout(&o);
    let (out, fill) = all.split_once("==\n").expect("both parts");
    // (mount point, device, file system type, per-mount options, root) of each mount.
    let mounts: Vec<(String, String, String, String, String)> = out
        .lines()
        .filter_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let f: Vec<&str> = left.split(' ').collect();
            let fstype = right.split(' ').next()?;
            Some((
                f.get(4)?.to_string(),
                f.get(2)?.to_string(),
                fstype.to_string(),
                f.get(5)?.to_string(),
                f.get(3)?.to_string(),
            ))
        })
        .collect();
    let device_of = |at: &str| {
        mounts
            .iter()
            .find(|m| m.0 == at)
            .unwrap_or_else(|| panic!("nothing mounted at {at}: {out}"))
    };
    // Positive control: the parse sees each of them, and they are the kinds expected.
    let (dev, sys, tmp, shm, proc) = (
        device_of("/dev"),
        device_of("/sys"),
        device_of("/tmp"),
        device_of("/dev/shm"),
        device_of("/proc"),
    );
    for m in [dev, sys, tmp, shm] {
        assert_eq!(m.2, "tmpfs", "{m:?}");
    }
    assert_eq!(proc.2, "proc");
    // /dev and /sys are one read-only file system; /tmp and /dev/shm another, writable, each
    // showing only its own directory of it.
    assert_eq!(dev.1, sys.1, "/dev and /sys are not one skeleton: {out}");
    assert!(
        dev.3.starts_with("ro,") && sys.3.starts_with("ro,"),
        "{out}"
    );
    assert_ne!(dev.1, tmp.1);
    assert_eq!(tmp.1, shm.1, "/tmp and /dev/shm are not one tmpfs: {out}");
    assert_eq!((tmp.4.as_str(), shm.4.as_str()), ("/tmp", "/shm"), "{out}");
    let opts = |m: &(String, String, String, String, String)| -> Vec<String> {
        m.3.split(',').map(str::to_owned).collect()
    };
    for o in ["rw", "nosuid", "nodev"] {
        assert!(opts(tmp).iter().any(|x| x == o), "/tmp {o}: {out}");
        assert!(opts(shm).iter().any(|x| x == o), "/dev/shm {o}: {out}");
    }
    assert!(opts(shm).iter().any(|x| x == "noexec"), "{out}");
    assert!(!opts(tmp).iter().any(|x| x == "noexec"), "{out}");
    if std::path::Path::new("/proc/acpi").is_dir() {
        assert_eq!(device_of("/proc/acpi").1, dev.1, "{out}");
    }
    // The shared size: 4 MiB into a 1 MiB /tmp fails, and then /dev/shm is full too; once the
    // file is gone, /dev/shm takes a write again (the control).
    assert!(fill.contains("tmp-full=1"), "{fill}");
    assert!(fill.contains("shm-write=1"), "{fill}");
    assert!(fill.contains("shm-write-after=0"), "{fill}");
    // The host's own file systems, by device, as this test sees them.
    let host_mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let host: std::collections::BTreeSet<&str> = host_mounts
        .lines()
        .filter_map(|l| l.split(' ').nth(2))
        .collect();
    assert!(host.contains(proc_of_host().as_str()), "control: {host:?}");
    let own: std::collections::BTreeSet<&str> = mounts
        .iter()
        .map(|m| m.1.as_str())
        .filter(|d| !host.contains(d))
        .collect();
    assert_eq!(own.len(), 3, "file systems of its own: {own:?}\n{out}");
}

/// The device (`major:minor`) of the host's `/proc`, from `stat`.
fn proc_of_host() -> String {
    use std::os::unix::fs::MetadataExt as _;
    let dev = std::fs::metadata("/proc").unwrap().dev();
    format!("{}:{}", rustix::fs::major(dev), rustix::fs::minor(dev))
}
