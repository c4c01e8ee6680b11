# Sourced, not run. Building blocks of a self-contained layer made from Debian packages: a
# private apt configuration, verified downloads into a cache shared by both layers, and the
# shared-library closure of a set of ELF files (loader and libc included). Used by
# layers/pg-dump/build.sh and layers/pg-server/build.sh (see layers/pg-dump/README.md).
#
# The caller sets: PG_MAJOR, SUITE, KEYRING, MIRROR, WORK (per-architecture scratch) and defines
# die() and log(). Globals filled here: PKG_RECORD (the candidate's index record), PKG_VERSION
# PKG_DEB PKG_SHA PKG_ROOT PKG_DEPS (per fetched package), USED (packages that contribute files),
# RESOLVED (soname -> package).
#
# The download cache lives outside the checkout, so that `git clean` of the build folders (or a
# fresh clone) does not download everything again: PG_LAYER_CACHE, else
# $XDG_CACHE_HOME/pg-s3-backup, else ~/.cache/pg-s3-backup. It holds the apt state per Debian
# architecture (apt-<arch>/: sources, signed indexes, binary cache) and the packages
# (debs/<name>_<version>_<sha256>.deb, checked against the signed index's sha256 at every use).
# Both layers' builds may run at once: apt-<arch>/.lock is held exclusively while the index is
# updated and shared by every read; debs/.lock serializes downloads, so a package is fetched once.
PG_LAYER_CACHE=${PG_LAYER_CACHE:-${XDG_CACHE_HOME:-${HOME:-/nonexistent}/.cache}/pg-s3-backup}
# An index younger than this is not updated again: both layers' builds (run together) and a
# rebuild after `git clean` share one update. 0 always updates.
INDEX_MAX_AGE=${PG_LAYER_INDEX_MAX_AGE:-900}

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

# apt as root drops privileges to _apt for downloads; let it write our private directories.
apt_owner() { if [ "$(id -u)" = 0 ] && id _apt >/dev/null 2>&1; then chown -R _apt "$@"; fi; }

# Private apt configuration for one Debian architecture: own sources, lists, cache and an empty
# dpkg status, so nothing of the host's apt state is read or changed.
APT_OPTS=()
APT_LOCK=
apt_setup() {
  local deb_arch=$1 keyring=$2 dir="$PG_LAYER_CACHE/apt-$1" line
  mkdir -p "$dir/etc/sources.list.d" "$dir/etc/preferences.d" "$dir/lists/partial" "$dir/cache/archives/partial" \
    || die "cannot create the download cache $PG_LAYER_CACHE (set PG_LAYER_CACHE to a writable folder)"
  [ -e "$dir/status" ] || : >"$dir/status"
  # Rewritten only when it changes: the other layer's build may be reading it.
  line="deb [arch=$deb_arch signed-by=$keyring] $MIRROR $SUITE main"
  if [ "$(cat "$dir/etc/sources.list" 2>/dev/null)" != "$line" ]; then
    echo "$line" >"$dir/etc/sources.list.tmp.$$" && mv "$dir/etc/sources.list.tmp.$$" "$dir/etc/sources.list"
  fi
  apt_owner "$dir/lists/partial" "$dir/cache/archives/partial"
  APT_LOCK="$dir/.lock"
  : >>"$APT_LOCK"
  PKG_RECORD=() REC_VERSION=() REC_SHA=() REC_FILE=() REC_DEPS=()
  APT_OPTS=(
    -o "Dir::Etc::SourceList=$dir/etc/sources.list"
    -o "Dir::Etc::SourceParts=$dir/etc/sources.list.d"
    -o "Dir::Etc::Preferences=$dir/etc/preferences"
    -o "Dir::Etc::PreferencesParts=$dir/etc/preferences.d"
    -o "Dir::State::Lists=$dir/lists"
    -o "Dir::State::status=$dir/status"
    -o "Dir::Cache=$dir/cache"
    # Debian's container images turn apt's binary cache off (docker-clean); without it every
    # apt-cache call re-parses the whole index (seconds each).
    -o "Dir::Cache::pkgcache=pkgcache.bin"
    -o "Dir::Cache::srcpkgcache=srcpkgcache.bin"
    -o "APT::Architecture=$deb_arch"
    -o "APT::Architectures=$deb_arch"
    -o "Acquire::Languages=none"
    -q
  )
}

