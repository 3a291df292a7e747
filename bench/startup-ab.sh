#!/usr/bin/env bash
# A/B start-up of two (or more) Warren binaries against bwrap and crun, side by side in ONE
# hyperfine run (one command's runs after another's: swap the order for a second run) on the same sealed busybox root: `warren run --rootfs R -- /bin/true`,
# measurement on, state directory on disk. For judging one change on a shared, noisy machine,
# where only figures from the same run can be compared.
#
#   bash bench/startup-ab.sh old=/path/to/warren-before new=target/x86_64-unknown-linux-musl/release/warren
#   RUNS=500 bash bench/startup-ab.sh a=BIN b=BIN c=BIN
#   ORDER=interleaved bash bench/startup-ab.sh old=BIN new=BIN   # round robin, for a busy machine
#
# Copy the "before" binary aside before rebuilding. Must run as root; needs bwrap, crun,
# hyperfine and busybox-static (bench/startup.sh installs them). Like bench/startup.sh it runs
# in a private mount namespace with /sys/fs/cgroup/unified unmounted (crun refuses the hybrid
# layout otherwise). Prints medians, p90, CPU and the ratios to bwrap and crun; writes the
# hyperfine JSON to bench/results/startup-ab-<time>.json.
set -euo pipefail
[ "$(id -u)" = 0 ] || { echo "startup-ab.sh: run as root" >&2; exit 1; }
[ $# -ge 1 ] || { echo "usage: startup-ab.sh NAME=BINARY..." >&2; exit 2; }
RUNS=${RUNS:-300}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
mkdir -p "$here/results"
json="$here/results/startup-ab-$(date -u +%Y%m%dT%H%M%SZ).json"
work=$(mktemp -d /var/tmp/warren-ab.XXXXXX)
trap 'rm -rf "$work"' EXIT
chmod 755 "$work"
R="$work/rootfs"
mkdir -p "$R"/{bin,proc,dev,tmp,sys,etc,root} "$work/bundle" "$work/state"
chmod 755 "$work/state"
cp /bin/busybox "$R/bin/busybox"
for applet in $("$R/bin/busybox" --list); do
    [ -e "$R/bin/$applet" ] || ln -s busybox "$R/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$R/etc/passwd"
printf 'root:x:0:\n' >"$R/etc/group"
chmod -R a+rX "$R"
# The same OCI bundle as bench/startup.sh.
awk '/^python3 - "\$R" "\$B\/config.json" <<.EOF.$/{f=1;next} f&&/^EOF$/{exit} f' \
    "$here/startup.sh" >"$work/mkconfig.py"
python3 "$work/mkconfig.py" "$R" "$work/bundle/config.json"
bins=()
for b in "$@"; do
    p=${b#*=}
    bins+=("${b%%=*}=$(cd "$(dirname "$p")" && pwd)/$(basename "$p")")
done
ORDER=${ORDER:-}
export R work json RUNS ORDER
echo "load: $(cut -d' ' -f1-3 /proc/loadavg); live Warren cgroup leaves on the host: \
$(find /sys/fs/cgroup/pids/warren -mindepth 1 -maxdepth 1 -type d 2>/dev/null | wc -l)" >&2
unshare --mount --propagation private bash -euo pipefail -s "${bins[@]}" <<'INNER'
export WARREN_STATE_DIR="$work/state"
if mountpoint -q /sys/fs/cgroup/unified; then umount /sys/fs/cgroup/unified; fi
"${1#*=}" rootfs seal "$R" >/dev/null
cmds=()
for b in "$@"; do
    "${b#*=}" run --rootfs "$R" -- /bin/true
    cmds+=(-n "${b%%=*}" "${b#*=} run --rootfs $R -- /bin/true")
done
if grep -q '"digest_source":"walk"' "$WARREN_STATE_DIR/attest/events.jsonl"; then
    echo "startup-ab.sh: a launch walked its tree (the seal was not used)" >&2; exit 1
fi
bwrap --unshare-all --ro-bind "$R" / --proc /proc --dev /dev /bin/true
crun run --bundle "$work/bundle" "warren-ab-$$"
cmds+=(-n bwrap "bwrap --unshare-all --ro-bind $R / --proc /proc --dev /dev /bin/true")
cmds+=(-n crun "crun run --bundle $work/bundle warren-ab-$$")
if [ "${ORDER:-}" = interleaved ]; then
    # Round robin: every round starts each command once, in turn, so that load drifting
    # during the run touches all of them alike. Same JSON shape as hyperfine's; CPU from
    # wait4's rusage (the launcher and everything it reaped).
    python3 - "$json" "$RUNS" "${cmds[@]}" <<'PY'
import json, os, shlex, sys, time
out, runs, args = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
cmds = [(args[i + 1], shlex.split(args[i + 2])) for i in range(0, len(args), 3)]
res = {name: {"command": name, "times": [], "user": 0.0, "system": 0.0} for name, _ in cmds}
devnull = os.open(os.devnull, os.O_RDWR)
for rnd in range(runs + 10):
    for name, argv in cmds:
        t0 = time.perf_counter()
        pid = os.fork()
        if pid == 0:
            os.dup2(devnull, 0); os.dup2(devnull, 1); os.dup2(devnull, 2)
            os.execvp(argv[0], argv)
        _, status, ru = os.wait4(pid, 0)
        dt = time.perf_counter() - t0
        if os.waitstatus_to_exitcode(status) != 0:
            sys.exit(f"startup-ab.sh: {name} failed ({status})")
        if rnd >= 10:  # the first ten rounds warm up
            r = res[name]
            r["times"].append(dt)
            r["user"] += ru.ru_utime / runs
            r["system"] += ru.ru_stime / runs
json.dump({"results": list(res.values())}, open(out, "w"))
PY
else
    hyperfine -N --style none --warmup 10 --runs "$RUNS" --export-json "$json" "${cmds[@]}" >/dev/null
fi
INNER
python3 - "$json" <<'PY'
import json, statistics as st, sys
r = json.load(open(sys.argv[1]))["results"]
med = {x["command"]: st.median(x["times"]) * 1000 for x in r}
print(f"| command | median ms | p90 ms | CPU user+sys ms | / bwrap | / crun |")
print("|---|---:|---:|---:|---:|---:|")
for x in r:
    t = sorted(x["times"])
    c = x["command"]
    print(f"| {c} | {med[c]:.2f} | {t[int(len(t) * 0.9)] * 1000:.2f} | "
          f"{(x['user'] + x['system']) * 1000:.2f} | {med[c] / med['bwrap']:.2f} | "
          f"{med[c] / med['crun']:.2f} |")
PY
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg); results: $json" >&2
