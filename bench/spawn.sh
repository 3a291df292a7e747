#!/usr/bin/env bash
# Spawn benchmark (issue 16), side by side in one run on one busybox root:
#   1. and 2. latency, in ROUNDS rounds that alternate their order: a block of bwrap
#      --unshare-all starting /bin/true (hyperfine; the median of all its starts is the latency
#      target) and a block of Warren's cycles: a parent environment spawns a child from a
#      template, one after the other, and times spawn -> `Spawned` and spawn -> the child's first
#      message (p50 over all rounds' spawns); the same loop gives whole cycles per second
#      (spawn, one message, the child's `down`). Warren's block runs a template with the init
#      (the default) and one with `init = false`;
#   2b. the same cycle with PAR spawner environments at once (PAR=4 by default, 0 skips it):
#      the sum of their rates, and all their cycles over the time from their start; between
#      two blocks of as many bwrap starts, PAR at a time, for the peer's rate side by side; and
#      the host's CPU time per cycle and per bwrap start;
#   3. memory of live children: the host's used memory (MemTotal - MemAvailable) before and
#      after a parent spawns LIVE idle children, per child, with the init and without; also
#      beyond the workload's own memory (its Pss and page tables), as the issue's target says;
#      and the growth of the kmalloc-1k slab per child, which holds the kernel's per-memory-cgroup
#      shrinker tables, whose size depends on the host's history since boot.
# Writes the JSON lines and a table to bench/results/spawn-STAMP.{jsonl,txt}.
#
#   bash bench/spawn.sh                  # N=200 spawns, LIVE=200 children, RUNS=200 for bwrap
#   N=500 LIVE=1000 bash bench/spawn.sh
#   PAR=8 bash bench/spawn.sh            # eight spawners at once in 2b
#   STATE_FS=disk bash bench/spawn.sh    # the state directory on this host's disk, not a tmpfs
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
# Rounds of the side-by-side latency (bwrap, then Warren, alternating the order): N spawns and
# RUNS bwrap starts in all, split among them.
ROUNDS=${ROUNDS:-5}
# Where the state directory lives: tmpfs (as /run is on a standard host) or disk.
STATE_FS=${STATE_FS:-tmpfs}
case "$STATE_FS" in tmpfs | disk) ;; *) echo "spawn.sh: STATE_FS must be tmpfs or disk" >&2; exit 1 ;; esac
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
state_mounted=
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
    if [ -n "$state_mounted" ]; then umount "$work/state" 2>/dev/null || umount -l "$work/state" || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

# The root: busybox, and the benchmark program at /bin/warren-spawn-bench (a static binary).
R="$work/rootfs"
mkdir -p "$R"/{bin,proc,dev,tmp,sys,etc,root} "$work/state"
# The state directory on a memory file system, as Warren's default (/run/warren) is on a
# standard Linux host, where /run is a tmpfs (on this VM /run is on the ext4 root, where every
# launch's fdatasync of the event log costs about 0.3 ms); STATE_FS=disk keeps it on $work's.
if [ "$STATE_FS" = tmpfs ]; then
    mount -t tmpfs -o size=4g,mode=0711 warren-bench-state "$work/state"
    state_mounted=1
fi
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

# --- Warren's kernel: templates for a messaging child and an idle one, each also without the
# init (`init = false`: the command is pid 1, one process fewer per child) --------------------
cat >"$work/templates.toml" <<TOML
[template.c]
image = "$R"
command = ["/bin/warren-spawn-bench", "child"]
max_instances = 64

[template.c0]
image = "$R"
command = ["/bin/warren-spawn-bench", "child"]
max_instances = 64
init = false

[template.idle]
image = "$R"
command = ["/bin/warren-spawn-bench", "idle"]
max_instances = $((LIVE + 8))
memory = "16M"

