#!/usr/bin/env bash
# Checks that every repository path ARCHITECTURE.md names exists, so the map cannot point at
# files that moved or went away. A "path" is a `code span` or a Markdown link target that starts
# with a top-level directory or file of the repository (crates/, docs/, scripts/, bench/,
# contrib/, examples/, fuzz/, .ci/, .cargo/, or a root file such as Cargo.toml) or with a crate's
# directory (`warren-kernel/src/kernel.rs`, taken as relative to crates/), with any
# `path:line` suffix dropped. Spans with a placeholder (`<state>`, `*`, `...`) are skipped.
#
# usage: scripts/check-architecture.sh [FILE...]   (default: ARCHITECTURE.md)
#        scripts/check-architecture.sh --self-test  (proves the check fails on a missing path)
set -euo pipefail
cd "$(dirname "$0")/.."

check() {
  local file=$1 missing=0 checked=0
  # Code spans and link targets, one per line.
  local names
  names=$(grep -oE '`[^`]+`|\]\([^)]+\)' "$file" | sed -E 's/^`(.*)`$/\1/; s/^\]\((.*)\)$/\1/')
  while IFS= read -r name; do
    [ -n "$name" ] || continue
    case "$name" in
      *'<'*|*'*'*|*'...'*|*' '*|http*|'#'*) continue ;;
    esac
    name=${name%%#*}
    name=${name%%:*}
    case "$name" in
      crates/*|docs/*|scripts/*|bench/*|contrib/*|examples/*|fuzz/*|.ci/*|.cargo/*) ;;
      Cargo.toml|Cargo.lock|README.md|BENCHMARKS.md|ARCHITECTURE.md|rustfmt.toml) ;;
      # A path given relative to crates/ (`warren/src/daemon/mod.rs`).
      warren/*|warren-*/*)
        [ -d "crates/${name%%/*}" ] || continue # a name like `warren-tree/1`, not a crate
        name="crates/$name"
        ;;
      *) continue ;;
    esac
    checked=$((checked + 1))
    if [ ! -e "$name" ]; then
      echo "$file names $name, which does not exist" >&2
      missing=$((missing + 1))
    fi
  done <<< "$names"
  if [ "$missing" -ne 0 ]; then
    echo "check-architecture: $missing of $checked paths named in $file are missing" >&2
    return 1
  fi
  echo "check-architecture: all $checked paths named in $file exist"
}

if [ "${1:-}" = "--self-test" ]; then
  tmp=$(mktemp)
  trap 'rm -f "$tmp"' EXIT
  printf 'The map names `crates/warren/src/main.rs` and [x](crates/no-such-crate/src/lib.rs).\n' > "$tmp"
  if check "$tmp" 2>/dev/null; then
    echo "check-architecture: self-test failed: a missing path was not reported" >&2
    exit 1
  fi
  printf 'The map names `crates/warren/src/main.rs` and [x](docs/cli.md).\n' > "$tmp"
  check "$tmp" >/dev/null
  echo "check-architecture: self-test passed"
  exit 0
fi

status=0
for f in "${@:-ARCHITECTURE.md}"; do
  check "$f" || status=1
done
exit "$status"
