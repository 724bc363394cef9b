#!/usr/bin/env bash
# Fails when a linux-*-gnu addon asks for a glibc newer than the floor of
# Node 20's official Linux binaries (2.28): such a .node would not load on
# RHEL 8 or Debian 10, where Node itself runs.
set -euo pipefail
floor=${GLIBC_FLOOR:-2.28}
addon=${1:-native-cluster.linux-x64-gnu.node}
highest=$(objdump -T "$addon" | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/^GLIBC_//' | sort -uV | tail -1)
if [ -z "$highest" ]; then
  echo "glibc floor: $addon has no GLIBC_ symbol versions (not a glibc build?)" >&2
  exit 1
fi
if [ "$(printf '%s\n%s\n' "$highest" "$floor" | sort -V | tail -1)" != "$floor" ]; then
  echo "glibc floor: $addon needs GLIBC_$highest, above $floor:" >&2
  objdump -T "$addon" | grep "GLIBC_$highest" >&2
  exit 1
fi
echo "glibc floor: $addon needs at most GLIBC_$highest (floor $floor)"
