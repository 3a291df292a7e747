//! One module per verb; each returns the process exit code.

mod apply;
mod attest;
mod daemon;
mod doctor;
mod host_key;
mod image;
mod manage;
mod ps;
mod rootfs;
pub(crate) mod run;
mod volume;
mod watch;

use crate::cli::{Cli, Command};
use crate::dirs::Dirs;

/// Run the verb the user asked for.
pub fn dispatch(cli: Cli) -> anyhow::Result<i32> {
    let dirs = Dirs::resolve(&cli.state_dir, cli.data_dir.as_deref())?;
    // Bad flags are refused before anything is created.
    if let Command::Daemon(args) = &cli.command {
        daemon::limits(&args.0)?;
    }
    // The verbs that read or write persistent data: make the directories and links first.
    if matches!(
        cli.command,
        Command::Run(_)
            | Command::Daemon(_)
            | Command::Up(_)
            | Command::Attest(_)
            | Command::Ca(_)
            | Command::HostKey(_)
            | Command::Image(_)
            | Command::Volume(_)
    ) {
        dirs.prepare()?;
    }
    match cli.command {
        Command::Run(args) => run::run(&cli.state_dir, &dirs, *args.0),
        Command::Doctor(args) => doctor::doctor(&cli.state_dir, args.0),
        Command::Attest(c) => attest::attest(&cli.state_dir, c.0),
        Command::Ca(c) => attest::ca(&cli.state_dir, c.0),
        Command::Daemon(args) => daemon::daemon(&cli.state_dir, args.0, None),
        Command::Up(args) => daemon::up(&cli.state_dir, args.0),
        Command::Apply(args) => apply::apply(&cli.state_dir, args.0),
        Command::Diff(args) => apply::diff(&cli.state_dir, args.0),
        Command::Stop(args) => manage::stop(&cli.state_dir, args.0),
        Command::Rm(args) => manage::rm(&cli.state_dir, args.0),
        Command::Logs(args) => manage::logs(&cli.state_dir, args.0),
        Command::Ps(args) => ps::ps(&cli.state_dir, args.0),
        Command::Inspect(args) => ps::inspect(&cli.state_dir, args.0),
        Command::HostKey(args) => host_key::host_key(&cli.state_dir, args.0),
        Command::Image(cmd) => image::image(&cli.state_dir, dirs.images(), cmd.0),
        Command::Volume(cmd) => volume::volume(&dirs.data, cmd.0),
        Command::Rootfs(cmd) => rootfs::rootfs(&cli.state_dir, cmd.0),
    }
}
