//! `warren stop`, `warren rm` and `warren logs`.
//!
//! Environments the kernel manages (applied from a manifest) are stopped and removed through
//! the kernel, which then keeps them stopped. An environment started by `warren run` is stopped
//! by signalling its launcher, found through the record in its name lock: SIGTERM (forwarded
//! to the workload), a second SIGTERM after the timeout (the launcher then kills the workload
//! and cleans up), SIGKILL as the last resort.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::time::{Duration, Instant};

use warren_sandbox::state::StateDir;

use crate::cli::{LogsArgs, RmArgs, StopArgs};
use crate::control::{self, ControlRequest};

/// Whether the kernel manages `name`: asked of the running kernel, or, with none running,
/// read from the registry it left (`managed.json`), which the next kernel acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Managed {
    /// The running kernel manages it. `other`: the launcher of an environment `warren run`
    /// started that runs under the same name while the managed one does not (a clash `apply`
    /// refused, docs/cli.md): that one is what runs, and `stop` and `rm` act on it too.
    ByKernel { other: Option<i32> },
    /// No kernel runs, but the next one would take it back (and start it if it does not run).
    WithoutKernel,
    /// Not managed.
    No,
}

fn managed(state_dir: &Path, name: &str) -> Managed {
    match control::request(state_dir, &ControlRequest::List) {
        Ok(resp) => {
            let listed = resp.data.and_then(|d| {
                d["envs"]
                    .as_array()?
                    .iter()
                    .find(|e| e["name"] == name)
                    .map(|e| e["launcher_pid"].as_i64())
            });
            match listed {
                Some(managed_pid) => {
                    let running = launcher_pid(state_dir, name).ok().flatten();
                    Managed::ByKernel {
                        other: running.filter(|&p| Some(i64::from(p)) != managed_pid),
                    }
                }
                None => Managed::No,
            }
        }
        Err(_) => match crate::supervisor::Registry::load(state_dir) {
            Ok(r) if r.envs.contains_key(name) => Managed::WithoutKernel,
            _ => Managed::No,
        },
    }
}

/// The refusal for a managed environment while no kernel runs: signalling its launcher would
/// not last (the next kernel starts it again as declared), and only the kernel may change what
/// it manages.
fn no_kernel(verb: &str, name: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "{name:?} is managed by the kernel, which is not running: start it (`warren daemon`) \
         and {verb} {name:?} again (without the kernel the next one would start it again)"
    )
}

/// Deletes `name`'s log; whether there was one.
fn remove_log(state_dir: &Path, name: &str) -> bool {
    std::fs::remove_file(state_dir.join("logs").join(format!("{name}.log"))).is_ok()
}

fn launcher_pid(state_dir: &Path, name: &str) -> anyhow::Result<Option<i32>> {
    let state = StateDir::new(state_dir);
    for (n, rec) in state.live_records()? {
        if n == name {
            let v: serde_json::Value = serde_json::from_slice(&rec).unwrap_or_default();
            return Ok(v["launcher_pid"].as_i64().map(|p| p as i32));
        }
    }
    Ok(None)
}

fn signal(pid: i32, sig: rustix::process::Signal) {
    if let Some(p) = rustix::process::Pid::from_raw(pid) {
        let _ = rustix::process::kill_process(p, sig);
    }
}

