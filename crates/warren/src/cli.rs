//! The command line, declared with clap. Flag spellings follow Docker's where the meaning is the
//! same (`--name`, `--memory`, `--pids-limit` is spelled `--pids` here as in the design, `--cpus`,
//! `--rm`, `-e`).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Warren: run programs in environments the operating system isolates completely.
#[derive(Debug, Parser)]
#[command(name = "warren", version, about, propagate_version = true)]
pub struct Cli {
    /// Directory for Warren's host-wide state (locks, records).
    #[arg(
        long,
        global = true,
        env = "WARREN_STATE_DIR",
        default_value = "/run/warren"
    )]
    pub state_dir: PathBuf,

    /// The verb.
    #[command(subcommand)]
    pub command: Command,
}

/// Warren's verbs.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a command in a new, fully isolated environment and pass its exit status through.
    Run(Box<RunArgs>),
    /// Run the kernel in the foreground: it owns every mailbox and capability table and
    /// mediates every message between environments.
    Daemon(DaemonArgs),
    /// Start the kernel in the foreground and bring the environments of FILE up; with a kernel
    /// already running, apply FILE to it instead.
    Up(UpArgs),
    /// Converge the running kernel to the environments declared in FILE (idempotent).
    Apply(ApplyArgs),
    /// Show what `apply` would change; exit 0 when nothing, 1 when something, >1 on error.
    Diff(DiffArgs),
    /// Stop environments: SIGTERM, then after the timeout a forced stop.
    Stop(StopArgs),
    /// Remove managed environments from the kernel (stop them first, or use -f).
    Rm(RmArgs),
    /// Show the output of an environment the kernel started.
    Logs(LogsArgs),
    /// List running environments.
    Ps(PsArgs),
    /// Show everything recorded about a running environment, as JSON.
    Inspect(InspectArgs),
    /// Report which kernel features Warren uses are present, and the assurance it will run at.
    Doctor(DoctorArgs),
    /// Print this host's federation public key as a trusted-keys line (`NAME ed25519:HEX`),
    /// creating the private key first if it does not exist.
    HostKey(HostKeyArgs),
}

/// `warren host-key`.
#[derive(Debug, Args)]
pub struct HostKeyArgs {
    /// The host's name, printed first on the line (as `[host] name` in the manifest).
    #[arg(long)]
    pub name: String,
    /// The private key file (`[host] key`). Default: `<state-dir>/link/host.key`.
    #[arg(value_name = "FILE")]
    pub file: Option<PathBuf>,
}

/// `warren run`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("root").required(true).args(["rootfs", "binary"])))]
pub struct RunArgs {
    /// Name of the environment (its hostname); generated when absent.
    #[arg(long)]
    pub name: Option<String>,

    /// A directory holding the environment's root filesystem; mounted read-only.
    #[arg(long, value_name = "DIR")]
    pub rootfs: Option<PathBuf>,

    /// Build a minimal root holding only this program, its ELF interpreter and its libraries.
    #[arg(long, value_name = "PATH")]
    pub binary: Option<PathBuf>,

    /// Memory limit (e.g. 64M, 1G).
    #[arg(long, value_name = "SIZE")]
    pub memory: Option<String>,

    /// Maximum number of processes (default 1024).
    #[arg(long, value_name = "N")]
    pub pids: Option<String>,

    /// CPU limit in cpus (e.g. 0.5).
    #[arg(long, value_name = "CPUS")]
    pub cpus: Option<String>,

    /// Size of the writable /tmp (and /dev/shm) tmpfs (default 16M).
    #[arg(long, value_name = "SIZE", default_value = "16M")]
    pub tmpfs_size: String,

    /// Set an environment variable in the environment (KEY=VALUE).
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,

    /// Run even though this protection is missing on the host (landlock, seccomp, cgroup).
    /// Without it Warren refuses to start an environment it cannot fully protect.
    #[arg(long, value_name = "PROTECTION")]
    pub allow_missing: Vec<String>,

