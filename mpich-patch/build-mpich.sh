#!/usr/bin/env bash
# Builds Debian's MPICH 4.0.2 with the delegate ROMIO driver into a cache
# outside the repository and prints the install prefix on stdout.
#
# The cache directory is keyed by a hash of everything that ends up in the
# build (the patch series, this script, adio_delegate/ and include/delegate.h),
# so a warm run takes well under a second and a changed driver gets a fresh,
# cold build (about 10 minutes on 2 cores).
#
#   DELEGATE_CACHE   cache root (default ${XDG_CACHE_HOME:-$HOME/.cache}/delegate)
#   DELEGATE_JOBS    parallel make jobs (default: number of CPUs)
#
# Options:
#   --sync-driver    developer shortcut: copy the current driver into the newest
#                    build tree made from the same patch series and run an
#                    incremental `make install` there (seconds instead of minutes).
#                    The result is not keyed; CI and the README never use it.
#   --print-key      print the cache key and exit.
set -euo pipefail

top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache=${DELEGATE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/delegate}
jobs=${DELEGATE_JOBS:-$(nproc)}
mpich_version=4.0.2

log() { printf 'build-mpich: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# Files whose content decides the build. The patch key covers what needs a
# regenerated ROMIO (configure.ac, Makefile.mk); the full key adds the sources.
patch_inputs() { ls "$top"/mpich-patch/*.patch "$top/mpich-patch/build-mpich.sh" "$top/adio_delegate/Makefile.mk"; }
all_inputs() { { patch_inputs; ls "$top"/adio_delegate/*.[ch] "$top/include/delegate.h"; } | sort -u; }
hash_files() { xargs sha256sum | awk '{print $1}' | sha256sum | cut -c1-16; }
key=$(all_inputs | hash_files)
patch_key=$(patch_inputs | hash_files)

case "${1:-}" in
--print-key) echo "$key"; exit 0 ;;
--sync-driver | "") ;;
*) die "unknown option $1" ;;
esac

prefix=$cache/mpich-$mpich_version-$key
if [ "${1:-}" != --sync-driver ] && [ -f "$prefix/.delegate-complete" ]; then
    echo "$prefix"
    exit 0
fi

mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9
# Another run may have finished the same build while we waited for the lock.
if [ "${1:-}" != --sync-driver ] && [ -f "$prefix/.delegate-complete" ]; then
    echo "$prefix"
    exit 0
fi

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# Build tools. Installed only when missing, so a warm machine never calls apt.
need_pkgs=(build-essential autoconf automake libtool dpkg-dev m4 pkg-config perl python3 file)
missing=()
for p in "${need_pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# Debian's source package, extracted once (with Debian's own patches applied
# by dpkg-source) and shared by every key.
src=$cache/src/mpich-$mpich_version
if [ ! -f "$src/.delegate-extracted" ]; then
    if ! grep -rqsE '^(deb-src|Types:.*deb-src)' /etc/apt/sources.list /etc/apt/sources.list.d/; then
        log "adding a deb-src entry for bookworm main"
        as_root tee /etc/apt/sources.list.d/delegate-deb-src.sources >/dev/null <<'EOF'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    fi
    rm -rf "$cache/src"
    mkdir -p "$cache/src"
    log "fetching Debian's mpich source package"
    (cd "$cache/src" && apt-get source -qq mpich >/dev/null 2>"$cache/src/apt-source.log") ||
        die "apt-get source mpich failed: $(tail -3 "$cache/src/apt-source.log")"
    [ -f "$src/configure" ] || die "apt-get source did not produce $src (is bookworm's mpich $mpich_version?)"
    touch "$src/.delegate-extracted"
fi

install_driver() {
    local dir=$1/src/mpi/romio/adio/ad_delegate
    mkdir -p "$dir"
    cp "$top"/adio_delegate/*.[ch] "$top/adio_delegate/Makefile.mk" "$dir/"
    cp "$top/include/delegate.h" "$dir/delegate.h"
}

if [ "${1:-}" = --sync-driver ]; then
    bt=$(ls -dt "$cache"/build-"$patch_key"-* 2>/dev/null | head -1)
    [ -n "$bt" ] || die "no build tree for patch key $patch_key: run without --sync-driver first"
    install_driver "$bt"
    log "incremental build in $bt"
    (cd "$bt" && make -j"$jobs" install >"$bt/delegate-sync.log" 2>&1) ||
        die "incremental build failed: see $bt/delegate-sync.log"
    grep -E 'ad_delegate.*(warning|error)' "$bt/delegate-sync.log" >&2 || true
    cat "$bt/.delegate-prefix"
    exit 0
fi

bt=$cache/build-$patch_key-$key
rm -rf "$bt" "$prefix"
log "cold build of MPICH $mpich_version with the delegate driver (key $key), log in $bt/delegate-build.log"
cp -a "$src" "$bt"
echo "$prefix" >"$bt/.delegate-prefix"
for p in "$top"/mpich-patch/*.patch; do
    patch -s -p1 -d "$bt" <"$p" || die "patch $(basename "$p") does not apply"
done
install_driver "$bt"
buildlog=$bt/delegate-build.log
run() { "$@" >>"$buildlog" 2>&1 || die "'$*' failed; last lines of $buildlog:$(printf '\n'; tail -25 "$buildlog")"; }
# ROMIO alone is regenerated: the top-level configure passes every option through.
(cd "$bt/src/mpi/romio" && run ./autogen.sh)
cd "$bt"
# --disable-static: nothing links libmpi.a, and libtool compiled every file
# twice for it (the make took 7 min instead of 5.5 here).
# --enable-yield=sched_yield: a rank waiting in MPI calls sched_yield() every
# MPIR_CVAR_POLLS_BEFORE_YIELD polls (1000), where MPICH's Linux default is
# to spin without yielding. Ranks that outnumber the cores (the tests run 3
# and 4 on 2) then hand their core to the rank the others wait for instead of
# spinning out their time slice: tests/visibility.sh's 4-rank cases took 11 s
# instead of 47. MPIR_CVAR_POLLS_BEFORE_YIELD=0 restores the default's
# behaviour at run time (tests/bench.sh sets it, README).
run ./configure --prefix="$prefix" \
    --with-device=ch3:nemesis --with-pm=hydra \
    --disable-fortran --disable-cxx --disable-doc \
    --with-file-system=ufs+testfs+delegate \
    --enable-shared --disable-static --enable-wrapper-rpath \
    --enable-yield=sched_yield
run make -j"$jobs"
run make install

# Debian names the library libmpich.so.12; programs and libraries linked
# against Debian's libmpich12 (parallel HDF5, for one) find the patched MPICH
# through this name once $prefix/lib is on LD_LIBRARY_PATH.
(cd "$prefix/lib" && ln -sf libmpi.so.12 libmpich.so.12)
grep -q 'delegate' "$bt/src/mpi/romio/localdefs" 2>/dev/null || true
echo "$bt" >"$prefix/.delegate-build-tree"
echo "$key" >"$prefix/.delegate-complete"

# Keep the four newest builds (about 570 MB each): older keys are dead
# weight, but engineers working in several clones at once each need theirs.
for old in $(ls -dt "$cache"/mpich-$mpich_version-* 2>/dev/null | tail -n +5); do
    k=${old##*-}
    rm -rf "$old" "$cache"/build-*-"$k"
done
log "installed into $prefix"
echo "$prefix"
