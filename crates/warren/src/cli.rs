//! The command line, declared with clap. Flag spellings follow Docker's where the meaning is the
//! same (`--name`, `--memory`, `--pids-limit` is spelled `--pids` here as in the design, `--cpus`,
//! `--rm`, `-e`).

use std::path::PathBuf;

use clap::{ArgMatches, Args, FromArgMatches, Parser, Subcommand};

/// Warren: run programs in environments the operating system isolates completely.
#[derive(Debug, Parser)]
#[command(name = "warren", version, about, propagate_version = true)]
pub struct Cli {
    /// Directory for Warren's runtime state (sockets, locks, leases, records, logs).
    #[arg(
        long,
        global = true,
        env = "WARREN_STATE_DIR",
        default_value = "/run/warren"
    )]
    pub state_dir: PathBuf,

    /// Directory for Warren's persistent data (images, volumes, attestation and federation
    /// keys). Default: /var/lib/warren with the default state directory, the state directory
    /// itself with any other, or the one the state directory already uses (docs/files.md).
    #[arg(long, global = true, env = "WARREN_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// The verb.
    #[command(subcommand)]
    pub command: Command,
}

/// Warren's verbs. Each verb's arguments are [`Lazy`]: clap builds only the verb used.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a command in a new, fully isolated environment and pass its exit status through.
    Run(Lazy<Box<RunArgs>>),
    /// Run the kernel in the foreground: it owns every mailbox and capability table and
    /// mediates every message between environments.
    Daemon(Lazy<DaemonArgs>),
    /// Start the kernel in the foreground and bring the environments of FILE up; with a kernel
    /// already running, apply FILE to it instead.
    Up(Lazy<UpArgs>),
    /// Converge the running kernel to the environments declared in FILE (idempotent).
    Apply(Lazy<ApplyArgs>),
    /// Show what `apply` would change; exit 0 when nothing, 1 when something, >1 on error.
    Diff(Lazy<DiffArgs>),
    /// Stop environments: SIGTERM, then after the timeout a forced stop.
    Stop(Lazy<StopArgs>),
    /// Remove environments and their logs: forget managed ones, delete the log a finished one
    /// left (a running one needs -f).
    Rm(Lazy<RmArgs>),
    /// Show the output of an environment the kernel or `run -d` started (kept until `rm`).
    Logs(Lazy<LogsArgs>),
    /// List running environments (with -a also the managed ones that are not running).
    Ps(Lazy<PsArgs>),
    /// Show everything recorded about an environment, as JSON.
    Inspect(Lazy<InspectArgs>),
    /// Report which kernel features Warren uses are present, and the assurance it will run at.
    Doctor(Lazy<DoctorArgs>),
    /// Measured launch: quotes over the event log, and their verification.
    #[command(subcommand)]
    Attest(Lazy<AttestCommand>),
    /// The Privacy CA that certifies attestation keys.
    #[command(subcommand)]
    Ca(Lazy<CaCommand>),
    /// Print this host's federation public key as a trusted-keys line (`NAME ed25519:HEX`),
    /// creating the private key first if it does not exist.
    HostKey(Lazy<HostKeyArgs>),
    /// Manage images: import OCI image layouts and docker save archives, list, inspect, remove.
    #[command(subcommand)]
    Image(Lazy<ImageCommand>),
    /// Manage named volumes: persistent storage in the data directory that environments mount.
    #[command(subcommand)]
    Volume(Lazy<VolumeCommand>),
    /// Seal root directories for `run --rootfs`: measure a root once, mount it read-only over
    /// itself, and let launches reuse the digest while that mount holds.
    #[command(subcommand)]
    Rootfs(Lazy<RootfsCommand>),
}

/// A verb's arguments, built by clap only when that verb is the one used: clap otherwise builds
/// every verb's arguments (a few hundred flags) on each start, which `warren run` pays before
/// every launch (BENCHMARKS.md, issue 13). Help, errors and parsing are unchanged: clap
/// builds the deferred part before it parses, checks or shows that verb.
#[derive(Debug)]
pub struct Lazy<T>(pub T);

