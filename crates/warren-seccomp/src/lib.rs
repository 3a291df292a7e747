//! The seccomp filter every Warren environment runs under: the policy as reviewed data, the
//! generator that turns it into a classic-BPF program, the syscall tables, and the programs
//! themselves, compiled **at build time**.
//!
//! * `policy.json` is a default-deny allow-list with a reason per entry; [`Profile`] loads and
//!   validates it (see `docs/seccomp.md`).
//! * `syscalls.rs` holds the syscall numbers by name for x86_64 and aarch64.
//! * `bpf.rs` is Warren's own generator. It emits an architecture check (`seccomp_data.arch`
//!   other than the native audit architecture returns `SECCOMP_RET_KILL_PROCESS`, so i386 calls
//!   made with `int 0x80` kill the process), sends every number with the x32 bit to the default
//!   errno, then does a balanced binary search over the numbers with runs that get the same
//!   answer merged into ranges, ending in `ALLOW`, an errno, or the argument checks of that
//!   syscall. The program is about a tenth of the length of the linear chain seccompiler built
//!   from the same policy (131 against 1,484 instructions on x86_64). The tests keep the
//!   seccompiler-based compiler (`reference.rs`) and require both to agree on every input tried.
//! * `build.rs` runs the same loader and generator over `policy.json` for every supported
//!   architecture and writes the instructions into this crate as `static` arrays, with the
//!   `sha256` digest of their bytes. A launch therefore parses nothing, reads no file and
//!   compiles nothing: [`Program::host`] is a constant, [`Program::install`] hands exactly its
//!   instructions to `seccomp(2)`, and [`Program::digest`] — what the launch measurement records —
//!   is the digest of exactly those bytes.
//!
//! A denied syscall returns `EPERM`, not `SIGSYS`, so programs print "Operation not permitted"
//! and tests can observe the denial.
//!
//! **Invariant:** no file read at run time can change the installed filter or its recorded
//! digest: both are compiled into the binary — except a profile file the user names
//! (`--seccomp FILE`, [`Selection`]), which can only add syscalls from the reviewed safe set and
//! whose compiled program is exactly what is installed and recorded.
#![forbid(unsafe_code)]

mod bpf;
#[cfg(test)]
mod equivalence;
#[cfg(test)]
mod interp;
mod policy;
#[cfg(test)]
mod reference;
mod select;
mod syscalls;
mod types;

use std::borrow::Cow;

use seccompiler::sock_filter;
use sha2::{Digest, Sha256};

pub use policy::{Arch, MAX_PROGRAM_LEN, Profile, SeccompError};
pub use select::Selection;

include!(concat!(env!("OUT_DIR"), "/programs.rs"));

/// A seccomp program compiled from the policy at build time, for one architecture.
///
/// Each architecture has two: the plain program, whose refusals return the errno themselves
/// (`ret ERRNO(EPERM)`), and its *notifying* variant ([`Program::host_notifying`]), the same
/// instructions with every such `ret` turned into `ret USER_NOTIF`, so that the launcher (the
/// filter's listener) sees each refused call, logs it and answers the same errno
/// ([`Program::refusal_errno`]). Launches install the notifying variant when the kernel has
/// `SECCOMP_RET_USER_NOTIF`.
///
/// The programs of the `default` and `strict` profiles are compiled at build time; a
/// per-environment profile file's is compiled when the file is read ([`Program::compile`]).
#[derive(Debug, Clone)]
pub struct Program {
    arch: Arch,
    filter: Cow<'static, [sock_filter]>,
    digest: Cow<'static, str>,
    notifying: bool,
}

/// The program for x86_64.
static X86_64: Program = Program {
    arch: Arch::X86_64,
    filter: Cow::Borrowed(&X86_64_FILTER),
    digest: Cow::Borrowed(X86_64_DIGEST),
    notifying: false,
};

/// The program for aarch64.
static AARCH64: Program = Program {
    arch: Arch::Aarch64,
    filter: Cow::Borrowed(&AARCH64_FILTER),
    digest: Cow::Borrowed(AARCH64_DIGEST),
    notifying: false,
};

/// The `strict` profile's programs (plain, notifying) for x86_64 and aarch64.
static X86_64_STRICT: Program = Program {
    arch: Arch::X86_64,
    filter: Cow::Borrowed(&X86_64_STRICT_FILTER),
    digest: Cow::Borrowed(X86_64_STRICT_DIGEST),
    notifying: false,
};
static AARCH64_STRICT: Program = Program {
    arch: Arch::Aarch64,
    filter: Cow::Borrowed(&AARCH64_STRICT_FILTER),
    digest: Cow::Borrowed(AARCH64_STRICT_DIGEST),
    notifying: false,
};
static X86_64_STRICT_NOTIFY: Program = Program {
    arch: Arch::X86_64,
    filter: Cow::Borrowed(&X86_64_STRICT_NOTIFY_FILTER),
    digest: Cow::Borrowed(X86_64_STRICT_NOTIFY_DIGEST),
    notifying: true,
};
static AARCH64_STRICT_NOTIFY: Program = Program {
    arch: Arch::Aarch64,
    filter: Cow::Borrowed(&AARCH64_STRICT_NOTIFY_FILTER),
    digest: Cow::Borrowed(AARCH64_STRICT_NOTIFY_DIGEST),
    notifying: true,
};

