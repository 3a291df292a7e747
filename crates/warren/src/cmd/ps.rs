//! `warren ps` and `warren inspect`: what runs, from two sources. Every running environment's
//! launcher keeps a record in its name lock (so `ps` works without a kernel); the kernel daemon,
//! when it runs, adds what it manages: declared specs, restart counts, and environments that
//! are not running (exited, restarting, stopped, failed), which `ps -a` shows.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use serde_json::{Value, json};
use warren_sandbox::state::StateDir;

use crate::cli::{InspectArgs, PsArgs};
use crate::control::{self, ControlRequest};

/// One row: the live record (if running) and the kernel's managed entry (if managed).
#[derive(Default)]
struct Row {
    live: Option<Value>,
    managed: Option<Value>,
}

/// The remote mailboxes the kernel has proxies for, with their host's attestation gate
/// (`cut off: attestation failed (REASON) at TIME`, or admitted): rows of the `list` answer.
fn remote_rows(state_dir: &Path) -> Vec<Value> {
    if control::connect_daemon(state_dir).ok().flatten().is_none() {
        return Vec::new();
    }
    control::request(state_dir, &ControlRequest::List)
        .ok()
        .filter(|r| r.ok)
        .and_then(|r| r.data)
        .and_then(|d| d["remote"].as_array().cloned())
        .unwrap_or_default()
}

fn rows(state_dir: &Path) -> anyhow::Result<BTreeMap<String, Row>> {
    let state = StateDir::new(state_dir);
    let mut rows: BTreeMap<String, Row> = BTreeMap::new();
    for (name, bytes) in state
        .live_records()
        .context("cannot read the list of environments")?
    {
        let v = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| json!({ "name": name, "state": "starting" }));
        rows.entry(name).or_default().live = Some(v);
    }
    if control::connect_daemon(state_dir).ok().flatten().is_some() {
        // A kernel runs: its answer is needed (a list without the managed environments would
        // be wrong, not partial).
        let resp = control::request(state_dir, &ControlRequest::List)
            .context("ask the kernel for the managed environments")?;
        if !resp.ok {
            anyhow::bail!(
                "the kernel refused the list of managed environments: {}",
                resp.error.unwrap_or_default()
            );
        }
        for e in resp
            .data
            .and_then(|d| d["envs"].as_array().cloned())
            .unwrap_or_default()
        {
            if let Some(n) = e["name"].as_str().map(str::to_owned) {
                rows.entry(n).or_default().managed = Some(e);
            }
        }
    }
    Ok(rows)
}

/// The command a managed environment that is not running would be launched with, as its
/// launch records it while it runs: the declared command, after the init's prefix unless the
/// manifest says `init = false` (an image's command left to its configuration is empty here).
fn declared_command(spec: &Value) -> Value {
    let declared = spec["command"].as_array().cloned().unwrap_or_default();
    if spec["init"] == false || declared.is_empty() {
        return Value::Array(declared);
    }
    let mut argv: Vec<Value> = super::run::INIT_PREFIX.iter().map(|s| json!(s)).collect();
    argv.extend(declared);
    Value::Array(argv)
}

impl Row {
    fn state(&self) -> String {
        match (&self.live, &self.managed) {
            (_, Some(m)) if m["state"] != "running" => m["state"].as_str().unwrap_or("?").into(),
            (Some(l), _) => l["state"].as_str().unwrap_or("running").into(),
            (None, Some(_)) => "starting".into(),
            (None, None) => "?".into(),
        }
    }

    fn json(&self, name: &str) -> Value {
        let l = self.live.clone().unwrap_or(Value::Null);
        let m = self.managed.clone().unwrap_or(Value::Null);
        json!({
            "name": name,
            "state": self.state(),
            "pid": l["pid"],
            "command": if l.is_null() { declared_command(&m["spec"]) } else { l["command"].clone() },
            "started": l["started"],
            "uid_base": l["applied"]["uid_map"]["host_base"],
            "managed": !m.is_null(),
            "restart_policy": m["restart_policy"],
            "restarts": m["restarts"],
            "last_exit": m["last_exit"],
            "address": l["applied"]["net"]["address"],
            "published": l["applied"]["net"]["published"],
            "parent": m["parent"],
            "children": m.get("children").cloned().unwrap_or_else(|| json!([])),
        })
    }
}