impl<T: FromArgMatches> FromArgMatches for Lazy<T> {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        T::from_arg_matches(matches).map(Lazy)
    }
    fn from_arg_matches_mut(matches: &mut ArgMatches) -> Result<Self, clap::Error> {
        T::from_arg_matches_mut(matches).map(Lazy)
    }
    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        self.0.update_from_arg_matches(matches)
    }
    fn update_from_arg_matches_mut(&mut self, matches: &mut ArgMatches) -> Result<(), clap::Error> {
        self.0.update_from_arg_matches_mut(matches)
    }
}

impl<T: Args> Args for Lazy<T> {
    fn group_id() -> Option<clap::Id> {
        T::group_id()
    }
    fn augment_args(cmd: clap::Command) -> clap::Command {
        cmd.defer(|c| keep_about(c, T::augment_args))
    }
    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        cmd.defer(|c| keep_about(c, T::augment_args_for_update))
    }
}

impl<T: Subcommand> Subcommand for Lazy<T> {
    fn augment_subcommands(cmd: clap::Command) -> clap::Command {
        cmd.defer(|c| keep_about(c, T::augment_subcommands))
    }
    fn augment_subcommands_for_update(cmd: clap::Command) -> clap::Command {
        cmd.defer(|c| keep_about(c, T::augment_subcommands_for_update))
    }
    fn has_subcommand(name: &str) -> bool {
        T::has_subcommand(name)
    }
}

