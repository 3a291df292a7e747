//! The bound on an environment's log (docs/cli.md, `warren logs`; docs/threat-model.md).
//!
//! `warren run -d`, the kernel and spawns start the launcher with its standard output and error
//! on `<state>/logs/NAME.log`, the file `warren logs` reads. Handed to the workload as they are,
//! they would let it grow that file without end, on the file system of the state directory
//! (`/run`, memory, by default). So when the launcher finds its standard output to be that very
//! file, it puts a pipe on descriptors 1 and 2 before the launch (the workload inherits the pipe)
//! and, once the environment runs, copies the pipe into the log until the file holds
//! [`LOG_MAX`] bytes; one line then says that the rest is discarded, and the copy keeps reading
//! (so the workload never blocks or gets `EPIPE`) and drops what it reads.
//!
//! The copy is done by the launcher's waiting thread ([`LogCap`] is a
//! [`warren_sandbox::Sidework`]), not a thread of its own: a waiting launcher is one task. Once
//! the copy starts, the launcher's own descriptors 1 and 2 are the log file again, so only the
//! environment's processes hold the pipe's writing end: the launcher's messages can never block
//! on a pipe only it reads, and the copy sees the end of the pipe when the environment has ended.
//! They count against the same limit (the copy measures the file itself), and once it is
//! reached they go to `/dev/null` like the rest.

use std::fs::File;
use std::io::Write as _;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};

/// The most an environment's log file holds; output beyond it is read and discarded.
pub const LOG_MAX: u64 = 64 << 20;

/// Bytes moved per read at most: a block of its own in the musl build's allocator (128 KiB and
/// more are mapped apart), so its pages cost memory only once a read fills them.
const COPY_BUF: usize = 128 << 10;

/// How long the end of the copy waits for the pipe's end after the environment ended (a
/// process that escaped the environment's teardown holding the pipe must not keep the launcher).
const DRAIN_WAIT: Duration = Duration::from_secs(5);

/// The pipe between the workload (and the launcher's own messages) and the log.
pub struct LogCap {
    /// What the limit line tells the reader to run (`warren rm NAME`).
    rm: String,
    /// The log itself, as the launcher's standard output was before the pipe.
    log: File,
    /// The pipe's read end, until the end of the pipe.
    reader: Option<OwnedFd>,
    /// The most the log holds ([`LOG_MAX`]).
    max: u64,
    /// The copy's buffer, allocated at the first read.
    space: Vec<u8>,
    /// Whether the launcher's descriptors 1 and 2 are to be the log again at the end (always,
    /// but in this module's tests).
    owns_stdio: bool,
}

/// Before the launch, while the launcher is single-threaded: when standard output is the
/// file at `log_path`, put a pipe on standard output and error and return the cap that copies
/// it; `None` (nothing changed) when standard output is anything else.
pub fn interpose(log_path: &Path, name: &str) -> std::io::Result<Option<LogCap>> {
    let out = rustix::stdio::stdout();
    let Ok(st) = rustix::fs::fstat(out) else {
        return Ok(None);
    };
    let Ok(at) = rustix::fs::stat(log_path) else {
        return Ok(None);
    };
    if rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::RegularFile
        || (st.st_dev, st.st_ino) != (at.st_dev, at.st_ino)
    {
        return Ok(None);
    }
    let log = File::from(rustix::io::fcntl_dupfd_cloexec(out, 3)?);
    let (reader, writer) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
    // dup2 leaves 1 and 2 without close-on-exec, so the workload inherits them.
    rustix::stdio::dup2_stdout(&writer)?;
    rustix::stdio::dup2_stderr(&writer)?;
    Ok(Some(LogCap {
        rm: format!("warren rm {name}"),
        log,
        reader: Some(reader),
        max: LOG_MAX,
        space: Vec::new(),
        owns_stdio: true,
    }))
}

impl LogCap {
    /// Once the environment runs: the launcher's own output goes to the log directly from now
    /// on (what the environment wrote before it is in the pipe, copied next), and the waiting
    /// thread copies the pipe (through [`warren_sandbox::Sidework`]).
    pub fn start(&mut self) {
        self.restore_stdio();
        if self.log.metadata().map_or(true, |m| m.len() >= self.max) {
            self.silence_launcher();
        }
    }

