//! Link options for the `warren` binary, which every launch executes (the launcher is the CLI):
//! its start-up cost is paid once per environment.
//!
//! * `-z pack-relative-relocs`: the static-PIE binary's 17,700 relative relocations as a packed
//!   `.relr.dyn` table (4.7 KiB) instead of `.rela.dyn` entries (410 KiB) that glibc's start-up
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
//! Both need LLD, the linker Rust uses for this target from 1.90 on. With another linker (an
//! older toolchain, or `-C linker=...` / `-C link-self-contained=-linker` in the flags), or with
//! `WARREN_PLAIN_LINK` set, the binary is linked without them.

use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=link/launch-order.txt");
    println!("cargo:rerun-if-env-changed=WARREN_PLAIN_LINK");
    if std::env::var_os("WARREN_PLAIN_LINK").is_some() || !links_with_lld() {
        return;
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

/// Whether rustc links this target with its own LLD: x86_64 GNU/Linux, rustc 1.90 or later,
/// and no flag choosing another linker.
fn links_with_lld() -> bool {
    if std::env::var("TARGET").as_deref() != Ok("x86_64-unknown-linux-gnu") {
        return false;
    }
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
