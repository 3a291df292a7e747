//! The daemon's audit log: JSON lines appended to one file that rotates at a size limit.
//!
//! When the file would pass `max_size` bytes it is renamed `PATH.1` (older files shift up to
//! `PATH.KEEP`, the oldest is deleted) and a new file begins. The first line of every new file
//! is a `rotate` record that says what was deleted, if anything, so nothing disappears without
//! a trace; records that could not be written (a full disk) are counted and the count is
//! written with the next record that succeeds. The disk the log can take is bounded by
//! `max_size × (keep + 1)` whatever the environments do.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;

/// The audit log.
pub(super) struct AuditLog {
    path: PathBuf,
    file: Option<BufWriter<File>>,
    size: u64,
    max_size: u64,
    keep: u32,
    /// Records lost since the last one written (write errors).
    lost: u64,
    /// Files deleted by rotation, and the bytes they held, since the daemon started.
    deleted_files: u64,
    deleted_bytes: u64,
}

/// A record the log writes about itself.
#[derive(Serialize)]
struct SelfRecord<'a> {
    at: u64,
    env: &'a str,
    op: &'a str,
    handle: Option<u32>,
    target: Option<String>,
    code: &'a str,
    reason: String,
}

fn rotated(path: &Path, n: u32) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

impl AuditLog {
    /// Open (append to) `path`, rotating at `max_size` bytes and keeping `keep` old files.
    pub(super) fn open(path: &Path, max_size: u64, keep: u32) -> std::io::Result<AuditLog> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        let size = file.metadata()?.len();
        Ok(AuditLog {
            path: path.to_owned(),
            file: Some(BufWriter::new(file)),
            size,
            max_size: max_size.max(4096),
            keep,
            lost: 0,
            deleted_files: 0,
            deleted_bytes: 0,
        })
    }

    /// Append one record (anything that serializes to a JSON object).
    pub(super) fn write<T: Serialize>(&mut self, at: u64, rec: &T) {
        let Ok(line) = serde_json::to_string(rec) else {
            self.lost += 1;
            return;
        };
        if self.lost > 0 {
            let lost = self.lost;
            self.lost = 0;
            let note = SelfRecord {
                at,
                env: "-",
                op: "audit",
                handle: None,
                target: None,
                code: "lost",
                reason: format!("{lost} audit records could not be written (write errors)"),
            };
            if let Ok(l) = serde_json::to_string(&note) {
                self.append(at, &l);
            }
        }
        self.append(at, &line);
    }

    fn append(&mut self, at: u64, line: &str) {
        let need = line.len() as u64 + 1;
        if self.size + need > self.max_size && self.size > 0 {
            self.rotate(at);
        }
        let Some(f) = self.file.as_mut() else {
            self.lost += 1;
            return;
        };
        match writeln!(f, "{line}") {
            Ok(()) => self.size += need,
            Err(_) => self.lost += 1,
        }
    }

    /// Shift the files up by one, deleting the oldest, and begin a new file whose first line
    /// says what was deleted.
    fn rotate(&mut self, at: u64) {
        if let Some(mut f) = self.file.take() {
            let _ = f.flush();
        }
        let mut deleted = None;
        if self.keep == 0 {
            deleted = Some(self.size);
            let _ = std::fs::remove_file(&self.path);
        } else {
            let oldest = rotated(&self.path, self.keep);
            if let Ok(m) = std::fs::metadata(&oldest) {
                deleted = Some(m.len());
                let _ = std::fs::remove_file(&oldest);
            }
            for n in (1..self.keep).rev() {
                let _ = std::fs::rename(rotated(&self.path, n), rotated(&self.path, n + 1));
            }
            let _ = std::fs::rename(&self.path, rotated(&self.path, 1));
        }
        if let Some(bytes) = deleted {
            self.deleted_files += 1;
            self.deleted_bytes += bytes;
        }
        self.size = 0;
        match std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
        {
            Ok(f) => self.file = Some(BufWriter::new(f)),
            Err(e) => {
                tracing::warn!("cannot reopen the audit log {}: {e}", self.path.display());
                return;
            }
        }
        let reason = match deleted {
            Some(bytes) => format!(
                "the audit log reached {} bytes and rotated; the oldest file ({bytes} bytes) was \
                 deleted ({} files, {} bytes deleted since the kernel started)",
                self.max_size, self.deleted_files, self.deleted_bytes
            ),
            None => format!(
                "the audit log reached {} bytes and rotated; nothing was deleted",
                self.max_size
            ),
        };
        let note = SelfRecord {
            at,
            env: "-",
            op: "audit",
            handle: None,
            target: None,
            code: "rotate",
            reason,
        };
        if let (Ok(l), Some(f)) = (serde_json::to_string(&note), self.file.as_mut()) {
            if writeln!(f, "{l}").is_ok() {
                self.size += l.len() as u64 + 1;
            }
        }
    }

    /// Push what is buffered to the file.
    pub(super) fn flush(&mut self) {
        if let Some(f) = self.file.as_mut() {
            if f.flush().is_err() {
                // BufWriter keeps what it could not write and retries on the next flush.
                tracing::warn!("cannot write the audit log {}", self.path.display());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    struct R {
        n: usize,
        pad: String,
    }

    #[test]
    fn rotates_keeps_n_files_and_says_what_it_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let mut log = AuditLog::open(&path, 4096, 2).unwrap();
        for n in 0..1000 {
            log.write(
                n as u64,
                &R {
                    n,
                    pad: "x".repeat(100),
                },
            );
        }
        log.flush();
        let total: u64 = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().len())
            .sum();
        // Bounded: at most keep + 1 files of at most max_size each.
        assert!(total <= 3 * 4096, "{total} bytes on disk");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names.len(), 3, "{names:?}");
        assert!(!path.with_extension("jsonl.3").exists());
        let text = std::fs::read_to_string(&path).unwrap();
        let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!(first["code"], "rotate", "{first}");
        assert!(
            first["reason"].as_str().unwrap().contains("was deleted"),
            "{first}"
        );
        // The last record written is in the current file.
        let last: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
        assert_eq!(last["n"], 999);
    }

    #[test]
    fn a_small_log_does_not_rotate() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let mut log = AuditLog::open(&path, 1 << 20, 2).unwrap();
        for n in 0..10 {
            log.write(
                0,
                &R {
                    n,
                    pad: String::new(),
                },
            );
        }
        log.flush();
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 10);
        assert!(!dir.path().join("audit.jsonl.1").exists());
    }
}
