#!/usr/bin/env bash
# tests/visibility.sh: a write that returned is seen after any MPI operation
# that orders two processes, with default hints (tests/prog/vistest.c):
#  - the program on ufs: first, every case (it is right: 0 stale);
#  - delegate: with 2, 3 and 4 ranks and 1, 2 and 3 servers: write, then
#    barrier, or a send/recv pair; records of 64 B, 4 KiB and 64 KiB; 200
#    trials each: 0 stale;
#  - delegate: 4 ranks, 2 servers, the other orderings (iwrite+wait, a
#    collective write, RMA fence, a barrier after a collective write and a
#    set_view, read by a process that took no part in them) and two
#    handles in one process: 0 stale;
#  - with the fence turned off (DELEGATE_FENCE=0) reads must be stale, or
#    the cases above prove nothing;
#  - atomic mode: calls larger than one request are one unit
#    (tests/prog/atomictest.c), on ufs: and delegate: with 1 and 2 servers;
#  - delegate_write_ack=sync as an extra.
# Needs build/env.sh (tests/setup.sh). Every command is bounded by timeout.
set -uo pipefail
top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
. "$top/build/env.sh"
work=$(mktemp -d /tmp/dlg-vis-XXXXXX)
trap 'rm -rf "$work"' EXIT
failures=0
ok() { printf '  ok    %s\n' "$*"; }
bad() { printf '  FAIL  %s\n' "$*"; failures=$((failures + 1)); }
run() { timeout 300 "$@" </dev/null; }
vis=$top/build/tests/vistest

# check NAME CASES OUTPUT: the program ran CASES cases and no read was
# stale. A case line ends "N of M reads stale".
check() {
    local name=$1 want=$2 out=$3 cases stale reads
    cases=$(grep -c 'reads stale' <<<"$out")
    stale=$(awk '/reads stale/ {n += $(NF-4)} END {print n + 0}' <<<"$out")
    reads=$(awk '/reads stale/ {n += $(NF-2)} END {print n + 0}' <<<"$out")
    if grep -q "vistest ok" <<<"$out" && [ "$cases" -eq "$want" ] && [ "$stale" -eq 0 ]; then
        ok "$name: $cases cases, 0 of $reads reads stale"
    else
        bad "$name: $cases of $want cases, $stale stale: $(grep -v ' 0 of' <<<"$out" | grep -E 'stale|FAILED|rror' | head -4 | tr '\n' ' ')"
    fi
}

echo "== the program on ufs: (every ordering POSIX gives; 50 trials)"
out=$(run mpiexec -n 4 "$vis" "ufs:$work/ufs" 50 2>&1)
check "ufs:, 4 ranks" 21 "$out"
rm -f "$work"/ufs*

echo "== delegate:, default hints: write, barrier or send/recv, read (200 trials)"
for np in 2 3 4; do
    for ns in 1 2 3; do
        out=$(run delegate-run --quiet --servers $ns -- mpiexec -n $np "$vis" "delegate:$work/d.$np.$ns" 200 --modes barrier,sendrecv 2>&1)
        check "$np ranks, $ns server(s)" 6 "$out"
        rm -f "$work"/d.*
    done
done

echo "== delegate:, default hints: iwrite, collective, RMA, a third process after set_view, two handles (200 trials)"
out=$(run delegate-run --quiet --servers 2 -- mpiexec -n 4 "$vis" "delegate:$work/x" 200 --modes iwrite,coll,collonly,win,third,handles 2>&1)
check "4 ranks, 2 servers" 18 "$out"
rm -f "$work"/x*

echo "== delegate:, collectives held in the rings until the end markers (--coll-direct, off by default; 200 trials)"
out=$(run delegate-run --servers 2 --coll-direct=true -- mpiexec -n 4 "$vis" "delegate:$work/h" 200 --modes coll,collonly 2>&1)
check "4 ranks, 2 servers, --coll-direct" 6 "$out"
# the servers' summaries: the held path ran, or the case above tested the default's
held=$(sed -n 's/.*collective writes (\([0-9]*\) held for the end markers.*/\1/p' <<<"$out" | awk '{s += $1} END {print s + 0}')
if [ "$held" -gt 0 ]; then
    ok "--coll-direct: $held collective writes held for their end markers"
else
    bad "--coll-direct: no collective write held"
fi
rm -f "$work"/h*

echo "== the same without the fence: the test must be able to fail"
out=$(DELEGATE_FENCE=0 run delegate-run --quiet --servers 2 -- mpiexec -n 4 "$vis" "delegate:$work/nofence" 50 --modes barrier,sendrecv 2>&1)
stale=$(awk '/reads stale/ {n += $(NF-4)} END {print n + 0}' <<<"$out")
if [ "$stale" -gt 0 ]; then
    ok "DELEGATE_FENCE=0: $stale stale reads, so the cases above can fail"
else
    bad "DELEGATE_FENCE=0 gave no stale read: the test cannot tell ($(tail -2 <<<"$out" | tr '\n' ' '))"
fi
rm -f "$work"/nofence*

echo "== extra: delegate_write_ack=sync"
out=$(run delegate-run --quiet --servers 2 -- mpiexec -n 4 "$vis" "delegate:$work/ack" 50 --ack --modes barrier,sendrecv 2>&1)
check "write_ack=sync, 4 ranks, 2 servers" 6 "$out"

