#!/usr/bin/env bash
# Builds the pg_dump Lambda layer: PostgreSQL client tools (pg_dump, pg_restore, pg_dumpall) from
# Debian's postgresql-client-<major> package, with their whole shared-library closure, the dynamic
# loader and libc included, laid out for /opt. See README.md beside this file.
#
#   layers/pg-dump/build.sh [--if-missing] [x86_64|arm64|all]     (default: x86_64)
#
# Output: layers/pg-dump/dist/<arch>/{bin,libexec,lib,licenses,manifest.json} and dist/<arch>.zip.
# --if-missing: build only when dist/<arch> is missing or was built by another version of this file.
# Needs: apt-get, dpkg-deb, readelf (binutils), zip, flock, sha256sum; no root, no change to the
# system's apt setup (a private apt configuration and the downloaded packages live in the download
# cache shared with the pg-server layer, ~/.cache/pg-s3-backup: see layers/debian-closure.sh).
#
# Environment (all optional):
#   PG_MAJOR            PostgreSQL major to ship (default 18)
#   PG_LAYER_SUITE      Debian suite holding postgresql-client-$PG_MAJOR (default testing)
#   PG_LAYER_MIRROR     Debian mirror URI (default: the first non-security Debian URI of the
#                       system's own apt sources)
#   PG_LAYER_KEYRING    keyring that verifies the suite (default: the system's Debian archive keyring)
#   PG_LAYER_MAX_ZIP_BYTES  size budget of each zip (default 10 MB)
#   PG_LAYER_KEYRING_FROM_STABLE=1  take the keyring from Debian stable's debian-archive-keyring
#                       (verified with the system keyring) even when the system keyring suffices
#   PG_LAYER_CACHE      the download cache (default $XDG_CACHE_HOME/pg-s3-backup or
#                       ~/.cache/pg-s3-backup); survives `git clean` of this folder
#   PG_LAYER_INDEX_MAX_AGE  seconds an updated package index is reused without a new update (900)
set -euo pipefail
umask 022

HERE=$(cd -P "$(dirname "$0")" && pwd)
PG_MAJOR=${PG_MAJOR:-18}
SUITE=${PG_LAYER_SUITE:-testing}
KEYRING=${PG_LAYER_KEYRING:-/usr/share/keyrings/debian-archive-keyring.gpg}
MAX_ZIP_BYTES=${PG_LAYER_MAX_ZIP_BYTES:-10485760}
# Scratch space and the build lock (the downloads are in PG_LAYER_CACHE).
CACHE="$HERE/cache"
DIST="$HERE/dist"
TOOLS=(pg_dump pg_restore pg_dumpall)

die() { echo "build.sh: error: $*" >&2; exit 1; }
log() { echo "build.sh: $*" >&2; }

# shellcheck source=../debian-closure.sh
. "$HERE/../debian-closure.sh"
SCRIPT_SHA=$(cat "$HERE/build.sh" "$HERE/../debian-closure.sh" | sha256sum | cut -d' ' -f1)

if_missing=false
archs=()
for a in "$@"; do
  case "$a" in
    --if-missing) if_missing=true ;;
    x86_64 | arm64) archs+=("$a") ;;
    all) archs+=(x86_64 arm64) ;;
    -h | --help) sed -n '2,25p' "$0"; exit 0 ;;
    *) die "unknown argument '$a' (expected x86_64, arm64, all or --if-missing)" ;;
  esac
done
[ "${#archs[@]}" -gt 0 ] || archs=(x86_64)

for tool in apt-get apt-cache dpkg-deb readelf zip flock sha256sum; do
  command -v "$tool" >/dev/null || die "'$tool' is missing (Debian packages: apt, dpkg, binutils, zip, util-linux, coreutils)"
done
[ -r "$KEYRING" ] || die "keyring $KEYRING is not readable (Debian package debian-archive-keyring, or set PG_LAYER_KEYRING)"

