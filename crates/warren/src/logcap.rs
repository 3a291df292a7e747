//! The bound on an environment's log (docs/cli.md, `warren logs`; docs/threat-model.md).
//!
//! `warren run -d`, the kernel and spawns start the launcher with its standard output and error
//! on `<state>/logs/NAME.log`, the file `warren logs` reads. Handed to the workload as they are,
//! they would let it grow that file without end, on the file system of the state directory
//! (`/run`, memory, by default). So when the launcher finds its standard output to be that very
//! file, it puts a pipe on descriptors 1 and 2 before the launch (the workload inherits the pipe)
//! and, once the environment runs, a thread copies the pipe into the log until the file holds
//! [`LOG_MAX`] bytes; one line then says that the rest is discarded, and the thread keeps
//! reading (so the workload never blocks or gets `EPIPE`) and drops what it reads.

use std::fs::File;
use std::io::Write as _;
use std::os::fd::OwnedFd;
use std::path::Path;

/// The most an environment's log file holds; output beyond it is read and discarded.
pub const LOG_MAX: u64 = 64 << 20;

/// The copier thread's stack (its buffer is on the heap).
const COPIER_STACK: usize = 64 << 10;
/// Bytes moved per read at most: a block of its own in the musl build's allocator (128 KiB and
/// more are mapped apart), so its pages cost memory only once a read fills them.
const COPY_BUF: usize = 128 << 10;

/// The pipe between the workload (and the launcher's own messages) and the log.
pub struct LogCap {
    /// What the limit line tells the reader to run (`warren rm NAME`).
    rm: String,
    /// The log itself, as the launcher's standard output was before the pipe.
    log: File,
    /// The pipe's read end, until the copy starts.
    reader: Option<OwnedFd>,
    copier: Option<std::thread::JoinHandle<()>>,
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
        copier: None,
    }))
}

impl LogCap {
    /// Once the environment runs (threads are allowed again): copy in the background.
    pub fn start(&mut self) {
        let (Some(reader), Ok(log)) = (self.reader.take(), self.log.try_clone()) else {
            return;
        };
        let rm = self.rm.clone();
        // A small stack and no heap in the loop: every live environment's launcher keeps this
        // thread, so it should cost little more than its kernel task (no malloc arena of its
        // own, a few pages of stack).
        let copier = std::thread::Builder::new()
            .name("warren-log".into())
            .stack_size(COPIER_STACK)
            .spawn(move || copy(reader, log, LOG_MAX, &rm));
        match copier {
            Ok(t) => self.copier = Some(t),
            Err(e) => {
                // Without it the workload would block once the pipe is full: say so in the log.
                let _ = writeln!(
                    self.log,
                    "warren: cannot start the log copier ({e}): output beyond the pipe's buffer \
                     will block the environment"
                );
            }
        }
    }
}

impl Drop for LogCap {
    /// Put the log back on standard output and error (the launcher's last messages go straight
    /// to it), which closes the launcher's ends of the pipe; the copy then reaches the end of
    /// what the environment wrote, and is waited for.
    fn drop(&mut self) {
        let _ = rustix::stdio::dup2_stdout(&self.log);
        let _ = rustix::stdio::dup2_stderr(&self.log);
        if let Some(reader) = self.reader.take() {
            // The launch failed before the copy started: what is in the pipe is the launcher's.
            if let Ok(log) = self.log.try_clone() {
                copy(reader, log, LOG_MAX, &self.rm);
            }
        }
        if let Some(t) = self.copier.take() {
            // Everything that held the pipe has ended with the environment; a helper the
            // launcher started that still held it would keep the copy waiting, so the wait is
            // bounded.
            let until = std::time::Instant::now() + std::time::Duration::from_secs(5);
            while !t.is_finished() && std::time::Instant::now() < until {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            if t.is_finished() {
                let _ = t.join();
            }
        }
    }
}

/// Copy `reader` into `log` (opened for appending) until the end of the pipe, keeping the file
/// at most `max` bytes long plus the one line that says the limit was reached (and that `rm`
/// deletes the log).
fn copy(reader: OwnedFd, mut log: File, max: u64, rm: &str) {
    let mut len = log.metadata().map(|m| m.len()).unwrap_or(0);
    // Neither zeroed nor on the stack (whose probes touch every page of a large frame): only
    // the pages a read fills are touched, so the copier of an environment that writes little
    // keeps a few KiB, not the whole buffer, for as long as the environment lives (a 32 KiB
    // stack buffer cost each idle launcher 40 KiB).
    let mut space: Vec<u8> = Vec::with_capacity(COPY_BUF);
    loop {
        let buf = match rustix::io::read(&reader, space.spare_capacity_mut()) {
            Ok(([], _)) => return,
            Ok((filled, _)) => filled,
            Err(rustix::io::Errno::INTR) => continue,
            Err(_) => return,
        };
        let n = buf.len();
        if len >= max {
            continue;
        }
        let take = usize::try_from(max - len).map_or(n, |room| n.min(room));
        if log.write_all(&buf[..take]).is_err() {
            // A full file system: drop the output rather than block the environment.
            len = max;
            continue;
        }
        len += take as u64;
        if len >= max {
            let _ = log.write_all(
                format!(
                    "\nwarren: the log reached its limit of {max} bytes: further output of this \
                     environment is discarded ({rm} deletes the log)\n"
                )
                .as_bytes(),
            );
        }
    }
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
