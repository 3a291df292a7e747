//! Warren's classic-BPF generator: turns the per-number decisions of a compiled policy into a
//! compact seccomp program.
//!
//! The program has three parts, laid out so that every jump goes forward:
//!
//! 1. **Architecture check.** `ld [arch]`, `jeq AUDIT_ARCH_*`, else `ret KILL_PROCESS`.
//! 2. **Number search.** `ld [nr]`, then `jge 0x40000000` sends every number with the x32 bit (or
//!    any higher bit) to the default errno. Below that, a balanced binary search of `jge` nodes
//!    over *segments*: maximal runs of consecutive numbers with the same answer (a run of allowed
//!    numbers, a gap of denied ones, one overridden number) and single numbers whose answer
//!    depends on the arguments. A lookup costs about `log2(segments)` comparisons instead of one
//!    per allowed syscall.
//! 3. **Argument blocks**, one per argument-filtered syscall, placed where the search reaches its
//!    leaf. A block tries its rules in order; the comparisons of a rule must all hold for `ALLOW`,
//!    a failed comparison moves to the next rule, and when no rule is left the answer is the
//!    default errno.
//!
//! The code is emitted back to front, so the target of every jump already exists when the jump
//! is written and its distance is known. `jt`/`jf` hold only 8 bits; a conditional jump whose
//! target is further away goes through a `ja` (32-bit offset) placed right after it. `ret`
//! instructions are shared: a jump to an answer reuses the nearest `ret` with that value when it
//! is within reach, so most leaves of the search cost no instruction at all.
//!
//! Only `ld [k]`, `and #k`, `ja`, `jeq`/`jgt`/`jge #k` and `ret #k` are emitted: the instructions
//! the kernel's seccomp action cache can evaluate, so a syscall allowed whatever its arguments is
//! cached as "allow" and never runs the program.

use std::collections::BTreeMap;

use seccompiler::sock_filter;

use crate::types::{ArgWidth, CmpOp};

/// `BPF_LD | BPF_W | BPF_ABS`: load the 32-bit word at offset `k` of `seccomp_data`.
pub(super) const LD_W_ABS: u16 = 0x20;
/// `BPF_ALU | BPF_AND | BPF_K`.
pub(super) const ALU_AND_K: u16 = 0x54;
/// `BPF_JMP | BPF_JA`: jump forward by `k` instructions.
pub(super) const JMP_JA: u16 = 0x05;
/// `BPF_JMP | BPF_JEQ | BPF_K`.
pub(super) const JMP_JEQ_K: u16 = 0x15;
/// `BPF_JMP | BPF_JGT | BPF_K`.
pub(super) const JMP_JGT_K: u16 = 0x25;
/// `BPF_JMP | BPF_JGE | BPF_K`.
pub(super) const JMP_JGE_K: u16 = 0x35;
/// `BPF_RET | BPF_K`: return the constant in `k`.
pub(super) const RET_K: u16 = 0x06;

/// `SECCOMP_RET_KILL_PROCESS`.
pub(super) const SECCOMP_RET_KILL_PROCESS: u32 = 0x8000_0000;
/// `SECCOMP_RET_ERRNO`; the errno goes in the low 16 bits.
pub(super) const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;
/// `SECCOMP_RET_ALLOW`.
pub(super) const SECCOMP_RET_ALLOW: u32 = 0x7fff_0000;
/// `SECCOMP_RET_USER_NOTIF`: hand the call to the filter's listener (the launcher).
#[allow(dead_code)] // used by build.rs and the tests
pub(super) const SECCOMP_RET_USER_NOTIF: u32 = 0x7fc0_0000;
/// `__X32_SYSCALL_BIT`: x32 calls arrive with this bit set in `nr`. No native number of any
/// architecture comes near it, so everything from here up gets the default errno.
pub(super) const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// Offset of `nr` in `struct seccomp_data`.
const NR_OFFSET: u32 = 0;
/// Offset of `arch` in `struct seccomp_data`.
const ARCH_OFFSET: u32 = 4;
/// Offset of `args[0]` in `struct seccomp_data`; each argument is 8 bytes, low word first on the
/// little-endian architectures Warren supports.
const ARGS_OFFSET: u32 = 16;

