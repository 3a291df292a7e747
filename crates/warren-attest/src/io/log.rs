//! The append-only event log: one launch record per line, in the TCG Canonical Event Log (CEL)
//! JSON encoding, under `<state>/attest/events.jsonl`.
//!
//! Every record carries the SHA-256 of its content's canonical bytes; the root of trust's
//! register is extended with it (`reg = SHA-256(reg || digest)`, starting from 32 zero bytes),
//! exactly as a TPM extends a SHA-256 NV extend index or PCR. Appending takes an exclusive
//! `flock` on `<state>/attest/lock`, so the launchers of parallel launches and the kernel
//! daemon never interleave records, and the record and its extension happen under one lock.
//!
//! Durability is a group commit across processes: the record is written and extended under
//! the lock, the lock is released, and only then is the log made durable ([`EventLog::append`]
//! returns after that, so a launch `execve`s only once its record is on disk). One
//! `fdatasync` covers every record written before it started, so concurrent launches share
//! them: under a second lock (`<state>/attest/sync.lock`, whose content says how far which log
//! file, by inode and birth time, is known durable), an appender whose record already lies below that
//! offset returns at once; otherwise it notes the log's length, `fdatasync`s, and publishes
//! that length.

use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::measure::LaunchContent;
use crate::root::{RootError, RootOfTrust};

pub use crate::evidence::record::{
    CONTENT_TYPE, DigestEntry, NV_INDEX, Record, content_digest, extend, replay,
};

