//! Handing a running environment from its launcher to another process, which then waits for it
//! and releases what it holds, so that the launcher can end while the environment runs.
//!
//! A launcher costs about 230 KiB of host memory for as long as its environment runs (its
//! task, kernel stack, page tables and heap; `BENCHMARKS.md`, "Spawn"). A process that waits
//! for many environments at once costs a few KiB for each. What the waiter holds per
//! environment is what [`Supervised`] holds: the child's pidfd, its cgroup, its name and uid
//! range locks and its seccomp listener; the launch's other resources are released by then.
//!
//! The launcher launches with [`Parentage::LaunchersParent`], so that the environment's first
//! process is already the waiter's child (only a parent can collect an exit status, and the
//! parent-death signal follows the parent), and after the launch it sends a [`HandOff`]: one
//! `SOCK_SEQPACKET` packet holding a JSON description and, as `SCM_RIGHTS`, the descriptors
//! (the pidfd first, then the name lock, the uid range lock and the seccomp listener, each when
//! the environment has one). The waiter rebuilds the [`Supervised`] with
//! [`HandOff::take_over`]; until then nothing is released: a lock stays taken while any copy of
//! its descriptor is open, and the cgroup's directories stay until their new owner removes
//! them. A hand-off that fails to arrive leaves the environment to the waiter as an unknown
//! child, which it kills and reaps as it would any other.
//!
//! Environments with a network interface of their own are not handed over (their teardown
//! holds netlink and nftables state this does not carry yet): [`HandOff::new`] refuses them,
//! and their launcher waits for them as before.

use std::io::{IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};
use rustix::process::{WaitId, WaitIdOptions, waitid};
use serde::{Deserialize, Serialize};
use warren_cgroup::{Cgroup, CgroupParts};

use crate::launch::{Supervised, Taken};
use crate::refusals::{Refusals, RefusalsParts};
use crate::state::{Held, UidRange, UidRangeParts};

/// The largest hand-off packet: the description is a few KiB at most (the refusal lines not
/// yet written are bounded by the number of syscalls counted one by one).
pub const MAX_PACKET: usize = 64 * 1024;

/// Most descriptors a hand-off carries (its own four and the caller's extra ones).
pub const MAX_FDS: usize = 16;

