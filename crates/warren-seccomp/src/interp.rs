//! A classic-BPF interpreter and static checker for seccomp programs, used only by the tests.
//!
//! It knows the instructions Warren's generator and seccompiler emit and nothing else, and checks
//! what the kernel's `seccomp_check_filter` and `bpf_check_classic` check for them: aligned loads
//! inside `struct seccomp_data`, jump targets inside the program, a final `ret`.

use seccompiler::sock_filter;

use crate::bpf::{ALU_AND_K, JMP_JA, JMP_JEQ_K, JMP_JGE_K, JMP_JGT_K, LD_W_ABS, RET_K};
use crate::policy::{Arch, MAX_PROGRAM_LEN};

/// `BPF_JMP | BPF_JSET | BPF_K`, which seccompiler does not emit either but the kernel accepts.
const JMP_JSET_K: u16 = 0x45;

/// `struct seccomp_data`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Data {
    pub nr: u32,
    pub arch: u32,
    pub ip: u64,
    pub args: [u64; 6],
}

impl Data {
    /// A native call of `arch`.
    pub fn new(arch: Arch, nr: u32, args: [u64; 6]) -> Data {
        Data {
            nr,
            arch: arch.audit_arch(),
            ip: 0x7f00_dead_beef,
            args,
        }
    }

    /// A 32-bit load at `offset`, as `BPF_LD | BPF_W | BPF_ABS` performs it (little endian).
    fn load(&self, offset: u32) -> u32 {
        assert!(
            offset % 4 == 0 && offset < 64,
            "unaligned or out-of-range load {offset}"
        );
        let word = |v: u64, high: bool| if high { (v >> 32) as u32 } else { v as u32 };
        match offset {
            0 => self.nr,
            4 => self.arch,
            8 | 12 => word(self.ip, offset == 12),
            _ => {
                let arg = ((offset - 16) / 8) as usize;
                word(self.args[arg], (offset - 16) % 8 == 4)
            }
        }
    }
}

/// Where control can go after the instruction at `pc`.
fn successors(prog: &[sock_filter], pc: usize) -> Vec<usize> {
    let insn = &prog[pc];
    match insn.code {
        LD_W_ABS => {
            assert!(insn.k % 4 == 0 && insn.k < 64, "bad load offset at {pc}");
            vec![pc + 1]
        }
        ALU_AND_K => vec![pc + 1],
        RET_K => vec![],
        JMP_JA => vec![pc + 1 + insn.k as usize],
        JMP_JEQ_K | JMP_JGT_K | JMP_JGE_K | JMP_JSET_K => {
            vec![pc + 1 + usize::from(insn.jt), pc + 1 + usize::from(insn.jf)]
        }
        other => panic!("unexpected opcode {other:#x} at {pc}"),
    }
}

/// The static checks the kernel makes that matter for these programs, plus "only the opcodes
/// this interpreter knows". Jumps only go forward and the last instruction is a `ret`, so every
/// path ends in a `ret`.
pub(crate) fn check_program(prog: &[sock_filter]) {
    assert!(
        !prog.is_empty() && prog.len() <= MAX_PROGRAM_LEN,
        "length {}",
        prog.len()
    );
    assert_eq!(
        prog.last().map(|i| i.code),
        Some(RET_K),
        "must end with a return"
    );
    for pc in 0..prog.len() {
        for t in successors(prog, pc) {
            assert!(t < prog.len(), "jump from {pc} to {t} leaves the program");
        }
    }
}

/// Which instructions some input can reach.
pub(crate) fn reachable(prog: &[sock_filter]) -> Vec<bool> {
    let mut seen = vec![false; prog.len()];
    seen[0] = true;
    for pc in 0..prog.len() {
        if seen[pc] {
            for t in successors(prog, pc) {
                seen[t] = true;
            }
        }
    }
    seen
}

/// What the kernel's seccomp action cache concludes for `nr`: whether the program returns
/// `SECCOMP_RET_ALLOW` without looking at anything but `nr` and `arch` (`seccomp_is_const_allow`
/// in `kernel/seccomp.c`, which gives up on any other load and on any instruction it does not
/// know). Numbers for which this holds skip the filter on every later call.
pub(crate) fn kernel_caches_allow(prog: &[sock_filter], arch: u32, nr: u32) -> bool {
    let mut a: u32 = 0;
    let mut pc = 0usize;
    while let Some(insn) = prog.get(pc) {
        let k = insn.k;
        let cond = |taken: bool| usize::from(if taken { insn.jt } else { insn.jf });
        pc += 1;
        match insn.code {
            LD_W_ABS if k == 0 => a = nr,
            LD_W_ABS if k == 4 => a = arch,
            LD_W_ABS => return false,
            ALU_AND_K => a &= k,
            JMP_JA => pc += k as usize,
            JMP_JEQ_K => pc += cond(a == k),
            JMP_JGT_K => pc += cond(a > k),
            JMP_JGE_K => pc += cond(a >= k),
            JMP_JSET_K => pc += cond(a & k != 0),
            RET_K => return k == crate::bpf::SECCOMP_RET_ALLOW,
            _ => return false,
        }
    }
    false
}

/// Runs `prog` on `data` and returns the seccomp action.
pub(crate) fn run(prog: &[sock_filter], data: &Data) -> u32 {
    run_counting(prog, data).0
}

/// Runs `prog` on `data` and returns the seccomp action and how many instructions ran.
pub(crate) fn run_counting(prog: &[sock_filter], data: &Data) -> (u32, usize) {
    let mut a: u32 = 0;
    let mut pc = 0usize;
    let mut steps = 0;
    loop {
        let insn = prog
            .get(pc)
            .unwrap_or_else(|| panic!("fell off the program at {pc}"));
        let k = insn.k;
        let cond = |taken: bool| usize::from(if taken { insn.jt } else { insn.jf });
        steps += 1;
        pc += 1;
        match insn.code {
            LD_W_ABS => a = data.load(k),
            ALU_AND_K => a &= k,
            JMP_JA => pc += k as usize,
            JMP_JEQ_K => pc += cond(a == k),
            JMP_JGT_K => pc += cond(a > k),
            JMP_JGE_K => pc += cond(a >= k),
            JMP_JSET_K => pc += cond(a & k != 0),
            RET_K => return (k, steps),
            other => panic!("unexpected opcode {other:#x}"),
        }
    }
}
