//! Version 3's spawn vocabulary: what a [`Request::Spawn`](crate::Request::Spawn) asks for
//! ([`Spawn`], [`Limits`]) and what the kernel answers ([`Spawned`]). A program holding a handle
//! with the SPAWN right on a template (`[template.NAME]` in the manifest) creates a child
//! environment from it, passing **initial names**: `(name, handle)` pairs from its own table
//! that become the child's whole table besides its own mailbox. `docs/protocol.md` section 16
//! specifies the bytes.

use crate::types::Handle;

/// Most arguments a spawn may append to the template's command.
pub const MAX_SPAWN_ARGS: usize = 64;

/// Most bytes of one argument, and of one variable's value.
pub const MAX_SPAWN_TEXT: usize = 4096;

/// Most variables a spawn may set.
pub const MAX_SPAWN_ENV: usize = 64;

/// Most initial names a spawn may pass.
pub const MAX_SPAWN_NAMES: usize = 64;

/// Resource limits a spawner asks for, each at most what the template (and the SPAWN handle)
/// allows; `None` takes the ceiling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Limits {
    /// Memory, in bytes.
    pub memory: Option<u64>,
    /// Most processes and threads.
    pub pids: Option<u64>,
    /// CPU, in millionths of a cpu (500000 = half a cpu).
    pub cpus: Option<u64>,
    /// Size of `/tmp`, in bytes.
    pub tmpfs_size: Option<u64>,
}

/// A request to create a child environment from a template.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Spawn {
    /// A handle with SPAWN on the template.
    pub handle: Handle,
    /// The child's name suffix: the child is `TEMPLATE-SUFFIX`; `None` lets the kernel number it.
    pub suffix: Option<String>,
    /// Arguments appended to the template's command (only if the template has `args = true`).
    pub args: Vec<String>,
    /// Variables to set (only those the template's `env_allow` lists).
    pub env: Vec<(String, String)>,
    /// Limits, each at most the template's.
    pub limits: Limits,
    /// Let the child outlive the spawner (only if the template has `detach = true`).
    pub detach: bool,
    /// The child's initial names: each `(name, handle)` installs a capability derived from the
    /// spawner's `handle` (which needs GRANT) in the child's table under `name`.
    pub names: Vec<(String, Handle)>,
}

/// The answer to a spawn: the child runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spawned {
    /// The child's environment name (`TEMPLATE-SUFFIX`).
    pub child: String,
    /// A handle to the child's default mailbox (SEND|MONITOR).
    pub mailbox: Handle,
    /// A handle to the child itself (STOP).
    pub control: Handle,
    /// The reference the `down` notice for the child will carry.
    pub reference: u64,
}
