//! Differential tests: Warren's generator against the seccompiler-based reference compiler
//! (`reference.rs`). Both programs run in the interpreter on the same `seccomp_data` and must
//! return the same action: for every number up to 1100, x32 and foreign-architecture calls, sweeps
//! over the arguments of every argument-filtered syscall, random arguments, and random policies
//! that use every comparison operator at both widths.

use seccompiler::{BpfProgram, sock_filter};
use serde_json::{Value, json};

use crate::bpf::{JMP_JGE_K, SECCOMP_RET_ALLOW, X32_SYSCALL_BIT};
use crate::interp::{Data, check_program, kernel_caches_allow, reachable, run, run_counting};
use crate::policy::{Arch, Profile, applies_to};
use crate::reference::compile_reference;
use crate::syscalls;

/// xorshift64*: small, deterministic, good enough to spread test inputs.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }

    /// A 64-bit value of one of the shapes filters care about: small numbers, single bits,
    /// all-ones halves, a known constant with random upper bits, or plain noise.
    fn arg(&mut self, known: &[u64]) -> u64 {
        let noise = self.next() >> 32;
        let high = self.pick(&[0u64, 0, 1, 0xffff_ffff, 0x8000_0000, noise]) << 32;
        match self.below(7) {
            0 => self.below(70),
            1 => 1 << self.below(64),
            2 => high | 0xffff_ffff,
            3 if !known.is_empty() => {
                let k = self.pick(known);
                let low = match self.below(4) {
                    0 => k.wrapping_add(1),
                    1 => k.wrapping_sub(1),
                    2 => k ^ (1 << self.below(32)),
                    _ => k,
                } & 0xffff_ffff;
                if self.chance(50) { high | low } else { k }
            }
            4 => high | (self.next() & 0xffff),
            _ => self.next(),
        }
    }
}

fn default_profile() -> Profile {
    Profile::default_profile().expect("the default policy loads")
}

/// The generator's program and the reference program for `arch`, both checked.
fn both(profile: &Profile, arch: Arch) -> (BpfProgram, BpfProgram) {
    let new = profile.compile_for(arch).expect("the generator compiles");
    let old = compile_reference(profile, arch).expect("seccompiler compiles");
    check_program(&new);
    check_program(&old);
    let dead: Vec<usize> = reachable(&new)
        .iter()
        .enumerate()
        .filter(|(_, r)| !**r)
        .map(|(pc, _)| pc)
        .collect();
    assert!(dead.is_empty(), "unreachable instructions {dead:?}");
    (new, old)
}

fn nr(arch: Arch, name: &str) -> u32 {
    syscalls::number(arch, name).unwrap_or_else(|| panic!("{name} is not a syscall on {arch}"))
}

/// Runs both programs on one input and compares; returns the action.
fn same(new: &[sock_filter], old: &[sock_filter], data: Data) -> u32 {
    let got = run(new, &data);
    let want = run(old, &data);
    assert_eq!(
        got, want,
        "generator {got:#x}, reference {want:#x} for {data:x?}"
    );
    got
}

/// Argument vectors that do not single out any syscall.
fn generic_args() -> Vec<[u64; 6]> {
    vec![
        [0; 6],
        [u64::MAX; 6],
        [1, 2, 3, 4, 5, 6],
        [0x1_0000_0000, 0xffff_ffff, 1 << 63, 0x5412, 0x7e02_0080, 17],
        [
            0x0123_4567_89ab_cdef,
            0xfedc_ba98_7654_3210,
            0,
            u64::MAX,
            42,
            1 << 30,
        ],
    ]
}

/// Values with any upper half: the dword comparisons must ignore it.
fn with_highs(low: u64) -> [u64; 4] {
    [
        low,
        low | 1 << 32,
        low | 0xffff_ffff_0000_0000,
        low | 1 << 63,
    ]
}

fn set(args: [u64; 6], index: usize, value: u64) -> [u64; 6] {
    let mut args = args;
    args[index] = value;
    args
}

