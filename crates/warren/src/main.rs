//! `warren`: the command-line face of the Warren security kernel.
//!
//! `main` is small on purpose: it parses the command line, dispatches to one module under
//! `cmd/` per verb, and owns the exit codes. Warren's own failures exit 125; `run` passes the
//! workload's status through, with 126 for a command that cannot be executed and 127 for one
//! that does not exist (Docker's and the shell's convention).
#![forbid(unsafe_code)]

/// `eprintln!` that never panics. A diagnostic that cannot be written (a standard error on a
/// full filesystem: the supervisor's launchers write theirs to `STATE/logs/NAME.log`) is lost,
/// not turned into a crash (`eprintln!` panics, exit 101) of a launcher whose environment could
/// run.
macro_rules! eprintln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

/// `eprint!` that never panics (see `eprintln!` above).
macro_rules! eprint {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stderr(), $($arg)*);
    }};
}

mod cli;
mod cmd;
mod control;
mod daemon;
mod dirs;
mod logcap;
mod measure;
mod mounts;
mod supervisor;
mod template;
mod tty;
mod volumes;

use clap::Parser;

fn main() {
    warren_sys::default_sigpipe();
    let cli = cli::Cli::parse();
    let code = match cmd::dispatch(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("warren: error: {err:#}");
            125
        }
    };
    std::process::exit(code);
}
