//! The previous compiler of the policy, kept for the tests as a reference: it hands the policy
//! to seccompiler's JSON front end and chains the resulting programs. The equivalence tests run
//! its output and the generator's on the same inputs and require the same answers.
//!
//! seccompiler gives a filter one match action and one default action. The errno overrides
//! therefore compile to their own seccompiler programs (match: that errno, default: allow) whose
//! "allow" returns are rewritten into forward jumps to the next stage, and the allow-list is the
//! last stage.

use seccompiler::{BpfProgram, TargetArch, sock_filter};
use serde_json::{Value, json};

use crate::bpf::{JMP_JA, RET_K, SECCOMP_RET_ALLOW};
use crate::policy::{Arch, Errno, Profile, applies_to};

/// seccompiler's name for `arch`.
pub(super) fn target(arch: Arch) -> TargetArch {
    match arch {
        Arch::X86_64 => TargetArch::x86_64,
        Arch::Aarch64 => TargetArch::aarch64,
    }
}

/// Compiles `profile` for `arch` the way Warren did before it had its own generator.
pub(super) fn compile_reference(
    profile: &Profile,
    arch: Arch,
) -> Result<BpfProgram, seccompiler::Error> {
    let policy = &profile.policy;
    // Errno overrides, grouped by errno in order of first appearance: one stage each.
    let mut groups: Vec<(Errno, Vec<&str>)> = Vec::new();
    for o in &policy.errno_overrides {
        if !applies_to(o.arch.as_ref(), arch) {
            continue;
        }
        match groups.iter_mut().find(|(errno, _)| *errno == o.errno) {
            Some((_, names)) => names.push(&o.syscall),
            None => groups.push((o.errno, vec![&o.syscall])),
        }
    }

    let mut filters = serde_json::Map::new();
    let mut stage_names = Vec::new();
    for (i, (errno, names)) in groups.iter().enumerate() {
        let name = format!("override_{i}_{errno:?}");
        let rules: Vec<Value> = names.iter().map(|n| json!({ "syscall": n })).collect();
        filters.insert(
            name.clone(),
            json!({
                "mismatch_action": "allow",
                "match_action": { "errno": errno.number() },
                "filter": rules,
            }),
        );
        stage_names.push(name);
    }

    let allow_rules: Vec<Value> = policy
        .allow
        .iter()
        .filter(|r| applies_to(r.arch.as_ref(), arch))
        .map(|r| match &r.args {
            None => json!({ "syscall": r.syscall }),
            Some(args) => {
                let args: Vec<Value> = args
                    .iter()
                    .map(|c| json!({ "index": c.index, "type": c.width, "op": c.op, "val": c.val }))
                    .collect();
                json!({ "syscall": r.syscall, "args": args })
            }
        })
        .collect();
    const ALLOW_STAGE: &str = "allow";
    filters.insert(
        ALLOW_STAGE.to_owned(),
        json!({
            "mismatch_action": { "errno": policy.default_action.errno.number() },
            "match_action": "allow",
            "filter": allow_rules,
        }),
    );

    let input = Value::Object(filters).to_string();
    let mut compiled = seccompiler::compile_from_json(input.as_bytes(), target(arch))?;
    let mut take = |stage: &str| {
        compiled
            .remove(stage)
            .unwrap_or_else(|| panic!("seccompiler returned no program for stage {stage}"))
    };

    let mut program = BpfProgram::new();
    for stage in &stage_names {
        append_pass_through(&mut program, take(stage));
    }
    program.extend(take(ALLOW_STAGE));
    Ok(program)
}

/// Appends a stage whose default action is "allow" so that, instead of allowing, it continues
/// with whatever is appended after it. Every `RET SECCOMP_RET_ALLOW` becomes a forward jump to
/// the first instruction after the stage; the other instructions keep their relative offsets.
///
/// Only stages built with an errno match action go through here, so the only allow returns they
/// contain are their default action.
fn append_pass_through(program: &mut BpfProgram, stage: BpfProgram) {
    let len = stage.len();
    for (i, insn) in stage.into_iter().enumerate() {
        if insn.code == RET_K && insn.k == SECCOMP_RET_ALLOW {
            // `len - i - 1` is at most the stage length, which seccompiler keeps below 4096.
            let to_next_stage = (len - i - 1) as u32;
            program.push(sock_filter {
                code: JMP_JA,
                jt: 0,
                jf: 0,
                k: to_next_stage,
            });
        } else {
            program.push(insn);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bpf::SECCOMP_RET_ERRNO;
    use crate::interp::{Data, check_program, run};

    #[test]
    fn pass_through_rewrites_only_allow_returns() {
        let enosys = SECCOMP_RET_ERRNO | 38;
        let eperm = SECCOMP_RET_ERRNO | 1;
        let stage = vec![
            sock_filter {
                code: 0x20,
                jt: 0,
                jf: 0,
                k: 0,
            },
            sock_filter {
                code: 0x15,
                jt: 0,
                jf: 1,
                k: 7,
            },
            sock_filter {
                code: RET_K,
                jt: 0,
                jf: 0,
                k: enosys,
            },
            sock_filter {
                code: RET_K,
                jt: 0,
                jf: 0,
                k: SECCOMP_RET_ALLOW,
            },
        ];
        let mut prog = BpfProgram::new();
        append_pass_through(&mut prog, stage);
        prog.push(sock_filter {
            code: RET_K,
            jt: 0,
            jf: 0,
            k: eperm,
        });
        check_program(&prog);
        assert_eq!(
            prog[3],
            sock_filter {
                code: JMP_JA,
                jt: 0,
                jf: 0,
                k: 0
            }
        );
        assert_eq!(run(&prog, &Data::new(Arch::X86_64, 7, [0; 6])), enosys);
        assert_eq!(run(&prog, &Data::new(Arch::X86_64, 8, [0; 6])), eperm);
    }
}
