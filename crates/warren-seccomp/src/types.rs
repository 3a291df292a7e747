//! The vocabulary the policy loader, the syscall tables and the generator share: the target
//! architectures and the argument comparisons. It depends on no other module of the crate, so the
//! three that use it do not depend on each other in a circle.

use std::fmt;

use serde::Deserialize;

/// A CPU architecture the policy can be compiled for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
pub enum Arch {
    /// x86_64, audit architecture `AUDIT_ARCH_X86_64`.
    #[serde(rename = "x86_64")]
    X86_64,
    /// 64-bit Arm, audit architecture `AUDIT_ARCH_AARCH64`.
    #[serde(rename = "aarch64")]
    Aarch64,
}

impl Arch {
    /// The architecture this binary was built for.
    #[cfg(target_arch = "x86_64")]
    pub const fn host() -> Arch {
        Arch::X86_64
    }

    /// The architecture this binary was built for.
    #[cfg(target_arch = "aarch64")]
    pub const fn host() -> Arch {
        Arch::Aarch64
    }

    /// The `AUDIT_ARCH_*` value the kernel puts in `seccomp_data.arch` for native system calls.
    pub const fn audit_arch(self) -> u32 {
        match self {
            // EM_X86_64 | __AUDIT_ARCH_64BIT | __AUDIT_ARCH_LE
            Arch::X86_64 => 62 | 0x8000_0000 | 0x4000_0000,
            // EM_AARCH64 | __AUDIT_ARCH_64BIT | __AUDIT_ARCH_LE
            Arch::Aarch64 => 183 | 0x8000_0000 | 0x4000_0000,
        }
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Arch::X86_64 => "x86_64",
            Arch::Aarch64 => "aarch64",
        })
    }
}

/// How many bits of an argument a comparison looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(rename_all = "lowercase")]
pub(crate) enum ArgWidth {
    /// Compare the low 32 bits only.
    Dword,
    /// Compare all 64 bits.
    Qword,
}

/// The comparison an argument rule makes (`policy.json`'s `"op"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(rename_all = "snake_case")]
pub(crate) enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    MaskedEq(u64),
}
