#!/usr/bin/env bash
# Image import benchmark (issue 9): `warren image import` of a multi-layer OCI image layout
# against `umoci unpack` of the SAME layout, side by side in ONE hyperfine run.
#
#   bash bench/image.sh             # 5 timed runs each, after one warm-up
#   RUNS=10 bash bench/image.sh
#
# The layout is built here with umoci from the host's own files, four gzip layers:
#   1. a busybox root and /usr/include         (many small files)
#   2. /usr/share/doc                          (many small, some larger files)
#   3. /usr/lib/python3                        (a typical language runtime)
#   4. /usr/include/linux deleted (a whiteout) and one file added
# What is timed, from a warm page cache:
#   warren: verify every blob against its descriptor (sha256 and size), decompress, apply the
#           layers through openat2-confined calls, copy the blobs into the store, rename the
#           root into place and write the index. Before each run `warren image rm` empties
#           the store, so every run unpacks (nothing is reused).
#   umoci:  `umoci unpack`: verify the blobs, decompress, apply the layers, and write its mtree
#           manifest of the result. Before each run the bundle is deleted.
# Both end with the same tree (the script compares file counts as a sanity check).
#
# Must run as root (both tools set file owners). Writes bench/results/image-<stamp>.json
# (hyperfine's export) and prints the ratio. Network use: only `cargo build` and, when
# something is missing, `apt-get` (scripts/setup.sh).
set -euo pipefail

RUNS=${RUNS:-5}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
results="$here/results"
stamp=$(date -u +%Y%m%dT%H%M%SZ)
out="$results/image-$stamp.json"

die() { echo "image.sh: $*" >&2; exit 1; }
say() { echo "== $*" >&2; }
[ "$(id -u)" = 0 ] || die "run as root (both tools set file owners)"

bash "$repo/scripts/setup.sh" >&2
say "building warren (release)"
(cd "$repo" && cargo build --release -q -p warren)
W="$repo/target/x86_64-unknown-linux-gnu/release/warren"
[ -x "$W" ] || die "no release binary at $W"

work=$(mktemp -d /var/tmp/warren-image-bench.XXXXXX)
state="/run/warren-image-bench-$$"
cleanup() {
    "$W" --state-dir "$state" image rm bench >/dev/null 2>&1 || true
    rm -rf "$work" "$state"
}
trap cleanup EXIT

say "building a 4-layer OCI layout with umoci in $work"
L="$work/layout"
B="$work/bundle"
umoci init --layout "$L"
umoci new --image "$L:latest"
umoci unpack --image "$L:latest" "$B" >/dev/null
R="$B/rootfs"
mkdir -p "$R/bin" "$R/etc" "$R/usr/share" "$R/usr/lib"
cp /bin/busybox "$R/bin/busybox"
for a in sh ls cat echo; do ln -s busybox "$R/bin/$a"; done
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$R/etc/passwd"
cp -a /usr/include "$R/usr/include"
umoci repack --refresh-bundle --image "$L:latest" "$B"
cp -a /usr/share/doc "$R/usr/share/doc"
umoci repack --refresh-bundle --image "$L:latest" "$B"
cp -a /usr/lib/python3 "$R/usr/lib/python3"
umoci repack --refresh-bundle --image "$L:latest" "$B"
rm -rf "$R/usr/include/linux"
echo "layer four" >"$R/etc/layer-four"
umoci repack --refresh-bundle --image "$L:latest" "$B"
rm -rf "$B"
layers=$(python3 -c 'import json,sys; m=json.load(open(sys.argv[1]+"/index.json")); d=m["manifests"][0]["digest"].split(":")[1]; print(len(json.load(open(sys.argv[1]+"/blobs/sha256/"+d))["layers"]))' "$L")
compressed=$(du -sb "$L/blobs" | cut -f1)
say "layout: $layers layers, $((compressed / 1048576)) MiB of blobs"

say "sanity: both tools produce the same tree"
"$W" --state-dir "$state" image import -q --name bench "$L"
root=$("$W" --state-dir "$state" image inspect bench | python3 -c 'import json,sys; print(json.load(sys.stdin)["root_path"])')
umoci unpack --image "$L:latest" "$work/u" >/dev/null
n_warren=$(cd "$root" && find . -mindepth 1 ! -path './proc' ! -path './dev' ! -path './tmp' | wc -l)
n_umoci=$(cd "$work/u/rootfs" && find . -mindepth 1 | wc -l)
files=$n_umoci
size=$(du -sb "$work/u/rootfs" | cut -f1)
[ "$n_warren" = "$n_umoci" ] || die "warren unpacked $n_warren entries, umoci $n_umoci"
[ ! -e "$root/usr/include/linux" ] && [ ! -e "$work/u/rootfs/usr/include/linux" ] || die "whiteout not applied"
say "both: $files entries, $((size / 1048576)) MiB unpacked"

mkdir -p "$results"
hyperfine --runs "$RUNS" --warmup 1 --export-json "$out" \
    --prepare "$W --state-dir $state image rm bench >/dev/null 2>&1 || true" \
    -n "warren image import" "$W --state-dir $state image import -q --name bench $L" \
    --prepare "rm -rf $work/u" \
    -n "umoci unpack" "umoci unpack --image $L:latest $work/u"

python3 - "$out" "$layers" "$compressed" "$files" "$size" <<'EOF'
import json, sys
path, layers, compressed, files, size = sys.argv[1], *map(int, sys.argv[2:])
r = {x["command"]: x for x in json.load(open(path))["results"]}
w, u = r["warren image import"], r["umoci unpack"]
print()
print(f"image: {layers} gzip layers, {compressed/2**20:.0f} MiB compressed, {files} entries, {size/2**20:.0f} MiB unpacked")
for name, x in (("warren image import", w), ("umoci unpack", u)):
    print(f"{name:<22} mean {x['mean']:.3f} s  stddev {x['stddev']:.3f} s  min {x['min']:.3f} s")
print(f"ratio warren/umoci (mean): {w['mean']/u['mean']:.2f}")
EOF
echo "results: $out" >&2
