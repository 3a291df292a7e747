#!/usr/bin/env bash
# Regenerate crates/warren/link/launch-order.txt: the functions of the `warren` binary that a
# launch runs, which the link lays out together at the start of `.text` (see
# crates/warren/build.rs). Two passes over real launches of /bin/true from a sealed BusyBox
# root, from the same root imported as an image, and with limits, in a scratch state directory:
# 1. CPU samples (perf, 40 kHz): the functions that run long enough to be sampled, most-sampled
#    first;
# 2. code-page faults, with the kernel's fault-around set to one page for the recording (put
#    back after): each instruction-fetch fault outside the ordered block names the function that
#    first touched that page (scripts/code-faults.py); those are appended, the binary relinked,
#    and the pass repeated until no new name appears (at most $ROUNDS times, default 8).
# The names are the linker's (mangled), so the list matches the next build of the same crates.
#
#   bash scripts/launch-order.sh            # 1,000 launches of each kind
#   N=3000 bash scripts/launch-order.sh
#   ROUNDS=0 bash scripts/launch-order.sh   # CPU samples only
#
# Must run as root (launches). Needs perf (Debian package linux-perf) and busybox-static.
set -euo pipefail

N=${N:-1000}
ROUNDS=${ROUNDS:-8}
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out="$repo/crates/warren/link/launch-order.txt"
die() { echo "launch-order.sh: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "run as root"
command -v perf >/dev/null || die "perf is missing (apt-get install linux-perf)"
[ -x /bin/busybox ] || die "/bin/busybox is missing (apt-get install busybox-static)"

(cd "$repo" && cargo build --release -q -p warren)
warren="$repo/target/x86_64-unknown-linux-musl/release/warren"

work=$(mktemp -d /tmp/warren-order.XXXXXX)
trap '[ -n "${KEEP:-}" ] || rm -rf "$work"' EXIT
chmod 755 "$work"
R="$work/rootfs"
mkdir -p "$R"/{bin,proc,dev,tmp,sys,etc}
cp /bin/busybox "$R/bin/busybox"
ln -s busybox "$R/bin/true"
ln -s busybox "$R/bin/sh"
printf 'root:x:0:0:root:/:/bin/sh\n' >"$R/etc/passwd"
printf 'root:x:0:\n' >"$R/etc/group"
chmod -R a+rX "$R"
export WARREN_STATE_DIR="$work/state"
mkdir -p "$WARREN_STATE_DIR"
chmod 755 "$WARREN_STATE_DIR"
# The same root as an OCI layout of one uncompressed layer, imported into the store.
L="$work/layout"
bash "$repo/scripts/oci-layout.sh" "$R" "$L"
"$warren" image import -q --name order/busybox "$L" >/dev/null

# The launches both passes record: COUNT rounds of the three kinds, under perf with the
# arguments given, in a private mount namespace (the seal's read-only bind ends with it).
cat >"$work/record.sh" <<'EOF'
count=$1
shift
"$warren" rootfs seal "$R" >/dev/null
perf record -q "$@" -- bash -c '
    for ((i = 0; i < '"$count"'; i++)); do
        "$warren" run --rootfs "$R" -- /bin/true
        "$warren" run --image order/busybox -- /bin/true
        "$warren" run --rootfs "$R" --memory 64M --pids 64 --cpus 0.5 -- /bin/true
    done' >/dev/null
EOF
export R warren
record() { unshare --mount --propagation private bash -euo pipefail "$work/record.sh" "$@"; }

record "$N" -F 40000 -e cpu-clock -o "$WARREN_STATE_DIR/perf.data"
perf script -i "$WARREN_STATE_DIR/perf.data" --no-demangle -F comm,ip,sym,dso 2>/dev/null \
    | awk -v exe="($warren)" '$1 == "warren" && index($0, exe) { print $3 }' \
    | grep -v '^\[unknown\]$' | sort | uniq -c | sort -k1,1nr -k2 | awk '{ print $2 }' >"$work/order"
[ -s "$work/order" ] || die "no samples of $warren"
mv "$work/order" "$out"
echo "launch-order.sh: $(wc -l <"$out") sampled functions in $out" >&2

# --- 2. code-page faults ------------------------------------------------------------------
# One page of fault-around makes each round name every page's first function; where the kernel
# does not let debugfs change it (some VMs), the default 64 KiB window names one per window
# and the rounds converge more slowly.
fab=/sys/kernel/debug/fault_around_bytes
[ -e "$fab" ] || mount -t debugfs none /sys/kernel/debug 2>/dev/null || true
old_fab=$(cat "$fab" 2>/dev/null) || old_fab=
if [ -n "$old_fab" ] && echo 4096 2>/dev/null >"$fab"; then
    echo "$old_fab" >"$fab"
    trap 'echo "$old_fab" >"$fab"; [ -n "${KEEP:-}" ] || rm -rf "$work"' EXIT
else
    echo "launch-order.sh: the fault-around cannot be changed here: rounds use the kernel's" >&2
    fab=/dev/null
fi
for ((round = 1; round <= ROUNDS; round++)); do
    (cd "$repo" && cargo build --release -q -p warren)
    echo 4096 >"$fab"
    record 5 -e exceptions:page_fault_user -o "$WARREN_STATE_DIR/faults.data"
    [ "$fab" = /dev/null ] || echo "$old_fab" >"$fab"
    perf script -i "$WARREN_STATE_DIR/faults.data" --show-mmap-events --show-task-events \
        -F comm,pid,trace 2>/dev/null \
        | python3 "$repo/scripts/code-faults.py" "$warren" warren "$out" >"$work/new"
    echo "launch-order.sh: round $round: $(wc -l <"$work/new") functions faulted outside the list" >&2
    [ -s "$work/new" ] || break
    cat "$work/new" >>"$out"
done
(cd "$repo" && cargo build --release -q -p warren)
echo "launch-order.sh: $(wc -l <"$out") functions in $out" >&2
