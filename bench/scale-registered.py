#!/usr/bin/env python3
"""The daemon side of the scale benchmark (issue 14) at counts the manifest path cannot reach on
a small machine: COUNT environments registered on the kernel's control socket the way `warren
run` registers one (the kernel hands back the environment's end of its connection), with no
process of their own. Each environment is a connection driven from this one process, with its
mailbox and a capability to the next one around a ring: each says hello, looks the next one up,
sends it one message, and receives the one from the previous.

Reports (Markdown rows on standard output): the time to register all, the time until every
ring message was received, the daemon's resident memory before and after (per environment),
the kernel round trip between two more environments (a message and one back, 2,000 round trips
after 200 warm-up, from this process) before and with COUNT registered, the kernel's count of
environments, and the time for the kernel to forget them all once their control connections
close.

    python3 bench/scale-registered.py STATE_DIR DAEMON_PID WARREN COUNT

Run by bench/scale.sh with REGISTERED=1 (which starts the kernel); needs `ulimit -n` above
2 x COUNT in both the kernel (its end of each connection and each control connection) and this
process.
"""

import array
import json
import os
import select
import socket
import subprocess
import sys
import time

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, "..", "clients", "python", "src"))
from warren import protocol as p  # noqa: E402

state, daemon_pid, warren, count = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
sock_path = os.path.join(state, "kernel.sock")
buf = bytearray(p.MAX_PACKET)


def rss_kib():
    for line in open(f"/proc/{daemon_pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise SystemExit("no VmRSS")


def register(name, may_send):
    """A registration: (control connection, kernel connection, kept descriptors)."""
    c = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    c.connect(sock_path)
    req = {"op": "register", "name": name, "may_send": may_send, "may_discover": may_send,
           "capacity": None}
    c.send(b"." + json.dumps(req).encode())
    doc, fds = b"", []
    while True:
        msg, anc, _, _ = c.recvmsg(1 << 16, socket.CMSG_SPACE(4 * 4))
        for level, typ, data in anc:
            if level == socket.SOL_SOCKET and typ == socket.SCM_RIGHTS:
                a = array.array("i")
                a.frombytes(data[: len(data) - len(data) % 4])
                fds.extend(a)
        if not msg:
            raise SystemExit(f"register {name}: the kernel closed the control connection")
        doc += msg[1:]
        if msg[:1] == b".":
            break
    answer = json.loads(doc)
    if not answer.get("ok"):
        raise SystemExit(f"register {name}: {answer}")
    k = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET, 0, fileno=fds[0])
    return c, k, fds[1:]


def answers(k):
    n = k.recv_into(buf)
    if n == 0:
        raise SystemExit("the kernel closed a connection")
    return p.decode_responses(bytes(buf[:n]))


def call(k, frame, id):
    k.send(frame)
    while True:
        for i, a in answers(k):
            if i == id:
                if isinstance(a, p.Error):
                    raise SystemExit(f"request {id}: {a}")
                return a


def hello(k):
    call(k, p.encode_request(1, p.Hello(1, p.VERSION)), 1)


def lookup(k, name):
    return call(k, p.encode_request(2, p.Lookup(name)), 2).handle


