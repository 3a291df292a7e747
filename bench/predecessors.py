#!/usr/bin/env python3
"""Medians of an interleaved run (bench/interleave.c -r SEED) split by the command that ran just
before: a command's time includes the teardown its predecessor left to the kernel's workers.
Replays interleave.c's orders from the seed (splitmix64, the same shuffle).

    python3 bench/predecessors.py bench/results/startup-STAMP.json SEED
"""
import json,statistics,sys,collections
path,seed=sys.argv[1],int(sys.argv[2])
R=json.load(open(path))['results']; names=[r['command'] for r in R]; nc=len(R); n=len(R[0]['times'])
M=(1<<64)-1
state=seed
def cls(name):
    if name.startswith('warren'): return 'warren'
    return name.split()[0].rstrip(':')
by=collections.defaultdict(list)
prev=None
for i in range(-10,n):
    order=[ (nc-1-k if (i&1) else k) for k in range(nc)]
    for k in range(nc-1,0,-1):
        state=(state+0x9e3779b97f4a7c15)&M; z=state
        z=((z^(z>>30))*0xbf58476d1ce4e5b9)&M
        z=((z^(z>>27))*0x94d049bb133111eb)&M
        z^=z>>31
        j=z%(k+1); order[k],order[j]=order[j],order[k]
    for c in order:
        if i>=0 and prev is not None:
            by[(c,cls(names[prev]))].append(R[c]['times'][i]*1e3)
        prev=c
for c in range(nc):
    row=[]
    for p in ['floor','warren','bwrap','crun']:
        xs=by.get((c,p),[])
        row.append("%s %.2f (%d)"%(p, statistics.median(xs), len(xs)) if xs else "%s -"%p)
    print("%-45s"%names[c][:45], " | ".join(row))