/// Runs a verb's deferred `augment` but keeps the help text the verb's own doc comment gave it:
/// clap's derive sets a verb's `about` after its arguments (so the doc on the `Command` variant
/// wins over the one on the arguments' struct), and the deferred part runs later still.
fn keep_about(cmd: clap::Command, augment: fn(clap::Command) -> clap::Command) -> clap::Command {
    let about = cmd.get_about().cloned();
    let long_about = cmd.get_long_about().cloned();
    let cmd = augment(cmd);
    match about {
        Some(about) => match long_about {
            Some(long) => cmd.about(about).long_about(long),
            None => cmd.about(about).long_about(None::<&'static str>),
        },
        None => cmd,
    }
}

/// `warren rootfs ...`.
#[derive(Debug, Subcommand)]
pub enum RootfsCommand {
    /// Mount DIR read-only over itself, measure it once, and record the seal: launches with
    /// `--rootfs DIR` then record this digest (`digest_source: seal`) instead of walking DIR.
    Seal(RootfsArgs),
    /// Remove DIR's seal and unmount the read-only mount it made.
    Unseal(RootfsArgs),
    /// Say whether DIR is sealed and whether its seal still holds (exit 0 when it holds, 1
    /// when not sealed or broken).
    Status(RootfsArgs),
}

/// `warren rootfs seal|unseal|status`.
#[derive(Debug, Args)]
pub struct RootfsArgs {
    /// The root directory.
    pub dir: PathBuf,
    /// Print the result as one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// `warren attest ...`.
#[derive(Debug, Subcommand)]
pub enum AttestCommand {
    /// Choose this state directory's root of trust.
    Init(AttestInitArgs),
    /// Sign a quote over the event log for a verifier's nonce.
    Quote(QuoteArgs),
    /// Verify a quote (pure Rust; exit 0 accepted, 1 rejected with the reason).
    Verify(VerifyArgs),
    /// Print the event log (CEL JSON, one record per line).
    Log,
    /// Measured-boot policies.
    #[command(subcommand)]
    Policy(AttestPolicyCommand),
    /// Re-attest peer hosts through the federation every interval and cut off (through this
    /// host's kernel) each one that fails verification or does not answer in time; let it back
    /// in after a passing quote. One JSON line per host per round.
    Watch(WatchArgs),
}

/// `warren attest watch`.
#[derive(Debug, Args)]
pub struct WatchArgs {
    /// A peer host to re-attest (repeat for several); it must be in the trusted keys.
    #[arg(long = "host", value_name = "HOST", required = true)]
    pub hosts: Vec<String>,
    /// Seconds between rounds; a host that has not answered within one interval is cut off.
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    pub interval: f64,
    /// The issuing CA's certificate (PEM) the hosts' attestation keys must chain to.
    #[arg(long, value_name = "CERT")]
    pub ca: PathBuf,
    /// Golden values and the `[boot]` policy (TOML), read again every round.
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// The issuing CA's revocation list (PEM), read again every round.
    #[arg(long, value_name = "FILE")]
    pub crl: Option<PathBuf>,
    /// Accept quotes from a software root of trust (`root: software`).
    #[arg(long)]
    pub allow_software: bool,
    /// How long a pass admits a host if no further verdict comes (the watch stopped): seconds,
    /// default three intervals. Then the kernel cuts the host off by itself.
    #[arg(long, value_name = "SECS")]
    pub lease: Option<f64>,
    /// Stop after this many rounds (default: run until killed).
    #[arg(long, value_name = "N")]
    pub rounds: Option<u64>,
}

/// `warren attest policy ...`.
#[derive(Debug, Subcommand)]
pub enum AttestPolicyCommand {
    /// Learn a `[boot]` policy (TOML) that accepts exactly the boot a UEFI event log shows:
    /// run it on a known-good host, review the values, then give the file to `verify --policy`.
    Learn(PolicyLearnArgs),
}

/// `warren attest policy learn`.
#[derive(Debug, Args)]
pub struct PolicyLearnArgs {
    /// The UEFI event log to learn from (default: the kernel's binary_bios_measurements).
    #[arg(long, value_name = "FILE", conflicts_with = "quote")]
    pub boot_log: Option<PathBuf>,
    /// Learn from the event log inside this quote instead (verify the quote first).
    #[arg(long, value_name = "FILE")]
    pub quote: Option<PathBuf>,
    /// Write the policy here instead of standard output.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

/// `warren attest init`.
#[derive(Debug, Args)]
pub struct AttestInitArgs {
    /// `tpm`, `software`, or `auto` (a TPM when /dev/tpmrm0 and the warren-tpm agent exist).
    #[arg(long, value_name = "ROOT", default_value = "auto")]
    pub root: String,
    /// How to reach the TPM: `device:/dev/tpmrm0` or `swtpm:host=127.0.0.1,port=2321`.
    #[arg(long, value_name = "SPEC")]
    pub tpm: Option<String>,
    /// The UEFI event log TPM quotes carry (default:
    /// /sys/kernel/security/tpm0/binary_bios_measurements; for hosts whose firmware exposes
    /// none, and tests).
    #[arg(long, value_name = "PATH")]
    pub boot_log: Option<PathBuf>,
    /// The IMA measurement list TPM quotes carry, binary or ASCII `ima-ng` (default:
    /// /sys/kernel/security/ima/binary_runtime_measurements, left out when it does not exist).
    #[arg(long, value_name = "PATH")]
    pub ima_log: Option<PathBuf>,
    /// tpm: remove the attestation key and the anchor and create new ones, bound to the PCRs
    /// as they are now (after a legitimate kernel, firmware or Warren update; the new key must
    /// be enrolled again, and the event log starts over).
    #[arg(long)]
    pub reprovision: bool,
}

/// `warren attest quote`.
#[derive(Debug, Args)]
pub struct QuoteArgs {
    /// The verifier's nonce, hex.
    #[arg(long, value_name = "HEX")]
    pub nonce: String,
    /// Make the quote about this environment's launch record.
    #[arg(long, value_name = "NAME")]
    pub env: Option<String>,
    /// Data to bind with `--env`, hex.
    #[arg(long, value_name = "HEX", requires = "env")]
    pub data: Option<String>,
    /// Write the quote here instead of standard output.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

/// `warren attest verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The quote file.
    #[arg(long, value_name = "FILE")]
    pub quote: PathBuf,
    /// The nonce the verifier sent, hex.
    #[arg(long, value_name = "HEX")]
    pub nonce: String,
    /// The issuing CA's certificate (PEM) the attestation key must chain to.
    #[arg(long, value_name = "CERT")]
    pub ca: PathBuf,
    /// Golden values (TOML).
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// The issuing CA's revocation list (PEM, `warren ca init`/`revoke`/`crl` write it next to
    /// the CA certificate); a revoked attestation key is refused with `revoked`.
    #[arg(long, value_name = "FILE")]
    pub crl: Option<PathBuf>,
    /// Accept quotes from a software root of trust (`root: software`).
    #[arg(long)]
    pub allow_software: bool,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `warren ca ...`.
#[derive(Debug, Subcommand)]
pub enum CaCommand {
    /// Create a Privacy CA: a root, a TPM issuing CA and a separate software issuing CA.
    Init(CaDirArgs),
    /// Enroll this host's attestation key (of the state directory) with the CA in DIR.
    Enroll(CaEnrollArgs),
    /// Host: write this host's enrollment request (for a CA on another machine).
    Request(CaRequestArgs),
    /// CA: check a TPM host's request and write the challenge (MakeCredential).
    Challenge(CaChallengeArgs),
    /// Host: answer the CA's challenge with this host's TPM (ActivateCredential).
    Answer(CaAnswerArgs),
    /// CA: issue the certificate for a request (and, for a TPM, its answer).
    Certify(CaCertifyArgs),
    /// Host: install the certificate the CA issued.
    Install(CaInstallArgs),
    /// Revoke an attestation key certificate and rewrite the issuing CA's revocation list.
    Revoke(CaRevokeArgs),
    /// Rewrite both issuing CAs' revocation lists (each is current for seven days).
    Crl(CaCrlArgs),
}

/// `warren ca request`.
#[derive(Debug, Args)]
pub struct CaRequestArgs {
    /// The host name for the certificate (default: this host's name).
    #[arg(long, value_name = "NAME")]
    pub host: Option<String>,
    /// Write the request here.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
}

/// `warren ca challenge`.
#[derive(Debug, Args)]
pub struct CaChallengeArgs {
    /// The CA's directory.
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,
    /// The host's request.
    #[arg(long, value_name = "FILE")]
    pub request: PathBuf,
    /// Write the challenge here.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
}

/// `warren ca answer`.
#[derive(Debug, Args)]
pub struct CaAnswerArgs {
    /// The CA's challenge.
    #[arg(long, value_name = "FILE")]
    pub challenge: PathBuf,
    /// Write the answer here.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
}

/// `warren ca certify`.
#[derive(Debug, Args)]
pub struct CaCertifyArgs {
    /// The CA's directory.
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,
    /// The host's request.
    #[arg(long, value_name = "FILE")]
    pub request: PathBuf,
    /// The host's answer (TPM requests).
    #[arg(long, value_name = "FILE")]
    pub answer: Option<PathBuf>,
    /// Write the certificate (PEM) here.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
}

/// `warren ca install`.
#[derive(Debug, Args)]
pub struct CaInstallArgs {
    /// The certificate (PEM).
    #[arg(long, value_name = "FILE")]
    pub cert: PathBuf,
}

/// `warren ca revoke`.
#[derive(Debug, Args)]
pub struct CaRevokeArgs {
    /// The CA's directory.
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,
    /// The attestation key certificate to revoke (PEM, as the host's `attest/ak.crt`).
    #[arg(long, value_name = "PEM")]
    pub cert: PathBuf,
}

/// `warren ca crl`.
#[derive(Debug, Args)]
pub struct CaCrlArgs {
    /// The CA's directory.
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,
}

/// `warren ca init`.
#[derive(Debug, Args)]
pub struct CaDirArgs {
    /// The CA's directory.
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,
    /// A certificate (PEM) to trust as an issuer of endorsement key certificates (a TPM
    /// manufacturer's CA); may be repeated.
    #[arg(long, value_name = "PEM")]
    pub ek_ca: Vec<PathBuf>,
}

/// `warren ca enroll`.
#[derive(Debug, Args)]
pub struct CaEnrollArgs {
    /// The CA's directory.
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,
    /// The host name for the certificate (default: this host's name).
    #[arg(long, value_name = "NAME")]
    pub host: Option<String>,
}

/// `warren host-key`.
#[derive(Debug, Args)]
pub struct HostKeyArgs {
    /// The host's name, printed first on the line (as `[host] name` in the manifest).
    #[arg(long)]
    pub name: String,
    /// The private key file (`[host] key`). Default: `<data-dir>/link/host.key`.
    #[arg(value_name = "FILE")]
    pub file: Option<PathBuf>,
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

    /// Build a minimal root holding only this program, its ELF interpreter and its libraries
    /// (and, for CPython, its standard library).
    #[arg(long, value_name = "PATH")]
    pub binary: Option<PathBuf>,

    /// With --binary: also place this file or directory (with everything below it) in the
    /// root, read-only, at the same path (repeatable).
    #[arg(long = "with", value_name = "PATH")]
    pub with: Vec<PathBuf>,

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

    /// Nest the environment's cgroup under GROUP's (Warren's cgroup of another environment,
    /// relative to its `warren` cgroup: `front`, `front/children/req-1`), so that GROUP's
    /// memory, pids and cpu limits bound it too. GROUP must have been started with
    /// --cgroup-children. The daemon passes it for spawned children.
    #[arg(long, value_name = "GROUP")]
    pub cgroup_parent: Option<String>,

    /// Record in the launch record that environment NAME spawned this one (with
    /// --spawn-template, and --parent-record for NAME's own launch record): the provenance a
    /// verifier follows. The daemon passes it for spawned children.
    #[arg(long, value_name = "NAME", requires = "spawn_template")]
    pub spawned_by: Option<String>,

    /// The template a spawned environment was made from (with --spawned-by).
    #[arg(long, value_name = "TEMPLATE", requires = "spawned_by")]
    pub spawn_template: Option<String>,

    /// The spawner's launch record: its number in the event log and its digest
    /// (`RECNUM:sha256:HEX`), with --spawned-by.
    #[arg(long, value_name = "RECNUM:DIGEST", requires = "spawned_by")]
    pub parent_record: Option<String>,

    /// Let the environment's cgroup hold children (for an environment that may spawn): its
    /// processes go in GROUP/self, its children's cgroups in GROUP/children/.
    #[arg(long)]
    pub cgroup_children: bool,

    /// Size of the writable /tmp (and /dev/shm) tmpfs (default 16M).
    #[arg(long, value_name = "SIZE", default_value = "16M")]
    pub tmpfs_size: String,

    /// Make the root writable: an overlay of the read-only root whose writes go to a tmpfs of
    /// --writable-root-size, discarded when the environment ends.
    #[arg(long)]
    pub writable_root: bool,

    /// Size of a writable root's tmpfs (default 64M; needs --writable-root).
    #[arg(long, value_name = "SIZE")]
    pub writable_root_size: Option<String>,

    /// Set an environment variable in the environment (KEY=VALUE; KEY alone takes the value
    /// from Warren's own environment).
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,

    /// Read environment variables from FILE: one KEY=VALUE a line, `#` comments and blank
    /// lines skipped, KEY alone as with -e (repeatable; -e wins).
    #[arg(long = "env-file", value_name = "FILE")]
    pub env_file: Vec<PathBuf>,

    /// Run as this user: NAME, UID, NAME:GROUP or UID:GID, names resolved in the root's own
    /// /etc/passwd and /etc/group (replaces an image's user).
    #[arg(short = 'u', long = "user", value_name = "USER[:GROUP]")]
    pub user: Option<String>,

    /// The hostname inside the environment (default: its name): letters, digits and `-` in
    /// dot-separated labels, at most 64 bytes.
    #[arg(long, value_name = "NAME")]
    pub hostname: Option<String>,

    /// Add a line to the generated /etc/hosts: NAME:IP, NAME an RFC 1123 host name, IP IPv4 or
    /// IPv6 (repeatable, in order).
    #[arg(long = "add-host", value_name = "NAME:IP")]
    pub add_host: Vec<String>,

    /// A name server for the generated /etc/resolv.conf (IPv4 or IPv6; repeatable, at most 3).
    /// Without it the file names no server.
    #[arg(long = "dns", value_name = "IP")]
    pub dns: Vec<String>,

    /// Mount a named volume or a host directory: SRC:DEST[:ro]. SRC starting with `/` is a host
    /// directory, anything else a volume (`warren volume create`); DEST is an absolute
    /// directory in the root (repeatable).
    #[arg(short = 'v', long = "volume", value_name = "SRC:DEST[:ro]")]
    pub volumes: Vec<String>,

    /// Mount a named volume or a host directory: type=volume|bind,src=SRC,dst=DEST[,ro]
    /// (repeatable).
    #[arg(long = "mount", value_name = "SPEC")]
    pub mounts: Vec<String>,

    /// The working directory inside the environment (absolute; replaces an image's).
    #[arg(short = 'w', long = "workdir", value_name = "DIR")]
    pub workdir: Option<String>,

    /// The program to run, before CMD: replaces an image's entrypoint (and drops its cmd, as
    /// Docker does); "" clears the image's entrypoint.
    #[arg(long, value_name = "PROGRAM")]
    pub entrypoint: Option<String>,

    /// Give the workload this Linux capability inside its own user namespace (repeatable;
    /// CHOWN, DAC_OVERRIDE, FOWNER, FSETID, KILL, SETGID, SETUID, SETPCAP, NET_BIND_SERVICE,
    /// AUDIT_WRITE; `CAP_` prefix optional). None by default; others are refused.
    #[arg(long = "cap-add", value_name = "CAP")]
    pub cap_add: Vec<String>,

    /// The seccomp profile: `default`, `strict` (a smaller allow-list), or a profile FILE that
    /// adds syscalls from the safe set (docs/seccomp.md). A file named `default` or `strict`
    /// must be given as `./default`.
    #[arg(long, value_name = "default|strict|FILE")]
    pub seccomp: Option<String>,

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

    /// Bound of the environment's mailboxes, in messages (default 64; 1 to 65536).
    #[arg(long, value_name = "N")]
    pub mailbox_capacity: Option<usize>,

    /// The environment's byte quota in the kernel: messages queued in its mailboxes plus its
    /// sends waiting for room (e.g. 16M, the default; 4K to 1G).
    #[arg(long, value_name = "SIZE")]
    pub mailbox_bytes: Option<String>,

    /// The environment's network: none (loopback only, the default), auto (a veth with an
    /// address from the host's pool 10.88.0.0/16) or ADDRESS/PREFIX (a veth with that address).
    #[arg(long, value_name = "MODE", default_value = "none")]
    pub net: String,

    /// Publish a port: [HOST_ADDRESS:]HOST_PORT:ENV_PORT[/tcp|/udp]; the host address defaults
    /// to 127.0.0.1 (repeatable; needs --net).
    #[arg(short = 'p', long = "publish", value_name = "SPEC")]
    pub publish: Vec<String>,

    /// Let the environment open connections to the environment at ADDRESS (repeatable; needs
    /// --net).
    #[arg(long = "net-allow", value_name = "ADDRESS")]
    pub net_allow: Vec<String>,

    /// Let the environment send beyond this host (needs --net and IPv4 forwarding on the host).
    #[arg(long)]
    pub egress: bool,

    /// Run in the background: start the environment, print its name once it runs, and exit;
    /// its output goes to `<state-dir>/logs/NAME.log` (`warren logs NAME`), `warren stop NAME`
    /// ends it.
    #[arg(short = 'd', long)]
    pub detach: bool,

    /// Give the workload a terminal: a pty of the environment's own (devpts inside), with the
    /// host terminal in raw mode while it runs and its window size forwarded.
    #[arg(short = 't', long)]
    pub tty: bool,

    /// With -t, forward standard input to the workload's terminal (without -t, standard input
    /// is always the workload's).
    #[arg(short = 'i', long)]
    pub interactive: bool,

    /// Run a small init as pid 1 (`warren-msg init`): it forwards signals to the command,
    /// reaps zombies and exits with the command's status, so `warren stop` takes milliseconds.
    #[arg(long)]
    pub init: bool,

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
    /// Also the managed environments that are not running (exited, restarting, stopped, failed).
    #[arg(short, long)]
    pub all: bool,
    /// Show spawned children indented under the environment that spawned them.
    #[arg(long)]
    pub tree: bool,
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
    /// The root of trust for measured launches (`tpm`, `software`, `auto`); saved for the
    /// state directory, so launchers without the kernel use it too.
    #[arg(long, value_name = "ROOT")]
    pub attest_root: Option<String>,
    /// How to reach the TPM (`device:/dev/tpmrm0`, `swtpm:host=127.0.0.1,port=2321`).
    #[arg(long, value_name = "SPEC")]
    pub tpm: Option<String>,
    /// Unsent answers per environment connection over which the kernel stops reading it until
    /// the environment reads (64K to 1G; default 4M).
    #[arg(long, value_name = "SIZE")]
    pub max_unsent: Option<String>,
    /// Unsent answers per environment connection at which the kernel cuts it off (at least
    /// max-unsent + 1M, at most 4G; default 64M).
    #[arg(long, value_name = "SIZE")]
    pub max_backlog: Option<String>,
    /// Packets read from one connection per turn of the event loop (1 to 1024; default 16).
    #[arg(long, value_name = "N")]
    pub turn_packets: Option<usize>,
    /// Requests handled from one connection per turn of the event loop (1 to 65536; default
    /// 1024).
    #[arg(long, value_name = "N")]
    pub turn_frames: Option<usize>,
    /// The audit log's size at which it rotates (64K to 1T; default 64M).
    #[arg(long, value_name = "SIZE")]
    pub audit_max_size: Option<String>,
    /// Rotated audit log files kept (`PATH.1` … `PATH.N`; 0 to 100; default 4).
    #[arg(long, value_name = "N")]
    pub audit_keep: Option<u32>,
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

/// `warren volume ...`.
#[derive(Debug, Subcommand)]
pub enum VolumeCommand {
    /// Create a named volume (a directory, or with --size a size-limited ext4 image).
    Create(VolumeCreateArgs),
    /// List volumes.
    Ls(VolumeLsArgs),
    /// Show everything stored about a volume, as JSON.
    Inspect(VolumeNameArgs),
    /// Remove volumes and their contents (refused while an environment uses one).
    Rm(VolumeRmArgs),
}

/// `warren volume create`.
#[derive(Debug, Args)]
pub struct VolumeCreateArgs {
    /// Limit the volume to SIZE bytes (e.g. 512M, 2G; at least 16M): a sparse ext4 image file,
    /// loop-mounted where it is used.
    #[arg(long, value_name = "SIZE")]
    pub size: Option<String>,
    /// The owner of the volume's top directory as the environment sees it, UID:GID (numbers,
    /// 0 to 65535); it is kept when the volume is filled from a root on first use.
    #[arg(long, value_name = "UID:GID")]
    pub owner: Option<String>,
    /// Print the record as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// The volume's name.
    pub name: String,
}

/// `warren volume ls`.
#[derive(Debug, Args)]
pub struct VolumeLsArgs {
    /// One JSON object per volume (JSON Lines).
    #[arg(long)]
    pub json: bool,
    /// Print only names.
    #[arg(short, long)]
    pub quiet: bool,
}

/// `warren volume inspect`.
#[derive(Debug, Args)]
pub struct VolumeNameArgs {
    /// The volume's name.
    pub name: String,
}

/// `warren volume rm`.
#[derive(Debug, Args)]
pub struct VolumeRmArgs {
    /// The volumes.
    #[arg(required = true)]
    pub names: Vec<String>,
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::{Cli, Command, ImageCommand};

    /// clap's own consistency checks over the whole tree, deferred verbs included (it builds
    /// every one of them).
    #[test]
    fn the_whole_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    /// The verbs' flags are deferred: building the root builds none of them until a verb is
    /// used, and using one builds that one.
    #[test]
    fn a_verb_is_built_only_when_it_is_used() {
        let mut root = Cli::command();
        let flags = |cmd: &clap::Command, verb: &str| {
            cmd.find_subcommand(verb)
                .unwrap()
                .get_arguments()
                .filter(|a| a.get_long().is_some())
                .count()
        };
        // Control: the root's own global flags are there from the start.
        assert!(
            root.get_arguments()
                .any(|a| a.get_long() == Some("state-dir"))
        );
        assert_eq!(
            flags(&root, "daemon"),
            0,
            "daemon's flags were built eagerly"
        );
        assert_eq!(flags(&root, "run"), 0, "run's flags were built eagerly");
        root.build();
        assert!(
            flags(&root, "daemon") > 5,
            "building the tree builds the deferred verbs"
        );
        assert!(flags(&root, "run") > 10);
        // The help text of a verb is still its own (the variant's doc), not its struct's.
        let about = |verb: &str| {
            root.find_subcommand(verb)
                .unwrap()
                .get_about()
                .unwrap()
                .to_string()
        };
        assert!(
            about("run").starts_with("Run a command in a new"),
            "{}",
            about("run")
        );
        assert!(
            about("image").starts_with("Manage images"),
            "{}",
            about("image")
        );
    }

    #[test]
    fn parsing_through_deferred_verbs_is_unchanged() {
        let cli = Cli::try_parse_from([
            "warren",
            "run",
            "--rootfs",
            "/r",
            "--memory",
            "64M",
            "--",
            "/bin/true",
            "-x",
        ])
        .unwrap();
        let Command::Run(args) = cli.command else {
            panic!("not run: {:?}", cli.command)
        };
        assert_eq!(args.0.rootfs.as_deref(), Some(std::path::Path::new("/r")));
        assert_eq!(args.0.command, ["/bin/true", "-x"]);

        let cli = Cli::try_parse_from(["warren", "image", "ls", "--json"]).unwrap();
        assert!(
            matches!(cli.command, Command::Image(ref c) if matches!(c.0, ImageCommand::Ls(ref a) if a.json))
        );

        // Errors still name what was wrong, in the deferred verb and in a nested one.
        let err = Cli::try_parse_from(["warren", "run", "--no-such-flag"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::UnknownArgument);
        assert!(err.to_string().contains("--no-such-flag"), "{err}");
        let err = Cli::try_parse_from(["warren", "run", "--", "true"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::MissingRequiredArgument);
        let err = Cli::try_parse_from(["warren", "attest", "nonsense"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::InvalidSubcommand);
        // The global flag still reaches a deferred verb.
        let cli = Cli::try_parse_from(["warren", "ps", "--state-dir", "/s"]).unwrap();
        assert_eq!(cli.state_dir, std::path::Path::new("/s"));
    }
}
