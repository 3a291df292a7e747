#!/usr/bin/env bash
# Spawn benchmark (issue 16), side by side in one run on one busybox root:
#   1. bwrap --unshare-all starting /bin/true (hyperfine; its median is the latency target);
#   2. spawn latency inside Warren: a parent environment spawns a child from a template, one
#      after the other, and times spawn -> `Spawned` and spawn -> the child's first message;
#      the same loop gives whole cycles per second (spawn, one message, the child's `down`);
#   2b. the same cycle with PAR spawner environments at once (PAR=4 by default, 0 skips it):
#      the sum of their rates, and all their cycles over the time from their start;
#   3. memory of live children: the host's used memory (MemTotal - MemAvailable) before and
#      after a parent spawns LIVE idle children, per child.
# Writes the JSON lines and a table to bench/results/spawn-STAMP.{jsonl,txt}.
#
#   bash bench/spawn.sh                  # N=200 spawns, LIVE=200 children, RUNS=200 for bwrap
#   N=500 LIVE=1000 bash bench/spawn.sh
#   PAR=8 bash bench/spawn.sh            # eight spawners at once in 2b
#   PROFILE=debug N=20 LIVE=20 RUNS=20 bash bench/spawn.sh   # try the script on a debug build
#
# Must run as root. Starts its own `warren up` on a private state directory (so it never meets
# another kernel), and stops it (and everything it started) at the end.
set -euo pipefail

