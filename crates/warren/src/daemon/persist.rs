//! The registry's writer: a thread of its own that writes `managed.json` (the managed
//! environments, spawned children and templates, `crate::supervisor::Registry`) so that the
//! event loop does not wait on the file system.
//!
//! The loop serialises the registry (a few microseconds for a handful of environments) and
//! hands the bytes over; the writer writes them to a temporary file and renames it over the
//! registry, which the loop used to do itself at every spawn, every child's exit and every
//! registration: 0.2–0.5 ms each on this machine's ext4, on the path of every spawn's answer
//! (BENCHMARKS.md, "Spawn"). Only the newest state matters: the writer waits [`GATHER`] after
//! a save is handed over and writes the newest state then, so a burst of changes costs one
//! write. Dropping the writer writes what waits at once and joins the thread, so a daemon that
//! stops leaves its last state on disk; a daemon killed outright may lose the changes of its
//! last ~10 ms (before, those between a change and the end of its loop turn).

use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};

/// How long the writer waits after a save is handed over before it writes, so that the saves
/// of a burst become one write: at most one write per this interval (under four spawns a
/// second per CPU the writer thread took 4 % of the machine's CPU, writing at every change).
const GATHER: std::time::Duration = std::time::Duration::from_millis(10);

/// What the loop and the writer share.
#[derive(Default)]
struct Shared {
    /// The newest bytes not yet taken by the writer.
    waiting: Option<Vec<u8>>,
    /// The daemon is stopping: write what waits, then end.
    stop: bool,
    /// Saves handed over, and saves whose bytes (or newer ones) are on disk.
    handed: u64,
    written: u64,
}

/// The writer thread's handle (see the module documentation).
pub(super) struct RegistryWriter {
    shared: Arc<(Mutex<Shared>, Condvar)>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RegistryWriter {
    /// Starts the writer for the registry at `path`.
    pub(super) fn start(path: PathBuf) -> std::io::Result<RegistryWriter> {
        let shared = Arc::new((Mutex::new(Shared::default()), Condvar::new()));
        let theirs = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("warren-registry".into())
            .stack_size(64 * 1024)
            .spawn(move || write_loop(&path, &theirs))?;
        Ok(RegistryWriter {
            shared,
            thread: Some(thread),
        })
    }

    /// Hands `bytes` (the whole registry) over to be written; returns at once.
    pub(super) fn save(&self, bytes: Vec<u8>) {
        let (lock, cv) = &*self.shared;
        let mut s = lock.lock().unwrap_or_else(|e| e.into_inner());
        s.waiting = Some(bytes);
        s.handed += 1;
        cv.notify_all();
    }

    /// Waits until everything handed over so far is on disk (the daemon relies on dropping
    /// the writer instead).
    #[cfg(test)]
    pub(super) fn flush(&self) {
        let (lock, cv) = &*self.shared;
        let mut s = lock.lock().unwrap_or_else(|e| e.into_inner());
        let target = s.handed;
        while s.written < target && self.thread.as_ref().is_some_and(|t| !t.is_finished()) {
            s = cv.wait(s).unwrap_or_else(|e| e.into_inner());
        }
    }
}

impl Drop for RegistryWriter {
    fn drop(&mut self) {
        {
            let (lock, cv) = &*self.shared;
            let mut s = lock.lock().unwrap_or_else(|e| e.into_inner());
            s.stop = true;
            cv.notify_all();
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn write_loop(path: &std::path::Path, shared: &(Mutex<Shared>, Condvar)) {
    let (lock, cv) = shared;
    let tmp = path.with_extension("json.tmp");
    loop {
        let (bytes, upto) = {
            let mut s = lock.lock().unwrap_or_else(|e| e.into_inner());
            while s.waiting.is_none() && !s.stop {
                s = cv.wait(s).unwrap_or_else(|e| e.into_inner());
            }
            if !s.stop {
                // Changes come in bursts (a parent spawning children, a tree stopping): the
                // newest state a moment later covers all of them in one write.
                drop(s);
                std::thread::sleep(GATHER);
                s = lock.lock().unwrap_or_else(|e| e.into_inner());
            }
            match s.waiting.take() {
                Some(b) => (b, s.handed),
                None => return,
            }
        };
        let res = std::fs::write(&tmp, &bytes).and_then(|()| std::fs::rename(&tmp, path));
        if let Err(e) = res {
            tracing::warn!(
                "cannot save the managed environments to {}: {e}",
                path.display()
            );
        }
        let mut s = lock.lock().unwrap_or_else(|e| e.into_inner());
        s.written = s.written.max(upto);
        cv.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A burst of saves ends with the newest on disk; dropping the writer writes what waits.
    #[test]
    fn the_newest_save_reaches_the_disk() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("managed.json");
        let w = RegistryWriter::start(path.clone()).unwrap();
        for i in 0..200 {
            w.save(format!("{{\"n\":{i}}}").into_bytes());
        }
        w.flush();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{\"n\":199}");
        w.save(b"{\"n\":\"last\"}".to_vec());
        drop(w);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{\"n\":\"last\"}");
        assert!(!dir.path().join("managed.json.tmp").exists());
    }
}
