//! Seccomp refusals that explain themselves: the launcher as the filter's listener.
//!
//! The child installs the *notifying* program (`warren_seccomp::Program::host_notifying`): the
//! same program as the plain one, but a refused call ends in `SECCOMP_RET_USER_NOTIF` instead of
//! `ERRNO(EPERM)`. The kernel then parks the calling thread and hands the call to the filter's
//! listener — a descriptor the child received from `seccomp(2)` and passed to the parent over a
//! socket pair (`SCM_RIGHTS`) before its `execve`; the workload never holds it (it is
//! close-on-exec and the child closes its copy at once), so it cannot answer its own refusals.
//! The parent, which waits for the workload anyway, reads each refused call, answers it with
//! `EPERM` — what the plain program returns, so the workload sees exactly what it saw before —
//! and writes one line naming the call, the environment and how to allow it.
//!
//! Allowed calls never reach the listener, so they cost what they cost without it. A workload
//! cannot stall or grow the launcher: each of its threads has at most one call waiting (it is
//! parked until answered), at most [`BATCH`] calls are answered per wake-up before the launcher
//! looks at signals and the workload's exit again, counts are kept for at most [`DISTINCT`]
//! distinct numbers (the rest are counted together), and only the first refusal of each number
//! is written out; the totals are in the exit summary.
//!
//! If the launcher dies, the kernel answers every notification with `ENOSYS` — but the
//! environment is killed with it (parent-death signal, cgroup teardown).

use std::collections::BTreeMap;
use std::os::fd::{AsFd, OwnedFd};

use rustix::event::{PollFd, PollFlags, poll};

/// Most notifications answered per wake-up before the wait loop looks at its other sources.
pub(crate) const BATCH: usize = 64;

/// Most distinct syscall numbers counted one by one; refusals of further numbers are counted
/// together.
pub(crate) const DISTINCT: usize = 64;

/// Send the listener to the parent over the socket pair (child side, before `execve`).
pub(crate) fn send_listener(sock: &OwnedFd, listener: &OwnedFd) -> std::io::Result<()> {
    use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags, sendmsg};
    let fds = [listener.as_fd()];
    let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !control.push(SendAncillaryMessage::ScmRights(&fds)) {
        return Err(std::io::Error::other("control buffer too small"));
    }
    sendmsg(
        sock,
        &[std::io::IoSlice::new(b"L")],
        &mut control,
        SendFlags::NOSIGNAL,
    )?;
    Ok(())
}

/// Take the listener the child sent (parent side). `Ok(None)` if the child closed its end
/// without sending one.
pub(crate) fn receive_listener(sock: &OwnedFd) -> std::io::Result<Option<OwnedFd>> {
    use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, recvmsg};
    let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let mut byte = [0u8; 1];
    let got = recvmsg(
        sock,
        &mut [std::io::IoSliceMut::new(&mut byte)],
        &mut control,
        RecvFlags::CMSG_CLOEXEC,
    )?;
    if got.bytes == 0 {
        return Ok(None);
    }
    let mut listener = None;
    for msg in control.drain() {
        if let RecvAncillaryMessage::ScmRights(fds) = msg {
            for fd in fds {
                listener.get_or_insert(fd);
            }
        }
    }
    Ok(listener)
}

/// Read the child's report pipe to its end (the child's `execve` or exit), meanwhile taking the
/// listener from `listener_sock` into `refusals` and answering refused calls, so that a child
/// whose last steps were refused cannot wait on a parent that waits on it.
pub(crate) fn read_reports_serving(
    report: OwnedFd,
    listener_sock: Option<OwnedFd>,
    refusals: &mut Option<Refusals>,
    environment: &str,
    strict: bool,
    added: &[String],
) -> Vec<u8> {
    let mut bytes = Vec::new();
    let mut sock = listener_sock;
    let mut buf = [0u8; 4096];
    loop {
        let mut fds = vec![PollFd::new(&report, PollFlags::IN)];
        if let Some(s) = &sock {
            fds.push(PollFd::new(s, PollFlags::IN));
        } else if let Some(r) = refusals.as_ref() {
            fds.push(PollFd::new(r.listener(), PollFlags::IN));
        }
        match poll(&mut fds, None) {
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => continue,
            Err(_) => break,
        }
        let report_ready = !fds[0].revents().is_empty();
        let other_ready = fds.get(1).is_some_and(|f| !f.revents().is_empty());
        drop(fds);
        if other_ready {
            match sock.take() {
                Some(s) => {
                    if let Ok(Some(l)) = receive_listener(&s) {
                        *refusals = Some(Refusals::new(l, environment, strict, added));
                    }
                }
                None => {
                    if let Some(r) = refusals.as_mut() {
                        r.serve();
                    }
                }
            }
        }
        if report_ready {
            match rustix::io::read(&report, &mut buf) {
                Ok(0) => break,
                Ok(n) => bytes.extend_from_slice(&buf[..n]),
                Err(rustix::io::Errno::INTR) | Err(rustix::io::Errno::AGAIN) => {}
                Err(_) => break,
            }
        }
    }
    // The child sent the listener before its first report line; if it is still queued (both
    // became readable at once and the pipe's end came first), take it now: the child's end is
    // closed, so this cannot block.
    if let Some(s) = sock {
        if let Ok(Some(l)) = receive_listener(&s) {
            *refusals = Some(Refusals::new(l, environment, strict, added));
        }
    }
    bytes
}

