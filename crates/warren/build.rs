//! Link options for the `warren` binary, which every launch executes (the launcher is the CLI):
//! its start-up cost is paid once per environment.
//!
//! * `-z pack-relative-relocs`: the static-PIE binary's 17,700 relative relocations as a packed
//!   `.relr.dyn` table (4.7 KiB) instead of `.rela.dyn` entries (410 KiB) that the C library's start-up
//!   code reads on every exec.
//! * `--symbol-ordering-file=link/launch-order.txt`: the functions a launch runs, laid out
//!   together at the start of `.text`, so that a launch faults in a few dozen pages of code
//!   instead of pages scattered over 10 MiB. The list is made by `scripts/launch-order.sh`
//!   (sampled from real launches, then completed from their code-page faults); a name it lists
//!   that the build does not have is ignored, so a stale list costs speed, never correctness.
//!   About a tenth of the names are functions ThinLTO made global, whose `.llvm.<hash>` suffix
//!   changes whenever their code-generation unit does: after a change to the code a launch
//!   runs, remake the list (about 16 minutes) or those functions fall back out of the block.
//!
//! Both need LLD. Rust links x86_64 GNU/Linux with its own LLD from 1.90 on; for the musl target
//! (Warren's, see `.cargo/config.toml`) this script asks the C compiler driver to use the same
//! LLD, the `gcc-ld` wrapper in the toolchain's sysroot. With another linker (an older
//! toolchain, or `-C linker=...` / `-C link-self-contained=-linker` in the flags), or with
//! `WARREN_PLAIN_LINK` set, the binary is linked without them.

use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=link/launch-order.txt");
    println!("cargo:rerun-if-env-changed=WARREN_PLAIN_LINK");
    if std::env::var_os("WARREN_PLAIN_LINK").is_some() {
        return;
    }
    match lld() {
        Lld::No => return,
        Lld::Default => {}
        Lld::Wrapper(dir) => {
            println!("cargo:rustc-link-arg-bin=warren=-B{}", dir.display());
            println!("cargo:rustc-link-arg-bin=warren=-fuse-ld=lld");
        }
    }
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let order = Path::new(&dir).join("link/launch-order.txt");
    println!("cargo:rustc-link-arg-bin=warren=-Wl,-z,pack-relative-relocs");
    if order.is_file() {
        println!(
            "cargo:rustc-link-arg-bin=warren=-Wl,--symbol-ordering-file={}",
            order.display()
        );
        println!("cargo:rustc-link-arg-bin=warren=-Wl,--no-warn-symbol-ordering");
    }
}

/// How the binary gets linked with LLD here.
enum Lld {
    /// Not at all: an unknown target, an old toolchain or a linker chosen in the flags.
    No,
    /// rustc already links with its own LLD (x86_64 GNU/Linux, rustc 1.90 or later).
    Default,
    /// The C compiler driver links (musl); `-B DIR -fuse-ld=lld` makes it use the toolchain's
    /// LLD wrapper in DIR.
    Wrapper(std::path::PathBuf),
}

/// Whether and how this target can be linked with rustc's LLD: x86_64 GNU/Linux or musl,
/// rustc 1.90 or later, and no flag choosing another linker.
fn lld() -> Lld {
    let target = std::env::var("TARGET").unwrap_or_default();
    if target != "x86_64-unknown-linux-gnu" && target != "x86_64-unknown-linux-musl" {
        return Lld::No;
    }
    if !toolchain_links_with_lld() {
        return Lld::No;
    }
    if target == "x86_64-unknown-linux-gnu" {
        return Lld::Default;
    }
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let host = std::env::var("HOST").unwrap_or_default();
    let Ok(out) = Command::new(rustc).args(["--print", "sysroot"]).output() else {
        return Lld::No;
    };
    let sysroot = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let dir = Path::new(&sysroot).join(format!("lib/rustlib/{host}/bin/gcc-ld"));
    if dir.join("ld.lld").is_file() {
        Lld::Wrapper(dir)
    } else {
        Lld::No
    }
}

/// rustc 1.90 or later (which ships LLD and uses it for x86_64 GNU/Linux), and no flag or
/// variable choosing another linker.
fn toolchain_links_with_lld() -> bool {
    let flags = std::env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    if flags.split('\x1f').any(|f| {
        f.starts_with("linker=")
            || f.contains("-Clinker")
            || f.contains("link-self-contained=-linker")
            || f.contains("linker-flavor")
    }) {
        return false;
    }
    if std::env::var_os("RUSTC_LINKER").is_some() {
        return false;
    }
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let Ok(out) = Command::new(rustc).arg("--version").output() else {
        return false;
    };
    // "rustc 1.95.0 (59807616e 2026-04-14)"
    let text = String::from_utf8_lossy(&out.stdout);
    let mut parts = text
        .split_whitespace()
        .nth(1)
        .unwrap_or("")
        .split('.')
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    major > 1 || (major == 1 && minor >= 90)
}
