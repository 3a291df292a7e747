#!/usr/bin/env bash
# Write an OCI image layout of directory DIR to OUT: one uncompressed layer holding DIR (less
# what /dev, /proc and /tmp hold: every environment mounts its own there, and the import refuses
# device nodes), a config running /bin/true, and an index naming it "bench". Used by the
# benchmarks and scripts/launch-order.sh to import a root with `warren image import`.
#
#   bash scripts/oci-layout.sh DIR OUT      # OUT must not exist yet
set -euo pipefail
[ $# = 2 ] || { echo "usage: oci-layout.sh DIR OUT" >&2; exit 2; }
dir=$1 out=$2
[ -d "$dir" ] || { echo "oci-layout.sh: $dir is not a directory" >&2; exit 1; }
[ ! -e "$out" ] || { echo "oci-layout.sh: $out exists" >&2; exit 1; }
rm -rf "$out.tmp" && mkdir -p "$out.tmp/blobs/sha256"
tar -C "$dir" --numeric-owner --xattrs-exclude='*' --exclude='./dev/*' --exclude='./proc/*' \
    --exclude='./tmp/*' -cf "$out.tmp/layer.tar" .
python3 - "$out.tmp" <<'PYEOF'
import hashlib, json, os, sys
out = sys.argv[1]
def put(b):
    d = hashlib.sha256(b).hexdigest()
    open(f"{out}/blobs/sha256/{d}", "wb").write(b)
    return {"digest": f"sha256:{d}", "size": len(b)}
h = hashlib.sha256()
with open(f"{out}/layer.tar", "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
        h.update(chunk)
layer = h.hexdigest()
size = os.path.getsize(f"{out}/layer.tar")
os.rename(f"{out}/layer.tar", f"{out}/blobs/sha256/{layer}")
config = put(json.dumps({"architecture": "amd64", "os": "linux",
    "config": {"Cmd": ["/bin/true"], "Env": ["PATH=/usr/bin:/bin"]},
    "rootfs": {"type": "layers", "diff_ids": [f"sha256:{layer}"]}}).encode())
manifest = put(json.dumps({"schemaVersion": 2,
    "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": dict(mediaType="application/vnd.oci.image.config.v1+json", **config),
    "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                "digest": f"sha256:{layer}", "size": size}]}).encode())
json.dump({"schemaVersion": 2, "manifests": [dict(
    mediaType="application/vnd.oci.image.manifest.v1+json",
    annotations={"org.opencontainers.image.ref.name": "bench"}, **manifest)]},
    open(f"{out}/index.json", "w"))
open(f"{out}/oci-layout", "w").write('{"imageLayoutVersion": "1.0.0"}')
PYEOF
mv "$out.tmp" "$out"
