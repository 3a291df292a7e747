//! `warren-ipc-bench`: the messaging benchmark of issue 4, run by `bench/ipc.sh`.
//!
//! Each mode measures one thing and prints one JSON line (`record`): round trips and one-way
//! throughput of 64-byte messages over a bare socketpair (`floor-*`), through a plain relay
//! process (`relay-*`), between two Warren environments through the kernel (`warren-*`, run
//! inside `warren run`), and through RabbitMQ on loopback (`amqp-*`, built with the `amqp`
//! feature); and the kernel's memory per idle mailbox (`idle-mailboxes`). `report` puts the
//! records of a run side by side with the ratios the issue sets targets for. The `role-*`
//! modes are the helper processes the floor modes start.
#![forbid(unsafe_code)]

#[cfg(feature = "amqp")]
mod amqp;
mod floor;
mod idle;
mod inenv;
mod record;
mod report;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// The IPC benchmark: Warren's kernel against a socketpair, a plain relay and RabbitMQ.
#[derive(Debug, Parser)]
#[command(name = "warren-ipc-bench")]
struct Cli {
    #[command(subcommand)]
    mode: Mode,
}

/// Where a measurement runs and which round it belongs to.
#[derive(Debug, Args, Clone, Copy)]
struct Place {
    /// Pin every process of the measurement to this CPU (unpinned when absent).
    #[arg(long)]
    cpu: Option<usize>,
    /// The round number to record.
    #[arg(long, default_value_t = 0)]
    round: u32,
}

/// How long a round-trip measurement runs.
#[derive(Debug, Args, Clone, Copy)]
struct Trips {
    /// Timed round trips.
    #[arg(long, default_value_t = 20_000)]
    iters: usize,
    /// Untimed round trips first.
    #[arg(long, default_value_t = 2_000)]
    warmup: usize,
}

/// How much a throughput measurement sends.
#[derive(Debug, Args, Clone, Copy)]
struct Flow {
    /// Messages to send.
    #[arg(long, default_value_t = 1_000_000)]
    count: u64,
    /// Messages per packet (per batch call for Warren).
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Warren only: batch the version-1 way, one request frame per message pipelined in a
    /// packet, instead of one batch frame (`send_many` / `recv_many`).
    #[arg(long)]
    pipelined: bool,
    /// Warren's receiver only: the most messages one batch receive takes (default: `batch`).
    #[arg(long)]
    recv_max: Option<usize>,
}

#[derive(Debug, Subcommand)]
enum Mode {
    /// Round trips over one socketpair between two processes.
    FloorPingpong {
        #[command(flatten)]
        trips: Trips,
        #[command(flatten)]
        place: Place,
    },
    /// One-way throughput over one socketpair.
    FloorThroughput {
        #[command(flatten)]
        flow: Flow,
        #[command(flatten)]
        place: Place,
    },
    /// Round trips through a plain relay process.
    RelayPingpong {
        #[command(flatten)]
        trips: Trips,
        #[command(flatten)]
        place: Place,
        #[command(flatten)]
        env: floor::InEnv,
    },
    /// One-way throughput through a plain relay process.
    RelayThroughput {
        #[command(flatten)]
        flow: Flow,
        #[command(flatten)]
        place: Place,
    },
    /// Inside an environment: answer messages until one says `stop`.
    WarrenServer {
        /// How the server uses the client library.
        #[arg(long, value_enum)]
        style: inenv::Style,
        /// The client environment's name (answers go to it for `plain` and `pipelined`).
        #[arg(long)]
        peer: String,
        /// Pin to this CPU.
        #[arg(long)]
        cpu: Option<usize>,
        #[command(flatten)]
        host: inenv::Host,
    },
    /// Inside an environment: time round trips to a `warren-server`.
    WarrenClientPingpong {
        /// How the client uses the client library.
        #[arg(long, value_enum)]
        style: inenv::Style,
        /// The server environment's name.
        #[arg(long)]
        target: String,
        #[command(flatten)]
        trips: Trips,
        #[command(flatten)]
        place: Place,
        #[command(flatten)]
        host: inenv::Host,
    },
    /// Inside an environment: send 64-byte messages to `target`.
    WarrenClientSend {
        /// The receiving environment's name.
        #[arg(long)]
        target: String,
        #[command(flatten)]
        flow: Flow,
        #[command(flatten)]
        place: Place,
        #[command(flatten)]
        host: inenv::Host,
    },
    /// Inside an environment: receive and count messages.
    WarrenClientReceive {
        #[command(flatten)]
        flow: Flow,
        #[command(flatten)]
        place: Place,
        #[command(flatten)]
        host: inenv::Host,
    },
    /// The kernel daemon's memory per idle environment and per extra idle mailbox.
    IdleMailboxes {
        /// The daemon's process id.
        #[arg(long)]
        daemon_pid: u32,
        /// The daemon's state directory.
        #[arg(long, default_value = "/run/warren")]
        state_dir: PathBuf,
        /// Environments to register.
        #[arg(long, default_value_t = 1000)]
        count: usize,
        /// Extra mailboxes per environment.
        #[arg(long, default_value_t = 63)]
        extra: usize,
        /// The round number to record.
        #[arg(long, default_value_t = 0)]
        round: u32,
    },
    /// Round trips through RabbitMQ (a ping queue, an echoing consumer, a pong queue).
    AmqpPingpong {
        /// The broker.
        #[arg(long, default_value = "amqp://guest:guest@127.0.0.1:5672/%2f")]
        url: String,
        #[command(flatten)]
        trips: Trips,
        #[command(flatten)]
        place: Place,
    },
    /// One-way throughput through RabbitMQ (transient messages, no confirms, auto-ack).
    AmqpThroughput {
        /// The broker.
        #[arg(long, default_value = "amqp://guest:guest@127.0.0.1:5672/%2f")]
        url: String,
        #[command(flatten)]
        flow: Flow,
        #[command(flatten)]
        place: Place,
    },
    /// Side-by-side tables and ratios from the records in FILES.
    Report {
        /// The relay variant the batched-throughput target compares with.
        #[arg(long, default_value = "64 per packet")]
        relay_batch: String,
        /// Warren's batched variant.
        #[arg(long, default_value = "512 per packet")]
        warren_batch: String,
        /// Files of records (JSON lines).
        files: Vec<PathBuf>,
    },
    /// Helper: echo packets on standard input.
    #[command(hide = true)]
    RoleEcho {
        #[arg(long)]
        cpu: Option<usize>,
    },
    /// Helper: time round trips on standard input, print the samples.
    #[command(hide = true)]
    RolePinger {
        #[arg(long)]
        iters: usize,
        #[arg(long)]
        warmup: usize,
        #[arg(long)]
        cpu: Option<usize>,
    },
    /// Helper: forward packets between standard input and standard output.
    #[command(hide = true)]
    RoleRelay {
        #[arg(long)]
        cpu: Option<usize>,
    },
    /// Helper: send frames on standard input.
    #[command(hide = true)]
    RoleSender {
        #[arg(long)]
        count: u64,
        #[arg(long)]
        batch: usize,
        #[arg(long)]
        cpu: Option<usize>,
    },
}

