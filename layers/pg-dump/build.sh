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
# system's apt setup (a private apt configuration lives in layers/pg-dump/cache/).
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
set -euo pipefail
umask 022

HERE=$(cd -P "$(dirname "$0")" && pwd)
PG_MAJOR=${PG_MAJOR:-18}
SUITE=${PG_LAYER_SUITE:-testing}
KEYRING=${PG_LAYER_KEYRING:-/usr/share/keyrings/debian-archive-keyring.gpg}
MAX_ZIP_BYTES=${PG_LAYER_MAX_ZIP_BYTES:-10485760}
CACHE="$HERE/cache"
SCRIPT_SHA=$(sha256sum <"$HERE/build.sh" | cut -d' ' -f1)
DIST="$HERE/dist"
TOOLS=(pg_dump pg_restore pg_dumpall)

die() { echo "build.sh: error: $*" >&2; exit 1; }
log() { echo "build.sh: $*" >&2; }

if_missing=false
archs=()
for a in "$@"; do
  case "$a" in
    --if-missing) if_missing=true ;;
    x86_64 | arm64) archs+=("$a") ;;
    all) archs+=(x86_64 arm64) ;;
    -h | --help) sed -n '2,20p' "$0"; exit 0 ;;
    *) die "unknown argument '$a' (expected x86_64, arm64, all or --if-missing)" ;;
  esac
done
[ "${#archs[@]}" -gt 0 ] || archs=(x86_64)

for tool in apt-get apt-cache dpkg-deb readelf zip flock sha256sum; do
  command -v "$tool" >/dev/null || die "'$tool' is missing (Debian packages: apt, dpkg, binutils, zip, util-linux, coreutils)"
done
[ -r "$KEYRING" ] || die "keyring $KEYRING is not readable (Debian package debian-archive-keyring, or set PG_LAYER_KEYRING)"

# The mirror comes from the system's own apt sources so that no host name is written in the repo.
system_mirror() {
  local f uri
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -r "$f" ] || continue
    # deb822: the URIs of a stanza whose suites are not the security archive's.
    uri=$(awk 'BEGIN { RS = ""; FS = "\n" }
      /(^|\n)Types:[^\n]*deb([ \t\n]|$)/ && !/(^|\n)Suites:[^\n]*-security/ {
        for (i = 1; i <= NF; i++) if ($i ~ /^URIs:/) { split($i, u, /[ \t]+/); print u[2]; exit } }' "$f")
    [ -n "$uri" ] && { echo "$uri"; return; }
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -r "$f" ] || continue
    uri=$(awk '$1 == "deb" { i = 2; if ($2 ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
      if ($(i + 1) !~ /-security/ && $i ~ /debian\/?$/) { print $i; exit } }' "$f")
    [ -n "$uri" ] && { echo "$uri"; return; }
  done
}
MIRROR=${PG_LAYER_MIRROR:-$(system_mirror)}
[ -n "$MIRROR" ] || die "no Debian mirror found in /etc/apt/sources.list{,.d}; set PG_LAYER_MIRROR"
MIRROR=${MIRROR%/}

# apt as root drops privileges to _apt for downloads; let it write our private directories.
apt_owner() { if [ "$(id -u)" = 0 ] && id _apt >/dev/null 2>&1; then chown -R _apt "$@"; fi; }

# Private apt configuration for one Debian architecture: own sources, lists, cache and an empty
# dpkg status, so nothing of the host's apt state is read or changed.
APT_OPTS=()
apt_setup() {
  local deb_arch=$1 keyring=$2 dir="$CACHE/apt-$1"
  mkdir -p "$dir/etc/sources.list.d" "$dir/etc/preferences.d" "$dir/lists/partial" "$dir/cache/archives/partial"
  : >"$dir/status"
  echo "deb [arch=$deb_arch signed-by=$keyring] $MIRROR $SUITE main" >"$dir/etc/sources.list"
  apt_owner "$dir/lists/partial" "$dir/cache/archives/partial"
  APT_OPTS=(
    -o "Dir::Etc::SourceList=$dir/etc/sources.list"
    -o "Dir::Etc::SourceParts=$dir/etc/sources.list.d"
    -o "Dir::Etc::Preferences=$dir/etc/preferences"
    -o "Dir::Etc::PreferencesParts=$dir/etc/preferences.d"
    -o "Dir::State::Lists=$dir/lists"
    -o "Dir::State::status=$dir/status"
    -o "Dir::Cache=$dir/cache"
    -o "APT::Architecture=$deb_arch"
    -o "APT::Architectures=$deb_arch"
    -o "Acquire::Languages=none"
    -q
  )
}

