#!/usr/bin/env bash
# Attestation benchmark, all in ONE run: image measurement throughput of Warren's tree digest
# (warren-tree/1, BLAKE3, one thread) against `b3sum` (one thread and its default threads) and
# `sha256sum` over the same files; software quotes per second and pure-Rust verifications per
# second over logs of 10 and 1000 records; with swtpm, TPM quotes (agent + TPM2_NV_Certify) and
# their verifications per second. Writes bench/results/attest-<UTC time>.txt.
#
#   bash bench/attest.sh                 # a 1 GiB image in /dev/shm (page cache: CPU-bound)
#   SIZE_MB=256 ROUNDS=5 bash bench/attest.sh
#
# Needs b3sum and sha256sum (coreutils); installs b3sum with apt-get when missing.
set -euo pipefail

SIZE_MB=${SIZE_MB:-1024}
ROUNDS=${ROUNDS:-3}
SECONDS_EACH=${SECONDS_EACH:-2}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
mkdir -p "$here/results"
out="$here/results/attest-$(date -u +%Y%m%dT%H%M%SZ).txt"

command -v b3sum >/dev/null || { apt-get update -qq && apt-get install -y -qq b3sum; }

(cd "$repo" && cargo build -q --release -p warren-attest --example attest_bench)
(cd "$repo/crates/warren-tpm" && RUSTFLAGS="-C target-feature=-crt-static" \
    CARGO_TARGET_DIR="$repo/target/tpm" cargo build -q --release)
export WARREN_TPM_AGENT="$repo/target/tpm/x86_64-unknown-linux-gnu/release/warren-tpm"
bench="$repo/target/x86_64-unknown-linux-gnu/release/examples/attest_bench"

img=$(mktemp -d /dev/shm/warren-attest-bench.XXXXXX)
tpmdir=$(mktemp -d /run/warren-attest-bench-tpm.XXXXXX)
cleanup() {
    # swtpm is started inside the piped block below (a subshell): its pid is kept in a file.
    [ ! -s "$tpmdir/swtpm.pid" ] || kill "$(cat "$tpmdir/swtpm.pid")" 2>/dev/null || true
    rm -rf "$img" "$tpmdir"
}
trap cleanup EXIT
# An image-like tree: many small files and some large ones (half the bytes in 64 MiB files).
mkdir -p "$img/small" "$img/large"
large=$((SIZE_MB / 2 / 64)); [ "$large" -ge 1 ] || large=1
for i in $(seq 1 "$large"); do
    head -c $((64 << 20)) /dev/urandom > "$img/large/f$i"
done
small_mb=$((SIZE_MB - large * 64)); [ "$small_mb" -ge 1 ] || small_mb=1
n_small=$((small_mb * 16))   # 64 KiB each
python3 - "$img/small" "$n_small" <<'PY'
import os, sys
d, n = sys.argv[1], int(sys.argv[2])
blob = os.urandom(64 << 10)
for i in range(n):
    sub = os.path.join(d, f"d{i // 256}")
    os.makedirs(sub, exist_ok=True)
    with open(os.path.join(sub, f"f{i}"), "wb") as f:
        f.write(blob[i % 97:] + blob[:i % 97])
PY
bytes=$(du -sb "$img" | cut -f1)

best() { # best wall time in seconds of "$@" over ROUNDS
    local b=""
    for _ in $(seq 1 "$ROUNDS"); do
        local t0 t1
        t0=$(date +%s.%N); "$@" > /dev/null; t1=$(date +%s.%N)
        b=$(python3 -c "import sys; t=float(sys.argv[2])-float(sys.argv[1]); b=sys.argv[3]; print(t if b=='' or t<float(b) else b)" "$t0" "$t1" "$b")
    done
    echo "$b"
}
files() { find "$img" -type f -print0 | sort -z; }
b3_one() { files | xargs -0 b3sum --num-threads 1; }
b3_all() { files | xargs -0 b3sum; }
sha() { files | xargs -0 sha256sum; }

warren_s=$("$bench" tree "$img" "$ROUNDS" | python3 -c "import json,sys; print(json.load(sys.stdin)['seconds'])")
b3one_s=$(best b3_one)
b3all_s=$(best b3_all)
sha_s=$(best sha)

{
echo "# bench/attest.sh $(date -u +%FT%TZ) on $(nproc) cpus ($(uname -r)); image $bytes bytes in /dev/shm"
echo "# image measurement (best of $ROUNDS), GB/s = 10^9 bytes/s"
python3 - "$bytes" "$warren_s" "$b3one_s" "$b3all_s" "$sha_s" <<'PY'
import sys
b = int(sys.argv[1]); w, one, allt, sha = map(float, sys.argv[2:])
for name, t in [("warren tree digest (blake3, 1 thread, +metadata)", w),
                ("b3sum --num-threads 1", one), ("b3sum (default threads)", allt),
                ("sha256sum", sha)]:
    print(f"{name:52s} {t*1000:9.1f} ms  {b/t/1e9:6.2f} GB/s  warren/this time ratio {w/t:5.2f}")
PY
echo "# quotes and verifications (software root, ${SECONDS_EACH}s each)"
for r in 10 1000; do
    "$bench" quote "$r" "$SECONDS_EACH"
    "$bench" verify "$r" "$SECONDS_EACH"
done
if command -v swtpm >/dev/null && command -v swtpm_setup >/dev/null; then
    echo "# TPM root on swtpm (loopback TCP; each quote runs the warren-tpm agent once)"
    swtpm_setup --tpm2 --create-ek-cert --overwrite --tpmstate "$tpmdir" >/dev/null
    port=$(python3 -c 'import socket
while True:
    a=socket.socket(); a.bind(("127.0.0.1",0)); p=a.getsockname()[1]
    b=socket.socket()
    try: b.bind(("127.0.0.1",p+1)); print(p); break
    except OSError: pass')
    swtpm socket --tpm2 --flags not-need-init,startup-clear --tpmstate dir="$tpmdir" \
        --server type=tcp,port="$port",bindaddr=127.0.0.1 \
        --ctrl type=tcp,port=$((port + 1)),bindaddr=127.0.0.1 >/dev/null 2>&1 &
    echo $! > "$tpmdir/swtpm.pid"
    sleep 0.5
    localca=/var/lib/swtpm-localca
    export WARREN_BENCH_TPM="swtpm:host=127.0.0.1,port=$port"
    export WARREN_BENCH_EK_CA="$localca/issuercert.pem,$localca/swtpm-localca-rootca-cert.pem"
    "$bench" tpm 10 "$SECONDS_EACH"
    kill "$(cat "$tpmdir/swtpm.pid")" 2>/dev/null || true
fi
} | tee "$out"
echo "written: $out"
