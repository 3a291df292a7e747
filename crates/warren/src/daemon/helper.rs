//! The launch helper: two single-threaded processes the kernel daemon forks at its start,
//! before it has any other thread. The **waiter** (`waiter.rs`) is the daemon's child; the
//! **factory**, the waiter's child, forks every launcher the daemon starts (managed
//! environments and spawned children) instead of the daemon executing the `warren` binary
//! again for each.
//!
//! Each launcher is forked with `CLONE_PARENT` (`warren_sys::fork_sibling`), so it is the
//! waiter's child. What the fork saves, per launcher: the exec of the binary, glibc's start-up
//! and the relocation of the static-PIE image (its 284 KiB of relocated pointers are shared
//! copy-on-write with the factory and every other launcher instead of copied into each), and
//! the page faults of code the factory has already run. A launcher whose environment the
//! waiter can take over (`warren_sandbox::handoff`: no terminal, volume or network interface
//! of its own) launches it as the waiter's child too, hands it over on the socket it inherited
//! from the factory, and ends: the waiter then waits for the environment (a few KiB each
//! instead of a launcher process's ~230 KiB), and the launcher's part ends with it.
//!
//! The waiter reaps every launcher and tells the daemon, on a socket of its own, how each ended
//! (`{"exited": PID, "code": CODE}`) and which environment a launcher handed it
//! (`{"handed": LAUNCHER, "env": PID}`, before that launcher's `exited`), then the end of each
//! environment it waited for (`exited`, with the environment's pid and the status its launcher
//! would have ended with; never before that launcher's own `exited`, so that when the kernel
//! hears of the end no process of the environment's is left, as when launchers waited). One
//! JSON document per `SOCK_SEQPACKET` packet.
//!
//! The factory's protocol, over a private `SOCK_SEQPACKET` pair: the daemon sends one packet
//! with the launcher's arguments (JSON, an array of strings: what `warren` would be run with)
//! and, as `SCM_RIGHTS`, the two descriptors for its standard output and error; the factory
//! answers with the launcher's pid (4 bytes, little-endian) or, when it could not fork, an
//! error text. A request larger than [`MAX_REQUEST`] is not sent: the daemon starts that
//! launcher the old way (`Command`), as it does whenever the helper is gone. The factory ends
//! when the daemon does (its end of the pair hangs up); the waiter once the daemon has gone and
//! it has no child left.
//!
//! The forked launcher starts as an exec'd one would: standard input `/dev/null`, output and
//! error the descriptors given, a process group of its own, no signal blocked, every
//! disposition at its default, no descriptor of the factory's but the hand-off socket; then it
//! runs the command line.

use std::io::{IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use rustix::net::{
    AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags, SocketFlags, SocketType,
};

/// The largest request sent to the helper; a larger command line goes through `Command`.
pub(super) const MAX_REQUEST: usize = 64 * 1024;

/// The daemon's end of the helper.
#[derive(Debug)]
pub(super) struct LaunchHelper {
    /// The factory's request socket.
    sock: OwnedFd,
    /// The waiter's notices.
    notices: OwnedFd,
    /// The waiter's pid and pidfd.
    pid: i32,
    pidfd: OwnedFd,
}

/// What the waiter tells the daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Notice {
    /// A launcher (or an environment the waiter waited for) ended with `code`.
    Exited {
        /// Its pid.
        pid: i32,
        /// Its exit code, or 128 + the signal that killed it.
        code: i32,
    },
    /// Launcher `launcher` handed its environment, pid `env`, to the waiter.
    Handed {
        /// The launcher's pid.
        launcher: i32,
        /// The environment's first process.
        env: i32,
    },
}

impl Notice {
    /// One packet's JSON.
    pub(super) fn to_json(self) -> Vec<u8> {
        let v = match self {
            Notice::Exited { pid, code } => serde_json::json!({ "exited": pid, "code": code }),
            Notice::Handed { launcher, env } => {
                serde_json::json!({ "handed": launcher, "env": env })
            }
        };
        v.to_string().into_bytes()
    }

    fn parse(packet: &[u8]) -> Option<Notice> {
        let v: serde_json::Value = serde_json::from_slice(packet).ok()?;
        let int = |k: &str| v[k].as_i64().and_then(|n| i32::try_from(n).ok());
        match (int("exited"), int("code"), int("handed"), int("env")) {
            (Some(pid), Some(code), None, None) => Some(Notice::Exited { pid, code }),
            (None, None, Some(launcher), Some(env)) => Some(Notice::Handed { launcher, env }),
            _ => None,
        }
    }
}

impl Drop for LaunchHelper {
    /// Hangs up (the factory then exits, the waiter once it has no child left) and reaps the
    /// waiter if it has ended.
    fn drop(&mut self) {
        let _ = rustix::net::shutdown(&self.sock, rustix::net::Shutdown::Both);
        let _ = rustix::net::shutdown(&self.notices, rustix::net::Shutdown::Both);
        let _ = rustix::process::waitid(
            rustix::process::WaitId::PidFd(self.pidfd.as_fd()),
            rustix::process::WaitIdOptions::EXITED | rustix::process::WaitIdOptions::NOHANG,
        );
    }
}

