#!/usr/bin/env bash
# Count the `cpuid` instructions a command executes, per program: a uprobe on every `cpuid`
# instruction of the given ELF files (found with objdump), the command run once with the
# probes on, and the hits counted by process name. On a virtual machine every `cpuid` traps to
# the hypervisor; glibc's start-up runs about 70 of them (its CPU-feature and cache tables),
# which is why Warren's binaries are musl programs (BENCHMARKS.md, "Issue 13, tenth session").
# Also times one `cpuid` here (a C loop of 2,000).
#
#   bash bench/cpuid.sh "FILE..." -- COMMAND...
#   bash bench/cpuid.sh "/lib64/ld-linux-x86-64.so.2" -- bwrap --unshare-all --ro-bind / / /bin/true
#   bash bench/cpuid.sh "target/x86_64-unknown-linux-musl/release/warren ROOT/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2" \
#       -- target/x86_64-unknown-linux-musl/release/warren run --rootfs ROOT -- /bin/true
#
# Give files by their real path inside any root (a symbolic link such as ROOT/lib64/ld-linux...
# may point out of it). Needs root (tracefs), objdump, readelf, python3 and cc.
set -euo pipefail
die() { echo "cpuid.sh: $*" >&2; exit 1; }
[ $# -ge 3 ] && [ "$2" = -- ] || die "usage: cpuid.sh \"FILE...\" -- COMMAND..."
files=$1
shift 2
[ "$(id -u)" = 0 ] || die "run as root (uprobes through tracefs)"
T=/sys/kernel/tracing
[ -d "$T/events" ] || mount -t tracefs nodev "$T" || die "no tracefs at $T"
[ -z "$(cat "$T/uprobe_events")" ] || die "$T/uprobe_events is in use; not touching it"
work=$(mktemp -d)
cleanup() {
    echo 0 > "$T/tracing_on" || true
    [ -d "$T/events/uprobes" ] && echo 0 > "$T/events/uprobes/enable" || true
    echo > "$T/uprobe_events" || true
    rm -rf "$work"
}
trap cleanup EXIT

n=0
for f in $files; do
    [ -f "$f" ] || die "no file $f"
    real=$(readlink -f "$f")
    # File offset of each cpuid: its address minus its PT_LOAD segment's address plus offset.
    python3 - "$real" > "$work/offsets" <<'PY'
import re, subprocess, sys
path = sys.argv[1]
segments = []
for line in subprocess.run(["readelf", "-lW", path], capture_output=True, text=True, check=True).stdout.splitlines():
    p = line.split()
    if p and p[0] == "LOAD":
        segments.append((int(p[2], 16), int(p[1], 16), int(p[4], 16)))
dump = subprocess.run(["objdump", "-d", "--no-show-raw-insn", path], capture_output=True, text=True, check=True).stdout
for line in dump.splitlines():
    m = re.match(r"\s*([0-9a-f]+):\s+cpuid\b", line)
    if not m:
        continue
    addr = int(m.group(1), 16)
    for vaddr, offset, size in segments:
        if vaddr <= addr < vaddr + size:
            print(hex(addr - vaddr + offset))
            break
PY
    count=0
    while read -r off; do
        n=$((n + 1)); count=$((count + 1))
        echo "p:uprobes/cpuid$n $real:$off" >> "$T/uprobe_events"
    done < "$work/offsets"
    echo "$f: $count cpuid instructions" >&2
done
[ "$n" -gt 0 ] || die "no cpuid instruction in $files"

echo > "$T/trace"
echo 1 > "$T/events/uprobes/enable"
echo 1 > "$T/tracing_on"
"$@" > /dev/null
echo 0 > "$T/tracing_on"
echo "cpuid executed, by process name:"
grep -E ' cpuid[0-9]+:' "$T/trace" | sed -E 's/^ *(.*)-[0-9]+ +\[.*/\1/' | sort | uniq -c | sort -rn
echo "total: $(grep -cE ' cpuid[0-9]+:' "$T/trace")"

cat > "$work/t.c" <<'C'
#include <cpuid.h>
#include <stdio.h>
#include <time.h>
int main(void) {
    struct timespec a, b;
    unsigned eax, ebx, ecx, edx;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (int i = 0; i < 2000; i++) __cpuid_count(7, 0, eax, ebx, ecx, edx);
    clock_gettime(CLOCK_MONOTONIC, &b);
    printf("one cpuid here: %.1f us\n", ((b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec)) / 2000 / 1e3);
    return 0;
}
C
cc -O2 -o "$work/t" "$work/t.c" && "$work/t"
