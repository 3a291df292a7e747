#!/usr/bin/env bash
# Warren's demo: build, make a small busybox root, and run a command in a fully isolated
# environment, showing what isolation it got. Run as root on Debian 12.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
echo "== building warren"
cargo build --release --locked -p warren 2>&1 | tail -n 1
warren=target/x86_64-unknown-linux-gnu/release/warren

root=$(mktemp -d /tmp/warren-demo-root.XXXXXX)
chmod 755 "$root"
trap 'rm -rf "$root"' EXIT
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
for _ in $(seq 100); do "$warren" inspect demo-host >/dev/null 2>&1 && break; sleep 0.02; done
"$warren" ps
pid=$("$warren" ps --json | python3 -c 'import sys, json; print(json.loads(sys.stdin.readline())["pid"])')
echo "host /proc/$pid/status: $(grep -E '^Uid:' /proc/$pid/status | tr '\t' ' ')"
wait

echo
echo "== the same, with a JSON report of what was applied (last line)"
"$warren" run --rootfs "$root" --json -- /bin/true | tail -n 1 | python3 -m json.tool | head -n 40