/// The furthest a conditional jump reaches (`jt`/`jf` are `u8`).
const MAX_SHORT_JUMP: usize = u8::MAX as usize;
/// How far back a jump may reuse an existing `ret`. A little below [`MAX_SHORT_JUMP`], because
/// up to two instructions (another `ret`, a `ja`) can be emitted between choosing the `ret` and
/// writing the jump.
const RET_REUSE_REACH: usize = MAX_SHORT_JUMP - 2;

/// One argument comparison as the generator sees it: `args[index] <op> val`, over the low
/// 32 bits (`Dword`) or all 64 (`Qword`), unsigned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Comparison {
    /// Which argument, 0 to 5.
    pub index: u8,
    /// How many bits take part.
    pub width: ArgWidth,
    /// The operator; `MaskedEq(mask)` means `args[index] & mask == val`.
    pub op: CmpOp,
    /// The operand. For `Dword` it fits in 32 bits; for `MaskedEq` it has no bits outside the
    /// mask (the loader checks both).
    pub val: u64,
}

/// What the filter answers for one syscall number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Decision {
    /// This seccomp return value, whatever the arguments.
    Return(u32),
    /// `ALLOW` when every comparison of at least one rule holds, else the default action.
    /// With no rules, nothing is allowed. `generate` drops comparisons that always hold
    /// before laying out the code.
    Rules(Vec<Vec<Comparison>>),
}

/// Everything the generator needs for one architecture.
#[derive(Debug, Clone)]
pub(super) struct Plan {
    /// `AUDIT_ARCH_*` of the native architecture; anything else kills the process.
    pub audit_arch: u32,
    /// The return value for numbers without a decision and for failed argument rules.
    pub default_action: u32,
    /// The decision for each number the policy names, sorted by number, each number once.
    /// Numbers from [`X32_SYSCALL_BIT`] up are ignored: they all get the default action.
    pub syscalls: Vec<(u32, Decision)>,
}

impl Plan {
    /// Removes comparisons that always hold (a masked compare against an empty mask) and turns a
    /// rule set that then contains an always-true rule into `ALLOW`, so that every rule the
    /// generator sees has code.
    fn normalize(&mut self) {
        for (_, decision) in &mut self.syscalls {
            if let Decision::Rules(rules) = decision {
                for rule in rules.iter_mut() {
                    rule.retain(|c| !always_holds(c));
                }
                if rules.is_empty() {
                    *decision = Decision::Return(self.default_action);
                } else if rules.iter().any(Vec::is_empty) {
                    *decision = Decision::Return(SECCOMP_RET_ALLOW);
                }
            }
        }
    }
}

/// Whether `c` holds for every argument value: only a masked compare whose mask selects no bit
/// of the compared width (the value then has no bits either).
fn always_holds(c: &Comparison) -> bool {
    match (c.op, c.width) {
        (CmpOp::MaskedEq(mask), ArgWidth::Dword) => mask as u32 == 0,
        (CmpOp::MaskedEq(mask), ArgWidth::Qword) => mask == 0,
        _ => false,
    }
}