def round_trips(n, warmup):
    """p50 and p99 (µs) of n round trips between two fresh environments."""
    tag = f"{os.getpid()}-{time.monotonic_ns()}"
    a_name, b_name = f"rtt-a-{tag}"[:63], f"rtt-b-{tag}"[:63]
    ca, a, ka = register(a_name, [b_name])
    cb, b, kb = register(b_name, [a_name])
    hello(a)
    hello(b)
    to_b, to_a = lookup(a, b_name), lookup(b, a_name)
    def until_delivery(k):
        while not any(isinstance(r, p.Delivery) for _, r in answers(k)):
            pass

    times = []
    b.send(p.encode_recv(12))
    for i in range(n + warmup):
        t = time.perf_counter()
        a.send(p.encode_send(10, to_b, False, b"ping") + p.encode_recv(11))
        until_delivery(b)
        b.send(p.encode_send(13, to_a, False, b"pong") + p.encode_recv(12))
        until_delivery(a)
        if i >= warmup:
            times.append(time.perf_counter() - t)
    for s in (a, b, ca, cb):
        s.close()
    for fd in ka + kb:
        os.close(fd)
    times.sort()
    return times[len(times) // 2] * 1e6, times[min(len(times) - 1, len(times) * 99 // 100)] * 1e6


def kernel_envs():
    """The kernel's count of environments (its status document; `warren ps` lists launch
    records, which registered environments without a launcher do not have)."""
    c = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    c.connect(sock_path)
    c.send(b"." + json.dumps({"op": "status"}).encode())
    doc = b""
    while True:
        msg = c.recv(1 << 16)
        doc += msg[1:]
        if msg[:1] == b".":
            break
    c.close()
    return json.loads(doc)["status"]["envs"]


rtt_small = round_trips(2000, 200)
envs0 = kernel_envs()
rss0 = rss_kib()
t0 = time.monotonic()
envs = []
for i in range(count):
    c, k, kept = register(f"r{i}", [f"r{(i + 1) % count}"])
    # The copy of the kernel's end that a launcher keeps for re-attaching after a kernel
    # restart: not needed here, and closing it keeps this process at two descriptors each.
    for fd in kept:
        os.close(fd)
    envs.append((c, k, []))
t1 = time.monotonic()
# The ring: hello, look the next one up, send to it, wait for the previous one's message.
for i, (_, k, _) in enumerate(envs):
    hello(k)
for i, (_, k, _) in enumerate(envs):
    h = lookup(k, f"r{(i + 1) % count}")
    k.send(p.encode_send(3, h, False, f"hello-{i}".encode()) + p.encode_recv(4))
left = {k.fileno(): k for _, k, _ in envs}
need = {k.fileno(): 2 for _, k, _ in envs}  # the send's Ok and the delivery
poller = select.epoll()
for fd in left:
    poller.register(fd, select.EPOLLIN)
while need:
    for fd, _ in poller.poll(60):
        for i, r in answers(left[fd]):
            if i in (3, 4):
                need[fd] -= 1
        if need.get(fd) == 0:
            del need[fd]
            poller.unregister(fd)
t2 = time.monotonic()
time.sleep(2)
rss1 = rss_kib()
listed = kernel_envs() - envs0
rtt_big = round_trips(2000, 200)
# Forget them all: the registrations end with their control connections.
t3 = time.monotonic()
for c, k, kept in envs:
    c.close()
    k.close()
    for fd in kept:
        os.close(fd)
while kernel_envs() > envs0 and time.monotonic() - t3 < 600:
    time.sleep(0.2)
t4 = time.monotonic()
left_after = kernel_envs() - envs0

print(f"| register {count} environments | {(t1 - t0) * 1000:.0f} ms |")
print(f"| ... until every ring message was received | {(t2 - t0) * 1000:.0f} ms |")
print(f"| daemon RSS before / after | {rss0 // 1024} MiB / {rss1 // 1024} MiB |")
print(f"| daemon memory per environment | {(rss1 - rss0) * 1024 // count} bytes |")
print(f"| environments in the kernel's status (all registered / after they closed) | {listed} / {left_after} |")
print(f"| kernel round trip, 2 environments | p50 {rtt_small[0]:.1f} us, p99 {rtt_small[1]:.1f} us |")
print(f"| kernel round trip, {count} environments registered | p50 {rtt_big[0]:.1f} us, "
      f"p99 {rtt_big[1]:.1f} us |")
print(f"| all {count} connections closed until the kernel has forgotten them | {(t4 - t3) * 1000:.0f} ms |")
if listed != count or left_after != 0:
    raise SystemExit(f"the kernel counted {listed} of {count}, then {left_after}")
