//! `warren ps` and `warren inspect`: what is running, read from the records that each launcher
//! keeps in its name lock while its environment lives.

use std::path::Path;

use anyhow::Context;
use serde_json::Value;
use warren_sandbox::state::StateDir;

use crate::cli::{InspectArgs, PsArgs};

fn records(state_dir: &Path) -> anyhow::Result<Vec<(String, Value)>> {
    let state = StateDir::new(state_dir);
    let live = state
        .live_records()
        .context("cannot read the list of environments")?;
    Ok(live
        .into_iter()
        .map(|(name, bytes)| {
            let v = serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| serde_json::json!({ "name": name, "state": "starting" }));
            (name, v)
        })
        .collect())
}

/// `warren ps`.
pub fn ps(state_dir: &Path, args: PsArgs) -> anyhow::Result<i32> {
    let recs = records(state_dir)?;
    if args.quiet {
        for (name, _) in &recs {
            println!("{name}");
        }
    } else if args.json {
        for (_, v) in &recs {
            let row = serde_json::json!({
                "name": v["name"], "state": v["state"], "pid": v["pid"],
                "command": v["command"], "started": v["started"],
                "uid_base": v["applied"]["uid_map"]["host_base"],
            });
            println!("{row}");
        }
    } else {
        println!(
            "{:<24} {:<9} {:>8} {:>12}  COMMAND",
            "NAME", "STATE", "PID", "HOST UID"
        );
        for (name, v) in &recs {
            let cmd = v["command"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|x| x.as_str())
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .unwrap_or_default();
            println!(
                "{:<24} {:<9} {:>8} {:>12}  {}",
                name,
                v["state"].as_str().unwrap_or("?"),
                v["pid"].as_i64().map(|p| p.to_string()).unwrap_or_default(),
                v["applied"]["uid_map"]["host_base"]
                    .as_u64()
                    .map(|p| p.to_string())
                    .unwrap_or_default(),
                cmd
            );
        }
    }
    Ok(0)
}

/// `warren inspect`.
pub fn inspect(state_dir: &Path, args: InspectArgs) -> anyhow::Result<i32> {
    let recs = records(state_dir)?;
    match recs.into_iter().find(|(n, _)| *n == args.name) {
        Some((_, v)) => {
            println!("{}", serde_json::to_string_pretty(&v)?);
            Ok(0)
        }
        None => {
            eprintln!(
                "warren: error: no running environment named {:?}",
                args.name
            );
            Ok(1)
        }
    }
}