/// Why the log could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// A file of the log could not be opened, read or written.
    #[error("event log {}: {what}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What was being done.
        what: &'static str,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A line of the log is not a record.
    #[error("event log {}: line {line} is not a record", path.display())]
    Malformed {
        /// The file.
        path: PathBuf,
        /// The 1-based line.
        line: usize,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// A line of the log is a record without content (a redacted record belongs in quotes
    /// answered to environments, never in the log).
    #[error("event log {}: line {line} is a record without content", path.display())]
    NoContent {
        /// The file.
        path: PathBuf,
        /// The 1-based line.
        line: usize,
    },
    /// The root of trust refused to extend or read.
    #[error("root of trust")]
    Root(#[from] RootError),
}

/// `text` padded with spaces to a fixed width and ended with a newline, so that a shorter value
/// written over a longer one in place leaves no trailing digits.
fn padded(text: &str) -> String {
    format!("{text:<94}\n")
}

/// The event log of one state directory.
#[derive(Debug, Clone)]
pub struct EventLog {
    dir: PathBuf,
}

/// An exclusive hold on the attestation directory (the log, its register and the key).
#[derive(Debug)]
pub struct LogLock {
    _file: File,
}

impl EventLog {
    /// The log under `<state>/attest` (created, mode 0700, when first written).
    pub fn new(state_dir: &Path) -> Self {
        EventLog {
            dir: state_dir.join("attest"),
        }
    }

    /// The attestation directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The log file.
    pub fn path(&self) -> PathBuf {
        self.dir.join("events.jsonl")
    }

    fn io(&self, path: PathBuf, what: &'static str) -> impl FnOnce(io::Error) -> LogError {
        move |source| LogError::Io { path, what, source }
    }

    /// Creates the directory (0700) if needed.
    pub fn ensure_dir(&self) -> Result<(), LogError> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(self.io(self.dir.clone(), "create the directory"))
    }

    /// Takes the exclusive lock.
    pub fn lock(&self) -> Result<LogLock, LogError> {
        self.ensure_dir()?;
        let path = self.dir.join("lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(self.io(path.clone(), "open the lock"))?;
        rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive)
            .map_err(|e| self.io(path, "lock")(e.into()))?;
        Ok(LogLock { _file: file })
    }

    /// Every record, in order. A missing log is an empty one.
    pub fn records(&self) -> Result<Vec<Record>, LogError> {
        let path = self.path();
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(self.io(path, "open")(e)),
        };
        let mut bytes = Vec::new();
        io::Read::read_to_end(&mut &file, &mut bytes).map_err(self.io(path.clone(), "read"))?;
        // A last line without its newline is a record cut short (a crash or a full disk
        // during its write). Its extension would have followed the whole line, so it was never
        // extended: it is not part of the log (the next append removes it).
        let whole = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        let mut out = Vec::new();
        for (i, line) in bytes[..whole].split(|b| *b == b'\n').enumerate() {
            if line.is_empty() {
                continue;
            }
            let rec: Record =
                serde_json::from_slice(line).map_err(|source| LogError::Malformed {
                    path: path.clone(),
                    line: i + 1,
                    source,
                })?;
            if rec.content.is_none() {
                return Err(LogError::NoContent {
                    path: path.clone(),
                    line: i + 1,
                });
            }
            out.push(rec);
        }
        Ok(out)
    }

    /// Appends a record for `content` and extends `root` with its digest, under the lock, then
    /// makes the record durable (a group commit, see the module documentation) before
    /// returning. If the extension fails the record is removed again, so the log never runs
    /// ahead of the register.
    pub fn append(
        &self,
        content: LaunchContent,
        root: &mut dyn RootOfTrust,
    ) -> Result<Record, LogError> {
        let (record, file, end) = self.append_unsynced(content, root)?;
        self.make_durable(&file, end)?;
        Ok(record)
    }

    /// The locked part of [`EventLog::append`]: write the record and extend the root. Returns
    /// the log file and the end offset of the record, for [`EventLog::make_durable`].
    fn append_unsynced(
        &self,
        content: LaunchContent,
        root: &mut dyn RootOfTrust,
    ) -> Result<(Record, File, u64), LogError> {
        let _lock = self.lock()?;
        let path = self.path();
        let mut record = Record::launch(0, content);
        let digest = record.sha256().unwrap_or([0; 32]);
        let mut anew = false;
        loop {
            let mut file = OpenOptions::new()
                .create(true)
                .read(true)
                .append(true)
                .open(&path)
                .map_err(self.io(path.clone(), "open"))?;
            let end_before = file
                .seek(SeekFrom::End(0))
                .map_err(self.io(path.clone(), "seek"))?;
            let start = self.cut_torn_tail(&file, end_before)?;
            let start = self.cut_unextended_tail(&file, start, root)?;
            let recnum = self.count_locked(start)?;
            record.recnum = recnum;
            let mut line = serde_json::to_vec(&record).unwrap_or_default();
            line.push(b'\n');
            if let Err(e) = file.write_all(&line) {
                // Part of the line may be written (a full disk): remove it, so the log never
                // holds more than was extended.
                let _ = file.set_len(start);
                self.forget_synced_beyond(&file, start);
                return Err(self.io(path.clone(), "append")(e));
            }
            if let Err(e) = root.extend_after(&digest, recnum) {
                let _ = file.set_len(start);
                // A concurrent group sync may have counted the bytes just removed as durable.
                self.forget_synced_beyond(&file, start);
                if matches!(e, RootError::AnchorReset) && !anew {
                    // The TPM was reset (a reboot) since the last record: the log starts
                    // again, the old one kept beside it, and the record is appended anew.
                    drop(file);
                    self.start_anew_locked()?;
                    anew = true;
                    continue;
                }
                return Err(e.into());
            }
            let end = start + line.len() as u64;
            // The count file is a hint (checked against the log's length), overwritten in
            // place.
            let count = self.dir.join("events.count");
            if let Ok(f) = OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&count)
            {
                let _ =
                    rustix::io::pwrite(&f, padded(&format!("{} {end}", recnum + 1)).as_bytes(), 0);
            }
            return Ok((record, file, end));
        }
    }

    /// Moves the log aside as `events.jsonl.before-reset.N` (the lowest free N, from 1) and
    /// forgets its record count, so that the next record starts a new log at 0: for a root
    /// whose register restarted from zero ([`RootError::AnchorReset`]). Call with the lock
    /// held. Returns where the old log went (`None`: there was none).
    pub fn start_anew_locked(&self) -> Result<Option<PathBuf>, LogError> {
        let path = self.path();
        if !path.exists() {
            return Ok(None);
        }
        let mut n = 1u32;
        let aside = loop {
            let p = self.dir.join(format!("events.jsonl.before-reset.{n}"));
            if !p.exists() {
                break p;
            }
            n += 1;
        };
        std::fs::rename(&path, &aside).map_err(self.io(path, "move aside"))?;
        let count = self.dir.join("events.count");
        match std::fs::remove_file(&count) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(self.io(count, "remove")(e)),
        }
        Ok(Some(aside))
    }

    fn sync_lock(&self) -> Result<File, LogError> {
        self.ensure_dir()?;
        let path = self.dir.join("sync.lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(self.io(path.clone(), "open the sync lock"))?;
        rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive)
            .map_err(|e| self.io(path, "lock")(e.into()))?;
        Ok(file)
    }

    /// The identity of a log file, as the sync lock records it: inode and birth time (inode
    /// numbers are reused once a file is deleted; the pair is not), and its length. The
    /// identity is `None` where the filesystem keeps no birth time: then every append syncs on
    /// its own. Read with `statx(2)` itself: the standard library's `Metadata::created` asks
    /// for the birth time only on glibc, and Warren's binaries are musl programs.
    fn identity(file: &File) -> std::io::Result<(Option<String>, u64)> {
        use rustix::fs::{AtFlags, StatxFlags, statx};
        let st = statx(
            file,
            "",
            AtFlags::EMPTY_PATH,
            StatxFlags::INO | StatxFlags::SIZE | StatxFlags::BTIME,
        )?;
        let id = StatxFlags::from_bits_retain(st.stx_mask)
            .contains(StatxFlags::BTIME)
            .then(|| {
                format!(
                    "{}.{}.{}",
                    st.stx_ino, st.stx_btime.tv_sec, st.stx_btime.tv_nsec
                )
            });
        Ok((id, st.stx_size))
    }

    /// `(identity of the log file, offset)` up to which the log is known durable.
    fn synced(lock: &File) -> Option<(String, u64)> {
        let mut buf = [0u8; 128];
        let n = rustix::io::pread(lock, &mut buf, 0).ok()?;
        let s = std::str::from_utf8(&buf[..n]).ok()?;
        let mut it = s.split_whitespace();
        let id = it.next()?.to_owned();
        let offset = it.next()?.parse().ok()?;
        Some((id, offset))
    }

    fn set_synced(lock: &File, id: &str, offset: u64) {
        // Overwritten in place, padded to a fixed width, never truncated: on ext4 a truncated
        // and rewritten file is flushed to disk when it is closed (`auto_da_alloc`), which
        // would put a write-out on every launch's path.
        let _ = rustix::io::pwrite(lock, padded(&format!("{id} {offset}")).as_bytes(), 0);
    }

    /// Makes the log durable up to `end` (the end of a record just written), sharing one
    /// `fdatasync` with every appender whose record it covers. Returns whether this call ran
    /// the `fdatasync` itself (`false`: a concurrent one already covered the record).
    pub fn make_durable(&self, file: &File, end: u64) -> Result<bool, LogError> {
        let path = self.path();
        let lock = self.sync_lock()?;
        let (id, len) = Self::identity(file).map_err(self.io(path.clone(), "stat"))?;
        if let (Some(id), Some((synced_id, offset))) = (&id, Self::synced(&lock)) {
            if *id == synced_id && offset >= end {
                return Ok(false);
            }
        }
        // Everything written before this point is in the page cache, so one fdatasync makes
        // all of it durable: the records of appenders still waiting for this lock included.
        file.sync_data().map_err(self.io(path, "sync"))?;
        if let Some(id) = id {
            Self::set_synced(&lock, &id, len.max(end));
        }
        Ok(true)
    }

    fn forget_synced_beyond(&self, file: &File, start: u64) {
        let (Ok(lock), Ok((id, _))) = (self.sync_lock(), Self::identity(file)) else {
            return;
        };
        if let (Some(id), Some((synced_id, offset))) = (id, Self::synced(&lock)) {
            if id == synced_id && offset > start {
                Self::set_synced(&lock, &id, start);
            }
        }
    }

    /// Removes what a crash during an append can leave at the end of the log, a record cut
    /// short or a whole record never extended ([`Self::cut_torn_tail`],
    /// [`Self::cut_unextended_tail`]), so that the log replays to `root`'s register. Quotes
    /// call it with the lock held before reading the log; appends do the same themselves.
    pub fn repair_locked(&self, root: &mut dyn RootOfTrust) -> Result<(), LogError> {
        let path = self.path();
        let file = match OpenOptions::new().read(true).write(true).open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(self.io(path, "open")(e)),
        };
        let len = file
            .metadata()
            .map_err(self.io(path.clone(), "stat"))?
            .len();
        let len = self.cut_torn_tail(&file, len)?;
        self.cut_unextended_tail(&file, len, root)?;
        Ok(())
    }

    /// Removes a record cut short at the end of the log (`len` bytes long): the bytes after its
    /// last newline, which a crash or a full disk left during a write and which were never
    /// extended. Returns the log's length afterwards. Call with the lock held.
    fn cut_torn_tail(&self, file: &File, len: u64) -> Result<u64, LogError> {
        if len == 0 {
            return Ok(0);
        }
        let mut last = [0u8; 1];
        rustix::io::pread(file, &mut last, len - 1)
            .map_err(|e| self.io(self.path(), "read")(e.into()))?;
        if last[0] == b'\n' {
            return Ok(len);
        }
        let bytes = std::fs::read(self.path()).map_err(self.io(self.path(), "read"))?;
        let keep = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1) as u64;
        file.set_len(keep)
            .map_err(self.io(self.path(), "truncate"))?;
        self.forget_synced_beyond(file, keep);
        Ok(keep)
    }

    /// Removes a whole last record that was never extended: a launcher killed between the
    /// record's write and its extension (the TPM agent call is the longest step between them)
    /// left the log one record ahead of the register. Looked at only when the count file, which
    /// every append rewrites after its extension, does not describe the log's `len` bytes (so
    /// it costs nothing on the usual path); then the record goes if the log without it replays
    /// to the register and the log with it does not. Returns the log's length afterwards. Call
    /// with the lock held, after [`Self::cut_torn_tail`].
    fn cut_unextended_tail(
        &self,
        file: &File,
        len: u64,
        root: &mut dyn RootOfTrust,
    ) -> Result<u64, LogError> {
        if len == 0 || self.count_hint(len).is_some() {
            return Ok(len);
        }
        let records = self.records()?;
        let digests: Option<Vec<[u8; 32]>> = records.iter().map(Record::sha256).collect();
        let (Some(digests), Ok(register)) = (digests, root.read()) else {
            return Ok(len);
        };
        let Some((_, earlier)) = digests.split_last() else {
            return Ok(len);
        };
        // An unwritten TPM anchor under a log is a TPM reset, which the extension handles
        // (the log is moved aside), not a missing extension.
        let reset = register == [0; 32] && root.kind() == crate::RootKind::Tpm;
        if reset || replay(digests.iter()) == register || replay(earlier.iter()) != register {
            return Ok(len);
        }
        let bytes = std::fs::read(self.path()).map_err(self.io(self.path(), "read"))?;
        let body = &bytes[..bytes.len().saturating_sub(1)];
        let keep = body.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1) as u64;
        file.set_len(keep)
            .map_err(self.io(self.path(), "truncate"))?;
        self.forget_synced_beyond(file, keep);
        Ok(keep)
    }

    /// The record count the count file gives for a log of `len` bytes, if it describes one of
    /// that length.
    fn count_hint(&self, len: u64) -> Option<u64> {
        let s = std::fs::read_to_string(self.dir.join("events.count")).ok()?;
        let mut it = s.split_whitespace().map(|v| v.parse::<u64>());
        match (it.next(), it.next()) {
            (Some(Ok(n)), Some(Ok(l))) if l == len => Some(n),
            _ => None,
        }
    }

    /// How many records a log of `len` bytes holds: from the count file when it matches the
    /// length, else by counting lines.
    fn count_locked(&self, len: u64) -> Result<u64, LogError> {
        if len == 0 {
            return Ok(0);
        }
        if let Some(n) = self.count_hint(len) {
            return Ok(n);
        }
        let bytes = std::fs::read(self.path()).map_err(self.io(self.path(), "read"))?;
        Ok(bytes.iter().filter(|b| **b == b'\n').count() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measure::{ImageMeasurement, LaunchConfig};

    fn content(name: &str) -> LaunchContent {
        let config = LaunchConfig {
            memory: None,
            pids: Some(1),
            cpu_micros: None,
            tmpfs_size: 1,
            seccomp_profile: None,
            capabilities: vec![],
            no_new_privs: true,
            landlock_abi: None,
            namespaces: vec![],
            network: "none".into(),
            degraded: vec![],
            mounts: vec![],
            writable_root: None,
            etc_files: None,
        };
        LaunchContent {
            event: "launch".into(),
            name: name.into(),
            image: ImageMeasurement {
                kind: "rootfs".into(),
                digest: "blake3:00".into(),
                format: crate::measure::TREE_FORMAT.into(),
                manifest_digest: None,
                digest_source: Some("walk".into()),
            },
            command: vec!["/bin/true".into()],
            env: vec![],
            config_digest: config.digest(),
            config,
            uid_base: 0,
            uid_count: 1,
            launched_at: 0,
            spawn: None,
        }
    }

    /// A root that refuses to extend.
    struct Refusing;

    impl RootOfTrust for Refusing {
        fn kind(&self) -> crate::RootKind {
            crate::RootKind::Software
        }
        fn extend(&mut self, _: &[u8; 32]) -> Result<(), RootError> {
            Err(RootError::Tpm("refused".into()))
        }
        fn read(&mut self) -> Result<[u8; 32], RootError> {
            Ok([0; 32])
        }
        fn quote(&mut self, _: &[u8; 32]) -> Result<crate::root::Evidence, RootError> {
            Err(RootError::Tpm("refused".into()))
        }
        fn ak_spki(&mut self) -> Result<Vec<u8>, RootError> {
            Err(RootError::Tpm("refused".into()))
        }
    }

    #[test]
    fn one_fdatasync_covers_every_record_written_before_it() {
        let dir = tempfile::tempdir().unwrap();
        let log = EventLog::new(dir.path());
        let mut root = crate::root::SoftwareRoot::new(log.dir());
        // Two launches write their records while a third holds the sync lock (its fdatasync
        // running): both then wait for it.
        let held = log.sync_lock().unwrap();
        let (r1, f1, end1) = log.append_unsynced(content("a"), &mut root).unwrap();
        let (r2, f2, end2) = log.append_unsynced(content("b"), &mut root).unwrap();
        assert_eq!((r1.recnum, r2.recnum), (0, 1));
        drop(held);
        // The first to get the lock syncs, and its fdatasync covers the second record too.
        assert!(log.make_durable(&f1, end1).unwrap(), "the first one syncs");
        assert!(
            !log.make_durable(&f2, end2).unwrap(),
            "the second is covered"
        );
        // Positive control: a record written after that sync is not covered.
        let (_, f3, end3) = log.append_unsynced(content("c"), &mut root).unwrap();
        assert!(
            log.make_durable(&f3, end3).unwrap(),
            "a later record syncs again"
        );
        assert_eq!(log.records().unwrap().len(), 3);
    }

    #[test]
    fn a_removed_record_is_not_counted_as_durable() {
        let dir = tempfile::tempdir().unwrap();
        let log = EventLog::new(dir.path());
        let mut root = crate::root::SoftwareRoot::new(log.dir());
        let (_, f1, end1) = log.append_unsynced(content("a"), &mut root).unwrap();
        // A failed extension removes its record; pretend a concurrent sync counted it.
        let held = log.sync_lock().unwrap();
        let id = EventLog::identity(&f1).unwrap().0.expect("a birth time");
        EventLog::set_synced(&held, &id, end1 + 100_000);
        drop(held);
        assert!(log.append(content("b"), &mut Refusing).is_err());
        // The next record lands where the removed one was, and must be synced.
        let (_, f2, end2) = log.append_unsynced(content("c"), &mut root).unwrap();
        assert!(end2 <= end1 + 100_000);
        assert!(
            log.make_durable(&f2, end2).unwrap(),
            "not taken for covered"
        );
        assert_eq!(log.records().unwrap().len(), 2);
    }

    /// A record cut short by a crash or a full disk during its write was never extended (the
    /// extension follows the whole line): quotes leave it out, and the next append removes it
    /// instead of writing after it (which made every later quote fail on a malformed line).
    #[test]
    fn a_record_cut_short_is_left_out_and_removed_by_the_next_append() {
        let dir = tempfile::tempdir().unwrap();
        let log = EventLog::new(dir.path());
        let mut root = crate::root::SoftwareRoot::new(log.dir());
        let first = log.append(content("a"), &mut root).unwrap();
        // Control: an intact log reads back whole.
        assert_eq!(log.records().unwrap(), vec![first.clone()]);
        let line = std::fs::read(log.path()).unwrap();
        let mut f = OpenOptions::new().append(true).open(log.path()).unwrap();
        f.write_all(&line[..line.len() / 2]).unwrap();
        drop(f);
        assert_eq!(
            log.records().unwrap(),
            vec![first.clone()],
            "torn tail left out"
        );
        let second = log.append(content("b"), &mut root).unwrap();
        assert_eq!(second.recnum, 1);
        let records = log.records().unwrap();
        assert_eq!(records, vec![first, second]);
        let digests: Vec<[u8; 32]> = records.iter().map(|r| r.sha256().unwrap()).collect();
        assert_eq!(
            crate::evidence::record::replay(digests.iter()),
            root.read().unwrap(),
            "the log replays to the register"
        );
        let text = std::fs::read_to_string(log.path()).unwrap();
        assert_eq!(text.lines().count(), 2, "the torn bytes are gone: {text}");
    }

    /// A whole record written but never extended (the launcher killed between the record's
    /// write and its extension, e.g. during the TPM agent call) put the log one record ahead of
    /// the register, and every later quote failed `log-replay`. The next append removes it.
    #[test]
    fn a_record_that_was_never_extended_is_removed_by_the_next_append() {
        let dir = tempfile::tempdir().unwrap();
        let log = EventLog::new(dir.path());
        let mut root = crate::root::SoftwareRoot::new(log.dir());
        let first = log.append(content("a"), &mut root).unwrap();
        // Control: a count file lost after a good append removes nothing.
        std::fs::remove_file(log.dir().join("events.count")).unwrap();
        let second = log.append(content("b"), &mut root).unwrap();
        assert_eq!(log.records().unwrap(), vec![first.clone(), second.clone()]);
        // The crash: a whole record on disk, its extension never made.
        let mut orphan = second.clone();
        orphan.recnum = 2;
        orphan = Record::launch(orphan.recnum, content("orphan"));
        let mut line = serde_json::to_vec(&orphan).unwrap();
        line.push(b'\n');
        OpenOptions::new()
            .append(true)
            .open(log.path())
            .unwrap()
            .write_all(&line)
            .unwrap();
        let third = log.append(content("c"), &mut root).unwrap();
        assert_eq!(third.recnum, 2, "takes the orphan's place");
        let records = log.records().unwrap();
        assert_eq!(records, vec![first, second, third]);
        let digests: Vec<[u8; 32]> = records.iter().map(|r| r.sha256().unwrap()).collect();
        assert_eq!(
            crate::evidence::record::replay(digests.iter()),
            root.read().unwrap(),
            "the log replays to the register"
        );
    }

    #[test]
    fn a_new_log_file_is_not_covered_by_the_old_ones_sync() {
        let dir = tempfile::tempdir().unwrap();
        let log = EventLog::new(dir.path());
        let mut root = crate::root::SoftwareRoot::new(log.dir());
        log.append(content("a"), &mut root).unwrap();
        log.append(content("b"), &mut root).unwrap();
        std::fs::remove_file(log.path()).unwrap();
        std::fs::remove_file(log.dir().join("events.count")).unwrap();
        let (_, f, end) = log.append_unsynced(content("c"), &mut root).unwrap();
        assert!(log.make_durable(&f, end).unwrap());
    }
}