/// The inputs every architecture gets: all numbers, x32 and high numbers, foreign arches.
fn compare_numbers(arch: Arch, new: &[sock_filter], old: &[sock_filter]) -> usize {
    let mut cases = 0;
    for number in 0..1100 {
        for args in generic_args() {
            same(new, old, Data::new(arch, number, args));
            same(new, old, Data::new(arch, number | X32_SYSCALL_BIT, args));
            cases += 2;
        }
    }
    let high = [
        0x3fff_ffff,
        X32_SYSCALL_BIT,
        0x7fff_ffff,
        0x8000_0000,
        0xbfff_ffff,
        0xc000_0000,
        u32::MAX - 1,
        u32::MAX,
    ];
    for number in high {
        same(new, old, Data::new(arch, number, [0; 6]));
        cases += 1;
    }
    const AUDIT_ARCH_I386: u32 = 3 | 0x4000_0000;
    const AUDIT_ARCH_ARM: u32 = 40 | 0x4000_0000;
    let native = arch.audit_arch();
    let foreign = [
        AUDIT_ARCH_I386,
        AUDIT_ARCH_ARM,
        Arch::X86_64.audit_arch(),
        Arch::Aarch64.audit_arch(),
        native ^ 1,
        native & !0x8000_0000,
        0,
        u32::MAX,
    ];
    for arch_value in foreign.into_iter().filter(|&a| a != native) {
        for number in (0..500).chain(high) {
            let data = Data {
                arch: arch_value,
                ..Data::new(arch, number, [0; 6])
            };
            same(new, old, data);
            cases += 1;
        }
    }
    cases
}

/// Sweeps over the arguments the default policy filters on.
fn compare_filtered_arguments(arch: Arch, new: &[sock_filter], old: &[sock_filter]) -> usize {
    let mut cases = 0;
    let mut check = |name: &str, args: [u64; 6]| {
        same(new, old, Data::new(arch, nr(arch, name), args));
        cases += 1;
    };

    // clone: every flag bit alone and on top of real flag sets, all namespace bits at once.
    const SIGCHLD: u64 = 17;
    let bases = [
        0,
        SIGCHLD,
        0x003d_0f00,           // pthread_create
        0x0120_0000 | SIGCHLD, // fork
        0x4100 | SIGCHLD,      // posix_spawn
        0x7e02_0080,           // every CLONE_NEW* bit
        u64::MAX,
    ];
    for base in bases {
        for bit in 0..64 {
            for rest in [[0; 6], [u64::MAX; 6]] {
                check("clone", set(rest, 0, base | 1 << bit));
                check("clone", set(rest, 0, base & !(1 << bit)));
            }
        }
    }

    // ioctl: the terminal requests around the denied ones, and other common requests, with any
    // upper half; also in the other argument slots, which must not matter.
    let requests = (0x5400..0x5480_u64).chain([
        0x5401_0000,
        0x8004_5430, // TIOCGPTN
        0x4004_5431, // TIOCSPTLCK
        0x8008_6601, // FS_IOC_GETFLAGS
        0xc020_660b, // FS_IOC_FIEMAP
        0x0001_5412,
        0x5412_0000,
        0xffff_5412,
        0,
        u64::from(u32::MAX),
    ]);
    for request in requests {
        for value in with_highs(request) {
            check("ioctl", [0, value, 0, 0, 0, 0]);
            check("ioctl", [value, 0x5401, value, value, value, value]);
        }
    }

    // socket and socketpair: every domain below 64 with every protocol below 32.
    for domain in 0..64_u64 {
        for protocol in 0..32_u64 {
            for kind in [1, 2, 3, 0x80801] {
                check("socket", [domain, kind, protocol, 0, 0, 0]);
            }
            check("socket", [domain | 1 << 32, 1, protocol | 1 << 40, 0, 0, 0]);
            check(
                "socketpair",
                [domain, 1, protocol, u64::MAX, u64::MAX, u64::MAX],
            );
        }
        for value in with_highs(domain) {
            check("socket", [value, 3, 0, 0, 0, 0]);
            check("socketpair", [value, 1, 0, 0, 0, 0]);
        }
    }

    // prctl: options 0..80, the named large ones, with and without other arguments.
    let options = (0..80_u64).chain([0x5356_4d41, 0x5961_6d61, 0x4159_4e43, 0x5356_4d40]);
    for option in options {
        for value in with_highs(option) {
            check("prctl", [value, 0, 0, 0, 0, 0]);
            check("prctl", [value, u64::MAX, 1, 2, 3, 4]);
        }
    }

    // personality: the two allowed values, their neighbours, and flag values.
    let personalities = [
        0,
        1,
        6,
        8,
        0x0004_0000,
        0x0040_0000,
        0x0080_0000,
        0x0800_0000,
        0xffff_fffe,
        0xffff_ffff,
    ];
    for p in personalities {
        for value in with_highs(p) {
            check("personality", [value, 0, 0, 0, 0, 0]);
            check("personality", [value, u64::MAX, u64::MAX, 0, 0, 0]);
        }
    }

    // clone3 and the calls next to it, whatever the arguments.
    for name in ["clone3", "fork", "vfork", "execve", "mount", "unshare"] {
        if syscalls::number(arch, name).is_some() {
            for args in generic_args() {
                check(name, args);
            }
        }
    }
    cases
}

