#!/usr/bin/env bash
# Start-up benchmark: Warren against bwrap and crun on the same roots, in ONE interleaved run
# (bench/interleave.c: each round starts every command once, in an order drawn afresh for the
# round, so that load drifting on a shared machine hits all commands alike and no command always
# follows the same one and inherits its teardown; ORDER=alternate for the fixed order reversed
# every other round, which earlier tables used), each
# starting /bin/true in a fresh isolated environment, measurement on. Two roots: a 400-entry
# busybox root, and the Debian bookworm root of scripts/debian-root.sh (22,000 entries, ~1 GiB).
# Warren starts each both from `--rootfs` (sealed with `warren rootfs seal`, so the launch checks
# the seal instead of walking the tree) and from `--image` (imported into the store, whose digest
# the launch reuses). Prints medians, p95 and the ratios warren/bwrap and warren/crun per root;
# writes the times (JSON, in hyperfine's export shape) and the table to bench/results/.
#
#   bash bench/startup.sh               # 200 rounds after 10 warm-up rounds
#   RUNS=500 bash bench/startup.sh
#   DEBIAN=0 bash bench/startup.sh      # the busybox root only
#   SEED=42 bash bench/startup.sh       # the rounds' orders of an earlier run (the table prints
#                                       # the seed; default: the clock)
#
# Warren uses its own state directory, $WARREN_BENCH_STATE (default
# /var/cache/warren-test/bench-state, on disk like /run here), which keeps the imported images
# between runs; the OCI layout of the Debian root is cached next to it.
#
# Must run as root (Warren, crun and the cgroup workaround need it). Uses no network apart from
# `cargo build` and, only when a tool is missing, `apt-get`.
#
# crun 1.8.1 refuses this kind of host ("cgroups in hybrid mode not supported") when a cgroup2
# mount sits next to the v1 controllers. So the whole measurement happens in a private mount
# namespace in which /sys/fs/cgroup/unified is unmounted; the host is not changed. Warren and
# bwrap run in that same namespace, so all commands are measured side by side under the same
# conditions. (On a host without a cgroup2 mount there is nothing to hide.)
set -euo pipefail

RUNS=${RUNS:-200}
ORDER=${ORDER:-shuffled}
SEED=${SEED:-$(date +%s)}
case "$ORDER" in
    shuffled) order_flags="-r $SEED" order_text="in an order of its own (bench/interleave.c -r $SEED)" ;;
    alternate) order_flags="" order_text="in turn, the order reversed every other round (bench/interleave.c)" ;;
    *) echo "startup.sh: ORDER must be shuffled or alternate, not $ORDER" >&2; exit 2 ;;
esac
DEBIAN=${DEBIAN:-1}
STATE=${WARREN_BENCH_STATE:-/var/cache/warren-test/bench-state}
# Warm-up runs of the spaced hyperfine run (the interleaved run always warms up for 10 rounds).
WARMUP=${WARMUP:-10}
# A second, separate hyperfine run with a 50 ms pause before every start (0 to skip): the cost of
# one start on an otherwise quiet machine, which back-to-back runs partly hide (see BENCHMARKS.md).
SPACED_RUNS=${SPACED_RUNS:-30}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
results="$here/results"

