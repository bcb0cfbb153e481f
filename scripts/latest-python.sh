#!/usr/bin/env bash
# Print the newest Python (3.12 or later) this machine has, pyenv's included;
# print nothing when there is none newer than the one `make test` uses.
set -euo pipefail
main_minor=$("${PYTHON:-python3}" -c 'import sys; print(sys.version_info[1])')
candidates=()
for minor in 14 13 12; do
  found=$(command -v "python3.$minor" 2>/dev/null || true)
  [ -n "$found" ] && candidates+=("$found")
done
root=$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")
for path in "$root"/versions/3.*/bin/python3; do
  [ -x "$path" ] && candidates+=("$path")
done
best="" best_key=0
for python in "${candidates[@]}"; do
  key=$("$python" -c 'import sys; v = sys.version_info; print(v[1] * 1000 + v[2] if v[:2] >= (3, 12) and v.releaselevel == "final" else 0)' 2>/dev/null || echo 0)
  if [ "$key" -gt "$best_key" ]; then best=$python best_key=$key; fi
done
if [ -n "$best" ] && [ $((best_key / 1000)) -gt "$main_minor" ]; then echo "$best"; fi
