//! `warren run -t`: relay between the launcher's terminal and the environment's pty (whose
//! master the launcher gets from `Running::take_pty`). `docs/cli.md` is the contract.
//!
//! When standard input is a terminal it is put in raw mode for as long as the relay lives (so
//! ^C, ^Z and line editing reach the environment's own line discipline: job control is the
//! environment's) and restored when the relay is dropped, on every return path of `warren run`.
//! The window size is copied to the pty at the start and on every SIGWINCH. With `-i`, input is
//! forwarded; at its end (a pipe's EOF) an end-of-file character is sent once, as a terminal
//! would.

use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, poll};
use rustix::termios::{OptionalActions, Termios, isatty, tcgetattr, tcgetwinsize, tcsetattr};

/// The terminal mode to put back.
struct Raw(Termios);

impl Drop for Raw {
    fn drop(&mut self) {
        let _ = tcsetattr(std::io::stdin(), OptionalActions::Drain, &self.0);
    }
}

/// A running relay; dropping it (or [`Relay::finish`]) restores the terminal.
pub struct Relay {
    out: Option<JoinHandle<()>>,
    _raw: Option<Raw>,
}

/// Copy the window size of standard input (or output) to `pty`, if either is a terminal.
fn copy_size(pty: BorrowedFd<'_>) {
    let size = tcgetwinsize(std::io::stdin()).or_else(|_| tcgetwinsize(std::io::stdout()));
    if let Ok(s) = size {
        let _ = rustix::termios::tcsetwinsize(pty, s);
    }
}

/// Start relaying: the pty's output to standard output; with `interactive`, standard input to
/// the pty. Call before the workload is waited for, with the forwarded signals already
/// blocked (threads inherit the mask); blocks SIGWINCH in the caller to read it here.
pub fn start(master: OwnedFd, interactive: bool) -> anyhow::Result<Relay> {
    let raw = if isatty(std::io::stdin()) {
        let saved = tcgetattr(std::io::stdin())?;
        let mut raw = saved.clone();
        raw.make_raw();
        tcsetattr(std::io::stdin(), OptionalActions::Now, &raw)?;
        Some(Raw(saved))
    } else {
        None
    };
    let master = Arc::new(master);
    copy_size(master.as_fd());
    let winch = warren_sys::SignalSet::of(&[rustix::process::Signal::WINCH.as_raw()])?;
    warren_sys::block_signals(&winch)?;
    let winch_fd = warren_sys::signalfd(&winch).ok();
    let m = master.clone();
    std::thread::spawn(move || input(&m, interactive, winch_fd));
    let m = master.clone();
    let out = std::thread::spawn(move || {
        let mut pty = std::fs::File::from(m.as_fd().try_clone_to_owned().expect("dup the pty"));
        let mut stdout = std::io::stdout().lock();
        let mut buf = [0u8; 8192];
        // EIO once every descriptor of the slave has closed: the environment has ended.
        while let Ok(n) = pty.read(&mut buf) {
            if n == 0 || stdout.write_all(&buf[..n]).is_err() {
                break;
            }
            let _ = stdout.flush();
        }
    });
    Ok(Relay {
        out: Some(out),
        _raw: raw,
    })
}

/// Standard input to the pty, and window size changes.
fn input(master: &OwnedFd, interactive: bool, winch: Option<OwnedFd>) {
    let stdin = std::io::stdin();
    let mut open = interactive;
    let mut buf = [0u8; 4096];
    loop {
        let mut fds = Vec::new();
        if open {
            fds.push(PollFd::new(&stdin, PollFlags::IN));
        }
        if let Some(w) = &winch {
            fds.push(PollFd::new(w, PollFlags::IN));
        }
        if fds.is_empty() {
            return;
        }
        if poll(&mut fds, None).is_err() {
            continue;
        }
        let ready: Vec<bool> = fds.iter().map(|f| !f.revents().is_empty()).collect();
        drop(fds);
        let (stdin_ready, winch_ready) = if open {
            (ready[0], ready.get(1).copied().unwrap_or(false))
        } else {
            (false, ready[0])
        };
        if winch_ready {
            if let Some(w) = &winch {
                while let Ok(Some(_)) = warren_sys::read_signal(w) {}
            }
            copy_size(master.as_fd());
        }
        if stdin_ready {
            match rustix::io::read(&stdin, &mut buf) {
                Ok(0) | Err(_) => {
                    // The end of piped input: what ^D at the start of a line would send.
                    if !isatty(&stdin) {
                        let _ = rustix::io::write(master, b"\x04");
                    }
                    open = false;
                }
                Ok(n) => {
                    let mut rest = &buf[..n];
                    while !rest.is_empty() {
                        match rustix::io::write(master, rest) {
                            Ok(k) => rest = &rest[k..],
                            Err(rustix::io::Errno::INTR) => {}
                            Err(_) => return,
                        }
                    }
                }
            }
        }
    }
}

impl Relay {
    /// After the workload has ended: let the last output through (up to 2 s), then restore the
    /// terminal.
    pub fn finish(mut self) {
        if let Some(out) = self.out.take() {
            let until = Instant::now() + Duration::from_secs(2);
            while !out.is_finished() && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
}
