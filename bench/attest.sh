#!/usr/bin/env bash
# Attestation benchmark, all in ONE run: image measurement throughput of Warren's tree digest
# (warren-tree/1, BLAKE3, one thread) against `b3sum` (one thread and its default threads) and
# `sha256sum` over the same files; software quotes per second and pure-Rust verifications per
# second over logs of 10 and 1000 records; with swtpm, TPM quotes (agent + TPM2_NV_Certify) and
# their verifications per second; and the boot-chain quote of one `warren attest quote` +
# `warren attest verify` (NV certification + TPM2_Quote of PCRs 0-10,14,15, UEFI log replay, chain)
# against `tpm2_quote` + `tpm2_checkquote` over the same PCRs, interleaved, process for process.
# Writes bench/results/attest-<UTC time>.txt.
#
#   ONLY=boot-quote bash bench/attest.sh # just the boot-chain quote comparison (QUOTES=50)
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

ONLY=${ONLY:-}
QUOTES=${QUOTES:-50}
PROFILE=${PROFILE:-release}   # debug: only to check the script quickly; figures need release
rel=(); [ "$PROFILE" = debug ] || rel=(--release)
[ "$ONLY" = boot-quote ] || (cd "$repo" && cargo build -q "${rel[@]}" -p warren-attest --example attest_bench)
(cd "$repo" && cargo build -q "${rel[@]}" -p warren)
warren="$repo/target/x86_64-unknown-linux-musl/$PROFILE/warren"
(cd "$repo/crates/warren-tpm" && RUSTFLAGS="-C target-feature=-crt-static" \
    CARGO_TARGET_DIR="$repo/target/tpm" cargo build -q --target x86_64-unknown-linux-gnu "${rel[@]}")
export WARREN_TPM_AGENT="$repo/target/tpm/x86_64-unknown-linux-gnu/$PROFILE/warren-tpm"
bench="$repo/target/x86_64-unknown-linux-musl/$PROFILE/examples/attest_bench"

img=$(mktemp -d /dev/shm/warren-attest-bench.XXXXXX)
tpmdir=$(mktemp -d /run/warren-attest-bench-tpm.XXXXXX)
chmod 755 "$tpmdir"   # launches under it need a traversable parent
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
[ "$ONLY" != boot-quote ] || SIZE_MB=0

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

