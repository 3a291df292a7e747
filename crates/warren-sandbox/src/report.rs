//! The child's report to the parent during a launch: typed messages over the report pipe.
//!
//! The child writes one [`Report`] per line, each a JSON object (`serde_json`), to a close-on-exec
//! pipe; the parent reads until end-of-file — which comes at the child's successful `execve` (the
//! pipe closes with it) or at its exit after a failure — and decodes every line into a
//! [`Report`]. A line that does not decode is itself a launch error: nothing is matched by
//! string. The messages, in the order the child can send them, are listed in
//! `docs/launch-sequence.md`.

use std::io::Write;

use serde::{Deserialize, Serialize};

use crate::step::Step;

/// One message from the child.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "report", rename_all = "kebab-case", deny_unknown_fields)]
pub(crate) enum Report {
    /// `eth0` is configured inside (step `net-config`), in `micros` microseconds.
    NetConfig {
        /// How long configuring took.
        micros: u64,
    },
    /// How far Landlock could be enforced: `full`, `partial` or `none`.
    Landlock {
        /// The status.
        status: String,
    },
    /// Whether the seccomp filter was installed (false only when allowed to be missing).
    Seccomp {
        /// Installed or not.
        installed: bool,
    },
    /// The child is about to `execve` the workload.
    Exec {},
    /// A step failed; the child exits after sending this.
    Error {
        /// The step.
        step: Step,
        /// The errno the step failed with (0 if none).
        errno: i32,
        /// What was being done, and the cause.
        message: String,
    },
}

impl Report {
    /// Send the report as one line. Errors are ignored: a parent that is gone cannot be told.
    pub(crate) fn send(&self, to: &mut impl Write) {
        if let Ok(mut line) = serde_json::to_vec(self) {
            line.push(b'\n');
            let _ = to.write_all(&line);
        }
    }

    /// Decode everything the child sent, in order.
    pub(crate) fn decode_all(bytes: &[u8]) -> Result<Vec<Report>, String> {
        bytes
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| {
                serde_json::from_slice(l).map_err(|e| {
                    format!(
                        "malformed report from the environment ({e}): {:?}",
                        String::from_utf8_lossy(l)
                    )
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_report_round_trips_through_one_line() {
        let all = [
            Report::NetConfig { micros: 812 },
            Report::Landlock {
                status: "full".into(),
            },
            Report::Seccomp { installed: true },
            Report::Exec {},
            Report::Error {
                step: Step::MountRoot,
                errno: 13,
                message: "bind /x\non two lines: Permission denied".into(),
            },
        ];
        let mut wire = Vec::new();
        for r in &all {
            r.send(&mut wire);
        }
        assert_eq!(wire.iter().filter(|b| **b == b'\n').count(), all.len());
        assert_eq!(Report::decode_all(&wire).unwrap(), all);
    }

    #[test]
    fn the_wire_form_is_tagged_json_with_step_names() {
        let mut wire = Vec::new();
        Report::Error {
            step: Step::PivotRoot,
            errno: 2,
            message: "m".into(),
        }
        .send(&mut wire);
        assert_eq!(
            String::from_utf8(wire).unwrap(),
            "{\"report\":\"error\",\"step\":\"pivot-root\",\"errno\":2,\"message\":\"m\"}\n"
        );
    }

    #[test]
    fn anything_else_is_refused_not_guessed() {
        for bad in [
            &b"info exec\n"[..],
            b"{\"report\":\"exec\",\"extra\":1}\n",
            b"{\"report\":\"error\",\"step\":\"no-such-step\",\"errno\":0,\"message\":\"\"}\n",
            b"{\"report\":\"seccomp\"}\n",
        ] {
            let e = Report::decode_all(bad).unwrap_err();
            assert!(
                e.starts_with("malformed report from the environment"),
                "{e}"
            );
        }
        assert_eq!(Report::decode_all(b"").unwrap(), vec![]);
    }
}
