//! Recording what became of a measured launch: when a launch fails after its record was
//! appended (a step inside the new environment, `execve` itself, or the launcher's own last
//! steps), the launcher appends a second record with the same content and `event: refused`
//! (`crate::evidence::record::outcomes` pairs them), so a verifier can tell a workload that
//! ran from one that was measured and then refused.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use crate::evidence::record::{EVENT_REFUSED, Record};
use crate::io::config::RootConfig;
use crate::io::log::{EventLog, LogError};

/// The log's length in bytes now (0 when it does not exist): pass it to [`record_refusal`]
/// after a failed launch, so only records appended since are considered.
pub fn log_len(state_dir: &Path) -> u64 {
    std::fs::metadata(EventLog::new(state_dir).path())
        .map(|m| m.len())
        .unwrap_or(0)
}

/// After a failed launch of `name`: if a launch record for it was appended at or after byte
/// `since` of the log, appends its `refused` record and returns it; otherwise (the launch
/// failed before it was measured) does nothing.
pub fn record_refusal(
    state_dir: &Path,
    name: &str,
    since: u64,
) -> Result<Option<Record>, LogError> {
    let log = EventLog::new(state_dir);
    let path = log.path();
    let io = |what: &'static str| {
        let path = path.clone();
        move |source| LogError::Io { path, what, source }
    };
    let mut text = String::new();
    match std::fs::File::open(&path) {
        Ok(mut f) => {
            f.seek(SeekFrom::Start(since)).map_err(io("seek"))?;
            f.read_to_string(&mut text).map_err(io("read"))?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io("open")(e)),
    }
    let ours = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Record>(l).ok())
        .rfind(|r| r.is_launch_of(name));
    let Some(mut content) = ours.and_then(|r| r.content) else {
        return Ok(None);
    };
    content.event = EVENT_REFUSED.into();
    let mut root = RootConfig::resolve(state_dir)?.open(state_dir)?;
    log.append(content, root.as_mut()).map(Some)
}