# Runs an apt command that reads the index, while no update replaces it.
apt_read() { flock -s "$APT_LOCK" "$@"; }

# Updates the private indexes, signatures on, unless they were updated for this suite less than
# INDEX_MAX_AGE seconds ago. When the system keyring is too old to know the suite's signing key, a
# newer debian-archive-keyring is taken from Debian stable, whose index the system keyring does
# verify (chain of trust).
apt_update() {
  local deb_arch=$1 stamp lock_fd
  apt_setup "$deb_arch" "$KEYRING"
  stamp="$(dirname "$APT_LOCK")/updated"
  exec {lock_fd}>>"$APT_LOCK"
  flock -x "$lock_fd"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$MIRROR $SUITE" ] && [ $(($(date +%s) - $(stat -c %Y "$stamp"))) -lt "$INDEX_MAX_AGE" ]; then
    log "index of Debian $SUITE ($deb_arch) updated $(($(date +%s) - $(stat -c %Y "$stamp"))) s ago: kept"
  else
    rm -f "$stamp"
    apt_update_locked "$deb_arch"
    # The binary cache is built now, under the lock, rather than by the first concurrent reader.
    apt-cache "${APT_OPTS[@]}" gencaches >/dev/null
    echo "$MIRROR $SUITE" >"$stamp"
  fi
  exec {lock_fd}>&-
}

