#!/usr/bin/env bash
# Client benchmark (issue 17): the C library (libwarren) and the Python package against the
# Rust client, side by side in ONE run on one kernel, every process inside an environment:
#
#   * round trip of a 64-byte message, p50/p99, each language talking to a server in the same
#     language, two styles: `pipelined` (send and the next receive in one packet per side:
#     Rust send_and_recv, C warren_send_recv, Python send_recv) and `call` (a one-shot reply
#     capability and a correlation id: Rust call, C warren_call, Python call; the server
#     answers through the reply handle and drops it);
#   * one-way throughput with batch frames: 64-byte messages, frames of 512 bodies with 8 in
#     flight (Rust send_many, C warren_submit_send_batch), received up to 4096 at a time
#     (Rust recv_many, C warren_recv_batch, Python recv_many, the last fed by the Rust sender),
#     counted by the receiver from the first arrival to the last.
#
#   bash bench/clients.sh                      # 3 interleaved rounds
#   ROUNDS=5 RTT_ITERS=20000 bash bench/clients.sh
#
# Settings: ROUNDS (3), RTT_ITERS (10000 timed round trips, after RTT_WARMUP=1000), COUNT
# (4000000 messages per throughput run; Python's receiver 2000000), TESTS (rtt,thru: which
# measurements), CPU (0: the daemon and every
# environment pinned to this CPU with taskset; empty = unpinned). Prints a table of medians
# over the rounds and the ratios the issue sets targets for; raw records go to
# bench/results/clients-STAMP.jsonl. Must run as root; starts its own `warren daemon` on a
# private state directory and stops it at the end.
set -euo pipefail

ROUNDS=${ROUNDS:-3}
RTT_ITERS=${RTT_ITERS:-10000}
RTT_WARMUP=${RTT_WARMUP:-1000}
COUNT=${COUNT:-4000000}
PY_COUNT=${PY_COUNT:-2000000}
CPU=${CPU-0}
TESTS=${TESTS:-rtt,thru}

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
stamp=$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$here/results"
out="$here/results/clients-$stamp.jsonl"
die() { echo "clients.sh: $*" >&2; exit 1; }
say() { echo "== $*" >&2; }
[ "$(id -u)" = 0 ] || die "run as root"

say "building (release): warren, warren-ipc-bench, libwarren"
(cd "$repo" && cargo build --release --locked -q -p warren -p warren-bench -p warren-client)
(cd "$repo" && cargo build --release --locked -q -p warren-capi --example rust_echo)
PROFILE=release OUT="$repo/target/warren-c-release" bash "$repo/clients/c/build.sh"
bin="$repo/target/x86_64-unknown-linux-musl/release"
lib="$repo/target/warren-c-release/lib"
work=$(mktemp -d /var/tmp/warren-clients-bench.XXXXXX)
chmod 0755 "$work"
state="/run/warren-clients-bench-$$"
daemon=""
cleanup() {
  set +e
  [ -n "$daemon" ] && kill "$daemon" 2>/dev/null && wait "$daemon" 2>/dev/null
  rm -rf "$work" "$state"
}
trap cleanup EXIT
cc -std=gnu99 -O2 -Wall -Wextra -Werror -I"$repo/target/warren-c-release/include" -o "$work/cbench" \
  "$repo/clients/c/bench/bench.c" -L"$lib" -lwarren -Wl,-rpath,"$lib"
bash "$repo/clients/python/make-root.sh" "$work/pyroot" >/dev/null 2>&1
cp "$repo/clients/python/bench/bench.py" "$work/pyroot/opt/bench.py"

pin=()
[ -n "$CPU" ] && pin=(taskset -c "$CPU")
mkdir -p "$state"
"${pin[@]}" setpriv --pdeathsig KILL -- "$bin/warren" --state-dir "$state" daemon \
  --audit-log /dev/null </dev/null 2>"$work/daemon.log" &
daemon=$!
for _ in $(seq 200); do [ -S "$state/kernel.sock" ] && break; sleep 0.05; done
[ -S "$state/kernel.sock" ] || die "no kernel came up: $(cat "$work/daemon.log")"

n=0
W() { # NAME [run options] -- CMD...
  local name=$1
  shift
  "${pin[@]}" timeout 600 "$bin/warren" --state-dir "$state" run --name "$name" "$@"
}
rec() { # a record line, tagged with the round and placement
  python3 -c 'import json,sys
for line in sys.stdin:
    line=line.strip()
    if line.startswith("{"):
        r=json.loads(line); r["round"]=int(sys.argv[1]); r["placement"]=sys.argv[2] or "unpinned"; print(json.dumps(r))' "$1" "${CPU:+pinned}" | tee -a "$out"
}
RB=(--binary "$bin/warren-ipc-bench" -- "$bin/warren-ipc-bench")
CB=(--binary "$work/cbench" -- "$work/cbench")
PB=(--rootfs "$work/pyroot" -- /usr/bin/python3 /opt/bench.py)

