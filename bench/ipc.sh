#!/usr/bin/env bash
# Messaging benchmark (issue 4): 64-byte messages between two Warren environments through the
# kernel, side by side in ONE run with the raw floor (two processes over a SOCK_SEQPACKET
# socketpair), a plain relay process in the middle (the least a mediating daemon can cost), and
# RabbitMQ on loopback. Round trips (p50, p99) pinned to one CPU and unpinned, one-way throughput
# one message per packet and batched, and the kernel's memory per idle mailbox. Prints the
# tables and the ratios the issue sets targets for, and writes them to bench/results/.
#
#   bash bench/ipc.sh                  # 3 interleaved rounds
#   ROUNDS=5 AMQP=0 bash bench/ipc.sh  # without RabbitMQ
#
# Settings: ROUNDS (3), RTT_ITERS (20000 timed round trips, after RTT_WARMUP=2000),
# THRU_COUNT (1000000 messages for one-per-packet runs; Warren, whose every message is an
# awaited request there, sends a tenth), BATCH_COUNT (20000000 for batched runs; Warren a
# quarter), WARREN_BATCH (512 messages per batch frame sent), WARREN_RECV_MAX (4096: the most
# one batch receive takes, the receiver's mailbox capacity: it takes what is queued), AMQP (1: include RabbitMQ;
# installs Debian's rabbitmq-server if missing, bound to 127.0.0.1 only), AMQP_COUNT (200000),
# IDLE_COUNT (1000 environments registered for the memory figure).
#
# Must run as root. It starts its own `warren daemon` on a private state directory (host uid
# ranges are registered host-wide whatever the state directory, so this coexists with any other
# Warren on the machine) and stops it at the end. RabbitMQ is stopped at the end if this script
# started it. Network use: `cargo build` and, only when something is missing, `apt-get`.
#
# Why pin: on this 2-vCPU VM a wake-up that crosses vCPUs costs about 40 µs, which swamps
# everything else, so the latency comparisons that matter are the pinned ones (every process of
# a measurement, the daemon and the relay included, on CPU 0). Unpinned figures are reported too.
set -euo pipefail

ROUNDS=${ROUNDS:-3}
RTT_ITERS=${RTT_ITERS:-20000}
RTT_WARMUP=${RTT_WARMUP:-2000}
THRU_COUNT=${THRU_COUNT:-1000000}
BATCH_COUNT=${BATCH_COUNT:-20000000}
WARREN_BATCH=${WARREN_BATCH:-512}
WARREN_RECV_MAX=${WARREN_RECV_MAX:-4096}
AMQP=${AMQP:-1}
AMQP_COUNT=${AMQP_COUNT:-200000}
AMQP_ITERS=${AMQP_ITERS:-5000}
IDLE_COUNT=${IDLE_COUNT:-1000}

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
results="$here/results"
stamp=$(date -u +%Y%m%dT%H%M%SZ)
out="$results/ipc-$stamp.jsonl"

die() { echo "ipc.sh: $*" >&2; exit 1; }
say() { echo "== $*" >&2; }
[ "$(id -u)" = 0 ] || die "run as root (environments need namespaces and cgroups)"

# --- 0. tools -------------------------------------------------------------------------------
bash "$repo/scripts/setup.sh" >&2
if [ "$AMQP" = 1 ] && ! command -v rabbitmq-server >/dev/null; then
    say "installing rabbitmq-server (loopback-only configuration written first)"
    mkdir -p /etc/rabbitmq
    [ -e /etc/rabbitmq/rabbitmq.conf ] || cat > /etc/rabbitmq/rabbitmq.conf <<'EOF'
listeners.tcp.default = 127.0.0.1:5672
loopback_users.guest = true
EOF
    [ -e /etc/rabbitmq/rabbitmq-env.conf ] || cat > /etc/rabbitmq/rabbitmq-env.conf <<'EOF'
NODENAME=rabbit@localhost
NODE_IP_ADDRESS=127.0.0.1
ERL_EPMD_ADDRESS=127.0.0.1
SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
EOF
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rabbitmq-server >/dev/null
fi

# --- 1. build ---------------------------------------------------------------------------------
say "building warren and warren-ipc-bench (release)"
features=()
[ "$AMQP" = 1 ] && features=(--features warren-bench/amqp)
(cd "$repo" && cargo build --release -q -p warren -p warren-bench "${features[@]}")
bin="$repo/target/x86_64-unknown-linux-musl/release"
warren="$bin/warren"
bench="$bin/warren-ipc-bench"
[ -x "$warren" ] && [ -x "$bench" ] || die "the build left no binaries in $bin"

# --- 2. a busybox root holding the benchmark program ------------------------------------------
work=$(mktemp -d /tmp/warren-ipc.XXXXXX)
chmod 755 "$work"
STATE_DIR="$work/state"
root="$work/root"
mkdir -p "$root"/{bin,etc,proc,dev,tmp,sys}
cp /bin/busybox "$root/bin/busybox"
ln -s busybox "$root/bin/sh"
cp "$bench" "$root/bin/warren-ipc-bench"
echo 'root:x:0:0:root:/:/bin/sh' > "$root/etc/passwd"
echo 'root:x:0:' > "$root/etc/group"

