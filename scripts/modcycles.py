#!/usr/bin/env python3
"""Module dependency check for one crate: lists every `crate::a::b` reference (in `use` lines and
paths) per module file, resolves the crate-root aliases, and fails on a cycle between modules
or on a module of a forbidden layer edge (here: evidence -> io).

usage: scripts/modcycles.py crates/warren-attest/src [--forbid evidence:io]"""
import os, re, sys

def modname(root, path):
    rel = os.path.relpath(path, root)[:-3]
    parts = rel.split(os.sep)
    if parts[-1] in ('mod', 'lib'):
        parts = parts[:-1]
    return '::'.join(parts)

def main():
    root = sys.argv[1]
    forbid = [a.split(':') for a in sys.argv[2:] if ':' in a]
    files = {}
    for d, _, fs in os.walk(root):
        for f in fs:
            if f.endswith('.rs'):
                p = os.path.join(d, f)
                files[modname(root, p)] = open(p).read()
    mods = set(files)
    # crate-root aliases: `pub use io::{a, b}` makes crate::a mean crate::io::a
    alias = {}
    for m in re.finditer(r'pub use (\w+)::\{([^}]*)\};', files.get('', '')):
        for n in m.group(2).split(','):
            n = n.strip()
            if f'{m.group(1)}::{n}' in mods:
                alias[n] = f'{m.group(1)}::{n}'
    def resolve(path):
        parts = path.split('::')
        if parts[0] in alias:
            parts = alias[parts[0]].split('::') + parts[1:]
        best = None
        for i in range(1, len(parts) + 1):
            if '::'.join(parts[:i]) in mods:
                best = '::'.join(parts[:i])
        return best
    edges = {m: set() for m in mods}
    for m, text in files.items():
        if m == '':
            continue
        # strip comments and the test module (tests may use anything)
        code = re.sub(r'//[^\n]*', '', text)
        code = code.split('#[cfg(test)]')[0]
        refs = re.findall(r'crate::((?:\w+::)*\w+)', code)
        for grp in re.findall(r'use crate::((?:\w+::)*)\{([^}]*)\}', code):
            for n in grp[1].split(','):
                refs.append(grp[0] + n.strip().split(' ')[0])
        for r in refs:
            t = resolve(r)
            if t and t != m and t != '':
                edges[m].add(t)
    bad = 0
    for m in sorted(edges):
        print(f'{m or "(root)"} -> {", ".join(sorted(edges[m])) or "-"}')
    for a, b in forbid:
        for m, ts in edges.items():
            for t in ts:
                if m.split('::')[0] == a and t.split('::')[0] == b:
                    print(f'FORBIDDEN: {m} -> {t}'); bad = 1
    # Tarjan SCC
    idx, low, st, on, out, n = {}, {}, [], set(), [], [0]
    def sc(v):
        idx[v] = low[v] = n[0]; n[0] += 1; st.append(v); on.add(v)
        for w in edges[v]:
            if w not in idx:
                sc(w); low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], idx[w])
        if low[v] == idx[v]:
            comp = []
            while True:
                w = st.pop(); on.discard(w); comp.append(w)
                if w == v: break
            if len(comp) > 1: out.append(comp)
    sys.setrecursionlimit(10000)
    for v in edges:
        if v not in idx: sc(v)
    for c in out:
        print('CYCLE:', ' <-> '.join(sorted(c))); bad = 1
    print('no module cycles' if not out else f'{len(out)} cycle(s)')
    sys.exit(bad)

main()
