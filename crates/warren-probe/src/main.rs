//! `warren-probe`: the escape and abuse probe of Warren's security suite.
//!
//! It runs **inside** a Warren environment and attempts, one by one, the attacks a hostile
//! program would try; the integration tests compare each result with the mechanism that must
//! block it. Run directly on the host as root it is the **positive control**: there most attempts
//! must come out `open`, which proves the probe can see an escape. Every attempt is harmless even
//! then: files are opened for writing but never written, system calls get invalid arguments
//! (wrong reboot magic, nonexistent swap and accounting paths), anything that changes its own
//! process (chroot, unshare, capset, mounts) runs in a re-executed child after making its mount
//! namespace private, nodes and files it creates are removed at once, and signals are signal 0.
//!
//! # Command line
//!
//! ```text
//! warren-probe [--host-pid PID]... [--marker PATH]... [--tcp HOST:PORT]... [--abstract NAME]
//!              [--tty-fd N] [--expect-uid-map] [--setuid-exe PATH]... [--keep-owner-file]
//!              [--fork-cap N] [--fill-cap-mb N] [--only NAME[,NAME]]
//!              list | all | CLASS | PROBE-NAME
//! ```
//!
//! `all` runs every probe except the `abuse` class, which runs only when named (by probe, by
//! class, or in `--only`). Hidden helpers: `memory-bomb MIB`, `spin SECONDS`, `sleep SECONDS`,
//! `listen-tcp PORT [SECONDS]`, `__ids`, and `__child NAME` (how each probe is run).
//!
//! # Output contract
//!
//! One JSON object per line on stdout, one per probe, in the order below:
//!
//! ```json
//! {"probe":"sys.keyctl","outcome":"blocked","errno":"EPERM","detail":"keyctl(...): EPERM (...)"}
//! ```
//!
//! * `outcome` is `"open"` (the attack worked, or the call got past every permission check and
//!   failed only on its deliberately invalid argument), `"blocked"` (it failed), or `"skipped"`
//!   (a precondition is absent: no `--marker`, no terminal; `detail` says which).
//! * `errno` is the kernel's name of the decisive error (`"EPERM"`, `"EROFS"`), or `null` when the
//!   call succeeded or the check observes an effect rather than an error (`detail` then says what
//!   was seen, e.g. `"empty: /proc/keys has no content (masked, or nothing visible)"`).
//! * A probe killed by the sandbox (e.g. `SIGSYS`) is reported as `blocked` with the signal in
//!   `detail`. The exit status is 0 whenever the probes ran, 2 for a usage error.
//!
//! # Probes
//!
//! * `fs.*`: leaked_fds, read_marker_path, read_marker_dotdot, read_proc1_root_marker,
//!   read_hostpid_root_marker, open_by_handle_at, write_root, write_bin, remount_root_rw,
//!   proc_self_exe_write, cwd_inside_root
//! * `mnt.*`: chroot_escape, fchdir_escape, pivot_root, mount_tmpfs, umount_masked,
//!   new_mount_api
//! * `ns.*`: unshare_user, unshare_mount, unshare_net, unshare_pid, unshare_uts, unshare_ipc,
//!   unshare_cgroup, setns, clone3
//! * `proc.*`: ptrace_sibling, process_vm_readv, kill_host_pid, host_processes_visible,
//!   write_sysctl, write_sysrq, read_kcore, kallsyms_addresses, read_timer_list, read_keys
//! * `sys.*`: keyctl, add_key, bpf, perf_event_open, userfaultfd, io_uring_setup, kexec_load,
//!   init_module, reboot, swapon, acct, clock_settime, iopl, ioperm, write_sys
//! * `dev.*`: mknod_block, mknod_char, open_mem, open_kmsg, open_host_disk
//! * `tty.*`: tiocsti, tiocsti_highbits, tioclinux
//! * `net.*`: raw_socket, packet_socket, connect_tcp, abstract_unix, netlink_route_change,
//!   vsock, interfaces
//! * `priv.*`: setuid_exec, capabilities, capset, no_new_privs, seccomp_mode, landlock
//! * `id.*`: uid_map, tmp_file_owner
//! * `abuse.*` (only when named): fork_bomb, fill_tmp
//!
//! Host pids given with `--host-pid` must not also exist inside the environment's pid namespace
//! (so not 1 when probing an environment): `kill(pid, 0)` and `/proc/<pid>` cannot tell a host
//! process from an environment process that has the same number.
#![forbid(unsafe_code)]

mod cli;
mod helpers;
mod probes;
mod procfs;
mod report;

use std::io::{self, Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, ExitCode, Stdio};
use std::time::{Duration, Instant};

