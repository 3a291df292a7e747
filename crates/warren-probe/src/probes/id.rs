//! `id.*`: which host identity the environment's ids map to. The maps are read from
//! `/proc/self/{uid,gid}_map`, whose "outside" column is in the parent user namespace (the host,
//! for a Warren environment).

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use rustix::fs::OFlags;

use super::{Ctx, open};
use crate::procfs::{IdExtent, covers_outside_root, map_to_outside, parse_id_map};
use crate::report::{Report, describe};

fn read_map(name: &str) -> Result<(String, Vec<IdExtent>), String> {
    let path = format!("/proc/self/{name}");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {}", describe(&e)))?;
    let map = parse_id_map(&text);
    let shown = text
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect::<Vec<_>>();
    Ok((shown.join(", "), map))
}

/// `id.uid_map`: open if inside ids map to outside uid or gid 0. With `--expect-uid-map`, also
/// open unless each map is exactly one extent.
pub fn uid_map(ctx: &Ctx) -> Report {
    const P: &str = "id.uid_map";
    let (uid_text, uids) = match read_map("uid_map") {
        Ok(m) => m,
        Err(why) => return Report::skipped(P, why),
    };
    let (gid_text, gids) = match read_map("gid_map") {
        Ok(m) => m,
        Err(why) => return Report::skipped(P, why),
    };
    let detail = format!("uid_map: {uid_text}; gid_map: {gid_text}");
    if covers_outside_root(&uids) || covers_outside_root(&gids) {
        return Report::open(P, format!("maps onto outside id 0: {detail}"));
    }
    if ctx.opts.expect_uid_map && (uids.len() != 1 || gids.len() != 1) {
        return Report::open(P, format!("expected exactly one extent per map: {detail}"));
    }
    Report::blocked(P, detail)
}

/// Where `id.tmp_file_owner` creates its file.
const OWNER_FILE: &str = "/tmp/warren-probe-owner";

/// `id.tmp_file_owner`: create `/tmp/warren-probe-owner`, read its owner, and translate it
/// through our uid map: open if the file belongs to outside uid 0. The file is removed again
/// unless `--keep-owner-file` asks to leave it for the host to inspect.
pub fn tmp_file_owner(ctx: &Ctx) -> Report {
    const P: &str = "id.tmp_file_owner";
    let path = Path::new(OWNER_FILE);
    let created = open(
        path,
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW,
    );
    if let Err(e) = &created {
        let ours = std::fs::symlink_metadata(path)
            .map(|m| m.is_file() && m.uid() == rustix::process::geteuid().as_raw())
            .unwrap_or(false);
        if !ours {
            return Report::skipped(P, format!("cannot create {OWNER_FILE}: {}", describe(e)));
        }
    }
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) => return Report::skipped(P, format!("stat {OWNER_FILE}: {}", describe(&e))),
    };
    let uids = read_map("uid_map").map(|(_, m)| m).unwrap_or_default();
    let gids = read_map("gid_map").map(|(_, m)| m).unwrap_or_default();
    let host_uid = map_to_outside(&uids, u64::from(meta.uid()));
    let host_gid = map_to_outside(&gids, u64::from(meta.gid()));
    let kept = if ctx.opts.keep_owner_file {
        "kept"
    } else {
        let _ = std::fs::remove_file(path);
        "removed"
    };
    let show = |v: Option<u64>| v.map_or("unmapped".to_owned(), |v| v.to_string());
    let detail = format!(
        "{OWNER_FILE} ({kept}): owner {}:{} inside, {}:{} outside",
        meta.uid(),
        meta.gid(),
        show(host_uid),
        show(host_gid)
    );
    if host_uid == Some(0) || host_gid == Some(0) {
        Report::open(P, detail)
    } else {
        Report::blocked(P, detail)
    }
}
