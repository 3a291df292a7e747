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
    /// Manage images: import OCI image layouts and docker save archives, list, inspect, remove.
    #[command(subcommand)]
    Image(ImageCommand),
}

/// `warren run`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("root").required(true).args(["rootfs", "binary", "image"])))]
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

    /// Run an image from the store (`warren image import`): its entrypoint, cmd, env, user
    /// and working directory apply; a CMD given after -- replaces the image's cmd.
    #[arg(long, value_name = "NAME")]
    pub image: Option<String>,

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

/// `warren image ...`.
#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Import an OCI image layout (a directory or tar) or a docker save archive into the store.
    Import(ImageImportArgs),
    /// List stored images.
    Ls(ImageLsArgs),
    /// Show everything stored about an image, as JSON (record, manifest, config).
    Inspect(ImageInspectArgs),
    /// Remove images (refused while an environment uses one).
    Rm(ImageRmArgs),
}

/// `warren image import`.
#[derive(Debug, Args)]
pub struct ImageImportArgs {
    /// The OCI image layout (directory or tar) or docker save archive.
    pub path: PathBuf,
    /// The name to store it under (default: from the source's reference or file name).
    #[arg(long)]
    pub name: Option<String>,
    /// Which image of a source that holds several (an OCI ref.name, a manifest digest, or a
    /// docker tag).
    #[arg(long = "ref", value_name = "REF")]
    pub reference: Option<String>,
    /// Keep set-uid/set-gid bits instead of refusing the image. They never take effect:
    /// environments run with no_new_privs on a nosuid root.
    #[arg(long)]
    pub allow_setuid: bool,
    /// Most archive entries across all layers.
    #[arg(long, value_name = "N", default_value_t = 1_000_000)]
    pub max_files: u64,
    /// Most bytes of file content across all layers (e.g. 32G).
    #[arg(long, value_name = "SIZE", default_value = "32G")]
    pub max_bytes: String,
    /// Most components in one path.
    #[arg(long, value_name = "N", default_value_t = 128)]
    pub max_depth: usize,
    /// Print the result as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Print nothing but errors (and, with --json, the result).
    #[arg(short, long)]
    pub quiet: bool,
}

/// `warren image ls`.
#[derive(Debug, Args)]
pub struct ImageLsArgs {
    /// One JSON object per image (JSON Lines).
    #[arg(long)]
    pub json: bool,
    /// Print only names.
    #[arg(short, long)]
    pub quiet: bool,
}

/// `warren image inspect`.
#[derive(Debug, Args)]
pub struct ImageInspectArgs {
    /// The image's name.
    pub name: String,
}

/// `warren image rm`.
#[derive(Debug, Args)]
pub struct ImageRmArgs {
    /// The images.
    #[arg(required = true)]
    pub names: Vec<String>,
}
