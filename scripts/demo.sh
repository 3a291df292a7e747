#!/usr/bin/env bash
# Warren's demo: build, make a small busybox root, run a command in a fully isolated environment
# and show what isolation it got; then start the kernel, apply a small network space
# (examples/demo/spaces.toml: a store, a client allowed to use it, an intruder that is not, and a
# web front end published on 127.0.0.1:8088 that reaches the store only through its mailbox) and
# show what each of them saw; then serve 1,000 HTTP requests, each in a fresh environment the
# front spawns from a template (DEMO_REQUESTS=N for another count). Run as root on Debian 12.
# Leaves nothing running behind it.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
echo "== building warren and warren-msg"
cargo build --release --locked -p warren -p warren-client 2>&1 | tail -n 1
warren=$PWD/target/x86_64-unknown-linux-musl/release/warren

# Everything the demo makes lives here; the busybox root is readable by others, since root
# inside an environment is an unprivileged uid on the host.
demo=$(mktemp -d /tmp/warren-demo.XXXXXX)
chmod 755 "$demo"
root=$demo/root
kernel_pid=

cleanup() {
  if [ -n "$kernel_pid" ]; then
    # Stop and forget the demo's environments (this also removes their logs), then the kernel.
    "$warren" stop -t 1 store client intruder front >/dev/null 2>&1 || true
    "$warren" rm store client intruder front >/dev/null 2>&1 || true
    kill -TERM "$kernel_pid" 2>/dev/null || true
    wait "$kernel_pid" 2>/dev/null || true
  fi
  rm -rf "$demo"
}
trap cleanup EXIT

mkdir -p "$root"/{bin,etc,proc,dev,tmp,sys}
cp /bin/busybox "$root/bin/"
for applet in $(/bin/busybox --list); do
  [ "$applet" = busybox ] || ln -s busybox "$root/bin/$applet"
done
echo 'root:x:0:0:root:/:/bin/sh' > "$root/etc/passwd"
echo 'root:x:0:' > "$root/etc/group"

echo
echo "== warren doctor"
"$warren" doctor || true

echo
echo "== warren run --name demo --rootfs $root --memory 64M --pids 64 --cpus 0.5 -- /bin/sh -c '...'"
"$warren" run --name demo --rootfs "$root" --memory 64M --pids 64 --cpus 0.5 -- /bin/sh -c '
  echo "inside:   $(id)  hostname=$(hostname)  pid=$$"
  echo "root fs:  $(ls / | tr "\n" " ")"
  grep -E "^(Cap(Inh|Prm|Eff|Bnd|Amb)|NoNewPrivs|Seccomp):" /proc/self/status | tr "\t" " "
  echo "network:  $(tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d " ")"
  echo "write /:  $(touch /probe 2>&1)"
  echo "uid map:  $(cat /proc/self/uid_map | tr -s " ")"
'

echo
echo "== seen from the host: the environment runs under an unprivileged uid of its own"
"$warren" run --name demo-host --rootfs "$root" -- /bin/sleep 2 &
# Wait until its launcher has recorded it (the record carries the workload's host pid).
for _ in $(seq 250); do
  "$warren" inspect demo-host 2>/dev/null | grep -q '"pid": [0-9]' && break
  sleep 0.02
done
"$warren" ps
pid=$("$warren" ps --json | python3 -c 'import sys, json; print(json.loads(sys.stdin.readline())["pid"])')
echo "host /proc/$pid/status: $(grep -E '^Uid:' /proc/$pid/status | tr '\t' ' ')"
wait

echo
echo "== the same, with a JSON report of what was applied (last line)"
# (sed, unlike head, reads to the end: no SIGPIPE for json.tool under pipefail)
"$warren" run --rootfs "$root" --json -- /bin/true | tail -n 1 | python3 -m json.tool | sed -n 1,40p

# ----- a network space -----

echo
echo "== a network space: examples/demo/spaces.toml"
: > "$demo/empty.toml"
if "$warren" diff "$demo/empty.toml" >/dev/null 2>&1 || [ $? -eq 1 ]; then
  echo "A Warren kernel is already running here. The demo applies its manifest only to a kernel"
  echo "it started itself (applying would stop that kernel's other environments); stop it and"
  echo "run the demo again to see this part."
  exit 0
fi
cp examples/demo/spaces.toml "$demo/spaces.toml"   # `image = "root"` is $demo/root

# The kernel runs in the background in a session of its own (so that ^C reaches the demo, whose
# clean-up then stops the environments before the kernel), with its audit log in the demo
# directory.
setsid "$warren" daemon --audit-log "$demo/audit.jsonl" >"$demo/kernel.log" 2>&1 </dev/null &
kernel_pid=$!
for _ in $(seq 250); do
  rc=0
  "$warren" diff "$demo/empty.toml" >/dev/null 2>&1 || rc=$?
  [ "$rc" -le 1 ] && break
  sleep 0.02
done
echo "kernel started (warren daemon, pid $kernel_pid)"
leftovers=$("$warren" ps -a -q | grep -xE 'store|client|intruder|front' || true)
if [ -n "$leftovers" ]; then
  echo "removing what an earlier demo left behind: $(echo $leftovers)"
  "$warren" stop -t 1 $leftovers >/dev/null
  "$warren" rm $leftovers >/dev/null
fi