# Updates the private indexes. apt verifies the suite's signed InRelease with the keyring; when the
# system's keyring is too old to know the suite's signing key, a newer debian-archive-keyring is
# taken from Debian stable, whose index the system keyring does verify (chain of trust).
apt_update() {
  local deb_arch=$1 out
  apt_setup "$deb_arch" "$KEYRING"
  if [ -z "${PG_LAYER_KEYRING_FROM_STABLE:-}" ] && out=$(apt-get "${APT_OPTS[@]}" update 2>&1) && ! grep -qE '^(W|E): .*(NO_PUBKEY|not signed|EXPKEYSIG|signature)' <<<"$out"; then
    return
  fi
  [ -n "${PG_LAYER_KEYRING_FROM_STABLE:-}" ] || grep -qE 'NO_PUBKEY|EXPKEYSIG' <<<"$out" || die "apt-get update of $SUITE failed:"$'\n'"$out"
  log "verifying $SUITE with the debian-archive-keyring of Debian stable, itself verified by the system keyring"
  local boot="$CACHE/keyring-bootstrap" saved_suite=$SUITE
  SUITE=stable apt_setup "$deb_arch" "$KEYRING"
  apt-get "${APT_OPTS[@]}" update >&2 || die "apt-get update of stable failed with the system keyring $KEYRING"
  rm -rf "$boot" && mkdir -p "$boot/x" && apt_owner "$boot"
  (cd "$boot" && apt-get "${APT_OPTS[@]}" download debian-archive-keyring) >&2
  dpkg-deb -x "$boot"/debian-archive-keyring_*.deb "$boot/x"
  local newer="$boot/x/usr/share/keyrings/debian-archive-keyring.gpg"
  [ -r "$newer" ] || die "debian-archive-keyring from stable has no usr/share/keyrings/debian-archive-keyring.gpg"
  SUITE=$saved_suite
  apt_setup "$deb_arch" "$newer"
  apt-get "${APT_OPTS[@]}" update >&2 || die "apt-get update of $SUITE failed even with stable's keyring"
}