/// Generates the program for `plan`. The result always ends in `ret`, every jump lands inside
/// it, and it uses only the instructions listed in the module documentation.
///
/// # Panics
///
/// If `plan.syscalls` is not sorted by number or names a number twice: the caller's bug.
pub(super) fn generate(mut plan: Plan) -> Vec<sock_filter> {
    assert!(
        plan.syscalls.windows(2).all(|w| w[0].0 < w[1].0),
        "plan not sorted by number"
    );
    plan.normalize();
    let segments = segments(&plan);
    let mut b = Builder::default();

    let below = emit_search(&mut b, &plan, &segments);
    b.jump(
        JMP_JGE_K,
        X32_SYSCALL_BIT,
        Target::Return(plan.default_action),
        below,
    );
    let load_nr = b.stmt(LD_W_ABS, NR_OFFSET);
    b.jump(
        JMP_JEQ_K,
        plan.audit_arch,
        Target::At(load_nr),
        Target::Return(SECCOMP_RET_KILL_PROCESS),
    );
    b.stmt(LD_W_ABS, ARCH_OFFSET);
    b.finish()
}

/// A run of numbers `[start, next segment's start)` that share one decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Segment<'p> {
    /// Every number in the run returns this value.
    Return(u32),
    /// A single number with argument rules.
    Rules(&'p [Vec<Comparison>]),
}

/// Cuts `[0, X32_SYSCALL_BIT)` into segments, merging neighbours with the same return value.
fn segments(plan: &Plan) -> Vec<(u32, Segment<'_>)> {
    fn push<'p>(out: &mut Vec<(u32, Segment<'p>)>, start: u32, segment: Segment<'p>) {
        let mergeable = matches!(segment, Segment::Return(_));
        match out.last() {
            Some((_, last)) if mergeable && *last == segment => {}
            _ => out.push((start, segment)),
        }
    }
    let mut out: Vec<(u32, Segment<'_>)> = Vec::new();
    let mut next = 0u32;
    for (nr, decision) in plan
        .syscalls
        .iter()
        .take_while(|(nr, _)| *nr < X32_SYSCALL_BIT)
    {
        let nr = *nr;
        if nr > next {
            push(&mut out, next, Segment::Return(plan.default_action));
        }
        match decision {
            Decision::Return(action) => push(&mut out, nr, Segment::Return(*action)),
            Decision::Rules(rules) => push(&mut out, nr, Segment::Rules(rules)),
        }
        next = nr + 1;
    }
    if next < X32_SYSCALL_BIT {
        push(&mut out, next, Segment::Return(plan.default_action));
    }
    out
}

/// Emits the binary search over `segments` and returns where it starts.
fn emit_search(b: &mut Builder, plan: &Plan, segments: &[(u32, Segment<'_>)]) -> Target {
    match segments {
        [] => Target::Return(plan.default_action),
        [(_, Segment::Return(action))] => Target::Return(*action),
        [(_, Segment::Rules(rules))] => Target::At(emit_rules(b, plan, rules)),
        _ => {
            let mid = segments.len() / 2;
            // Back to front: the upper half, then the lower half, then the node in front of both,
            // which falls into the lower half and jumps over it to the upper one.
            let above = emit_search(b, plan, &segments[mid..]);
            let below = emit_search(b, plan, &segments[..mid]);
            Target::At(b.jump(JMP_JGE_K, segments[mid].0, above, below))
        }
    }
}

/// What the accumulator is known to hold at some point of an argument block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Acc {
    /// Nothing useful.
    Unknown,
    /// The word at this `seccomp_data` offset.
    Word(u32),
    /// The word at this offset, `and`ed with the mask.
    Masked(u32, u32),
}

impl Acc {
    /// What is known where two paths meet.
    fn join(self, other: Acc) -> Acc {
        if self == other { self } else { Acc::Unknown }
    }
}

/// Where a jump of an argument comparison goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Exit {
    /// The instruction at this index of the same comparison.
    Local(usize),
    /// The comparison holds.
    Pass,
    /// The comparison fails.
    Fail,
}

/// One instruction of an argument comparison, before layout.
#[derive(Debug, Clone, Copy)]
enum Op {
    /// Load the word at this offset.
    Load(u32),
    /// `and` the accumulator with this mask.
    And(u32),
    /// Conditional jump.
    Jump {
        code: u16,
        k: u32,
        jt: Exit,
        jf: Exit,
    },
}

