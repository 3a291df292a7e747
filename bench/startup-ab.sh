#!/usr/bin/env bash
# A/B start-up of two (or more) Warren binaries against bwrap and crun, side by side in ONE
# hyperfine run (one command's runs after another's: swap the order for a second run) on the same sealed busybox root: `warren run --rootfs R -- /bin/true`,
# measurement on, state directory on disk. For judging one change on a shared, noisy machine,
# where only figures from the same run can be compared.
#
#   bash bench/startup-ab.sh old=/path/to/warren-before new=target/x86_64-unknown-linux-gnu/release/warren
#   RUNS=500 bash bench/startup-ab.sh a=BIN b=BIN c=BIN
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
export R work json RUNS
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
hyperfine -N --style none --warmup 10 --runs "$RUNS" --export-json "$json" "${cmds[@]}" >/dev/null
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
