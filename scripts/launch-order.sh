#!/usr/bin/env bash
# Regenerate crates/warren/link/launch-order.txt: the functions of the `warren` binary that a
# launch runs, most-sampled first, which the link lays out together at the start of `.text`
# (see crates/warren/build.rs). Samples CPU time (perf, 40 kHz) over real launches of
# /bin/true from a sealed BusyBox root, from the same root imported as an image, and with
# limits, in a scratch state directory; the names are the linker's (mangled), so the list
# matches the next build of the same crates.
#
#   bash scripts/launch-order.sh            # 1,000 launches of each kind
#   N=3000 bash scripts/launch-order.sh
#
# Must run as root (launches). Needs perf (Debian package linux-perf) and busybox-static.
set -euo pipefail

N=${N:-1000}
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out="$repo/crates/warren/link/launch-order.txt"
die() { echo "launch-order.sh: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "run as root"
command -v perf >/dev/null || die "perf is missing (apt-get install linux-perf)"
[ -x /bin/busybox ] || die "/bin/busybox is missing (apt-get install busybox-static)"

(cd "$repo" && cargo build --release -q -p warren)
warren="$repo/target/x86_64-unknown-linux-gnu/release/warren"

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

export R warren N
# A private mount namespace: the seal's read-only bind ends with it.
unshare --mount --propagation private bash -euo pipefail -c '
    "$warren" rootfs seal "$R" >/dev/null
    perf record -q -F 40000 -e cpu-clock -o "$WARREN_STATE_DIR/perf.data" -- bash -c "
        for i in \$(seq $N); do
            $warren run --rootfs $R -- /bin/true
            $warren run --image order/busybox -- /bin/true
            $warren run --rootfs $R --memory 64M --pids 64 --cpus 0.5 -- /bin/true
        done" >/dev/null
'
perf script -i "$WARREN_STATE_DIR/perf.data" --no-demangle -F comm,ip,sym,dso 2>/dev/null \
    | awk -v exe="($warren)" '$1 == "warren" && index($0, exe) { print $3 }' \
    | grep -v '^\[unknown\]$' | sort | uniq -c | sort -k1,1nr -k2 | awk '{ print $2 }' >"$work/order"
[ -s "$work/order" ] || die "no samples of $warren"
mv "$work/order" "$out"
echo "launch-order.sh: $(wc -l <"$out") functions in $out" >&2
