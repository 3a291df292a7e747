#!/usr/bin/env bash
# The cost of system calls inside an environment under two (or more) Warren binaries, side by
# side in ONE run: the same static C program, in the same busybox root, launched by each binary
# in turn, ROUNDS times, alternating. For judging the seccomp refusal listener (refused calls
# go to the launcher, docs/seccomp.md): allowed calls must cost the same, refused ones cost a
# round trip to the launcher.
#
#   bash bench/seccomp.sh old=/path/to/warren-before new=target/x86_64-unknown-linux-musl/debug/warren
#   ROUNDS=10 N=2000000 NREFUSED=20000 bash bench/seccomp.sh a=BIN b=BIN
#
# Per round and binary it reports ns per call of:
#   getpid           raw syscall(SYS_getpid): allowed unconditionally, so the kernel's action
#                    cache answers it without running the filter;
#   prctl-get-name   prctl(PR_GET_NAME): allowed by an argument rule, so the filter runs;
#   kcmp             refused (EPERM): the plain program answers in the kernel, the notifying one
#                    through the launcher.
# and a pinned baseline of the same loop on the host (no filter). Prints the medians and the
# ratios new/old. Must run as root; needs gcc and busybox-static.
set -euo pipefail
[ "$(id -u)" = 0 ] || { echo "seccomp.sh: run as root" >&2; exit 1; }
[ $# -ge 1 ] || { echo "usage: seccomp.sh NAME=BINARY..." >&2; exit 2; }
ROUNDS=${ROUNDS:-10}
N=${N:-2000000}
NREFUSED=${NREFUSED:-20000}
work=$(mktemp -d /var/tmp/warren-seccomp-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT
chmod 755 "$work"
R="$work/rootfs"
mkdir -p "$R"/{bin,proc,dev,tmp,sys,etc} "$work/state"
chmod 755 "$work/state"
cp /bin/busybox "$R/bin/busybox"
ln -s busybox "$R/bin/sh"
printf 'root:x:0:0:root:/:/bin/sh\n' >"$R/etc/passwd"
cat >"$work/loop.c" <<'EOF'
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec * 1e9 + t.tv_nsec; }
int main(int argc, char **argv) {
    long n = atol(argv[1]), nr = atol(argv[2]);
    char name[16];
    double t0 = now();
    for (long i = 0; i < n; i++) syscall(SYS_getpid);
    double t1 = now();
    for (long i = 0; i < n; i++) prctl(PR_GET_NAME, name, 0, 0, 0);
    double t2 = now();
    long refused = 0;
    for (long i = 0; i < nr; i++) if (syscall(SYS_kcmp, 1, 1, 0, 0, 0) == -1) refused++;
    double t3 = now();
    printf("%.1f %.1f %.1f %ld\n", (t1 - t0) / n, (t2 - t1) / n, (t3 - t2) / nr, refused);
    return 0;
}
EOF
gcc -O2 -static -o "$R/bin/loop" "$work/loop.c"
chmod -R a+rX "$R"
names=(); bins=()
for b in "$@"; do names+=("${b%%=*}"); bins+=("${b#*=}"); done
out="$work/results"
: >"$out"
echo "host (no filter): $(taskset -c 1 "$R/bin/loop" "$N" "$NREFUSED")  [getpid prctl kcmp(ns) refused-count]"
for round in $(seq 1 "$ROUNDS"); do
    for i in "${!bins[@]}"; do
        line=$(WARREN_STATE_DIR="$work/state" taskset -c 1 "${bins[$i]}" run --name "sbench-$$-$round-$i" \
            --rootfs "$R" -- /bin/loop "$N" "$NREFUSED" 2>/dev/null | tail -n 1)
        echo "${names[$i]} $line" >>"$out"
    done
done
python3 - "$out" "${names[@]}" <<'EOF'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
names = sys.argv[2:]
med = {}
print(f"{'binary':8} {'getpid ns':>10} {'prctl ns':>10} {'kcmp ns':>10} {'refused':>8}  (medians of {len(rows)//len(names)} rounds)")
for n in names:
    r = [x for x in rows if x[0] == n]
    m = [statistics.median(float(x[k]) for x in r) for k in (1, 2, 3)]
    med[n] = m
    print(f"{n:8} {m[0]:10.1f} {m[1]:10.1f} {m[2]:10.1f} {r[0][4]:>8}")
if len(names) >= 2:
    a, b = names[0], names[-1]
    print(f"ratio {b}/{a}: getpid {med[b][0]/med[a][0]:.3f}x, prctl {med[b][1]/med[a][1]:.3f}x, kcmp {med[b][2]/med[a][2]:.1f}x")
EOF
