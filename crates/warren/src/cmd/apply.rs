//! `warren apply`, `warren diff` and `warren up FILE`: converge the kernel to a manifest.
//!
//! The manifest is parsed and validated here (errors name file, line and key); the kernel plans
//! against what it manages (`warren_spec::plan`) and carries the plan out. Exit codes: `apply`
//! 0 on success, 1 on failure; with `--detailed-exitcodes` Puppet's 0 (no change), 2 (changed),
//! 4 (failed), 6 (changed and failed). `diff` follows `kubectl diff`: 0 no differences, 1
//! differences, 2 or more an error.

use std::path::Path;

use serde_json::Value;

use crate::cli::{ApplyArgs, DiffArgs};
use crate::control::{self, ControlRequest};

/// Parse `file` and ask the kernel to apply (or plan) it.
fn send(state_dir: &Path, file: &Path, check: bool, timeout: u64) -> anyhow::Result<Value> {
    let manifest = warren_spec::load_manifest(file).map_err(|e| anyhow::anyhow!("{e}"))?;
    let spaces = manifest
        .spaces
        .into_iter()
        .map(|(n, s)| (n.to_string(), s))
        .collect();
    let templates = manifest
        .templates
        .into_iter()
        .map(|(n, t)| (n.to_string(), t))
        .collect();
    let req = ControlRequest::Apply {
        file: file.display().to_string(),
        spaces,
        templates,
        check,
        stop_timeout: timeout,
    };
    let resp = control::request(state_dir, &req)?;
    if !resp.ok {
        anyhow::bail!("the kernel refused: {}", resp.error.unwrap_or_default());
    }
    Ok(resp.data.unwrap_or(Value::Null))
}

fn show_value(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

/// Print the steps for people (or as JSON Lines).
fn print_steps(data: &Value, json: bool, diff: bool) {
    let steps = data["steps"].as_array().cloned().unwrap_or_default();
    if json {
        for s in &steps {
            let row = serde_json::json!({
                "name": s["name"], "action": s["action"], "result": s["result"], "changes": s["changes"],
            });
            println!("{row}");
        }
        return;
    }
    let (mut changed, mut failed, mut unchanged) = (0, 0, 0);
    for s in &steps {
        let action = s["action"].as_str().unwrap_or("?");
        let result = s["result"].as_str().unwrap_or("");
        if action == "keep" {
            unchanged += 1;
        } else if step_failed(s) {
            failed += 1;
        } else {
            changed += 1;
        }
        println!(
            "{:<24} {:<8} {}",
            s["name"].as_str().unwrap_or("?"),
            action,
            result
        );
        if diff || action == "replace" {
            for c in s["changes"].as_array().into_iter().flatten() {
                println!(
                    "    {}: {} -> {}",
                    c["field"].as_str().unwrap_or("?"),
                    show_value(&c["old"]),
                    show_value(&c["new"])
                );
            }
        }
    }
    let verb = if data["check"] == true {
        "would change"
    } else {
        "changed"
    };
    if failed > 0 {
        println!("{changed} {verb}, {failed} failed, {unchanged} unchanged");
    } else {
        println!("{changed} {verb}, {unchanged} unchanged");
    }
}

/// Whether a step's result is a failure (`failed: REASON`): it did not change anything.
fn step_failed(step: &Value) -> bool {
    step["result"]
        .as_str()
        .is_some_and(|r| r.starts_with("failed"))
}

/// `warren apply`.
pub fn apply(state_dir: &Path, args: ApplyArgs) -> anyhow::Result<i32> {
    let data = match send(state_dir, &args.file, args.check, args.timeout) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("warren: error: {e:#}");
            return Ok(if args.detailed_exitcodes { 4 } else { 1 });
        }
    };
    print_steps(&data, args.json, args.diff);
    // The kernel counts as the summary line does: a failed step is a failure, not a change.
    let changed = data["changed"] == true;
    let failed = data["failed"] == true;
    Ok(match (args.detailed_exitcodes, changed, failed) {
        (false, _, true) => 1,
        (false, _, false) => 0,
        (true, false, false) => 0,
        (true, true, false) => 2,
        (true, false, true) => 4,
        (true, true, true) => 6,
    })
}

/// `warren diff`.
pub fn diff(state_dir: &Path, args: DiffArgs) -> anyhow::Result<i32> {
    let data = match send(state_dir, &args.file, true, 0) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("warren: error: {e:#}");
            return Ok(2);
        }
    };
    print_steps(&data, args.json, true);
    Ok(if data["changed"] == true { 1 } else { 0 })
}
