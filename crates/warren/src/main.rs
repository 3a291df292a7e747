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
mod cli_run;
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
    std::process::exit(run_command_line(std::env::args_os()));
}

/// Parses `argv` (the program name first) and runs the verb; returns the exit code. A command
/// line clap refuses (or `--help`, `--version`) ends the process here, as clap does. Also what
/// a launcher forked by the kernel's launch helper runs (`daemon::helper`).
pub(crate) fn run_command_line<I, T>(argv: I) -> i32
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let argv: Vec<std::ffi::OsString> = argv.into_iter().map(Into::into).collect();
    let cli = match cli_run::parse(&argv, &|var| std::env::var_os(var)) {
        Some(cli) => cli,
        None => cli::Cli::try_parse_from(argv).unwrap_or_else(|e| e.exit()),
    };
    match cmd::dispatch(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("warren: error: {err:#}");
            125
        }
    }
}