declare -A PKG_VERSION PKG_DEB PKG_SHA PKG_ROOT PKG_DEPS
# Downloads (once, into the cache) and extracts the candidate version of a package.
fetch() {
  local pkg=$1 deb_arch=$2 ver debs="$CACHE/debs" root
  [ -n "${PKG_ROOT[$pkg]:-}" ] && return
  local record want_sha file sha
  mkdir -p "$debs"
  # The candidate's record (one apt-cache run: each one reads the whole package index).
  record=$(apt-cache "${APT_OPTS[@]}" --no-all-versions show "$pkg" 2>/dev/null | awk 'NF == 0 { exit } { print }') || true
  ver=$(awk '/^Version:/ { print $2 }' <<<"$record")
  [ -n "$ver" ] || die "package $pkg has no candidate in Debian $SUITE ($deb_arch)"
  want_sha=$(awk '/^SHA256:/ { print $2 }' <<<"$record")
  file=$(awk '/^Filename:/ { n = split($2, p, "/"); print p[n] }' <<<"$record")
  if [ ! -f "$debs/$file" ] || [ "$(sha256sum <"$debs/$file" | cut -d' ' -f1)" != "$want_sha" ]; then
    # apt-get download names the file after the version (epoch escaped): download alone in a
    # fresh directory, then file it under the pool's name.
    local tmp="$debs/.dl-$pkg"
    rm -rf "$tmp" && mkdir -p "$tmp" && apt_owner "$tmp"
    (cd "$tmp" && apt-get "${APT_OPTS[@]}" download "$pkg=$ver") >&2 || die "could not download $pkg=$ver"
    mv "$tmp"/*.deb "$debs/$file" && rm -rf "$tmp"
  fi
  sha=$(sha256sum <"$debs/$file" | cut -d' ' -f1)
  [ "$sha" = "$want_sha" ] || die "$file: sha256 $sha differs from the signed index ($want_sha)"
  root="$WORK/x/$pkg"
  rm -rf "$root" && mkdir -p "$root"
  dpkg-deb -x "$debs/$file" "$root"
  PKG_VERSION[$pkg]=$ver PKG_DEB[$pkg]=$file PKG_SHA[$pkg]=$sha PKG_ROOT[$pkg]=$root
  # Direct dependencies (first alternative, no version, no :any): candidates for missing libraries.
  PKG_DEPS[$pkg]=$(awk '/^(Pre-)?Depends:/ { sub(/^[^:]*:/, ""); n = split($0, d, ","); for (i = 1; i <= n; i++) {
      split(d[i], alt, "|"); gsub(/\(.*\)|:any|[ \t]/, "", alt[1]); print alt[1] } }' <<<"$record" | sort -u | tr '\n' ' ')
}

needed() { readelf -d "$1" | sed -n 's/.*(NEEDED).*\[\(.*\)\]$/\1/p'; }
interp() { readelf -l "$1" | sed -n 's/.*Requesting program interpreter: \(.*\)\]$/\1/p'; }

# Finds a library by soname in an extracted package, in the directories the loader searches.
find_lib() {
  local root=$1 soname=$2 d
  for d in "usr/lib/$TRIPLET" "lib/$TRIPLET" usr/lib lib usr/lib64 lib64; do
    if [ -e "$root/$d/$soname" ]; then echo "$root/$d/$soname"; return; fi
  done
  return 1
}

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
  PKG_VERSION=() PKG_DEB=() PKG_SHA=() PKG_ROOT=() PKG_DEPS=()
  WORK="$CACHE/work-$arch"
  rm -rf "$WORK" && mkdir -p "$WORK/x"
  local out="$DIST/.$arch.tmp"
  rm -rf "$out" && mkdir -p "$out/bin" "$out/libexec" "$out/lib" "$out/licenses"

  log "$arch: indexes of Debian $SUITE ($deb_arch)"
  apt_update "$deb_arch"
  local client="postgresql-client-$PG_MAJOR"
  fetch "$client" "$deb_arch"

  declare -A used=([$client]=1) resolved=() from_pkg=()
  local queue=() t f
  for t in "${TOOLS[@]}"; do
    f="${PKG_ROOT[$client]}/usr/lib/postgresql/$PG_MAJOR/bin/$t"
    [ -f "$f" ] || die "$client has no usr/lib/postgresql/$PG_MAJOR/bin/$t"
    cp "$f" "$out/libexec/$t"
    queue+=("$out/libexec/$t")
  done
  local loader
  loader=$(basename "$(interp "$out/libexec/pg_dump")")
  [ -n "$loader" ] || die "pg_dump has no program interpreter"

  # Breadth-first walk of NEEDED entries. A library not found in the packages fetched so far is
  # looked for in the direct dependencies of the packages used so far; nothing left: fail.
  local pending=("$loader") soname pkg path dep progress elf
  while [ "${#queue[@]}" -gt 0 ] || [ "${#pending[@]}" -gt 0 ]; do
    for elf in "${queue[@]}"; do
      readelf -h "$elf" | grep -q "Machine: *$machine" || die "$elf is not a $machine ELF"
      for soname in $(needed "$elf"); do
        [ -n "${resolved[$soname]:-}" ] || pending+=("$soname")
        : "${from_pkg[$soname]:=$(basename "$elf")}"
      done
    done
    queue=()
    local still=()
    for soname in $(printf '%s\n' "${pending[@]}" | sort -u); do
      [ -n "${resolved[$soname]:-}" ] && continue
      path=
      for pkg in "${!PKG_ROOT[@]}"; do
        if path=$(find_lib "${PKG_ROOT[$pkg]}" "$soname"); then used[$pkg]=1; break; fi
      done
      if [ -n "$path" ]; then
        resolved[$soname]=$pkg
        cp -L "$path" "$out/lib/$soname"
        chmod 0755 "$out/lib/$soname"
        queue+=("$out/lib/$soname")
      else
        still+=("$soname")
      fi
    done
    pending=("${still[@]}")
    if [ "${#pending[@]}" -gt 0 ] && [ "${#queue[@]}" -eq 0 ]; then
      progress=false
      for pkg in "${!used[@]}"; do
        for dep in ${PKG_DEPS[$pkg]}; do
          [ -n "${PKG_ROOT[$dep]:-}" ] && continue
          fetch "$dep" "$deb_arch"
          progress=true
        done
      done
      if ! $progress; then
        for soname in "${pending[@]}"; do echo "build.sh: error: $arch: library $soname (needed by ${from_pkg[$soname]:-the loader}) is in none of the packages: ${!PKG_ROOT[*]}" >&2; done
        exit 1
      fi
    fi
  done
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
  local doc
  for pkg in $(printf '%s\n' "${!used[@]}" | sort); do
    doc="${PKG_ROOT[$pkg]}/usr/share/doc/$pkg/copyright"
    [ -f "$doc" ] || doc=$(find "${PKG_ROOT[$pkg]}/usr/share/doc" -name copyright -type f 2>/dev/null | head -n1)
    [ -n "$doc" ] && [ -f "$doc" ] || die "$pkg ships no copyright file"
    mkdir -p "$out/licenses/$pkg" && cp "$doc" "$out/licenses/$pkg/copyright"
  done

  local pg_version
  pg_version=$(strings_version "$out/libexec/pg_dump")
  write_manifest "$out" "$arch" "$deb_arch" "$pg_version" "$loader" "${!used[@]}"

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
  log "$arch: PostgreSQL $pg_version, ${#used[@]} packages, zip $zip_bytes bytes, unzipped $unzipped_bytes bytes, $((SECONDS - started)) s -> $DIST/$arch"
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
    lib/*) echo "${resolved[${1#lib/}]}" ;;
  esac
}

mkdir -p "$CACHE" "$DIST"
# One build at a time per checkout: concurrent test files and helpers may all ask for the layer.
exec 9>"$CACHE/.build.lock"
flock 9
for arch in "${archs[@]}"; do build_arch "$arch"; done
