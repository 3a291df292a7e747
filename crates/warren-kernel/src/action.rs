//! What the kernel asks its driver to do: answer a request, or write an audit record.

use serde::Serialize;
use warren_proto::{Handle, Limits, RequestId, Response};

use crate::{EnvId, Millis};

/// One thing for the driver to do, taken with [`Kernel::poll_action`](crate::Kernel::poll_action)
/// in the order the kernel decided them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send `response` to environment `env` as the answer to its request `id`.
    Respond {
        /// The environment whose connection gets the frame.
        env: EnvId,
        /// The request being answered.
        id: RequestId,
        /// The answer.
        response: Response,
    },
    /// Append this record to the audit log (one JSON line).
    Audit(AuditRecord),
    /// Ask the root of trust for a quote about environment `name`'s launch record binding
    /// `data` to `nonce`, and answer request `id` of `env` with it (`Response::Quote`) or with
    /// `ErrorCode::AttestFailed`. The kernel decides who may attest to what; signing is I/O.
    Attest {
        /// The environment that asked.
        env: EnvId,
        /// Its request.
        id: RequestId,
        /// Its name: the subject of the quote.
        name: String,
        /// The verifier's nonce.
        nonce: Vec<u8>,
        /// The caller's data.
        data: Vec<u8>,
    },
    /// Carry this message to another host (federation): the sender has been answered `ok`,
    /// so the driver must make it durable before that answer leaves.
    Forward(Box<crate::Outbound>),
    /// Start a child environment from a template (protocol version 3, `spawn`): the kernel has
    /// decided the spawn is allowed and reserved its place; the driver starts it (through the
    /// single-threaded launcher) and reports with [`Kernel::spawned`](crate::Kernel::spawned)
    /// or [`Kernel::spawn_failed`](crate::Kernel::spawn_failed).
    Spawn(Box<SpawnOrder>),
    /// Stop environment `env` (SIGTERM then SIGKILL after the grace period; `kill`: SIGKILL at
    /// once): a `Stop` request on a STOP handle, or a linked child whose parent ended. The
    /// driver calls [`Kernel::remove_env`](crate::Kernel::remove_env) once it has ended.
    Stop {
        /// The environment to stop.
        env: EnvId,
        /// Its name.
        name: String,
        /// Kill at once.
        kill: bool,
        /// Why, for the log.
        why: String,
    },
    /// A message injected from another host ([`Kernel::inject`](crate::Kernel::inject)) left
    /// the kernel: delivered to a receive, or discarded (`delivered: false`) because its
    /// mailbox died. The driver may now acknowledge it to the broker.
    Settled {
        /// The ticket the driver gave it.
        ticket: u64,
        /// Whether a receive took it.
        delivered: bool,
    },
}

/// A denied request (or a message the kernel had to discard), as the audit log keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditRecord {
    /// When, in the driver's milliseconds.
    pub at: Millis,
    /// Who: the name of the environment that asked (or whose mailbox was affected).
    pub env: String,
    /// What: the operation (`send`, `recv`, `lookup`, `attenuate`, `revoke`, `drop`, `monitor`,
    /// `create-mailbox`, `whoami`, `hello`, or `end` when an environment ended).
    pub op: &'static str,
    /// The handle the request named, if it named one.
    pub handle: Option<Handle>,
    /// The mailbox concerned (`db`, `db/session`) or the name looked up, where known.
    pub target: Option<String>,
    /// The error code answered ([`ErrorCode::as_str`](warren_proto::ErrorCode::as_str)).
    pub code: &'static str,
    /// Why, for a person reading the log (more precise than the answer the client got).
    pub reason: String,
    /// Set on an aggregate: this record stands for `count` denials of the same environment,
    /// operation and code between `first` and `last` (the fields above are the first one's),
    /// which the per-environment rate limit kept from being written one by one.
    #[serde(flatten)]
    pub repeated: Option<Repeated>,
}

/// How many denials an aggregated audit record stands for, and when they happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Repeated {
    /// How many (at least 1).
    pub count: u64,
    /// When the first was decided.
    pub first: Millis,
    /// When the last was decided.
    pub last: Millis,
}

/// What the driver needs to start a spawned child: the template names what runs (the driver
/// keeps its image, command and environment); the rest is what the spawner chose, already
/// checked against the template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpawnOrder {
    /// The ticket to report the outcome under.
    pub ticket: u64,
    /// The spawner.
    pub parent: EnvId,
    /// The spawner's name (its launch record is the child's parent record).
    pub parent_name: String,
    /// The template.
    pub template: String,
    /// The child's name.
    pub child: String,
    /// Arguments to append to the template's command.
    pub args: Vec<String>,
    /// Variables to set, on top of the template's.
    pub env: Vec<(String, String)>,
    /// The child's limits: what the spawner asked, or the ceiling where it did not ask.
    pub limits: Limits,
    /// Whether the child outlives its parent.
    pub detach: bool,
}
