//! Why a launch failed: one error type for every step, and the exit status `warren run` maps it to.

use crate::state::StateError;
use crate::step::Step;

/// Why a launch failed. Nothing it created is left behind.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// The plan is not valid (say why).
    #[error("{0}")]
    Invalid(String),
    /// A requested protection is not available on this host and the user did not allow that.
    #[error(
        "{protection} is not available on this host ({detail}); refusing to start without it (use --allow-missing {protection} to run anyway, with less isolation)"
    )]
    Missing {
        /// The protection.
        protection: &'static str,
        /// What was found.
        detail: String,
    },
    /// The launcher is not single-threaded, so it must not fork.
    #[error(
        "the launcher has {threads} threads; launching must happen in a single-threaded process"
    )]
    MultiThreaded {
        /// How many threads it has.
        threads: usize,
    },
    /// Name or uid bookkeeping failed.
    #[error(transparent)]
    State(#[from] StateError),
    /// The cgroup could not be created or set up.
    #[error("cgroup setup failed")]
    Cgroup(#[from] warren_cgroup::CgroupError),
    /// The environment's network could not be set up.
    #[error("{step}")]
    Net {
        /// The step.
        step: Step,
        /// What went wrong.
        #[source]
        error: crate::net::NetError,
    },
    /// A parent-side step failed.
    #[error("{step}: {what}")]
    Parent {
        /// The step.
        step: Step,
        /// What was being done.
        what: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A step inside the new environment failed.
    #[error("{step}: {message}")]
    Child {
        /// The step.
        step: Step,
        /// The errno the step failed with (0 if none).
        errno: i32,
        /// What the child reported.
        message: String,
    },
    /// The command does not exist in the environment's root.
    #[error("command not found in the environment: {command} ({message})")]
    CommandNotFound {
        /// The command.
        command: String,
        /// What exec reported.
        message: String,
    },
    /// The command exists but cannot be executed.
    #[error("command cannot be executed in the environment: {command} ({message})")]
    CommandNotExecutable {
        /// The command.
        command: String,
        /// What exec reported.
        message: String,
    },
}

impl LaunchError {
    /// The exit status `warren run` uses for this error: 127 command not found, 126 command not
    /// executable, 125 any failure of Warren itself.
    pub fn exit_code(&self) -> i32 {
        match self {
            LaunchError::CommandNotFound { .. } => 127,
            LaunchError::CommandNotExecutable { .. } => 126,
            _ => 125,
        }
    }
}
