//! What federation keeps on disk, so that a daemon restart loses nothing and repeats nothing:
//!
//! * the **outbox** (`<state>/link/outbox.log`): every batch sealed for another host, kept from
//!   before the senders are answered `ok` until the broker confirms it; the epoch; the next
//!   sequence number per destination host;
//! * the **inbox** (`<state>/link/inbox.log`): every message settled (delivered to a receiving
//!   environment or refused for good), written and synced before the environment sees it.
//!
//! Both are append-only journals of length-prefixed records (`len:u32 kind:u8 payload`), synced
//! with `fdatasync` once per kernel-loop turn ([`Journal::commit`]), replayed at start and then
//! rewritten compactly (a temporary file renamed over the old one). A torn last record (a crash
//! in the middle of a write) is ignored: it was never synced, so nobody was told about it.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use crate::inbox::{Inbox, Settlement, StreamId};

const EPOCH: u8 = 1;
const PUBLISH: u8 = 2;
const CONFIRM: u8 = 3;
const NEXT: u8 = 4;
const SETTLE: u8 = 10;
const DONE: u8 = 11;

/// A journal's I/O failure, with the file.
#[derive(Debug, thiserror::Error)]
#[error("cannot use the journal {path}")]
pub struct StoreError {
    /// The file.
    pub path: PathBuf,
    /// The failure.
    #[source]
    pub source: std::io::Error,
}

/// An append-only file of records.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    out: BufWriter<File>,
    dirty: bool,
    size: u64,
}

fn read_records(path: &Path) -> Result<Vec<(u8, Vec<u8>)>, StoreError> {
    let mut bytes = Vec::new();
    match File::open(path) {
        Ok(mut f) => {
            f.read_to_end(&mut bytes).map_err(|source| StoreError {
                path: path.to_owned(),
                source,
            })?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(StoreError {
                path: path.to_owned(),
                source,
            });
        }
    }
    let mut out = Vec::new();
    let mut rest = &bytes[..];
    while rest.len() >= 5 {
        let len = u32::from_be_bytes(rest[..4].try_into().expect("4 bytes")) as usize;
        if rest.len() < 4 + len || len == 0 {
            break; // a torn last record
        }
        out.push((rest[4], rest[5..4 + len].to_vec()));
        rest = &rest[4 + len..];
    }
    Ok(out)
}

impl Journal {
    /// Writes `records` into a fresh file that replaces `path` atomically, and opens it for
    /// appending.
    fn rewrite(path: &Path, records: &[(u8, Vec<u8>)]) -> Result<Journal, StoreError> {
        let err = |source| StoreError {
            path: path.to_owned(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(err)?;
        }
        let tmp = path.with_extension("tmp");
        let mut f = BufWriter::new(File::create(&tmp).map_err(err)?);
        let mut size = 0u64;
        for (kind, payload) in records {
            let len = (payload.len() + 1) as u32;
            f.write_all(&len.to_be_bytes()).map_err(err)?;
            f.write_all(&[*kind]).map_err(err)?;
            f.write_all(payload).map_err(err)?;
            size += 4 + u64::from(len);
        }
        let f = f.into_inner().map_err(|e| err(e.into_error()))?;
        f.sync_all().map_err(err)?;
        std::fs::rename(&tmp, path).map_err(err)?;
        if let Some(dir) = path.parent() {
            File::open(dir).and_then(|d| d.sync_all()).map_err(err)?;
        }
        let file = OpenOptions::new().append(true).open(path).map_err(err)?;
        Ok(Journal {
            path: path.to_owned(),
            out: BufWriter::with_capacity(256 * 1024, file),
            dirty: false,
            size,
        })
    }

    fn append(&mut self, kind: u8, payload: &[u8]) -> Result<(), StoreError> {
        let len = (payload.len() + 1) as u32;
        let r = self
            .out
            .write_all(&len.to_be_bytes())
            .and_then(|()| self.out.write_all(&[kind]))
            .and_then(|()| self.out.write_all(payload));
        r.map_err(|source| StoreError {
            path: self.path.clone(),
            source,
        })?;
        self.size += 4 + u64::from(len);
        self.dirty = true;
        Ok(())
    }

    /// Makes everything appended so far durable (one `fdatasync`), if anything was.
    pub fn commit(&mut self) -> Result<(), StoreError> {
        if !self.dirty {
            return Ok(());
        }
        let err = |source| StoreError {
            path: self.path.clone(),
            source,
        };
        self.out.flush().map_err(err)?;
        self.out.get_ref().sync_data().map_err(err)?;
        self.dirty = false;
        Ok(())
    }
}

fn str8(out: &mut Vec<u8>, s: &str) {
    out.push(s.len().min(255) as u8);
    out.extend_from_slice(&s.as_bytes()[..s.len().min(255)]);
}

struct Cursor<'a>(&'a [u8]);

