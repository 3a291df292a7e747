#!/usr/bin/env bash
# Scale benchmark (issue 14): a manifest of N environments (default 1,000), each with its
# mailbox, applied to a kernel of its own; every environment sends one message to the next one
# around a ring and receives the one from the previous, then idles. Reports:
#   * time to converge: `warren apply` from start to its answer (the kernel answers once every
#     launcher has said its environment runs), then until every ring message was delivered
#     (the kernel's status shows no queued message and N+ waiting receives gone);
#   * the daemon's memory per environment (RSS after − RSS before, over N);
#   * the kernel round trip (p50/p99, warren-bench's pipelined ping-pong between two host
#     processes registered on the control socket) with only those 2 environments, and again with
#     the N environments running next to them;
#   * what each environment costs the host besides the daemon: its processes (launcher, init,
#     workload) and their memory (PSS), which say whether 10,000 fit (pids, memory);
#   * re-apply (all unchanged) and the time to empty (apply of an empty manifest).
#
#   bash bench/scale.sh               # 1,000 environments
#   COUNT=300 bash bench/scale.sh
#   REGISTERED=1 COUNT=10000 bash bench/scale.sh   # the daemon side alone (scale-registered.py)
#   CPUS=0.5 bash bench/scale.sh      # every environment with `cpus = 0.5`: each is confined to
#                                     # one CPU (its cpuset); reports how many run on each CPU
#
# Settings: COUNT (1000), RTT_ITERS (20000, after 2000 warm-up), BUILD (release|debug:
# release), SKIP_BUILD (1: use the binaries already built), REGISTERED (1: environments registered
# on the control socket, without processes). Must run as root. Uses a private state directory and a busybox root in a temporary
# directory; network use: `cargo build` only.
set -euo pipefail

COUNT=${COUNT:-1000}
RTT_ITERS=${RTT_ITERS:-20000}
BUILD=${BUILD:-release}

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
results="$here/results"
stamp=$(date -u +%Y%m%dT%H%M%SZ)
out="$results/scale-$stamp.txt"
die() { echo "scale.sh: $*" >&2; exit 1; }
say() { echo "== $*" >&2; }
[ "$(id -u)" = 0 ] || die "run as root (environments need namespaces and cgroups)"
command -v busybox >/dev/null || [ -x /bin/busybox ] || die "busybox-static is needed (scripts/setup.sh)"

flag=(--release)
[ "$BUILD" = debug ] && flag=()
[ "${SKIP_BUILD:-0}" = 1 ] || (cd "$repo" && cargo build "${flag[@]}" --locked -q -p warren -p warren-client -p warren-bench)
bin="$repo/target/x86_64-unknown-linux-musl/$BUILD"
warren="$bin/warren"
bench="$bin/warren-ipc-bench"
[ -x "$warren" ] && [ -x "$bench" ] || die "build failed: no $warren or $bench"

work=$(mktemp -d /tmp/warren-scale.XXXXXX)
state="/run/warren-scale-$$"
daemon_pid=""
cleanup() {
    if [ -n "$daemon_pid" ]; then
        WARREN_STATE_DIR="$state" timeout 600 "$warren" apply --timeout 1 "$work/empty.toml" >/dev/null 2>&1 || true
        kill -TERM "$daemon_pid" 2>/dev/null || true
        wait "$daemon_pid" 2>/dev/null || true
    fi
    rm -rf "$work" "$state"
}
trap cleanup EXIT

root="$work/root"
mkdir -p "$root"/{bin,etc,proc,dev,tmp,sys}
cp /bin/busybox "$root/bin/"
for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -s busybox "$root/bin/$a"; done
echo 'root:x:0:0:root:/:/bin/sh' > "$root/etc/passwd"
echo 'root:x:0:' > "$root/etc/group"
: > "$work/empty.toml"

python3 - "$COUNT" "$root" "${CPUS:-}" > "$work/spaces.toml" <<'PY'
import sys
n, root, cpus = int(sys.argv[1]), sys.argv[2], sys.argv[3]
limit = f"cpus = {cpus}\n" if cpus else ""
for i in range(n):
    nxt = f"e{(i + 1) % n}"
    print(f'[space.e{i}]\nimage = "{root}"\nmay_send = ["{nxt}"]\nmemory = "16M"\n{limit}'
          f'command = ["/bin/sh", "-c", "warren-msg send {nxt} hello-{i} >/dev/null && '
          f'warren-msg recv --timeout 600000 >/dev/null && exec sleep 100000"]\n')
