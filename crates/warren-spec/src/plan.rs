//! The planner: what `warren apply` must do to bring a host from what it runs to what the
//! manifest declares. [`plan`] is a pure function of the observed state and the desired
//! manifest: no I/O, no clock, and the same inputs always give the same steps in the same order
//! (sorted by environment name). `apply --check`, `--diff` and `--json` print its output; apply
//! carries it out; a second apply of the same file plans only [`Action::Keep`].
//!
//! Specs are compared field by field through their JSON form (`serde_json::to_value`), so a
//! [`Change`] carries the field's old and new value exactly as `--json` shows them (sizes in
//! bytes, cpus in millionths of a cpu).

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use crate::EnvName;
use crate::manifest::{Manifest, SpaceSpec};

/// What apply does to one environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Declared but not running under this kernel: start it.
    Create,
    /// Declared, running, and unchanged: leave it alone.
    Keep,
    /// Declared but different from (or no longer running as) what runs: stop it and start
    /// the declared one.
    Replace,
    /// Running under this kernel but no longer declared: stop it.
    Stop,
}

impl Action {
    /// Whether carrying out the step changes anything (every action but [`Action::Keep`]).
    pub fn changes_something(self) -> bool {
        self != Action::Keep
    }
}

/// One field that differs between what runs and what is declared.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Change {
    /// The [`SpaceSpec`] field (`memory`, `env`, ...), or `state` for the running state.
    pub field: String,
    /// Its value now; `null` for a field of an environment being created.
    pub old: Value,
    /// Its value after apply.
    pub new: Value,
}

/// What apply does to one environment, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Step {
    /// The environment's name.
    pub name: String,
    /// The action.
    pub action: Action,
    /// The fields that change, in the order [`SpaceSpec`] declares them; empty for `keep`.
    pub changes: Vec<Change>,
}

/// What the kernel has for an environment it manages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    /// The spec it was started from.
    pub spec: SpaceSpec,
    /// Its state as `ps` shows it: `running`, `restarting`, `exited`, `stopped` or `failed`.
    pub state: String,
}

impl Observed {
    /// Whether it is where its declaration wants it: running (or waiting out a restart's
    /// backoff), or finished the way its restart policy intends (`exited`). A `stopped` or
    /// `failed` one is not, and is started again.
    pub fn converged(&self) -> bool {
        matches!(self.state.as_str(), RUNNING | RESTARTING | EXITED)
    }

    /// Whether it runs now (or will again after its backoff).
    fn runs(&self) -> bool {
        matches!(self.state.as_str(), RUNNING | RESTARTING)
    }
}

/// The `state` values a [`Change`] may carry.
const RUNNING: &str = "running";
const RESTARTING: &str = "restarting";
const EXITED: &str = "exited";
const ABSENT: &str = "absent";

/// Plans the steps that take `observed` to `desired`: one per environment in either, sorted
/// by name.
///
/// - declared, not observed: [`Action::Create`], every field listed with `old: null`;
/// - observed, not declared: [`Action::Stop`], one change `state: STATE -> absent` (its
///   real state: `running`, `exited`, `stopped`, ...);
/// - both, specs equal, converged ([`Observed::converged`]): [`Action::Keep`], no changes;
/// - both, otherwise: [`Action::Replace`], the fields that differ, then `state: STATE ->
///   running` if it does not run now (`exited`, `stopped`, `failed`).
pub fn plan(observed: &BTreeMap<EnvName, Observed>, desired: &Manifest) -> Vec<Step> {
    let mut names: Vec<&EnvName> = observed.keys().chain(desired.spaces.keys()).collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .map(|name| step(name, observed.get(name), desired.spaces.get(name)))
        .collect()
}

fn step(name: &EnvName, have: Option<&Observed>, want: Option<&SpaceSpec>) -> Step {
    let (action, changes) = match (have, want) {
        (None, Some(want)) => {
            let changes = fields(want)
                .into_iter()
                .map(|(field, new)| change(field, Value::Null, new))
                .collect();
            (Action::Create, changes)
        }
        (Some(have), None) => (
            Action::Stop,
            vec![change("state", have.state.as_str().into(), ABSENT.into())],
        ),
        (Some(have), Some(want)) => {
            let mut changes: Vec<Change> = fields(&have.spec)
                .into_iter()
                .zip(fields(want))
                .filter(|((_, old), (_, new))| old != new)
                .map(|((field, old), (_, new))| change(field, old, new))
                .collect();
            // A converged one with equal fields is kept; otherwise it is (re)started, and the
            // state change says so when it does not run now.
            let replace = !changes.is_empty() || !have.converged();
            if replace && !have.runs() {
                changes.push(change("state", have.state.as_str().into(), RUNNING.into()));
            }
            let action = if !replace {
                Action::Keep
            } else {
                Action::Replace
            };
            (action, changes)
        }
        (None, None) => unreachable!("every planned name comes from one of the two maps"),
    };
    Step {
        name: name.to_string(),
        action,
        changes,
    }
}

fn change(field: &str, old: Value, new: Value) -> Change {
    Change {
        field: field.to_owned(),
        old,
        new,
    }
}

/// Every field of `spec` with its JSON value, in declaration order. The destructuring is
/// exhaustive so that a field added to [`SpaceSpec`] cannot be forgotten here.
fn fields(spec: &SpaceSpec) -> Vec<(&'static str, Value)> {
    let SpaceSpec {
        image,
        command,
        env,
        memory,
        pids,
        cpus,
        tmpfs_size,
        restart,
        max_restarts,
        may_send,
        may_discover,
        mailbox_capacity,
        mailbox_bytes,
        allow_missing,
        capabilities,
        net,
        seccomp,
        accept_from,
        may_spawn,
        init,
        with,
        volumes,
        read_only,
        writable_root_size,
        add_hosts,
        dns,
    } = spec;
    fn json<T: Serialize>(v: &T) -> Value {
        // Every field is plain data (strings, integers, maps with string keys): encoding it
        // cannot fail.
        serde_json::to_value(v).unwrap_or(Value::Null)
    }
    vec![
        ("image", json(image)),
        ("command", json(command)),
        ("env", json(env)),
        ("memory", json(memory)),
        ("pids", json(pids)),
        ("cpus", json(cpus)),
        ("tmpfs_size", json(tmpfs_size)),
        ("restart", json(restart)),
        ("max_restarts", json(max_restarts)),
        ("may_send", json(may_send)),
        ("may_discover", json(may_discover)),
        ("mailbox_capacity", json(mailbox_capacity)),
        ("mailbox_bytes", json(mailbox_bytes)),
        ("allow_missing", json(allow_missing)),
        ("capabilities", json(capabilities)),
        ("net", json(net)),
        ("seccomp", json(seccomp)),
        ("accept_from", json(accept_from)),
        ("may_spawn", json(may_spawn)),
        ("init", json(init)),
        ("with", json(with)),
        ("volumes", json(volumes)),
        ("read_only", json(read_only)),
        ("writable_root_size", json(writable_root_size)),
        ("add_hosts", json(add_hosts)),
        ("dns", json(dns)),
    ]
}

/// Counts the steps by action: `(creates, keeps, replaces, stops)`.
pub fn summary(steps: &[Step]) -> (usize, usize, usize, usize) {
    let count = |a: Action| steps.iter().filter(|s| s.action == a).count();
    (
        count(Action::Create),
        count(Action::Keep),
        count(Action::Replace),
        count(Action::Stop),
    )
}

#[cfg(test)]
mod tests;