/// Why a hand-off could not be made, sent or taken over.
#[derive(Debug, thiserror::Error)]
pub enum HandOffError {
    /// The environment holds something a hand-off does not carry.
    #[error("the environment cannot be handed over: {0}")]
    Unsupported(&'static str),
    /// A system call failed.
    #[error("{what}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The packet is not a hand-off.
    #[error("a malformed hand-off: {0}")]
    Malformed(String),
    /// The receiver is not the environment's parent, so it could never collect its status.
    #[error(
        "the environment (pid {0}) is not this process's child: launch it with Parentage::LaunchersParent from a child of this process"
    )]
    NotParent(i32),
    /// Its cgroup or a lock could not be taken back.
    #[error("take over {what}")]
    Resource {
        /// Which resource.
        what: &'static str,
        /// The cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// The description sent with the descriptors.
#[derive(Debug, Serialize, Deserialize)]
struct Description {
    /// The environment's first process, in the sender's pid namespace.
    pid: i32,
    cgroup: Option<CgroupParts>,
    /// The name lock's path (its descriptor follows the pidfd).
    name: Option<std::path::PathBuf>,
    uids: Option<UidRangeParts>,
    refusals: Option<RefusalsParts>,
    /// What the caller sends along ([`HandOff::with_extra`]), and how many descriptors of its
    /// own follow the hand-off's.
    #[serde(default)]
    extra: serde_json::Value,
    #[serde(default)]
    extra_fds: usize,
}

/// A running environment on its way from one process to another.
#[derive(Debug)]
pub struct HandOff {
    description: Description,
    /// The pidfd, then the name lock, the uid range lock and the listener (those present).
    fds: Vec<OwnedFd>,
}

impl HandOff {
    /// Take `sup` apart for sending. On failure `sup` comes back unchanged with the reason, and
    /// its launcher goes on waiting for it.
    pub fn new(mut sup: Supervised) -> Result<HandOff, Box<(Supervised, HandOffError)>> {
        if sup.taken.net.is_some() {
            return Err(Box::new((
                sup,
                HandOffError::Unsupported("it has a network interface"),
            )));
        }
        if sup.taken.child.is_none() || sup.taken.reaped {
            return Err(Box::new((
                sup,
                HandOffError::Unsupported("it is not running"),
            )));
        }
        // The fallible part first, while `sup` is whole: copies of the locks' descriptors.
        let dups = (|| -> std::io::Result<(Option<OwnedFd>, Option<OwnedFd>)> {
            Ok((
                sup.taken.name.as_ref().map(Held::dup).transpose()?,
                sup.taken.uids.as_ref().map(UidRange::dup).transpose()?,
            ))
        })();
        let (name_fd, uid_fd) = match dups {
            Ok(d) => d,
            Err(source) => {
                let what = "copy the environment's lock descriptors";
                return Err(Box::new((sup, HandOffError::Io { what, source })));
            }
        };
        let (pid, pidfd) = sup.taken.child.take().expect("checked above");
        let mut fds = vec![pidfd];
        let name = sup.taken.name.take().map(Held::disarm);
        fds.extend(name_fd);
        let uids = sup.taken.uids.take().map(UidRange::disarm);
        fds.extend(uid_fd);
        let cgroup = sup.taken.cgroup.take().map(Cgroup::into_parts);
        let refusals = sup.refusals.take().map(|r| {
            let (parts, listener) = r.into_parts();
            fds.push(listener);
            parts
        });
        // What is left (the signal mask to restore, the signalfd) is the launcher's own, and
        // its drop no longer kills a child it does not hold.
        drop(sup);
        Ok(HandOff {
            description: Description {
                pid,
                cgroup,
                name,
                uids,
                refusals,
                extra: serde_json::Value::Null,
                extra_fds: 0,
            },
            fds,
        })
    }

    /// Send `data` and `fds` along with the environment (what the caller's own waiting needs:
    /// its log, its kernel connection). At most [`MAX_FDS`] descriptors in all.
    pub fn with_extra(mut self, data: serde_json::Value, fds: Vec<OwnedFd>) -> HandOff {
        self.description.extra = data;
        self.description.extra_fds += fds.len();
        self.fds.extend(fds);
        self
    }

    /// Take what the sender sent along ([`HandOff::with_extra`]).
    pub fn take_extra(&mut self) -> (serde_json::Value, Vec<OwnedFd>) {
        let n = std::mem::take(&mut self.description.extra_fds);
        let at = self.fds.len() - n;
        (
            std::mem::take(&mut self.description.extra),
            self.fds.split_off(at),
        )
    }

    /// The environment's first process, in the sender's pid namespace.
    pub fn pid(&self) -> i32 {
        self.description.pid
    }

    /// Send it on `sock` (a `SOCK_SEQPACKET` socket) in one packet. After a failure, the
    /// sender still holds every part: [`HandOff::take_over`] in a process that is not the
    /// environment's parent then ends it and releases them.
    pub fn send(&self, sock: BorrowedFd<'_>) -> Result<(), HandOffError> {
        let body = serde_json::to_vec(&self.description)
            .map_err(|e| HandOffError::Malformed(e.to_string()))?;
        if body.len() > MAX_PACKET {
            return Err(HandOffError::Malformed(format!(
                "a description of {} bytes (at most {MAX_PACKET})",
                body.len()
            )));
        }
        if self.fds.len() > MAX_FDS {
            return Err(HandOffError::Malformed(format!(
                "{} descriptors (at most {MAX_FDS})",
                self.fds.len()
            )));
        }
        let fds: Vec<BorrowedFd<'_>> = self.fds.iter().map(AsFd::as_fd).collect();
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
        let mut control = SendAncillaryBuffer::new(&mut space);
        control.push(SendAncillaryMessage::ScmRights(&fds));
        rustix::net::sendmsg(
            sock,
            &[IoSlice::new(&body)],
            &mut control,
            SendFlags::NOSIGNAL,
        )
        .map_err(|e| HandOffError::Io {
            what: "send the hand-off",
            source: e.into(),
        })?;
        Ok(())
    }

    /// Receive one hand-off from `sock`; `None` when the sender hung up first.
    pub fn receive(sock: BorrowedFd<'_>) -> Result<Option<HandOff>, HandOffError> {
        let mut body = vec![0u8; MAX_PACKET + 1];
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
        let mut control = RecvAncillaryBuffer::new(&mut space);
        let got = loop {
            match rustix::net::recvmsg(
                sock,
                &mut [IoSliceMut::new(&mut body)],
                &mut control,
                RecvFlags::CMSG_CLOEXEC,
            ) {
                Ok(g) => break g,
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => {
                    return Err(HandOffError::Io {
                        what: "receive the hand-off",
                        source: e.into(),
                    });
                }
            }
        };
        let mut fds = Vec::new();
        for m in control.drain() {
            if let RecvAncillaryMessage::ScmRights(rights) = m {
                fds.extend(rights);
            }
        }
        if got.bytes == 0 && fds.is_empty() {
            return Ok(None);
        }
        if got.flags.contains(rustix::net::ReturnFlags::CTRUNC) {
            return Err(HandOffError::Malformed(format!(
                "its descriptors were cut short ({} arrived; is this process out of descriptors?)",
                fds.len()
            )));
        }
        if got.bytes > MAX_PACKET {
            return Err(HandOffError::Malformed(format!(
                "a packet larger than {MAX_PACKET} bytes"
            )));
        }
        let description: Description = serde_json::from_slice(&body[..got.bytes])
            .map_err(|e| HandOffError::Malformed(e.to_string()))?;
        let want = 1
            + usize::from(description.name.is_some())
            + usize::from(description.uids.is_some())
            + usize::from(description.refusals.is_some())
            + description.extra_fds;
        if fds.len() != want {
            return Err(HandOffError::Malformed(format!(
                "{} descriptors where the description calls for {want}",
                fds.len()
            )));
        }
        Ok(Some(HandOff { description, fds }))
    }

    /// Become the environment's waiter: the [`Supervised`] the sender held, whose wait collects
    /// the status and releases everything (take what was sent along first: it is dropped). The caller must be the environment's parent
    /// ([`HandOffError::NotParent`] otherwise). If that or a part cannot be taken back, the
    /// environment is killed and what was taken back released.
    pub fn take_over(self) -> Result<Supervised, HandOffError> {
        self.rebuild(false)
    }

    /// [`HandOff::take_over`] of an environment whose first process this process has already
    /// reaped (its end came before its hand-off): give the status it collected to
    /// [`Supervised::finish_reaped`]. Refused ([`HandOffError::NotParent`]: it is killed and
    /// everything released) when that process still runs.
    pub fn take_over_ended(self) -> Result<Supervised, HandOffError> {
        self.rebuild(true)
    }

    fn rebuild(mut self, ended: bool) -> Result<Supervised, HandOffError> {
        drop(self.take_extra());
        let HandOff { description, fds } = self;
        let mut fds = fds.into_iter();
        let pidfd = fds.next().expect("counted on receipt");
        let pid = description.pid;
        // Without reaping (NOWAIT), whether it is ours to wait for at all. If it is not, it is
        // killed and what it held released all the same: nothing is left behind. An ended one
        // must have ended.
        let ours = if ended {
            warren_sys::pidfd_ended(pidfd.as_fd())
        } else {
            let probe = waitid(
                WaitId::PidFd(pidfd.as_fd()),
                WaitIdOptions::EXITED | WaitIdOptions::NOHANG | WaitIdOptions::NOWAIT,
            );
            !matches!(probe, Err(rustix::io::Errno::CHILD))
        };
        // From here on, a failure kills the child (`Taken`'s drop) and releases what is held.
        let mut taken = Taken::default();
        if ours {
            taken.child = Some((pid, pidfd));
            taken.reaped = ended;
        } else {
            let _ = rustix::process::pidfd_send_signal(&pidfd, rustix::process::Signal::KILL);
        }
        if let Some(path) = description.name {
            let fd = fds.next().expect("counted on receipt");
            taken.name = Some(Held::from_parts(fd, path).map_err(|e| resource("its name", e))?);
        }
        if let Some(parts) = description.uids {
            let fd = fds.next().expect("counted on receipt");
            taken.uids =
                Some(UidRange::from_parts(parts, fd).map_err(|e| resource("its uid range", e))?);
        }
        if let Some(parts) = description.cgroup {
            taken.cgroup = Some(Cgroup::from_parts(parts).map_err(|e| resource("its cgroup", e))?);
        }
        let refusals = description.refusals.map(|parts| {
            let listener = fds.next().expect("counted on receipt");
            Refusals::from_parts(parts, listener)
        });
        if !ours {
            // The cgroup's teardown kills what is left inside and removes it; the locks go.
            drop(refusals);
            drop(taken);
            return Err(HandOffError::NotParent(pid));
        }
        Ok(Supervised::from_parts(pid, taken, refusals))
    }
}

fn resource(what: &'static str, e: impl std::error::Error + Send + Sync + 'static) -> HandOffError {
    HandOffError::Resource {
        what,
        source: Box::new(e),
    }
}