/// The instructions of one comparison, laid out front to back, with what the accumulator holds
/// on each way out.
struct CompiledComparison {
    ops: Vec<Op>,
    acc_on_pass: Acc,
    acc_on_fail: Option<Acc>,
}

/// Builds the instructions of `c` given what the accumulator holds on entry, skipping a load
/// (and a mask) the accumulator already holds.
fn compile_comparison(c: &Comparison, entry: Acc) -> CompiledComparison {
    let low_offset = ARGS_OFFSET + 8 * u32::from(c.index);
    let high_offset = low_offset + 4;
    let (val_high, val_low) = ((c.val >> 32) as u32, c.val as u32);

    // Each check compares one word (possibly masked) and either decides or moves on to the next
    // check: `NEXT` is the exit for "this word is equal, look at the next one".
    struct WordCheck {
        offset: u32,
        mask: Option<u32>,
        /// (code, k, jt, jf), with `Exit::Local(usize::MAX)` standing for "the next check".
        jumps: Vec<(u16, u32, Exit, Exit)>,
    }
    const NEXT: Exit = Exit::Local(usize::MAX);
    use Exit::{Fail, Pass};

    let checks: Vec<WordCheck> = match (c.width, c.op) {
        (ArgWidth::Dword, op) => {
            let (mask, jumps) = match op {
                CmpOp::Eq => (None, vec![(JMP_JEQ_K, val_low, Pass, Fail)]),
                CmpOp::Ne => (None, vec![(JMP_JEQ_K, val_low, Fail, Pass)]),
                CmpOp::Gt => (None, vec![(JMP_JGT_K, val_low, Pass, Fail)]),
                CmpOp::Ge => (None, vec![(JMP_JGE_K, val_low, Pass, Fail)]),
                CmpOp::Lt => (None, vec![(JMP_JGE_K, val_low, Fail, Pass)]),
                CmpOp::Le => (None, vec![(JMP_JGT_K, val_low, Fail, Pass)]),
                CmpOp::MaskedEq(mask) => {
                    let mask = mask as u32;
                    (Some(mask), vec![(JMP_JEQ_K, val_low & mask, Pass, Fail)])
                }
            };
            vec![WordCheck {
                offset: low_offset,
                mask,
                jumps,
            }]
        }
        (ArgWidth::Qword, CmpOp::MaskedEq(mask)) => {
            let (mask_high, mask_low) = ((mask >> 32) as u32, mask as u32);
            let mut checks = Vec::new();
            for (offset, mask, val) in [
                (high_offset, mask_high, val_high & mask_high),
                (low_offset, mask_low, val_low & mask_low),
            ] {
                if mask != 0 {
                    checks.push(WordCheck {
                        offset,
                        mask: Some(mask),
                        jumps: vec![(JMP_JEQ_K, val, NEXT, Fail)],
                    });
                }
            }
            checks
        }
        (ArgWidth::Qword, op) => {
            // The high words decide unless they are equal; then the low words do.
            let (high, low) = match op {
                CmpOp::Eq => (
                    vec![(JMP_JEQ_K, val_high, NEXT, Fail)],
                    (JMP_JEQ_K, Pass, Fail),
                ),
                CmpOp::Ne => (
                    vec![(JMP_JEQ_K, val_high, NEXT, Pass)],
                    (JMP_JEQ_K, Fail, Pass),
                ),
                CmpOp::Gt | CmpOp::Ge => (
                    vec![
                        (JMP_JGT_K, val_high, Pass, Exit::Local(0)),
                        (JMP_JEQ_K, val_high, NEXT, Fail),
                    ],
                    if op == CmpOp::Gt {
                        (JMP_JGT_K, Pass, Fail)
                    } else {
                        (JMP_JGE_K, Pass, Fail)
                    },
                ),
                CmpOp::Lt | CmpOp::Le => (
                    vec![
                        (JMP_JGT_K, val_high, Fail, Exit::Local(0)),
                        (JMP_JEQ_K, val_high, NEXT, Pass),
                    ],
                    if op == CmpOp::Lt {
                        (JMP_JGE_K, Fail, Pass)
                    } else {
                        (JMP_JGT_K, Fail, Pass)
                    },
                ),
                CmpOp::MaskedEq(_) => unreachable!("handled above"),
            };
            vec![
                WordCheck {
                    offset: high_offset,
                    mask: None,
                    jumps: high,
                },
                WordCheck {
                    offset: low_offset,
                    mask: None,
                    jumps: vec![(low.0, val_low, low.1, low.2)],
                },
            ]
        }
    };

    // Lay the checks out, resolving "next check" and the local fall-through markers.
    let mut ops = Vec::new();
    let mut acc = entry;
    let mut acc_on_pass: Option<Acc> = None;
    let mut acc_on_fail: Option<Acc> = None;
    let count = checks.len();
    for (i, check) in checks.into_iter().enumerate() {
        let wanted_masked = check.mask.filter(|&m| m != u32::MAX);
        let already = match wanted_masked {
            None => acc == Acc::Word(check.offset),
            Some(mask) => acc == Acc::Masked(check.offset, mask),
        };
        if !already {
            if acc != Acc::Word(check.offset) {
                ops.push(Op::Load(check.offset));
                acc = Acc::Word(check.offset);
            }
            if let Some(mask) = wanted_masked {
                ops.push(Op::And(mask));
                acc = Acc::Masked(check.offset, mask);
            }
        }
        let first_jump = ops.len();
        let jump_count = check.jumps.len();
        let last = i + 1 == count;
        for (j, (code, k, jt, jf)) in check.jumps.into_iter().enumerate() {
            let resolve = |e: Exit| match e {
                // The next check starts right after this check's jumps.
                NEXT if last => Pass,
                NEXT => Exit::Local(first_jump + jump_count),
                // Inside a check, `Local(0)` means "the next jump of this check".
                Exit::Local(_) => Exit::Local(first_jump + j + 1),
                other => other,
            };
            let (jt, jf) = (resolve(jt), resolve(jf));
            for exit in [jt, jf] {
                let slot = match exit {
                    Pass => &mut acc_on_pass,
                    Fail => &mut acc_on_fail,
                    Exit::Local(_) => continue,
                };
                *slot = Some(slot.map_or(acc, |s| s.join(acc)));
            }
            ops.push(Op::Jump { code, k, jt, jf });
        }
    }
    CompiledComparison {
        ops,
        acc_on_pass: acc_on_pass.unwrap_or(Acc::Unknown),
        acc_on_fail,
    }
}

