//! The policy as reviewed data, and the compiler from policy to program.
//!
//! `policy.json` next to this file is a default-deny allow-list in which every entry carries the
//! reason it is there, a short list of syscalls answered with a different errno (`clone3` gets
//! `ENOSYS` so that libc falls back to `clone`, whose flags a filter can read), and the list of
//! syscalls that must never be allowed, also with reasons. `docs/seccomp.md` explains the policy
//! and how to review a change to it.
//!
//! [`Profile::compile_for`] resolves the names with the tables in `syscalls.rs` into one decision
//! per syscall number and hands them to the generator (`bpf.rs`). This module is compiled twice:
//! into the build script, which runs it once per architecture and writes the programs into the
//! crate (see `build.rs`), and into the library, where the tests and reviewers use it. No launch
//! parses the policy.

use std::collections::{BTreeMap, BTreeSet};

use seccompiler::BpfProgram;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::bpf::{Comparison, Decision, Plan, SECCOMP_RET_ALLOW, SECCOMP_RET_ERRNO};
pub use crate::types::Arch;
pub(crate) use crate::types::{ArgWidth, CmpOp};

/// The reviewed default policy, compiled into the binary.
const DEFAULT_POLICY: &str = include_str!("policy.json");

/// The largest program the kernel accepts (`BPF_MAXINSNS`).
pub const MAX_PROGRAM_LEN: usize = 4096;

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
compile_error!(
    "warren-seccomp's policy exists only for x86_64 and aarch64; add the architecture to \
     policy.json and Arch before building for it"
);

/// Errors loading, compiling or installing a seccomp profile.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    /// The policy is not valid JSON or does not have the expected shape.
    #[error("cannot parse the seccomp policy")]
    Parse {
        /// The JSON error, with line and column.
        #[source]
        source: serde_json::Error,
    },
    /// An entry of the policy breaks one of the rules `docs/seccomp.md` lists.
    #[error("seccomp policy entry {syscall:?} in {section:?}: {problem}")]
    InvalidEntry {
        /// The section of `policy.json` (`allow`, `deny`, `errno_overrides`, ...).
        section: &'static str,
        /// The syscall the entry names (empty for policy-wide fields).
        syscall: String,
        /// What is wrong with it.
        problem: String,
    },
    /// An entry names a syscall the target architecture does not have: a typo, or a legacy call
    /// whose entry lacks an `"arch"` restriction.
    #[error("seccomp policy entry {syscall:?} in {section:?} is not a system call on {arch}")]
    UnknownSyscall {
        /// The target architecture.
        arch: Arch,
        /// The section of `policy.json` (`allow` or `errno_overrides`).
        section: &'static str,
        /// The name that was not found.
        syscall: String,
    },
    /// The compiled program is longer than the kernel accepts.
    #[error("the seccomp program for {arch} has {len} instructions, more than the kernel's {max}")]
    ProgramTooLong {
        /// The target architecture.
        arch: Arch,
        /// Number of instructions.
        len: usize,
        /// The kernel limit, [`MAX_PROGRAM_LEN`].
        max: usize,
    },
    /// A per-environment profile asks for a syscall it may not add.
    #[error("seccomp profile: cannot add {syscall:?}: {why}")]
    NotAddable {
        /// The syscall named.
        syscall: String,
        /// Why: the deny list's reason, an argument rule, or not in the safe set.
        why: String,
    },
    /// A per-environment profile file is malformed.
    #[error("seccomp profile: {0}")]
    BadProfile(String),
    /// The kernel refused the filter (or `prctl(PR_SET_NO_NEW_PRIVS)` failed).
    #[error("cannot install the seccomp filter")]
    Install {
        /// seccompiler's error, wrapping the OS error.
        #[source]
        source: seccompiler::Error,
    },
}

/// An errno the policy may return, named as in `errno(3)`.
///
/// The numbers are the asm-generic ones, which x86_64 and aarch64 share.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[allow(clippy::upper_case_acronyms)]
pub(crate) enum Errno {
    EPERM,
    EACCES,
    EINVAL,
    ENOSYS,
}

impl Errno {
    pub(crate) fn number(self) -> u32 {
        match self {
            Errno::EPERM => 1,
            Errno::EACCES => 13,
            Errno::EINVAL => 22,
            Errno::ENOSYS => 38,
        }
    }
}

