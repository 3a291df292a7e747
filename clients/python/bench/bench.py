"""The Python client's side of bench/clients.sh, inside environments. Prints one JSON line per
measurement, in the shape of warren-ipc-bench's records.

    bench.py server PEER               answer 64-byte messages with send_recv until b"stop"
    bench.py ping TARGET ITERS WARMUP  round trips with send_recv (both requests in one packet)
    bench.py call-server               answer calls with reply until b"stop"
    bench.py call TARGET ITERS WARMUP  round trips with call
    bench.py recv COUNT MAX            recv_many of up to MAX, first arrival to last
"""

import json
import sys
import time

import warren

PAYLOAD = b"0123456789abcdef" * 4


def find(k, name):
    deadline = time.monotonic() + 20
    while True:
        try:
            return k.lookup(name)
        except warren.NotFound:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def main():
    mode = sys.argv[1]
    k = warren.Client()
    if mode == "server":
        peer = None
        d = k.recv()
        while d.body != b"stop":
            if peer is None:
                peer = find(k, sys.argv[2])
            err, d = k.send_recv(peer, PAYLOAD)
            if err is not None:
                raise err
    elif mode == "call-server":
        while True:
            d = k.recv()
            if d.body == b"stop":
                break
            k.reply(d, PAYLOAD)
    elif mode in ("ping", "call"):
        h = find(k, sys.argv[2])
        iters, warmup = int(sys.argv[3]), int(sys.argv[4])
        samples = []
        clock = time.perf_counter
        send_recv, call = k.send_recv, k.call
        for i in range(warmup + iters):
            t = clock()
            if mode == "call":
                d = call(h, PAYLOAD)
            else:
                err, d = send_recv(h, PAYLOAD)
                if err is not None:
                    raise err
            dt = clock() - t
            if len(d.body) != 64:
                raise SystemExit("answer size")
            if i >= warmup:
                samples.append(dt * 1e6)
        k.send(h, b"stop")
        samples.sort()
        variant = "call" if mode == "call" else "pipelined"
        print(json.dumps({"system": "python", "test": "rtt", "variant": variant, "count": iters,
                          "p50_us": round(samples[iters // 2], 2), "p99_us": round(samples[iters * 99 // 100], 2)}))
    elif mode == "recv":
        count, mx = int(sys.argv[2]), int(sys.argv[3])
        got = 0
        t0 = None
        before = 0
        while got < count:
            b = k.recv_many(mx, timeout=30)
            for run in b.runs:
                for body in run.bodies:
                    if len(body) != 64:
                        raise SystemExit("message size")
                got += len(run.bodies)
            if b.delivery is not None:
                raise SystemExit("a message that is not plain")
            if t0 is None:
                t0 = time.perf_counter()
                before = got
        dt = time.perf_counter() - t0
        print(json.dumps({"system": "python", "test": "throughput", "variant": f"batch frames, up to {mx} per receive",
                          "count": got - before, "msgs_per_s": round((got - before) / dt)}))
    else:
        raise SystemExit(f"bench.py: unknown mode {mode}")
    k.close()


main()
