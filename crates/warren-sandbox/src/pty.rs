//! `warren run -t`: a pseudo-terminal of the environment's own (child side, and the hand-over
//! of its master to the launcher).
//!
//! In step `mount-dev` the child mounts a new devpts instance on `/dev/pts` (`newinstance`,
//! `ptmxmode=0666`, `mode=0620`, `gid=5`), links `/dev/ptmx` to `pts/ptmx` and binds the host's
//! `/dev/tty` (which always means the caller's own controlling terminal). In step `setsid`,
//! after the new session is made, it opens a pty pair from that instance, makes the slave its
//! controlling terminal and its standard input, output and error, and sends the master to the
//! launcher over a socket (`SCM_RIGHTS`). The launcher relays between its own terminal and the
//! master (`warren`'s `tty` module). The pty numbers and the devpts instance are the
//! environment's own: nothing of the host's `/dev/pts` is visible.

use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use rustix::fs::{Mode, OFlags};
use rustix::mount::{MountFlags, mount, mount_bind};
use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};

use crate::step::Step;
use crate::step::StepResult;
use crate::step::at;

/// Step `mount-dev`, with `-t`: devpts on `<root>/dev/pts`, `/dev/ptmx` and `/dev/tty`.
pub(crate) fn mount_devpts(dev: &Path) -> StepResult {
    let step = Step::MountDev;
    // `pts/`, the `ptmx` link and the `tty` file are the skeleton's (`crate::skeleton`).
    let pts = dev.join("pts");
    at(
        step,
        || "mount a new devpts instance on /dev/pts".into(),
        mount(
            "devpts",
            &pts,
            "devpts",
            MountFlags::NOSUID | MountFlags::NOEXEC,
            c"newinstance,ptmxmode=0666,mode=0620,gid=5",
        ),
    )?;
    at(
        step,
        || "bind /dev/tty".into(),
        mount_bind("/dev/tty", dev.join("tty")),
    )
}

/// Step `setsid`, with `-t`: open a pty pair of the environment's devpts, make the slave the
/// controlling terminal and descriptors 0, 1 and 2 (owned by `owner` when the workload runs
/// as another user), and send the master over `sock`.
pub(crate) fn attach(sock: &OwnedFd, owner: Option<(u32, u32)>) -> StepResult {
    let step = Step::Setsid;
    let master = at(
        step,
        || "open /dev/pts/ptmx".into(),
        rustix::fs::open(
            "/dev/pts/ptmx",
            OFlags::RDWR | OFlags::NOCTTY | OFlags::CLOEXEC,
            Mode::empty(),
        ),
    )?;
    at(
        step,
        || "unlock the pty".into(),
        rustix::pty::unlockpt(&master),
    )?;
    let slave = at(
        step,
        || "open the pty's slave".into(),
        rustix::pty::ioctl_tiocgptpeer(
            &master,
            rustix::pty::OpenptFlags::RDWR | rustix::pty::OpenptFlags::NOCTTY,
        ),
    )?;
    if let Some((uid, gid)) = owner {
        at(
            step,
            || "give the pty to the workload's user".into(),
            rustix::fs::fchown(
                &slave,
                Some(rustix::fs::Uid::from_raw(uid)),
                Some(rustix::fs::Gid::from_raw(gid)),
            ),
        )?;
    }
    at(
        step,
        || "make the pty the controlling terminal".into(),
        rustix::process::ioctl_tiocsctty(&slave),
    )?;
    for (n, r) in [
        (0, rustix::stdio::dup2_stdin(&slave)),
        (1, rustix::stdio::dup2_stdout(&slave)),
        (2, rustix::stdio::dup2_stderr(&slave)),
    ] {
        at(step, || format!("make the pty descriptor {n}"), r)?;
    }
    drop(slave);
    let fds = [master.as_fd()];
    let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut cmsg = SendAncillaryBuffer::new(&mut space);
    cmsg.push(SendAncillaryMessage::ScmRights(&fds));
    at(
        step,
        || "hand the pty to the launcher".into(),
        rustix::net::sendmsg(
            sock,
            &[std::io::IoSlice::new(b"p")],
            &mut cmsg,
            SendFlags::empty(),
        ),
    )?;
    Ok(())
}

/// Parent side: the master the child sent over `sock`, if it sent one.
pub(crate) fn receive(sock: &OwnedFd) -> std::io::Result<Option<OwnedFd>> {
    let mut byte = [0u8; 1];
    let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut cmsg = RecvAncillaryBuffer::new(&mut space);
    rustix::net::recvmsg(
        sock,
        &mut [std::io::IoSliceMut::new(&mut byte)],
        &mut cmsg,
        RecvFlags::CMSG_CLOEXEC | RecvFlags::DONTWAIT,
    )?;
    for m in cmsg.drain() {
        if let RecvAncillaryMessage::ScmRights(mut fds) = m {
            if let Some(fd) = fds.next() {
                return Ok(Some(fd));
            }
        }
    }
    Ok(None)
}