fn seqpacket_pair() -> std::io::Result<(OwnedFd, OwnedFd)> {
    Ok(rustix::net::socketpair(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC,
        None,
    )?)
}

impl LaunchHelper {
    /// Forks the waiter, which forks the factory. Must be called while the daemon is
    /// single-threaded (it is refused, `EBUSY`, otherwise); `None` when it cannot be started
    /// (the daemon then starts every launcher with `Command`).
    pub(super) fn start() -> Option<LaunchHelper> {
        let pairs = (|| {
            Ok::<_, std::io::Error>((seqpacket_pair()?, seqpacket_pair()?, seqpacket_pair()?))
        })();
        let ((ours, theirs), (notices, notices_w), (handoff_r, handoff_w)) = match pairs {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!("no launch helper (socket pair: {e}); launchers are executed");
                return None;
            }
        };
        // The waiter is our own child (no CLONE_PARENT here), and outlives us while it waits
        // for environments.
        match warren_sys::fork_into_namespaces(0, None) {
            Ok(warren_sys::Forked::Child) => {
                drop(ours);
                drop(notices);
                start_waiter(theirs, notices_w, handoff_r, handoff_w)
            }
            Ok(warren_sys::Forked::Parent { pid, pidfd }) => {
                drop((theirs, notices_w, handoff_r, handoff_w));
                let _ = rustix::fs::fcntl_setfl(&notices, rustix::fs::OFlags::NONBLOCK);
                let helper = LaunchHelper {
                    sock: ours,
                    notices,
                    pid,
                    pidfd,
                };
                // The factory's first packet says whether it can give launchers their command
                // lines.
                let mut ready = [0u8; 256];
                match rustix::io::read(&helper.sock, &mut ready) {
                    Ok(2) if &ready[..2] == b"ok" => Some(helper),
                    Ok(n) => {
                        tracing::warn!(
                            "no launch helper ({}); launchers are executed",
                            String::from_utf8_lossy(&ready[..n])
                        );
                        None
                    }
                    Err(e) => {
                        tracing::warn!("no launch helper ({e}); launchers are executed");
                        None
                    }
                }
            }
            Err(e) => {
                tracing::warn!("no launch helper (fork: {e}); launchers are executed");
                None
            }
        }
    }

    /// The waiter's notice socket, to watch for input.
    pub(super) fn notice_fd(&self) -> BorrowedFd<'_> {
        self.notices.as_fd()
    }

    /// The notices waiting; `Err` once the waiter has hung up (it has ended).
    pub(super) fn take_notices(&self) -> std::io::Result<Vec<Notice>> {
        let mut out = Vec::new();
        let mut buf = [0u8; 256];
        loop {
            match rustix::net::recv(&self.notices, &mut buf, rustix::net::RecvFlags::DONTWAIT) {
                Ok((0, _)) => {
                    return if out.is_empty() {
                        Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof))
                    } else {
                        Ok(out)
                    };
                }
                Ok((n, _)) => match Notice::parse(&buf[..n.min(buf.len())]) {
                    Some(notice) => out.push(notice),
                    None => tracing::warn!(
                        "a malformed notice from the launch helper: {}",
                        String::from_utf8_lossy(&buf[..n.min(buf.len())])
                    ),
                },
                Err(rustix::io::Errno::AGAIN) => return Ok(out),
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Has the factory fork a launcher running `warren ARGS` with standard output `out` and
    /// error `err`; returns its pid. The launcher is the waiter's child: the waiter reports its
    /// end ([`Notice::Exited`]).
    pub(super) fn launch(
        &self,
        args: &[String],
        out: BorrowedFd<'_>,
        err: BorrowedFd<'_>,
    ) -> std::io::Result<i32> {
        let body = serde_json::to_vec(args).map_err(std::io::Error::other)?;
        if body.len() > MAX_REQUEST {
            return Err(std::io::Error::other(format!(
                "a command line of {} bytes is larger than the helper takes ({MAX_REQUEST})",
                body.len()
            )));
        }
        let fds = [out, err];
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(2))];
        let mut control = SendAncillaryBuffer::new(&mut space);
        control.push(SendAncillaryMessage::ScmRights(&fds));
        rustix::net::sendmsg(
            &self.sock,
            &[IoSlice::new(&body)],
            &mut control,
            SendFlags::NOSIGNAL,
        )?;
        let mut answer = [0u8; 512];
        let n = rustix::io::read(&self.sock, &mut answer)?;
        match n {
            0 => Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof)),
            4 => Ok(i32::from_le_bytes([
                answer[0], answer[1], answer[2], answer[3],
            ])),
            _ => Err(std::io::Error::other(
                String::from_utf8_lossy(&answer[..n]).into_owned(),
            )),
        }
    }

    /// The waiter's pid.
    pub(super) fn pid(&self) -> i32 {
        self.pid
    }
}

