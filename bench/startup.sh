#!/usr/bin/env bash
# Start-up benchmark: Warren against bwrap and crun on the same busybox rootfs, in ONE hyperfine
# run, each starting /bin/true in a fresh isolated environment. Prints medians, p95 and the ratios
# warren/bwrap and warren/crun; writes the hyperfine JSON and the table to bench/results/.
#
#   bash bench/startup.sh               # 200 runs per command after 10 warm-up runs
#   RUNS=500 bash bench/startup.sh
#
# Must run as root (Warren, crun and the cgroup workaround need it). Uses no network apart from
# `cargo build` and, only when a tool is missing, `apt-get`.
#
# crun 1.8.1 refuses this kind of host ("cgroups in hybrid mode not supported") when a cgroup2
# mount sits next to the v1 controllers. So the whole hyperfine run happens in a private mount
# namespace in which /sys/fs/cgroup/unified is unmounted; the host is not changed. Warren and
# bwrap run in that same namespace, so all commands are measured side by side under the same
# conditions. (On a host without a cgroup2 mount there is nothing to hide.)
set -euo pipefail

RUNS=${RUNS:-200}
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
warren="$repo/target/x86_64-unknown-linux-gnu/release/warren"
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
export R B warren crun_id json spaced_json RUNS WARMUP SPACED_RUNS
unshare --mount --propagation private bash -euo pipefail -c '
    if mountpoint -q /sys/fs/cgroup/unified; then umount /sys/fs/cgroup/unified; fi
    # Check every command once: each must exit 0 (hyperfine would also stop on a failure).
    "$warren" run --rootfs "$R" -- /bin/true
    "$warren" run --rootfs "$R" --memory 64M --pids 64 --cpus 0.5 -- /bin/true
    "$warren" run --rootfs "$R" -- /bin/sh -c "test \$(id -u) = 0 && grep -q \"^Seccomp:.2\" /proc/self/status"
    bwrap --unshare-all --ro-bind "$R" / --proc /proc --dev /dev /bin/true
    crun run --bundle "$B" "$crun_id"
    # crun removes a container that `crun run` started once it exits: the same id is reusable.
    crun run --bundle "$B" "$crun_id"
    "$R/bin/busybox" true
    hyperfine -N --warmup "$WARMUP" --runs "$RUNS" --export-json "$json" \
        -n "floor: busybox true" "$R/bin/busybox true" \
        -n "warren run" "$warren run --rootfs $R -- /bin/true" \
        -n "warren run, memory+pids+cpu limits" \
            "$warren run --rootfs $R --memory 64M --pids 64 --cpus 0.5 -- /bin/true" \
        -n "bwrap --unshare-all" "bwrap --unshare-all --ro-bind $R / --proc /proc --dev /dev /bin/true" \
        -n "crun run" "crun run --bundle $B $crun_id"
    if [ "$SPACED_RUNS" -gt 0 ]; then
        hyperfine -N --warmup 3 --runs "$SPACED_RUNS" --prepare "sleep 0.05" \
            --export-json "$spaced_json" \
            -n "warren run" "$warren run --rootfs $R -- /bin/true" \
            -n "bwrap --unshare-all" \
                "bwrap --unshare-all --ro-bind $R / --proc /proc --dev /dev /bin/true" \
            -n "crun run" "crun run --bundle $B $crun_id"
    fi
'

# --- 4. the table -----------------------------------------------------------------------------
machine="nproc $(nproc), kernel $(uname -r), $(bwrap --version), $(crun --version | head -1), \
$(hyperfine --version), $("$R/bin/busybox" | head -1 | awk '{print $1, $2}'); \
CPU busy ${b}% in the second before the run"
python3 - "$json" "$spaced_json" "$RUNS" "$SPACED_RUNS" "$machine" <<'EOF' | tee "$table"
import json, os, statistics, sys
path, spaced_path, runs, spaced_runs, machine = sys.argv[1:6]

def q(xs, p):
    xs = sorted(xs)
    k = (len(xs) - 1) * p
    lo = int(k)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)

def table(path):
    """Print one hyperfine JSON file as a table; return the medians by command name."""
    medians = {}
    print(f"| {'command':<36} | {'median':>6} | {'p5':>6} | {'p95':>6} | {'mean ± sd':>13} "
          f"| {'CPU user+sys':>12} |")
    print(f"|{'-' * 38}|{'-' * 7}:|{'-' * 7}:|{'-' * 7}:|{'-' * 14}:|{'-' * 13}:|")
    for r in json.load(open(path))["results"]:
        t = [x * 1000 for x in r["times"]]
        med = statistics.median(t)
        medians[r["command"]] = med
        ms = f"{statistics.mean(t):.2f} ± {statistics.stdev(t):.2f}"
        cpu = (r["user"] + r["system"]) * 1000
        print(f"| {r['command']:<36} | {med:6.2f} | {q(t, .05):6.2f} | {q(t, .95):6.2f} "
              f"| {ms:>13} | {cpu:12.2f} |")
    return medians

def ratios(m):
    bw, cr = m["bwrap --unshare-all"], m["crun run"]
    for w in ("warren run", "warren run, memory+pids+cpu limits"):
        if w in m:
            print(f"- {w}: warren/bwrap = {m[w] / bw:.2f}, warren/crun = {m[w] / cr:.2f}")

print(f"machine: {machine}")
print()
print(f"Back to back: start-up of /bin/true, {runs} runs each after 10 warm-up runs "
      "(hyperfine -N), times in ms")
print()
m = table(path)
print()
ratios(m)
ok = m["warren run"] <= m["bwrap --unshare-all"] and m["warren run"] <= m["crun run"] / 2
print("- target (warren run median <= bwrap median and <= half the crun median): "
      + ("MET" if ok else "NOT MET"))
if int(spaced_runs) > 0 and os.path.exists(spaced_path):
    print()
    print(f"Spaced: the same, with a 50 ms pause before each start, {spaced_runs} runs each, ms")
    print()
    sm = table(spaced_path)
    print()
    ratios(sm)
EOF
echo "results: $json $table" >&2
