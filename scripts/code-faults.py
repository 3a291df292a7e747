#!/usr/bin/env python3
"""Name the functions whose code pages a program faulted in, from a perf recording.

Used by scripts/launch-order.sh after CPU sampling: sampling misses functions that run too
briefly to be sampled, and each of them, placed outside the ordered block at the start of
`.text`, costs every process that runs it a page fault (and the fault-around's sixteen page
mappings and unmappings). Every instruction-fetch fault is the first touch of a fault-around
window of code (one page when debugfs lets the recording set it so, else 64 KiB), and its address
names the function that touched it; appending those names and relinking moves them into the
ordered block, and the next recording names the next ones.

    perf record -e exceptions:page_fault_user ...
    perf script --show-mmap-events --show-task-events -F comm,pid,trace |
        code-faults.py BINARY COMM KNOWN_LIST

Prints, one per line and in the order first seen, the (mangled) names of functions whose code
faulted in processes named COMM running BINARY (or forked from one) and that KNOWN_LIST does not
already list. `code-faults.py --self-test` checks the resolution against a compiled program.
"""

import bisect
import io
import os
import re
import subprocess
import sys
import tempfile

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
    if sys.argv[1:] == ["--self-test"]:
        self_test()
        return
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    binary, comm, known_path = sys.argv[1:4]
    for name in resolve(binary, comm, known_path, sys.stdin):
        print(name)


def resolve(binary, comm, known_path, lines):
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
    for line in lines:
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
    return seen


def self_test():
    """Resolve made-up fault records against a compiled program: fetch faults, in the process
    and in a child it forked, name their functions once each; a listed function, a data read and
    the child's faults once it has executed another program (named q) are not reported (each
    would change the answer if it were)."""
    with tempfile.TemporaryDirectory() as tmp:
        src, exe = os.path.join(tmp, "p.c"), os.path.join(tmp, "p")
        with open(src, "w") as f:
            f.write("__attribute__((noinline)) int alpha(int x) { return x * 3 + 1; }\n"
                    "__attribute__((noinline)) int beta(int x) { return x ^ 5; }\n"
                    "__attribute__((noinline)) int gamma_(int x) { return x - 7; }\n"
                    "__attribute__((noinline)) int delta(int x) { return x + 11; }\n"
                    "int main(int c, char **v) {\n"
                    "  (void)v; return alpha(c) + beta(c) + gamma_(c) + delta(c);\n"
                    "}\n")
        subprocess.run(["cc", "-O1", "-o", exe, src], check=True)
        addrs, names = load_symbols(exe)
        addr = dict(zip(names, addrs))
        seg_off, seg_vaddr, _ = load_segments(exe)[0]
        pgoff = seg_off & ~0xFFF
        start = 0x7F0000000000 + (seg_vaddr & ~0xFFF)

        def at(fn):
            return start + addr[fn] - seg_vaddr + seg_off - pgoff

        known = os.path.join(tmp, "known")
        with open(known, "w") as f:
            f.write("beta\n")
        record = [
            f"p 100 PERF_RECORD_MMAP2 100/100: [0x{start:x}(0x1000) @ 0x{pgoff:x} fe:00 1 2]: r-xp {exe}",
            "p 100 PERF_RECORD_FORK(101:101):(100:100)",
            f"p 101 address=0x{at('gamma_') + 1:x} ip=0x{at('gamma_') + 1:x} error_code=0x14",
            f"p 101 address=0x{at('beta'):x} ip=0x{at('beta'):x} error_code=0x14",
            f"p 100 address=0x{at('main'):x} ip=0x{at('main'):x} error_code=0x4",
            f"q 101 address=0x{at('delta'):x} ip=0x{at('delta'):x} error_code=0x14",
            f"p 100 address=0x{at('alpha'):x} ip=0x{at('alpha'):x} error_code=0x14",
            f"p 101 address=0x{at('gamma_'):x} ip=0x{at('gamma_'):x} error_code=0x14",
        ]
        got = resolve(exe, "p", known, io.StringIO("\n".join(record) + "\n"))
        if got != ["gamma_", "alpha"]:
            sys.exit(f"code-faults.py: self-test failed: named {got}, not ['gamma_', 'alpha']")
    print("code-faults.py: self-test passed")


if __name__ == "__main__":
    main()
