#!/usr/bin/env bash
# tests/stripes.sh: regions fit the backend's stripes. ROMIO's
# striping_unit/striping_factor hints reach libdelegate through the driver,
# the region size follows route.FitRegion (delegate_region_size wins), the
# program sees the chosen size in MPI_File_get_info, and the servers'
# counters show the file cut that way: 2 ranks each write 2 MiB in one call
# over 2 servers, so the servers receive 4 MiB / region extents between
# them. Needs build/env.sh (tests/setup.sh); every command is bounded.
set -uo pipefail
top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
. "$top/build/env.sh"
work=$(mktemp -d /tmp/dlg-stripes-XXXXXX)
trap 'rm -rf "$work"' EXIT
failures=0
ok() { printf '  ok    %s\n' "$*"; }
bad() { printf '  FAIL  %s\n' "$*"; failures=$((failures + 1)); }
per=$((2 << 20))
# The servers must see the writes to count their extents: no lease writes
# (README, Semantics), which a clean file's 2 MiB writes would otherwise be.
export DELEGATE_LEASE_MIN=0

# The command delegate-run runs: the program, then each server's
# extents_in (the servers are fresh for every case).
cat >"$work/case.sh" <<'INNER'
set -u
timeout 120 mpiexec -n 2 "$1" "$2" "$3" "$4" "$5" "$6" </dev/null || exit 1
total=0
IFS=, read -ra addrs <<<"$DELEGATE_SERVERS"
for a in "${addrs[@]}"; do
    n=$(timeout 10 delegate-server stats --json --connect "$a" | grep -o '"extents_in":[0-9]*' | cut -d: -f2)
    total=$((total + ${n:-0}))
done
echo "extents $total"
INNER

echo "== region size from the striping hints (2 ranks, 2 servers, DELEGATE_REGION_SIZE unset: 1 MiB)"
# unit factor region(hint) -> expected region size
while read -r unit factor region want; do
    f=$work/f.$unit.$factor.$region
    out=$(timeout 180 delegate-run --quiet --servers 2 -- \
        bash "$work/case.sh" "$top/build/tests/stripetest" "delegate:$f" "$unit" "$factor" "$region" $per 2>&1)
    got=$(sed -n 's/^region //p' <<<"$out")
    ext=$(sed -n 's/^extents //p' <<<"$out")
    want_ext=$((2 * per / want))
    desc="striping_unit=$unit striping_factor=$factor delegate_region_size=$region"
    if [ "$got" = "$want" ] && [ "$ext" = "$want_ext" ] && [ "$(stat -c %s "$f" 2>/dev/null)" = $((2 * per)) ]; then
        ok "$desc: region $got, the servers got $ext extents (4 MiB / region), file of $((2 * per)) bytes"
    else
        bad "$desc: region '$got' (want $want), extents '$ext' (want $want_ext): $(tail -3 <<<"$out" | tr '\n' ' ')"
    fi
    rm -f "$f"
done <<'CASES'
- - - 1048576
262144 - - 262144
262144 4 - 524288
262144 3 - 262144
65536 8 - 262144
262144 4 128K 131072
CASES

if [ $failures -gt 0 ]; then
    echo "stripes: $failures FAILED"
    exit 1
fi
echo "stripes: all passed"