/// The listener of one environment's filter and what it has seen.
#[derive(Debug)]
pub(crate) struct Refusals {
    listener: OwnedFd,
    environment: String,
    arch: warren_seccomp::Arch,
    /// Refusals per syscall number, for at most [`DISTINCT`] numbers.
    counts: BTreeMap<u32, u64>,
    /// Refusals of numbers beyond the first [`DISTINCT`].
    others: u64,
    /// Whether the note that further numbers are only counted was written.
    overflow_noted: bool,
    /// The policy's reasons, loaded at the first refusal (never for a launch without one).
    profile: Option<warren_seccomp::Profile>,
    /// Lines not yet handed to the log (at most one per counted number, and one more).
    lines: Vec<String>,
    /// The environment runs the `strict` profile (or one built on it).
    strict: bool,
    /// The syscalls its profile file added to its base.
    added: Vec<String>,
}

/// [`Refusals`] as data (the listener travels beside it).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub(crate) struct RefusalsParts {
    environment: String,
    counts: Vec<(u32, u64)>,
    others: u64,
    overflow_noted: bool,
    lines: Vec<String>,
    strict: bool,
    added: Vec<String>,
}

impl Refusals {
    pub(crate) fn new(
        listener: OwnedFd,
        environment: &str,
        strict: bool,
        added: &[String],
    ) -> Refusals {
        Refusals {
            listener,
            environment: environment.to_owned(),
            arch: warren_seccomp::Arch::host(),
            counts: BTreeMap::new(),
            others: 0,
            overflow_noted: false,
            profile: None,
            lines: Vec::new(),
            strict,
            added: added.to_vec(),
        }
    }

    /// What it has seen, as data, and the listener, for another process to take over
    /// ([`Refusals::from_parts`]).
    pub(crate) fn into_parts(self) -> (RefusalsParts, OwnedFd) {
        (
            RefusalsParts {
                environment: self.environment,
                counts: self.counts.into_iter().collect(),
                others: self.others,
                overflow_noted: self.overflow_noted,
                lines: self.lines,
                strict: self.strict,
                added: self.added,
            },
            self.listener,
        )
    }

    /// [`Refusals::into_parts`] undone, in the process that takes the listener over.
    pub(crate) fn from_parts(parts: RefusalsParts, listener: OwnedFd) -> Refusals {
        let mut r = Refusals::new(listener, &parts.environment, parts.strict, &parts.added);
        r.counts = parts.counts.into_iter().take(DISTINCT).collect();
        r.others = parts.others;
        r.overflow_noted = parts.overflow_noted;
        r.lines = parts.lines;
        r
    }

    /// The listener, to poll for `POLLIN`.
    pub(crate) fn listener(&self) -> &OwnedFd {
        &self.listener
    }

    /// Hand the lines written so far to `log`.
    pub(crate) fn flush(&mut self, log: &mut dyn FnMut(&str)) {
        for line in self.lines.drain(..) {
            log(&line);
        }
    }

    /// Answer the calls waiting on the listener (at most [`BATCH`]) with `EPERM`, and write a
    /// line (see [`Refusals::flush`]) for the first refusal of each syscall.
    pub(crate) fn serve(&mut self) {
        let errno = warren_seccomp::Program::refusal_errno();
        for _ in 0..BATCH {
            let mut fds = [PollFd::new(&self.listener, PollFlags::IN)];
            match poll(&mut fds, Some(&rustix::time::Timespec::default())) {
                Ok(n) if n > 0 && fds[0].revents().contains(PollFlags::IN) => {}
                _ => return,
            }
            let n = match warren_sys::seccomp_notif_recv(self.listener.as_fd()) {
                Ok(n) => n,
                // ENOENT: the caller died or was interrupted between poll and receive.
                Err(_) => continue,
            };
            // Answer first: the workload waits for this, the log line does not.
            let _ = warren_sys::seccomp_notif_send_errno(self.listener.as_fd(), n.id, errno);
            if let Some(line) = self.count(n.nr as u32, n.pid, n.args) {
                self.lines.push(line);
            }
        }
    }