/// In the waiter, at once: fork the factory, then wait for environments.
fn start_waiter(factory: OwnedFd, notices: OwnedFd, handoff_r: OwnedFd, handoff_w: OwnedFd) -> ! {
    match warren_sys::fork_into_namespaces(0, None) {
        Ok(warren_sys::Forked::Child) => {
            drop(notices);
            drop(handoff_r);
            serve(factory, handoff_w)
        }
        Ok(warren_sys::Forked::Parent { .. }) => {
            drop(factory);
            drop(handoff_w);
            super::waiter::serve(notices, handoff_r)
        }
        Err(e) => {
            let _ = rustix::io::write(&factory, format!("fork the factory: {e}").as_bytes());
            std::process::exit(0)
        }
    }
}

/// In a launcher the factory forked: its end of the waiter's hand-off socket.
static HANDOFF: std::sync::Mutex<Option<OwnedFd>> = std::sync::Mutex::new(None);

/// The waiter's hand-off socket, in a launcher the factory forked (once; `None` in any other
/// process).
pub(crate) fn take_handoff_socket() -> Option<OwnedFd> {
    HANDOFF.lock().ok()?.take()
}

/// The factory's loop: one launcher per request, until the daemon hangs up.
fn serve(sock: OwnedFd, handoff: OwnedFd) -> ! {
    // Die with the waiter even if the pair's hang-up were missed.
    let _ = rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL));
    // A launcher must show its own command line: a restarted kernel finds its launchers by
    // `--name NAME` in `/proc/PID/cmdline`. The helper tries it on itself first.
    let ready = match warren_sys::set_cmdline(&["warren", "launch-factory"]) {
        Ok(()) => b"ok".to_vec(),
        Err(e) => format!("cannot set a command line: {e}").into_bytes(),
    };
    if rustix::io::write(&sock, &ready).is_err() || ready != b"ok" {
        std::process::exit(0);
    }
    // Done once here rather than in every launcher it forks (each would trap on `cpuid`).
    warren_attest::measure::prime_hashers();
    let mut body = vec![0u8; MAX_REQUEST + 1];
    loop {
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(2))];
        let mut control = RecvAncillaryBuffer::new(&mut space);
        let got = match rustix::net::recvmsg(
            &sock,
            &mut [IoSliceMut::new(&mut body)],
            &mut control,
            RecvFlags::CMSG_CLOEXEC,
        ) {
            Ok(g) => g,
            Err(rustix::io::Errno::INTR) => continue,
            Err(_) => std::process::exit(0),
        };
        if got.bytes == 0 {
            std::process::exit(0);
        }
        let mut fds: Vec<OwnedFd> = Vec::new();
        for msg in control.drain() {
            if let RecvAncillaryMessage::ScmRights(rights) = msg {
                fds.extend(rights);
            }
        }
        let args: Option<Vec<String>> = serde_json::from_slice(&body[..got.bytes]).ok();
        let answer = match (args, fds.len()) {
            (Some(args), 2) => match warren_sys::fork_sibling() {
                Ok(None) => {
                    let err = fds.pop().expect("two descriptors");
                    let out = fds.pop().expect("two descriptors");
                    become_launcher(sock, handoff, out, err, args)
                }
                Ok(Some(pid)) => pid.to_le_bytes().to_vec(),
                Err(e) => format!("fork the launcher: {e}").into_bytes(),
            },
            _ => b"a malformed request".to_vec(),
        };
        drop(fds);
        if rustix::io::write(&sock, &answer).is_err() {
            std::process::exit(0);
        }
    }
}

/// In the forked launcher: start as an exec'd `warren ARGS` would, then run it.
fn become_launcher(
    sock: OwnedFd,
    handoff: OwnedFd,
    out: OwnedFd,
    err: OwnedFd,
    args: Vec<String>,
) -> ! {
    drop(sock);
    if let Ok(mut h) = HANDOFF.lock() {
        *h = Some(handoff);
    }
    let ok = (|| -> std::io::Result<()> {
        let null = std::fs::File::open("/dev/null")?;
        rustix::stdio::dup2_stdin(null.as_fd())?;
        rustix::stdio::dup2_stdout(out.as_fd())?;
        rustix::stdio::dup2_stderr(err.as_fd())?;
        Ok(())
    })();
    if out.as_raw_fd() > 2 {
        drop(out);
    }
    if err.as_raw_fd() > 2 {
        drop(err);
    }
    if let Err(e) = ok {
        eprintln!("warren: error: set up the launcher's standard descriptors: {e}");
        std::process::exit(125);
    }
    // As `Command::process_group(0)` and an exec would leave it.
    let _ = rustix::process::setpgid(None, None);
    let _ = warren_sys::set_signal_mask(&warren_sys::SignalSet::empty());
    // Every disposition at its default, SIGPIPE's included (as `main` sets it).
    warren_sys::reset_signal_dispositions();
    let argv: Vec<String> = std::iter::once("warren".to_owned()).chain(args).collect();
    let shown: Vec<&str> = argv.iter().map(String::as_str).collect();
    if let Err(e) = warren_sys::set_cmdline(&shown) {
        eprintln!("warren: warning: cannot show the launcher's command line: {e}");
    }
    std::process::exit(crate::run_command_line(argv))
}