impl Cursor<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        if self.0.len() < n {
            return None;
        }
        let (h, t) = self.0.split_at(n);
        self.0 = t;
        Some(h)
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_be_bytes(self.take(8)?.try_into().ok()?))
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }
    fn str8(&mut self) -> Option<String> {
        let n = *self.take(1)?.first()? as usize;
        String::from_utf8(self.take(n)?.to_vec()).ok()
    }
}

/// Batches sealed for other hosts and not yet confirmed by the broker.
#[derive(Debug)]
pub struct Outbox {
    journal: Journal,
    epoch: u64,
    next: BTreeMap<String, u64>,
    unconfirmed: BTreeMap<(String, u64), Vec<u8>>,
}

impl Outbox {
    /// Opens (or creates) the outbox at `path`: replays it and rewrites it compactly.
    pub fn open(path: &Path) -> Result<Outbox, StoreError> {
        let mut epoch = None;
        let mut next: BTreeMap<String, u64> = BTreeMap::new();
        let mut unconfirmed = BTreeMap::new();
        for (kind, p) in read_records(path)? {
            let mut c = Cursor(&p);
            match kind {
                EPOCH => epoch = c.u64(),
                PUBLISH => {
                    if let (Some(dest), Some(seq)) = (c.str8(), c.u64()) {
                        let n = next.entry(dest.clone()).or_insert(1);
                        *n = (*n).max(seq + 1);
                        unconfirmed.insert((dest, seq), c.0.to_vec());
                    }
                }
                CONFIRM => {
                    if let (Some(dest), Some(seq)) = (c.str8(), c.u64()) {
                        unconfirmed.remove(&(dest, seq));
                    }
                }
                NEXT => {
                    if let (Some(dest), Some(n)) = (c.str8(), c.u64()) {
                        let e = next.entry(dest).or_insert(1);
                        *e = (*e).max(n);
                    }
                }
                _ => {}
            }
        }
        let epoch = match epoch {
            Some(e) => e,
            None => {
                let mut b = [0u8; 8];
                rustix::rand::getrandom(&mut b, rustix::rand::GetRandomFlags::empty()).map_err(
                    |e| StoreError {
                        path: path.to_owned(),
                        source: e.into(),
                    },
                )?;
                u64::from_be_bytes(b)
            }
        };
        let journal = Journal::rewrite(path, &Self::records(epoch, &next, &unconfirmed))?;
        Ok(Outbox {
            journal,
            epoch,
            next,
            unconfirmed,
        })
    }

    fn records(
        epoch: u64,
        next: &BTreeMap<String, u64>,
        unconfirmed: &BTreeMap<(String, u64), Vec<u8>>,
    ) -> Vec<(u8, Vec<u8>)> {
        let mut out = vec![(EPOCH, epoch.to_be_bytes().to_vec())];
        for (dest, n) in next {
            let mut p = Vec::new();
            str8(&mut p, dest);
            p.extend_from_slice(&n.to_be_bytes());
            out.push((NEXT, p));
        }
        for ((dest, seq), bytes) in unconfirmed {
            out.push((PUBLISH, publish_payload(dest, *seq, bytes)));
        }
        out
    }

    /// This outbox's epoch (random, fixed for the life of the file).
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The sequence number of the next batch to `dest` (taken).
    pub fn take_seq(&mut self, dest: &str) -> u64 {
        let n = self.next.entry(dest.to_owned()).or_insert(1);
        let seq = *n;
        *n += 1;
        seq
    }

    /// Keeps a sealed batch until it is confirmed (durable at the next [`commit`](Self::commit)).
    pub fn push(&mut self, dest: &str, seq: u64, bytes: Vec<u8>) -> Result<(), StoreError> {
        self.journal
            .append(PUBLISH, &publish_payload(dest, seq, &bytes))?;
        self.unconfirmed.insert((dest.to_owned(), seq), bytes);
        Ok(())
    }

