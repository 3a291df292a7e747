#!/usr/bin/env bash
# Network benchmark (issue 7), everything in ONE run on the same machine:
#   1. whole cycles: `warren run -- /bin/true` with net=none, with a veth (--net auto), and with a
#      veth and a published port, side by side in one hyperfine run (start, run, tear down);
#   2. start-up alone (launch to execve, `applied.launch_us` of `warren run --json`) for the same
#      three, interleaved, and the cost of each network step of a launch (net-claim, net-rules,
#      net-link = the veth pair, net-config = the inside end), medians over RUNS launches;
#   3. TCP throughput and connection set-up latency host -> environment through a published port
#      on 127.0.0.1, against host -> host on 127.0.0.1, with the same server programs (busybox nc
#      and httpd) and the same client (Python) on both paths.
# Prints the tables and ratios; writes them to bench/results/net-<UTC time>.txt.
#
#   bash bench/net.sh
#   RUNS=200 MB=2048 CONNS=2000 bash bench/net.sh
#
# Must run as root. Traffic goes only to 127.0.0.1 and to the address of the environment this
# script starts.
set -euo pipefail

RUNS=${RUNS:-100}
MB=${MB:-1024}
CONNS=${CONNS:-1000}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
results="$here/results"
mkdir -p "$results"
out="$results/net-$(date -u +%Y%m%dT%H%M%SZ).txt"

