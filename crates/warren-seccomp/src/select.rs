//! Per-environment seccomp profiles: `--seccomp default|strict|FILE` and manifest `seccomp`.
//!
//! `default` and `strict` are built in (compiled at build time). A profile FILE is JSON:
//!
//! ```json
//! { "base": "default",
//!   "add": [ { "syscall": "mbind", "reason": "numactl --membind for the database" } ] }
//! ```
//!
//! `base` is `default` or `strict`; `add` lists syscalls to allow on top, each with a reason. A
//! profile can only add, and only from the safe set (`addable` in `policy.json`) or what
//! `strict` took out of the default: a syscall on the deny list, one the default allows only by
//! arguments, an unknown name or anything else is refused with the reason (`docs/seccomp.md`).
//! The file is read and compiled once, when the launch is planned; the environment's record
//! carries the digest of the program compiled from it.

use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;

use crate::{Arch, Profile, Program, SeccompError};

/// Largest profile file read, in bytes.
const MAX_FILE: u64 = 1 << 20;

/// Which profile an environment runs under.
#[derive(Debug, Clone, Default)]
pub enum Selection {
    /// The reviewed default (`policy.json`).
    #[default]
    Default,
    /// The default less `strict_remove`.
    Strict,
    /// A profile file, compiled when it was read.
    Custom {
        /// `file PATH (sha256:<digest of the file>)`, for the record.
        name: String,
        /// Whether the file's base is `strict`.
        strict: bool,
        /// The syscalls the file adds to its base.
        added: Vec<String>,
        /// The plain program.
        plain: Arc<Program>,
        /// The notifying program.
        notifying: Arc<Program>,
    },
}

/// A profile file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfileFile {
    base: String,
    #[serde(default)]
    add: Vec<Addition>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Addition {
    syscall: String,
    reason: String,
}

impl Selection {
    /// `default`, `strict`, or a path to a profile file (read and compiled now).
    pub fn parse(arg: &str) -> Result<Selection, SeccompError> {
        match arg {
            "default" => Ok(Selection::Default),
            "strict" => Ok(Selection::Strict),
            "" => Err(SeccompError::BadProfile(
                "empty; expected default, strict or a profile file".into(),
            )),
            path => Selection::from_file(Path::new(path)),
        }
    }

    /// Read and compile the profile file at `path`.
    pub fn from_file(path: &Path) -> Result<Selection, SeccompError> {
        let bad = |what: String| SeccompError::BadProfile(format!("{}: {what}", path.display()));
        let meta = std::fs::metadata(path)
            .map_err(|e| bad(format!("{e} (expected default, strict or a profile file)")))?;
        if !meta.is_file() {
            return Err(bad("not a regular file".into()));
        }
        if meta.len() > MAX_FILE {
            return Err(bad(format!("larger than {MAX_FILE} bytes")));
        }
        let bytes = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
        let file: ProfileFile =
            serde_json::from_slice(&bytes).map_err(|e| bad(format!("not a profile: {e}")))?;
        let full = Profile::default_profile()?;
        let mut profile = match file.base.as_str() {
            "default" => full.clone(),
            "strict" => full.strict(),
            other => {
                return Err(bad(format!(
                    "base {other:?}: expected \"default\" or \"strict\""
                )));
            }
        };
        for a in &file.add {
            profile = profile
                .with_addition(&full, &a.syscall, &a.reason)
                .map_err(|e| match e {
                    SeccompError::NotAddable { syscall, why } => {
                        bad(format!("cannot add {syscall:?}: {why}"))
                    }
                    e => bad(e.to_string()),
                })?;
        }
        let arch = Arch::host();
        let plain = Program::compile(&profile, arch, false).map_err(|e| bad(e.to_string()))?;
        let notifying = Program::compile(&profile, arch, true).map_err(|e| bad(e.to_string()))?;
        Ok(Selection::Custom {
            // The canonical path, so that the record means the same file later and elsewhere.
            name: format!(
                "file {} ({})",
                std::fs::canonicalize(path)
                    .unwrap_or_else(|_| path.to_path_buf())
                    .display(),
                crate::digest_of(&bytes)
            ),
            strict: file.base == "strict",
            added: file.add.iter().map(|a| a.syscall.clone()).collect(),
            plain: Arc::new(plain),
            notifying: Arc::new(notifying),
        })
    }

    /// The program to install: the notifying variant when refusals can go to the launcher.
    pub fn program(&self, notifying: bool) -> &Program {
        match self {
            Selection::Default if notifying => Program::host_notifying(),
            Selection::Default => Program::host(),
            Selection::Strict => Program::strict_for_arch(Arch::host(), notifying),
            Selection::Custom {
                plain,
                notifying: n,
                ..
            } => {
                if notifying {
                    n
                } else {
                    plain
                }
            }
        }
    }