    /// Syncs what was pushed.
    pub fn commit(&mut self) -> Result<(), StoreError> {
        self.journal.commit()
    }

    /// The broker confirmed the batch: forget it. (Not synced: a confirmation forgotten in a
    /// crash only makes the batch go out again, and the receiver drops the copy.)
    pub fn confirmed(&mut self, dest: &str, seq: u64) -> Result<(), StoreError> {
        if self.unconfirmed.remove(&(dest.to_owned(), seq)).is_some() {
            let mut p = Vec::new();
            str8(&mut p, dest);
            p.extend_from_slice(&seq.to_be_bytes());
            self.journal.append(CONFIRM, &p)?;
        }
        if self.journal.size > 64 << 20 && self.unconfirmed.len() < 4096 {
            self.journal.commit()?;
            let records = Self::records(self.epoch, &self.next, &self.unconfirmed);
            self.journal = Journal::rewrite(&self.journal.path.clone(), &records)?;
        }
        Ok(())
    }

    /// The batches not yet confirmed, oldest first per destination.
    pub fn unconfirmed(&self) -> impl Iterator<Item = (&str, u64, &[u8])> {
        self.unconfirmed
            .iter()
            .map(|((d, s), b)| (d.as_str(), *s, b.as_slice()))
    }

    /// How many batches wait for a confirmation.
    pub fn len(&self) -> usize {
        self.unconfirmed.len()
    }

    /// Whether nothing waits for a confirmation.
    pub fn is_empty(&self) -> bool {
        self.unconfirmed.is_empty()
    }
}

fn publish_payload(dest: &str, seq: u64, bytes: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(bytes.len() + 16);
    str8(&mut p, dest);
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(bytes);
    p
}

/// The journal of settlements behind an [`Inbox`].
#[derive(Debug)]
pub struct InboxLog {
    journal: Journal,
}

impl InboxLog {
    /// Opens (or creates) the inbox journal at `path` and restores `inbox` from it.
    pub fn open<T>(path: &Path, inbox: &mut Inbox<T>) -> Result<InboxLog, StoreError> {
        for (kind, p) in read_records(path)? {
            let mut c = Cursor(&p);
            let stream = match (c.str8(), c.u64()) {
                (Some(host), Some(epoch)) => StreamId { host, epoch },
                _ => continue,
            };
            match kind {
                SETTLE => {
                    if let (Some(seq), Some(index), Some(count)) = (c.u64(), c.u32(), c.u32()) {
                        inbox.restore(&Settlement {
                            stream,
                            seq,
                            index,
                            count,
                        });
                    }
                }
                DONE => {
                    if let Some(done) = c.u64() {
                        inbox.restore_done(&stream, done);
                    }
                }
                _ => {}
            }
        }
        inbox.restored();
        let mut records = Vec::new();
        for (stream, done, rest) in inbox.snapshot() {
            let mut p = Vec::new();
            str8(&mut p, &stream.host);
            p.extend_from_slice(&stream.epoch.to_be_bytes());
            p.extend_from_slice(&done.to_be_bytes());
            records.push((DONE, p));
            for s in rest {
                records.push((SETTLE, settle_payload(&s)));
            }
        }
        Ok(InboxLog {
            journal: Journal::rewrite(path, &records)?,
        })
    }

    /// Records a settlement (durable at the next [`commit`](Self::commit)).
    pub fn settled(&mut self, s: &Settlement) -> Result<(), StoreError> {
        self.journal.append(SETTLE, &settle_payload(s))
    }

    /// Records that `stream` started at batch `first` (the first of it this host ever saw,
    /// the broker's queue being FIFO): every batch before it counts as settled after a restart.
    pub fn started(&mut self, stream: &StreamId, first: u64) -> Result<(), StoreError> {
        let mut p = Vec::new();
        str8(&mut p, &stream.host);
        p.extend_from_slice(&stream.epoch.to_be_bytes());
        p.extend_from_slice(&first.saturating_sub(1).to_be_bytes());
        self.journal.append(DONE, &p)
    }

    /// Syncs what was recorded.
    pub fn commit(&mut self) -> Result<(), StoreError> {
        self.journal.commit()
    }
}

