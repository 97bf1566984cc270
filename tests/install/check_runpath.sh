#!/usr/bin/env bash
# Every ELF file under the given directories carries a run path whose
# elements are absolute or start at $ORIGIN. An empty element (CMake pads a
# build-tree run path with ':' to rewrite it at install) or a relative one
# makes the loader search the current directory: a library there would be
# loaded in place of ours or the system's.
set -euo pipefail
checked=0
bad=0
while IFS= read -r -d '' f; do
  head -c 4 "$f" 2>/dev/null | grep -q $'^\x7fELF' || continue
  checked=$((checked + 1))
  path=$(readelf -d "$f" 2>/dev/null | sed -n 's/.*(\(RUNPATH\|RPATH\)).*\[\(.*\)\]/\2/p')
  [ -z "$path" ] && continue
  IFS=':' read -r -a elems <<< "$path:"  # the extra ':' keeps a trailing empty element
  unset 'elems[${#elems[@]}-1]'
  for e in "${elems[@]}"; do
    case "$e" in
      /* | '$ORIGIN'*) ;;
      *)
        echo "$f: run path '$path' has the element '$e', which searches the current directory"
        bad=$((bad + 1))
        break
        ;;
    esac
  done
done < <(find "$@" -type f -print0)
[ "$checked" -gt 0 ] || { echo "no ELF files found under $*"; exit 1; }
[ "$bad" -eq 0 ] || exit 1
echo "ok: $checked ELF files, no run path searches the current directory"