die() { echo "net.sh: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "run as root"
command -v hyperfine >/dev/null || die "hyperfine is needed (apt-get install hyperfine)"
command -v python3 >/dev/null || die "python3 is needed"
bash "$repo/scripts/setup.sh" >/dev/null

echo "building warren (release)..." >&2
(cd "$repo" && cargo build --release -q -p warren)
warren="$repo/target/x86_64-unknown-linux-musl/release/warren"

work=$(mktemp -d /tmp/warren-netbench.XXXXXX)
chmod 755 "$work"
pids=()     # launchers: a second TERM stops a workload that ignores the first
groups=()   # host-side servers, each in a session of its own
cleanup() {
    for g in "${groups[@]}"; do kill -TERM -- "-$g" 2>/dev/null || true; done
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    sleep 0.2
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT
R="$work/root"
mkdir -p "$R"/{bin,proc,dev,tmp,sys,etc,www}
cp /bin/busybox "$R/bin/busybox"
for a in $("$R/bin/busybox" --list); do [ -e "$R/bin/$a" ] || ln -s busybox "$R/bin/$a"; done
echo ok > "$R/www/index.html"
chmod -R a+rX "$R"
export WARREN_STATE_DIR="$work/state"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Everything below also goes to $out. (Not a `{ ...; } | tee` block: that would run in a
# subshell, and the servers it starts would escape the clean-up's lists.)
exec > >(tee "$out")
echo "# bench/net.sh, $(date -u +%FT%TZ), $(uname -r), $(nproc) cpus"
echo

# --- 1. start-up --------------------------------------------------------------------------------
pub=$(free_port)
hyperfine -N --warmup 5 --runs "$RUNS" --export-json "$work/startup.json" \
    -n none "$warren run --rootfs $R -- /bin/true" \
    -n veth "$warren run --rootfs $R --net auto -- /bin/true" \
    -n veth+publish "$warren run --rootfs $R --net auto -p $pub:80 -- /bin/true" >&2
python3 - "$work/startup.json" <<'EOF'
import json, sys, statistics
r = {x["command"]: x for x in json.load(open(sys.argv[1]))["results"]}
med = {k: statistics.median(v["times"]) * 1000 for k, v in r.items()}
print("## whole cycle: start, run and tear down `warren run -- /bin/true` (ms, median of %d, one hyperfine run)" % len(r["none"]["times"]))
print("| net | median | p95 | vs none |")
print("|---|---|---|---|")
for k in ("none", "veth", "veth+publish"):
    t = sorted(r[k]["times"])
    p95 = t[int(len(t) * 0.95) - 1] * 1000
    print("| %s | %.2f | %.2f | +%.2f ms (x%.2f) |" % (k, med[k], p95, med[k] - med["none"], med[k] / med["none"]))
print()
EOF

# --- 2. start-up to exec, and the network steps of one launch ------------------------------------
# Interleaved: none, veth, veth+publish, none, ... so that load changes hit all three alike.
for _ in $(seq "$RUNS"); do
    "$warren" run --json --rootfs "$R" -- /bin/true | tail -n 1 | sed 's/^/none /'
    "$warren" run --json --rootfs "$R" --net auto -- /bin/true | tail -n 1 | sed 's/^/veth /'
    "$warren" run --json --rootfs "$R" --net auto -p "$pub:80" -- /bin/true | tail -n 1 | sed 's/^/veth+publish /'
done > "$work/steps.txt"
python3 - "$work/steps.txt" <<'EOF'
import json, sys, statistics
runs = {"none": [], "veth": [], "veth+publish": []}
steps = []
for line in open(sys.argv[1]):
    kind, doc = line.split(" ", 1)
    a = json.loads(doc)["applied"]
    runs[kind].append(a["launch_us"])
    if kind == "veth+publish":
        steps.append(a["net"]["setup_us"])
pct = lambda v, p: sorted(v)[max(0, int(len(v) * p) - 1)]
base = statistics.median(runs["none"])
print("## start-up: from launch to the workload's execve (`applied.launch_us`, us, median of %d, interleaved)" % len(runs["none"]))
print("| net | median | p90 | vs none |")
print("|---|---|---|---|")
for k, v in runs.items():
    m = statistics.median(v)
    print("| %s | %d | %d | +%d us (x%.2f) |" % (k, m, pct(v, 0.9), m - base, m / base))
print()
print("## network steps of one launch with a published port (us, median of %d; `applied.net.setup_us`)" % len(steps))
print("| step | median | p90 |")
print("|---|---|---|")
for k, what in (("claim", "net-claim: lease + port reservation"), ("rules", "net-rules: filter elements (one nfnetlink transaction)"),
                ("link", "net-link: veth pair, peer created in the namespace, host end address + route"),
                ("config", "net-config: eth0 up, address, two routes (in the child)")):
    v = [r[k] for r in steps]
    print("| %s | %d | %d |" % (what, statistics.median(v), pct(v, 0.9)))
veth = [r["link"] + r["config"] for r in steps]
print("| **the veth (net-link + net-config)** | **%d** | %d |" % (statistics.median(veth), pct(veth, 0.9)))
print()
EOF

# --- 3. throughput and connection latency ---------------------------------------------------------
web=$(free_port); sink=$(free_port); hweb=$(free_port); hsink=$(free_port)
"$warren" run --name netbench --rootfs "$R" --net auto -p "$web:80" -p "$sink:5001" -- /bin/sh -c \
    'httpd -p 80 -h /www; while :; do nc -l -p 5001 > /dev/null; done' >/dev/null 2>&1 &
pids+=($!)
setsid busybox httpd -f -p "127.0.0.1:$hweb" -h "$R/www" &
groups+=($!)
# busybox nc cannot bind one address: it listens on all, and only 127.0.0.1 is used.
setsid sh -c "while :; do busybox nc -l -p $hsink > /dev/null; done" &
groups+=($!)
python3 - "$MB" "$CONNS" "$web" "$sink" "$hweb" "$hsink" <<'EOF'
import socket, sys, time, statistics
mb, conns = int(sys.argv[1]), int(sys.argv[2])
paths = {"host -> env (published 127.0.0.1 port)": (int(sys.argv[3]), int(sys.argv[4])),
         "host -> host (127.0.0.1)": (int(sys.argv[5]), int(sys.argv[6]))}

def wait_up(port):
    for _ in range(500):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close(); return
        except OSError:
            time.sleep(0.02)
    sys.exit("port %d never came up" % port)

def throughput(port):
    # Send MB MiB, close, wait for the sink to close: bytes delivered over the whole time.
    for _ in range(50):
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=5); break
        except OSError:
            time.sleep(0.05)
    buf = b"\0" * (1 << 20)
    t = time.perf_counter()
    for _ in range(mb):
        s.sendall(buf)
    s.shutdown(socket.SHUT_WR)
    s.settimeout(30)
    while s.recv(65536):
        pass
    dt = time.perf_counter() - t
    s.close()
    time.sleep(0.1)  # let the sink loop start its next nc
    return mb * (1 << 20) * 8 / dt / 1e9

def latency(port):
    conn, req = [], []
    for _ in range(conns):
        t0 = time.perf_counter()
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        t1 = time.perf_counter()
        s.sendall(b"GET /index.html HTTP/1.0\r\n\r\n")
        while s.recv(4096):
            pass
        t2 = time.perf_counter()
        s.close()
        conn.append((t1 - t0) * 1e6); req.append((t2 - t0) * 1e6)
    return statistics.median(conn), statistics.median(req)

res = {}
for name, (web, sink) in paths.items():
    wait_up(web)
    res[name] = (max(throughput(sink) for _ in range(3)), *latency(web))
print("## TCP host -> environment through a published port vs host -> host loopback (same run)")
print("| path | throughput (Gbit/s, best of 3 x %d MiB) | connect (us, median of %d) | connect + HTTP GET (us, median) |" % (mb, conns))
print("|---|---|---|---|")
for name, (tp, c, r) in res.items():
    print("| %s | %.2f | %.0f | %.0f |" % (name, tp, c, r))
env, host = res["host -> env (published 127.0.0.1 port)"], res["host -> host (127.0.0.1)"]
print()
print("ratios env/host: throughput x%.2f, connect x%.2f, connect + GET x%.2f" % (env[0] / host[0], env[1] / host[1], env[2] / host[2]))
EOF
echo "written to $out" >&2
