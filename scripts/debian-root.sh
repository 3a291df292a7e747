#!/usr/bin/env bash
# Build (once) and print the path of a Debian bookworm root for tests and benchmarks: a
# `debootstrap --variant=minbase` root from the mirror this machine's apt already uses, with the
# ordinary packages real workloads need (issue 13's start-up benchmark, issue 15's workloads).
#
#   bash scripts/debian-root.sh            # prints the root's path, building it if absent
#   WARREN_DEBIAN_ROOT_CACHE=/somewhere bash scripts/debian-root.sh
#
# The root is cached under $WARREN_DEBIAN_ROOT_CACHE (default /var/cache/warren-test), keyed by
# the package list, and is built in a temporary directory renamed into place only when complete,
# so an interrupted build leaves nothing that a later run would take for a finished root. Run as
# root. Everything it prints except the final path goes to standard error.
set -euo pipefail

packages=(
  python3 nginx redis-server postgresql nodejs openjdk-17-jre-headless gcc libc6-dev git
  sqlite3 perl openssl ca-certificates procps
)
cache="${WARREN_DEBIAN_ROOT_CACHE:-/var/cache/warren-test}"
key=$(printf '%s\n' bookworm "${packages[@]}" | sha256sum | cut -c1-12)
root="$cache/debian-bookworm-$key"

if [ -f "$root.complete" ]; then
  echo "$root"
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "debian-root: building the root needs root (debootstrap)" >&2
  exit 1
fi

mirror=""
if [ -f /etc/apt/sources.list.d/debian.sources ]; then
  mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources)
fi
if [ -z "$mirror" ] && [ -f /etc/apt/sources.list ]; then
  mirror=$(awk '$1 == "deb" {print $2; exit}' /etc/apt/sources.list)
fi
if [ -z "$mirror" ]; then
  echo "debian-root: no Debian mirror found in /etc/apt/sources.list.d/debian.sources or /etc/apt/sources.list" >&2
  exit 1
fi
if ! command -v debootstrap >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq --no-install-recommends debootstrap >&2
fi

mkdir -p "$cache"
# One builder at a time per cache; a second caller waits and then finds the finished root.
exec 9>"$cache/.lock"
flock 9
if [ -f "$root.complete" ]; then
  echo "$root"
  exit 0
fi

work=$(mktemp -d "$cache/.build-XXXXXX")
# mktemp makes the directory 0700; a root must be readable by the unprivileged uids it runs as.
chmod 0755 "$work"
cleanup() {
  umount -l "$work/proc" 2>/dev/null || true
  umount -l "$work/dev" 2>/dev/null || true
  rm -rf --one-file-system "$work"
}
trap cleanup EXIT

echo "debian-root: debootstrap --variant=minbase bookworm from $mirror" >&2
debootstrap --variant=minbase bookworm "$work" "$mirror" >&2
# No service starts inside the chroot while packages install.
printf '#!/bin/sh\nexit 101\n' >"$work/usr/sbin/policy-rc.d"
chmod 0755 "$work/usr/sbin/policy-rc.d"
cp /etc/resolv.conf "$work/etc/resolv.conf"
mount -t proc proc "$work/proc"
mount --bind /dev "$work/dev"
echo "debian-root: installing ${packages[*]}" >&2
chroot "$work" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
  "${packages[@]}" >&2
chroot "$work" apt-get clean
umount -l "$work/proc"
umount -l "$work/dev"
rm -f "$work/usr/sbin/policy-rc.d" "$work/etc/resolv.conf"
rm -rf "$work/var/lib/apt/lists/"*
rm -rf --one-file-system "$root"
mv "$work" "$root"
# The marker sits beside the root, not in it, so it is no part of what a launch measures.
date -u +%Y-%m-%dT%H:%M:%SZ >"$root.complete"
trap - EXIT
echo "$root"
