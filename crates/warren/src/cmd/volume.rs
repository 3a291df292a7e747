//! `warren volume create|ls|inspect|rm`: the CLI face of the volume store
//! ([`crate::volumes`]). A table or a sentence for people, `--json` for programs.

use std::path::Path;

use anyhow::Context;
use serde_json::{Value, json};
use warren_spec::ByteSize;

use crate::cli::{VolumeCommand, VolumeCreateArgs, VolumeLsArgs, VolumeNameArgs, VolumeRmArgs};
use crate::volumes::{Kind, Record, Store};

/// Dispatch `warren volume ...`.
pub fn volume(data_dir: &Path, cmd: VolumeCommand) -> anyhow::Result<i32> {
    let store = Store::new(data_dir);
    match cmd {
        VolumeCommand::Create(a) => create(&store, a),
        VolumeCommand::Ls(a) => ls(&store, a),
        VolumeCommand::Inspect(a) => inspect(&store, a),
        VolumeCommand::Rm(a) => rm(&store, a),
    }
}

/// A record with what is known about it now, as `ls --json` and `inspect` print it.
fn describe(store: &Store, r: &Record) -> Value {
    let mut v = serde_json::to_value(r).unwrap_or(Value::Null);
    v["path"] = json!(store.path(&r.name));
    v["used_bytes"] = json!(store.used_bytes(&r.name));
    v["in_use"] = json!(store.in_use(&r.name).ok());
    v
}

/// `UID:GID`, each 0 to 65535 (the ids an environment's user namespace maps).
fn parse_owner(o: &str) -> anyhow::Result<(u32, u32)> {
    let Some((u, g)) = o.split_once(':') else {
        anyhow::bail!("expected UID:GID (numbers)");
    };
    let id = |s: &str, what: &str| -> anyhow::Result<u32> {
        match s.parse::<u32>() {
            Ok(n) if n <= 65535 => Ok(n),
            Ok(n) => anyhow::bail!(
                "{what} {n} is out of range: ids inside an environment are 0 to 65535"
            ),
            Err(_) => anyhow::bail!(
                "{what} {s:?} is not a number (names differ between roots: give numbers)"
            ),
        }
    };
    Ok((id(u, "uid")?, id(g, "gid")?))
}

fn create(store: &Store, a: VolumeCreateArgs) -> anyhow::Result<i32> {
    let size = a
        .size
        .as_deref()
        .map(|s| s.parse::<ByteSize>().context("invalid --size"))
        .transpose()?
        .map(|b| b.0);
    let owner = a
        .owner
        .as_deref()
        .map(|o| parse_owner(o).with_context(|| format!("invalid --owner {o:?}")))
        .transpose()?;
    let rec = store
        .create(&a.name, size, owner)
        .with_context(|| format!("cannot create volume {}", a.name))?;
    if a.json {
        println!("{}", describe(store, &rec));
    } else {
        println!("{}", rec.name);
    }
    Ok(0)
}

fn ls(store: &Store, a: VolumeLsArgs) -> anyhow::Result<i32> {
    let vols = store.list().context("cannot list volumes")?;
    if a.json {
        for r in &vols {
            println!("{}", describe(store, r));
        }
    } else if a.quiet {
        for r in &vols {
            println!("{}", r.name);
        }
    } else {
        println!(
            "{:<32} {:<10} {:>10} {:>10}  IN USE",
            "NAME", "KIND", "LIMIT", "USED"
        );
        for r in &vols {
            println!(
                "{:<32} {:<10} {:>10} {:>10}  {}",
                r.name,
                match r.kind {
                    Kind::Directory => "directory",
                    Kind::Ext4Image => "ext4",
                },
                r.size_limit
                    .map(|s| ByteSize(s).to_string())
                    .unwrap_or_else(|| "-".into()),
                ByteSize(store.used_bytes(&r.name).max(1)).to_string(),
                match store.in_use(&r.name) {
                    Ok(true) => "yes",
                    Ok(false) => "no",
                    Err(_) => "?",
                }
            );
        }
    }
    Ok(0)
}

fn inspect(store: &Store, a: VolumeNameArgs) -> anyhow::Result<i32> {
    let rec = store.get(&a.name)?;
    println!("{}", serde_json::to_string_pretty(&describe(store, &rec))?);
    Ok(0)
}

fn rm(store: &Store, a: VolumeRmArgs) -> anyhow::Result<i32> {
    let mut failed = false;
    for n in &a.names {
        match store.remove(n) {
            Ok(rec) => println!("{}", rec.name),
            Err(e) => {
                eprintln!("warren: error: cannot remove volume {n}: {e:#}");
                failed = true;
            }
        }
    }
    Ok(if failed { 1 } else { 0 })
}