/// `policy.json`, as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PolicyFile {
    pub(crate) comment: String,
    pub(crate) default_action: DefaultAction,
    pub(crate) errno_overrides: Vec<ErrnoOverride>,
    pub(crate) allow: Vec<AllowRule>,
    pub(crate) deny: Vec<DenyRule>,
    /// The safe set: syscalls the default does not allow that a per-environment profile may
    /// add (`--seccomp FILE`), each with the reason it is safe inside an environment.
    #[serde(default)]
    pub(crate) addable: Vec<AddableRule>,
    /// What the `strict` profile takes out of the allow-list, each with its reason.
    #[serde(default)]
    pub(crate) strict_remove: Vec<DenyRule>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AddableRule {
    pub(crate) syscall: String,
    pub(crate) comment: String,
    /// Architectures the entry applies to; all of them when absent.
    #[serde(default)]
    pub(crate) arch: Option<Vec<Arch>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DefaultAction {
    pub(crate) errno: Errno,
    pub(crate) comment: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ErrnoOverride {
    pub(crate) syscall: String,
    pub(crate) errno: Errno,
    pub(crate) comment: String,
    #[serde(default)]
    pub(crate) arch: Option<Vec<Arch>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AllowRule {
    pub(crate) syscall: String,
    pub(crate) comment: String,
    /// Conditions that must all hold; several entries for one syscall are alternatives.
    #[serde(default)]
    pub(crate) args: Option<Vec<ArgCondition>>,
    /// Architectures the entry applies to; all of them when absent.
    #[serde(default)]
    pub(crate) arch: Option<Vec<Arch>>,
}

/// One argument comparison, in seccompiler's JSON shape (which the generator keeps) plus a
/// mandatory comment.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ArgCondition {
    pub(crate) index: u8,
    #[serde(rename = "type")]
    pub(crate) width: ArgWidth,
    pub(crate) op: CmpOp,
    pub(crate) val: u64,
    pub(crate) comment: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DenyRule {
    pub(crate) syscall: String,
    pub(crate) comment: String,
}

pub(crate) fn applies_to(arches: Option<&Vec<Arch>>, arch: Arch) -> bool {
    arches.is_none_or(|list| list.contains(&arch))
}

/// A parsed and validated seccomp policy.
///
/// Loading checks the rules `docs/seccomp.md` lists: every entry has a reason, no syscall of the
/// deny list is allowed or overridden, argument comparisons fit their width, and a syscall is
/// either allowed unconditionally once or only through argument rules.
#[derive(Debug, Clone)]
pub struct Profile {
    pub(crate) source: Vec<u8>,
    pub(crate) policy: PolicyFile,
}

impl Profile {
    /// The reviewed policy shipped with Warren (`seccomp/policy.json`).
    pub fn default_profile() -> Result<Profile, SeccompError> {
        Profile::from_json(DEFAULT_POLICY.as_bytes())
    }

    /// Parses and validates a policy in the `policy.json` format.
    pub fn from_json(json: &[u8]) -> Result<Profile, SeccompError> {
        let policy: PolicyFile =
            serde_json::from_slice(json).map_err(|source| SeccompError::Parse { source })?;
        validate(&policy)?;
        Ok(Profile {
            source: json.to_vec(),
            policy,
        })
    }

    /// `sha256:<hex>` of the policy file's bytes: names the policy for review. The launch
    /// measurement records the digest of the compiled program instead ([`crate::Program::digest`]).
    pub fn policy_digest(&self) -> String {
        format!("sha256:{}", hex::encode(Sha256::digest(&self.source)))
    }

    /// Every syscall the allow-list names (on any architecture, with or without argument rules),
    /// sorted.
    pub fn allowed_syscalls(&self) -> Vec<String> {
        let names: BTreeSet<&str> = self
            .policy
            .allow
            .iter()
            .map(|r| r.syscall.as_str())
            .collect();
        names.into_iter().map(str::to_owned).collect()
    }

    /// The syscalls that must never be allowed, sorted. They fail with the default errno because
    /// no allow rule names them; loading a policy that allows one of them fails.
    pub fn denied_by_name(&self) -> Vec<String> {
        let names: BTreeSet<&str> = self
            .policy
            .deny
            .iter()
            .map(|r| r.syscall.as_str())
            .collect();
        names.into_iter().map(str::to_owned).collect()
    }

    /// The `strict` profile: this one without the syscalls `strict_remove` lists (every allow
    /// entry of each, argument rules included).
    pub fn strict(&self) -> Profile {
        let mut p = self.clone();
        let removed: BTreeSet<&str> = self
            .policy
            .strict_remove
            .iter()
            .map(|r| r.syscall.as_str())
            .collect();
        p.policy
            .allow
            .retain(|r| !removed.contains(r.syscall.as_str()));
        p
    }

    /// The syscalls a profile may add to the default (`addable`), sorted.
    pub fn addable_syscalls(&self) -> Vec<String> {
        let names: BTreeSet<&str> = self
            .policy
            .addable
            .iter()
            .map(|r| r.syscall.as_str())
            .collect();
        names.into_iter().map(str::to_owned).collect()
    }

    /// The syscalls `strict` removes from the default, sorted.
    pub fn strict_removed(&self) -> Vec<String> {
        let names: BTreeSet<&str> = self
            .policy
            .strict_remove
            .iter()
            .map(|r| r.syscall.as_str())
            .collect();
        names.into_iter().map(str::to_owned).collect()
    }

    /// This profile with `syscall` added, for the reason `reason` (a per-environment profile).
    /// `full` is the default profile this one was derived from: a syscall `strict` removed may
    /// come back with its default entries. Refused, naming why: a syscall on the deny list (its
    /// reason), one the default allows only by arguments (a profile cannot widen an argument
    /// rule), and anything outside the safe set (`addable`). Adding one already allowed changes
    /// nothing.
    pub fn with_addition(
        &self,
        full: &Profile,
        syscall: &str,
        reason: &str,
    ) -> Result<Profile, SeccompError> {
        let refuse = |why: String| SeccompError::NotAddable {
            syscall: syscall.to_owned(),
            why,
        };
        if check_name("add", syscall).is_err()
            || (crate::syscalls::number(Arch::X86_64, syscall).is_none()
                && crate::syscalls::number(Arch::Aarch64, syscall).is_none())
        {
            return Err(refuse("not a system call Warren knows".into()));
        }
        if reason.trim().is_empty() {
            return Err(refuse("every addition needs a \"reason\"".into()));
        }
        if let Some(r) = full.deny_reason(syscall) {
            return Err(refuse(format!(
                "it is on the deny list and never allowed: {r}"
            )));
        }
        let entries: Vec<&AllowRule> = full
            .policy
            .allow
            .iter()
            .filter(|r| r.syscall == syscall)
            .collect();
        if entries.iter().any(|r| r.args.is_some())
            && self.policy.allow.iter().any(|r| r.syscall == syscall)
        {
            return Err(refuse(
                "it is allowed only with the argument rules docs/seccomp.md lists; a profile \
                 cannot widen them"
                    .into(),
            ));
        }
        let mut p = self.clone();
        if p.policy.allow.iter().any(|r| r.syscall == syscall) {
            return Ok(p);
        }
        if !entries.is_empty() {
            // Taken out by `strict`: back with the default's entries.
            p.policy.allow.extend(entries.into_iter().cloned());
            return Ok(p);
        }
        match full.policy.addable.iter().find(|r| r.syscall == syscall) {
            Some(a) => {
                p.policy.allow.push(AllowRule {
                    syscall: syscall.to_owned(),
                    comment: reason.to_owned(),
                    args: None,
                    arch: a.arch.clone(),
                });
                Ok(p)
            }
            None => Err(refuse(
                "it is not in the safe set a profile may add (\"addable\" in policy.json; \
                 docs/seccomp.md lists it)"
                    .into(),
            )),
        }
    }

    /// Why `syscall` is on the deny list, or `None` if it is not on it.
    pub fn deny_reason(&self, syscall: &str) -> Option<&str> {
        self.policy
            .deny
            .iter()
            .find(|r| r.syscall == syscall)
            .map(|r| r.comment.as_str())
    }

    /// Syscalls answered with an errno other than the default, with that errno number.
    pub fn errno_overrides(&self) -> Vec<(String, u32)> {
        self.policy
            .errno_overrides
            .iter()
            .map(|o| (o.syscall.clone(), o.errno.number()))
            .collect()
    }

    /// The errno returned for every syscall the policy does not allow.
    pub fn default_errno(&self) -> u32 {
        self.policy.default_action.errno.number()
    }

    /// Compiles the policy for the architecture this binary runs on. Launches do not call this:
    /// they install the program the build script compiled ([`crate::Program::host`]).
    pub fn compile(&self) -> Result<BpfProgram, SeccompError> {
        self.compile_for(Arch::host())
    }

    /// Compiles the policy for `arch`.
    pub fn compile_for(&self, arch: Arch) -> Result<BpfProgram, SeccompError> {
        let program = crate::bpf::generate(self.plan(arch)?);
        if program.len() > MAX_PROGRAM_LEN {
            return Err(SeccompError::ProgramTooLong {
                arch,
                len: program.len(),
                max: MAX_PROGRAM_LEN,
            });
        }
        Ok(program)
    }

    /// The decision for every syscall number the policy names on `arch`.
    ///
    /// Several allow entries for one number are alternatives. An entry without arguments adds no
    /// alternative, so a number whose entries are all unconditional is allowed outright (the
    /// loader rejects mixing the two kinds for one syscall). These are seccompiler's rules. An
    /// errno override decides its number alone; the loader keeps overridden names out of the
    /// allow-list, and no two names of a table share a number.
    fn plan(&self, arch: Arch) -> Result<Plan, SeccompError> {
        /// What one policy entry says about its number; overrides sort first.
        enum Entry<'p> {
            Override(Errno),
            Allow(Option<&'p [ArgCondition]>),
        }
        let number = |section: &'static str, syscall: &str| {
            crate::syscalls::number(arch, syscall).ok_or_else(|| SeccompError::UnknownSyscall {
                arch,
                section,
                syscall: syscall.to_owned(),
            })
        };

        let mut entries: Vec<(u32, Entry<'_>)> = Vec::with_capacity(self.policy.allow.len());
        for o in &self.policy.errno_overrides {
            if applies_to(o.arch.as_ref(), arch) {
                entries.push((
                    number("errno_overrides", &o.syscall)?,
                    Entry::Override(o.errno),
                ));
            }
        }
        for rule in &self.policy.allow {
            if applies_to(rule.arch.as_ref(), arch) {
                let args = rule.args.as_deref();
                entries.push((number("allow", &rule.syscall)?, Entry::Allow(args)));
            }
        }
        // Stable: overrides stay ahead of allow entries, and each kind keeps the policy's order.
        entries.sort_by_key(|(nr, _)| *nr);

        let mut syscalls: Vec<(u32, Decision)> = Vec::with_capacity(entries.len());
        for group in entries.chunk_by(|a, b| a.0 == b.0) {
            let nr = group[0].0;
            let decision = match group[0].1 {
                Entry::Override(errno) => Decision::Return(SECCOMP_RET_ERRNO | errno.number()),
                Entry::Allow(_) => {
                    let rules: Vec<Vec<Comparison>> = group
                        .iter()
                        .filter_map(|(_, entry)| match entry {
                            Entry::Allow(args) => *args,
                            Entry::Override(_) => None,
                        })
                        .map(|args| {
                            args.iter()
                                .map(|c| Comparison {
                                    index: c.index,
                                    width: c.width,
                                    op: c.op,
                                    val: c.val,
                                })
                                .collect()
                        })
                        .collect();
                    if rules.is_empty() {
                        Decision::Return(SECCOMP_RET_ALLOW)
                    } else {
                        Decision::Rules(rules)
                    }
                }
            };
            syscalls.push((nr, decision));
        }
        Ok(Plan {
            audit_arch: arch.audit_arch(),
            default_action: SECCOMP_RET_ERRNO | self.policy.default_action.errno.number(),
            syscalls,
        })
    }
}

fn invalid(section: &'static str, syscall: &str, problem: impl Into<String>) -> SeccompError {
    SeccompError::InvalidEntry {
        section,
        syscall: syscall.to_owned(),
        problem: problem.into(),
    }
}

fn check_reason(section: &'static str, syscall: &str, comment: &str) -> Result<(), SeccompError> {
    if comment.trim().is_empty() {
        return Err(invalid(
            section,
            syscall,
            "the comment giving the reason is empty",
        ));
    }
    Ok(())
}

fn check_name(section: &'static str, syscall: &str) -> Result<(), SeccompError> {
    let ok = !syscall.is_empty()
        && syscall
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if !ok {
        return Err(invalid(section, syscall, "not a syscall name"));
    }
    Ok(())
}

fn check_arches(
    section: &'static str,
    syscall: &str,
    arches: Option<&Vec<Arch>>,
) -> Result<(), SeccompError> {
    if arches.is_some_and(Vec::is_empty) {
        return Err(invalid(section, syscall, "\"arch\" is present but empty"));
    }
    Ok(())
}

fn check_condition(syscall: &str, c: &ArgCondition) -> Result<(), SeccompError> {
    const SECTION: &str = "allow";
    check_reason(SECTION, syscall, &c.comment)?;
    if c.index > 5 {
        return Err(invalid(
            SECTION,
            syscall,
            format!("argument index {} is above 5", c.index),
        ));
    }
    let mask = match c.op {
        CmpOp::MaskedEq(mask) => Some(mask),
        _ => None,
    };
    if c.width == ArgWidth::Dword {
        // A dword comparison reads only the low 32 bits; a wider operand would be cut silently.
        if c.val > u64::from(u32::MAX) {
            return Err(invalid(
                SECTION,
                syscall,
                "dword comparison with a value above 32 bits",
            ));
        }
        if mask.is_some_and(|m| m > u64::from(u32::MAX)) {
            return Err(invalid(
                SECTION,
                syscall,
                "dword comparison with a mask above 32 bits",
            ));
        }
    }
    if mask.is_some_and(|m| c.val & !m != 0) {
        // The generator masks the value too (as seccompiler did); a value with bits outside the
        // mask would not mean what it says.
        return Err(invalid(
            SECTION,
            syscall,
            "masked_eq value has bits outside the mask",
        ));
    }
    Ok(())
}

fn validate(p: &PolicyFile) -> Result<(), SeccompError> {
    check_reason("comment", "", &p.comment)?;
    check_reason("default_action", "", &p.default_action.comment)?;

    let mut denied = BTreeSet::new();
    for d in &p.deny {
        check_name("deny", &d.syscall)?;
        check_reason("deny", &d.syscall, &d.comment)?;
        if !denied.insert(d.syscall.as_str()) {
            return Err(invalid("deny", &d.syscall, "listed twice"));
        }
    }

    let mut overridden = BTreeSet::new();
    for o in &p.errno_overrides {
        check_name("errno_overrides", &o.syscall)?;
        check_reason("errno_overrides", &o.syscall, &o.comment)?;
        check_arches("errno_overrides", &o.syscall, o.arch.as_ref())?;
        if o.errno == p.default_action.errno {
            return Err(invalid(
                "errno_overrides",
                &o.syscall,
                "errno equals the default errno",
            ));
        }
        if denied.contains(o.syscall.as_str()) {
            return Err(invalid(
                "errno_overrides",
                &o.syscall,
                "also on the deny list",
            ));
        }
        if !overridden.insert(o.syscall.as_str()) {
            return Err(invalid("errno_overrides", &o.syscall, "listed twice"));
        }
    }

    // For each syscall: was it listed unconditionally, and does it have argument rules?
    let mut kinds: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for r in &p.allow {
        check_name("allow", &r.syscall)?;
        check_reason("allow", &r.syscall, &r.comment)?;
        check_arches("allow", &r.syscall, r.arch.as_ref())?;
        if denied.contains(r.syscall.as_str()) {
            return Err(invalid(
                "allow",
                &r.syscall,
                "on the deny list; it must never be allowed",
            ));
        }
        if overridden.contains(r.syscall.as_str()) {
            return Err(invalid("allow", &r.syscall, "also has an errno override"));
        }
        let kind = kinds.entry(&r.syscall).or_default();
        match &r.args {
            None => kind.0 += 1,
            Some(args) if args.is_empty() => {
                return Err(invalid(
                    "allow",
                    &r.syscall,
                    "\"args\" is present but empty",
                ));
            }
            Some(args) => {
                kind.1 += 1;
                for c in args {
                    check_condition(&r.syscall, c)?;
                }
            }
        }
    }
    for a in &p.addable {
        check_name("addable", &a.syscall)?;
        check_reason("addable", &a.syscall, &a.comment)?;
        check_arches("addable", &a.syscall, a.arch.as_ref())?;
        if denied.contains(a.syscall.as_str()) {
            return Err(invalid("addable", &a.syscall, "on the deny list"));
        }
        if kinds.contains_key(a.syscall.as_str()) || overridden.contains(a.syscall.as_str()) {
            return Err(invalid(
                "addable",
                &a.syscall,
                "already allowed or overridden",
            ));
        }
    }
    for r in &p.strict_remove {
        check_name("strict_remove", &r.syscall)?;
        check_reason("strict_remove", &r.syscall, &r.comment)?;
        if !kinds.contains_key(r.syscall.as_str()) {
            return Err(invalid(
                "strict_remove",
                &r.syscall,
                "not on the allow-list",
            ));
        }
    }
    for (syscall, (unconditional, conditional)) in kinds {
        if unconditional > 1 {
            return Err(invalid(
                "allow",
                syscall,
                "allowed unconditionally more than once",
            ));
        }
        if unconditional == 1 && conditional > 0 {
            // An unconditional entry adds no alternative next to argument rules (seccompiler's
            // meaning, which the generator keeps), so it would be silently ignored.
            return Err(invalid(
                "allow",
                syscall,
                "allowed both unconditionally and by arguments",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    //! Unit tests of the policy data and, through a small classic-BPF interpreter, of the
    //! compiled program itself.

    use seccompiler::sock_filter;
    use serde_json::{Value, json};

    use super::*;
    use crate::bpf::{SECCOMP_RET_KILL_PROCESS, X32_SYSCALL_BIT};
    use crate::interp::{Data, check_program, run};

    const EPERM: u32 = SECCOMP_RET_ERRNO | 1;
    const ENOSYS: u32 = SECCOMP_RET_ERRNO | 38;
    const ALLOW: u32 = SECCOMP_RET_ALLOW;
    const AUDIT_ARCH_I386: u32 = 3 | 0x4000_0000;
    const AUDIT_ARCH_ARM: u32 = 40 | 0x4000_0000;

    /// The deny list the brief requires, kept here independently of `policy.json` so that
    /// deleting an entry from the data fails this test.
    const MUST_DENY: &[&str] = &[
        "keyctl",
        "add_key",
        "request_key",
        "ptrace",
        "process_vm_readv",
        "process_vm_writev",
        "mount",
        "umount2",
        "pivot_root",
        "chroot",
        "move_mount",
        "open_tree",
        "fsopen",
        "fsconfig",
        "fsmount",
        "fspick",
        "mount_setattr",
        "unshare",
        "setns",
        "bpf",
        "perf_event_open",
        "kexec_load",
        "kexec_file_load",
        "init_module",
        "finit_module",
        "delete_module",
        "open_by_handle_at",
        "name_to_handle_at",
        "userfaultfd",
        "iopl",
        "ioperm",
        "reboot",
        "swapon",
        "swapoff",
        "acct",
        "settimeofday",
        "clock_settime",
        "clock_adjtime",
        "adjtimex",
        "io_uring_setup",
        "io_uring_enter",
        "io_uring_register",
        "quotactl",
        "lookup_dcookie",
        "vhangup",
        "syslog",
        "nfsservctl",
        "pidfd_getfd",
        "sethostname",
        "setdomainname",
    ];

    /// The syscall number seccompiler uses for `name` on `arch`, read back from a one-rule
    /// program (arch check, load nr, then `JEQ nr`).
    fn nr(name: &str, arch: Arch) -> Option<u32> {
        let json = json!({ "t": { "mismatch_action": "allow", "match_action": "trap",
                                  "filter": [ { "syscall": name } ] } });
        let mut map = seccompiler::compile_from_json(
            json.to_string().as_bytes(),
            crate::reference::target(arch),
        )
        .ok()?;
        let prog = map.remove("t")?;
        assert_eq!(
            (prog[3].code, prog[3].k, prog[4].code),
            (0x20, 0, 0x15),
            "{name}"
        );
        Some(prog[4].k)
    }

    fn x86(name: &str) -> u32 {
        nr(name, Arch::X86_64).unwrap_or_else(|| panic!("{name} is not an x86_64 syscall"))
    }

    /// Argument patterns every unconditional decision must be independent of.
    fn arg_patterns() -> Vec<[u64; 6]> {
        vec![
            [0; 6],
            [u64::MAX; 6],
            [1, 2, 3, 4, 5, 6],
            [
                0x1_0000_0000,
                0xffff_ffff,
                0x8000_0000_0000_0000,
                0x5412,
                0x7e02_0080,
                17,
            ],
            [
                0x0123_4567_89ab_cdef,
                0xfedc_ba98_7654_3210,
                0,
                u64::MAX,
                42,
                0x4000_0000,
            ],
        ]
    }

    fn profile() -> Profile {
        Profile::default_profile().expect("the default policy loads")
    }

    fn program(arch: Arch) -> BpfProgram {
        let prog = profile()
            .compile_for(arch)
            .expect("the default policy compiles");
        check_program(&prog);
        prog
    }

    fn eval(prog: &[sock_filter], name: &str, args: [u64; 6]) -> u32 {
        run(prog, &Data::new(Arch::X86_64, x86(name), args))
    }

    fn with_arg(index: usize, value: u64) -> [u64; 6] {
        let mut args = [0; 6];
        args[index] = value;
        args
    }

    // ---- the policy data ----

    #[test]
    fn default_policy_parses_and_has_the_expected_shape() {
        let p = profile();
        let allowed = p.allowed_syscalls();
        for needed in [
            "read", "write", "openat", "mmap", "execve", "clone", "ioctl", "socket",
        ] {
            assert!(
                allowed.iter().any(|a| a == needed),
                "{needed} missing from the allow-list"
            );
        }
        assert_eq!(p.default_errno(), 1);
        assert_eq!(p.errno_overrides(), vec![("clone3".to_owned(), 38)]);
        assert!(!allowed.iter().any(|a| a == "clone3"));
    }

    #[test]
    fn every_must_deny_syscall_is_on_the_deny_list_and_not_allowed() {
        let p = profile();
        let allowed: BTreeSet<String> = p.allowed_syscalls().into_iter().collect();
        let denied = p.denied_by_name();
        for name in MUST_DENY {
            assert!(
                denied.iter().any(|d| d == name),
                "{name} missing from the deny list"
            );
            assert!(!allowed.contains(*name), "{name} is allowed");
            assert!(
                p.deny_reason(name).is_some_and(|r| !r.trim().is_empty()),
                "{name}"
            );
        }
        for name in &denied {
            assert!(!allowed.contains(name), "{name} is both denied and allowed");
            assert!(
                !p.errno_overrides().iter().any(|(o, _)| o == name),
                "{name} is overridden"
            );
        }
        assert_eq!(p.deny_reason("read"), None);
    }

    #[test]
    fn every_entry_and_condition_has_a_reason() {
        // Read the raw JSON rather than the parsed policy, so this holds whatever the parser does.
        let raw: Value = serde_json::from_str(DEFAULT_POLICY).expect("policy.json is JSON");
        let mut entries = 0;
        for section in ["allow", "deny", "errno_overrides"] {
            for entry in raw[section].as_array().expect(section) {
                let comment = entry["comment"].as_str().unwrap_or_default();
                assert!(
                    !comment.trim().is_empty(),
                    "{section}: {entry} has no reason"
                );
                for arg in entry["args"].as_array().into_iter().flatten() {
                    let c = arg["comment"].as_str().unwrap_or_default();
                    assert!(
                        !c.trim().is_empty(),
                        "{section}: {entry} has a bare condition"
                    );
                }
                entries += 1;
            }
        }
        assert!(entries > 200, "only {entries} entries");
    }

    #[test]
    fn every_named_syscall_exists_on_x86_64() {
        let p = profile();
        let names = p.allowed_syscalls().into_iter().chain(p.denied_by_name());
        for name in names.chain(["clone3".to_owned()]) {
            assert!(
                nr(&name, Arch::X86_64).is_some(),
                "{name} is not an x86_64 syscall"
            );
        }
        // The lookup itself is right: a few numbers from arch/x86/entry/syscalls/syscall_64.tbl.
        let known = [
            ("read", 0),
            ("ioctl", 16),
            ("socket", 41),
            ("clone", 56),
            ("keyctl", 250),
        ];
        for (name, number) in known.into_iter().chain([("clone3", 435)]) {
            assert_eq!(x86(name), number, "{name}");
        }
        assert_eq!(nr("read", Arch::Aarch64), Some(63));
    }

    #[test]
    fn policy_digest_is_sha256_of_the_policy_bytes() {
        let p = profile();
        let d = p.policy_digest();
        let hex = d.strip_prefix("sha256:").expect("sha256: prefix");
        assert_eq!(hex.len(), 64);
        assert!(
            hex.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        assert_eq!(d, profile().policy_digest());
        // The same policy with one more byte of whitespace is a different measurement.
        let changed = Profile::from_json(format!("{DEFAULT_POLICY} ").as_bytes()).expect("loads");
        assert_ne!(changed.policy_digest(), d);
        assert_eq!(changed.allowed_syscalls(), p.allowed_syscalls());
    }

    /// A minimal valid policy with `allow` and `deny` replaced, for the validation tests.
    fn policy_with(allow: Value, deny: Value) -> Vec<u8> {
        json!({
            "comment": "test",
            "default_action": { "errno": "EPERM", "comment": "test" },
            "errno_overrides": [ { "syscall": "clone3", "errno": "ENOSYS", "comment": "fallback" } ],
            "allow": allow,
            "deny": deny,
        })
        .to_string()
        .into_bytes()
    }

    fn rejection(allow: Value, deny: Value) -> String {
        match Profile::from_json(&policy_with(allow, deny)) {
            Ok(_) => panic!("accepted"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn validation_accepts_a_minimal_policy() {
        let allow = json!([{ "syscall": "read", "comment": "r" }]);
        let p = Profile::from_json(&policy_with(allow, json!([]))).expect("valid");
        assert_eq!(p.allowed_syscalls(), vec!["read"]);
        check_program(&p.compile_for(Arch::X86_64).expect("compiles"));
    }

    #[test]
    fn validation_rejects_broken_policies() {
        let r = |s: &str| json!([{ "syscall": s, "comment": "x" }]);
        let keyctl = r("keyctl");
        assert!(rejection(keyctl.clone(), keyctl).contains("deny list"));
        assert!(
            rejection(json!([{ "syscall": "read", "comment": " " }]), json!([])).contains("empty")
        );
        assert!(rejection(json!([{ "syscall": "read" }]), json!([])).contains("parse"));
        let no_deny_reason = json!([{ "syscall": "bpf", "comment": "" }]);
        assert!(rejection(r("read"), no_deny_reason).contains("empty"));
        assert!(rejection(r("clone3"), json!([])).contains("override"));
        assert!(rejection(r("Read"), json!([])).contains("not a syscall name"));
        let twice =
            json!([{ "syscall": "read", "comment": "a" }, { "syscall": "read", "comment": "b" }]);
        assert!(rejection(twice, json!([])).contains("more than once"));

        let cond = |c: Value| json!([{ "syscall": "ioctl", "comment": "x", "args": [c] }]);
        let wide = json!({ "index": 1, "type": "dword", "op": "eq", "val": 0x1_0000_5412_u64, "comment": "c" });
        assert!(rejection(cond(wide), json!([])).contains("above 32 bits"));
        let bare = json!({ "index": 1, "type": "dword", "op": "eq", "val": 1 });
        assert!(rejection(cond(bare), json!([])).contains("parse"));
        let index = json!({ "index": 6, "type": "qword", "op": "eq", "val": 1, "comment": "c" });
        assert!(rejection(cond(index), json!([])).contains("index"));
        let mask = json!({ "index": 0, "type": "qword", "op": { "masked_eq": 1 }, "val": 2, "comment": "c" });
        assert!(rejection(cond(mask), json!([])).contains("outside the mask"));
        let mut mixed =
            cond(json!({ "index": 1, "type": "dword", "op": "eq", "val": 1, "comment": "c" }));
        mixed
            .as_array_mut()
            .expect("array")
            .push(json!({ "syscall": "ioctl", "comment": "all" }));
        assert!(rejection(mixed, json!([])).contains("both"));
        let empty_args = json!([{ "syscall": "ioctl", "comment": "x", "args": [] }]);
        assert!(rejection(empty_args, json!([])).contains("empty"));
        let unknown_field = json!([{ "syscall": "read", "comment": "x", "action": "allow" }]);
        assert!(rejection(unknown_field, json!([])).contains("parse"));
    }

    #[test]
    fn an_unknown_syscall_name_fails_to_compile() {
        let allow = json!([{ "syscall": "no_such_syscall", "comment": "typo" }]);
        let p = Profile::from_json(&policy_with(allow, json!([]))).expect("valid shape");
        let e = p.compile_for(Arch::X86_64).expect_err("unknown name");
        assert!(
            matches!(
                e,
                SeccompError::UnknownSyscall {
                    arch: Arch::X86_64,
                    section: "allow",
                    ..
                }
            ),
            "{e:?}"
        );
    }

    #[test]
    fn compiles_for_x86_64_and_aarch64() {
        for arch in [Arch::X86_64, Arch::Aarch64] {
            let prog = program(arch);
            assert!(
                prog.len() < MAX_PROGRAM_LEN / 2,
                "{arch}: {} instructions",
                prog.len()
            );
        }
        assert_eq!(profile().compile().expect("host"), program(Arch::host()));
    }

    // ---- the compiled program, evaluated ----

    #[test]
    fn allowed_syscalls_are_allowed_whatever_the_arguments() {
        let prog = program(Arch::X86_64);
        let p = profile();
        let conditional: BTreeSet<&str> = p
            .policy
            .allow
            .iter()
            .filter(|r| r.args.is_some())
            .map(|r| r.syscall.as_str())
            .collect();
        for name in p.allowed_syscalls() {
            if conditional.contains(name.as_str()) {
                continue;
            }
            for args in arg_patterns() {
                assert_eq!(eval(&prog, &name, args), ALLOW, "{name} {args:x?}");
            }
        }
    }

    #[test]
    fn denied_syscalls_fail_with_eperm_whatever_the_arguments() {
        let prog = program(Arch::X86_64);
        for name in profile().denied_by_name() {
            for args in arg_patterns() {
                assert_eq!(eval(&prog, &name, args), EPERM, "{name} {args:x?}");
            }
        }
    }

    #[test]
    fn only_listed_numbers_can_be_allowed_and_everything_else_gets_an_errno() {
        let prog = program(Arch::X86_64);
        let allowed: BTreeSet<u32> = profile()
            .allowed_syscalls()
            .iter()
            .map(|n| x86(n))
            .collect();
        let clone3 = x86("clone3");
        let mut allowed_seen = BTreeSet::new();
        for number in 0..1100 {
            for args in arg_patterns() {
                let action = run(&prog, &Data::new(Arch::X86_64, number, args));
                match action {
                    ALLOW => {
                        assert!(allowed.contains(&number), "{number} allowed but not listed");
                        allowed_seen.insert(number);
                    }
                    ENOSYS => assert_eq!(number, clone3, "{number} got ENOSYS"),
                    EPERM => assert!(number != clone3, "clone3 got EPERM"),
                    other => panic!("{number}: unexpected action {other:#x}"),
                }
            }
        }
        // Conditional entries (socket, prctl, mknod) are allowed by some pattern or by their own
        // tests.
        let missing: Vec<_> = allowed.difference(&allowed_seen).collect();
        let expected_missing = [
            x86("socketpair"),
            x86("socket"),
            x86("prctl"),
            x86("mknod"),
            x86("mknodat"),
            x86("sched_setscheduler"),
        ];
        assert!(
            missing.iter().all(|m| expected_missing.contains(m)),
            "never allowed: {missing:?}"
        );
    }

    #[test]
    fn x32_numbers_never_match_an_allow_rule() {
        let prog = program(Arch::X86_64);
        for number in 0..1100 {
            for args in arg_patterns() {
                let data = Data::new(Arch::X86_64, number | X32_SYSCALL_BIT, args);
                assert_eq!(run(&prog, &data), EPERM, "x32 {number} {args:x?}");
            }
        }
        // Other high numbers are not special either.
        for number in [0x8000_0000, u32::MAX, 0x4000_0000 | x86("clone3")] {
            assert_eq!(run(&prog, &Data::new(Arch::X86_64, number, [0; 6])), EPERM);
        }
    }

    #[test]
    fn a_foreign_architecture_kills_the_process() {
        let prog = program(Arch::X86_64);
        let foreign = [
            AUDIT_ARCH_I386,
            Arch::Aarch64.audit_arch(),
            AUDIT_ARCH_ARM,
            62, // EM_X86_64 without the 64-bit and little-endian flags
            0,
            u32::MAX,
        ];
        for arch in foreign {
            // i386 numbers: 3 read, 11 execve, 120 clone, 54 ioctl; and everything else.
            for number in (0..500).chain([0x4000_0000]) {
                let data = Data {
                    arch,
                    ..Data::new(Arch::X86_64, number, [0; 6])
                };
                assert_eq!(
                    run(&prog, &data),
                    SECCOMP_RET_KILL_PROCESS,
                    "{arch:#x} {number}"
                );
            }
        }
    }

    #[test]
    fn mknod_makes_fifos_and_sockets_but_never_devices() {
        let prog = program(Arch::X86_64);
        const S_IFMT: u64 = 0o170000;
        let kinds = [
            ("FIFO", 0o010000, ALLOW),
            ("SOCK", 0o140000, ALLOW),
            ("CHR", 0o020000, EPERM),
            ("BLK", 0o060000, EPERM),
            ("REG", 0o100000, EPERM),
            ("DIR", 0o040000, EPERM),
            ("LNK", 0o120000, EPERM),
            ("none", 0, EPERM),
        ];
        for (kind, ifmt, verdict) in kinds {
            for perm in [0, 0o644, 0o7777] {
                let mode = ifmt | perm;
                assert_eq!(
                    eval(&prog, "mknodat", with_arg(2, mode)),
                    verdict,
                    "mknodat {kind} {mode:o}"
                );
                assert_eq!(
                    eval(&prog, "mknod", with_arg(1, mode)),
                    verdict,
                    "mknod {kind} {mode:o}"
                );
                // Bits above the 32 the kernel reads do not change the verdict.
                assert_eq!(
                    eval(&prog, "mknodat", with_arg(2, mode | 0xffff_ffff_0000_0000)),
                    verdict,
                    "mknodat {kind} high bits"
                );
            }
            // The type is exactly FIFO or SOCK, not one that merely contains its bits.
            assert_eq!(ifmt & !S_IFMT, 0);
        }
    }

    #[test]
    fn sched_setscheduler_takes_only_the_normal_policies() {
        let prog = program(Arch::X86_64);
        const RESET_ON_FORK: u64 = 0x4000_0000;
        for (policy, verdict) in [
            (0, ALLOW), // OTHER
            (3, ALLOW), // BATCH
            (5, ALLOW), // IDLE
            (1, EPERM), // FIFO
            (2, EPERM), // RR
            (6, EPERM), // DEADLINE
            (7, EPERM),
        ] {
            for flags in [0, RESET_ON_FORK] {
                assert_eq!(
                    eval(&prog, "sched_setscheduler", with_arg(1, policy | flags)),
                    verdict,
                    "policy {policy} flags {flags:#x}"
                );
            }
        }
    }

    #[test]
    fn clone3_gets_enosys_and_clone_is_filtered_by_namespace_flags() {
        let prog = program(Arch::X86_64);
        for args in arg_patterns() {
            assert_eq!(eval(&prog, "clone3", args), ENOSYS);
        }

        const SIGCHLD: u64 = 17;
        let thread = 0x003d_0f00; // VM|FS|FILES|SIGHAND|THREAD|SYSVSEM|SETTLS|PARENT_SETTID|CHILD_CLEARTID
        let fork = 0x0120_0000 | SIGCHLD; // CHILD_CLEARTID|CHILD_SETTID|SIGCHLD (glibc fork)
        let spawn = 0x4100 | SIGCHLD; // VM|VFORK|SIGCHLD (posix_spawn)
        for flags in [
            0,
            SIGCHLD,
            thread,
            fork,
            spawn,
            0xffff_ffff_0000_0000 | thread,
        ] {
            assert_eq!(
                eval(&prog, "clone", with_arg(0, flags)),
                ALLOW,
                "{flags:#x}"
            );
        }
        let namespaces = [
            ("NEWTIME", 0x80),
            ("NEWNS", 0x2_0000),
            ("NEWCGROUP", 0x0200_0000),
            ("NEWUTS", 0x0400_0000),
            ("NEWIPC", 0x0800_0000),
            ("NEWUSER", 0x1000_0000),
            ("NEWPID", 0x2000_0000),
            ("NEWNET", 0x4000_0000),
        ];
        for (name, bit) in namespaces {
            for base in [0, SIGCHLD, thread, fork, spawn] {
                let flags = base | bit;
                assert_eq!(
                    eval(&prog, "clone", with_arg(0, flags)),
                    EPERM,
                    "{name} {flags:#x}"
                );
                let high = flags | 0xdead_0000_0000_0000;
                assert_eq!(
                    eval(&prog, "clone", with_arg(0, high)),
                    EPERM,
                    "{name} {high:#x}"
                );
            }
        }
        // Other arguments do not matter.
        let mut args = [u64::MAX; 6];
        args[0] = fork;
        assert_eq!(eval(&prog, "clone", args), ALLOW);
        args[0] = fork | 0x1000_0000;
        assert_eq!(eval(&prog, "clone", args), EPERM);
        for name in ["fork", "vfork"] {
            assert_eq!(eval(&prog, name, [0; 6]), ALLOW, "{name}");
        }
    }

    #[test]
    fn ioctl_denies_terminal_injection_in_any_upper_half() {
        let prog = program(Arch::X86_64);
        let ioctl = |cmd: u64| eval(&prog, "ioctl", [0, cmd, 0, 0, 0, 0]);
        for denied in [0x5412_u64, 0x541c, 0x5423] {
            for high in [0, 1 << 32, 0xffff_ffff_0000_0000, 0x8000_0000_0000_0000] {
                assert_eq!(ioctl(high | denied), EPERM, "{:#x}", high | denied);
            }
        }
        // TCGETS, TIOCGPGRP, TIOCGWINSZ, FIONREAD, TIOCSCTTY, FIONBIO, FIOCLEX, and neighbours
        // of the denied requests.
        for allowed in [
            0x5401_u64, 0x540f, 0x5413, 0x541b, 0x540e, 0x5421, 0x5451, 0x5411,
        ] {
            assert_eq!(ioctl(allowed), ALLOW, "{allowed:#x}");
            assert_eq!(
                ioctl(allowed | 1 << 32),
                ALLOW,
                "{allowed:#x} with high bits"
            );
        }
        assert_eq!(ioctl(0x1_5412 ^ 0x1_0000), EPERM, "TIOCSTI rebuilt by xor");
        assert_eq!(ioctl(0x0001_5412), ALLOW, "a different 32-bit request");
    }

    #[test]
    fn socket_is_limited_to_unix_inet_inet6_and_route_netlink() {
        let prog = program(Arch::X86_64);
        let socket =
            |domain: u64, protocol: u64| eval(&prog, "socket", [domain, 1, protocol, 0, 0, 0]);
        for domain in 0..64_u64 {
            let expected = if [1, 2, 10, 16].contains(&domain) {
                ALLOW
            } else {
                EPERM
            };
            assert_eq!(socket(domain, 0), expected, "domain {domain}");
            // The kernel reads the domain as an int: high bits change nothing.
            assert_eq!(
                socket(domain | 0xffff_ffff_0000_0000, 0),
                expected,
                "domain {domain}"
            );
        }
        assert_eq!(socket(17, 0), EPERM, "AF_PACKET");
        assert_eq!(socket(40, 0), EPERM, "AF_VSOCK");
        assert_eq!(socket(2, 17), ALLOW, "AF_INET with IPPROTO_UDP");
        for protocol in [4, 9, 12, 15, 16] {
            // SOCK_DIAG, AUDIT, NETFILTER, KOBJECT_UEVENT, GENERIC
            assert_eq!(socket(16, protocol), EPERM, "netlink protocol {protocol}");
        }

        let socketpair = |domain: u64| eval(&prog, "socketpair", [domain, 1, 0, 0, 0, 0]);
        assert_eq!(socketpair(1), ALLOW);
        for domain in [0, 2, 10, 16, 17, 40] {
            assert_eq!(socketpair(domain), EPERM, "socketpair domain {domain}");
        }
    }

    #[test]
    fn prctl_allows_only_the_reviewed_options() {
        let prog = program(Arch::X86_64);
        let allowed = [
            1_u64,
            2,
            3,
            4,
            15,
            16,
            21,
            22,
            23,
            27,
            36,
            37,
            38,
            39,
            0x5356_4d41,
        ];
        for option in (0..80).chain([0x5356_4d41, 0x5961_6d61, 0x4159_4e43]) {
            let expected = if allowed.contains(&option) {
                ALLOW
            } else {
                EPERM
            };
            assert_eq!(
                eval(&prog, "prctl", with_arg(0, option)),
                expected,
                "option {option}"
            );
            let mut args = [u64::MAX; 6];
            args[0] = option;
            assert_eq!(
                eval(&prog, "prctl", args),
                expected,
                "option {option} with arguments"
            );
        }
        // PR_CAPBSET_DROP, PR_SET_SECUREBITS, PR_SET_MM, PR_CAP_AMBIENT stay denied.
        for option in [24, 28, 35, 47] {
            assert_eq!(
                eval(&prog, "prctl", with_arg(0, option)),
                EPERM,
                "option {option}"
            );
        }
    }

    #[test]
    fn personality_allows_only_the_query_and_per_linux() {
        let prog = program(Arch::X86_64);
        let personality = |p: u64| eval(&prog, "personality", with_arg(0, p));
        assert_eq!(personality(0xffff_ffff), ALLOW);
        assert_eq!(personality(0), ALLOW);
        // PER_LINUX32, ADDR_NO_RANDOMIZE, READ_IMPLIES_EXEC, PER_BSD
        for p in [0x8, 0x0004_0000, 0x0040_0000, 0x6] {
            assert_eq!(personality(p), EPERM, "{p:#x}");
        }
    }

    #[test]
    fn aarch64_program_has_the_same_decisions() {
        let prog = program(Arch::Aarch64);
        let at = |number: u32, args: [u64; 6]| run(&prog, &Data::new(Arch::Aarch64, number, args));
        // Numbers from include/uapi/asm-generic/unistd.h.
        assert_eq!(at(63, [0; 6]), ALLOW, "read");
        assert_eq!(at(56, [0; 6]), ALLOW, "openat");
        assert_eq!(at(219, [0; 6]), EPERM, "keyctl");
        assert_eq!(at(97, [0; 6]), EPERM, "unshare");
        assert_eq!(at(40, [0; 6]), EPERM, "mount");
        assert_eq!(at(435, [0; 6]), ENOSYS, "clone3");
        assert_eq!(at(220, with_arg(0, 0x0120_0011)), ALLOW, "clone for fork");
        assert_eq!(
            at(220, with_arg(0, 0x1000_0011)),
            EPERM,
            "clone with CLONE_NEWUSER"
        );
        assert_eq!(at(29, with_arg(1, 0x1_0000_5412)), EPERM, "ioctl TIOCSTI");
        assert_eq!(at(198, with_arg(0, 17)), EPERM, "socket AF_PACKET");
        let native = Data::new(Arch::Aarch64, 63, [0; 6]);
        for arch in [Arch::X86_64.audit_arch(), AUDIT_ARCH_ARM] {
            assert_eq!(
                run(&prog, &Data { arch, ..native }),
                SECCOMP_RET_KILL_PROCESS
            );
        }
        // The entries marked x86_64-only name syscalls aarch64 does not have, which is why the
        // marking is needed for the aarch64 compile to succeed.
        assert_eq!(nr("open", Arch::Aarch64), None);
        assert_eq!(nr("fork", Arch::Aarch64), None);
    }
}