rtt() { # LANG STYLE ROUND
  local lang=$1 style=$2 round=$3 s c spid
  n=$((n + 1)); s="b-srv-$n"; c="b-cli-$n"
  case "$lang/$style" in
    rust/pipelined) W "$s" --may-send "$c" "${RB[@]}" warren-server --style pipelined --peer "$c" &
      spid=$!
      W "$c" --may-send "$s" "${RB[@]}" warren-client-pingpong --style pipelined --target "$s" \
        --iters "$RTT_ITERS" --warmup "$RTT_WARMUP" | sed 's/"system":"warren"/"system":"rust"/' | rec "$round" ;;
    # The Rust call server is the rust_echo example: one send through the reply handle, which
    # the kernel then removes (warren-ipc-bench's server still drops it afterwards).
    rust/call) W "$s" --binary "$bin/examples/rust_echo" -- "$bin/examples/rust_echo" &
      spid=$!
      W "$c" --may-send "$s" "${RB[@]}" warren-client-pingpong --style call --target "$s" \
        --iters "$RTT_ITERS" --warmup "$RTT_WARMUP" | sed 's/"system":"warren"/"system":"rust"/' | rec "$round" ;;
    c/pipelined) W "$s" --may-send "$c" "${CB[@]}" server "$c" &
      spid=$!
      W "$c" --may-send "$s" "${CB[@]}" ping "$s" "$RTT_ITERS" "$RTT_WARMUP" | rec "$round" ;;
    c/call) W "$s" "${CB[@]}" call-server &
      spid=$!
      W "$c" --may-send "$s" "${CB[@]}" call "$s" "$RTT_ITERS" "$RTT_WARMUP" | rec "$round" ;;
    python/pipelined) W "$s" --may-send "$c" "${PB[@]}" server "$c" &
      spid=$!
      W "$c" --may-send "$s" "${PB[@]}" ping "$s" "$RTT_ITERS" "$RTT_WARMUP" | rec "$round" ;;
    python/call) W "$s" "${PB[@]}" call-server &
      spid=$!
      W "$c" --may-send "$s" "${PB[@]}" call "$s" "$RTT_ITERS" "$RTT_WARMUP" | rec "$round" ;;
  esac
  wait "$spid"
}

thru() { # LANG ROUND
  local lang=$1 round=$2 r s count=$COUNT rpid
  n=$((n + 1)); r="b-rcv-$n"; s="b-snd-$n"
  case "$lang" in
    rust) W "$r" --mailbox-capacity 4096 "${RB[@]}" warren-client-receive --count "$count" --batch 512 \
        --recv-max 4096 | sed 's/"system":"warren"/"system":"rust"/' | rec "$round" &
      rpid=$! ;;
    c) W "$r" --mailbox-capacity 4096 "${CB[@]}" recv "$count" 4096 | rec "$round" &
      rpid=$! ;;
    python) count=$PY_COUNT
      W "$r" --mailbox-capacity 4096 "${PB[@]}" recv "$count" 4096 | rec "$round" &
      rpid=$! ;;
  esac
  sleep 0.3
  if [ "$lang" = c ]; then
    W "$s" --may-send "$r" "${CB[@]}" send "$r" "$count" 512 >/dev/null
  else
    W "$s" --may-send "$r" "${RB[@]}" warren-client-send --target "$r" --count "$count" --batch 512 >/dev/null
  fi
  wait "$rpid"
}

for round in $(seq "$ROUNDS"); do
  say "round $round of $ROUNDS"
  if [[ ,$TESTS, == *,rtt,* ]]; then
    for lang in rust c python; do rtt "$lang" pipelined "$round"; done
    for lang in rust c python; do rtt "$lang" call "$round"; done
  fi
  if [[ ,$TESTS, == *,thru,* ]]; then
    for lang in rust c python; do thru "$lang" "$round"; done
  fi
done

say "medians over $ROUNDS rounds (raw: $out)"
python3 - "$out" <<'PY'
import json, statistics, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
def med(system, test, variant, key):
    v = [r[key] for r in recs if r["system"] == system and r["test"] == test and r["variant"].startswith(variant)]
    return statistics.median(v) if v else float("nan")
print("| measurement | Rust | C | Python | C / Rust | Python / Rust |")
print("|---|---:|---:|---:|---:|---:|")
for style in ("pipelined", "call"):
    for key, label in (("p50_us", "p50"), ("p99_us", "p99")):
        r, c, p = (med(s, "rtt", style, key) for s in ("rust", "c", "python"))
        print(f"| round trip, {style}, {label} (µs) | {r:.1f} | {c:.1f} | {p:.1f} | {c / r:.2f} | {p / r:.2f} |")
r, c, p = (med(s, "throughput", "", "msgs_per_s") / 1e6 for s in ("rust", "c", "python"))
print(f"| batch throughput received (M msg/s) | {r:.2f} | {c:.2f} | {p:.2f} | {c / r:.2f} | {p / r:.2f} |")
rp, cp, pp = (med(s, "rtt", "pipelined", "p50_us") for s in ("rust", "c", "python"))
print()
print(f"targets: C round trip p50 <= 1.1x Rust: {cp / rp:.2f} {'met' if cp / rp <= 1.1 else 'NOT met'}; "
      f"C batch throughput >= 0.9x Rust: {c / r:.2f} {'met' if c / r >= 0.9 else 'NOT met'}; "
      f"Python round trip p50 <= 2x Rust: {pp / rp:.2f} {'met' if pp / rp <= 2 else 'NOT met'}; "
      f"Python RecvBatch >= 1 M msg/s: {p:.2f} M {'met' if p >= 1 else 'NOT met'}")
PY
