//! The daemon's side of spawn (protocol version 3): what it does with the kernel's
//! `Action::Spawn` and `Action::Stop`.
//!
//! Starting a spawned child needs the single-threaded launcher to start an environment from a
//! template with its cgroup nested under the parent's; that glue is not built yet, so every
//! spawn the kernel accepts is answered `spawn-failed` with a detail that says so, and the
//! kernel returns everything it reserved. A stop (a STOP handle, or a linked child whose parent
//! ended) is carried out like `warren stop` for the environments this daemon supervises.

use super::Daemon;
use super::supervise::AfterStop;

/// Grace before SIGKILL for a stop that does not ask to kill at once, in milliseconds (the
/// default of `warren stop`).
const STOP_GRACE_MS: u64 = 10_000;

impl Daemon {
    /// `Action::Spawn`: refused until the launcher glue exists (see the module docs).
    pub(super) fn carry_out_spawn(&mut self, order: &warren_kernel::SpawnOrder) {
        let why = format!(
            "this kernel cannot start children yet: the launcher does not serve templates (child \
             {:?} of template {:?})",
            order.child, order.template
        );
        tracing::warn!(parent = %order.parent_name, child = %order.child, "{why}");
        let now = self.now();
        self.kernel.spawn_failed(order.ticket, &why, now);
    }

    /// `Action::Stop`: stop a supervised environment (SIGTERM, then SIGKILL after the grace
    /// period, or at once with `kill`).
    pub(super) fn carry_out_stop(&mut self, name: &str, kill: bool, why: &str) {
        tracing::info!(env = %name, kill, "stopping: {why}");
        let grace = if kill { 0 } else { STOP_GRACE_MS };
        self.begin_stop(name, grace, AfterStop::Stay);
    }
}
