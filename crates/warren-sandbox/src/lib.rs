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
//! child side in `child`. The security policy those steps apply is data in [`policy`] and
//! `seccomp/policy.json`.
//!
//! **Invariant:** nothing here starts a thread. The launcher forks with `clone3`, which is only
//! sound in a single-threaded process; the daemon therefore launches through a separate
//! single-threaded launcher process, never from inside its async runtime.
#![forbid(unsafe_code)]

pub mod cgroup;
mod child;
mod confine;
pub mod elf;
pub mod features;
pub mod launch;
mod measure;
pub mod net;
pub mod plan;
pub mod policy;
mod rootfs;
pub mod seccomp;
pub mod state;

pub use launch::{Applied, LaunchError, Running, Step, launch, launch_with_mailbox};
pub use plan::{LaunchPlan, Protection, RootSource, RunAs};
