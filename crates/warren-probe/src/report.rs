//! The probe's output contract: one [`Report`] per attempt, printed as one JSON object per line,
//! and the helpers that turn system-call results into reports.

use std::io;

use rustix::io::Errno;
use serde::{Deserialize, Serialize};

/// What an attempt found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// The attack succeeded, or the call got past every permission check: an escape or an
    /// ability was observed.
    Open,
    /// The attack failed; `errno` (or `detail`, for checks that are not system calls) says how.
    Blocked,
    /// A precondition is absent (no tty, no marker given), so nothing was attempted.
    Skipped,
}

/// One line of output: `{"probe":..,"outcome":..,"errno":..,"detail":..}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// The probe's name, e.g. `sys.keyctl`.
    pub probe: String,
    /// What the attempt found.
    pub outcome: Outcome,
    /// The symbolic errno of the decisive attempt (`"EPERM"`), or `null` when it succeeded or
    /// the check is not a system call.
    pub errno: Option<String>,
    /// Human-readable detail: what was tried and what was seen.
    pub detail: String,
}

impl Report {
    /// A report with no errno.
    pub fn new(probe: &str, outcome: Outcome, detail: impl Into<String>) -> Self {
        Report {
            probe: probe.to_owned(),
            outcome,
            errno: None,
            detail: detail.into(),
        }
    }

    /// An "open" report without errno.
    pub fn open(probe: &str, detail: impl Into<String>) -> Self {
        Self::new(probe, Outcome::Open, detail)
    }

    /// A "blocked" report without errno (an observed effect, not a system-call error).
    pub fn blocked(probe: &str, detail: impl Into<String>) -> Self {
        Self::new(probe, Outcome::Blocked, detail)
    }

    /// A "skipped" report: `detail` says which precondition is absent.
    pub fn skipped(probe: &str, detail: impl Into<String>) -> Self {
        Self::new(probe, Outcome::Skipped, detail)
    }

    /// Attach the symbolic name of `err`'s errno.
    pub fn with_errno(mut self, err: &io::Error) -> Self {
        self.errno = Some(errno_name(err));
        self
    }

    /// The report as one line of JSON (no trailing newline).
    pub fn to_json_line(&self) -> String {
        serde_json::to_string(self).expect("a report always serialises")
    }
}

/// Errors that mean "the sandbox (or the kernel's permission checks) stopped the call here".
pub const DENIED: &[Errno] = &[Errno::PERM, Errno::ACCESS, Errno::NOSYS];

/// Classify the result of a raw system-call attempt: success is open; an error in [`DENIED`] is
/// blocked; any other error means the call reached the kernel past the permission checks
/// (an invalid argument was rejected), which counts as open.
pub fn syscall_report<T>(probe: &str, what: &str, result: io::Result<T>) -> Report {
    match result {
        Ok(_) => Report::open(probe, format!("{what}: succeeded")),
        Err(e) if is_denied(&e) => {
            Report::blocked(probe, format!("{what}: {}", describe(&e))).with_errno(&e)
        }
        Err(e) => Report::open(
            probe,
            format!(
                "{what}: reached the kernel past the permission checks ({})",
                describe(&e)
            ),
        )
        .with_errno(&e),
    }
}

/// Classify an attempt whose only success is a success: any error is blocked.
pub fn strict_report<T>(probe: &str, what: &str, result: io::Result<T>) -> Report {
    match result {
        Ok(_) => Report::open(probe, format!("{what}: succeeded")),
        Err(e) => Report::blocked(probe, format!("{what}: {}", describe(&e))).with_errno(&e),
    }
}

/// Whether `err` is one of the [`DENIED`] errors.
pub fn is_denied(err: &io::Error) -> bool {
    DENIED.contains(&Errno::from_io_error(err).unwrap_or(Errno::IO))
}

/// `ENOENT (No such file or directory)`, or the error's text when it carries no errno.
pub fn describe(err: &io::Error) -> String {
    match err.raw_os_error() {
        Some(_) => {
            let text = err.to_string();
            let text = text.split(" (os error").next().unwrap_or(&text).to_owned();
            format!("{} ({text})", errno_name(err))
        }
        None => err.to_string(),
    }
}

/// The symbolic name of an error's errno (`"EPERM"`); `"E<n>"` for numbers without a name here,
/// and the error kind for errors that carry no errno (e.g. a connect timeout).
pub fn errno_name(err: &io::Error) -> String {
    let Some(raw) = err.raw_os_error() else {
        return match err.kind() {
            io::ErrorKind::TimedOut => "ETIMEDOUT".to_owned(),
            kind => format!("{kind:?}"),
        };
    };
    let errno = Errno::from_raw_os_error(raw);
    ERRNO_NAMES
        .iter()
        .find(|(e, _)| *e == errno)
        .map(|(_, name)| (*name).to_owned())
        .unwrap_or_else(|| format!("E{raw}"))
}