[template.idle0]
image = "$R"
command = ["/bin/warren-spawn-bench", "idle"]
max_instances = $((LIVE + 8))
memory = "16M"
init = false
TOML
WARREN_STATE_DIR="$work/state" "$warren" up "$work/templates.toml" >"$work/daemon.log" 2>&1 &
daemon_pid=$!
w() { WARREN_STATE_DIR="$work/state" "$warren" "$@"; }
for _ in $(seq 100); do
    [ -S "$work/state/kernel.sock" ] && break
    kill -0 "$daemon_pid" 2>/dev/null || die "the kernel exited: $(tail -5 "$work/daemon.log")"
    sleep 0.1
done

# Start the environments SPACES (lines of "NAME TEMPLATE N": a `latency TEMPLATE N` parent each)
# with one apply, wait until each printed its result, and append the results to $jsonl with
# the fields of $2 added.
run_parents() {
    local list=$1 extra=$2 name tpl n
    cp "$work/templates.toml" "$work/run.toml"
    while read -r name tpl n; do
        printf '[space.%s]\nimage = "%s"\ncommand = ["/bin/warren-spawn-bench", "latency", "%s", "%d"]\nmay_spawn = ["%s"]\n\n' \
            "$name" "$R" "$tpl" "$n" "$tpl" >>"$work/run.toml"
    done <<<"$list"
    w apply "$work/run.toml" >/dev/null || die "apply of the spawners failed"
    while read -r name tpl n; do
        local line=
        for _ in $(seq 1200); do
            line=$(w logs "$name" 2>/dev/null | grep '"mode":"spawn-latency"' || true)
            [ -n "$line" ] && break
            kill -0 "$daemon_pid" 2>/dev/null || die "the kernel exited: $(tail -5 "$work/daemon.log")"
            sleep 0.1
        done
        [ -n "$line" ] || die "no latency result from $name: $(w logs "$name" | tail -5)"
        echo "$line" | python3 -c 'import json,sys; r=json.loads(sys.stdin.read()); r.update(json.loads(sys.argv[1])); r["template"]=sys.argv[2]; print(json.dumps(r))' "$extra" "$tpl" >>"$jsonl"
    done <<<"$list"
}

# --- 1. and 2. latency, side by side: ROUNDS rounds, each with a block of bwrap starts and a
# block of Warren's cycles with and without the init, in an order that alternates between
# rounds, so that a drift of the host weighs on both ----------------------------------------
per_round=$(( (N + ROUNDS - 1) / ROUNDS ))
bwrap_runs=$(( (RUNS + ROUNDS - 1) / ROUNDS ))
[ "$bwrap_runs" -ge 10 ] || bwrap_runs=10
# The peer's start, the same in the latency rounds (hyperfine) and in the rate blocks (2b).
bwrap_true=(bwrap --unshare-all --die-with-parent --ro-bind "$R" / --proc /proc --dev /dev /bin/true)
bwrap_block() {
    hyperfine -N --warmup 3 --runs "$bwrap_runs" --export-json "$work/bwrap.json" \
        "${bwrap_true[*]}" \
        >/dev/null 2>&1
    python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))["results"][0]; print(json.dumps({"mode":"bwrap-true","round":int(sys.argv[2]),"runs":len(r["times"]),"median_ms":r["median"]*1000,"samples_ms":[t*1000 for t in r["times"]]}))' \
        "$work/bwrap.json" "$1" >>"$jsonl"
}
# One parent at a time: with the init, then without (or the other way in even rounds).
warren_block() {
    if [ $(($1 % 2)) = 1 ]; then
        run_parents "lat$1 c $per_round" "{\"round\":$1}"
        run_parents "lat0x$1 c0 $per_round" "{\"round\":$1}"
    else
        run_parents "lat0x$1 c0 $per_round" "{\"round\":$1}"
        run_parents "lat$1 c $per_round" "{\"round\":$1}"
    fi
}
for r in $(seq "$ROUNDS"); do
    if [ $((r % 2)) = 1 ]; then bwrap_block "$r"; warren_block "$r"; else warren_block "$r"; bwrap_block "$r"; fi
done