    /// Count one refusal; the line to write if it is the first of its number.
    fn count(&mut self, nr: u32, pid: u32, args: [u64; 6]) -> Option<String> {
        if let Some(c) = self.counts.get_mut(&nr) {
            *c += 1;
            return None;
        }
        if self.counts.len() >= DISTINCT {
            self.others += 1;
            if self.overflow_noted {
                return None;
            }
            self.overflow_noted = true;
            return Some(format!(
                "seccomp: refused calls of more than {DISTINCT} different syscalls in environment \
                 {}; further ones are counted, not logged",
                self.environment
            ));
        }
        self.counts.insert(nr, 1);
        Some(self.explain(nr, pid, args))
    }

    /// The line for the first refusal of `nr`.
    fn explain(&mut self, nr: u32, pid: u32, args: [u64; 6]) -> String {
        let name = warren_seccomp::syscall_name(self.arch, nr);
        let who = std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .map(|c| format!(" by {} (host pid {pid})", c.trim_end()))
            .unwrap_or_else(|_| format!(" by host pid {pid}"));
        let env = &self.environment;
        let Some(name) = name else {
            return format!(
                "seccomp: refused syscall number {nr} in environment {env}{who}: not a system call \
                 Warren knows on {}; it cannot be allowed",
                self.arch
            );
        };
        if self.profile.is_none() {
            self.profile = warren_seccomp::Profile::default_profile().ok();
        }
        // In this order: `strict` (or a file on it) left the call out, unless the file added
        // it back; the deny list; a call the profile allows, refused for its arguments; a call
        // outside the safe set a file may add (a reviewed change of the policy); else a file
        // can add it.
        let added = self.added.iter().any(|a| a == name);
        let how = match &self.profile {
            Some(p) if self.strict && !added && p.strict_removed().iter().any(|r| r == name) => {
                format!(
                    "the strict profile leaves {name} out; run with --seccomp default, or a \
                     profile file that adds it (docs/seccomp.md)"
                )
            }
            Some(p) if p.deny_reason(name).is_some() => format!(
                "{name} is never allowed: {}",
                p.deny_reason(name).unwrap_or_default()
            ),
            Some(p) if p.allowed_syscalls().iter().any(|a| a == name) => format!(
                "{name} is allowed only with the arguments docs/seccomp.md lists (arguments {})",
                args.iter()
                    .take(3)
                    .map(|a| format!("{a:#x}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Some(p) if !added && !p.addable_syscalls().iter().any(|a| a == name) => format!(
                "{name} is outside the safe set a profile may add: allowing it needs a reviewed \
                 change to \"addable\" in policy.json (docs/seccomp.md)"
            ),
            _ => format!(
                "allow it with --seccomp FILE (a profile that adds {name}; see docs/seccomp.md)"
            ),
        };
        format!("seccomp: refused syscall {name} ({nr}) in environment {env}{who}; {how}")
    }

    /// Every refused syscall and how often, most frequent first (`"other"` for numbers beyond
    /// the first [`DISTINCT`]).
    pub(crate) fn summary(&self) -> Vec<(String, u64)> {
        let mut out: Vec<(String, u64)> = self
            .counts
            .iter()
            .map(|(nr, c)| {
                let name = warren_seccomp::syscall_name(self.arch, *nr)
                    .map(str::to_owned)
                    .unwrap_or_else(|| format!("#{nr}"));
                (name, *c)
            })
            .collect();
        if self.others > 0 {
            out.push(("other".into(), self.others));
        }
        out.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusals() -> Refusals {
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        Refusals::new(a.into(), "web", false, &[])
    }

    #[test]
    fn the_first_refusal_of_each_syscall_is_explained_and_the_rest_counted() {
        let mut r = refusals();
        let arch = warren_seccomp::Arch::host();
        let profile = warren_seccomp::Profile::default_profile().unwrap();
        let nr_of = |name: &str| {
            (0..1024u32)
                .find(|nr| warren_seccomp::syscall_name(arch, *nr) == Some(name))
                .unwrap()
        };
        let keyctl = nr_of("keyctl");
        let line = r
            .count(keyctl, u32::MAX, [0; 6])
            .expect("first one is logged");
        assert!(
            line.starts_with(&format!(
                "seccomp: refused syscall keyctl ({keyctl}) in environment web"
            )),
            "{line}"
        );
        assert!(line.contains("keyctl is never allowed: "), "{line}");
        assert_eq!(r.count(keyctl, u32::MAX, [0; 6]), None);
        assert_eq!(r.count(keyctl, u32::MAX, [0; 6]), None);
        // socket is allowed with some arguments: the line says so, with the arguments.
        let line = r
            .count(nr_of("socket"), u32::MAX, [17, 3, 0, 0, 0, 0])
            .unwrap();
        assert!(
            line.contains("socket is allowed only with the arguments"),
            "{line}"
        );
        assert!(line.contains("0x11, 0x3, 0x0"), "{line}");
        // A call in the safe set a file may add: the line says how to allow it.
        let allowed = profile.allowed_syscalls();
        let addable = profile.addable_syscalls();
        let (nr, name) = (0..1024u32)
            .filter_map(|nr| warren_seccomp::syscall_name(arch, nr).map(|n| (nr, n)))
            .find(|(_, n)| !allowed.iter().any(|a| a == n) && addable.iter().any(|a| a == n))
            .expect("some syscall is addable and not allowed");
        let line = r.count(nr, u32::MAX, [0; 6]).unwrap();
        assert!(
            line.contains(&format!(
                "allow it with --seccomp FILE (a profile that adds {name};"
            )),
            "{line}"
        );
        // One outside that set and not denied either: no file can add it, and the line says so.
        let (nr, name) = (0..1024u32)
            .filter_map(|nr| warren_seccomp::syscall_name(arch, nr).map(|n| (nr, n)))
            .find(|(_, n)| {
                profile.deny_reason(n).is_none()
                    && !allowed.iter().any(|a| a == n)
                    && !addable.iter().any(|a| a == n)
            })
            .expect("some syscall is neither allowed, addable nor denied");
        let line = r.count(nr, u32::MAX, [0; 6]).unwrap();
        assert!(
            line.contains(&format!("{name} is outside the safe set a profile may add")),
            "{line}"
        );
        assert_eq!(
            r.summary()[0],
            ("keyctl".to_owned(), 3),
            "most frequent first"
        );
    }

    /// Under `strict`, a call it removed is blamed on it; under a file on a `strict` base
    /// that added the call back, a refusal of it is for its arguments.
    #[test]
    fn strict_is_blamed_only_for_calls_the_profile_did_not_add_back() {
        let arch = warren_seccomp::Arch::host();
        let profile = warren_seccomp::Profile::default_profile().unwrap();
        let removed = profile.strict_removed();
        let allowed = profile.allowed_syscalls();
        // One that strict removes and the default allows (so a file can add it back).
        let name = removed
            .iter()
            .find(|n| allowed.contains(n))
            .expect("strict removes some call the default allows")
            .clone();
        let nr = (0..1024u32)
            .find(|nr| warren_seccomp::syscall_name(arch, *nr) == Some(name.as_str()))
            .unwrap();
        let pair = || std::os::unix::net::UnixStream::pair().unwrap().0.into();
        let mut strict = Refusals::new(pair(), "web", true, &[]);
        let line = strict.count(nr, u32::MAX, [0; 6]).unwrap();
        assert!(
            line.contains(&format!("the strict profile leaves {name} out")),
            "{line}"
        );
        let mut file = Refusals::new(pair(), "web", true, std::slice::from_ref(&name));
        let line = file.count(nr, u32::MAX, [0; 6]).unwrap();
        assert!(
            line.contains(&format!("{name} is allowed only with the arguments")),
            "{line}"
        );
    }

    #[test]
    fn memory_and_lines_are_bounded_whatever_the_workload_calls() {
        let mut r = refusals();
        let mut lines = 0;
        for nr in 0..10_000u32 {
            if r.count(0x4000_0000 + nr, u32::MAX, [0; 6]).is_some() {
                lines += 1;
            }
        }
        assert_eq!(r.counts.len(), DISTINCT);
        assert_eq!(
            lines,
            DISTINCT + 1,
            "one line per counted number, one overflow note"
        );
        assert_eq!(r.others, 10_000 - DISTINCT as u64);
        let s = r.summary();
        assert_eq!(s.len(), DISTINCT + 1);
        assert!(s.contains(&("other".to_owned(), 10_000 - DISTINCT as u64)));
    }

    #[test]
    fn an_unknown_number_is_named_as_such() {
        let mut r = refusals();
        let line = r.count(0x4000_0027, u32::MAX, [0; 6]).unwrap();
        assert!(
            line.contains("refused syscall number 1073741863 in environment web"),
            "{line}"
        );
        assert!(line.contains("cannot be allowed"), "{line}");
    }
}