echo
echo "== warren apply spaces.toml"
"$warren" apply "$demo/spaces.toml"

exited() { "$warren" ps -a --json | grep "\"name\":\"$1\"" | grep -q '"state":"exited"'; }
for _ in $(seq 300); do
  exited client && exited intruder && break
  sleep 0.1
done

echo
echo "== the store: no network, a mailbox of its own; it answers what arrives there"
"$warren" logs store
echo
echo "== the client: declared with may_send = [\"store\"], so it holds a capability to the store"
"$warren" logs client
echo
echo "== the intruder: declared with no capability; every attempt is refused by the kernel"
"$warren" logs intruder
echo
refusals=$(grep -c '"env":"intruder"' "$demo/audit.jsonl" || true)
others=$(grep -vc '"env":"intruder"' "$demo/audit.jsonl" || true)
echo "== the kernel's audit log: $refusals refused requests from the intruder, $others from anyone else"
grep '"env":"intruder"' "$demo/audit.jsonl" | sed -n '1p;$p' || true

echo
echo "== the front: its own interface, published on 127.0.0.1:8088; it reaches the store only through its mailbox"
for _ in $(seq 200); do
  curl -s -o /dev/null --max-time 1 'http://127.0.0.1:8088/cgi-bin/kv?colour' && break
  sleep 0.05
done
"$warren" logs front
for q in 'colour' 'colour=green' 'colour' 'size'; do
  echo "curl http://127.0.0.1:8088/cgi-bin/kv?$q -> $(curl -s --max-time 5 "http://127.0.0.1:8088/cgi-bin/kv?$q")"
done
"$warren" inspect front | python3 -c 'import json, sys
n = json.load(sys.stdin)["applied"]["net"]
print("front:  %s %s (host end %s), published %s" % (n["interface"], n["address"], n["host_interface"], ", ".join(n["published"])))
print("        rules: %s" % "; ".join(n["rules"]))'
echo "store:  network $("$warren" inspect store | python3 -c 'import json, sys; print(json.load(sys.stdin)["applied"]["network"])')"
front_ip=$("$warren" inspect front | python3 -c 'import json, sys; print(json.load(sys.stdin)["applied"]["net"]["address"].split("/")[0])')
echo "curl http://$front_ip/ (the front, not through the published port) -> $(curl -s --max-time 2 "http://$front_ip/" >/dev/null 2>&1 && echo reached || echo refused)"
echo "curl http://127.0.0.1:8089/ (nothing published there) -> $(curl -s --max-time 2 http://127.0.0.1:8089/ >/dev/null 2>&1 && echo reached || echo refused)"

echo
echo "== each request in a fresh environment: /cgi-bin/one spawns a child from the template \"request\" per request"
for q in 'colour' 'colour=violet' 'colour'; do
  echo "curl http://127.0.0.1:8088/cgi-bin/one?$q -> $(curl -s --max-time 10 "http://127.0.0.1:8088/cgi-bin/one?$q")"
done
echo "(each child found nothing in its /tmp although every one writes a secret there, had no network, and held"
echo " exactly its own mailbox and the two names the front gave it)"
n=${DEMO_REQUESTS:-1000}
echo "now $n requests, one environment each..."
start=$(date +%s.%N)
bad=0
for i in $(seq "$n"); do
  r=$(curl -s --max-time 10 "http://127.0.0.1:8088/cgi-bin/one?k$((i % 7))=v$i")
  case "$r" in
    *": ok (found in /tmp: nothing; network: none; names: request-"*" store reply)") ;;
    *) bad=$((bad + 1)); [ "$bad" -le 3 ] && echo "unexpected answer: $r" ;;
  esac
done
secs=$(python3 -c "import sys; print('%.1f' % (float(sys.argv[2]) - float(sys.argv[1])))" "$start" "$(date +%s.%N)")
left=$("$warren" ps -a -q | grep -c '^request-' || true)
echo "$n requests in $secs s, $bad unexpected answers; request environments left: $left"

echo
echo "== warren ps -a --json, in short"
"$warren" ps -a --json | python3 -c 'import json, sys
for line in sys.stdin:
    e = json.loads(line)
    if e["name"] not in ("store", "client", "intruder", "front"):
        continue
    end = "" if e["last_exit"] is None else "  last exit %s" % e["last_exit"]
    print("%-9s %-8s restarts %s%s" % (e["name"], e["state"], e["restarts"], end))'

echo
echo "== cleaning up: stop and remove the environments, stop the kernel"
"$warren" stop -t 1 store client intruder front >/dev/null
"$warren" rm store client intruder front >/dev/null
kill -TERM "$kernel_pid"
wait "$kernel_pid" || true
kernel_pid=
left=$("$warren" ps -a -q | grep -cxE 'store|client|intruder|front' || true)
echo "environments left: $left; kernel running: $("$warren" diff "$demo/empty.toml" >/dev/null 2>&1 && echo yes || echo no)"
# A veth host end goes with its environment's network namespace, which the kernel frees
# asynchronously after the last process has gone: give it up to 5 s before counting.
for _ in $(seq 50); do
  ls /sys/class/net | grep -q '^wrn' || break
  sleep 0.1
done
links=$(ls /sys/class/net | grep -c '^wrn' || true)
elements=$(nft list table inet warren 2>/dev/null | grep -c 'elements = ' || true)
echo "network left: $links veth host ends, $elements filter sets with elements"