fn settle_payload(s: &Settlement) -> Vec<u8> {
    let mut p = Vec::with_capacity(40);
    str8(&mut p, &s.stream.host);
    p.extend_from_slice(&s.stream.epoch.to_be_bytes());
    p.extend_from_slice(&s.seq.to_be_bytes());
    p.extend_from_slice(&s.index.to_be_bytes());
    p.extend_from_slice(&s.count.to_be_bytes());
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inbox::Arrival;

    #[test]
    fn the_outbox_keeps_unconfirmed_batches_and_numbers_across_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outbox.log");
        let mut o = Outbox::open(&path).unwrap();
        let epoch = o.epoch();
        for _ in 0..3 {
            let seq = o.take_seq("beta");
            o.push("beta", seq, vec![seq as u8; 10]).unwrap();
        }
        o.commit().unwrap();
        o.confirmed("beta", 1).unwrap();
        drop(o);
        let mut o = Outbox::open(&path).unwrap();
        assert_eq!(o.epoch(), epoch);
        let left: Vec<u64> = o.unconfirmed().map(|(_, s, _)| s).collect();
        assert_eq!(left, vec![2, 3]);
        assert_eq!(o.take_seq("beta"), 4);
        assert_eq!(o.take_seq("gamma"), 1);
        o.confirmed("beta", 2).unwrap();
        o.confirmed("beta", 3).unwrap();
        o.commit().unwrap();
        drop(o);
        // Everything confirmed and compacted away: the numbering still continues.
        let mut o = Outbox::open(&path).unwrap();
        assert!(o.is_empty());
        assert_eq!(o.take_seq("beta"), 4);
    }

    #[test]
    fn a_torn_last_record_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outbox.log");
        let mut o = Outbox::open(&path).unwrap();
        o.push("beta", 1, b"whole".to_vec()).unwrap();
        o.commit().unwrap();
        drop(o);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&[0, 0, 0, 50, PUBLISH, 1, 2]).unwrap();
        drop(f);
        let o = Outbox::open(&path).unwrap();
        assert_eq!(o.len(), 1);
    }

    #[test]
    fn the_inbox_log_restores_settlements() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("inbox.log");
        let s = StreamId {
            host: "alpha".into(),
            epoch: 5,
        };
        let mut ib: Inbox<()> = Inbox::new();
        let mut log = InboxLog::open(&path, &mut ib).unwrap();
        for seq in 1..=3 {
            ib.arrive(&s, seq, 1, ());
            ib.settle(&s, seq, 0);
            log.settled(&Settlement {
                stream: s.clone(),
                seq,
                index: 0,
                count: 1,
            })
            .unwrap();
        }
        log.commit().unwrap();
        drop(log);
        for _ in 0..2 {
            let mut again: Inbox<()> = Inbox::new();
            let _log = InboxLog::open(&path, &mut again).unwrap();
            assert_eq!(again.arrive(&s, 3, 1, ()), Arrival::Done(()));
            assert!(matches!(again.arrive(&s, 4, 1, ()), Arrival::Ready(_)));
        }
    }

    /// A stream first seen at batch 11, whose batch 12 holds no message: after a restart the
    /// stream continues at 13 (it waited for batch 1, or for the empty batch, forever).
    /// Control: without the start record, 13 is held.
    #[test]
    fn a_stream_first_seen_in_the_middle_and_an_empty_batch_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let s = StreamId {
            host: "gamma".into(),
            epoch: 9,
        };
        for with_start in [true, false] {
            let path = dir.path().join(format!("inbox-{with_start}.log"));
            let mut ib: Inbox<()> = Inbox::new();
            let mut log = InboxLog::open(&path, &mut ib).unwrap();
            assert!(ib.is_new(&s));
            if with_start {
                log.started(&s, 11).unwrap();
            }
            for (seq, count) in [(11, 1), (12, 0)] {
                assert!(matches!(ib.arrive(&s, seq, count, ()), Arrival::Ready(_)));
                assert!(ib.settle(&s, seq, 0));
                log.settled(&Settlement {
                    stream: s.clone(),
                    seq,
                    index: 0,
                    count,
                })
                .unwrap();
            }
            log.commit().unwrap();
            drop(log);
            let mut again: Inbox<()> = Inbox::new();
            let _log = InboxLog::open(&path, &mut again).unwrap();
            assert!(!again.is_new(&s));
            let next = again.arrive(&s, 13, 1, ());
            assert_eq!(
                matches!(next, Arrival::Ready(_)),
                with_start,
                "with the start record: {with_start}"
            );
        }
    }
}