apt_update_locked() {
  local deb_arch=$1 out
  if [ -z "${PG_LAYER_KEYRING_FROM_STABLE:-}" ] && out=$(apt-get "${APT_OPTS[@]}" update 2>&1) && ! grep -qE '^(W|E): .*(NO_PUBKEY|not signed|EXPKEYSIG|signature)' <<<"$out"; then
    return
  fi
  [ -n "${PG_LAYER_KEYRING_FROM_STABLE:-}" ] || grep -qE 'NO_PUBKEY|EXPKEYSIG' <<<"$out" || die "apt-get update of $SUITE failed:"$'\n'"$out"
  log "verifying $SUITE with the debian-archive-keyring of Debian stable, itself verified by the system keyring"
  local boot="$PG_LAYER_CACHE/keyring-bootstrap" saved_suite=$SUITE
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

declare -gA PKG_RECORD REC_VERSION REC_SHA REC_FILE REC_DEPS PKG_VERSION PKG_DEB PKG_SHA PKG_ROOT PKG_DEPS USED RESOLVED FROM

# Reads the candidates' index records of the packages not read yet, with one apt-cache run (each
# run reads the whole binary cache), into REC_VERSION, REC_SHA, REC_FILE (the pool's file name)
# and REC_DEPS (direct dependencies: first alternative, no version, no :any). PKG_RECORD marks a
# name as read; a name with no candidate (a virtual package) has no REC_VERSION.
read_records() {
  local p name ver sha file deps missing=()
  for p; do [ -n "${PKG_RECORD[$p]:-}" ] || missing+=("$p"); done
  [ "${#missing[@]}" -gt 0 ] || return 0
  for p in "${missing[@]}"; do PKG_RECORD[$p]=1; done
  while IFS=$'\t' read -r name ver sha file deps; do
    REC_VERSION[$name]=$ver REC_SHA[$name]=$sha REC_FILE[$name]=$file REC_DEPS[$name]=$deps
  done < <(apt_read apt-cache "${APT_OPTS[@]}" --no-all-versions show "${missing[@]}" 2>/dev/null | awk '
    function flush() { if (name != "") printf "%s\t%s\t%s\t%s\t%s\n", name, ver, sha, file, deps; name = ver = sha = file = deps = "" }
    NF == 0 { flush(); next }
    $1 == "Package:" { name = $2 } $1 == "Version:" { ver = $2 } $1 == "SHA256:" { sha = $2 }
    $1 == "Filename:" { n = split($2, p, "/"); file = p[n] }
    /^(Pre-)?Depends:/ { sub(/^[^:]*:/, ""); n = split($0, d, ","); for (i = 1; i <= n; i++) {
      split(d[i], alt, "|"); gsub(/\(.*\)|:any|[ \t]/, "", alt[1]); if (!((alt[1]) in seen)) deps = deps alt[1] " "; seen[alt[1]] = 1 } }
    NF == 0 || /^Package:/ { delete seen }
    END { flush() }')
}

# The cache's file of a read package: name, version (its epoch colon escaped, as apt does) and the
# signed index's sha256.
cached_deb() {
  local ver=${REC_VERSION[$1]}
  CACHED_DEB="$PG_LAYER_CACHE/debs/$1_${ver//:/%3a}_${REC_SHA[$1]}.deb"
}

# Downloads, with ONE apt-get run (one connection, requests pipelined), those of the given read
# packages that the cache lacks, and files each under its cache name, matched by sha256 (apt
# names files after the version, the pool after the upstream file name).
download() {
  local debs="$PG_LAYER_CACHE/debs" p want=() tmp sha file lock_fd
  declare -A by_sha=()
  mkdir -p "$debs"
  exec {lock_fd}>>"$debs/.lock"
  flock -x "$lock_fd"
  for p; do
    cached_deb "$p"
    [ -f "$CACHED_DEB" ] && continue
    want+=("$p=${REC_VERSION[$p]}")
    by_sha[${REC_SHA[$p]}]=$p
  done
  if [ "${#want[@]}" -gt 0 ]; then
    log "downloading ${#want[@]} packages: ${want[*]}"
    tmp=$(mktemp -d "$debs/.dl-XXXXXX") && apt_owner "$tmp"
    (cd "$tmp" && apt_read apt-get "${APT_OPTS[@]}" download "${want[@]}") >&2 || { rm -rf "$tmp"; die "could not download ${want[*]}"; }
    while read -r sha file; do
      p=${by_sha[$sha]:-}
      [ -n "$p" ] || { rm -rf "$tmp"; die "$(basename "$file"): sha256 $sha matches none of the packages asked for (the signed index says otherwise)"; }
      cached_deb "$p"
      mv "$file" "$CACHED_DEB"
      unset "by_sha[$sha]"
    done < <(sha256sum "$tmp"/*.deb)
    rm -rf "$tmp"
    [ "${#by_sha[@]}" -eq 0 ] || die "apt-get download left out ${by_sha[*]}"
  fi
  exec {lock_fd}>&-
}

# Resolves from the index alone, before anything is downloaded, the packages the closure walk
# (closure below) can ask for, and downloads the missing ones in one go: the given packages, and
# the direct dependencies of each of them and of every library package (lib*, zlib*) reached, as
# the walk fetches the dependencies of the packages whose libraries it uses. A package the walk
# asks for beyond this guess is still fetched, alone, when asked for.
prefetch() {
  local frontier=("$@") next p dep want=()
  declare -A seen=() root=()
  for p; do root[$p]=1; done
  while [ "${#frontier[@]}" -gt 0 ]; do
    read_records "${frontier[@]}"
    next=()
    for p in "${frontier[@]}"; do
      [ -z "${seen[$p]:-}" ] || continue
      seen[$p]=1
      [ -n "${REC_VERSION[$p]:-}" ] || continue
      want+=("$p")
      case "$p" in lib* | zlib*) ;; *) [ -n "${root[$p]:-}" ] || continue ;; esac
      for dep in ${REC_DEPS[$p]}; do [ -n "${seen[$dep]:-}" ] || next+=("$dep"); done
    done
    frontier=("${next[@]}")
  done
  download "${want[@]}"
}

# Extracts the candidate version of a package from the cache (downloading it first when
# prefetch did not); its sha256 is checked against the signed index.
fetch() {
  local pkg=$1 root sha
  [ -n "${PKG_ROOT[$pkg]:-}" ] && return
  read_records "$pkg"
  [ -n "${REC_VERSION[$pkg]:-}" ] || die "package $pkg has no candidate in Debian $SUITE"
  cached_deb "$pkg"
  [ -f "$CACHED_DEB" ] || download "$pkg"
  sha=$(sha256sum <"$CACHED_DEB" | cut -d' ' -f1)
  [ "$sha" = "${REC_SHA[$pkg]}" ] || { rm -f "$CACHED_DEB"; die "$CACHED_DEB: sha256 $sha differs from the signed index (${REC_SHA[$pkg]}); removed, build again"; }
  root="$WORK/x/$pkg"
  rm -rf "$root" && mkdir -p "$root"
  dpkg-deb -x "$CACHED_DEB" "$root"
  # PKG_DEB: the pool's file name, as the manifest has always recorded it.
  PKG_VERSION[$pkg]=${REC_VERSION[$pkg]} PKG_SHA[$pkg]=$sha PKG_ROOT[$pkg]=$root PKG_DEB[$pkg]=${REC_FILE[$pkg]} PKG_DEPS[$pkg]=${REC_DEPS[$pkg]}
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

# The shared-library closure of ELF files already copied into the layer: breadth-first walk of
# their NEEDED entries (and the loader). A library not found in the packages fetched so far is
# looked for in the direct dependencies of the packages used so far; nothing left: fail, naming
# each missing library and who needs it. Libraries are copied, dereferenced, under their soname
# into $1; every ELF is checked to be of the target machine.
#   closure <lib dir> <machine> <loader soname> <elf>...
closure() {
  local libdir=$1 machine=$2 loader=$3; shift 3
  local queue=("$@") pending=("$loader") soname pkg path dep progress elf
  while [ "${#queue[@]}" -gt 0 ] || [ "${#pending[@]}" -gt 0 ]; do
    for elf in "${queue[@]}"; do
      readelf -h "$elf" | grep -q "Machine: *$machine" || die "$elf is not a $machine ELF"
      for soname in $(needed "$elf"); do
        [ -n "${RESOLVED[$soname]:-}" ] || pending+=("$soname")
        : "${FROM[$soname]:=$(basename "$elf")}"
      done
    done
    queue=()
    local still=()
    for soname in $(printf '%s\n' "${pending[@]}" | sort -u); do
      [ -n "${RESOLVED[$soname]:-}" ] && continue
      path=
      for pkg in "${!PKG_ROOT[@]}"; do
        if path=$(find_lib "${PKG_ROOT[$pkg]}" "$soname"); then USED[$pkg]=1; break; fi
      done
      if [ -n "$path" ]; then
        RESOLVED[$soname]=$pkg
        cp -L "$path" "$libdir/$soname"
        chmod 0755 "$libdir/$soname"
        queue+=("$libdir/$soname")
      else
        still+=("$soname")
      fi
    done
    pending=("${still[@]}")
    if [ "${#pending[@]}" -gt 0 ] && [ "${#queue[@]}" -eq 0 ]; then
      progress=false
      for pkg in "${!USED[@]}"; do
        for dep in ${PKG_DEPS[$pkg]}; do
          [ -n "${PKG_ROOT[$dep]:-}" ] && continue
          fetch "$dep"
          progress=true
        done
      done
      if ! $progress; then
        for soname in "${pending[@]}"; do echo "error: library $soname (needed by ${FROM[$soname]:-the loader}) is in none of the packages: ${!PKG_ROOT[*]}" >&2; done
        exit 1
      fi
    fi
  done
}

# The Debian copyright file of every package that contributes files, under <out>/licenses/.
copy_licenses() {
  local out=$1 pkg doc
  for pkg in $(printf '%s\n' "${!USED[@]}" | sort); do
    doc="${PKG_ROOT[$pkg]}/usr/share/doc/$pkg/copyright"
    # Some packages' doc folder is a link to another package's (libgcc-s1 -> gcc-<n>-base).
    if [ ! -f "$doc" ] && [ -L "${PKG_ROOT[$pkg]}/usr/share/doc/$pkg" ]; then
      local other
      other=$(basename "$(readlink "${PKG_ROOT[$pkg]}/usr/share/doc/$pkg")")
      fetch "$other"
      doc="${PKG_ROOT[$other]}/usr/share/doc/$other/copyright"
    fi
    [ -f "$doc" ] || doc=$(find "${PKG_ROOT[$pkg]}/usr/share/doc" -name copyright -type f 2>/dev/null | head -n1)
    [ -n "$doc" ] && [ -f "$doc" ] || die "$pkg ships no copyright file"
    mkdir -p "$out/licenses/$pkg" && cp "$doc" "$out/licenses/$pkg/copyright"
  done
}

# A reproducible zip of <tree> (same packages, same bytes): fixed timestamps (<epoch>), sorted
# entries, no directory entries, no extra attributes, so the CDK asset hash changes only when the
# content does.
reproducible_zip() {
  local tree=$1 zip=$2 epoch=$3
  find "$tree" -exec touch -h -d "@$epoch" {} +
  rm -f "$zip"
  (cd "$tree" && find . -type f | LC_ALL=C sort | sed 's|^\./||' | zip -q -X -D -6 "$zip" -@)
}