    /// Whether the profile is `strict` or built on it (what a refusal's explanation says).
    pub fn is_strict(&self) -> bool {
        match self {
            Selection::Default => false,
            Selection::Strict => true,
            Selection::Custom { strict, .. } => *strict,
        }
    }

    /// The syscalls a profile file adds to its base (none for `default` and `strict`).
    pub fn added(&self) -> &[String] {
        match self {
            Selection::Custom { added, .. } => added,
            _ => &[],
        }
    }

    /// The profile's name for records: `default`, `strict` or `file PATH (sha256:...)`.
    pub fn name(&self) -> &str {
        match self {
            Selection::Default => "default",
            Selection::Strict => "strict",
            Selection::Custom { name, .. } => name,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(json: &str) -> tempfile::NamedTempFile {
        use std::io::Write;
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(json.as_bytes()).unwrap();
        f
    }

    fn parse(json: &str) -> Result<Selection, String> {
        let f = file(json);
        Selection::parse(f.path().to_str().unwrap()).map_err(|e| e.to_string())
    }

    #[test]
    fn built_in_names_and_a_file_that_adds_from_the_safe_set() {
        assert_eq!(Selection::parse("default").unwrap().name(), "default");
        assert_eq!(Selection::parse("strict").unwrap().name(), "strict");
        assert_eq!(
            Selection::parse("default").unwrap().program(true).digest(),
            Program::host_notifying().digest()
        );
        let s =
            parse(r#"{"base":"default","add":[{"syscall":"mbind","reason":"numactl"}]}"#).unwrap();
        assert!(s.name().starts_with("file "), "{}", s.name());
        let p = s.program(true);
        assert!(p.notifying());
        assert_ne!(p.digest(), Program::host_notifying().digest());
        assert_eq!(p.digest(), crate::digest_of(&p.bytes()));
        // The same file compiles to the same program: the digest names the profile.
        let again =
            parse(r#"{"base":"default","add":[{"syscall":"mbind","reason":"numactl"}]}"#).unwrap();
        assert_eq!(again.program(true).digest(), p.digest());
        // A file with nothing added is the built-in program, byte for byte.
        let same = parse(r#"{"base":"strict"}"#).unwrap();
        assert_eq!(
            same.program(false).digest(),
            Program::strict_for_arch(Arch::host(), false).digest()
        );
    }

    #[test]
    fn strict_is_smaller_and_a_file_can_bring_back_what_it_removed() {
        let full = Profile::default_profile().unwrap();
        let strict = full.strict();
        assert!(strict.allowed_syscalls().len() < full.allowed_syscalls().len());
        for name in full.strict_removed() {
            assert!(!strict.allowed_syscalls().contains(&name), "{name}");
        }
        let s =
            parse(r#"{"base":"strict","add":[{"syscall":"mknodat","reason":"mkfifo"}]}"#).unwrap();
        assert_ne!(
            s.program(false).digest(),
            Program::strict_for_arch(Arch::host(), false).digest()
        );
    }

    #[test]
    fn refusals_name_the_syscall_and_why() {
        let cases = [
            (
                r#"{"base":"default","add":[{"syscall":"ptrace","reason":"gdb"}]}"#,
                "cannot add \"ptrace\": it is on the deny list and never allowed:",
            ),
            (
                r#"{"base":"default","add":[{"syscall":"bpf","reason":"x"}]}"#,
                "cannot add \"bpf\": it is on the deny list",
            ),
            (
                r#"{"base":"default","add":[{"syscall":"keyctl","reason":"x"}]}"#,
                "cannot add \"keyctl\": it is on the deny list",
            ),
            (
                r#"{"base":"default","add":[{"syscall":"socket","reason":"raw"}]}"#,
                "cannot add \"socket\": it is allowed only with the argument rules",
            ),
            (
                r#"{"base":"default","add":[{"syscall":"sched_setattr","reason":"x"}]}"#,
                "cannot add \"sched_setattr\": it is not in the safe set",
            ),
            (
                r#"{"base":"default","add":[{"syscall":"no_such_call","reason":"x"}]}"#,
                "cannot add \"no_such_call\": not a system call Warren knows",
            ),
            (
                r#"{"base":"default","add":[{"syscall":"mbind","reason":" "}]}"#,
                "every addition needs a \"reason\"",
            ),
            (r#"{"base":"lax"}"#, "base \"lax\": expected"),
            (
                r#"{"base":"default","remove":["read"]}"#,
                "not a profile: unknown field",
            ),
            ("not json", "not a profile"),
        ];
        for (json, want) in cases {
            let e = parse(json).unwrap_err();
            assert!(e.contains(want), "{json}: {e}");
        }
        let e = Selection::parse("/nonexistent/profile.json")
            .unwrap_err()
            .to_string();
        assert!(e.contains("/nonexistent/profile.json"), "{e}");
        assert!(
            e.contains("expected default, strict or a profile file"),
            "{e}"
        );
    }
}