MIRROR=${PG_LAYER_MIRROR:-$(system_mirror)}
[ -n "$MIRROR" ] || die "no Debian mirror found in /etc/apt/sources.list{,.d}; set PG_LAYER_MIRROR"
MIRROR=${MIRROR%/}

build_arch() {
  local arch=$1 deb_arch triplet machine
  case "$arch" in
    x86_64) deb_arch=amd64 triplet=x86_64-linux-gnu machine='Advanced Micro Devices X86-64' ;;
    arm64) deb_arch=arm64 triplet=aarch64-linux-gnu machine='AArch64' ;;
  esac
  TRIPLET=$triplet
  # --if-missing also rebuilds a layer made by another version of this script.
  if $if_missing && [ -f "$DIST/$arch.zip" ] && grep -q "\"buildScriptSha256\": \"$SCRIPT_SHA\"" "$DIST/$arch/manifest.json" 2>/dev/null; then
    log "$arch: already built ($DIST/$arch)"
    return
  fi
  local started=$SECONDS
  PKG_VERSION=() PKG_DEB=() PKG_SHA=() PKG_ROOT=() PKG_DEPS=() USED=() RESOLVED=() FROM=()
  WORK="$CACHE/work-$arch"
  rm -rf "$WORK" && mkdir -p "$WORK/x"
  local out="$DIST/.$arch.tmp"
  rm -rf "$out" && mkdir -p "$out/bin" "$out/libexec" "$out/lib" "$out/licenses"

  log "$arch: indexes of Debian $SUITE ($deb_arch)"
  apt_update "$deb_arch"
  local client="postgresql-client-$PG_MAJOR" elfs=() t f
  # Every package the build can need, downloaded in one go (or taken from the cache).
  prefetch "$client"
  fetch "$client"
  USED[$client]=1
  for t in "${TOOLS[@]}"; do
    f="${PKG_ROOT[$client]}/usr/lib/postgresql/$PG_MAJOR/bin/$t"
    [ -f "$f" ] || die "$client has no usr/lib/postgresql/$PG_MAJOR/bin/$t"
    cp "$f" "$out/libexec/$t"
    elfs+=("$out/libexec/$t")
  done
  local loader
  loader=$(basename "$(interp "$out/libexec/pg_dump")")
  [ -n "$loader" ] || die "pg_dump has no program interpreter"
  closure "$out/lib" "$machine" "$loader" "${elfs[@]}"
  [ -f "$out/lib/$loader" ] || die "$arch: the loader $loader was not found"

  # Wrappers for humans and for pg_dumpall, which runs "<its dir>/pg_dump" through /bin/sh: the
  # real ELF files cannot be executed directly on Lambda (their interpreter would be the system's).
  for t in "${TOOLS[@]}"; do
    cat >"$out/bin/$t" <<EOF