/// Random syscalls (mostly the argument-filtered ones) with random arguments.
fn compare_random(arch: Arch, new: &[sock_filter], old: &[sock_filter], seed: u64) -> usize {
    let mut rng = Rng(seed);
    let filtered: Vec<u32> = [
        "clone",
        "ioctl",
        "socket",
        "socketpair",
        "prctl",
        "personality",
    ]
    .into_iter()
    .map(|name| nr(arch, name))
    .collect();
    let known = [
        0x7e02_0080,
        0x5412,
        0x541c,
        0x5423,
        1,
        2,
        10,
        16,
        0x5356_4d41,
        0xffff_ffff,
        38,
    ];
    let cases = 20_000;
    for _ in 0..cases {
        let number = match rng.below(10) {
            0..=5 => rng.pick(&filtered),
            6..=8 => rng.below(1100) as u32,
            _ => rng.next() as u32,
        };
        let args = std::array::from_fn(|_| rng.arg(&known));
        same(new, old, Data::new(arch, number, args));
    }
    cases
}

#[test]
fn the_generator_matches_seccompiler_on_the_default_policy_for_x86_64() {
    let (new, old) = both(&default_profile(), Arch::X86_64);
    let cases = compare_numbers(Arch::X86_64, &new, &old)
        + compare_filtered_arguments(Arch::X86_64, &new, &old)
        + compare_random(Arch::X86_64, &new, &old, 0x5eed_cafe_f00d_0001);
    println!("x86_64: {cases} inputs agree");
    assert!(cases > 50_000, "only {cases} inputs");
}

#[test]
fn the_generator_matches_seccompiler_on_the_default_policy_for_aarch64() {
    let (new, old) = both(&default_profile(), Arch::Aarch64);
    let cases = compare_numbers(Arch::Aarch64, &new, &old)
        + compare_filtered_arguments(Arch::Aarch64, &new, &old)
        + compare_random(Arch::Aarch64, &new, &old, 0x5eed_cafe_f00d_0002);
    println!("aarch64: {cases} inputs agree");
}

#[test]
fn the_generated_program_is_short_and_so_is_every_path() {
    let profile = default_profile();
    for arch in [Arch::X86_64, Arch::Aarch64] {
        let (new, old) = both(&profile, arch);
        // The worst and the average number of instructions run, over all numbers below 1100
        // with arguments that pass and that fail the filters.
        let mut worst = (0, 0);
        let mut total = (0, 0);
        let mut runs = 0;
        for number in 0..1100 {
            for args in generic_args() {
                let data = Data::new(arch, number, args);
                let (_, steps_new) = run_counting(&new, &data);
                let (_, steps_old) = run_counting(&old, &data);
                worst = (worst.0.max(steps_new), worst.1.max(steps_old));
                total = (total.0 + steps_new, total.1 + steps_old);
                runs += 1;
            }
        }
        let jge = new.iter().filter(|i| i.code == JMP_JGE_K).count();
        println!(
            "{arch}: {} instructions, {jge} of them jge (seccompiler {}); instructions run per \
             call: worst {} (seccompiler {}), mean {:.1} (seccompiler {:.1})",
            new.len(),
            old.len(),
            worst.0,
            worst.1,
            total.0 as f64 / f64::from(runs),
            total.1 as f64 / f64::from(runs),
        );
        assert!(
            new.len() * 3 < old.len(),
            "{arch}: {} against {}",
            new.len(),
            old.len()
        );
        assert!(new.len() < 500, "{arch}: {} instructions", new.len());
        // A balanced search: the number part takes about log2(segments) steps, and the largest
        // argument block (prctl's fifteen options) adds at most sixteen.
        assert!(worst.0 <= 40, "{arch}: a path of {} instructions", worst.0);
    }
}