/// The notifying program for x86_64.
static X86_64_NOTIFY: Program = Program {
    arch: Arch::X86_64,
    filter: Cow::Borrowed(&X86_64_NOTIFY_FILTER),
    digest: Cow::Borrowed(X86_64_NOTIFY_DIGEST),
    notifying: true,
};

/// The notifying program for aarch64.
static AARCH64_NOTIFY: Program = Program {
    arch: Arch::Aarch64,
    filter: Cow::Borrowed(&AARCH64_NOTIFY_FILTER),
    digest: Cow::Borrowed(AARCH64_NOTIFY_DIGEST),
    notifying: true,
};

impl Program {
    /// The program for the architecture this binary was built for.
    pub fn host() -> &'static Program {
        Program::for_arch(Arch::host())
    }

    /// The program for `arch`.
    pub fn for_arch(arch: Arch) -> &'static Program {
        match arch {
            Arch::X86_64 => &X86_64,
            Arch::Aarch64 => &AARCH64,
        }
    }

    /// The notifying variant of [`Program::host`]: refusals go to the filter's listener.
    pub fn host_notifying() -> &'static Program {
        Program::for_arch_notifying(Arch::host())
    }

    /// The notifying variant of [`Program::for_arch`].
    pub fn for_arch_notifying(arch: Arch) -> &'static Program {
        match arch {
            Arch::X86_64 => &X86_64_NOTIFY,
            Arch::Aarch64 => &AARCH64_NOTIFY,
        }
    }

    /// The `strict` profile's program for `arch` (built in; see `strict_remove` in policy.json),
    /// plain or notifying.
    pub fn strict_for_arch(arch: Arch, notifying: bool) -> &'static Program {
        match (arch, notifying) {
            (Arch::X86_64, false) => &X86_64_STRICT,
            (Arch::Aarch64, false) => &AARCH64_STRICT,
            (Arch::X86_64, true) => &X86_64_STRICT_NOTIFY,
            (Arch::Aarch64, true) => &AARCH64_STRICT_NOTIFY,
        }
    }

    /// Compile `profile` for `arch` now (a per-environment profile file), plain or notifying.
    pub fn compile(
        profile: &Profile,
        arch: Arch,
        notifying: bool,
    ) -> Result<Program, SeccompError> {
        let plain = profile.compile_for(arch)?;
        let filter = if notifying {
            bpf::notifying(&plain, profile.default_errno())
        } else {
            plain
        };
        let digest = digest_of(&encode(&filter));
        Ok(Program {
            arch,
            filter: Cow::Owned(filter),
            digest: Cow::Owned(digest),
            notifying,
        })
    }

    /// Whether refused calls go to the filter's listener (`SECCOMP_RET_USER_NOTIF`), which must
    /// then answer them with [`Program::refusal_errno`].
    pub fn notifying(&self) -> bool {
        self.notifying
    }

    /// The errno every refused call gets (`EPERM`): returned by the plain program itself, and by
    /// the listener for the notifying one.
    pub fn refusal_errno() -> i32 {
        REFUSAL_ERRNO as i32
    }

    /// The architecture the program checks for.
    pub fn arch(&self) -> Arch {
        self.arch
    }

    /// The instructions, exactly as [`Program::install`] hands them to the kernel.
    pub fn instructions(&self) -> &[sock_filter] {
        &self.filter
    }

    /// `sha256:<hex>` of [`Program::bytes`]: the seccomp digest a launch measurement records.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// The program's bytes in the layout `seccomp(2)` reads and `PTRACE_SECCOMP_GET_FILTER`
    /// returns: 8 bytes per instruction (`code` u16, `jt` u8, `jf` u8, `k` u32, little-endian).
    pub fn bytes(&self) -> Vec<u8> {
        encode(&self.filter)
    }

    /// `sha256:<hex>` of `src/policy.json`, the reviewed data the program was compiled from.
    pub fn policy_digest() -> &'static str {
        POLICY_DIGEST
    }

    /// Installs the program as the calling thread's seccomp filter (not the other threads': the
    /// launcher's child is single-threaded). seccompiler sets `no_new_privs` again before
    /// loading, which is a no-op when it is already set.
    pub fn install(&self) -> Result<(), SeccompError> {
        seccompiler::apply_filter(&self.filter).map_err(|source| SeccompError::Install { source })
    }
}

/// The name of system call `nr` on `arch` (`None` for a number the tables do not have).
pub fn syscall_name(arch: Arch, nr: u32) -> Option<&'static str> {
    syscalls::name(arch, nr)
}