/// Emits the argument block for one syscall and returns its first instruction.
fn emit_rules(b: &mut Builder, plan: &Plan, rules: &[Vec<Comparison>]) -> usize {
    // Front to back: what the accumulator holds where each comparison starts, so loads it
    // already holds are left out.
    let mut compiled: Vec<Vec<CompiledComparison>> = Vec::with_capacity(rules.len());
    let mut rule_entry = Acc::Unknown;
    for rule in rules {
        let mut acc = rule_entry;
        let mut on_fail: Option<Acc> = None;
        let mut list = Vec::with_capacity(rule.len());
        for c in rule {
            let cc = compile_comparison(c, acc);
            acc = cc.acc_on_pass;
            if let Some(f) = cc.acc_on_fail {
                on_fail = Some(on_fail.map_or(f, |o| o.join(f)));
            }
            list.push(cc);
        }
        rule_entry = on_fail.unwrap_or(Acc::Unknown);
        compiled.push(list);
    }

    // Back to front: the last rule fails to the default action, each earlier rule to the next.
    let mut fail = Target::Return(plan.default_action);
    for rule in compiled.iter().rev() {
        let mut pass = Target::Return(SECCOMP_RET_ALLOW);
        for cc in rule.iter().rev() {
            pass = Target::At(emit_ops(b, &cc.ops, pass, fail));
        }
        fail = pass;
    }
    match fail {
        Target::At(at) => at,
        // Rules are never empty, and neither is the code of a comparison.
        Target::Return(_) => unreachable!("an argument block without instructions"),
    }
}

