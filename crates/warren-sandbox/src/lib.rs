//! Start one Warren environment from a launch plan.
//!
//! An environment is a process tree that the operating system isolates completely: its own user,
//! pid, mount, uts, ipc, cgroup and network namespaces; a private read-only root entered with
//! `pivot_root`; a writable, size-limited `/tmp`; a fresh `/proc` with the sensitive paths masked;
//! a minimal `/dev`; cgroup limits; no capabilities; `no_new_privs`; Landlock; a seccomp
//! allow-list; and a host uid range of its own.
//!
//! The entry point is [`launch::launch`], which runs the ordered steps of
//! `docs/launch-sequence.md` in a single-threaded process: the parent side in [`launch`], the
//! child side in `child`. The security policy those steps apply is data in [`policy`] and in
//! the `warren-seccomp` crate; cgroups are `warren-cgroup`'s, and a `--binary` root arrives
//! already resolved by `warren-elf`.
//!
//! The launcher knows nothing of attestation: the caller passes a [`Measure`] hook, which
//! the parent runs after the child's "go" byte and before its "measured" byte, so the workload's
//! first instruction runs only after the hook returned (see `docs/launch-sequence.md`).
//!
//! **Invariant:** nothing here starts a thread. The launcher forks with `clone3`, which is only
//! sound in a single-threaded process; the daemon therefore launches through a separate
//! single-threaded launcher process, never from inside its async runtime.
#![forbid(unsafe_code)]

pub mod applied;
mod child;
mod confine;
pub mod error;
pub mod etcfiles;
pub mod features;
pub mod handoff;
pub mod hook;
pub mod launch;
pub mod net;
mod overlay;
pub mod plan;
pub mod policy;
mod pty;
mod refusals;
mod report;
mod rootfs;
mod skeleton;
pub mod state;
pub mod step;

pub use applied::{Applied, Measurement};
pub use error::LaunchError;
pub use hook::Measure;
pub use launch::{
    ExitState, Parentage, Running, Sidework, Supervised, launch, launch_as, launch_with_mailbox,
    reclaim_leftovers,
};
pub use plan::{
    INIT_PREFIX, LaunchPlan, MountKind, MountSpec, PreparedTree, Protection, RootSource, RunAs,
    search_path,
};
pub use step::Step;
