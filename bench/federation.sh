#!/usr/bin/env bash
# Federation benchmark (issue 8): cross-host throughput and round trip through RabbitMQ,
# Warren against a bare lapin publisher/consumer with the same settings, in the same run.
#
#   bash bench/federation.sh                 # 3 interleaved rounds
#   ROUNDS=5 COUNT=200000 bash bench/federation.sh
#
# Warren: two kernels (alpha, beta) on this machine, each with its own state directory,
# federated through a private RabbitMQ node on 127.0.0.1 (scripts/rabbitmq-instance.sh).
# Throughput: an environment on alpha sends COUNT 64-byte messages (send_batch, 256 per
# packet) to one on beta, which takes them 256 at a time; rate = messages / (last arrival -
# first arrival), as the receiver sees it. Round trip: an environment on alpha calls an echo
# environment on beta (send with a reply capability, which crosses as a token, and await the
# answer) RTT_COUNT times. A second throughput run sends SINGLE_COUNT messages one per send
# call (one kernel turn, hence one batch, one signature and one sync per message: the worst
# case for Warren's batching). Every message is durable in the sender's outbox (fdatasync) before
# its send is answered, signed (one Ed25519 signature per batch), persistent on a durable
# queue with publisher confirms, and journalled (fdatasync) by the receiver before delivery.
#
# Bare lapin (warren-fed-baseline): durable queue, persistent 64-byte messages, publisher
# confirms awaited per message on their own tasks (pipelined), manual acks with prefetch 256;
# throughput timed from the first arrival to the last; round trip through an echo consumer.
#
# Prints one line per measurement and a summary with the ratios; the broker, the kernels,
# the environments and all files are removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
COUNT=${COUNT:-100000}
RTT_COUNT=${RTT_COUNT:-2000}
SINGLE_COUNT=${SINGLE_COUNT:-5000}
PORT=${PORT:-25800}
say() { echo "== $*" >&2; }

say "building (release)"
cargo build -q --release -p warren
cargo build -q --release -p warren-bench --features amqp --bin warren-fed-peer --bin warren-fed-baseline
T=target/x86_64-unknown-linux-musl/release
W=$(pwd)/$T/warren
PEER=$(pwd)/$T/warren-fed-peer
BASE=$(pwd)/$T/warren-fed-baseline

WORK=$(mktemp -d /tmp/warren-fedbench.XXXXXX)
SA=/run/warren-fedbench-alpha
SB=/run/warren-fedbench-beta
URL="amqp://guest:guest@127.0.0.1:$PORT/%2f"
pids=()
cleanup() {
    for s in "$SA" "$SB"; do
        for e in $(WARREN_STATE_DIR=$s "$W" ps -a -q 2>/dev/null || true); do
            WARREN_STATE_DIR=$s "$W" rm -f "$e" >/dev/null 2>&1 || true
        done
    done
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
    bash scripts/rabbitmq-instance.sh stop "$WORK/rmq" >/dev/null 2>&1 || true
    rm -rf "$WORK" "$SA" "$SB"
}
trap cleanup EXIT

say "starting RabbitMQ on 127.0.0.1:$PORT"
bash scripts/rabbitmq-instance.sh start "$WORK/rmq" "$PORT"
mkdir -p "$WORK/keys"
{ "$W" host-key --name alpha "$WORK/keys/alpha.key"; "$W" host-key --name beta "$WORK/keys/beta.key"; } > "$WORK/trusted"
host() { printf '[host]\nname = "%s"\nbroker = "%s"\nkey = "keys/%s.key"\ntrusted_keys = "trusted"\n\n' "$1" "$URL" "$1"; }
space() { printf '[space.%s]\nimage = { binary = "%s" }\ncommand = ["%s", %s]\n%s\n\n' "$1" "$PEER" "$PEER" "$2" "$3"; }

# The kernels start with the echo server on beta; each round adds its environments.
host alpha > "$WORK/alpha.toml"
{ host beta; space echo '"echo"' 'accept_from = ["*@alpha"]'; } > "$WORK/beta.toml"
rm -rf "$SA" "$SB"
WARREN_STATE_DIR=$SB "$W" up "$WORK/beta.toml" > "$WORK/beta.log" 2>&1 & pids+=($!)
WARREN_STATE_DIR=$SA "$W" up "$WORK/alpha.toml" > "$WORK/alpha.log" 2>&1 & pids+=($!)
for s in "$SA" "$SB"; do
    for _ in $(seq 100); do [ -S "$s/kernel.sock" ] && break; sleep 0.1; done
done
sleep 1

wait_for() { # FILE NEEDLE SECONDS
    for _ in $(seq $(($3 * 10))); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
    echo "timed out waiting for $2 in $1" >&2; tail -5 "$1" >&2; return 1
}