N=${N:-200}
LIVE=${LIVE:-200}
# Spawners at once for the concurrent rate (2b), each doing N cycles; 0 skips it.
PAR=${PAR:-4}
RUNS=${RUNS:-200}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
results="$here/results"
die() { echo "spawn.sh: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "run as root (warren creates namespaces and cgroups)"
command -v bwrap >/dev/null || die "bwrap is needed (apt-get install bubblewrap)"
command -v hyperfine >/dev/null || die "hyperfine is needed (apt-get install hyperfine)"

# PROFILE=debug measures the debug build (to try the script out; figures are release's).
profile=${PROFILE:-release}
echo "building ($profile)..." >&2
(cd "$repo" && cargo build --profile "${profile/debug/dev}" -q --locked -p warren -p warren-client -p warren-bench)
bin="$repo/target/x86_64-unknown-linux-musl/$profile"
warren="$bin/warren"

work=$(mktemp -d /tmp/warren-spawn-bench.XXXXXX)
chmod 755 "$work"
daemon_pid=
sealed=
cleanup() {
    if [ -n "$daemon_pid" ]; then
        for n in $(timeout 10 env WARREN_STATE_DIR="$work/state" "$warren" ps -q 2>/dev/null); do
            timeout 10 env WARREN_STATE_DIR="$work/state" "$warren" stop -t 0 "$n" >/dev/null 2>&1 || true
        done
        kill "$daemon_pid" 2>/dev/null || true
        wait "$daemon_pid" 2>/dev/null || true
    fi
    if [ -n "$sealed" ]; then
        WARREN_STATE_DIR="$work/state" "$warren" rootfs unseal "$R" >/dev/null 2>&1 || umount "$R" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

# The root: busybox, and the benchmark program at /bin/warren-spawn-bench (a static binary).
R="$work/rootfs"
mkdir -p "$R"/{bin,proc,dev,tmp,sys,etc,root} "$work/state"
cp /bin/busybox "$R/bin/busybox"
for applet in $("$R/bin/busybox" --list); do
    [ -e "$R/bin/$applet" ] || ln -s busybox "$R/bin/$applet"
done
cp "$bin/warren-spawn-bench" "$R/bin/"
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$R/etc/passwd"
printf 'root:x:0:\n' >"$R/etc/group"
chmod -R a+rX "$R"
# Sealed (`warren rootfs seal`: the root mounted read-only over itself, its digest taken once),
# as a deployment that launches from a directory would: each launch is still measured, from the
# seal's digest, instead of walking the tree (checked at the end: no launch walked).
WARREN_STATE_DIR="$work/state" "$warren" rootfs seal "$R" >/dev/null
sealed=1

mkdir -p "$results"
stamp=$(date -u +%Y%m%dT%H%M%SZ)
jsonl="$results/spawn-$stamp.jsonl"
table="$results/spawn-$stamp.txt"

# --- 1. bwrap ----------------------------------------------------------------------------
hyperfine -N --warmup 10 --runs "$RUNS" --export-json "$work/bwrap.json" \
    "bwrap --unshare-all --die-with-parent --ro-bind $R / --proc /proc --dev /dev /bin/true" \
    >/dev/null 2>&1
bwrap_ms=$(python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))["results"][0]; print(r["median"]*1000)' "$work/bwrap.json")
echo "{\"mode\":\"bwrap-true\",\"runs\":$RUNS,\"median_ms\":$bwrap_ms}" | tee -a "$jsonl"

# --- 2. and 3. Warren: one kernel, templates for a messaging child and an idle one -------
cat >"$work/spaces.toml" <<TOML
[template.c]
image = "$R"
command = ["/bin/warren-spawn-bench", "child"]
max_instances = 64

[template.idle]
image = "$R"
command = ["/bin/warren-spawn-bench", "idle"]
max_instances = $((LIVE + 8))
memory = "16M"

[space.lat]
image = "$R"
command = ["/bin/warren-spawn-bench", "latency", "c", "$N"]
may_spawn = ["c"]
TOML
WARREN_STATE_DIR="$work/state" "$warren" up "$work/spaces.toml" >"$work/daemon.log" 2>&1 &
daemon_pid=$!
w() { WARREN_STATE_DIR="$work/state" "$warren" "$@"; }
for _ in $(seq 600); do
    w logs lat 2>/dev/null | grep -q '"mode":"spawn-latency"' && break
    kill -0 "$daemon_pid" 2>/dev/null || die "the kernel exited: $(tail -5 "$work/daemon.log")"
    sleep 0.5
done
line=$(w logs lat | grep '"mode":"spawn-latency"') || die "no latency result: $(w logs lat | tail -5)"
echo "$line" | tee -a "$jsonl"

# --- 2b. the rate with PAR spawners at once (the same cycle, PAR parents started by one apply)
if [ "$PAR" -gt 0 ]; then
    sed '/^\[space.lat\]/,$d' "$work/spaces.toml" >"$work/par.toml"
    for i in $(seq "$PAR"); do
        printf '[space.par%d]\nimage = "%s"\ncommand = ["/bin/warren-spawn-bench", "latency", "c", "%d"]\nmay_spawn = ["c"]\n\n' \
            "$i" "$R" "$N" >>"$work/par.toml"
    done
    t0=$(date +%s.%N)
    w apply "$work/par.toml" >/dev/null || die "apply of the concurrent spawners failed"
    for _ in $(seq 1200); do
        done_n=0
        for i in $(seq "$PAR"); do
            w logs "par$i" 2>/dev/null | grep -q '"mode":"spawn-latency"' && done_n=$((done_n + 1))
        done
        [ "$done_n" = "$PAR" ] && break
        sleep 0.2
    done
    t1=$(date +%s.%N)
    [ "$done_n" = "$PAR" ] || die "the concurrent spawners did not finish"
    rates=$(for i in $(seq "$PAR"); do w logs "par$i" | grep '"mode":"spawn-latency"'; done |
        python3 -c 'import json,sys; print(",".join(str(json.loads(l)["cycles_per_s"]) for l in sys.stdin))')
    # The sum of the spawners' own rates (each timed over its own N cycles), and the whole: PAR*N
    # cycles over the time from the apply to the last result (which includes starting them).
    echo "{\"mode\":\"spawn-rate-concurrent\",\"spawners\":$PAR,\"cycles_each\":$N,\"rates\":[$rates],\"wall_s\":$(python3 -c "print($t1 - $t0)")}" | tee -a "$jsonl"
fi

used_kib() { awk '/^MemTotal:/{t=$2} /^MemAvailable:/{a=$2} END{print t-a}' /proc/meminfo; }
sync; sleep 2
before=$(used_kib)
# The holder is started by apply (the same templates, which `warren up` declared, and the
# holder instead of the finished latency parent).
sed '/^\[space.lat\]/,$d' "$work/spaces.toml" >"$work/live.toml"
cat >>"$work/live.toml" <<TOML
[space.holder]
image = "$R"
command = ["/bin/warren-spawn-bench", "live", "idle", "$LIVE"]
may_spawn = ["idle"]
# Its linked children's cgroups nest under its own, so its pids limit counts their processes
# (an init and the workload each) too.
pids = $((LIVE * 4 + 64))
TOML
w apply "$work/live.toml" >/dev/null || die "apply of the holder failed"
ready=
for _ in $(seq 1200); do
    ready=$(w logs holder 2>/dev/null | grep '"ready"' || true)
    [ -n "$ready" ] && break
    sleep 0.5
done
[ -n "$ready" ] || die "the holder did not spawn its children: $(w logs holder | tail -5)"
sleep 3
after=$(used_kib)
per_child=$(( (after - before) / LIVE ))
# The same from the processes themselves (less noisy on a shared machine): the proportional set
# size of every child's launcher (`warren run --name idle-N`) and workload (`... idle`).
pss_kib=$(python3 - <<'PY'
import os
total = 0
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        cmd = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
        launcher = b"run" in cmd and any(a.startswith(b"idle-") for a in cmd)
        workload = cmd[:2] == [b"/bin/warren-spawn-bench", b"idle"]
        if launcher or workload:
            for l in open(f"/proc/{pid}/smaps_rollup"):
                if l.startswith("Pss:"):
                    total += int(l.split()[1])
    except OSError:
        pass
print(total)
PY
)
echo "{\"mode\":\"spawn-live-memory\",\"children\":$LIVE,\"used_before_kib\":$before,\"used_after_kib\":$after,\"per_child_kib\":$per_child,\"pss_total_kib\":$pss_kib,\"pss_per_child_kib\":$((pss_kib / LIVE)),\"holder\":$ready}" | tee -a "$jsonl"
# Stop the parent: its linked children go with it. Counted from /proc (`ps` lists a few hundred
# managed environments in one control message, which the current control socket cannot carry).
launchers() {
    local p c
    for p in /proc/[0-9]*; do
        c=$({ tr '\0' ' ' <"$p/cmdline"; } 2>/dev/null || true)
        # Executed (`/path/warren run --name idle-N`) or forked by the kernel's launch helper
        # (`warren --state-dir DIR run --name idle-N`).
        case "$c" in *" run --name idle-"*) echo "${p#/proc/}" ;; esac
    done
}
timeout 60 env WARREN_STATE_DIR="$work/state" "$warren" stop -t 1 holder >/dev/null 2>&1 &
left=$(launchers | wc -l)
for _ in $(seq 240); do
    left=$(launchers | wc -l)
    [ "$left" = 0 ] && break
    sleep 0.5