/// Emits the instructions of one comparison and returns the first.
fn emit_ops(b: &mut Builder, ops: &[Op], pass: Target, fail: Target) -> usize {
    let mut at = vec![0usize; ops.len()];
    for (i, op) in ops.iter().enumerate().rev() {
        at[i] = match *op {
            Op::Load(offset) => b.stmt(LD_W_ABS, offset),
            Op::And(mask) => b.stmt(ALU_AND_K, mask),
            Op::Jump { code, k, jt, jf } => {
                let target = |e: Exit| match e {
                    Exit::Local(j) => Target::At(at[j]),
                    Exit::Pass => pass,
                    Exit::Fail => fail,
                };
                b.jump(code, k, target(jt), target(jf))
            }
        };
    }
    at[0]
}

/// A jump destination: a placed instruction, or "return this value" (a `ret` found or placed
/// when the jump is written).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    /// The instruction with this reverse index.
    At(usize),
    /// A `ret` of this value.
    Return(u32),
}

/// Emits a program back to front. Positions are *reverse indices*: 0 is the last instruction of
/// the program, and an instruction at reverse index `p` jumping to `t` uses offset `p - t - 1`.
/// An instruction that does not jump falls through to the one emitted just before it.
#[derive(Debug, Default)]
struct Builder {
    reversed: Vec<sock_filter>,
    /// For each return value, the reverse index of the newest `ret` with it.
    rets: BTreeMap<u32, usize>,
}

impl Builder {
    /// The reverse index the next instruction will get.
    fn next(&self) -> usize {
        self.reversed.len()
    }

    fn push(&mut self, code: u16, jt: u8, jf: u8, k: u32) -> usize {
        self.reversed.push(sock_filter { code, jt, jf, k });
        self.reversed.len() - 1
    }

    /// Emits an instruction that does not jump.
    fn stmt(&mut self, code: u16, k: u32) -> usize {
        self.push(code, 0, 0, k)
    }

    /// A `ret value` that the next instruction can reach, reusing one if possible.
    fn ret(&mut self, value: u32) -> usize {
        if let Some(&at) = self.rets.get(&value)
            && self.next() - at - 1 <= RET_REUSE_REACH
        {
            return at;
        }
        let at = self.push(RET_K, 0, 0, value);
        self.rets.insert(value, at);
        at
    }

    fn resolve(&mut self, target: Target) -> usize {
        match target {
            Target::At(at) => at,
            Target::Return(value) => self.ret(value),
        }
    }

    /// Distance from the next instruction to `target`, as a jump offset.
    fn distance(&self, target: usize) -> usize {
        self.next() - target - 1
    }

    /// An unconditional jump to `target`.
    fn ja(&mut self, target: usize) -> usize {
        let offset = u32::try_from(self.distance(target)).expect("programs are far below 4 GiB");
        self.push(JMP_JA, 0, 0, offset)
    }

    /// Emits a conditional jump, with `ja` stepping stones for targets beyond 8-bit reach, and
    /// returns its reverse index. The jump is the newest instruction afterwards, so an
    /// instruction emitted next falls through into it.
    fn jump(&mut self, code: u16, k: u32, jt: Target, jf: Target) -> usize {
        let mut jt = self.resolve(jt);
        let mut jf = self.resolve(jf);
        if jt == jf {
            // The comparison cannot change where control goes.
            return if jt + 1 == self.next() {
                jt
            } else {
                self.ja(jt)
            };
        }
        loop {
            if self.distance(jt) > MAX_SHORT_JUMP {
                jt = self.ja(jt);
            } else if self.distance(jf) > MAX_SHORT_JUMP {
                jf = self.ja(jf);
            } else {
                break;
            }
        }
        let short = |t: usize| u8::try_from(self.distance(t)).expect("checked above");
        let (t, f) = (short(jt), short(jf));
        self.push(code, t, f, k)
    }