PY

status() { # the kernel's status document (tagged control framing: one '.' packet)
    python3 - "$state/kernel.sock" <<'PY'
import socket, sys, json
s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
s.connect(sys.argv[1])
s.send(b'.' + json.dumps({"op": "status"}).encode())
doc = b''
while True:
    p = s.recv(65536)
    doc += p[1:]
    if p[:1] == b'.':
        break
print(json.dumps(json.loads(doc)["status"]))
PY
}
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$daemon_pid/status"; }
now_ms() { date +%s%3N; }

say "kernel on $state"
# Two descriptors per registered environment in the kernel and in the driver.
if [ "${REGISTERED:-0}" = 1 ]; then
    need=$(( COUNT * 2 + 512 ))
    [ "$(ulimit -Hn)" = unlimited ] || [ "$(ulimit -Hn)" -ge "$need" ] ||
        die "COUNT=$COUNT needs $need descriptors; the hard limit is $(ulimit -Hn) (raise it, e.g. LimitNOFILE)"
    ulimit -n "$need"
fi
WARREN_STATE_DIR="$state" setpriv --pdeathsig KILL -- "$warren" daemon > "$work/daemon.log" 2>&1 &
daemon_pid=$!
for _ in $(seq 100); do grep -q "kernel ready" "$work/daemon.log" && break; sleep 0.1; done
grep -q "kernel ready" "$work/daemon.log" || die "the kernel did not start: $(cat "$work/daemon.log")"

if [ "${REGISTERED:-0}" = 1 ]; then
    # The daemon side alone: COUNT registered environments without processes
    # (bench/scale-registered.py), past what the host's pids and memory allow launchers for.
    say "registering $COUNT environments"
    {
        echo "scale benchmark (registered, no processes), $COUNT environments, $BUILD build, $(date -u +%FT%TZ), $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
        echo "| measure | value |"
        echo "|---|---|"
        python3 "$here/scale-registered.py" "$state" "$daemon_pid" "$warren" "$COUNT"
    } > "$work/registered.txt" || die "registered run failed: $(cat "$work/registered.txt")"
    mkdir -p "$results"
    tee "$out" < "$work/registered.txt"
    exit 0
fi

rtt() { # LABEL
    local tag="$1-$$"
    "$bench" warren-server --style pipelined --peer "sc-cli-$tag" --register "sc-srv-$tag" \
        --may-send "sc-cli-$tag" --state-dir "$state" &
    local srv=$!
    "$bench" warren-client-pingpong --style pipelined --target "sc-srv-$tag" \
        --iters "$RTT_ITERS" --warmup 2000 --round 1 --register "sc-cli-$tag" \
        --may-send "sc-srv-$tag" --state-dir "$state" > "$work/rtt-$1.json"
    wait "$srv"
    python3 -c 'import json,sys; r=json.loads(open(sys.argv[1]).read().splitlines()[-1]); print("p50 %.1f us, p99 %.1f us" % (r["p50_us"], r["p99_us"]))' "$work/rtt-$1.json"
}

say "round trip with 2 environments"
rtt_small=$(rtt small)
rss0=$(rss_kib)

say "applying $COUNT environments"
t0=$(now_ms)
WARREN_STATE_DIR="$state" timeout 3600 "$warren" apply "$work/spaces.toml" > "$work/apply.txt" || die "apply failed: $(tail -5 "$work/apply.txt")"
t1=$(now_ms)
created=$(grep -c ' created$' "$work/apply.txt" || true)
[ "$created" = "$COUNT" ] || die "apply created $created of $COUNT"
# Every ring message delivered: nothing queued, no receive waiting.
for _ in $(seq 6000); do
    s=$(status)
    q=$(echo "$s" | python3 -c 'import json,sys; s=json.load(sys.stdin); print(s["queued"] + s["waiting_recvs"])')
    [ "$q" = 0 ] && break
    sleep 0.1