done
echo "{\"mode\":\"spawn-cleanup\",\"children_left_after_parent_stop\":$left}" | tee -a "$jsonl"
# Whatever is left is stopped by pid (SIGTERM twice: the launcher then kills its workload).
for p in $(launchers); do kill -TERM "$p" 2>/dev/null || true; done
sleep 1.5
for p in $(launchers); do kill -TERM "$p" 2>/dev/null || true; done

# Every launch was measured, from the seal's digest: none walked the tree.
walked=$(grep -c '"digest_source":"walk"' "$work/state/attest/events.jsonl" || true)
measured=$(grep -c '"event":"launch"' "$work/state/attest/events.jsonl" || true)
echo "{\"mode\":\"spawn-measured\",\"launch_records\":$measured,\"walked\":$walked}" | tee -a "$jsonl"
[ "$walked" = 0 ] || die "$walked launches walked the root instead of using its seal"

python3 - "$jsonl" >"$table" <<'PY'
import json, sys
rows = {}
for l in open(sys.argv[1]):
    r = json.loads(l); rows[r["mode"]] = r
b = rows["bwrap-true"]["median_ms"]; s = rows["spawn-latency"]; m = rows["spawn-live-memory"]
print(f"bwrap --unshare-all /bin/true, median        {b:8.2f} ms")
print(f"spawn -> Spawned, p50 / p90                  {s['spawned_ms']['p50']:8.2f} / {s['spawned_ms']['p90']:.2f} ms")
print(f"spawn -> first message, p50 / p90            {s['first_message_ms']['p50']:8.2f} / {s['first_message_ms']['p90']:.2f} ms")
print(f"  ratio p50 / bwrap median                   {s['first_message_ms']['p50'] / b:8.2f}")
print(f"whole cycles (spawn, message, down) per s    {s['cycles_per_s']:8.1f}")
c = rows.get("spawn-rate-concurrent")
if c:
    total = c["spawners"] * c["cycles_each"]
    print(f"  with {c['spawners']} spawners at once, sum of rates  {sum(c['rates']):8.1f}"
          f"  ({total} cycles in {c['wall_s']:.2f} s from the apply: {total / c['wall_s']:.1f}/s)")
print(f"host memory per live child ({m['children']}), used delta   {m['per_child_kib']:8d} KiB")
print(f"  launcher + workload Pss per child           {m['pss_per_child_kib']:8d} KiB")
print(f"children left after the parent's stop        {rows['spawn-cleanup']['children_left_after_parent_stop']:8d}")
print(f"launch records (measured), walked trees      {rows['spawn-measured']['launch_records']:8d}, {rows['spawn-measured']['walked']}")
PY
cat "$table"
