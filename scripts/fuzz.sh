#!/usr/bin/env bash
# Fuzz the wire-protocol decoder (fuzz/fuzz_targets/decode.rs) with libFuzzer for a bounded time.
#
#   scripts/fuzz.sh                 # 60 s
#   FUZZ_SECONDS=600 scripts/fuzz.sh
#
# Environment: FUZZ_SECONDS (default 60), FUZZ_TARGET (default decode), FUZZ_SANITIZER (default
# none: warren-proto has no unsafe code, and without AddressSanitizer the target runs about twice
# as fast; set `address` to check libFuzzer's own glue as well).
#
# cargo-fuzz wants nightly-only rustc flags (-Zsanitizer, coverage instrumentation); this machine
# has one stable toolchain, so RUSTC_BOOTSTRAP=1 unlocks them for this build only. Installs
# cargo-fuzz (from crates.io) and a C++ compiler (libFuzzer is C++) when missing. The corpus is
# seeded with every packet of crates/warren-proto/tests/vectors.txt. On a finding the input is
# left in fuzz/artifacts/<target>/ and the script fails; reproduce it with
#   RUSTC_BOOTSTRAP=1 cargo fuzz run -s none decode fuzz/artifacts/decode/<file>   (in fuzz/)
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${FUZZ_SECONDS:-60}"
target="${FUZZ_TARGET:-decode}"
sanitizer="${FUZZ_SANITIZER:-none}"

if ! command -v c++ >/dev/null 2>&1; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "fuzz: libFuzzer needs a C++ compiler; install g++ (or run as root)" >&2
    exit 1
  fi
  echo "fuzz: installing g++"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends g++ >/dev/null
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi

# Seed the corpus: one file per vector (`vector|invalid NAME DIR` then indented hex lines).
corpus="fuzz/corpus/$target"
mkdir -p "$corpus"
awk '
  { sub(/#.*/, "") }
  /^(vector|invalid) / { if (name != "") print name, hex; name = $2; hex = ""; next }
  /^[ \t]/ { gsub(/[ \t]/, ""); hex = hex $0 }
  END { if (name != "") print name, hex }
' crates/warren-proto/tests/vectors.txt |
  while read -r name hex; do
    printf '%b' "$(printf '%s' "${hex:-}" | sed 's/../\\x&/g')" > "$corpus/vector-$name"
  done

echo "fuzz: $target for ${seconds}s (sanitizer: $sanitizer)"
cd fuzz
RUSTC_BOOTSTRAP=1 cargo fuzz run --sanitizer "$sanitizer" "$target" -- \
  -max_total_time="$seconds" -print_final_stats=1
