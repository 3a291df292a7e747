#!/usr/bin/env bash
# Image import benchmark (issue 9): `warren image import` of a multi-layer OCI image layout
# against `umoci unpack` of the SAME layout, side by side and interleaved in one run.
#
#   bash bench/image.sh                # 4 rounds of 2 runs each, after one warm-up
#   ROUNDS=6 RUNS=2 bash bench/image.sh
#
# This 2-vCPU machine is shared and its load drifts over minutes, so the two tools are
# interleaved: each round is one hyperfine invocation running both (RUNS each), and the rounds
# alternate which tool goes first. The summary pools every run of every round.
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
# Must run as root (both tools set file owners). Writes bench/results/image-<stamp>.json (the
# pooled summary) and image-<stamp>-roundN.json (hyperfine's exports), and prints the ratio.
# Network use: only `cargo build` and, when something is missing, `apt-get` (scripts/setup.sh).
set -euo pipefail

ROUNDS=${ROUNDS:-4}
RUNS=${RUNS:-2}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
results="$here/results"
stamp=$(date -u +%Y%m%dT%H%M%SZ)
out="$results/image-$stamp"

die() { echo "image.sh: $*" >&2; exit 1; }
say() { echo "== $*" >&2; }
[ "$(id -u)" = 0 ] || die "run as root (both tools set file owners)"

bash "$repo/scripts/setup.sh" >&2
say "building warren (release)"
(cd "$repo" && cargo build --release -q -p warren)
W="$repo/target/x86_64-unknown-linux-musl/release/warren"
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
warren_cmd=(-n "warren image import" --prepare "$W --state-dir $state image rm bench >/dev/null 2>&1 || true"
    "$W --state-dir $state image import -q --name bench $L")
umoci_cmd=(-n "umoci unpack" --prepare "rm -rf $work/u" "umoci unpack --image $L:latest $work/u")
for r in $(seq 1 "$ROUNDS"); do
    warm=0; [ "$r" = 1 ] && warm=1
    say "round $r/$ROUNDS (load $(cut -d' ' -f1-3 /proc/loadavg))"
    if [ $((r % 2)) = 1 ]; then
        order=("${warren_cmd[@]}" "${umoci_cmd[@]}")
    else
        order=("${umoci_cmd[@]}" "${warren_cmd[@]}")
    fi
    hyperfine --runs "$RUNS" --warmup "$warm" --export-json "$out-round$r.json" "${order[@]}" >&2
done

python3 - "$out" "$ROUNDS" "$layers" "$compressed" "$files" "$size" <<'EOF'
import json, statistics, sys
out, rounds, layers, compressed, files, size = sys.argv[1], *map(int, sys.argv[2:])
runs = {}
for r in range(1, rounds + 1):
    for x in json.load(open(f"{out}-round{r}.json"))["results"]:
        d = runs.setdefault(x["command"], {"times": [], "user": [], "system": []})
        d["times"] += x["times"]
        d["user"].append(x["user"])
        d["system"].append(x["system"])
summary = {"layers": layers, "compressed_bytes": compressed, "entries": files,
           "unpacked_bytes": size, "rounds": rounds}
lines = [f"image: {layers} gzip layers, {compressed/2**20:.0f} MiB compressed, {files} entries, "
         f"{size/2**20:.0f} MiB unpacked; {rounds} interleaved rounds"]
for name in ("warren image import", "umoci unpack"):
    x = runs[name]
    t = x["times"]
    s = {"times": t, "median": statistics.median(t), "mean": statistics.mean(t), "min": min(t),
         "user": statistics.mean(x["user"]), "system": statistics.mean(x["system"])}
    summary[name] = s
    lines.append(f"{name:<22} median {s['median']:7.3f} s  mean {s['mean']:7.3f} s  "
                 f"min {s['min']:7.3f} s  user {s['user']:.2f} s  sys {s['system']:.2f} s  (n={len(t)})")
w, u = summary["warren image import"], summary["umoci unpack"]
summary["ratio_median"] = w["median"] / u["median"]
summary["ratio_min"] = w["min"] / u["min"]
lines.append(f"ratio warren/umoci: median {summary['ratio_median']:.2f}, min {summary['ratio_min']:.2f}")
json.dump(summary, open(f"{out}.json", "w"), indent=1)
print("\n".join(lines))
EOF
echo "results: $out.json (and $out-round*.json)" >&2
