#!/usr/bin/env bash
# Build a root file system for `warren run --rootfs` that runs Python programs: the host's
# /usr/bin/python3 with its ELF libraries, its standard library, the Debian packages in
# /usr/lib/python3/dist-packages (with WITH_DIST=1: pytest and the like), and this `warren`
# package installed with pip. Files are hard-linked from the host when they can be (same file
# system), else copied. The root must stay readable by others (root inside an environment is
# an unprivileged uid outside).
#
#   bash clients/python/make-root.sh DIR             # then: warren run --rootfs DIR -- /usr/bin/python3 ...
#   WITH_DIST=1 bash clients/python/make-root.sh DIR # with the host's dist-packages (pytest)
set -euo pipefail

die() { echo "make-root.sh: $*" >&2; exit 1; }
[ $# -eq 1 ] || die "usage: make-root.sh DIR"
root=$1
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
py=$(readlink -f /usr/bin/python3)
[ -x "$py" ] || die "no /usr/bin/python3 (apt-get install python3)"
ver=$("$py" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
[ -d "/usr/lib/python$ver" ] || die "no standard library at /usr/lib/python$ver"

[ -e "$root" ] && die "$root exists"
mkdir -p "$root"/{proc,dev,tmp,sys,etc,usr/bin,opt}
# The host's merged-/usr links (/lib -> usr/lib, ...), so that paths through them resolve.
for d in bin sbin lib lib32 lib64 libx32; do
  if [ -L "/$d" ]; then ln -s "$(readlink "/$d")" "$root/$d"; mkdir -p "$root/$(readlink -f "/$d")"; fi
done
copy() { # copy host paths into the root, keeping their paths; hard links where possible
  for f in "$@"; do
    mkdir -p "$root$(dirname "$f")"
    cp -al "$f" "$root$f" 2>/dev/null || cp -a "$f" "$root$f"
  done
}
copy "$py"
[ -e "$root/usr/bin/python3" ] || ln -s "$(basename "$py")" "$root/usr/bin/python3"
# The interpreter's libraries and ELF interpreter, as the dynamic loader resolves them: each
# real file, and a link at the name the loader asks for.
for lib in $(ldd "$py" | awk '/=>/ {print $3} !/=>/ && $1 ~ /^\// {print $1}'); do
  real=$(readlink -f "$lib")
  copy "$real"
  at="$(readlink -f "$(dirname "$lib")")/$(basename "$lib")"
  if [ "$at" != "$real" ]; then mkdir -p "$root$(dirname "$at")"; ln -sf "$real" "$root$at"; fi
done
copy "/usr/lib/python$ver"
if [ "${WITH_DIST:-0}" = 1 ]; then
  copy /usr/lib/python3/dist-packages
fi
printf 'root:x:0:0:root:/:/bin/sh\n' > "$root/etc/passwd"
printf 'root:x:0:\n' > "$root/etc/group"
# The package, installed as a user would (no network: the build backend is Debian's
# python3-setuptools).
site="$root/usr/local/lib/python$ver/dist-packages"
"$py" -m pip install -q --no-deps --no-build-isolation --no-compile --target "$site" "$here" >&2
chmod 0755 "$root" "$root"/{proc,dev,tmp,sys,etc,usr,usr/bin,opt}
echo "$root"
