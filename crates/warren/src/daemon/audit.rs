//! The daemon's audit log: JSON lines appended to one file that rotates at a size limit.
//!
//! When the file would pass `max_size` bytes it is renamed `PATH.1` (older files shift up to
//! `PATH.KEEP`, the oldest is deleted) and a new file begins. The first line of every new file
//! is a `rotate` record that says what was deleted, if anything, so nothing disappears without
//! a trace; records that could not be written (a full disk) are counted and the count is
//! written with the next record that succeeds. Each record is written with one `write` to the
//! file, unbuffered (the kernel's rate limit keeps them few), so a failure is seen, and
//! counted, for the record it concerns, and nothing written is held in a buffer that a
//! rotation or an exit could drop. The disk the log can take is bounded by
//! `max_size × (keep + 1)` whatever the environments do.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;

/// The audit log.
pub(super) struct AuditLog {
    path: PathBuf,
    file: Option<File>,
    size: u64,
    max_size: u64,
    keep: u32,
    /// Records lost since the last one written (write errors).
    lost: u64,
    /// `lost` when it was last warned about (one warning per new loss, not one per turn).
    warned: u64,
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
            file: Some(file),
            size,
            max_size: max_size.max(4096),
            keep,
            lost: 0,
            warned: 0,
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
            let note = SelfRecord {
                at,
                env: "-",
                op: "audit",
                handle: None,
                target: None,
                code: "lost",
                reason: format!(
                    "{} audit records could not be written (write errors)",
                    self.lost
                ),
            };
            // The count stays until a note carrying it is written.
            if serde_json::to_string(&note).is_ok_and(|l| self.append(at, &l)) {
                self.lost = 0;
                self.warned = 0;
            }
        }
        if !self.append(at, &line) {
            self.lost += 1;
        }
    }

    /// Write one line (one `write`); false when it could not be written.
    fn append(&mut self, at: u64, line: &str) -> bool {
        let need = line.len() as u64 + 1;
        if self.size + need > self.max_size && self.size > 0 {
            self.rotate(at);
        }
        let Some(f) = self.file.as_mut() else {
            return false;
        };
        let mut buf = Vec::with_capacity(line.len() + 1);
        buf.extend_from_slice(line.as_bytes());
        buf.push(b'\n');
        match f.write_all(&buf) {
            Ok(()) => {
                self.size += need;
                true
            }
            Err(_) => false,
        }
    }

    /// Shift the files up by one, deleting the oldest, and begin a new file whose first line
    /// says what was deleted.
    fn rotate(&mut self, at: u64) {
        self.file = None;
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
            Ok(f) => self.file = Some(f),
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
            if f.write_all(format!("{l}\n").as_bytes()).is_ok() {
                self.size += l.len() as u64 + 1;
            }
        }
    }

    /// Called once a turn's records are written: warns when more could not be.
    pub(super) fn flush(&mut self) {
        if self.lost > self.warned {
            self.warned = self.lost;
            tracing::warn!(
                "cannot write the audit log {}: {} records not written yet",
                self.path.display(),
                self.lost
            );
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

    /// Records that cannot be written (a full disk: `/dev/full` refuses every write) are
    /// counted as they fail, not buffered and then dropped uncounted; the count is written
    /// with the next record that can be. Positive control: a log that can be written loses
    /// nothing.
    #[test]
    fn records_that_cannot_be_written_are_counted() {
        let mut log = AuditLog::open(Path::new("/dev/full"), 1 << 20, 0).unwrap();
        for n in 0..5 {
            log.write(
                0,
                &R {
                    n,
                    pad: String::new(),
                },
            );
        }
        log.flush();
        assert_eq!(log.lost, 5, "each record counted as it failed");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let mut ok = AuditLog::open(&path, 1 << 20, 0).unwrap();
        ok.lost = 5;
        ok.write(
            1,
            &R {
                n: 9,
                pad: String::new(),
            },
        );
        ok.flush();
        assert_eq!(ok.lost, 0);
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert_eq!(lines[0]["code"], "lost");
        assert!(
            lines[0]["reason"]
                .as_str()
                .unwrap()
                .starts_with("5 audit records"),
            "{text}"
        );
        assert_eq!(lines[1]["n"], 9);
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