fn wait_gone(state_dir: &Path, name: &str, limit: Duration) -> bool {
    let state = StateDir::new(state_dir);
    let start = Instant::now();
    while start.elapsed() < limit {
        if !state.name_in_use(name).unwrap_or(true) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// Stop an environment `warren run` started (not managed by the kernel).
fn stop_unmanaged(state_dir: &Path, name: &str, secs: u64) -> anyhow::Result<()> {
    use rustix::process::Signal;
    let Some(pid) = launcher_pid(state_dir, name)? else {
        anyhow::bail!("no running environment named {name:?}");
    };
    if secs == 0 {
        // No grace: two termination signals at once, which the launcher takes as "kill now";
        // two different ones, so that they never merge into one pending signal.
        signal(pid, Signal::INT);
        signal(pid, Signal::TERM);
    } else {
        signal(pid, Signal::TERM);
        if wait_gone(state_dir, name, Duration::from_secs(secs)) {
            return Ok(());
        }
        signal(pid, Signal::TERM);
    }
    if wait_gone(state_dir, name, Duration::from_secs(3)) {
        return Ok(());
    }
    signal(pid, Signal::KILL);
    if wait_gone(state_dir, name, Duration::from_secs(3)) {
        return Ok(());
    }
    anyhow::bail!("{name} did not stop")
}

/// Send `req` to the running kernel; its refusal becomes the error.
fn kernel_call(state_dir: &Path, req: &ControlRequest) -> anyhow::Result<()> {
    let r = control::request(state_dir, req)?;
    if r.ok {
        Ok(())
    } else {
        Err(anyhow::anyhow!(r.error.unwrap_or_default()))
    }
}

/// `warren stop`.
pub fn stop(state_dir: &Path, args: StopArgs) -> anyhow::Result<i32> {
    let mut code = 0;
    for name in &args.names {
        let result = match managed(state_dir, name) {
            Managed::ByKernel { other } => {
                let req = ControlRequest::Stop {
                    name: name.clone(),
                    timeout: args.time,
                };
                kernel_call(state_dir, &req).and_then(|()| match other {
                    Some(_) => stop_unmanaged(state_dir, name, args.time),
                    None => Ok(()),
                })
            }
            Managed::WithoutKernel => Err(no_kernel("stop", name)),
            Managed::No => stop_unmanaged(state_dir, name, args.time),
        };
        match result {
            Ok(()) => println!("{name}"),
            Err(e) => {
                eprintln!("warren: error: {name}: {e:#}");
                code = 1;
            }
        }
    }
    Ok(code)
}

/// `warren rm`.
pub fn rm(state_dir: &Path, args: RmArgs) -> anyhow::Result<i32> {
    let mut code = 0;
    for name in &args.names {
        let managed = managed(state_dir, name);
        let result = if let Managed::ByKernel { other } = managed {
            if other.is_some() && !args.force {
                Err(anyhow::anyhow!(
                    "{name:?} is running: stop it first, or use -f"
                ))
            } else {
                let req = ControlRequest::Remove {
                    name: name.clone(),
                    force: args.force,
                };
                kernel_call(state_dir, &req).and_then(|()| match other {
                    Some(_) => stop_unmanaged(state_dir, name, 0),
                    None => Ok(()),
                })
            }
        } else if managed == Managed::WithoutKernel {
            Err(no_kernel("rm", name))
        } else if launcher_pid(state_dir, name)?.is_some() {
            if args.force {
                stop_unmanaged(state_dir, name, 0)
            } else {
                Err(anyhow::anyhow!(
                    "{name:?} is running: stop it first, or use -f"
                ))
            }
        } else if remove_log(state_dir, name) {
            // Nothing runs or is managed under the name, but its log was left: an ended
            // `run -d` environment, or one `apply` stopped and forgot.
            Ok(())
        } else {
            Err(anyhow::anyhow!("no environment named {name:?}"))
        };
        match result {
            Ok(()) => {
                remove_log(state_dir, name);
                println!("{name}");
            }
            Err(e) => {
                eprintln!("warren: error: {name}: {e:#}");
                code = 1;
            }
        }
    }
    Ok(code)
}

/// `warren logs`.
pub fn logs(state_dir: &Path, args: LogsArgs) -> anyhow::Result<i32> {
    let path = state_dir.join("logs").join(format!("{}.log", args.name));
    let mut file = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(_) => {
            eprintln!(
                "warren: error: no logs for {:?}: only environments the kernel starts and \
                 `warren run -d` keeps logs (`warren run` writes to its own terminal)",
                args.name
            );
            return Ok(1);
        }
    };
    let mut text = String::new();
    file.read_to_string(&mut text)?;
    let lines: Vec<&str> = text.lines().collect();
    let from = args.tail.map_or(0, |n| lines.len().saturating_sub(n));
    for l in &lines[from..] {
        println!("{l}");
    }
    if args.follow {
        let mut pos = file.seek(SeekFrom::End(0))?;
        loop {
            std::thread::sleep(Duration::from_millis(200));
            let len = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            if len < pos {
                pos = 0; // truncated: start again
            }
            if len > pos {
                file.seek(SeekFrom::Start(pos))?;
                let mut more = String::new();
                file.read_to_string(&mut more)?;
                print!("{more}");
                pos = len;
            }
        }
    }
    Ok(0)
}