die() { echo "startup.sh: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "run as root (warren and crun create namespaces and cgroups)"

# --- 0. tools -------------------------------------------------------------------------------
missing=()
command -v bwrap >/dev/null || missing+=(bubblewrap)
command -v crun >/dev/null || missing+=(crun)
command -v hyperfine >/dev/null || missing+=(hyperfine)
command -v python3 >/dev/null || missing+=(python3)
command -v cc >/dev/null || missing+=(gcc)
{ [ -x /bin/busybox ] && /bin/busybox --list >/dev/null 2>&1 \
    && ! LC_ALL=C ldd /bin/busybox >/dev/null 2>&1; } || missing+=(busybox-static)
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing: ${missing[*]}" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# --- 1. build Warren ------------------------------------------------------------------------
echo "building warren (release)..." >&2
(cd "$repo" && cargo build --release -q -p warren)
warren="$repo/target/x86_64-unknown-linux-musl/release/warren"
[ -x "$warren" ] || die "no $warren after the build"

# --- 2. the busybox rootfs and the crun bundle ------------------------------------------------
work=$(mktemp -d /tmp/warren-bench.XXXXXX)
cleanup() {
    crun delete -f "$crun_id" >/dev/null 2>&1 || true
    rm -rf "$work"
}
crun_id="warren-bench-$$"
trap cleanup EXIT
# The sandboxes' root users are unprivileged host uids: they must be able to search the path.
chmod 755 "$work"
interleave="$work/interleave"
cc -O2 -o "$interleave" "$here/interleave.c" || die "cannot compile bench/interleave.c"
R="$work/rootfs"
B="$work/bundle"
mkdir -p "$R"/{bin,proc,dev,tmp,sys,etc,root} "$B"
cp /bin/busybox "$R/bin/busybox"
for applet in $("$R/bin/busybox" --list); do
    [ -e "$R/bin/$applet" ] || ln -s busybox "$R/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$R/etc/passwd"
printf 'root:x:0:\n' >"$R/etc/group"
chmod -R a+rX "$R"

# An OCI config as close as crun allows to what Warren does: the same seven namespaces, root
# mapped to an unprivileged host range, a read-only root, no capabilities, no_new_privs, /proc
# with the usual masked and read-only paths, a tmpfs /dev and /tmp, cgroups (crun's cgroupfs
# manager creates them in every v1 hierarchy) with a device deny-all rule as `runc spec` writes.
python3 - "$R" "$B/config.json" <<'EOF'
import json, sys
root, out = sys.argv[1], sys.argv[2]
empty_caps = {k: [] for k in ("bounding", "effective", "inheritable", "permitted", "ambient")}
config = {
    "ociVersion": "1.0.2",
    "process": {
        "terminal": False,
        "user": {"uid": 0, "gid": 0},
        "args": ["/bin/true"],
        "env": ["PATH=/bin", "HOME=/"],
        "cwd": "/",
        "capabilities": empty_caps,
        "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
        "noNewPrivileges": True,
    },
    "root": {"path": root, "readonly": True},
    "hostname": "bench",
    "mounts": [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
         "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
        {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "nodev", "mode=1777", "size=16m"]},
    ],
    "linux": {
        "uidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}],
        "gidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}],
        "namespaces": [{"type": t} for t in
                       ("pid", "ipc", "uts", "mount", "network", "user", "cgroup")],
        "resources": {"devices": [{"allow": False, "access": "rwm"}]},
        "maskedPaths": ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
                        "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
                        "/proc/sched_debug", "/proc/scsi", "/sys/firmware"],
        "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys",
                          "/proc/sysrq-trigger"],
    },
}
with open(out, "w") as f:
    json.dump(config, f, indent=1)
EOF

# --- 2b. the Debian root, its crun bundle, and both roots imported as images -----------------
# An OCI layout (one uncompressed layer) of a directory, written once to $2.
make_layout() {
    [ -f "$2/index.json" ] && return 0
    rm -rf "$2"
    bash "$repo/scripts/oci-layout.sh" "$1" "$2"
}

export WARREN_STATE_DIR="$STATE"
mkdir -p "$STATE"
chmod 755 "$STATE"
make_layout "$R" "$work/busybox-oci"
"$warren" image import -q --name bench/busybox "$work/busybox-oci"
D=""
if [ "$DEBIAN" = 1 ]; then
    D=$(bash "$repo/scripts/debian-root.sh")
    # The environment's root user is an unprivileged host uid: it must be able to enter the root.
    chmod go+rx "$D"
    DB="$work/bundle-debian"
    mkdir -p "$DB"
    python3 - "$B/config.json" "$D" "$DB/config.json" <<'PYEOF'
import json, sys
c = json.load(open(sys.argv[1]))
c["root"]["path"] = sys.argv[2]
json.dump(c, open(sys.argv[3], "w"), indent=1)
PYEOF
    layout="$(dirname "$D")/$(basename "$D")-oci"
    echo "importing the Debian root as an image (once per state directory)..." >&2
    make_layout "$D" "$layout"
    "$warren" image import -q --allow-setuid --name bench/debian "$layout"
fi

# --- 3. the measurement, in a private mount namespace with the cgroup2 mount hidden ---------
mkdir -p "$results"
stamp=$(date -u +%Y%m%dT%H%M%SZ)
json="$results/startup-$stamp.json"
spaced_json="$results/startup-$stamp-spaced.json"
table="$results/startup-$stamp.txt"

