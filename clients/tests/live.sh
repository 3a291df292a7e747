#!/usr/bin/env bash
# Live tests of the C and Python clients, run INSIDE environments against a real kernel: a
# `warren daemon` on a private state directory, environments started with `warren run`.
#
#   1. C: the conformance test (vectors.txt through libwarren's decoder and encoder), then
#      `live ops` (every operation and its error paths: revoked, used-up, not-found, full,
#      dead, no-right, no-such-handle, timeout, bad-request; the event-loop interface) in an
#      environment, and the `version` refusal against a fake kernel; then `live spawn` in an
#      environment `warren apply` starts with SPAWN on a template whose command is `live kid`
#      (protocol version 3: spawn by the event loop and blocking, initial names, stop, restrict,
#      a refused variable).
#   2. Python: pytest inside an environment whose root holds the host's python3, its standard
#      library and the package installed with pip (clients/python/make-root.sh): the vectors,
#      then every operation and error path, blocking and asyncio.
#   3. Every pair of client and server across C, Python and Rust: three echo servers (C
#      echo_server, Python async_echo_server.py, Rust rust_echo), each called by the C, Python
#      and Rust (`warren-msg call`) clients, the convention of warren-msg call (reply through
#      the one-shot reply handle, with the request's correlation id).
#
# Must run as root. Prints one line per step and "live.sh: all passed" at the end; exits
# non-zero at the first failure. Leaves nothing behind (state directory, roots, daemon).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
die() { echo "live.sh: FAIL: $*" >&2; exit 1; }
say() { echo "== $*" >&2; }
[ "$(id -u)" = 0 ] || die "run as root (environments need namespaces and cgroups)"

say "building warren, warren-msg, libwarren and the Rust echo server"
# Two commands: `--example` would limit the first to the example target.
(cd "$repo" && cargo build --locked -q -p warren -p warren-client)
(cd "$repo" && cargo build --locked -q -p warren-capi --example rust_echo)
bash "$repo/clients/c/build.sh"
bin="$repo/target/x86_64-unknown-linux-musl/debug"
warren="$bin/warren"
lib="$repo/target/warren-c/lib"
inc="$repo/target/warren-c/include"

work=$(mktemp -d /var/tmp/warren-clients.XXXXXX)
chmod 0755 "$work"
state="/run/warren-clients-$$"
daemon=""
servers=()
cleanup() {
  set +e
  # A second TERM kills a workload that ignores the first (pid 1 of its namespace).
  for pid in "${servers[@]}"; do kill -TERM "$pid" 2>/dev/null; done
  sleep 0.2
  for pid in "${servers[@]}"; do kill -TERM "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; done
  [ -n "$daemon" ] && kill "$daemon" 2>/dev/null && wait "$daemon" 2>/dev/null
  rm -rf "$work" "$state"
}
trap cleanup EXIT

say "compiling the C tests and examples with $(cc --version | head -1)"
cflags=(-std=gnu99 -O2 -Wall -Wextra -Werror -I"$inc")
for t in tests/vectors tests/live examples/echo_server examples/call examples/evloop; do
  cc "${cflags[@]}" -o "$work/$(basename "$t")" "$repo/clients/c/$t.c" -L"$lib" -lwarren -Wl,-rpath,"$lib"
done
# And once against the static library, linked as docs/c.md says: it needs nothing but the C
# library (libc.so.6 and its loader; -static-libgcc keeps libgcc_s.so.1 out).
cc "${cflags[@]}" -o "$work/live-static" "$repo/clients/c/tests/live.c" "$lib/libwarren.a" -static-libgcc -lpthread -ldl -lm
needed=$(readelf -dW "$work/live-static" | awk '$2 == "(NEEDED)" {gsub(/[][]/, "", $5); print $5}' | grep -Ev '^(libc\.so\.6|ld-linux-x86-64\.so\.2)$' || true)
[ -z "$needed" ] || die "a program linked with libwarren.a needs more than the C library: $needed"
"$work/vectors" "$repo/crates/warren-proto/tests/vectors.txt" >&2 || die "C conformance"

say "building the Python root (host python3, its standard library, pytest, the package)"
WITH_DIST=1 bash "$repo/clients/python/make-root.sh" "$work/pyroot" >/dev/null
cp -r "$repo/clients/python/tests" "$work/pyroot/opt/tests"
cp -r "$repo/clients/python/examples" "$work/pyroot/opt/examples"
cp "$repo/crates/warren-proto/tests/vectors.txt" "$work/pyroot/opt/vectors.txt"

say "starting a kernel on $state"
mkdir -p "$state"
setpriv --pdeathsig KILL -- "$warren" --state-dir "$state" daemon --audit-log "$state/audit.jsonl" \
  </dev/null 2>"$work/daemon.log" &
daemon=$!
for _ in $(seq 200); do [ -S "$state/kernel.sock" ] && break; sleep 0.05; done
[ -S "$state/kernel.sock" ] || die "no kernel came up: $(cat "$work/daemon.log")"

W() { WARREN_MSG_BIN="$bin/warren-msg" "$warren" --state-dir "$state" run "$@"; }
knows() { "$warren" --state-dir "$state" inspect "$1" >/dev/null 2>&1; }