/// `warren ps`.
pub fn ps(state_dir: &Path, args: PsArgs) -> anyhow::Result<i32> {
    let mut rows: Vec<(String, Row)> = rows(state_dir)?
        .into_iter()
        .filter(|(_, r)| args.all || r.live.is_some())
        .collect();
    let mut depth = BTreeMap::new();
    if args.tree {
        rows = tree_order(rows, &mut depth);
    }
    let remote = remote_rows(state_dir);
    if args.quiet {
        for (name, _) in &rows {
            println!("{name}");
        }
    } else if args.json {
        for (name, r) in &rows {
            println!("{}", r.json(name));
        }
        for r in &remote {
            println!(
                "{}",
                json!({ "name": r["address"], "remote": true, "host": r["host"],
                        "state": r["state"] })
            );
        }
    } else {
        println!(
            "{:<24} {:<11} {:>8} {:>12} {:>8}  COMMAND",
            "NAME", "STATE", "PID", "HOST UID", "RESTARTS"
        );
        for (name, r) in &rows {
            let v = r.json(name);
            let indent = depth.get(name).copied().unwrap_or(0);
            let shown = format!("{}{name}", "  ".repeat(indent));
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
                "{:<24} {:<11} {:>8} {:>12} {:>8}  {}",
                shown,
                v["state"].as_str().unwrap_or("?"),
                v["pid"].as_i64().map(|p| p.to_string()).unwrap_or_default(),
                v["uid_base"]
                    .as_u64()
                    .map(|p| p.to_string())
                    .unwrap_or_default(),
                v["restarts"]
                    .as_u64()
                    .map(|p| p.to_string())
                    .unwrap_or_default(),
                cmd
            );
        }
        if !remote.is_empty() {
            println!("\n{:<24} {:<11} STATE", "REMOTE MAILBOX", "HOST");
            for r in &remote {
                println!(
                    "{:<24} {:<11} {}",
                    r["address"].as_str().unwrap_or("?"),
                    r["host"].as_str().unwrap_or("?"),
                    r["state"].as_str().unwrap_or("?")
                );
            }
        }
    }
    Ok(0)
}

/// `ps --tree`: every environment after the one that spawned it (depth-first, children in name
/// order), with its depth; an environment whose parent is not listed is a root.
fn tree_order(rows: Vec<(String, Row)>, depth: &mut BTreeMap<String, usize>) -> Vec<(String, Row)> {
    let parent_of = |r: &Row| {
        r.managed
            .as_ref()
            .and_then(|m| m["parent"].as_str().map(str::to_owned))
    };
    let names: std::collections::BTreeSet<String> = rows.iter().map(|(n, _)| n.clone()).collect();
    let mut kids: BTreeMap<Option<String>, Vec<String>> = BTreeMap::new();
    for (name, r) in &rows {
        let p = parent_of(r).filter(|p| names.contains(p) && p != name);
        kids.entry(p).or_default().push(name.clone());
    }
    let mut by_name: BTreeMap<String, Row> = rows.into_iter().collect();
    let mut out = Vec::with_capacity(by_name.len());
    let mut stack: Vec<(String, usize)> = kids
        .get(&None)
        .into_iter()
        .flatten()
        .rev()
        .map(|n| (n.clone(), 0))
        .collect();
    while let Some((name, d)) = stack.pop() {
        let Some(row) = by_name.remove(&name) else {
            continue;
        };
        depth.insert(name.clone(), d);
        for k in kids.get(&Some(name.clone())).into_iter().flatten().rev() {
            stack.push((k.clone(), d + 1));
        }
        out.push((name, row));
    }
    // A cycle (never made by the kernel) would leave rows unvisited: list them as roots.
    out.extend(by_name);
    out
}

/// `warren inspect`: the live record (applied isolation, cgroup, uid range) merged with the
/// kernel's managed entry (declared spec, restart state), state named in OCI's vocabulary.
pub fn inspect(state_dir: &Path, args: InspectArgs) -> anyhow::Result<i32> {
    if args.name.contains('@') {
        // A remote mailbox (`db@beta`): its proxy, with its host's attestation gate.
        return match remote_rows(state_dir)
            .into_iter()
            .find(|r| r["address"] == args.name.as_str())
        {
            Some(r) => {
                println!("{}", serde_json::to_string_pretty(&r)?);
                Ok(0)
            }
            None => {
                eprintln!(
                    "warren: error: the kernel has no proxy for the remote mailbox {:?}",
                    args.name
                );
                Ok(1)
            }
        };
    }
    let mut rows = rows(state_dir)?;
    let Some(r) = rows.remove(&args.name) else {
        eprintln!("warren: error: no environment named {:?}", args.name);
        return Ok(1);
    };
    let oci = match (&r.live, r.state().as_str()) {
        (Some(_), _) => "running",
        (None, "restarting") => "creating",
        (None, _) => "stopped",
    };
    let mut out = r
        .live
        .clone()
        .unwrap_or_else(|| json!({ "name": args.name }));
    out["state"] = json!(r.state());
    out["oci_state"] = json!(oci);
    if let Some(m) = &r.managed {
        if r.live.is_none() {
            out["command"] = declared_command(&m["spec"]);
        }
        out["spec"] = m["spec"].clone();
        out["restart_policy"] = m["restart_policy"].clone();
        out["restarts"] = m["restarts"].clone();
        out["last_exit"] = m["last_exit"].clone();
        out["launcher_pid"] = m["launcher_pid"].clone();
        out["parent"] = m["parent"].clone();
        out["children"] = m.get("children").cloned().unwrap_or_else(|| json!([]));
    }
    // The launch's event-log record (measured launch), as the launcher recorded it.
    out["measurement"] = out["applied"]["measurement"].clone();
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(0)
}
