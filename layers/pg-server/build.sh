#!/usr/bin/env bash
# Builds the pg-server Lambda layer: a throwaway PostgreSQL server for restore drills (postgres,
# initdb, pg_ctl, the share/ and lib/ files initdb and a restore need) from Debian's
# postgresql-<major> package, with its whole shared-library closure, the dynamic loader and libc
# included, laid out for /opt/pg-server. See README.md beside this file.
#
#   layers/pg-server/build.sh [--if-missing] [x86_64|arm64|all]     (default: x86_64)
#
# Output: layers/pg-server/dist/<arch>/pg-server/{lib,libexec,share,licenses,manifest.json} (the tree
# Lambda mounts at /opt) and dist/<arch>.zip.
# --if-missing: build only when dist/<arch> is missing or was built by another version of this file
# (or of layers/debian-closure.sh).
# Needs: apt-get, dpkg-deb, readelf (binutils), zip, flock, sha256sum; no root, no change to the
# system's apt setup (a private apt configuration and the downloaded packages live in the download
# cache shared with the pg_dump layer, ~/.cache/pg-s3-backup: see layers/debian-closure.sh).
#
# Environment (all optional):
#   PG_MAJOR            PostgreSQL major to ship (default 18)
#   PG_LAYER_SUITE      Debian suite holding postgresql-$PG_MAJOR (default testing)
#   PG_LAYER_MIRROR     Debian mirror URI (default: the first non-security Debian URI of the
#                       system's own apt sources)
#   PG_LAYER_KEYRING    keyring that verifies the suite (default: the system's Debian archive keyring)
#   PG_SERVER_LAYER_MAX_UNZIPPED_BYTES  size budget of the unzipped layer (default 180 MiB; see README)
#   PG_LAYER_LOCALES    libc locales compiled into lib/locale/ (default "C.UTF-8 en_US.UTF-8"; space
#                       separated <language_TERRITORY>.<charmap>[@modifier] names of Debian's
#                       `locales` sources, e.g. "C.UTF-8 en_US.UTF-8 de_DE.UTF-8 fr_FR.UTF-8"; see
#                       README). Changing it needs a build without --if-missing.
#   PG_LAYER_KEYRING_FROM_STABLE=1  as in layers/pg-dump/build.sh
#   PG_LAYER_CACHE, PG_LAYER_INDEX_MAX_AGE  the download cache and its index's reuse (see
#                       layers/debian-closure.sh)
set -euo pipefail
umask 022

HERE=$(cd -P "$(dirname "$0")" && pwd)
PG_MAJOR=${PG_MAJOR:-18}
SUITE=${PG_LAYER_SUITE:-testing}
KEYRING=${PG_LAYER_KEYRING:-/usr/share/keyrings/debian-archive-keyring.gpg}
MAX_UNZIPPED_BYTES=${PG_SERVER_LAYER_MAX_UNZIPPED_BYTES:-188743680}
read -r -a LOCALES <<<"${PG_LAYER_LOCALES-C.UTF-8 en_US.UTF-8}"
# Scratch space and the build lock (the downloads are in PG_LAYER_CACHE).
CACHE="$HERE/cache"
DIST="$HERE/dist"
# The layer's own folder under /opt: Lambda merges every layer into /opt, and the pg_dump layer
# owns /opt/lib and /opt/libexec. Keeping the server apart means neither overwrites the other's
# libc, whatever Debian versions each was built from.
NAME=pg-server
TOOLS=(postgres initdb pg_ctl)

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
    -h | --help) sed -n '2,30p' "$0"; exit 0 ;;
    *) die "unknown argument '$a' (expected x86_64, arm64, all or --if-missing)" ;;
  esac
done
[ "${#archs[@]}" -gt 0 ] || archs=(x86_64)

for tool in apt-get apt-cache dpkg-deb readelf zip flock sha256sum gzip; do
  command -v "$tool" >/dev/null || die "'$tool' is missing (Debian packages: apt, dpkg, binutils, zip, util-linux, coreutils)"
done
[ -r "$KEYRING" ] || die "keyring $KEYRING is not readable (Debian package debian-archive-keyring, or set PG_LAYER_KEYRING)"
MIRROR=${PG_LAYER_MIRROR:-$(system_mirror)}
[ -n "$MIRROR" ] || die "no Debian mirror found in /etc/apt/sources.list{,.d}; set PG_LAYER_MIRROR"
MIRROR=${MIRROR%/}

