#!/usr/bin/env bash
# tests/conformance.sh: ROMIO's own test programs (src/mpi/romio/test) and
# MPICH's I/O tests (test/mpi/io), built from the patched MPICH's source
# tree against the patched MPICH, each run on ufs: and on delegate: (with 1
# and 2 servers) at the rank counts their test lists use. Prints a table and
# fails if any test that passes on ufs: fails on delegate:.
#
#   tests/conformance.sh [--quick]     (--quick: delegate with 1 server only)
#
# ROMIO's programs take the file name as an argument (-fname delegate:...).
# MPICH's use fixed relative names, so they run with ROMIO_FSTYPE_FORCE set
# (every open goes to the named driver) in a directory of their own.
# Needs build/env.sh (tests/setup.sh). Every run is bounded by a timeout.
set -uo pipefail
top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
. "$top/build/env.sh"
quick=0
[ "${1:-}" = --quick ] && quick=1
src=$DELEGATE_MPICH_SOURCE
[ -d "$src/src/mpi/romio/test" ] || { echo "conformance: no MPICH source tree (DELEGATE_MPICH_SOURCE=$src)" >&2; exit 1; }
bin=$top/build/conformance
mkdir -p "$bin"
work=$(mktemp -d /tmp/dlg-conf-XXXXXX)
trap 'rm -rf "$work"' EXIT
T=${T:-180}

# -- build ------------------------------------------------------------------
build() { # out src [extra objects...]
    local out=$1 c=$2
    shift 2
    [ "$bin/$out" -nt "$c" ] && return 0
    mpicc -O1 -w -I"$src/test/mpi/include" -I"$bin" -o "$bin/$out" "$c" "$@" >"$bin/$out.log" 2>&1 ||
        { echo "conformance: cannot build $out: $(tail -2 "$bin/$out.log")" >&2; return 1; }
}
romio_tests="simple:4 psimple:4 status:1 error:1 async:4 async-multiple:4 atomicity:4 coll_test:4
split_coll:4 darray_read:4 noncontig:2 i_noncontig:2 noncontig_coll:2 noncontig_coll2:4
aggregation1:4 aggregation2:4 hindexed:4 types_with_zeros:2 excl:4 creat_excl:4 file_info:4
misc:4 shared_fp:4 ordered_fp:4 big_extents:4"
for t in $romio_tests; do
    name=${t%%:*}
    build "romio-$name" "$src/src/mpi/romio/test/$name.c" || true
done
u=$src/test/mpi/util
for o in mtest mtest_common mtest_single; do
    [ "$bin/$o.o" -nt "$u/$o.c" ] ||
        mpicc -O1 -w -I"$src/test/mpi/include" -I"$bin" -c "$u/$o.c" -o "$bin/$o.o" 2>>"$bin/mtest.log"
done
# name:np[:argument] from the test list ("arg=X" gives the program X)
mpich_tests=$(awk 'NF && $1 !~ /^#/ {a=""; for (i=3;i<=NF;i++) if ($i ~ /^arg=/) a=":" substr($i,5); print $1 ":" $2 a}' "$src/test/mpi/io/testlist")
for t in $mpich_tests; do
    name=${t%%:*}
    build "mpich-$name" "$src/test/mpi/io/$name.c" "$bin/mtest.o" "$bin/mtest_common.o" "$bin/mtest_single.o" || true
done

# -- run --------------------------------------------------------------------
# run_romio FS NAME NP: FS is ufs: or delegate:, the latter inside delegate-run.
romio_args() { # name path
    case $1 in
    darray_read | aggregation2 | hindexed | types_with_zeros | big_extents) echo "$2" ;;
    aggregation1) echo "-h -f $2" ;;
    *) echo "-fname $2" ;;
    esac
}
# Each configuration runs every test inside one invocation of this script
# (under one delegate-run for delegate:), writing PASS/FAIL lines.
if [ "${DLG_CONF_INNER:-}" = 1 ]; then
    fs=$2 dir=$3
    for t in $romio_tests; do
        name=${t%%:*} np=${t##*:}
        [ -x "$bin/romio-$name" ] || { echo "romio/$name NOBUILD"; continue; }
        mkdir -p "$dir/romio-$name"
        out=$dir/romio-$name.out
        # shellcheck disable=SC2046
        (cd "$dir/romio-$name" && timeout "$T" mpiexec -n "$np" "$bin/romio-$name" $(romio_args "$name" "$fs$dir/romio-$name/f") </dev/null >"$out" 2>&1)
        rc=$?
        if [ $rc = 0 ] && grep -q "No Errors" "$out"; then echo "romio/$name PASS"; else echo "romio/$name FAIL rc=$rc"; fi
    done
    for t in $mpich_tests; do
        IFS=: read -r name np arg <<<"$t"
        [ -x "$bin/mpich-$name" ] || { echo "mpich/$name NOBUILD"; continue; }
        mkdir -p "$dir/mpich-$name"
        out=$dir/mpich-$name.out
        # shellcheck disable=SC2086
        (cd "$dir/mpich-$name" && ROMIO_FSTYPE_FORCE=$fs timeout "$T" mpiexec -n "$np" "$bin/mpich-$name" $arg </dev/null >"$out" 2>&1)
        rc=$?
        if [ $rc = 0 ] && grep -q "No Errors" "$out"; then echo "mpich/$name PASS"; else echo "mpich/$name FAIL rc=$rc"; fi
    done
    exit 0
fi

configs="ufs delegate1"
[ $quick = 1 ] || configs="$configs delegate2"
for c in $configs; do
    mkdir -p "$work/$c"
    t0=$SECONDS
    case $c in
    ufs) DLG_CONF_INNER=1 "$0" inner ufs: "$work/$c" >"$work/$c.txt" ;;
    delegate*) DLG_CONF_INNER=1 timeout 3000 delegate-run --quiet --servers "${c#delegate}" -- "$0" inner delegate: "$work/$c" >"$work/$c.txt" ;;
    esac
    echo "conformance: $c done in $((SECONDS - t0))s"
done

# -- table ------------------------------------------------------------------
result() { awk -v k="$2" '$1==k {print $2; exit}' "$work/$1.txt"; }
printf '\n%-28s' "test"
for c in $configs; do printf ' %-10s' "$c"; done
printf '\n'
reg=0
for key in $(awk '{print $1}' "$work/ufs.txt"); do
    printf '%-28s' "$key"
    u=$(result ufs "$key")
    for c in $configs; do
        r=$(result "$c" "$key")
        printf ' %-10s' "${r:-MISSING}"
        if [ "$c" != ufs ] && [ "$u" = PASS ] && [ "$r" != PASS ]; then
            reg=$((reg + 1))
            echo "$key on $c: ${r:-MISSING}; first lines of its output:" >>"$work/regressions"
            sed -n '1,12p' "$work/$c/${key/\//-}.out" >>"$work/regressions" 2>/dev/null
        fi
    done
    printf '\n'
done
echo
ufspass=$(grep -c " PASS" "$work/ufs.txt" || true)
echo "conformance: $ufspass of $(wc -l <"$work/ufs.txt") tests pass on ufs:; $reg of them fail on delegate:"
[ -f "$work/regressions" ] && cat "$work/regressions"
# A delegate: failure of a test that also fails on ufs: is not a regression.
exit $((reg > 0))