# The boot-chain quote, Warren against tpm2-tools, QUOTES rounds interleaved: each round is one
# `warren attest quote` + `warren attest verify` and one `tpm2_quote` + `tpm2_checkquote`, both
# over SHA-256 PCRs 0-10,14,15 with a fresh nonce. Warren's side also certifies the NV anchor, reads
# and replays a UEFI event log (tests' style: 28 events) and checks the AK certificate chain.
boot_quote() {
    local spec=$1 localca=$2 w="$tpmdir/warren" t="$tpmdir/tools"
    mkdir -p "$w" "$t"
    python3 - "$w/bios_measurements" <<'PY'
import hashlib, struct, sys
def ev(pcr, ty, data, digest=None):
    d = digest or hashlib.sha256(data).digest()
    return struct.pack("<III", pcr, ty, 1) + struct.pack("<H", 0xb) + d + struct.pack("<I", len(data)) + data
spec = b"Spec ID Event03\0" + struct.pack("<I", 0) + bytes([0, 2, 0, 2]) + struct.pack("<I", 1) + struct.pack("<HH", 0xb, 32) + b"\0"
log = struct.pack("<II", 0, 3) + bytes(20) + struct.pack("<I", len(spec)) + spec
for i in range(20):
    log += ev(i % 8, 0x80000008, bytes(16), hashlib.sha256(b"blob%d" % i).digest())
for p in range(8):
    log += ev(p, 4, bytes(4))
open(sys.argv[1], "wb").write(log)
PY
    python3 - "$w/bios_measurements" "$spec" <<'PY'
import struct, subprocess, sys, os
b = open(sys.argv[1], "rb").read()
at = 32 + struct.unpack_from("<I", b, 28)[0]
while at < len(b):
    pcr, ty, n = struct.unpack_from("<III", b, at); at += 12
    d = b[at + 2: at + 34]; at += 2 + 32
    size = struct.unpack_from("<I", b, at)[0]; at += 4 + size
    subprocess.run([os.environ["WARREN_TPM_AGENT"], "--tpm", sys.argv[2], "--dir", "/tmp",
                    "diag-pcr-extend", str(pcr), d.hex()], check=True, stdout=subprocess.DEVNULL)
PY
    local W=("$warren" --state-dir "$w/state")
    "${W[@]}" attest init --root tpm --tpm "$spec" --boot-log "$w/bios_measurements" >/dev/null
    "${W[@]}" ca init --dir "$w/ca" --ek-ca "$localca/issuercert.pem" \
        --ek-ca "$localca/swtpm-localca-rootca-cert.pem" >/dev/null
    "${W[@]}" ca enroll --dir "$w/ca" --host bench >/dev/null
    for i in 1 2 3; do "${W[@]}" run --name "bench$i" --binary /bin/true -- /bin/true; done
    export TPM2TOOLS_TCTI="$spec"
    tpm2_createek -c "$t/ek.ctx" -G rsa -u "$t/ek.pub" >/dev/null
    tpm2_createak -C "$t/ek.ctx" -c "$t/ak.ctx" -G ecc -g sha256 -s ecdsa -u "$t/ak.pem" -f pem >/dev/null
    # Persistent, as Warren's AK is: swtpm has no resource manager, so a context loaded per
    # quote would stay loaded and fill the TPM's object slots.
    tpm2_flushcontext -t >/dev/null 2>&1 || true
    tpm2_flushcontext -s >/dev/null 2>&1 || true
    tpm2_evictcontrol -C o -c "$t/ak.ctx" 0x81010010 >/dev/null
    tpm2_flushcontext -t >/dev/null 2>&1 || true
    local sel="sha256:0,1,2,3,4,5,6,7,8,9,10,14,15"
    python3 - "$QUOTES" "$t" "$w" "$sel" "${W[@]}" <<'PY'
import subprocess, sys, time, os, statistics
n, t, w, sel = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
W = sys.argv[5:]
def run(args):
    p = subprocess.run(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if p.returncode != 0:
        sys.exit(f"{' '.join(args[:4])}...: {p.stderr.decode().strip()}")
ours, theirs = [], []
for i in range(n):
    nonce = os.urandom(16).hex()
    t0 = time.perf_counter()
    run(W + ["attest", "quote", "--nonce", nonce, "--out", f"{w}/q.json"])
    run(W + ["attest", "verify", "--quote", f"{w}/q.json", "--nonce", nonce, "--ca", f"{w}/ca/tpm-ca.crt"])
    t1 = time.perf_counter()
    run(["tpm2_quote", "-c", "0x81010010", "-l", sel, "-q", nonce, "-m", f"{t}/msg", "-s", f"{t}/sig",
         "-o", f"{t}/pcrs", "-g", "sha256"])
    run(["tpm2_checkquote", "-u", f"{t}/ak.pem", "-m", f"{t}/msg", "-s", f"{t}/sig", "-f", f"{t}/pcrs",
         "-g", "sha256", "-q", nonce])
    t2 = time.perf_counter()
    ours.append(t1 - t0); theirs.append(t2 - t1)
m, o = statistics.median(ours) * 1e3, statistics.median(theirs) * 1e3
print(f"# boot-chain quote + verify, {n} interleaved rounds, median (mean) per round")
print(f"warren attest quote + verify (NV certify + TPM2_Quote 0-10,14,15 by the PCR-bound AK, log replays, chain) {m:7.2f} ms ({statistics.mean(ours)*1e3:.2f})")
print(f"tpm2_quote + tpm2_checkquote (TPM2_Quote 0-10,14,15)                                                  {o:7.2f} ms ({statistics.mean(theirs)*1e3:.2f})")
print(f"warren / tpm2-tools                                                            {m/o:7.2f}")
PY
}
b3_one() { files | xargs -0 b3sum --num-threads 1; }
b3_all() { files | xargs -0 b3sum; }
sha() { files | xargs -0 sha256sum; }

{
echo "# bench/attest.sh $(date -u +%FT%TZ) on $(nproc) cpus ($(uname -r)); load $(cut -d' ' -f1-3 /proc/loadavg)"
if [ "$ONLY" != boot-quote ]; then
warren_s=$("$bench" tree "$img" "$ROUNDS" | python3 -c "import json,sys; print(json.load(sys.stdin)['seconds'])")
b3one_s=$(best b3_one)
b3all_s=$(best b3_all)
sha_s=$(best sha)
echo "# image $bytes bytes in /dev/shm"
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
fi
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
    [ "$ONLY" = boot-quote ] || "$bench" tpm 10 "$SECONDS_EACH"
    if command -v tpm2_quote >/dev/null; then
        boot_quote "swtpm:host=127.0.0.1,port=$port" "$localca"
    fi
    kill "$(cat "$tpmdir/swtpm.pid")" 2>/dev/null || true
fi
} | tee "$out"
echo "written: $out"