daemon_pid=""
idle_pid=""
started_rabbit=0
cleanup() {
    for pid in $daemon_pid $idle_pid; do
        kill -TERM "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    if [ "$started_rabbit" = 1 ]; then
        rabbitmqctl stop >/dev/null 2>&1 || true
        epmd -kill >/dev/null 2>&1 || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

# --- 3. the kernel daemon ---------------------------------------------------------------------
# Many descriptors for the idle-mailbox measurement (two per registered environment).
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
# The daemon gets a session of its own, as a service manager would give it: with the kernel's
# scheduler autogroups (on here) that makes it a scheduling group apart from the benchmark's
# processes. (In the benchmark's own session, host-process round trips measured about 3 µs
# slower; the relay measured the same either way.)
start_daemon() { # STATE_DIR LOG: starts a daemon, sets $started to its pid
    setsid "$warren" --state-dir "$1" daemon --audit-log "$1.audit.jsonl" 2>"$2" &
    started=$!
    for _ in $(seq 200); do
        grep -q "kernel ready" "$2" 2>/dev/null && return 0
        kill -0 "$started" 2>/dev/null || die "the daemon did not start: $(cat "$2")"
        sleep 0.05
    done
    die "the daemon did not come up"
}
start_daemon "$STATE_DIR" "$work/daemon.log"
daemon_pid=$started
ncpu=$(nproc)
all_cpus="0-$((ncpu - 1))"
place_daemon() { taskset -a -p -c "$1" "$daemon_pid" >/dev/null; }

# --- 4. RabbitMQ ------------------------------------------------------------------------------
if [ "$AMQP" = 1 ]; then
    if ! rabbitmqctl -q await_startup --timeout 1 >/dev/null 2>&1; then
        say "starting rabbitmq-server (127.0.0.1 only)"
        RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 rabbitmq-server -detached >/dev/null 2>&1
        started_rabbit=1
        for _ in $(seq 120); do
            ss -ltn | grep -q '127.0.0.1:5672 ' && break
            sleep 0.5
        done
        rabbitmqctl -q await_startup --timeout 60 >/dev/null || die "RabbitMQ did not start"
    fi
    if ss -ltn | grep -E ':5672 ' | grep -vq '127.0.0.1:5672 '; then
        die "RabbitMQ listens beyond loopback: see /etc/rabbitmq/rabbitmq.conf"
    fi
fi

# --- 5. the measurements ----------------------------------------------------------------------
# Wait (up to 120 s) for the machine to be nearly idle: it is shared, and other work on its two
# vCPUs shows up directly in round trips.
busy_pct() {
    local a b
    read -r _ a1 a2 a3 a4 a5 a6 a7 a8 _ < /proc/stat
    sleep 1
    read -r _ b1 b2 b3 b4 b5 b6 b7 b8 _ < /proc/stat
    a=$((a1 + a2 + a3 + a4 + a5 + a6 + a7 + a8))
    b=$((b1 + b2 + b3 + b4 + b5 + b6 + b7 + b8))
    local idle=$(( (b4 + b5) - (a4 + a5) )) total=$((b - a))
    echo $(( total > 0 ? 100 * (total - idle) / total : 0 ))
}
for _ in $(seq 120); do
    busy=$(busy_pct)
    [ "$busy" -lt 10 ] && break
    echo "waiting for the machine to go idle (busy ${busy}%)..." >&2
done
say "machine busy ${busy}% before the run"
mkdir -p "$results"
: > "$out"
record() { tee -a "$out"; }
tag=$$

# First, memory per idle mailbox, on a daemon of its own: fresh, so that the growth shows in
# its resident memory (memory freed by earlier runs would absorb it), and gone afterwards, so
# that the thousands of registrations leave nothing behind in the daemon measured next.
say "kernel memory per idle mailbox ($IDLE_COUNT environments, 63 extra mailboxes each)"
start_daemon "$work/idle-state" "$work/idle-daemon.log"
idle_pid=$started
"$bench" idle-mailboxes --daemon-pid "$idle_pid" --state-dir "$work/idle-state" \
    --count "$IDLE_COUNT" | record
kill -TERM "$idle_pid"
wait "$idle_pid" 2>/dev/null || true
idle_pid=""

warren_env() { # NAME [warren run options...] -- [bench args...]
    local name=$1
    shift
    timeout 300 "$warren" --state-dir "$STATE_DIR" run --name "$name" --rootfs "$root" "$@"
}

warren_rtt() { # STYLE CPUARGS ROUND
    local style=$1 cpu=$2 round=$3 srv="wb-srv-$tag" cli="wb-cli-$tag"
    # shellcheck disable=SC2086
    warren_env "$srv" --may-send "$cli" -- /bin/warren-ipc-bench warren-server \
        --style "$style" --peer "$cli" $cpu &
    local spid=$!
    # shellcheck disable=SC2086
    warren_env "$cli" --may-send "$srv" -- /bin/warren-ipc-bench warren-client-pingpong \
        --style "$style" --target "$srv" --iters "$RTT_ITERS" --warmup "$RTT_WARMUP" \
        $cpu --round "$round" | record
    wait "$spid"
}

warren_thru() { # BATCH COUNT CPUARGS ROUND [--pipelined | --recv-max N]
    local batch=$1 count=$2 cpu=$3 round=$4 rcv="wb-rcv-$tag" snd="wb-snd-$tag"
    local style=${5:-} rstyle="${5:-} ${6:-}"
    [ "$style" = --recv-max ] && style=""
    # shellcheck disable=SC2086
    warren_env "$rcv" --mailbox-capacity 4096 -- /bin/warren-ipc-bench warren-client-receive \
        --count "$count" --batch "$batch" $rstyle $cpu --round "$round" | record &
    local rpid=$!
    # shellcheck disable=SC2086
    warren_env "$snd" --may-send "$rcv" -- /bin/warren-ipc-bench warren-client-send \
        --target "$rcv" --count "$count" --batch "$batch" $style $cpu --round "$round" >>"$out"
    wait "$rpid"
}

for round in $(seq "$ROUNDS"); do
    for placement in pinned unpinned; do
        if [ "$placement" = pinned ]; then cpu="--cpu 0"; place_daemon 0; else cpu=""; place_daemon "$all_cpus"; fi
        say "round $round/$ROUNDS, $placement: round trips"
        trips=(--iters "$RTT_ITERS" --warmup "$RTT_WARMUP" --round "$round")
        # shellcheck disable=SC2086
        {
            "$bench" floor-pingpong "${trips[@]}" $cpu | record
            "$bench" relay-pingpong "${trips[@]}" $cpu | record
            # The relay's endpoints inside environments, as Warren's are (the relay itself
            # stays on the host, as the kernel daemon does).
            timeout 300 "$bench" relay-pingpong "${trips[@]}" $cpu --endpoints-in "$root" \
                --warren "$warren" --state-dir "$STATE_DIR" | record
        }
        for style in plain pipelined call; do warren_rtt "$style" "$cpu" "$round"; done
        # The same kernel path between two host processes that register as environments on the
        # control socket (no launcher, namespaces, cgroups or seccomp): what isolation adds.
        # shellcheck disable=SC2086
        {
            "$bench" warren-server --style pipelined --peer "wb-hcli-$tag" $cpu \
                --register "wb-hsrv-$tag" --may-send "wb-hcli-$tag" --state-dir "$STATE_DIR" &
            hsrv=$!
            "$bench" warren-client-pingpong --style pipelined --target "wb-hsrv-$tag" \
                "${trips[@]}" $cpu --register "wb-hcli-$tag" --may-send "wb-hsrv-$tag" \
                --state-dir "$STATE_DIR" | record
            wait "$hsrv"
        }
        say "round $round/$ROUNDS, $placement: throughput"
        # shellcheck disable=SC2086
        {
            "$bench" floor-throughput --count "$THRU_COUNT" --batch 1 --round "$round" $cpu | record
            "$bench" floor-throughput --count "$BATCH_COUNT" --batch 64 --round "$round" $cpu | record
            "$bench" relay-throughput --count "$THRU_COUNT" --batch 1 --round "$round" $cpu | record
            "$bench" relay-throughput --count "$BATCH_COUNT" --batch 64 --round "$round" $cpu | record
            "$bench" relay-throughput --count "$BATCH_COUNT" --batch "$WARREN_BATCH" --round "$round" $cpu | record
        }
        warren_thru 1 "$((THRU_COUNT / 10))" "$cpu" "$round"
        warren_thru "$WARREN_BATCH" "$((BATCH_COUNT / 4))" "$cpu" "$round" --recv-max "$WARREN_RECV_MAX"
        # The version-1 way (one request frame per message), for comparison.
        warren_thru "$WARREN_BATCH" "$((BATCH_COUNT / 20))" "$cpu" "$round" --pipelined
        if [ "$AMQP" = 1 ] && [ "$placement" = unpinned ]; then
            say "round $round/$ROUNDS: RabbitMQ"
            "$bench" amqp-pingpong --iters "$AMQP_ITERS" --warmup 500 --round "$round" | record
            "$bench" amqp-throughput --count "$AMQP_COUNT" --round "$round" | record
        fi
    done
done
place_daemon "$all_cpus"

# --- 6. the report ----------------------------------------------------------------------------
report="$results/ipc-$stamp.md"
{
    echo "# bench/ipc.sh, $stamp"
    echo
    echo "Machine: $(nproc) vCPUs, $(uname -r); $(rabbitmqctl version 2>/dev/null | sed 's/^/RabbitMQ /' || true); CPU busy ${busy}% in the second before the run"
    echo
    warren_label="$WARREN_BATCH per frame, up to $WARREN_RECV_MAX per receive"
    [ "$WARREN_RECV_MAX" = "$WARREN_BATCH" ] && warren_label="$WARREN_BATCH per packet"
    "$bench" report --relay-batch "64 per packet" --warren-batch "$warren_label" "$out"
} > "$report"
echo
cat "$report"
echo
echo "records: $out"
echo "report:  $report"