# The wrapper of one tool, in lib/postgresql/<major>/bin/. Two reasons for a wrapper there:
# - PostgreSQL finds share/ and lib/postgresql/<major>/lib relative to its own path (argv[0]) only
#   when that path ends in lib/postgresql/<major>/bin, as it does in Debian;
# - initdb runs postgres (to check its version, and to bootstrap) through /bin/sh, which on Lambda
#   is the system's, whose loader cannot run Debian's binaries: it must find a script that goes
#   through the layer's own loader again.
# --preload nss_wrapper: initdb and postgres look up their own user name, and Lambda's user has
# no passwd entry; nss_wrapper answers from NSS_WRAPPER_PASSWD (set by the caller, in /tmp) and
# passes everything through when that variable is unset.
write_wrapper() {
  local out=$1 tool=$2 loader=$3
  cat >"$out/lib/postgresql/$PG_MAJOR/bin/$tool" <<EOF
#!/bin/sh
# $tool from the pg-server layer, run through the layer's own loader and libraries (see README.md).
self=\$0
while [ -L "\$self" ]; do
  link=\$(readlink "\$self") || exit 127
  case "\$link" in /*) self=\$link ;; *) self=\${self%/*}/\$link ;; esac
done
case "\$self" in */*) bin=\${self%/*} ;; *) bin=. ;; esac
layer=\$(cd -P "\$bin/../../../.." && pwd) || exit 127
exec "\$layer/lib/$loader" --preload "\$layer/lib/libnss_wrapper.so" --library-path "\$layer/lib" --argv0 "\$layer/lib/postgresql/$PG_MAJOR/bin/$tool" "\$layer/libexec/$tool" "\$@"
EOF
  chmod 0755 "$out/lib/postgresql/$PG_MAJOR/bin/$tool"
}

# glibc's name of a charmap in a locale folder's name (_nl_normalize_codeset): letters lower-cased,
# digits kept, everything else dropped; all digits get "iso" in front. UTF-8 -> utf8.
normalize_codeset() {
  local c
  c=$(tr -cd '[:alnum:]' <<<"$1" | tr '[:upper:]' '[:lower:]')
  case "$c" in *[a-z]*) echo "$c" ;; *) echo "iso$c" ;; esac
}

# The libc locales of PG_LAYER_LOCALES, compiled into <out>/lib/locale/<lang>.<codeset>[@modifier]
# (the layout LOCPATH reads: one folder of LC_* files per locale, no locale-archive) by the
# layer's OWN localedef (Debian's libc-bin, the same glibc as the layer's libc.so.6, run through
# the layer's loader) from the sources of Debian's `locales` package of the same suite: compiled
# locale files are only guaranteed to be read by the glibc that wrote them. Also `locale`, a
# script beside the wrappers: initdb imports the system's collations from `locale -a`, and
# Lambda's own `locale` would list Amazon Linux's locales, not these.
# The command that runs localedef (into LOCALEDEF): the layer's own, through the layer's loader
# and libc, when this machine can run it (the same architecture, or qemu-user through binfmt);
# else, for an arm64 layer built on x86_64 (the function's default architecture, built on a
# laptop), the build machine's own libc-bin and libc6 of the SAME Debian version, through their
# loader. Compiled locale files depend on the glibc version and the byte order, not on the
# instruction set: both architectures are little-endian with 4-byte aligned 32-bit words.
LOCALEDEF=()
localedef_command() {
  local out=$1 loader=$2 arch=$3 bin=$4 host found
  if "$out/lib/$loader" --library-path "$out/lib" "$bin" --help >/dev/null 2>&1; then
    LOCALEDEF=("$out/lib/$loader" --library-path "$out/lib" "$bin")
    return
  fi
  host=$(dpkg --print-architecture)
  log "$arch: this machine cannot run the $arch localedef: compiling the locales with Debian $host's libc-bin ${PKG_VERSION[libc6]}"
  # A subshell: the host architecture's packages stay out of the layer's package lists.
  found=$(
    want=${PKG_VERSION[libc6]}
    PKG_VERSION=() PKG_DEB=() PKG_SHA=() PKG_ROOT=() PKG_DEPS=() USED=()
    WORK="$WORK/host-$host"
    mkdir -p "$WORK/x"
    case "$host" in
      amd64) TRIPLET=x86_64-linux-gnu ;;
      arm64) TRIPLET=aarch64-linux-gnu ;;
      *) die "no locales for an $arch layer built on $host: build on $arch or amd64, or with PG_LAYER_LOCALES=''" ;;
    esac
    apt_update "$host"
    prefetch libc6 libc-bin
    fetch libc6
    fetch libc-bin
    [ "${PKG_VERSION[libc6]}" = "$want" ] && [ "${PKG_VERSION[libc-bin]}" = "$want" ] \
      || die "Debian $host has libc6 ${PKG_VERSION[libc6]}, libc-bin ${PKG_VERSION[libc-bin]}, not $want as for $arch: build again later, or on $arch"
    local_bin="${PKG_ROOT[libc-bin]}/usr/bin/localedef"
    ld=$(find_lib "${PKG_ROOT[libc6]}" "$(basename "$(interp "$local_bin")")") || die "libc6 ($host) has no loader for localedef"
    libc=$(find_lib "${PKG_ROOT[libc6]}" libc.so.6) || die "libc6 ($host) has no libc.so.6"
    printf '%s\n%s\n%s\n' "$ld" "$(dirname "$libc")" "$local_bin"
  )
  mapfile -t LOCALEDEF <<<"$found"
  [ "${#LOCALEDEF[@]}" -eq 3 ] || die "$arch: no localedef to run"
  LOCALEDEF=("${LOCALEDEF[0]}" --library-path "${LOCALEDEF[1]}" "${LOCALEDEF[2]}")
}

compile_locales() {
  local out=$1 loader=$2 arch=$3 name base modifier input charmap dir
  cat >"$out/lib/postgresql/$PG_MAJOR/bin/locale" <<'EOF'
#!/bin/sh
# `locale -a` for initdb's collation import: C, POSIX and the locales compiled into this layer
# (LOCPATH, set by the engine). PostgreSQL needs nothing else of locale(1).
[ "$1" = -a ] || { echo "locale: this layer's locale(1) only lists locales (-a)" >&2; exit 1; }
echo C
echo POSIX
[ -n "$LOCPATH" ] || exit 0
for d in "$LOCPATH"/*/; do
  [ -f "${d}LC_CTYPE" ] || continue
  d=${d%/}
  echo "${d##*/}"
done
EOF
  chmod 0755 "$out/lib/postgresql/$PG_MAJOR/bin/locale"
  mkdir -p "$out/lib/locale"
  [ "${#LOCALES[@]}" -gt 0 ] || { log "$arch: no locales (PG_LAYER_LOCALES is empty)"; return; }
  fetch libc-bin
  fetch locales
  USED[libc-bin]=1 USED[locales]=1
  local bin="${PKG_ROOT[libc-bin]}/usr/bin/localedef" i18n="${PKG_ROOT[locales]}/usr/share/i18n"
  [ -x "$bin" ] || die "libc-bin has no usr/bin/localedef"
  [ "${PKG_VERSION[libc-bin]}" = "${PKG_VERSION[libc6]:-}" ] || die "libc-bin ${PKG_VERSION[libc-bin]} differs from the layer's libc6 ${PKG_VERSION[libc6]:-?}: its locale files are only sure to be read by the same glibc"
  localedef_command "$out" "$loader" "$arch" "$bin"
  mkdir -p "$WORK/charmaps"
  for name in "${LOCALES[@]}"; do
    base=${name%%@*}
    modifier=${name#"$base"}
    [[ "$base" == *.* ]] || die "PG_LAYER_LOCALES: '$name' names no charmap (expected e.g. en_US.UTF-8)"
    input=${base%%.*}$modifier
    charmap=${base#*.}
    dir=${base%%.*}.$(normalize_codeset "$charmap")$modifier
    [ -f "$i18n/locales/$input" ] || die "PG_LAYER_LOCALES: '$name': Debian's locales package has no source usr/share/i18n/locales/$input"
    if [ ! -f "$WORK/charmaps/$charmap" ]; then
      [ -f "$i18n/charmaps/$charmap.gz" ] || die "PG_LAYER_LOCALES: '$name': Debian's locales package has no charmap $charmap"
      gzip -dc "$i18n/charmaps/$charmap.gz" >"$WORK/charmaps/$charmap"
    fi
    # -c: write the locale despite localedef's warnings (as Debian's locale-gen does); the
    # LC_COLLATE check below catches a locale not written.
    if ! I18NPATH=$i18n "${LOCALEDEF[@]}" --no-archive -c -i "$input" -f "$WORK/charmaps/$charmap" "$out/lib/locale/$dir" >"$WORK/localedef.log" 2>&1 \
      && [ ! -f "$out/lib/locale/$dir/LC_COLLATE" ]; then
      cat "$WORK/localedef.log" >&2
      die "$arch: localedef of $name failed (or build with PG_LAYER_LOCALES='': the drill then falls back to C.UTF-8 with a warning)"
    fi
    [ -f "$out/lib/locale/$dir/LC_COLLATE" ] && [ -f "$out/lib/locale/$dir/LC_CTYPE" ] || die "$arch: localedef of $name wrote no $dir/LC_COLLATE and LC_CTYPE"
  done
  log "$arch: locales ${LOCALES[*]} ($(du -sb --apparent-size "$out/lib/locale" | cut -f1) bytes)"
}

build_arch() {
  local arch=$1 deb_arch machine
  case "$arch" in
    x86_64) deb_arch=amd64 TRIPLET=x86_64-linux-gnu machine='Advanced Micro Devices X86-64' ;;
    arm64) deb_arch=arm64 TRIPLET=aarch64-linux-gnu machine='AArch64' ;;
  esac
  if $if_missing && [ -f "$DIST/$arch.zip" ] && grep -q "\"buildScriptSha256\": \"$SCRIPT_SHA\"" "$DIST/$arch/$NAME/manifest.json" 2>/dev/null; then
    log "$arch: already built ($DIST/$arch)"
    return
  fi
  local started=$SECONDS
  PKG_VERSION=() PKG_DEB=() PKG_SHA=() PKG_ROOT=() PKG_DEPS=() USED=() RESOLVED=() FROM=()
  WORK="$CACHE/work-$arch"
  rm -rf "$WORK" && mkdir -p "$WORK/x"
  local tree="$DIST/.$arch.tmp" out="$DIST/.$arch.tmp/$NAME"
  local pgbin="lib/postgresql/$PG_MAJOR/bin" pglib="lib/postgresql/$PG_MAJOR/lib" pgshare="share/postgresql/$PG_MAJOR"
  rm -rf "$tree" && mkdir -p "$out/libexec" "$out/$pgbin" "$out/$pglib" "$out/share/postgresql" "$out/licenses"

  log "$arch: indexes of Debian $SUITE ($deb_arch)"
  apt_update "$deb_arch"
  local server="postgresql-$PG_MAJOR" src elfs=() t f
  # Every package the build can need, downloaded in one go (or taken from the cache).
  if [ "${#LOCALES[@]}" -gt 0 ]; then prefetch "$server" libnss-wrapper libc-bin locales; else prefetch "$server" libnss-wrapper; fi
  fetch "$server"
  fetch libnss-wrapper
  src="${PKG_ROOT[$server]}"
  USED[$server]=1 USED[libnss-wrapper]=1
  for t in "${TOOLS[@]}"; do
    f="$src/usr/lib/postgresql/$PG_MAJOR/bin/$t"
    [ -f "$f" ] || die "$server has no usr/lib/postgresql/$PG_MAJOR/bin/$t"
    cp "$f" "$out/libexec/$t"
    elfs+=("$out/libexec/$t")
  done
  # Every module of the package (PL/pgSQL, the dictionaries, the contrib extensions a restored
  # database may create), except the JIT: llvmjit.so alone would pull in 100+ MB of LLVM, and the
  # throwaway server runs with jit=off.
  for f in "$src/usr/lib/postgresql/$PG_MAJOR/lib/"*.so; do
    case "$(basename "$f")" in llvmjit*) continue ;; esac
    cp "$f" "$out/$pglib/"
    elfs+=("$out/$pglib/$(basename "$f")")
  done
  [ -f "$out/$pglib/plpgsql.so" ] || die "$server has no plpgsql.so"
  # share/: the catalog bootstrap (postgres.bki), system views, time zone sets, text-search data,
  # extension scripts. Not the manual pages.
  cp -r "$src/usr/share/postgresql/$PG_MAJOR" "$out/share/postgresql/"
  rm -rf "$out/$pgshare/man"
  [ -f "$out/$pgshare/postgres.bki" ] || die "$server has no usr/share/postgresql/$PG_MAJOR/postgres.bki"
  local nss
  nss=$(find_lib "${PKG_ROOT[libnss-wrapper]}" libnss_wrapper.so) || die "libnss-wrapper has no libnss_wrapper.so"
  cp -L "$nss" "$out/lib/libnss_wrapper.so" && chmod 0755 "$out/lib/libnss_wrapper.so"
  elfs+=("$out/lib/libnss_wrapper.so")
  RESOLVED[libnss_wrapper.so]=libnss-wrapper

  local loader
  loader=$(basename "$(interp "$out/libexec/postgres")")
  [ -n "$loader" ] || die "postgres has no program interpreter"
  closure "$out/lib" "$machine" "$loader" "${elfs[@]}"
  [ -f "$out/lib/$loader" ] || die "$arch: the loader $loader was not found"

  for t in "${TOOLS[@]}"; do write_wrapper "$out" "$t" "$loader"; done
  compile_locales "$out" "$loader" "$arch"
  copy_licenses "$out"

  local pg_version
  pg_version=$(grep -aoE "postgres \(PostgreSQL\) [0-9]+(\.[0-9]+)?" "$out/libexec/postgres" | head -n1 | awk '{ print $3 }')
  [ -n "$pg_version" ] || die "no version string in postgres"
  write_manifest "$out" "$arch" "$deb_arch" "$pg_version" "$loader"

  local epoch zip_bytes unzipped_bytes
  epoch=$(stat -c %Y "$src/usr/lib/postgresql/$PG_MAJOR/bin/postgres")
  reproducible_zip "$tree" "$DIST/$arch.zip.tmp" "$epoch"
  zip_bytes=$(stat -c %s "$DIST/$arch.zip.tmp")
  unzipped_bytes=$(du -sb --apparent-size "$tree" | cut -f1)
  [ "$unzipped_bytes" -le "$MAX_UNZIPPED_BYTES" ] || die "$arch: the layer is $unzipped_bytes bytes unzipped, over the budget of $MAX_UNZIPPED_BYTES"
  # Swap the new tree in with two renames, so tests running meanwhile see a complete layer.
  rm -rf "$DIST/.$arch.old"
  if [ -e "$DIST/$arch" ]; then mv "$DIST/$arch" "$DIST/.$arch.old"; fi
  mv "$tree" "$DIST/$arch" && mv "$DIST/$arch.zip.tmp" "$DIST/$arch.zip"
  rm -rf "$DIST/.$arch.old" "$WORK"
  log "$arch: PostgreSQL $pg_version server, ${#USED[@]} packages, zip $zip_bytes bytes, unzipped $unzipped_bytes bytes, $((SECONDS - started)) s -> $DIST/$arch"
}

