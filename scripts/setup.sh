#!/usr/bin/env bash
# Install what Warren's build, demo and tests need on a fresh Debian 12 machine (run as root).
# Idempotent: installs only what is missing, and runs `apt-get update` only then.
set -euo pipefail

need=()
have() { command -v "$1" >/dev/null 2>&1; }
[ -x /bin/busybox ] && /bin/busybox --list >/dev/null 2>&1 && file_is_static=$(ldd /bin/busybox 2>&1 | grep -c "not a dynamic" || true) || file_is_static=0
[ "${file_is_static:-0}" -ge 1 ] || need+=(busybox-static)
have patchelf || need+=(patchelf)
have flock || need+=(util-linux)
have ldd || need+=(libc-bin)
have cc || need+=(gcc)
# Warren's binaries are static musl programs (.cargo/config.toml): C code in dependencies is
# compiled with musl-gcc.
have musl-gcc || need+=(musl-tools)
have setcap || need+=(libcap2-bin)
have script || need+=(bsdutils)
have setpriv || need+=(util-linux)
# `warren run --binary /usr/bin/python3` (docs/cli.md) and its test.
have python3 || need+=(python3)
# Networked environments (docs/network.md): the packet filter; the tests and the demo use ip,
# nsenter and curl.
have nft || [ -x /usr/sbin/nft ] || need+=(nftables)
have ip || [ -x /usr/sbin/ip ] || [ -x /sbin/ip ] || need+=(iproute2)
have nsenter || need+=(util-linux)
have curl || need+=(curl)
# Attestation: the TPM agent links tpm2-tss; the TPM tests run swtpm with EK certificates from
# swtpm_setup; the attestation benchmark compares with b3sum and sha256sum.
[ -e /usr/include/tss2/tss2_esys.h ] || need+=(libtss2-dev)
have pkg-config || need+=(pkg-config)
have swtpm || need+=(swtpm)
have swtpm_setup || need+=(swtpm-tools)
have b3sum || need+=(b3sum)
# The boot-chain tests cross-check the UEFI event log and PCRs with tpm2-tools (an independent
# parser: tpm2_eventlog, tpm2_pcrread); bench/attest.sh compares with tpm2_quote + tpm2_checkquote.
have tpm2_eventlog || need+=(tpm2-tools)
# Federation tests and bench/federation.sh start private RabbitMQ nodes on loopback
# (scripts/rabbitmq-instance.sh); the package's own node is not used.
[ -x /usr/lib/rabbitmq/bin/rabbitmq-server ] || need+=(rabbitmq-server)
# Images (issue 9): tests build OCI layouts with umoci and compress layers with gzip and zstd;
# bench/image.sh compares with umoci under hyperfine.
have umoci || need+=(umoci)
have zstd || need+=(zstd)
have gzip || need+=(gzip)
have hyperfine || need+=(hyperfine)

# --- clients (issue 17): the C library's tests compile with the system cc (above); the Python
# package's tests use Debian's python3 with pytest, venv, pip and setuptools (docs/python.md).
[ -x /usr/bin/python3 ] || need+=(python3)
/usr/bin/python3 -c 'import pytest' 2>/dev/null || need+=(python3-pytest)
/usr/bin/python3 -c 'import ensurepip' 2>/dev/null || need+=(python3-venv)
/usr/bin/python3 -m pip --version >/dev/null 2>&1 || need+=(python3-pip)
/usr/bin/python3 -c 'import setuptools' 2>/dev/null || need+=(python3-setuptools)
# --- end clients

if [ "${#need[@]}" -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: missing packages ${need[*]}; run as root to install them" >&2
    exit 1
  fi
  echo "setup: installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# The Rust standard library for the musl target (.cargo/config.toml), from the toolchain's own
# distribution server (rustup).
if command -v rustup >/dev/null 2>&1 \
    && ! rustup target list --installed 2>/dev/null | grep -qx x86_64-unknown-linux-musl; then
  echo "setup: adding the Rust target x86_64-unknown-linux-musl"
  rustup target add x86_64-unknown-linux-musl
fi

# The Salt state's test (crates/warren/tests/workloads.rs) runs a masterless minion of Salt 3008
# from PyPI in its own virtualenv; the versions are pinned in salt-requirements.txt (resolving
# them afresh backtracks for minutes).
if [ ! -e /opt/warren-salt/.installed ]; then
  python3 -c 'import venv, ensurepip' 2>/dev/null || {
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
  }
  echo "setup: installing Salt into /opt/warren-salt"
  rm -rf /opt/warren-salt
  python3 -m venv /opt/warren-salt
  /opt/warren-salt/bin/pip install -q --no-deps -r "$(dirname "$0")/salt-requirements.txt"
  touch /opt/warren-salt/.installed
fi

if ! have cargo; then
  echo "setup: cargo is not on PATH; Warren needs the Rust toolchain (1.85 or newer)" >&2
  exit 1
fi
