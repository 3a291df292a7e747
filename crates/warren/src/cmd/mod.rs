//! One module per verb; each returns the process exit code.

mod daemon;
mod doctor;
mod ps;
mod run;

use crate::cli::{Cli, Command};

/// Run the verb the user asked for.
pub fn dispatch(cli: Cli) -> anyhow::Result<i32> {
    match cli.command {
        Command::Run(args) => run::run(&cli.state_dir, *args),
        Command::Doctor(args) => doctor::doctor(args),
        Command::Daemon(args) | Command::Up(args) => daemon::daemon(&cli.state_dir, args),
        Command::Ps(args) => ps::ps(&cli.state_dir, args),
        Command::Inspect(args) => ps::inspect(&cli.state_dir, args),
    }
}