# The package a layer file came from.
file_package() {
  case "$1" in
    lib/libnss_wrapper.so) echo libnss-wrapper ;;
    lib/locale/*) echo locales ;;
    libexec/* | lib/postgresql/* | share/*) echo "postgresql-$PG_MAJOR" ;;
    lib/*) echo "${RESOLVED[${1#lib/}]}" ;;
  esac
}

# manifest.json: what the layer holds and exactly where it comes from.
write_manifest() {
  local out=$1 arch=$2 deb_arch=$3 pg_version=$4 loader=$5
  local pkg first=true sha f
  {
    printf '{\n  "postgresqlVersion": "%s",\n  "postgresqlMajor": %s,\n' "$pg_version" "$PG_MAJOR"
    printf '  "architecture": "%s",\n  "debianArchitecture": "%s",\n  "debianSuite": "%s",\n' "$arch" "$deb_arch" "$SUITE"
    printf '  "buildScriptSha256": "%s",\n' "$SCRIPT_SHA"
    printf '  "locales": [%s],\n  "localePath": "lib/locale",\n' "$( ((${#LOCALES[@]})) && printf '"%s",' "${LOCALES[@]}" | sed 's/,$//')"
    printf '  "loader": "lib/%s",\n  "bin": "lib/postgresql/%s/bin",\n  "tools": [%s],\n  "packages": [\n' \
      "$loader" "$PG_MAJOR" "$(printf '"%s",' "${TOOLS[@]}" | sed 's/,$//')"
    for pkg in $(printf '%s\n' "${!USED[@]}" | sort); do
      $first || printf ',\n'
      first=false
      printf '    { "name": "%s", "version": "%s", "deb": "%s", "sha256": "%s" }' \
        "$pkg" "${PKG_VERSION[$pkg]}" "${PKG_DEB[$pkg]}" "${PKG_SHA[$pkg]}"
    done
    printf '\n  ],\n  "files": [\n'
    first=true
    while read -r sha f; do
      $first || printf ',\n'
      first=false
      printf '    { "path": "%s", "sha256": "%s", "package": "%s" }' "$f" "$sha" "$(file_package "$f")"
    done < <(cd "$out" && find libexec lib share -type f | LC_ALL=C sort | xargs -d '\n' sha256sum)
    printf '\n  ]\n}\n'
  } >"$out/manifest.json"
}

mkdir -p "$CACHE" "$DIST"
# One build at a time per checkout: concurrent test files and helpers may all ask for the layer.
exec 9>"$CACHE/.build.lock"
flock 9
for arch in "${archs[@]}"; do build_arch "$arch"; done