    /// The log has reached its limit: the launcher's own messages go where the environment's
    /// further output goes, nowhere.
    fn silence_launcher(&self) {
        if !self.owns_stdio {
            return;
        }
        if let Ok(null) = rustix::fs::open(
            "/dev/null",
            rustix::fs::OFlags::WRONLY | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        ) {
            let _ = rustix::stdio::dup2_stdout(&null);
            let _ = rustix::stdio::dup2_stderr(&null);
        }
    }

    fn restore_stdio(&self) {
        if !self.owns_stdio {
            return;
        }
        let _ = rustix::stdio::dup2_stdout(&self.log);
        let _ = rustix::stdio::dup2_stderr(&self.log);
    }

    /// Copy what one read of the pipe gives; at its end, stop watching it.
    fn copy_once(&mut self) {
        let Some(reader) = &self.reader else {
            return;
        };
        // Neither zeroed nor on the stack: only the pages a read fills are touched, so the
        // launcher of an environment that writes little keeps a few KiB for its whole life.
        let mut space = std::mem::take(&mut self.space);
        if space.capacity() == 0 {
            space = Vec::with_capacity(COPY_BUF);
        }
        match rustix::io::read(reader, space.spare_capacity_mut()) {
            Ok(([], _)) => self.reader = None,
            Ok((data, _)) => {
                // The file's own length: the launcher's messages are appended to it directly.
                let len = self.log.metadata().map_or(self.max, |m| m.len());
                let after = append_capped(&mut self.log, len, data, self.max, &self.rm);
                if after >= self.max {
                    self.silence_launcher();
                }
            }
            Err(rustix::io::Errno::INTR | rustix::io::Errno::AGAIN) => {}
            Err(_) => self.reader = None,
        }
        // A waiter of many environments (not owning its standard output) keeps no buffer
        // between reads: one per environment would add up.
        if self.owns_stdio {
            self.space = space;
        }
    }

    /// After the environment ended: copy the rest of the pipe until its end (bounded by
    /// [`DRAIN_WAIT`]), so that the launcher's last lines come after the environment's output.
    pub fn drain(&mut self) {
        let until = Instant::now() + DRAIN_WAIT;
        while let Some(reader) = &self.reader {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let mut fds = [rustix::event::PollFd::new(
                reader,
                rustix::event::PollFlags::IN,
            )];
            let t = rustix::time::Timespec {
                tv_sec: left.as_secs() as i64,
                tv_nsec: i64::from(left.subsec_nanos()),
            };
            match rustix::event::poll(&mut fds, Some(&t)) {
                Ok(0) => break,
                Ok(_) => self.copy_once(),
                Err(rustix::io::Errno::INTR) => {}
                Err(_) => break,
            }
        }
        self.reader = None;
    }
}

impl LogCap {
    /// For a hand-off of the environment (`daemon/helper.rs`): the log and the pipe's read end,
    /// with what [`LogCap::from_parts`] needs besides. The launcher's own output stays on the
    /// log (as [`LogCap::start`] left it); nothing is drained here.
    pub fn into_parts(mut self) -> Result<(serde_json::Value, Vec<OwnedFd>), LogCap> {
        let Ok(log) = self.log.try_clone() else {
            return Err(self);
        };
        let mut fds = vec![OwnedFd::from(log)];
        // The pipe, unless its end was reached (the environment has ended and was copied).
        fds.extend(self.reader.take());
        let data = serde_json::json!({ "rm": self.rm, "max": self.max, "pipe": fds.len() == 2 });
        // The drop restores the launcher's standard output and error (to the log, as they
        // are already) and has no pipe left to drain.
        drop(self);
        Ok((data, fds))
    }