/// A random policy in the `policy.json` format: unconditional entries, argument rules with every
/// operator at both widths, and errno overrides.
fn random_policy(rng: &mut Rng, names: &[&str]) -> Value {
    let errnos = ["EPERM", "EACCES", "EINVAL", "ENOSYS"];
    let default = rng.pick(&errnos);
    let ops = ["eq", "ne", "lt", "le", "gt", "ge", "masked_eq"];
    let mut pool: Vec<&str> = names.to_vec();
    let mut take = |rng: &mut Rng| {
        let i = rng.below(pool.len() as u64) as usize;
        pool.swap_remove(i)
    };

    let mut allow = Vec::new();
    for _ in 0..40 {
        let name = take(rng);
        if rng.chance(50) {
            allow.push(json!({ "syscall": name, "comment": "random" }));
            continue;
        }
        for _ in 0..=rng.below(4) {
            let mut args = Vec::new();
            for _ in 0..=rng.below(3) {
                let dword = rng.chance(50);
                let limit = |v: u64| if dword { v & 0xffff_ffff } else { v };
                let index = rng.below(6);
                let op = rng.pick(&ops);
                let (op, val): (Value, u64) = if op == "masked_eq" {
                    let mask = limit(match rng.below(5) {
                        0 => 0xffff_ffff,
                        1 => 0xffff_ffff_0000_0000,
                        2 => 1 << rng.below(64),
                        3 => 0,
                        _ => rng.next(),
                    });
                    let val = rng.next() & mask & if rng.chance(30) { 0 } else { u64::MAX };
                    (json!({ "masked_eq": mask }), val)
                } else {
                    let val = limit(match rng.below(6) {
                        0 => 0,
                        1 => rng.below(70),
                        2 => 0xffff_ffff,
                        3 => u64::MAX,
                        4 => rng.pick(&[0u64, 1, 0xffff_ffff]) << 32 | rng.below(70),
                        _ => rng.next(),
                    });
                    (json!(op), val)
                };
                let width = if dword { "dword" } else { "qword" };
                args.push(json!({ "index": index, "type": width, "op": op, "val": val,
                                  "comment": "random" }));
            }
            allow.push(json!({ "syscall": name, "comment": "random", "args": args }));
        }
    }
    let mut overrides = Vec::new();
    for _ in 0..rng.below(4) {
        let errno = rng.pick(&errnos);
        if errno != default {
            overrides.push(json!({ "syscall": take(rng), "errno": errno, "comment": "random" }));
        }
    }
    json!({
        "comment": "random policy for the differential test",
        "default_action": { "errno": default, "comment": "random" },
        "errno_overrides": overrides,
        "allow": allow,
        "deny": [],
    })
}

#[test]
fn the_generator_matches_seccompiler_on_random_policies() {
    let mut rng = Rng(0x0dd_ba11_5eed_0003);
    // Names both architectures have, so each policy compiles for both without "arch" marks.
    let names: Vec<&str> = syscalls::table(Arch::X86_64)
        .iter()
        .map(|&(name, _)| name)
        .filter(|name| syscalls::number(Arch::Aarch64, name).is_some())
        .filter(|name| {
            // seccompiler 0.5's tables stop at Linux 6.12.
            ![
                "setxattrat",
                "getxattrat",
                "listxattrat",
                "removexattrat",
                "open_tree_attr",
                "file_getattr",
                "file_setattr",
            ]
            .contains(name)
        })
        .collect();
    let mut cases = 0;
    for round in 0..40 {
        let json = random_policy(&mut rng, &names);
        let profile = Profile::from_json(json.to_string().as_bytes())
            .unwrap_or_else(|e| panic!("round {round}: {e}\n{json:#}"));
        for arch in [Arch::X86_64, Arch::Aarch64] {
            let (new, old) = both(&profile, arch);
            // The numbers the policy names, their neighbours, and arguments built from the
            // policy's own constants.
            let mut known: Vec<u64> = Vec::new();
            let mut numbers: Vec<u32> = Vec::new();
            for entry in json["allow"].as_array().into_iter().flatten() {
                let name = entry["syscall"].as_str().expect("name");
                numbers.push(nr(arch, name));
                for arg in entry["args"].as_array().into_iter().flatten() {
                    known.push(arg["val"].as_u64().expect("val"));
                    if let Some(mask) = arg["op"]["masked_eq"].as_u64() {
                        known.push(mask);
                    }
                }
            }
            for number in numbers.clone() {
                numbers.extend([number.saturating_sub(1), number + 1]);
            }
            for _ in 0..1500 {
                let number = if rng.chance(90) {
                    rng.pick(&numbers)
                } else {
                    rng.below(600) as u32
                };
                let args = std::array::from_fn(|_| rng.arg(&known));
                let action = same(&new, &old, Data::new(arch, number, args));
                cases += usize::from(action == SECCOMP_RET_ALLOW);
            }
        }
    }
    // The inputs are aimed at the rules, so a good share of them must pass one.
    assert!(cases > 20_000, "only {cases} allowed inputs");
}

