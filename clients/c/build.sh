#!/usr/bin/env bash
# Build libwarren for C: libwarren.a (cargo), libwarren.so.0 (linked from it here) and
# warren.h, into $OUT (default target/warren-c: lib/, include/), and check that the header and
# the library's exported symbols agree. With PREFIX set, install there too (lib/, include/,
# then ldconfig), so that `cc -o x x.c -lwarren` finds them.
#
#   bash clients/c/build.sh                     # debug build into target/warren-c
#   PROFILE=release bash clients/c/build.sh     # release build
#   PREFIX=/usr/local bash clients/c/build.sh   # and install
#
# Why the shared library is linked here and not by cargo: the workspace builds its binaries with
# a static C library (`+crt-static` in .cargo/config.toml), and rustc refuses the
# `cdylib` crate type on such a target. The static library is position-independent, so it is
# linked into a shared object with the system compiler; the version script exports exactly
# the functions warren.h declares (soname libwarren.so.0).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
profile=${PROFILE:-debug}
out=${OUT:-$repo/target/warren-c}
version=0.1.0
die() { echo "clients/c/build.sh: $*" >&2; exit 1; }

# For glibc: the library is linked into the host's programs, which use glibc (Warren's own
# binaries are musl, .cargo/config.toml).
flags=(--locked -q -p warren-capi --target x86_64-unknown-linux-gnu)
[ "$profile" = release ] && flags+=(--release)
(cd "$repo" && cargo build "${flags[@]}")
a="$repo/target/x86_64-unknown-linux-gnu/$profile/libwarren.a"
[ -f "$a" ] || die "cargo left no $a"
header="$repo/crates/warren-capi/include/warren.h"

mkdir -p "$out/lib" "$out/include"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# The functions the header declares, and those the static library defines.
grep -oE '\bwarren_[a-z0-9_]+\(' "$header" | tr -d '(' | sort -u > "$tmp/declared"
# readelf, not nm: a release build's objects also carry LLVM bitcode (thin LTO), which binutils'
# nm hands to its LTO plugin and then reports no symbols.
readelf -sW "$a" | awk '$4 == "FUNC" && $5 == "GLOBAL" && $7 != "UND" && $8 ~ /^warren_/ {print $8}' | sort -u > "$tmp/defined"
if ! diff -u "$tmp/declared" "$tmp/defined" > "$tmp/diff"; then
  cat "$tmp/diff" >&2
  die "warren.h and libwarren.a disagree (- declared only, + defined only)"
fi

{ echo "WARREN_0 {"; echo "  global:"; sed 's/.*/    &;/' "$tmp/declared"; echo "  local: *;"; echo "};"; } > "$tmp/warren.map"
so="libwarren.so.$version"
cc -shared -o "$out/lib/$so" -Wl,-soname,libwarren.so.0 -Wl,--version-script="$tmp/warren.map" \
  -Wl,--whole-archive "$a" -Wl,--no-whole-archive -lgcc_s -lpthread -ldl -lm
ln -sf "$so" "$out/lib/libwarren.so.0"
ln -sf libwarren.so.0 "$out/lib/libwarren.so"
cp "$a" "$out/lib/libwarren.a"
cp "$header" "$out/include/warren.h"

nm -D --defined-only "$out/lib/$so" | awk '$3 ~ /^warren_/ {sub(/@.*/, "", $3); print $3}' | sort -u > "$tmp/exported"
if ! diff -u "$tmp/declared" "$tmp/exported" > "$tmp/diff"; then
  cat "$tmp/diff" >&2
  die "warren.h and libwarren.so disagree (- declared only, + exported only)"
fi
# Every declaration compiles as C and C++-compatible C with every warning.
printf '#include <warren.h>\nint main(void) { return warren_status_name(0) == 0; }\n' > "$tmp/h.c"
cc -std=c99 -Wall -Wextra -Werror -pedantic -I"$out/include" -c "$tmp/h.c" -o "$tmp/h.o"
echo "clients/c/build.sh: $(wc -l < "$tmp/declared") functions in warren.h = exported by $out/lib/$so" >&2

if [ -n "${PREFIX:-}" ]; then
  install -d "$PREFIX/lib" "$PREFIX/include"
  install -m 0644 "$out/lib/$so" "$out/lib/libwarren.a" "$PREFIX/lib/"
  ln -sf "$so" "$PREFIX/lib/libwarren.so.0"
  ln -sf libwarren.so.0 "$PREFIX/lib/libwarren.so"
  install -m 0644 "$header" "$PREFIX/include/warren.h"
  command -v ldconfig >/dev/null && ldconfig
  echo "clients/c/build.sh: installed into $PREFIX" >&2
fi