    /// The copy [`LogCap::into_parts`] handed over, in a process whose own standard output
    /// and error are not the log.
    pub fn from_parts(data: &serde_json::Value, log: OwnedFd, reader: Option<OwnedFd>) -> LogCap {
        LogCap {
            rm: data["rm"].as_str().unwrap_or("warren rm").to_owned(),
            log: File::from(log),
            reader,
            max: data["max"].as_u64().unwrap_or(LOG_MAX),
            space: Vec::new(),
            owns_stdio: false,
        }
    }

    /// A second descriptor of the log file (appending, as the first).
    pub fn log_file(&self) -> Option<File> {
        self.log.try_clone().ok()
    }

    /// Append one line of Warren's own to the log (within its limit), as a launcher's
    /// standard error would.
    pub fn line(&mut self, text: &str) {
        let len = self.log.metadata().map_or(self.max, |m| m.len());
        let line = format!("{text}\n");
        append_capped(&mut self.log, len, line.as_bytes(), self.max, &self.rm);
    }
}

impl warren_sandbox::Sidework for LogCap {
    fn fd(&self) -> Option<BorrowedFd<'_>> {
        self.reader.as_ref().map(|r| r.as_fd())
    }

    fn ready(&mut self) {
        self.copy_once();
    }
}

impl Drop for LogCap {
    /// Put the log back on standard output and error (the launcher's last messages go straight
    /// to it), which closes the launcher's ends of the pipe (if the copy never started); the
    /// copy then reaches the end of what the environment wrote.
    fn drop(&mut self) {
        self.restore_stdio();
        self.drain();
    }
}

/// Append `data` to `log`, which is `len` bytes long, keeping it at most `max` bytes long plus
/// the one line that says the limit was reached (and that `rm` deletes the log); the new length.
fn append_capped(log: &mut File, len: u64, data: &[u8], max: u64, rm: &str) -> u64 {
    if len >= max {
        return len;
    }
    let take = usize::try_from(max - len).map_or(data.len(), |room| data.len().min(room));
    if log.write_all(&data[..take]).is_err() {
        // A full file system: drop the output rather than block the environment.
        return max;
    }
    let len = len + take as u64;
    if len >= max {
        let _ = log.write_all(
            format!(
                "\nwarren: the log reached its limit of {max} bytes: further output of this \
                 environment is discarded ({rm} deletes the log)\n"
            )
            .as_bytes(),
        );
    }
    len
}

/// Copy `reader` into `log` (opened for appending) until the end of the pipe, as a launcher's
/// copy does, with the limit `max` instead of [`LOG_MAX`].
#[cfg(test)]
fn copy(reader: OwnedFd, log: File, max: u64, rm: &str) {
    let mut cap = LogCap {
        rm: rm.to_owned(),
        log,
        reader: Some(reader),
        max,
        space: Vec::new(),
        owns_stdio: false,
    };
    cap.drain();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pipe_with(data: &[u8]) -> OwnedFd {
        let (r, w) = rustix::pipe::pipe().unwrap();
        let data = data.to_vec();
        std::thread::spawn(move || {
            let _ = File::from(w).write_all(&data);
        });
        r
    }

    #[test]
    fn output_below_the_limit_arrives_whole_and_above_it_stops_at_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.log");
        std::fs::write(&path, b"earlier\n").unwrap();
        let open = || {
            std::fs::OpenOptions::new()
                .append(true)
                .open(&path)
                .unwrap()
        };
        // Positive control: under the limit, every byte.
        copy(pipe_with(b"0123456789"), open(), 100, "warren rm x");
        assert_eq!(std::fs::read(&path).unwrap(), b"earlier\n0123456789");
        // Over it: the file stops at the limit, then says so once, and the rest is read (the
        // writer finishes) and dropped.
        copy(pipe_with(&vec![b'x'; 1 << 20]), open(), 100, "warren rm x");
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with(&format!("earlier\n0123456789{}", "x".repeat(82))));
        assert!(
            text.contains("the log reached its limit of 100 bytes"),
            "{text}"
        );
        assert_eq!(text.matches("limit").count(), 1, "{text}");
        let len = text.len();
        // A later launch on a full log adds nothing.
        copy(pipe_with(b"more"), open(), 100, "warren rm x");
        assert_eq!(std::fs::read(&path).unwrap().len(), len);
    }
}