# Wait (up to 60 s) for the machine to be nearly idle: it is shared, and contention shows up
# directly in start-up times. Busy share of all CPUs over one second, from /proc/stat.
busy_pct() {
    read -r _ a1 a2 a3 a4 a5 a6 a7 a8 _ < /proc/stat; sleep 1
    read -r _ b1 b2 b3 b4 b5 b6 b7 b8 _ < /proc/stat
    local idle=$(( (b4 + b5) - (a4 + a5) ))
    local total=$(( (b1+b2+b3+b4+b5+b6+b7+b8) - (a1+a2+a3+a4+a5+a6+a7+a8) ))
    echo $(( total > 0 ? 100 * (total - idle) / total : 0 ))
}
for _ in $(seq 60); do
    b=$(busy_pct)
    [ "$b" -lt 10 ] && break
    echo "waiting for the machine to go idle (busy ${b}%)..." >&2
done
echo "machine busy ${b}% before the run" >&2

# Everything below runs in the private mount namespace. The variables it needs are exported.
export R B D DB warren crun_id json spaced_json RUNS WARMUP SPACED_RUNS interleave order_flags
unshare --mount --propagation private bash -euo pipefail -c '
    if mountpoint -q /sys/fs/cgroup/unified; then umount /sys/fs/cgroup/unified; fi
    log="$WARREN_STATE_DIR/attest/events.jsonl"
    before=$( (cat "$log" 2>/dev/null || true) | wc -l)
    # Seal the roots for --rootfs, in this namespace only: the read-only mounts end with it.
    "$warren" rootfs seal "$R"
    if [ -n "$D" ]; then "$warren" rootfs seal "$D"; fi
    # Check every command once: each must exit 0 (the measurement stops at a failure), and
    # each warren launch must have taken its digest from the seal or the store.
    "$warren" run --rootfs "$R" -- /bin/true
    "$warren" run --rootfs "$R" --memory 64M --pids 64 --cpus 0.5 -- /bin/true
    "$warren" run --rootfs "$R" -- /bin/sh -c "test \$(id -u) = 0 && grep -q \"^Seccomp:.2\" /proc/self/status"
    "$warren" run --image bench/busybox
    bwrap --unshare-all --ro-bind "$R" / --proc /proc --dev /dev /bin/true
    crun run --bundle "$B" "$crun_id"
    # crun removes a container that `crun run` started once it exits: the same id is reusable.
    crun run --bundle "$B" "$crun_id"
    "$R/bin/busybox" true
    cmds=(
        -n "floor: busybox true" "$R/bin/busybox true"
        -n "warren run --rootfs busybox" "$warren run --rootfs $R -- /bin/true"
        -n "warren run --image busybox" "$warren run --image bench/busybox"
        -n "warren run --rootfs busybox, memory+pids+cpu limits"
            "$warren run --rootfs $R --memory 64M --pids 64 --cpus 0.5 -- /bin/true"
        -n "bwrap busybox" "bwrap --unshare-all --ro-bind $R / --proc /proc --dev /dev /bin/true"
        -n "crun run busybox" "crun run --bundle $B $crun_id"
    )
    spaced=(
        -n "warren run --rootfs busybox" "$warren run --rootfs $R -- /bin/true"
        -n "bwrap busybox" "bwrap --unshare-all --ro-bind $R / --proc /proc --dev /dev /bin/true"
        -n "crun run busybox" "crun run --bundle $B $crun_id"
    )
    if [ -n "$D" ]; then
        "$warren" run --rootfs "$D" -- /bin/true
        "$warren" run --image bench/debian
        bwrap --unshare-all --ro-bind "$D" / --proc /proc --dev /dev /bin/true
        crun run --bundle "$DB" "$crun_id"
        cmds+=(
            -n "warren run --rootfs debian" "$warren run --rootfs $D -- /bin/true"
            -n "warren run --image debian" "$warren run --image bench/debian"
            -n "bwrap debian" "bwrap --unshare-all --ro-bind $D / --proc /proc --dev /dev /bin/true"
            -n "crun run debian" "crun run --bundle $DB $crun_id"
        )
        spaced+=(
            -n "warren run --rootfs debian" "$warren run --rootfs $D -- /bin/true"
            -n "warren run --image debian" "$warren run --image bench/debian"
            -n "bwrap debian" "bwrap --unshare-all --ro-bind $D / --proc /proc --dev /dev /bin/true"
            -n "crun run debian" "crun run --bundle $DB $crun_id"
        )
    fi
    # Every launch above must have reused a digest (seal or store), none walked a tree.
    if tail -n +$((before + 1)) "$log" | grep -q "\"digest_source\":\"walk\""; then
        tail -n +$((before + 1)) "$log" | grep -o "\"image\":{[^}]*}" >&2
        echo "startup.sh: a launch walked its tree (seal or store digest not used)" >&2
        exit 1
    fi
    # The interleaved run: the same commands (given as -n NAME COMMAND triples above), each
    # split into words with its program found on the PATH, separated by "::".
    il=()
    for ((i = 0; i < ${#cmds[@]}; i += 3)); do
        read -ra words <<< "${cmds[i + 2]}"
        words[0]=$(command -v "${words[0]}")
        if [ ${#il[@]} -gt 0 ]; then il+=("::"); fi
        il+=(-n "${cmds[i + 1]}" "${words[@]}")
    done
    "$interleave" -o "$json" $order_flags "$RUNS" "${il[@]}" >/dev/null
    if [ "$SPACED_RUNS" -gt 0 ]; then
        hyperfine -N --warmup 3 --runs "$SPACED_RUNS" --prepare "sleep 0.05" \
            --export-json "$spaced_json" "${spaced[@]}"
    fi
'

# --- 4. the table -----------------------------------------------------------------------------
machine="nproc $(nproc), kernel $(uname -r), $(bwrap --version), $(crun --version | head -1), \
$(hyperfine --version), $("$R/bin/busybox" | head -1 | awk '{print $1, $2}'); \
CPU busy ${b}% in the second before the run, load average $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$json" "$spaced_json" "$RUNS" "$SPACED_RUNS" "$machine" "$order_text" <<'EOF' | tee "$table"
import json, os, statistics, sys
path, spaced_path, runs, spaced_runs, machine, order_text = sys.argv[1:7]

def q(xs, p):
    xs = sorted(xs)
    k = (len(xs) - 1) * p
    lo = int(k)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)

def table(path):
    """Print one JSON file of times (hyperfine's export shape) as a table; return the medians
    by command name."""
    medians = {}
    print(f"| {'command':<52} | {'median':>6} | {'p5':>6} | {'p95':>6} | {'mean ± sd':>13} "
          f"| {'CPU user+sys':>12} |")
    print(f"|{'-' * 54}|{'-' * 7}:|{'-' * 7}:|{'-' * 7}:|{'-' * 14}:|{'-' * 13}:|")
    for r in json.load(open(path))["results"]:
        t = [x * 1000 for x in r["times"]]
        med = statistics.median(t)
        medians[r["command"]] = med
        ms = f"{statistics.mean(t):.2f} ± {statistics.stdev(t):.2f}"
        cpu = (r["user"] + r["system"]) * 1000
        print(f"| {r['command']:<52} | {med:6.2f} | {q(t, .05):6.2f} | {q(t, .95):6.2f} "
              f"| {ms:>13} | {cpu:12.2f} |")
    return medians

ROOTS = ("busybox", "debian")

def ratios(m):
    """Print warren/bwrap and warren/crun per root; return whether every pair meets the target."""
    ok = True
    for root in ROOTS:
        bw, cr = m.get(f"bwrap {root}"), m.get(f"crun run {root}")
        if bw is None or cr is None:
            continue
        for w in sorted(k for k in m if k.startswith("warren run") and f" {root}" in k):
            met = m[w] <= bw and m[w] <= cr / 2
            ok &= met or "limits" in w
            print(f"- {w}: warren/bwrap = {m[w] / bw:.2f}, warren/crun = {m[w] / cr:.2f}"
                  + ("" if "limits" in w else ("  (met)" if met else "  (NOT met)")))
    return ok

print(f"machine: {machine}")
print()
print(f"Interleaved: start-up of /bin/true, {runs} rounds after 10 warm-up rounds, each round "
      f"starting every command once {order_text}, times in ms")
print()
m = table(path)
print()
ok = ratios(m)
print("- target (every warren run median <= the bwrap median and <= half the crun median on the "
      "same root, limits aside): " + ("MET" if ok else "NOT MET"))
if int(spaced_runs) > 0 and os.path.exists(spaced_path):
    print()
    print(f"Spaced: the same, with a 50 ms pause before each start, {spaced_runs} runs each, ms")
    print()
    sm = table(spaced_path)
    print()
    ratios(sm)
EOF
echo "results: $json $table" >&2