# --- 2b. the rate with PAR spawners at once (the same cycle, PAR parents started by one apply),
# between two blocks of bwrap --unshare-all starting /bin/true PAR at a time (xargs -P), the
# same number of starts as Warren's cycles: the peer's rate side by side. Each block also counts
# the host's CPU time (all CPUs, /proc/stat) per cycle or start; on a host with C CPUs, R per
# second needs at most C / R seconds of CPU each.
cpu_ticks() { awk '$1=="cpu"{print $2+$3+$4+$7+$8}' /proc/stat; }
bwrap_rate_block() {
    local t0 t1 c0 c1
    c0=$(cpu_ticks); t0=$(date +%s.%N)
    seq "$((PAR * N))" | xargs -P "$PAR" -I{} "${bwrap_true[@]}" ||
        die "a bwrap start failed in the concurrent block"
    t1=$(date +%s.%N); c1=$(cpu_ticks)
    echo "{\"mode\":\"bwrap-rate-concurrent\",\"streams\":$PAR,\"starts\":$((PAR * N)),\"wall_s\":$(python3 -c "print($t1 - $t0)"),\"cpu_s\":$(python3 -c "print(($c1 - $c0) / $(getconf CLK_TCK))")}" >>"$jsonl"
}
if [ "$PAR" -gt 0 ]; then
    bwrap_rate_block
    list=$(for i in $(seq "$PAR"); do echo "par$i c $N"; done)
    c0=$(cpu_ticks)
    t0=$(date +%s.%N)
    run_parents "$list" '{"concurrent":true}'
    t1=$(date +%s.%N)
    c1=$(cpu_ticks)
    echo "{\"mode\":\"spawn-rate-concurrent\",\"spawners\":$PAR,\"cycles_each\":$N,\"wall_s\":$(python3 -c "print($t1 - $t0)"),\"cpu_s\":$(python3 -c "print(($c1 - $c0) / $(getconf CLK_TCK))")}" >>"$jsonl"
    bwrap_rate_block
fi