#!/bin/sh
# $t from the pg_dump layer, run through the layer's own loader and libraries (see README.md).
# Follow symlinks to this script (e.g. from /usr/local/bin) to find the layer.
self=\$0
while [ -L "\$self" ]; do
  link=\$(readlink "\$self") || exit 127
  case "\$link" in /*) self=\$link ;; *) self=\${self%/*}/\$link ;; esac
done
case "\$self" in */*) bin=\${self%/*} ;; *) bin=. ;; esac
layer=\$(cd -P "\$bin/.." && pwd) || exit 127
exec "\$layer/lib/$loader" --library-path "\$layer/lib" --argv0 "\$layer/bin/$t" "\$layer/libexec/$t" "\$@"
EOF
    chmod 0755 "$out/bin/$t"
  done

  # Licenses of every package whose files are redistributed.
  copy_licenses "$out"

  local pg_version
  pg_version=$(strings_version "$out/libexec/pg_dump")
  write_manifest "$out" "$arch" "$deb_arch" "$pg_version" "$loader" "${!USED[@]}"

  # A reproducible zip (same packages, same bytes): fixed timestamps from the client package,
  # sorted entries, no directory entries, no extra attributes. The CDK asset hash then changes
  # only when the content does, so no new layer version is published for nothing.
  local epoch
  epoch=$(stat -c %Y "${PKG_ROOT[$client]}/usr/lib/postgresql/$PG_MAJOR/bin/pg_dump")
  find "$out" -exec touch -h -d "@$epoch" {} +
  rm -f "$DIST/$arch.zip.tmp"
  (cd "$out" && find . -type f | LC_ALL=C sort | sed 's|^\./||' | zip -q -X -D -9 "$DIST/$arch.zip.tmp" -@)
  local zip_bytes unzipped_bytes
  zip_bytes=$(stat -c %s "$DIST/$arch.zip.tmp")
  unzipped_bytes=$(du -sb --apparent-size "$out" | cut -f1)
  [ "$zip_bytes" -le "$MAX_ZIP_BYTES" ] || die "$arch: the zip is $zip_bytes bytes, over the budget of $MAX_ZIP_BYTES"
  # Swap the new tree in with two renames, so tests running meanwhile see a complete layer.
  rm -rf "$DIST/.$arch.old"
  if [ -e "$DIST/$arch" ]; then mv "$DIST/$arch" "$DIST/.$arch.old"; fi
  mv "$out" "$DIST/$arch" && mv "$DIST/$arch.zip.tmp" "$DIST/$arch.zip"
  rm -rf "$DIST/.$arch.old"
  rm -rf "$WORK"
  log "$arch: PostgreSQL $pg_version, ${#USED[@]} packages, zip $zip_bytes bytes, unzipped $unzipped_bytes bytes, $((SECONDS - started)) s -> $DIST/$arch"
}

# PostgreSQL's version as compiled into pg_dump ("pg_dump (PostgreSQL) 18.1"), read without running
# it (the arm64 build cannot run here).
strings_version() {
  grep -aoE "pg_dump \(PostgreSQL\) [0-9]+(\.[0-9]+)?" "$1" | head -n1 | awk '{ print $3 }'
}

# manifest.json: what the layer holds and exactly where it comes from.
write_manifest() {
  local out=$1 arch=$2 deb_arch=$3 pg_version=$4 loader=$5; shift 5
  local pkg first=true f
  {
    printf '{\n  "postgresqlVersion": "%s",\n  "postgresqlMajor": %s,\n' "$pg_version" "$PG_MAJOR"
    printf '  "architecture": "%s",\n  "debianArchitecture": "%s",\n  "debianSuite": "%s",\n' "$arch" "$deb_arch" "$SUITE"
    printf '  "buildScriptSha256": "%s",\n' "$SCRIPT_SHA"
    printf '  "loader": "lib/%s",\n  "tools": [%s],\n  "packages": [\n' "$loader" "$(printf '"%s",' "${TOOLS[@]}" | sed 's/,$//')"
    for pkg in $(printf '%s\n' "$@" | sort); do
      $first || printf ',\n'
      first=false
      printf '    { "name": "%s", "version": "%s", "deb": "%s", "sha256": "%s" }' \
        "$pkg" "${PKG_VERSION[$pkg]}" "${PKG_DEB[$pkg]}" "${PKG_SHA[$pkg]}"
    done
    printf '\n  ],\n  "files": [\n'
    first=true
    for f in $(cd "$out" && find libexec lib -type f | sort); do
      $first || printf ',\n'
      first=false
      printf '    { "path": "%s", "sha256": "%s", "package": "%s" }' "$f" "$(sha256sum <"$out/$f" | cut -d' ' -f1)" "$(file_package "$f")"
    done
    printf '\n  ]\n}\n'
  } >"$out/manifest.json"
}

# The package a layer file came from: libexec/* from the client package, lib/<soname> as resolved.
file_package() {
  case "$1" in
    libexec/*) echo "postgresql-client-$PG_MAJOR" ;;
    lib/*) echo "${RESOLVED[${1#lib/}]}" ;;
  esac
}

mkdir -p "$CACHE" "$DIST"
# One build at a time per checkout: concurrent test files and helpers may all ask for the layer.
exec 9>"$CACHE/.build.lock"
flock 9
for arch in "${archs[@]}"; do build_arch "$arch"; done
