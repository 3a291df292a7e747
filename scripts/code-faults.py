#!/usr/bin/env python3
"""Name the functions whose code pages a program faulted in, from a perf recording.

Used by scripts/launch-order.sh after CPU sampling: sampling misses functions that run too
briefly to be sampled, and each of them, placed outside the ordered block at the start of
`.text`, costs every process that runs it a page fault (and the fault-around's sixteen page
mappings and unmappings). Every instruction-fetch fault is the first touch of a fault-around
window of code (one page when debugfs lets the recording set it so, else 64 KiB), and its address
names the function that touched it; appending those names and relinking moves them into the
ordered block, and the next recording names the next ones.

    perf record -e exceptions:page_fault_user ... ; \
        perf script --show-mmap-events --show-task-events -F comm,pid,trace \
        | code-faults.py BINARY COMM KNOWN_LIST

Prints, one per line and in the order first seen, the (mangled) names of functions whose code
faulted in processes named COMM running BINARY and that KNOWN_LIST does not already list.
"""

import bisect
import re
import subprocess
import sys

# Instruction fetch (bit 4 of the x86 page-fault error code).
FETCH = 0x10


def load_segments(binary):
    """(file offset, virtual address, size) of each executable PT_LOAD segment."""
    out = subprocess.run(["readelf", "-lW", binary], check=True, capture_output=True, text=True)
    segs = []
    for line in out.stdout.splitlines():
        f = line.split()
        if len(f) >= 8 and f[0] == "LOAD" and "E" in f[6:-1]:
            segs.append((int(f[1], 16), int(f[2], 16), int(f[5], 16)))
    return segs


def load_symbols(binary):
    out = subprocess.run(["nm", "-n", "--defined-only", binary], check=True,
                         capture_output=True, text=True)
    syms = []
    for line in out.stdout.splitlines():
        f = line.split(None, 2)
        if len(f) == 3 and f[1] in "tTwW":
            syms.append((int(f[0], 16), f[2]))
    syms.sort()
    return [a for a, _ in syms], [n for _, n in syms]


def main():
    binary, comm, known_path = sys.argv[1:4]
    segs = load_segments(binary)
    addrs, names = load_symbols(binary)
    known = {line.strip() for line in open(known_path)}
    mmap_re = re.compile(r"PERF_RECORD_MMAP2 (\d+)/\d+: \[0x([0-9a-f]+)\(0x[0-9a-f]+\) @ 0x([0-9a-f]+)"
                         r" .*\]: r-xp (\S+)$")
    fork_re = re.compile(r"PERF_RECORD_FORK\((\d+):\d+\):\((\d+):")
    fault_re = re.compile(r"^\s*(\S+)\s+(\d+)\s+address=0x([0-9a-f]+) ip=0x[0-9a-f]+ error_code=0x([0-9a-f]+)")
    base = {}     # pid -> (mapping start, file offset) of BINARY's code
    parent = {}   # pid -> parent pid (a forked child keeps its parent's mappings)
    seen = []
    for line in sys.stdin:
        m = mmap_re.search(line)
        if m:
            if m.group(4) == binary:
                base[int(m.group(1))] = (int(m.group(2), 16), int(m.group(3), 16))
            continue
        m = fork_re.search(line)
        if m:
            parent[int(m.group(1))] = int(m.group(2))
            continue
        m = fault_re.search(line)
        if not m or m.group(1) != comm or not int(m.group(4), 16) & FETCH:
            continue
        pid = int(m.group(2))
        while pid not in base and pid in parent:
            pid = parent[pid]
        if pid not in base:
            continue
        start, pgoff = base[pid]
        offset = int(m.group(3), 16) - start + pgoff
        for seg_off, seg_vaddr, size in segs:
            if seg_off <= offset < seg_off + size:
                vaddr = offset - seg_off + seg_vaddr
                i = bisect.bisect_right(addrs, vaddr) - 1
                if i >= 0:
                    name = names[i]
                    if name not in known:
                        known.add(name)
                        seen.append(name)
                break
    for name in seen:
        print(name)


if __name__ == "__main__":
    main()
