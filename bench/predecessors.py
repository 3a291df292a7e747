#!/usr/bin/env python3
"""Medians of an interleaved run (bench/interleave.c -r SEED) split by the command that ran just
before: a command's time includes the teardown its predecessor left to the kernel's workers
(BENCHMARKS.md, "Issue 13, eighth session"). Replays interleave.c's orders from the seed
(splitmix64 and the same Fisher-Yates shuffle, ten warm-up rounds first).

    python3 bench/predecessors.py bench/results/startup-STAMP.json SEED
    python3 bench/predecessors.py --orders COMMANDS ROUNDS SEED   # the order of every round
    python3 bench/predecessors.py --self-test                     # against a compiled interleave.c

Predecessors are grouped by the first word of their name (`warren …` as one group).
"""

import collections
import json
import os
import statistics
import subprocess
import sys
import tempfile

MASK = (1 << 64) - 1
WARMUP = 10


def orders(nc, rounds, seed):
    """Yield (round, order) for rounds -WARMUP .. rounds-1, as interleave.c runs them."""
    state = seed
    for i in range(-WARMUP, rounds):
        order = [nc - 1 - k if i & 1 else k for k in range(nc)]
        for k in range(nc - 1, 0, -1):
            state = (state + 0x9E3779B97F4A7C15) & MASK
            z = state
            z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
            z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
            z ^= z >> 31
            j = z % (k + 1)
            order[k], order[j] = order[j], order[k]
        yield i, order


def group(name):
    return name.split()[0].rstrip(":")


def split(path, seed):
    results = json.load(open(path))["results"]
    names = [r["command"] for r in results]
    rounds = len(results[0]["times"])
    groups = sorted({group(n) for n in names})
    by = collections.defaultdict(list)
    prev = None
    for i, order in orders(len(names), rounds, seed):
        for c in order:
            if i >= 0 and prev is not None:
                by[(c, group(names[prev]))].append(results[c]["times"][i] * 1e3)
            prev = c
    print("| command | " + " | ".join(f"after {g}" for g in groups) + " |")
    print("|---|" + "---:|" * len(groups))
    for c, name in enumerate(names):
        cells = []
        for g in groups:
            xs = by.get((c, g), [])
            cells.append(f"{statistics.median(xs):.2f} ({len(xs)})" if xs else "-")
        print(f"| {name} | " + " | ".join(cells) + " |")


def self_test():
    """Run the real interleave.c with commands that log their index, and compare the order
    they ran in with the replay (rounds of the warm-up included)."""
    here = os.path.dirname(os.path.abspath(__file__))
    with tempfile.TemporaryDirectory() as tmp:
        exe = os.path.join(tmp, "interleave")
        subprocess.run(["cc", "-O2", "-o", exe, os.path.join(here, "interleave.c")], check=True)
        log = os.path.join(tmp, "log")
        nc, rounds, seed = 5, 7, 12345
        args = [exe, "-r", str(seed), str(rounds)]
        for c in range(nc):
            if c:
                args.append("::")
            args += ["/bin/sh", "-c", f"echo {c} >> {log}"]
        subprocess.run(args, check=True, stdout=subprocess.DEVNULL)
        ran = [int(x) for x in open(log).read().split()]
        replay = [c for _, order in orders(nc, rounds, seed) for c in order]
        if ran != replay:
            sys.exit(f"predecessors.py: self-test failed: interleave ran {ran}, replay {replay}")
        # A positive control: another seed gives other orders, so the comparison can fail.
        other = [c for _, order in orders(nc, rounds, seed + 1) for c in order]
        if other == ran:
            sys.exit("predecessors.py: self-test failed: the seed changes nothing")
    print(f"predecessors.py: self-test passed ({len(ran)} starts replayed)")


def main():
    if sys.argv[1:] == ["--self-test"]:
        self_test()
    elif len(sys.argv) == 5 and sys.argv[1] == "--orders":
        nc, rounds, seed = (int(x) for x in sys.argv[2:])
        for i, order in orders(nc, rounds, seed):
            print(i, *order)
    elif len(sys.argv) == 3:
        split(sys.argv[1], int(sys.argv[2]))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