#[test]
fn the_kernel_caches_exactly_the_unconditionally_allowed_syscalls() {
    let profile = default_profile();
    for arch in [Arch::X86_64, Arch::Aarch64] {
        let (new, old) = both(&profile, arch);
        let unconditional: Vec<u32> = profile
            .policy
            .allow
            .iter()
            .filter(|r| r.args.is_none() && applies_to(r.arch.as_ref(), arch))
            .map(|r| nr(arch, &r.syscall))
            .collect();
        assert!(unconditional.len() > 200, "{arch}");
        for number in 0..1100 {
            let expected = unconditional.contains(&number);
            for (which, prog) in [("generator", &new), ("reference", &old)] {
                assert_eq!(
                    kernel_caches_allow(prog, arch.audit_arch(), number),
                    expected,
                    "{arch} {which}: {number}"
                );
            }
            // Never for another architecture's calls or x32 numbers.
            assert!(!kernel_caches_allow(&new, 3 | 0x4000_0000, number));
            assert!(!kernel_caches_allow(
                &new,
                arch.audit_arch(),
                number | X32_SYSCALL_BIT
            ));
        }
    }
}

#[test]
fn the_name_tables_agree_with_seccompiler() {
    for arch in [Arch::X86_64, Arch::Aarch64] {
        let table = syscalls::table(arch);
        assert!(
            table.windows(2).all(|w| w[0].0 < w[1].0),
            "{arch}: not sorted by name"
        );
        let mut numbers: Vec<u32> = table.iter().map(|&(_, n)| n).collect();
        numbers.sort_unstable();
        numbers.dedup();
        assert_eq!(
            numbers.len(),
            table.len(),
            "{arch}: two names share a number"
        );
        assert!(numbers.iter().all(|&n| n < 1000), "{arch}");

        let mut known_to_seccompiler = 0;
        for &(name, number) in table {
            let filter = json!({ "t": { "mismatch_action": "allow", "match_action": "trap",
                                        "filter": [ { "syscall": name } ] } });
            let compiled = seccompiler::compile_from_json(
                filter.to_string().as_bytes(),
                crate::reference::target(arch),
            );
            if let Ok(mut map) = compiled {
                // Arch check (3 instructions), load nr, then `jeq nr`.
                let prog = map.remove("t").expect("the filter");
                assert_eq!(prog[4].k, number, "{arch} {name}");
                known_to_seccompiler += 1;
            }
            assert_eq!(syscalls::number(arch, name), Some(number), "{arch} {name}");
        }
        // Only the calls added after Linux 6.12 are missing from seccompiler 0.5.
        assert!(
            table.len() - known_to_seccompiler <= 7,
            "{arch}: seccompiler knows only {known_to_seccompiler} of {}",
            table.len()
        );
        assert_eq!(syscalls::number(arch, "no_such_syscall"), None);
        assert_eq!(syscalls::number(arch, ""), None);
    }
    assert_eq!(syscalls::number(Arch::X86_64, "read"), Some(0));
    assert_eq!(syscalls::number(Arch::Aarch64, "read"), Some(63));
}
