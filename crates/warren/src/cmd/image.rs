//! `warren image import|ls|inspect|rm`: the CLI face of `warren-image`'s store.
//!
//! Output follows the rest of the CLI: a table or a sentence for people, `--json` for programs,
//! a progress bar (indicatif, on standard error) only when standard error is a terminal and
//! neither `--json` nor `--quiet` was given.

use std::io::IsTerminal;
use std::path::Path;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{Value, json};
use warren_image::{ImageRecord, ImportOptions, Limits, Progress, Store};
use warren_sandbox::state::StateDir;
use warren_spec::{ByteSize, ImageName};

use crate::cli::{ImageCommand, ImageImportArgs, ImageInspectArgs, ImageLsArgs, ImageRmArgs};

/// Dispatch `warren image ...`.
pub fn image(state_dir: &Path, data_dir: &Path, cmd: ImageCommand) -> anyhow::Result<i32> {
    match cmd {
        ImageCommand::Import(a) => import(data_dir, a),
        ImageCommand::Ls(a) => ls(data_dir, a),
        ImageCommand::Inspect(a) => inspect(state_dir, data_dir, a),
        ImageCommand::Rm(a) => rm(state_dir, data_dir, a),
    }
}

/// The progress bar on a terminal.
struct Bar(ProgressBar);

impl Progress for Bar {
    fn begin(&self, total: u64) {
        self.0.set_length(total);
        self.0.set_position(0);
    }
    fn advance(&self, n: u64) {
        self.0.inc(n);
    }
    fn stage(&self, what: &str) {
        self.0.set_message(what.to_owned());
    }
    fn end(&self) {
        self.0.finish_and_clear();
    }
}

fn import(data_dir: &Path, a: ImageImportArgs) -> anyhow::Result<i32> {
    let result = (|| -> anyhow::Result<warren_image::ImportReport> {
        let name = a
            .name
            .as_deref()
            .map(|n| n.parse::<ImageName>().context("invalid --name"))
            .transpose()?;
        let max_bytes = a
            .max_bytes
            .parse::<ByteSize>()
            .context("invalid --max-bytes")?;
        let opts = ImportOptions {
            name,
            reference: a.reference.clone(),
            allow_setuid: a.allow_setuid,
            limits: Limits {
                max_entries: a.max_files,
                max_bytes: max_bytes.0,
                max_depth: a.max_depth,
            },
        };
        let store = Store::new(data_dir);
        let report = if !a.json && !a.quiet && std::io::stderr().is_terminal() {
            let pb = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
            pb.set_style(
                ProgressStyle::with_template(
                    "{spinner} {msg:<12} [{bar:32}] {bytes}/{total_bytes} {bytes_per_sec} {eta}",
                )
                .expect("a valid template")
                .progress_chars("=> "),
            );
            let bar = Bar(pb);
            let r = store.import(&a.path, &opts, &bar);
            bar.0.finish_and_clear();
            r
        } else {
            store.import(&a.path, &opts, &warren_image::store::Silent)
        };
        report.with_context(|| format!("cannot import {}", a.path.display()))
    })();
    let report = match result {
        Ok(r) => r,
        Err(e) => {
            if a.json {
                println!("{}", json!({ "error": format!("{e:#}") }));
            }
            return Err(e);
        }
    };
    if a.json {
        println!("{}", serde_json::to_string(&report)?);
    } else if !a.quiet {
        for note in &report.notes {
            eprintln!("warren: warning: {note}");
        }
        if !report.created.is_empty() {
            eprintln!(
                "warren: created in the root for Warren's mounts: {}",
                report.created.join(", ")
            );
        }
        let what = if report.reused_root {
            "root already in the store".to_owned()
        } else {
            format!("{} entries, {}", report.entries, human(report.bytes))
        };
        println!(
            "imported {} {} ({} layer{}, {what})",
            report.name,
            report.manifest_digest,
            report.layers,
            if report.layers == 1 { "" } else { "s" },
        );
    }
    Ok(0)
}

fn human(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

fn record_json(r: &ImageRecord) -> Value {
    serde_json::to_value(r).unwrap_or(Value::Null)
}

fn ls(data_dir: &Path, a: ImageLsArgs) -> anyhow::Result<i32> {
    let images = Store::new(data_dir).list().context("cannot list images")?;
    if a.json {
        for r in &images {
            println!("{}", record_json(r));
        }
    } else if a.quiet {
        for r in &images {
            println!("{}", r.name);
        }
    } else {
        println!(
            "{:<32} {:<19} {:>6} {:>10}  ROOT",
            "NAME", "DIGEST", "LAYERS", "SIZE"
        );
        for r in &images {
            println!(
                "{:<32} {:<19} {:>6} {:>10}  {}",
                r.name,
                format!("sha256:{}", &r.manifest.hex()[..12]),
                r.layers.len(),
                human(r.size),
                &r.root[..12]
            );
        }
    }
    Ok(0)
}

/// The environments whose live record says they run image `name`.
fn users_of(state_dir: &Path, name: &str) -> Vec<String> {
    StateDir::new(state_dir)
        .live_records()
        .unwrap_or_default()
        .into_iter()
        .filter(|(_, bytes)| {
            serde_json::from_slice::<Value>(bytes)
                .is_ok_and(|v| v["applied"]["image_name"].as_str() == Some(name))
        })
        .map(|(env, _)| env)
        .collect()
}

fn inspect(state_dir: &Path, data_dir: &Path, a: ImageInspectArgs) -> anyhow::Result<i32> {
    let name: ImageName = a.name.parse().context("invalid image name")?;
    let store = Store::new(data_dir);
    let rec = store.get(&name)?;
    let (manifest, config) = store.documents(&rec)?;
    let mut v = record_json(&rec);
    v["root_path"] = json!(store.dir().join("roots").join(&rec.root));
    v["used_by"] = json!(users_of(state_dir, name.as_str()));
    v["manifest_document"] = manifest;
    v["config_document"] = config;
    println!("{}", serde_json::to_string_pretty(&v)?);
    Ok(0)
}

fn rm(state_dir: &Path, data_dir: &Path, a: ImageRmArgs) -> anyhow::Result<i32> {
    let store = Store::new(data_dir);
    let mut failed = false;
    for n in &a.names {
        let res = n
            .parse::<ImageName>()
            .context("invalid image name")
            .and_then(|name| {
                let in_use = |r: &ImageRecord| users_of(state_dir, &r.name).into_iter().next();
                store.remove(&name, &in_use).map_err(anyhow::Error::from)
            });
        match res {
            Ok(rec) => println!("removed {} {}", rec.name, rec.manifest),
            Err(e) => {
                eprintln!("warren: error: cannot remove {n}: {e:#}");
                failed = true;
            }
        }
    }
    Ok(if failed { 1 } else { 0 })
}