done
t2=$(now_ms)
[ "$q" = 0 ] || die "messages still queued or receives waiting: $s"
sleep 2
rss1=$(rss_kib)
# What each environment costs the host besides the daemon: every process below the kernel (the
# launchers it started, their inits and workloads), counted and their proportional set sizes
# (shared pages split among the processes sharing them) summed.
read -r procs pss_kib < <(python3 - "$daemon_pid" <<'PY'
import os, sys
root = int(sys.argv[1])
children = {}
for d in os.listdir("/proc"):
    if not d.isdigit():
        continue
    try:
        stat = open(f"/proc/{d}/stat").read()
    except OSError:
        continue
    ppid = int(stat.rsplit(")", 1)[1].split()[1])
    children.setdefault(ppid, []).append(int(d))
todo, procs, pss = list(children.get(root, [])), 0, 0
while todo:
    p = todo.pop()
    todo.extend(children.get(p, []))
    try:
        for line in open(f"/proc/{p}/smaps_rollup"):
            if line.startswith("Pss:"):
                pss += int(line.split()[1])
        procs += 1
    except OSError:
        pass
print(procs, pss)
PY
)
listed=$(WARREN_STATE_DIR="$state" "$warren" ps -a -q | wc -l)
[ "$listed" = "$COUNT" ] || die "ps -a lists $listed of $COUNT"
# With CPUS: the CPUs each workload may run on (its affinity, as the kernel enforces it), counted
# by CPU list; every workload must be confined to fewer CPUs than the host has.
spread=
if [ -n "${CPUS:-}" ]; then
    spread=$(python3 - "$(nproc)" "$COUNT" <<'PY'
import collections, os, sys
host, want = int(sys.argv[1]), int(sys.argv[2])
def size(cpu_list):  # "0-2,5" -> 4
    n = 0
    for r in cpu_list.split(","):
        a, _, b = r.partition("-")
        n += int(b or a) - int(a) + 1
    return n
counts = collections.Counter()
for d in filter(str.isdigit, os.listdir("/proc")):
    try:
        if open(f"/proc/{d}/cmdline", "rb").read().split(b"\0")[:2] != [b"sleep", b"100000"]:
            continue
        allowed = [l.split()[1] for l in open(f"/proc/{d}/status") if l.startswith("Cpus_allowed_list:")][0]
    except (OSError, IndexError):
        continue
    counts[allowed] += 1
n = sum(counts.values())
print(f"{n} workloads; " + ", ".join(f"CPU {k}: {v}" for k, v in sorted(counts.items())))
# Every workload found, and none allowed on every CPU of the host.
sys.exit(0 if n == want and all(size(k) < host for k in counts) else 1)
PY
) || die "workloads not all confined: $spread"
fi

say "round trip with $COUNT environments running"
rtt_big=$(rtt big)

say "re-apply (unchanged) and empty"
t3=$(now_ms)
WARREN_STATE_DIR="$state" "$warren" apply "$work/spaces.toml" | tail -1 > "$work/reapply.txt"
t4=$(now_ms)
grep -q "0 changed, $COUNT unchanged" "$work/reapply.txt" || die "re-apply: $(cat "$work/reapply.txt")"
WARREN_STATE_DIR="$state" "$warren" apply --timeout 2 "$work/empty.toml" | tail -1 > /dev/null
t5=$(now_ms)
left=$(WARREN_STATE_DIR="$state" "$warren" ps -a -q | wc -l)
[ "$left" = 0 ] || die "ps -a lists $left after the empty apply"

mkdir -p "$results"
{
    echo "scale benchmark, $COUNT environments, $BUILD build, $(date -u +%FT%TZ), $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "| measure | value |"
    echo "|---|---|"
    echo "| apply $COUNT environments (answer: all running) | $(( (t1 - t0) )) ms |"
    echo "| ... until every ring message was delivered | $(( (t2 - t0) )) ms |"
    echo "| daemon RSS before / after | $((rss0 / 1024)) MiB / $((rss1 / 1024)) MiB |"
    echo "| daemon memory per environment | $(( (rss1 - rss0) * 1024 / COUNT )) bytes |"
    echo "| host processes per environment (launcher, init, workload) | $(python3 -c "print(round($procs / $COUNT, 2))") ($procs in all; pid_max $(cat /proc/sys/kernel/pid_max)) |"
    echo "| host memory per environment (PSS of those processes) | $(( pss_kib / COUNT )) KiB ($(( pss_kib / 1024 )) MiB in all) |"
    [ -z "$spread" ] || echo "| workloads' CPUs with cpus = $CPUS | $spread |"
    echo "| kernel round trip, 2 environments | $rtt_small |"
    echo "| kernel round trip, $COUNT environments running | $rtt_big |"
    echo "| re-apply, all unchanged | $(( t4 - t3 )) ms |"
    echo "| apply an empty manifest (stop all) | $(( t5 - t4 )) ms |"
} | tee "$out"