    /// The program, front to back.
    fn finish(mut self) -> Vec<sock_filter> {
        self.reversed.reverse();
        self.reversed
    }
}

/// The *notifying* variant of `program`: every `ret ERRNO(errno)` (the policy's default
/// refusal) becomes `ret USER_NOTIF`, so that a refused call goes to the filter's listener, which
/// logs it and answers `errno` itself. Nothing else changes: the same instructions, the same
/// jumps, and every other answer (`ALLOW`, the `ENOSYS` of `clone3`, `KILL_PROCESS`) stays in
/// the program. Allowed calls therefore cost exactly what they cost in `program`, and the kernel's
/// action cache (which caches only `ALLOW`) covers the same numbers.
#[allow(dead_code)] // used by build.rs and the tests
pub(super) fn notifying(program: &[sock_filter], errno: u32) -> Vec<sock_filter> {
    let refusal = SECCOMP_RET_ERRNO | (errno & 0xffff);
    program
        .iter()
        .map(|ins| {
            let k = if ins.code == RET_K && ins.k == refusal {
                SECCOMP_RET_USER_NOTIF
            } else {
                ins.k
            };
            sock_filter {
                code: ins.code,
                jt: ins.jt,
                jf: ins.jf,
                k,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    //! Tests of the layout machinery on plans built by hand; the default policy is compared with
    //! the seccompiler reference in `equivalence.rs`.

    use super::*;
    use crate::interp::{Data, check_program, reachable, run};

    const AUDIT: u32 = 0xc000_003e;
    const EPERM: u32 = SECCOMP_RET_ERRNO | 1;
    const ENOSYS: u32 = SECCOMP_RET_ERRNO | 38;

    fn data(nr: u32, args: [u64; 6]) -> Data {
        Data {
            nr,
            arch: AUDIT,
            ip: 0,
            args,
        }
    }

    fn plan(syscalls: impl IntoIterator<Item = (u32, Decision)>) -> Plan {
        let mut syscalls: Vec<(u32, Decision)> = syscalls.into_iter().collect();
        syscalls.sort_by_key(|(nr, _)| *nr);
        Plan {
            audit_arch: AUDIT,
            default_action: EPERM,
            syscalls,
        }
    }

    fn checked(plan: Plan) -> Vec<sock_filter> {
        let prog = generate(plan);
        check_program(&prog);
        assert!(
            reachable(&prog).iter().all(|&r| r),
            "unreachable instructions in {prog:?}"
        );
        prog
    }

    #[test]
    fn an_empty_plan_checks_the_architecture_and_denies() {
        let prog = checked(plan([]));
        assert_eq!(prog.len(), 5, "{prog:?}");
        for nr in [0, 1, 0x3fff_ffff, X32_SYSCALL_BIT, u32::MAX] {
            assert_eq!(run(&prog, &data(nr, [0; 6])), EPERM);
        }
        let foreign = Data {
            arch: 0x4000_0003,
            ..data(0, [0; 6])
        };
        assert_eq!(run(&prog, &foreign), SECCOMP_RET_KILL_PROCESS);
    }

    #[test]
    fn runs_of_allowed_numbers_become_ranges() {
        // 0..=99 and 200..=299 allowed, 150 overridden: six segments, five `jge` nodes.
        let p = plan(
            (0..100)
                .chain(200..300)
                .map(|nr| (nr, Decision::Return(SECCOMP_RET_ALLOW)))
                .chain([(150, Decision::Return(ENOSYS))]),
        );
        let prog = checked(p);
        assert!(prog.len() <= 14, "{} instructions: {prog:?}", prog.len());
        for nr in 0..400 {
            let expected = match nr {
                0..100 | 200..300 => SECCOMP_RET_ALLOW,
                150 => ENOSYS,
                _ => EPERM,
            };
            assert_eq!(run(&prog, &data(nr, [0; 6])), expected, "{nr}");
            assert_eq!(run(&prog, &data(nr | X32_SYSCALL_BIT, [0; 6])), EPERM);
        }
    }

    #[test]
    fn far_targets_go_through_ja_and_every_answer_stays_right() {
        // Every other number allowed and, in between, argument rules: a search too wide for
        // 8-bit jumps to every `ret`.
        let rule = |v: u64| {
            vec![Comparison {
                index: 1,
                width: ArgWidth::Dword,
                op: CmpOp::Eq,
                val: v,
            }]
        };
        let p = plan((0..900u32).map(|nr| {
            let decision = match nr % 3 {
                0 => Decision::Return(SECCOMP_RET_ALLOW),
                1 => Decision::Rules(vec![rule(u64::from(nr)), rule(7)]),
                _ => Decision::Return(ENOSYS),
            };
            (nr * 2, decision)
        }));
        let prog = checked(p);
        assert!(
            prog.iter().any(|i| i.code == JMP_JA),
            "expected stepping stones"
        );
        for nr in 0..1900u32 {
            for arg in [0u64, 7, u64::from(nr / 2), u64::from(nr / 2) | 1 << 32] {
                let got = run(&prog, &data(nr, [0, arg, 0, 0, 0, 0]));
                let expected = if nr % 2 == 1 || nr >= 1800 {
                    EPERM
                } else {
                    match (nr / 2) % 3 {
                        0 => SECCOMP_RET_ALLOW,
                        1 if arg as u32 == nr / 2 || arg == 7 => SECCOMP_RET_ALLOW,
                        1 => EPERM,
                        _ => ENOSYS,
                    }
                };
                assert_eq!(got, expected, "nr {nr} arg {arg:#x}");
            }
        }
    }

    #[test]
    fn repeated_loads_of_one_argument_are_left_out() {
        let eq = |v: u64| {
            vec![Comparison {
                index: 0,
                width: ArgWidth::Dword,
                op: CmpOp::Eq,
                val: v,
            }]
        };
        let p = plan([(5, Decision::Rules((0..20).map(eq).collect()))]);
        let prog = checked(p);
        let arg_loads = prog
            .iter()
            .filter(|i| i.code == LD_W_ABS && i.k >= ARGS_OFFSET)
            .count();
        assert_eq!(arg_loads, 1, "{prog:?}");
        for v in 0..40u64 {
            let expected = if v < 20 { SECCOMP_RET_ALLOW } else { EPERM };
            assert_eq!(run(&prog, &data(5, [v, 0, 0, 0, 0, 0])), expected);
            assert_eq!(run(&prog, &data(5, [v | 1 << 40, 0, 0, 0, 0, 0])), expected);
        }
    }

    #[test]
    fn an_empty_mask_always_holds() {
        let always = Comparison {
            index: 2,
            width: ArgWidth::Qword,
            op: CmpOp::MaskedEq(0),
            val: 0,
        };
        let low_only = Comparison {
            width: ArgWidth::Dword,
            op: CmpOp::MaskedEq(0xffff_ffff_0000_0000),
            ..always
        };
        for c in [always, low_only] {
            let prog = checked(plan([(3, Decision::Rules(vec![vec![c]]))]));
            assert_eq!(run(&prog, &data(3, [u64::MAX; 6])), SECCOMP_RET_ALLOW);
            assert_eq!(run(&prog, &data(4, [u64::MAX; 6])), EPERM);
        }
    }
}
