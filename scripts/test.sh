#!/usr/bin/env bash
# Warren's whole test suite: set-up, formatting, lints, a bounded fuzz run of the protocol
# decoder, then every unit and integration test.
# Must run as root (the integration tests start real environments). Used by .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
if [ "$(id -u)" -ne 0 ]; then
  echo "test: the integration tests start environments and must run as root" >&2
  exit 1
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== ARCHITECTURE.md names only paths that exist"
bash scripts/check-architecture.sh --self-test
bash scripts/check-architecture.sh ARCHITECTURE.md docs/internals.md
echo "== the benchmark tools replay and resolve what the real programs do"
python3 bench/predecessors.py --self-test
python3 scripts/code-faults.py --self-test
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== module graph of warren-attest (no cycles; the evidence layer never uses the io layer)"
python3 scripts/modcycles.py crates/warren-attest/src evidence:io | tail -n 1
echo "== module graphs of the launcher crates (no cycles)"
for crate in warren-sandbox warren-seccomp warren-cgroup warren-elf; do
  echo -n "$crate: "
  python3 scripts/modcycles.py "crates/$crate/src" | tail -n 1
done
# The TPM agent is outside the workspace: tpm2-tss exists only as shared libraries, so it is
# linked dynamically, into a target directory of its own (the TPM tests find it there).
echo "== warren-tpm (fmt, clippy, build; dynamically linked)"
export WARREN_TPM_AGENT="$PWD/target/tpm/x86_64-unknown-linux-gnu/debug/warren-tpm"
(
  cd crates/warren-tpm
  export RUSTFLAGS="-C target-feature=-crt-static" CARGO_TARGET_DIR="$PWD/../../target/tpm"
  cargo fmt -- --check
  # glibc, not the workspace's musl (.cargo/config.toml): tpm2-tss is glibc shared libraries.
  cargo clippy --locked --target x86_64-unknown-linux-gnu --all-targets -- -D warnings
  cargo build --locked --target x86_64-unknown-linux-gnu
)
echo "== fuzz the protocol decoder (bounded)"
FUZZ_SECONDS="${FUZZ_SECONDS:-30}" bash scripts/fuzz.sh 2>&1 | tail -n 3
echo "== cargo test"
cargo test --workspace --locked --no-fail-fast 2>&1 | tee /tmp/warren-test.log
# One closing line for the whole run: the sum of every test binary's result line.
grep -E '^test result:' /tmp/warren-test.log |
  awk '{p += $4; f += $6} END {printf "tests: %d passed, %d failed\n", p, f}'

# --- clients (issue 17): the Python package installed as docs/python.md says (a venv; offline,
# with Debian's setuptools), its conformance and fake-kernel tests, then the C and Python
# clients inside environments against a real kernel (clients/tests/live.sh).
echo "== clients: pip install ./clients/python into a venv, pytest"
venv=$(mktemp -d)
/usr/bin/python3 -m venv --system-site-packages "$venv"
"$venv/bin/pip" install -q --no-build-isolation --no-index ./clients/python
(cd "$venv" && "$venv/bin/python" -m pytest -q -p no:cacheprovider "$OLDPWD/clients/python/tests")
rm -rf "$venv" clients/python/build clients/python/src/warren.egg-info
echo "== clients: C and Python inside environments"
bash clients/tests/live.sh
# --- end clients