results=$WORK/results
: > "$results"
for r in $(seq "$ROUNDS"); do
    say "round $r/$ROUNDS: Warren throughput ($COUNT messages)"
    { host beta; space echo '"echo"' 'accept_from = ["*@alpha"]';
      space "sink$r" "\"recv\", \"$COUNT\", \"200\"" 'accept_from = ["*@alpha"]'; } > "$WORK/beta.toml"
    WARREN_STATE_DIR=$SB "$W" apply "$WORK/beta.toml" > /dev/null
    { host alpha; space "src$r" "\"send\", \"sink$r@beta\", \"$COUNT\", \"256\"" "may_send = [\"sink$r@beta\"]"; } > "$WORK/alpha.toml"
    WARREN_STATE_DIR=$SA "$W" apply "$WORK/alpha.toml" > /dev/null
    wait_for "$SB/logs/sink$r.log" DONE 600
    line=$(grep DONE "$SB/logs/sink$r.log")
    case "$line" in *"received=$COUNT repeats=0 gaps=0"*) ;; *) echo "bad run: $line" >&2; exit 1 ;; esac
    secs=${line##*secs=}
    rate=$(awk -v n="$COUNT" -v s="$secs" 'BEGIN { printf "%.0f", (n - 1) / s }')
    echo "warren throughput round=$r msgs_per_s=$rate" | tee -a "$results"

    say "round $r/$ROUNDS: Warren throughput, one message per send ($SINGLE_COUNT messages)"
    { host beta; space echo '"echo"' 'accept_from = ["*@alpha"]';
      space "one$r" "\"recv\", \"$SINGLE_COUNT\", \"200\"" 'accept_from = ["*@alpha"]'; } > "$WORK/beta.toml"
    WARREN_STATE_DIR=$SB "$W" apply "$WORK/beta.toml" > /dev/null
    { host alpha; space "single$r" "\"send\", \"one$r@beta\", \"$SINGLE_COUNT\", \"1\"" "may_send = [\"one$r@beta\"]"; } > "$WORK/alpha.toml"
    WARREN_STATE_DIR=$SA "$W" apply "$WORK/alpha.toml" > /dev/null
    wait_for "$SB/logs/one$r.log" DONE 600
    line=$(grep DONE "$SB/logs/one$r.log")
    case "$line" in *"received=$SINGLE_COUNT repeats=0 gaps=0"*) ;; *) echo "bad run: $line" >&2; exit 1 ;; esac
    secs=${line##*secs=}
    rate=$(awk -v n="$SINGLE_COUNT" -v s="$secs" 'BEGIN { printf "%.0f", (n - 1) / s }')
    echo "warren-single throughput round=$r msgs_per_s=$rate" | tee -a "$results"

    say "round $r/$ROUNDS: bare lapin throughput"
    b=$("$BASE" throughput "$URL" "$COUNT")
    echo "lapin throughput round=$r ${b##* }" | tee -a "$results"

    say "round $r/$ROUNDS: Warren round trip ($RTT_COUNT calls)"
    { host alpha; space "ping$r" "\"ping\", \"echo@beta\", \"$RTT_COUNT\"" 'may_send = ["echo@beta"]'; } > "$WORK/alpha.toml"
    WARREN_STATE_DIR=$SA "$W" apply "$WORK/alpha.toml" > /dev/null
    wait_for "$SA/logs/ping$r.log" "RTT" 600
    l=$(grep RTT "$SA/logs/ping$r.log")
    echo "warren rtt round=$r ${l#RTT }" | tee -a "$results"

    say "round $r/$ROUNDS: bare lapin round trip"
    b=$("$BASE" rtt "$URL" "$RTT_COUNT")
    echo "lapin rtt round=$r ${b#BASE rtt }" | tee -a "$results"
done

echo
echo "Machine: $(nproc) vCPUs, $(uname -r); RabbitMQ $(dpkg-query -W -f='${Version}' rabbitmq-server 2>/dev/null || echo '?') on loopback, classic durable queues"
awk '
    /throughput/ { split($4, a, "="); t[$1] += a[2]; n[$1]++ }
    /rtt/ { for (i = 4; i <= NF; i++) { split($i, a, "="); if (a[1] == "p50_us") p50[$1] += a[2]; if (a[1] == "p99_us") p99[$1] += a[2] } m[$1]++ }
    END {
        wt = t["warren"] / n["warren"]; lt = t["lapin"] / n["lapin"];
        st = t["warren-single"] / n["warren-single"];
        printf "throughput (mean of %d rounds): warren %.0f msg/s, bare lapin %.0f msg/s, ratio %.2f\n", n["warren"], wt, lt, wt / lt;
        printf "throughput, one message per send: warren %.0f msg/s, ratio to bare lapin %.2f\n", st, st / lt;
        printf "round trip p50 (mean): warren %.0f us, bare lapin %.0f us; p99: warren %.0f us, bare lapin %.0f us\n",
            p50["warren"] / m["warren"], p50["lapin"] / m["lapin"], p99["warren"] / m["warren"], p99["lapin"] / m["lapin"];
    }' "$results"