use cli::Command;
use probes::{Ctx, PROBES, Probe, SCRATCH_ENV};
use report::Report;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (opts, command) = match cli::parse(&args) {
        Ok(parsed) => parsed,
        Err(e) => {
            eprintln!("warren-probe: {e}");
            return ExitCode::from(2);
        }
    };
    match command {
        Command::List => {
            for p in PROBES {
                println!("{}", p.name);
            }
        }
        Command::Run(target) => {
            let selected = match probes::select(&target, &opts.only) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("warren-probe: {e}");
                    return ExitCode::from(2);
                }
            };
            run(Ctx::new(opts), &selected);
        }
        Command::Child(name) => {
            let Some(probe) = probes::find(&name) else {
                eprintln!("warren-probe: unknown probe {name:?}");
                return ExitCode::from(2);
            };
            emit(&(probe.run)(&Ctx::for_child(opts)));
        }
        Command::MemoryBomb(mib) => helpers::memory_bomb(mib),
        Command::Spin(seconds) => helpers::spin(seconds),
        Command::Sleep(seconds) => helpers::sleep(seconds),
        Command::ListenTcp { port, seconds } => {
            if let Err(e) = helpers::listen_tcp(port, seconds) {
                eprintln!("warren-probe: listen-tcp 127.0.0.1:{port}: {e}");
                return ExitCode::from(1);
            }
        }
        Command::Ids => helpers::ids(),
    }
    ExitCode::SUCCESS
}

/// Print one report as a JSON line, flushed at once so a later crash cannot lose it.
fn emit(report: &Report) {
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "{}", report.to_json_line());
    let _ = out.flush();
}

/// Run each probe in its own child. If children cannot be started at all, run the probes that
/// leave their process unchanged here and report the others as skipped.
fn run(ctx: Ctx, selected: &[&Probe]) {
    // Created before the first child, so every child shares it; probes that need it report
    // why it is missing.
    let _ = ctx.scratch();
    let mut children_work = true;
    for probe in selected {
        let report = if children_work {
            match run_in_child(&ctx, probe) {
                Ok(r) => r,
                Err(e) => {
                    children_work = false;
                    eprintln!("warren-probe: cannot re-execute myself ({e}); running in-process");
                    run_here(&ctx, probe)
                }
            }
        } else {
            run_here(&ctx, probe)
        };
        emit(&report);
    }
    ctx.cleanup();
}

fn run_here(ctx: &Ctx, probe: &Probe) -> Report {
    if probe.isolated {
        Report::skipped(
            probe.name,
            "needs a child process, and this binary cannot re-execute itself",
        )
    } else {
        (probe.run)(ctx)
    }
}

/// How long a probe may take before its child is killed.
fn time_limit(probe: &Probe) -> Duration {
    if probe.is_abuse() {
        Duration::from_secs(900)
    } else {
        Duration::from_secs(60)
    }
}

/// Start `exe __child NAME` with our options; stdin is shared (for the tty probes).
fn spawn_child(ctx: &Ctx, probe: &Probe) -> io::Result<Child> {
    let mut candidates = vec![std::path::PathBuf::from("/proc/self/exe")];
    if let Ok(exe) = std::env::current_exe() {
        candidates.push(exe);
    }
    if let Some(arg0) = std::env::args_os().next() {
        candidates.push(arg0.into());
    }
    let mut last = io::Error::from(io::ErrorKind::NotFound);
    for exe in candidates {
        let mut cmd = std::process::Command::new(&exe);
        cmd.args(&ctx.opts.raw)
            .arg("__child")
            .arg(probe.name)
            .stdin(Stdio::inherit())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(dir) = ctx.existing_scratch() {
            cmd.env(SCRATCH_ENV, dir);
        }
        match cmd.spawn() {
            Ok(child) => return Ok(child),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Run one probe in a child and turn whatever happened to it into a report.
fn run_in_child(ctx: &Ctx, probe: &Probe) -> io::Result<Report> {
    let mut child = spawn_child(ctx, probe)?;
    let deadline = Instant::now() + time_limit(probe);
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let mut stdout = String::new();
    let mut stderr = String::new();
    if let Some(mut out) = child.stdout.take() {
        let _ = out.read_to_string(&mut stdout);
    }
    if let Some(mut err) = child.stderr.take() {
        let _ = err.read_to_string(&mut stderr);
    }
    let Some(status) = status else {
        return Ok(Report::skipped(
            probe.name,
            format!("timed out after {:?}; child killed", time_limit(probe)),
        ));
    };
    let parsed = stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str::<Report>(l).ok());
    Ok(match (parsed, status.signal()) {
        (Some(report), _) if report.probe == probe.name => report,
        (_, Some(signal)) => Report::blocked(
            probe.name,
            format!(
                "the probe's child was killed by signal {signal}{}",
                signal_name(signal)
            ),
        ),
        _ => Report::skipped(
            probe.name,
            format!(
                "the probe's child exited with {status} without a report: {}",
                stderr.trim()
            ),
        ),
    })
}

/// ` (SIGSYS)` for the signals a sandbox kills with; empty otherwise.
fn signal_name(signal: i32) -> &'static str {
    match signal {
        31 => " (SIGSYS: seccomp)",
        9 => " (SIGKILL)",
        11 => " (SIGSEGV)",
        6 => " (SIGABRT)",
        _ => "",
    }
}