/// The bytes of `filter` in the layout `seccomp(2)` reads (see [`Program::bytes`]).
pub fn encode(filter: &[sock_filter]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(filter.len() * 8);
    for ins in filter {
        bytes.extend_from_slice(&ins.code.to_le_bytes());
        bytes.push(ins.jt);
        bytes.push(ins.jf);
        bytes.extend_from_slice(&ins.k.to_le_bytes());
    }
    bytes
}

/// `sha256:<hex>` of `bytes`, in the form [`Program::digest`] has: use it on a program read back
/// from the kernel to compare with a recorded digest.
pub fn digest_of(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

#[cfg(test)]
mod program_tests {
    use super::*;

    #[test]
    fn the_built_programs_are_what_the_policy_compiles_to() {
        let profile = Profile::default_profile().expect("the default policy loads");
        for arch in [Arch::X86_64, Arch::Aarch64] {
            let built = Program::for_arch(arch);
            let fresh = profile.compile_for(arch).expect("compiles");
            assert_eq!(built.arch(), arch);
            assert_eq!(built.bytes(), encode(&fresh), "{arch}: stale build output");
            assert!(built.instructions().len() <= MAX_PROGRAM_LEN);
            let notify = Program::for_arch_notifying(arch);
            assert_eq!(
                notify.bytes(),
                encode(&bpf::notifying(&fresh, profile.default_errno())),
                "{arch}: stale notifying build output"
            );
        }
        assert_eq!(Program::policy_digest(), profile.policy_digest());
    }

    #[test]
    fn the_digest_is_of_the_bytes_handed_to_the_kernel() {
        for arch in [Arch::X86_64, Arch::Aarch64] {
            let p = Program::for_arch(arch);
            assert_eq!(p.digest(), digest_of(&p.bytes()), "{arch}");
            assert_eq!(p.bytes().len(), p.instructions().len() * 8);
        }
        // The two architectures' programs differ (the audit architecture, the numbers), and so
        // do their digests: a digest names one program.
        assert_ne!(
            Program::for_arch(Arch::X86_64).digest(),
            Program::for_arch(Arch::Aarch64).digest()
        );
        // The first instruction loads `seccomp_data.arch`, the second compares it with the
        // native audit architecture: the bytes are the program, not a serialisation of the policy.
        let host = Program::host();
        let first = &host.instructions()[..2];
        assert_eq!((first[0].code, first[0].k), (0x20, 4));
        assert_eq!(first[1].k, Arch::host().audit_arch());
    }

    #[test]
    fn the_notifying_programs_differ_only_in_the_refusal_answer() {
        let eperm = 0x0005_0000 | REFUSAL_ERRNO;
        for arch in [Arch::X86_64, Arch::Aarch64] {
            let plain = Program::for_arch(arch);
            let notify = Program::for_arch_notifying(arch);
            assert!(!plain.notifying() && notify.notifying());
            assert_eq!(notify.digest(), digest_of(&notify.bytes()), "{arch}");
            assert_ne!(plain.digest(), notify.digest(), "{arch}");
            let (a, b) = (plain.instructions(), notify.instructions());
            assert_eq!(a.len(), b.len(), "{arch}");
            let mut changed = 0;
            for (x, y) in a.iter().zip(b) {
                if x.code == 0x06 && x.k == eperm {
                    assert_eq!((y.code, y.jt, y.jf, y.k), (0x06, 0, 0, 0x7fc0_0000));
                    changed += 1;
                } else {
                    assert_eq!((x.code, x.jt, x.jf, x.k), (y.code, y.jt, y.jf, y.k));
                }
            }
            assert!(
                changed >= 1,
                "{arch}: the program has a refusal to hand over"
            );
            // clone3's ENOSYS and the foreign-architecture kill stay in the program.
            assert!(b.iter().any(|i| i.code == 0x06 && i.k == 0x0005_0026));
            assert!(b.iter().any(|i| i.code == 0x06 && i.k == 0x8000_0000));
        }
        assert_eq!(Program::refusal_errno(), 1);
    }

    #[test]
    fn syscall_names_come_from_the_tables() {
        assert_eq!(syscall_name(Arch::X86_64, 250), Some("keyctl"));
        assert_eq!(syscall_name(Arch::X86_64, 39), Some("getpid"));
        assert_eq!(syscall_name(Arch::Aarch64, 172), Some("getpid"));
        assert_eq!(syscall_name(Arch::X86_64, 0x4000_0027), None);
    }

    #[test]
    fn encode_is_little_endian_eight_bytes_per_instruction() {
        let ins = [sock_filter {
            code: 0x0102,
            jt: 3,
            jf: 4,
            k: 0x0506_0708,
        }];
        assert_eq!(encode(&ins), [2, 1, 3, 4, 8, 7, 6, 5]);
    }
}