say "C: every operation inside an environment (shared library, then static)"
W --name c-ops --binary "$work/live" -- "$work/live" ops || die "C live ops"
W --name c-ops-static --binary "$work/live-static" -- "$work/live-static" ops || die "C live ops (static)"
"$work/live" fake-version || die "C version refusal"
"$work/live" not-a-socket || die "C: warren_from_fd on a pipe"

say "C: spawn from a template (protocol version 3)"
cat > "$work/spawn.toml" <<EOF
[template.c-kid]
image = { binary = "$work/live" }
command = ["$work/live", "kid"]
max_instances = 2
args = true
env_allow = ["KID_WORD"]

[space.c-spawner]
image = { binary = "$work/live" }
command = ["$work/live", "spawn", "c-kid"]
may_spawn = ["c-kid"]
EOF
"$warren" --state-dir "$state" apply "$work/spawn.toml" >&2 || die "applying the spawn manifest"
log=""
for _ in $(seq 600); do
  log=$("$warren" --state-dir "$state" logs c-spawner 2>&1 || true)
  echo "$log" | grep -q "^live spawn:" && break
  sleep 0.1
done
echo "$log" | grep -q "^live spawn: [0-9]* checks, 0 failures" || die "C spawn: $log"
echo "$log" | grep "^live spawn:" >&2

say "Python: pytest inside an environment"
W --name py-tests --rootfs "$work/pyroot" -e PYWARREN_LIVE=sync -e PYWARREN_VECTORS=/opt/vectors.txt \
  -e PYTHONDONTWRITEBYTECODE=1 \
  -- /usr/bin/python3 -m pytest -q -p no:cacheprovider /opt/tests || die "Python tests in an environment"
W --name py-tests-async --rootfs "$work/pyroot" -e PYWARREN_LIVE=async -e PYTHONDONTWRITEBYTECODE=1 \
  -- /usr/bin/python3 -m pytest -q -p no:cacheprovider /opt/tests/test_live_async.py || die "Python asyncio tests in an environment"

say "every pair of client and server: C, Python, Rust"
W --name c-echo --binary "$work/echo_server" -- "$work/echo_server" 2>"$work/c-echo.log" &
s1=$!
servers+=("$s1")
W --name py-echo --rootfs "$work/pyroot" -- /usr/bin/python3 /opt/examples/async_echo_server.py 2>"$work/py-echo.log" &
s2=$!
servers+=("$s2")
W --name rs-echo --binary "$bin/examples/rust_echo" -- "$bin/examples/rust_echo" 2>"$work/rs-echo.log" &
s3=$!
servers+=("$s3")
for s in c-echo py-echo rs-echo; do
  for _ in $(seq 400); do knows "$s" && break; sleep 0.05; done
  knows "$s" || die "server $s did not start"
done
pairs=0
for s in c-echo py-echo rs-echo; do
  out=$(W --name "cc-$s" --binary "$work/live" --may-send "$s" -- "$work/live" call "$s" "from-c-to-$s") \
    || die "C client -> $s"
  [ "$out" = "from-c-to-$s" ] || die "C client -> $s answered '$out'"
  out=$(W --name "pc-$s" --rootfs "$work/pyroot" --may-send "$s" -- /usr/bin/python3 /opt/examples/call.py "$s" "from-py-to-$s") \
    || die "Python client -> $s"
  [ "$out" = "from-py-to-$s" ] || die "Python client -> $s answered '$out'"
  out=$(W --name "rc-$s" --binary "$bin/warren-msg" --may-send "$s" -- "$bin/warren-msg" call "$s" "from-rust-to-$s" --timeout 10000) \
    || die "Rust client -> $s"
  echo "$out" | grep -q "\"body\":\"from-rust-to-$s\"" || die "Rust client -> $s answered '$out'"
  echo "$out" | grep -q "\"from\":\"$s\"" || die "Rust client -> $s: answer not from $s: '$out'"
  pairs=$((pairs + 3))
  echo "   $s answered C, Python and Rust" >&2
done
# The event-loop example: 100 calls in flight at once against the C server.
W --name c-evloop --binary "$work/evloop" --may-send c-echo -- "$work/evloop" c-echo 100 >&2 || die "C event loop"
# Down notices and `dead` after an environment ends: C watches the Python server stop, Python
# the Rust one; the C server is stopped by warren-msg.
W --name c-down --binary "$work/live" --may-send py-echo -- "$work/live" down py-echo || die "C: down notice"
W --name py-down --rootfs "$work/pyroot" --may-send rs-echo -- /usr/bin/python3 /opt/examples/watch_and_stop.py rs-echo >&2 \
  || die "Python: down notice"
W --name stop-c-echo --binary "$bin/warren-msg" --may-send c-echo -- "$bin/warren-msg" call c-echo stop --timeout 10000 >/dev/null \
  || die "stopping c-echo"
for pid in $s1 $s2 $s3; do wait "$pid" || die "a server failed (logs: $(cat "$work"/*-echo.log))"; done
servers=()
echo "live.sh: all passed ($pairs client/server pairs crossed)" >&2
