//! `dev.*`: create device nodes and open the devices that expose the host (memory, kernel log,
//! disks). Nodes are made in the scratch directory and removed at once; devices are opened
//! read-only and never read.

use std::io;

use rustix::fs::{CWD, FileType, Mode, OFlags, makedev, mknodat};

use super::{Ctx, open_attempts};
use crate::report::{Report, describe};

fn mknod_probe(
    ctx: &Ctx,
    probe: &str,
    kind: FileType,
    name: &str,
    major: u32,
    minor: u32,
) -> Report {
    let dir = match ctx.scratch() {
        Ok(d) => d,
        Err(why) => return Report::skipped(probe, why),
    };
    let path = dir.join(name);
    let what = format!("mknod {} {kind:?} {major}:{minor}", path.display());
    match mknodat(
        CWD,
        &path,
        kind,
        Mode::from_raw_mode(0o600),
        makedev(major, minor),
    ) {
        Ok(()) => {
            let _ = std::fs::remove_file(&path);
            Report::open(probe, format!("{what}: succeeded (removed again)"))
        }
        Err(e) => {
            let e = io::Error::from(e);
            Report::blocked(probe, format!("{what}: {}", describe(&e))).with_errno(&e)
        }
    }
}

/// `dev.mknod_block`: `mknod` a block device 8:0 (`sda`).
pub fn mknod_block(ctx: &Ctx) -> Report {
    mknod_probe(
        ctx,
        "dev.mknod_block",
        FileType::BlockDevice,
        "probe-blk",
        8,
        0,
    )
}

/// `dev.mknod_char`: `mknod` a character device 1:3 (`null`).
pub fn mknod_char(ctx: &Ctx) -> Report {
    mknod_probe(
        ctx,
        "dev.mknod_char",
        FileType::CharacterDevice,
        "probe-chr",
        1,
        3,
    )
}

/// `dev.open_mem`: open `/dev/mem` read-only.
pub fn open_mem(_: &Ctx) -> Report {
    open_attempts("dev.open_mem", &["/dev/mem"], OFlags::RDONLY)
}

/// `dev.open_kmsg`: open `/dev/kmsg` read-only.
pub fn open_kmsg(_: &Ctx) -> Report {
    open_attempts(
        "dev.open_kmsg",
        &["/dev/kmsg"],
        OFlags::RDONLY | OFlags::NONBLOCK,
    )
}

/// `dev.open_host_disk`: open the usual host disk nodes read-only; blocked if none opens.
pub fn open_host_disk(_: &Ctx) -> Report {
    open_attempts(
        "dev.open_host_disk",
        &["/dev/vda", "/dev/sda", "/dev/nvme0n1", "/dev/xvda"],
        OFlags::RDONLY | OFlags::NONBLOCK,
    )
}
