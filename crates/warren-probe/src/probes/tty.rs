//! `tty.*`: inject input into, or use console ioctls on, an inherited terminal (`--tty-fd`, or
//! fd 0 when it is a terminal). An injected byte is flushed from the input queue at once.

use std::os::fd::{AsFd, OwnedFd};

use rustix::termios::{QueueSelector, isatty, tcflush};

use super::Ctx;
use crate::report::{Report, describe, strict_report, syscall_report};

/// The terminal to use, or why there is none.
fn terminal(ctx: &Ctx) -> Result<(i32, OwnedFd), String> {
    let n = ctx.opts.tty_fd.unwrap_or(0);
    let fd = warren_sys::probe::dup_inherited_fd(n)
        .map_err(|e| format!("descriptor {n} is not open: {}", describe(&e)))?;
    if isatty(&fd) {
        Ok((n, fd))
    } else {
        Err(format!(
            "descriptor {n} is not a terminal (give one with --tty-fd)"
        ))
    }
}

fn tiocsti_probe(ctx: &Ctx, probe: &str, high_bits: bool) -> Report {
    let (n, fd) = match terminal(ctx) {
        Ok(t) => t,
        Err(why) => return Report::skipped(probe, why),
    };
    let result = warren_sys::probe::tiocsti(fd.as_fd(), b'#', high_bits);
    if result.is_ok() {
        // Take the injected byte back out of the input queue.
        let _ = tcflush(&fd, QueueSelector::IFlush);
    }
    let request = if high_bits {
        "TIOCSTI | 1<<32"
    } else {
        "TIOCSTI"
    };
    strict_report(probe, &format!("ioctl({n}, {request}, '#')"), result)
}

/// `tty.tiocsti`: push a byte into the terminal's input queue.
pub fn tiocsti(ctx: &Ctx) -> Report {
    tiocsti_probe(ctx, "tty.tiocsti", false)
}

/// `tty.tiocsti_highbits`: the same with bit 32 of the request set (CVE-2019-10063).
pub fn tiocsti_highbits(ctx: &Ctx) -> Report {
    tiocsti_probe(ctx, "tty.tiocsti_highbits", true)
}

/// `tty.tioclinux`: `TIOCLINUX` with the read-only `TIOCL_GETSHIFTSTATE` sub-command. On a
/// terminal that is not a virtual console, `ENOTTY`/`EINVAL` shows the call is reachable.
pub fn tioclinux(ctx: &Ctx) -> Report {
    const P: &str = "tty.tioclinux";
    let (n, fd) = match terminal(ctx) {
        Ok(t) => t,
        Err(why) => return Report::skipped(P, why),
    };
    syscall_report(
        P,
        &format!("ioctl({n}, TIOCLINUX, GETSHIFTSTATE)"),
        warren_sys::probe::tioclinux_get_shift_state(fd.as_fd()),
    )
}
