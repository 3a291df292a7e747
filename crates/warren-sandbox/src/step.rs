//! The named steps of a launch, in the order they run.
//!
//! The order here is the order of `docs/launch-sequence.md`, of the code in `launch` (parent) and
//! `child`, and of the names tests pass in `WARREN_FAULT_INJECT`. This module depends on nothing
//! else in the crate.

use serde::{Deserialize, Serialize};

/// The steps of a launch, in the order they run (parent steps first, then the child's).
/// `docs/launch-sequence.md` describes each; the names appear in errors and in
/// `WARREN_FAULT_INJECT`, which tests use to make a launch fail at a chosen step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[allow(missing_docs)]
pub enum Step {
    Validate,
    Features,
    SeccompCompile,
    ClaimName,
    ClaimUids,
    NetClaim,
    Cgroup,
    NetRules,
    Clone,
    UidMap,
    NetLink,
    WaitParent,
    CgroupAttach,
    SetIds,
    ParentDeath,
    CgroupNs,
    Hostname,
    Loopback,
    NetConfig,
    MountPrivate,
    MountRoot,
    MountProc,
    MountDev,
    MountTmp,
    MaskPaths,
    ReadonlyRoot,
    MountVolumes,
    PivotRoot,
    Rlimits,
    Fds,
    Setsid,
    Landlock,
    Capabilities,
    NoNewPrivs,
    Seccomp,
    Measure,
    Exec,
}

impl Step {
    /// Every step, in launch order.
    pub const ALL: [Step; 37] = [
        Step::Validate,
        Step::Features,
        Step::SeccompCompile,
        Step::ClaimName,
        Step::ClaimUids,
        Step::NetClaim,
        Step::Cgroup,
        Step::NetRules,
        Step::Clone,
        Step::UidMap,
        Step::NetLink,
        Step::WaitParent,
        Step::CgroupAttach,
        Step::SetIds,
        Step::ParentDeath,
        Step::CgroupNs,
        Step::Hostname,
        Step::Loopback,
        Step::NetConfig,
        Step::MountPrivate,
        Step::MountRoot,
        Step::MountProc,
        Step::MountDev,
        Step::MountTmp,
        Step::MaskPaths,
        Step::ReadonlyRoot,
        Step::MountVolumes,
        Step::PivotRoot,
        Step::Rlimits,
        Step::Fds,
        Step::Setsid,
        Step::Landlock,
        Step::Capabilities,
        Step::NoNewPrivs,
        Step::Seccomp,
        Step::Measure,
        Step::Exec,
    ];

    /// The step's name, as in errors and `docs/launch-sequence.md`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Step::Validate => "validate",
            Step::Features => "features",
            Step::SeccompCompile => "seccomp-compile",
            Step::ClaimName => "claim-name",
            Step::ClaimUids => "claim-uids",
            Step::Cgroup => "cgroup",
            Step::Clone => "clone",
            Step::UidMap => "uid-map",
            Step::CgroupAttach => "cgroup-attach",
            Step::WaitParent => "wait-parent",
            Step::SetIds => "set-ids",
            Step::ParentDeath => "parent-death",
            Step::CgroupNs => "cgroup-ns",
            Step::Hostname => "hostname",
            Step::Loopback => "loopback",
            Step::NetClaim => "net-claim",
            Step::NetRules => "net-rules",
            Step::NetLink => "net-link",
            Step::NetConfig => "net-config",
            Step::MountPrivate => "mount-private",
            Step::MountRoot => "mount-root",
            Step::MountProc => "mount-proc",
            Step::MountDev => "mount-dev",
            Step::MountTmp => "mount-tmp",
            Step::MaskPaths => "mask-paths",
            Step::ReadonlyRoot => "readonly-root",
            Step::MountVolumes => "mount-volumes",
            Step::PivotRoot => "pivot-root",
            Step::Rlimits => "rlimits",
            Step::Fds => "fds",
            Step::Setsid => "setsid",
            Step::Landlock => "landlock",
            Step::Capabilities => "capabilities",
            Step::NoNewPrivs => "no-new-privs",
            Step::Seccomp => "seccomp",
            Step::Measure => "measure",
            Step::Exec => "exec",
        }
    }

    /// The step named `s`.
    pub fn parse(s: &str) -> Option<Step> {
        Step::ALL.into_iter().find(|st| st.as_str() == s)
    }
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed step: which one, what it was doing, and the error.
pub(crate) type StepResult<T = ()> = Result<T, (Step, String, std::io::Error)>;

/// `r` with its error labelled: the step it failed in and what was being done.
pub(crate) fn at<T>(
    step: Step,
    what: impl Fn() -> String,
    r: rustix::io::Result<T>,
) -> StepResult<T> {
    r.map_err(|e| (step, what(), e.into()))
}

/// [`at`] for a standard library result.
pub(crate) fn io_at<T>(
    step: Step,
    what: impl Fn() -> String,
    r: std::io::Result<T>,
) -> StepResult<T> {
    r.map_err(|e| (step, what(), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_back_and_are_unique() {
        for step in Step::ALL {
            assert_eq!(Step::parse(step.as_str()), Some(step));
        }
        let mut names: Vec<_> = Step::ALL.iter().map(Step::as_str).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Step::ALL.len());
        assert_eq!(Step::parse("no-such-step"), None);
    }

    /// `docs/launch-sequence.md` has one numbered heading per step, `### N. \`name\``, in the
    /// order the code runs them: the document and [`Step::ALL`] cannot drift apart.
    #[test]
    fn the_launch_sequence_document_lists_the_steps_in_order() {
        let doc = include_str!("../../../docs/launch-sequence.md");
        let documented: Vec<&str> = doc
            .lines()
            .filter_map(|l| l.strip_prefix("### "))
            .filter_map(|l| l.split_once(". `"))
            .filter(|(num, _)| num.starts_with(|c: char| c.is_ascii_digit()))
            .filter_map(|(_, rest)| rest.split('`').next())
            .collect();
        let code: Vec<&str> = Step::ALL.iter().map(Step::as_str).collect();
        assert_eq!(documented, code);
    }
}