fn run(mode: Mode) -> anyhow::Result<()> {
    match mode {
        Mode::FloorPingpong { trips, place } => {
            floor::pingpong(false, trips.iters, trips.warmup, place.cpu, place.round)?.print()
        }
        Mode::RelayPingpong { trips, place, env } => match env.rootfs {
            Some(_) => {
                floor::pingpong_in_env(&env, trips.iters, trips.warmup, place.cpu, place.round)?
                    .print()
            }
            None => {
                floor::pingpong(true, trips.iters, trips.warmup, place.cpu, place.round)?.print()
            }
        },
        Mode::FloorThroughput { flow, place } => {
            floor::throughput(false, flow.count, flow.batch, place.cpu, place.round)?.print()
        }
        Mode::RelayThroughput { flow, place } => {
            floor::throughput(true, flow.count, flow.batch, place.cpu, place.round)?.print()
        }
        Mode::WarrenServer {
            style,
            peer,
            cpu,
            host,
        } => inenv::server(style, &peer, cpu, &host),
        Mode::WarrenClientPingpong {
            style,
            target,
            trips,
            place,
            host,
        } => inenv::client_pingpong(
            style,
            &target,
            trips.iters,
            trips.warmup,
            place.cpu,
            place.round,
            &host,
        )?
        .print(),
        Mode::WarrenClientSend {
            target,
            flow,
            place,
            host,
        } => inenv::client_send(
            &target,
            flow.count,
            flow.batch,
            flow.pipelined,
            place.cpu,
            place.round,
            &host,
        )?
        .print(),
        Mode::WarrenClientReceive { flow, place, host } => inenv::client_receive(
            flow.count,
            flow.batch,
            flow.recv_max,
            flow.pipelined,
            place.cpu,
            place.round,
            &host,
        )?
        .print(),
        Mode::IdleMailboxes {
            daemon_pid,
            state_dir,
            count,
            extra,
            round,
        } => {
            for r in idle::measure(&state_dir, daemon_pid, count, extra, round)? {
                r.print()?;
            }
            Ok(())
        }
        Mode::AmqpPingpong { url, trips, place } => amqp_pingpong(&url, trips, place),
        Mode::AmqpThroughput { url, flow, place } => amqp_throughput(&url, flow, place),
        Mode::Report {
            relay_batch,
            warren_batch,
            files,
        } => {
            let results = report::Results::load(&files)?;
            print!("{}", results.render(&relay_batch, &warren_batch));
            Ok(())
        }
        Mode::RoleEcho { cpu } => floor::role_echo(cpu),
        Mode::RolePinger { iters, warmup, cpu } => floor::role_pinger(iters, warmup, cpu),
        Mode::RoleRelay { cpu } => floor::role_relay(cpu),
        Mode::RoleSender { count, batch, cpu } => floor::role_sender(count, batch, cpu),
    }
}

#[cfg(feature = "amqp")]
fn amqp_pingpong(url: &str, trips: Trips, place: Place) -> anyhow::Result<()> {
    amqp::pingpong(url, trips.iters, trips.warmup, place.cpu, place.round)?.print()
}

#[cfg(feature = "amqp")]
fn amqp_throughput(url: &str, flow: Flow, place: Place) -> anyhow::Result<()> {
    amqp::throughput(url, flow.count, place.cpu, place.round)?.print()
}

#[cfg(not(feature = "amqp"))]
fn amqp_pingpong(_: &str, _: Trips, _: Place) -> anyhow::Result<()> {
    anyhow::bail!(
        "built without the amqp feature: cargo build --release -p warren-bench --features amqp"
    )
}

#[cfg(not(feature = "amqp"))]
fn amqp_throughput(_: &str, _: Flow, _: Place) -> anyhow::Result<()> {
    anyhow::bail!(
        "built without the amqp feature: cargo build --release -p warren-bench --features amqp"
    )
}

fn main() {
    let cli = Cli::parse();
    if let Err(e) = run(cli.mode) {
        eprintln!("warren-ipc-bench: error: {e:#}");
        std::process::exit(1);
    }
}