/// Names of the errnos a probe can meet, in the kernel's spelling.
const ERRNO_NAMES: &[(Errno, &str)] = &[
    (Errno::PERM, "EPERM"),
    (Errno::NOENT, "ENOENT"),
    (Errno::SRCH, "ESRCH"),
    (Errno::INTR, "EINTR"),
    (Errno::IO, "EIO"),
    (Errno::NXIO, "ENXIO"),
    (Errno::TOOBIG, "E2BIG"),
    (Errno::NOEXEC, "ENOEXEC"),
    (Errno::BADF, "EBADF"),
    (Errno::CHILD, "ECHILD"),
    (Errno::AGAIN, "EAGAIN"),
    (Errno::NOMEM, "ENOMEM"),
    (Errno::ACCESS, "EACCES"),
    (Errno::FAULT, "EFAULT"),
    (Errno::BUSY, "EBUSY"),
    (Errno::EXIST, "EEXIST"),
    (Errno::XDEV, "EXDEV"),
    (Errno::NODEV, "ENODEV"),
    (Errno::NOTDIR, "ENOTDIR"),
    (Errno::ISDIR, "EISDIR"),
    (Errno::INVAL, "EINVAL"),
    (Errno::NFILE, "ENFILE"),
    (Errno::MFILE, "EMFILE"),
    (Errno::NOTTY, "ENOTTY"),
    (Errno::TXTBSY, "ETXTBSY"),
    (Errno::FBIG, "EFBIG"),
    (Errno::NOSPC, "ENOSPC"),
    (Errno::SPIPE, "ESPIPE"),
    (Errno::ROFS, "EROFS"),
    (Errno::MLINK, "EMLINK"),
    (Errno::PIPE, "EPIPE"),
    (Errno::RANGE, "ERANGE"),
    (Errno::NAMETOOLONG, "ENAMETOOLONG"),
    (Errno::NOSYS, "ENOSYS"),
    (Errno::NOTEMPTY, "ENOTEMPTY"),
    (Errno::LOOP, "ELOOP"),
    (Errno::NODATA, "ENODATA"),
    (Errno::OVERFLOW, "EOVERFLOW"),
    (Errno::BADMSG, "EBADMSG"),
    (Errno::NOTSOCK, "ENOTSOCK"),
    (Errno::PROTOTYPE, "EPROTOTYPE"),
    (Errno::PROTONOSUPPORT, "EPROTONOSUPPORT"),
    (Errno::SOCKTNOSUPPORT, "ESOCKTNOSUPPORT"),
    (Errno::OPNOTSUPP, "EOPNOTSUPP"),
    (Errno::AFNOSUPPORT, "EAFNOSUPPORT"),
    (Errno::ADDRINUSE, "EADDRINUSE"),
    (Errno::ADDRNOTAVAIL, "EADDRNOTAVAIL"),
    (Errno::NETDOWN, "ENETDOWN"),
    (Errno::NETUNREACH, "ENETUNREACH"),
    (Errno::CONNRESET, "ECONNRESET"),
    (Errno::NOTCONN, "ENOTCONN"),
    (Errno::TIMEDOUT, "ETIMEDOUT"),
    (Errno::CONNREFUSED, "ECONNREFUSED"),
    (Errno::HOSTUNREACH, "EHOSTUNREACH"),
    (Errno::STALE, "ESTALE"),
    (Errno::DQUOT, "EDQUOT"),
    (Errno::NOKEY, "ENOKEY"),
    (Errno::KEYREVOKED, "EKEYREVOKED"),
];

#[cfg(test)]
mod tests {
    use super::*;

    fn os(errno: Errno) -> io::Error {
        io::Error::from_raw_os_error(errno.raw_os_error())
    }

    #[test]
    fn errno_names_use_kernel_spelling() {
        assert_eq!(errno_name(&os(Errno::PERM)), "EPERM");
        assert_eq!(errno_name(&os(Errno::ACCESS)), "EACCES");
        assert_eq!(errno_name(&os(Errno::NOSYS)), "ENOSYS");
        assert_eq!(errno_name(&io::Error::from_raw_os_error(4000)), "E4000");
        assert_eq!(
            errno_name(&io::Error::from(io::ErrorKind::TimedOut)),
            "ETIMEDOUT"
        );
    }

    #[test]
    fn syscall_results_are_classified_by_errno() {
        let r = syscall_report("x", "call", Err::<(), _>(os(Errno::PERM)));
        assert_eq!(
            (r.outcome, r.errno.as_deref()),
            (Outcome::Blocked, Some("EPERM"))
        );
        let r = syscall_report("x", "call", Err::<(), _>(os(Errno::INVAL)));
        assert_eq!(
            (r.outcome, r.errno.as_deref()),
            (Outcome::Open, Some("EINVAL"))
        );
        let r = syscall_report("x", "call", Ok::<_, io::Error>(3));
        assert_eq!((r.outcome, r.errno), (Outcome::Open, None));
        let r = strict_report("x", "call", Err::<(), _>(os(Errno::INVAL)));
        assert_eq!(r.outcome, Outcome::Blocked);
    }

    #[test]
    fn json_line_matches_the_contract() {
        let r = Report::blocked("sys.bpf", "bpf: EPERM").with_errno(&os(Errno::PERM));
        assert_eq!(
            r.to_json_line(),
            r#"{"probe":"sys.bpf","outcome":"blocked","errno":"EPERM","detail":"bpf: EPERM"}"#
        );
        let r = Report::skipped("tty.tiocsti", "no tty");
        let back: Report = serde_json::from_str(&r.to_json_line()).unwrap();
        assert_eq!(back, r);
        assert!(r.to_json_line().contains(r#""errno":null"#));
    }
}