    /// Give the environment a capability to send to the mailbox named NAME (repeatable). Needs
    /// a running kernel (`warren daemon`).
    #[arg(long = "may-send", value_name = "NAME")]
    pub may_send: Vec<String>,

    /// Let the environment discover the mailbox named NAME with `lookup` (repeatable).
    #[arg(long = "may-discover", value_name = "NAME")]
    pub may_discover: Vec<String>,

    /// Bound of the environment's default mailbox, in messages (default 64).
    #[arg(long, value_name = "N")]
    pub mailbox_capacity: Option<usize>,

    /// Remove the environment when it exits (always the case: accepted for Docker parity).
    #[arg(long)]
    pub rm: bool,

    /// After the workload exits, print a JSON report (isolation applied, exit status) as the
    /// last line of standard output.
    #[arg(long)]
    pub json: bool,

    /// The command to run and its arguments. With --binary it defaults to the binary.
    #[arg(last = true, value_name = "CMD")]
    pub command: Vec<String>,
}

/// `warren doctor`.
#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `warren ps`.
#[derive(Debug, Args)]
pub struct PsArgs {
    /// Print one JSON object per environment (JSON Lines).
    #[arg(long)]
    pub json: bool,
    /// Print only names.
    #[arg(short, long)]
    pub quiet: bool,
    /// Show all environments (Warren keeps no record of exited ones yet, so the same as without).
    #[arg(short, long)]
    pub all: bool,
}

/// `warren inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The environment's name.
    pub name: String,
}

/// `warren daemon`.
#[derive(Debug, Args)]
pub struct DaemonArgs {
    /// A group (name or number) whose members may also use the control socket.
    #[arg(long, value_name = "GROUP")]
    pub group: Option<String>,
    /// Where to append the audit log of denied requests (JSON Lines). Default:
    /// `<state-dir>/audit.jsonl`.
    #[arg(long, value_name = "PATH")]
    pub audit_log: Option<PathBuf>,
}

/// `warren up`.
#[derive(Debug, Args)]
pub struct UpArgs {
    /// The manifest to bring up.
    pub file: Option<PathBuf>,
    /// The kernel's options.
    #[command(flatten)]
    pub daemon: DaemonArgs,
}

/// `warren apply`.
#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// The manifest.
    pub file: PathBuf,
    /// Change nothing: only say what would change.
    #[arg(long)]
    pub check: bool,
    /// Show each changed field's old and new value.
    #[arg(long)]
    pub diff: bool,
    /// One JSON object per environment (JSON Lines): name, action, result, changes.
    #[arg(long)]
    pub json: bool,
    /// Puppet's exit codes: 0 no change, 2 changed, 4 failed, 6 changed and failed.
    #[arg(long)]
    pub detailed_exitcodes: bool,
    /// Seconds a replaced or removed environment gets between SIGTERM and the forced stop.
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    pub timeout: u64,
}

/// `warren diff`.
#[derive(Debug, Args)]
pub struct DiffArgs {
    /// The manifest.
    pub file: PathBuf,
    /// JSON Lines instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `warren stop`.
#[derive(Debug, Args)]
pub struct StopArgs {
    /// Seconds between SIGTERM and the forced stop.
    #[arg(short = 't', long = "time", value_name = "SECS", default_value_t = 10)]
    pub time: u64,
    /// The environments.
    #[arg(required = true)]
    pub names: Vec<String>,
}

/// `warren rm`.
#[derive(Debug, Args)]
pub struct RmArgs {
    /// Stop a running environment first.
    #[arg(short, long)]
    pub force: bool,
    /// The environments.
    #[arg(required = true)]
    pub names: Vec<String>,
}

/// `warren logs`.
#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Keep printing what the environment writes.
    #[arg(short, long)]
    pub follow: bool,
    /// Only the last N lines.
    #[arg(long, value_name = "N")]
    pub tail: Option<usize>,
    /// The environment.
    pub name: String,
}