echo "== atomic mode: calls larger than one request (tests/prog/atomictest.c, 3 ranks, 10 rounds)"
# Every rank overwrites one range, rank 0 reads it between: one writer's
# bytes throughout. A 20 MiB call and a view of 6,000 blocks are two
# requests each; the build before atomic calls were one unit (f648c93)
# fails here at once, its reads a mix.
at=$top/build/tests/atomictest
atomic_case() { # NAME OUTPUT
    if grep -q "atomictest ok" <<<"$2"; then
        ok "$1: $(grep -c 'every read one writer' <<<"$2") shapes, every read one writer's"
    else
        bad "$1: $(grep -E 'atomictest|rror' <<<"$2" | head -2 | tr '\n' ' ')"
    fi
}
atomic_case "ufs:" "$(run mpiexec -n 3 "$at" "ufs:$work/at-ufs" 10 2>&1)"
for ns in 1 2; do
    atomic_case "delegate:, $ns server(s)" "$(run delegate-run --quiet --servers $ns -- mpiexec -n 3 "$at" "delegate:$work/at.$ns" 10 2>&1)"
done
rm -f "$work"/at*

echo "== lease writes: 4 MiB writes straight to the backend (tests/prog/leasetest.c)"
# One server started here, so that its counters can be read around each
# case: a lease write never reaches it (bytes_in stays put).
lt=$top/build/tests/leasetest
mkfifo "$work/lease.ready"
delegate-server --listen "unix:$work/lease.sock" --ready-fd 3 --log-level warn 3>"$work/lease.ready" 2>"$work/lease.log" &
lspid=$!
trap 'kill -TERM $lspid 2>/dev/null; wait $lspid 2>/dev/null; rm -rf "$work"' EXIT
if timeout 10 head -1 "$work/lease.ready" >/dev/null; then
    bytes_in() {
        DELEGATE_SERVERS=unix:$work/lease.sock delegate-server stats --connect "unix:$work/lease.sock" --json |
            python3 -c 'import json, sys; print(json.load(sys.stdin)["bytes_in"])'
    }
    # lease CASE MIN MAX [ENV...]: the case passes and the server received
    # between MIN and MAX bytes of write data during it
    lease() {
        local c=$1 lo=$2 hi=$3 b0 b1 out fsyncs=-
        shift 3
        b0=$(bytes_in)
        if [ "$c" = sync ]; then
            out=$(DELEGATE_SERVERS=unix:$work/lease.sock run env "$@" strace -f -qq -e trace=fsync -o "$work/strace" \
                mpiexec -n 2 "$lt" "delegate:$work/l.$c" "$c" 2>&1)
            fsyncs=$(grep -c 'fsync(' "$work/strace")
        else
            out=$(DELEGATE_SERVERS=unix:$work/lease.sock run env "$@" mpiexec -n 2 "$lt" "delegate:$work/l.$c" "$c" 2>&1)
        fi
        b1=$(bytes_in)
        local got=$((b1 - b0))
        local note=
        [ "$fsyncs" != - ] && note=", $fsyncs fsync calls by the ranks"
        if grep -q "leasetest $c ok" <<<"$out" && [ "$got" -ge "$lo" ] && [ "$got" -le "$hi" ] && [ "$fsyncs" != 0 ]; then
            ok "$c${*:+ ($*)}: bytes right; the server received $got bytes ($lo..$hi)$note"
        else
            bad "$c${*:+ ($*)}: the server received $got bytes, want $lo..$hi; fsyncs $fsyncs; $(grep -E 'BAD|rank|rror' <<<"$out" | head -3 | tr '\n' ' ')"
        fi
        rm -f "$work"/l.* "$work/strace"
    }
    big=$((4 << 20))
    lease clean 0 0
    lease beneath $((big + 64)) $((big + 64))   # the 4 MiB go through the server
    lease newer 64 64                           # only the 64-byte write does
    lease iwrite 0 0                            # leased, on the library's thread
    lease atomic $((2 * big)) $((2 * big))      # never leased
    lease sync 0 0
    # the test must be able to fail: without leases, the same case counts
    # every byte at the server
    lease clean $((2 * big)) $((2 * big)) DELEGATE_LEASE_MIN=0
    lease iwrite $((2 * big)) $((2 * big)) DELEGATE_LEASE_MIN=0
    # 4 KiB pieces: leased only when each lies far from the rank's previous
    # write (random), on a local file system; near ones (sequential,
    # interleaved) go to the server, which gathers them, but for the first
    # of each rank (nothing to gather it with yet) unless the other rank's
    # pieces are buffered by then
    case $(stat -f -c %T "$work") in
    ext2/ext3 | xfs | btrfs | f2fs | tmpfs)
        lease far 0 0
        lease near $((2 * big - 2 * 4096)) $((2 * big))
        lease far $((2 * big)) $((2 * big)) DELEGATE_LEASE_MIN_FAR=0
        lease far $((2 * big)) $((2 * big)) DELEGATE_LEASE_MIN_LOCAL=0
        lease staged $((64 + 64 + 4096)) $((64 + 64 + 4096)) # never past staged writes
        ;;
    *) lease far $((2 * big)) $((2 * big)) ;; # not local: the servers gather them
    esac
else
    bad "lease writes: the server did not start ($(tail -2 "$work/lease.log"))"
fi

echo "== visibility: $failures failure(s)"
exit $((failures > 0))
