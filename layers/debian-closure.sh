# Sourced, not run. Building blocks of a self-contained layer made from Debian packages: a
# private apt configuration, verified downloads, and the shared-library closure of a set of ELF
# files (loader and libc included). Used by layers/pg-server/build.sh; it follows the same approach
# as layers/pg-dump/build.sh (see its README), which keeps its own copy so that its built output,
# shared by every checkout, is not rebuilt for a refactoring.
#
# The caller sets: PG_MAJOR, SUITE, KEYRING, MIRROR, CACHE, WORK (per-architecture scratch) and
# defines die() and log(). Globals filled here: PKG_VERSION PKG_DEB PKG_SHA PKG_ROOT PKG_DEPS
# (per fetched package), USED (packages that contribute files), RESOLVED (soname -> package).

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
    # Debian's container images turn apt's binary cache off (docker-clean); without it every
    # apt-cache call re-parses the whole index (seconds each, dozens of calls).
    -o "Dir::Cache::pkgcache=pkgcache.bin"
    -o "Dir::Cache::srcpkgcache=srcpkgcache.bin"
    -o "APT::Architecture=$deb_arch"
    -o "APT::Architectures=$deb_arch"
    -o "Acquire::Languages=none"
    -q
  )
}

# Updates the private indexes, signatures on. When the system keyring is too old to know the
# suite's signing key, a newer debian-archive-keyring is taken from Debian stable, whose index the
# system keyring does verify (chain of trust), as in layers/pg-dump/build.sh.
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

declare -gA PKG_VERSION PKG_DEB PKG_SHA PKG_ROOT PKG_DEPS USED RESOLVED FROM
# Downloads (once, into the cache) and extracts the candidate version of a package; its sha256 is
# checked against the signed index.
fetch() {
  local pkg=$1 ver debs="$CACHE/debs" root record want_sha file sha
  [ -n "${PKG_ROOT[$pkg]:-}" ] && return
  mkdir -p "$debs"
  record=$(apt-cache "${APT_OPTS[@]}" --no-all-versions show "$pkg" 2>/dev/null | awk 'NF == 0 { exit } { print }') || true
  ver=$(awk '/^Version:/ { print $2 }' <<<"$record")
  [ -n "$ver" ] || die "package $pkg has no candidate in Debian $SUITE"
  want_sha=$(awk '/^SHA256:/ { print $2 }' <<<"$record")
  file=$(awk '/^Filename:/ { n = split($2, p, "/"); print p[n] }' <<<"$record")
  if [ ! -f "$debs/$file" ] || [ "$(sha256sum <"$debs/$file" | cut -d' ' -f1)" != "$want_sha" ]; then
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
