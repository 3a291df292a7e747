//! The measured-launch hook: how the caller measures a launch without the launcher knowing what
//! measuring means.

use crate::applied::{Applied, Measurement};
use crate::plan::LaunchPlan;

/// The measured-launch hook. The launcher calls it once per launch, in the parent, after the
/// child was let go (so that measuring overlaps the child's own setup) and before the child is
/// allowed to `execve`: the workload's first instruction runs only once the hook has returned
/// its [`Measurement`]. An error fails the launch at step `measure`, and nothing is left behind.
///
/// The launcher knows nothing of what measuring means; the `warren` binary passes a hook that
/// writes the event log and extends the root of trust (`crates/warren/src/measure.rs`).
pub trait Measure {
    /// Measure and record the launch of `plan`, whose isolation is `applied` (everything but the
    /// results the child reports later) and whose workload gets the environment `env`.
    fn measure(
        &mut self,
        plan: &LaunchPlan,
        applied: &Applied,
        env: &[(String, String)],
    ) -> Result<Measurement, Box<dyn std::error::Error + Send + Sync>>;
}

impl<F> Measure for F
where
    F: FnMut(
        &LaunchPlan,
        &Applied,
        &[(String, String)],
    ) -> Result<Measurement, Box<dyn std::error::Error + Send + Sync>>,
{
    fn measure(
        &mut self,
        plan: &LaunchPlan,
        applied: &Applied,
        env: &[(String, String)],
    ) -> Result<Measurement, Box<dyn std::error::Error + Send + Sync>> {
        self(plan, applied, env)
    }
}

/// The error and its causes, one sentence: `what: cause: cause`.
pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(cause) = src {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        src = cause.source();
    }
    s
}