# --- 3. memory of LIVE live children of one parent, with the init and without --------------
used_kib() { awk '/^MemTotal:/{t=$2} /^MemAvailable:/{a=$2} END{print t-a}' /proc/meminfo; }
# The kmalloc-1k slab cache, KiB: each memory cgroup keeps there 1 KiB per 64 shrinkers (one per
# superblock) the host has had at once since boot, so a child's share of it depends on the host's
# history as much as on Warren (BENCHMARKS.md, "Spawn", thirteenth session).
# The /proc/meminfo fields that say where used memory went, as a JSON object (KiB).
meminfo_json() {
    awk 'BEGIN{printf "{"} $1 ~ /^(MemFree|Cached|Shmem|SReclaimable|SUnreclaim|AnonPages|PageTables|KernelStack|Percpu|VmallocUsed):$/ {sub(":","",$1); printf "%s\"%s\":%d", (n++?",":""), $1, $2} END{printf "}"}' /proc/meminfo
}
slab_1k_kib() { awk '$1=="kmalloc-1k"{print int($3*$4/1024); f=1} END{if(!f) print 0}' /proc/slabinfo 2>/dev/null || echo 0; }
# Every slab cache's size, KiB, as a JSON object: where the slab part of a child went.
slab_json() { awk 'NR>2{printf "%s\"%s\":%d", (n++?",":"{"), $1, int($3*$4/1024)} END{if(!n) printf "{"; printf "}"}' /proc/slabinfo 2>/dev/null || echo '{}'; }
# Launchers of idle children, executed (`/path/warren run --name idle-N`) or forked by the
# kernel's launch helper (`warren --state-dir DIR run --name idle-N`).
launchers() {
    local p c
    for p in /proc/[0-9]*; do
        c=$({ tr '\0' ' ' <"$p/cmdline"; } 2>/dev/null || true)
        case "$c" in *" run --name idle"*) echo "${p#/proc/}" ;; esac
    done
}
live_block() {
    local tpl=$1
    # A holder of its own per block: a stopped holder's log stays (`warren logs`), and a new
    # one of the same name would find the old one's "ready" line there.
    local holder="holder-$tpl"
    # The holder of the previous block (and its children) is gone: the apply stops it.
    cp "$work/templates.toml" "$work/live.toml"
    w apply "$work/live.toml" >/dev/null || die "apply without a holder failed"
    for _ in $(seq 240); do [ -z "$(launchers)" ] && break; sleep 0.5; done
    # The host frees an ended environment's namespaces asynchronously (the network namespace's
    # cleanup runs in a kernel worker, after RCU grace periods): wait until the used memory stops
    # falling, or the previous block's children would be counted as freed by this one. And
    # empty the slab caches of objects freed by the previous block (their pages would otherwise
    # be reused by this one and make it look cheaper than the first).
    sync
    echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true
    for f in /sys/kernel/slab/*/shrink; do echo 1 >"$f" 2>/dev/null || true; done
    local before after ready= per_child prev slab_before slab_after slabs_before slabs_after mi_before mi_after
    prev=$(used_kib)
    for _ in $(seq 30); do
        sleep 2
        before=$(used_kib)
        [ $((prev - before)) -lt 4096 ] && break
        prev=$before
    done
    slab_before=$(slab_1k_kib)
    slabs_before=$(slab_json)
    mi_before=$(meminfo_json)
    cat >>"$work/live.toml" <<TOML
[space.$holder]
image = "$R"
command = ["/bin/warren-spawn-bench", "live", "$tpl", "$LIVE"]
may_spawn = ["$tpl"]
# Its linked children's cgroups nest under its own, so its pids limit counts their processes
# (an init and the workload each) too.
pids = $((LIVE * 4 + 64))
TOML
    w apply "$work/live.toml" >/dev/null || die "apply of the holder failed"
    for _ in $(seq 1200); do
        ready=$(w logs "$holder" 2>/dev/null | grep '"ready"' || true)
        [ -n "$ready" ] && break
        sleep 0.5
    done
    [ -n "$ready" ] || die "the holder did not spawn its children: $(w logs "$holder" | tail -5)"
    # `Spawned` answers once a child is registered; its launch may still be under way: wait
    # until every child's workload runs.
    local running=0
    for _ in $(seq 600); do
        running=$(pgrep -xc -f "/bin/warren-spawn-bench idle" || true)
        [ "$running" -ge "$LIVE" ] && break
        sleep 0.2
    done
    [ "$running" -ge "$LIVE" ] || die "only $running of $LIVE children run"
    # Each launcher hands its child to the kernel's launch waiter after the child's first
    # second, and ends: measure once they have.
    for _ in $(seq 60); do [ -z "$(launchers)" ] && break; sleep 0.5; done
    sleep 3
    after=$(used_kib)
    slab_after=$(slab_1k_kib)
    slabs_after=$(slab_json)
    mi_after=$(meminfo_json)
    per_child=$(( (after - before) / LIVE ))
    # The same from the processes themselves (less noisy on a shared machine): the proportional
    # set size of every child's launcher and init, and the workload's own memory (its Pss and
    # page tables), which the issue's target leaves out ("beyond its workload").
    local procs
    procs=$(python3 - <<'PY'
import json, os
kinds = {"launcher": [0, 0], "init": [0, 0], "workload": [0, 0]}
pte = 0
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        cmd = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
        if b"run" in cmd and any(a.startswith(b"idle") for a in cmd):
            k = "launcher"
        elif cmd[:2] == [b"/bin/warren-spawn-bench", b"idle"]:
            k = "workload"
        elif len(cmd) > 4 and cmd[1] == b"init" and cmd[3:5] == [b"/bin/warren-spawn-bench", b"idle"]:
            k = "init"
        else:
            continue
        for l in open(f"/proc/{pid}/smaps_rollup"):
            if l.startswith("Pss:"):
                kinds[k][1] += int(l.split()[1])
        if k == "workload":
            for l in open(f"/proc/{pid}/status"):
                if l.startswith("VmPTE:"):
                    pte += int(l.split()[1])
        kinds[k][0] += 1
    except OSError:
        pass
print(json.dumps({"processes": {k: v[0] for k, v in kinds.items()},
                  "pss_kib": {k: v[1] for k, v in kinds.items()}, "workload_pte_kib": pte}))
PY
)
    echo "{\"mode\":\"spawn-live-memory\",\"template\":\"$tpl\",\"children\":$LIVE,\"used_before_kib\":$before,\"used_after_kib\":$after,\"per_child_kib\":$per_child,\"kmalloc_1k_before_kib\":$slab_before,\"kmalloc_1k_after_kib\":$slab_after,\"meminfo_before\":$mi_before,\"meminfo_after\":$mi_after,\"slabs_before_kib\":$slabs_before,\"slabs_after_kib\":$slabs_after,\"procs\":$procs,\"holder\":$ready}" >>"$jsonl"
    # Stop the parent: its linked children go with it (their workloads and launchers, counted
    # from /proc).
    timeout 60 env WARREN_STATE_DIR="$work/state" "$warren" stop -t 1 "$holder" >/dev/null 2>&1 &
    local left
    left_now() { echo $(( $(launchers | wc -l) + $(pgrep -xc -f "/bin/warren-spawn-bench idle" || true) )); }
    left=$(left_now)
    for _ in $(seq 240); do
        left=$(left_now)
        [ "$left" = 0 ] && break
        sleep 0.5
    done
    echo "{\"mode\":\"spawn-cleanup\",\"template\":\"$tpl\",\"children_left_after_parent_stop\":$left}" >>"$jsonl"
    # Whatever is left is stopped by pid (SIGTERM twice: the launcher then kills its workload).
    for p in $(launchers); do kill -TERM "$p" 2>/dev/null || true; done
    sleep 1.5
    for p in $(launchers); do kill -TERM "$p" 2>/dev/null || true; done
}
live_block idle0
live_block idle

# Every launch was measured, from the seal's digest: none walked the tree.
walked=$(grep -c '"digest_source":"walk"' "$work/state/attest/events.jsonl" || true)
measured=$(grep -c '"event":"launch"' "$work/state/attest/events.jsonl" || true)
echo "{\"mode\":\"spawn-measured\",\"launch_records\":$measured,\"walked\":$walked,\"state_fs\":\"$STATE_FS\"}" >>"$jsonl"
[ "$walked" = 0 ] || die "$walked launches walked the root instead of using its seal"

python3 - "$jsonl" >"$table" <<'PY'
import json, os, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
def pick(mode, **kv):
    return [r for r in rows if r["mode"] == mode and all(r.get(k) == v for k, v in kv.items())]
def median(v):
    return statistics.median(v) if v else float("nan")
def pct(v, p):
    v = sorted(v)
    return v[(len(v) - 1) * p // 100] if v else float("nan")
bw = pick("bwrap-true")
rounds = sorted({r["round"] for r in bw})
b_all = [t for r in bw for t in r["samples_ms"]]
b = median(b_all)
print(f"latency: {len(rounds)} rounds, bwrap and Warren alternating; all samples of all rounds")
print(f"bwrap --unshare-all /bin/true, median        {b:8.2f} ms  ({len(b_all)} starts)")
for tpl, what in (("c", "with the init"), ("c0", "init = false")):
    lat = [r for r in pick("spawn-latency", template=tpl) if not r.get("concurrent")]
    first = [t for r in lat for t in r["first_message_samples_ms"]]
    per = [median(r["first_message_samples_ms"]) / median([t for x in bw if x["round"] == r["round"] for t in x["samples_ms"]]) for r in lat]
    print(f"{what}:")
    print(f"  spawn -> Spawned, p50 of rounds' p50       {median([r['spawned_ms']['p50'] for r in lat]):8.2f} ms")
    print(f"  spawn -> first message, p50 / p90          {pct(first, 50):8.2f} / {pct(first, 90):.2f} ms  ({len(first)} spawns)")
    print(f"  ratio p50 / bwrap median                   {pct(first, 50) / b:8.2f}  (rounds: {', '.join(f'{x:.2f}' for x in per)})")
    print(f"  whole cycles (spawn, message, down) per s  {median([r['cycles_per_s'] for r in lat]):8.1f}  (rounds: {', '.join('%.0f' % r['cycles_per_s'] for r in lat)})")
conc = [r for r in pick("spawn-latency") if r.get("concurrent")]
c = pick("spawn-rate-concurrent")
if c:
    c = c[0]
    total = c["spawners"] * c["cycles_each"]
    rate = sum(r['cycles_per_s'] for r in conc)
    print(f"with {c['spawners']} spawners at once, sum of rates    {rate:8.1f}"
          f"  ({total} cycles in {c['wall_s']:.2f} s from the apply: {total / c['wall_s']:.1f}/s)")
    b = pick("bwrap-rate-concurrent")
    if "cpu_s" in c:
        print(f"  host CPU per cycle (from the apply)          {c['cpu_s'] * 1000 / total:8.2f} ms"
              f"  (500/s on {os.cpu_count()} CPUs allows {os.cpu_count() * 1000 / 500:.2f} ms)")
    if b:
        brate = [x["starts"] / x["wall_s"] for x in b]
        print(f"bwrap --unshare-all /bin/true, {b[0]['streams']} at a time  "
              f"{median(brate):8.1f} starts/s  (blocks before and after: {', '.join('%.1f' % r for r in brate)})")
        print(f"  host CPU per start                           {median([x['cpu_s'] * 1000 / x['starts'] for x in b]):8.2f} ms")
        print(f"  Warren's cycles / bwrap's starts, per second {rate / median(brate):8.2f}  (from the apply: {total / c['wall_s'] / median(brate):.2f})")
for m in pick("spawn-live-memory"):
    n = m["children"]
    p = m["procs"]
    work = (p["pss_kib"]["workload"] + p["workload_pte_kib"]) // n
    left = pick("spawn-cleanup", template=m["template"])[0]["children_left_after_parent_stop"]
    print(f"{n} live children of template {m['template']} ({p['processes']['init']} inits):")
    print(f"  host used-memory delta per child           {m['per_child_kib']:8d} KiB")
    print(f"  ... beyond the workload (its Pss + PTEs)    {m['per_child_kib'] - work:8d} KiB  (workload {work} KiB)")
    print(f"  Pss per child: launcher / init / workload  {p['pss_kib']['launcher'] // n:5d} / {p['pss_kib']['init'] // n} / {p['pss_kib']['workload'] // n} KiB")
    if "meminfo_after" in m:
        d = {k: m["meminfo_after"][k] - m["meminfo_before"].get(k, 0) for k in m["meminfo_after"]}
        held = sum(d.get(k, 0) for k in ("SUnreclaim", "AnonPages", "PageTables", "KernelStack", "Percpu"))
        print(f"  unreclaimable slab + anon + page tables + stacks + per-cpu {held // n:5d} KiB per child, "
              f"{held // n - work} beyond the workload (less noisy than the used memory)")
        print("    per child: " + ", ".join(f"{k} {d[k] // n}" for k in sorted(d)) + " KiB")
    if "kmalloc_1k_after_kib" in m:
        print(f"  ... of it kmalloc-1k (mostly shrinker tables){(m['kmalloc_1k_after_kib'] - m['kmalloc_1k_before_kib']) // n:8d} KiB  (grows with the host's peak of superblocks)")
    if "slabs_after_kib" in m:
        sd = sorted(((v - m["slabs_before_kib"].get(k, 0), k) for k, v in m["slabs_after_kib"].items()), reverse=True)
        print("  slab caches that grew most, per child: " + ", ".join(f"{k} {v / n:.1f}" for v, k in sd[:8]) + " KiB")
    print(f"  children left after the parent's stop      {left:8d}")
me = pick("spawn-measured")[0]
print(f"state directory on                           {me.get('state_fs', '?'):>8s}")
print(f"launch records (measured), walked trees      {me['launch_records']:8d}, {me['walked']}")
PY
cat "$table"
