#!/usr/bin/env bash
# tests/netbench.sh: delegate across a network against the link itself
# (issue 12). Two hosts made of network namespaces on a bridge
# (tests/netns.sh: 10.77.0.1 and 10.77.0.2, addresses only inside the
# namespaces, all removed on exit). iperf3 from host 1 to host 2 gives the
# link's speed (one stream, and two); then one delegate server on host 2
# (TCP, backend a tmpfs directory under /dev/shm so that no disk bounds it)
# and 1 or 2 ranks on host 1 write TOTAL bytes in PIECE-sized calls
# (tests/prog/netbench.c) and read them back, then write them once more into
# /dev/null on host 2 ("sink": the server splices the bytes there and
# drops them, as iperf3's receiver does, so the row measures the network
# data path without the backend). Prints, per case, the median
# MB/s of REPS runs, its ratio to iperf3 (one stream, the faster of a run
# before and one after delegate's, so that a busy machine does not flatter
# the ratio), and the server's CPU-seconds (user + system, /proc/PID/stat)
# per GiB moved. A second yardstick, rawread (tests/prog/rawread.c), moves
# the same bytes with nothing of delegate's (a request, sendfile, a recv
# into the destination): what a read of real data costs on this machine,
# where iperf3's buffers stay in the CPU's cache.
#
#   tests/netbench.sh [REPS]          (default 3; NETBENCH_TOTAL=1G, NETBENCH_PIECES="4M 64K",
#                                      NETBENCH_RANKS="1 2", NETBENCH_SERVER_OPTS="...")
# Called by tests/bench.sh net. Skips (exit 0) where namespaces cannot be made.
set -uo pipefail
top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$top/tests/setup.sh" >/dev/null || exit 1
. "$top/build/env.sh"
# MPICH as Debian ships it: waiting ranks spin without yielding (tests/bench.sh).
export MPIR_CVAR_POLLS_BEFORE_YIELD=${MPIR_CVAR_POLLS_BEFORE_YIELD:-0}
. "$top/tests/netns.sh"
reps=${1:-3}
total=${NETBENCH_TOTAL:-1G}
pieces=${NETBENCH_PIECES:-4M 64K}
ranks=${NETBENCH_RANKS:-1 2}
if ! netns_possible; then
    echo "netbench: SKIP: cannot create network namespaces here (need root and ip netns)"
    exit 0
fi
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
command -v iperf3 >/dev/null ||
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iperf3 >/dev/null 2>&1 ||
    { echo "netbench: cannot install iperf3" >&2; exit 1; }

# The backend and the server's state directory live in tmpfs.
work=$(mktemp -d /dev/shm/dlg-netbench-XXXXXX)
spid=
cleanup() {
    [ -n "$spid" ] && kill -TERM "$spid" 2>/dev/null && wait "$spid" 2>/dev/null
    netns_down
    rm -rf "$work"
}
trap cleanup EXIT
export TMPDIR=$work
netns_up 2 "$work" || { echo "netbench: cannot make the namespace hosts"; exit 1; }
on() { local h=$1; shift; timeout "${T:-300}" ip netns exec "$tag-$h" "$@" </dev/null; }

median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
field() { sed -n "s/.*$1=\([0-9.]*\).*/\1/p"; }

# iperf3: one stream and two, 5 s each, host 1 -> host 2.
iperf() { # streams
    local port=$((5201 + RANDOM % 1000)) sp i
    ip netns exec "$tag-2" iperf3 -s -1 -B 10.77.0.2 -p $port >/dev/null 2>&1 &
    sp=$!
    rm -f "$work/iperf.json"
    for i in $(seq 50); do
        on 1 iperf3 -c 10.77.0.2 -p $port -t 5 -P "$1" --connect-timeout 1000 -J >"$work/iperf.json" 2>/dev/null && break
        rm -f "$work/iperf.json"
        sleep 0.2 # the server is not listening yet: retried, bounded
    done
    kill $sp 2>/dev/null
    wait $sp 2>/dev/null
    [ -s "$work/iperf.json" ] || return 1
    python3 -c 'import json,sys; print(int(json.load(open(sys.argv[1]))["end"]["sum_received"]["bits_per_second"]/8e6))' "$work/iperf.json"
}
ip1=$(iperf 1)
ip2=$(iperf 2)
[ -n "$ip1" ] && [ "$ip1" -gt 0 ] 2>/dev/null || { echo "netbench: iperf3 failed" >&2; exit 1; }
echo "iperf3 10.77.0.1 -> 10.77.0.2: $ip1 MB/s (1 stream), $ip2 MB/s (2 streams)"

# The backend's own speed, the other bound of a write: one local writer of
# $total in 4 MiB pieces into a new file of the backend directory (dd, the
# median of 3). A write through delegate cannot beat it.
mkdir -p "$work/data"
backend_mbps() {
    local i out
    for i in 1 2 3; do
        out=$(LC_ALL=C dd if=/dev/zero of="$work/data/dd" bs=4M count="$total" iflag=count_bytes 2>&1 | tail -1)
        rm -f "$work/data/dd"
        awk '{print int($1 / $(NF-3) / 1e6)}' <<<"$out"
    done | median
}
bk=$(backend_mbps)
echo "backend (tmpfs, one writer, dd bs=4M, new file): $bk MB/s"

# The least a read of real data costs here (tests/prog/rawread.c): one
# request per piece, answered by sendfile() from a file of the backend,
# received into a destination of $total bytes. iperf3 moves one cache-hot
# buffer; a read moves bytes from memory to memory, which is what bounds
# delegate's reads on one host's memory bus (README, Across hosts).
dd if=/dev/zero of="$work/data/raw" bs=4M count="$total" iflag=count_bytes status=none
declare -A raw=() rawfirst=()
for p in $pieces; do
    bytes=$(numfmt --from=iec "$total")
    pb=$(numfmt --from=iec "$p")
    runs=
    firsts=
    for r in $(seq "$reps"); do
        port=$((20000 + RANDOM % 20000))
        ip netns exec "$tag-2" "$top/build/tests/rawread" serve 10.77.0.2 $port "$work/data/raw" >/dev/null 2>&1 &
        rp=$!
        out=$(on 1 "$top/build/tests/rawread" read 10.77.0.2 $port "$bytes" "$pb" 2>&1)
        kill $rp 2>/dev/null # gone once its client left; still waiting if it never came
        wait $rp 2>/dev/null
        runs+="$(field MBps <<<"$out") "
        firsts+="$(field first_us <<<"$out") "
    done
    raw[$p]=$(tr ' ' '\n' <<<"$runs" | grep . | median)
    rawfirst[$p]=$(tr ' ' '\n' <<<"$firsts" | grep . | median)
    echo "rawread $p pieces (sendfile, then recv into the destination): ${raw[$p]:-?} MB/s, first byte ${rawfirst[$p]:-?} us after the request (runs: $runs)"
done
rm -f "$work/data/raw"

# One server on host 2 for every run; each run's CPU time is the change of
# the server's utime + stime.
head -c 32 /dev/urandom | base64 >"$work/token"
chmod 600 "$work/token"
port=$((20000 + RANDOM % 20000))
mkdir -p "$work/data"
ip netns exec "$tag-2" delegate-server --listen "tcp:10.77.0.2:$port" --token-file "$work/token" --unix off \
    --state-dir "$work/state" --log-level warn ${NETBENCH_SERVER_OPTS:-} </dev/null &
spid=$!
export DELEGATE_SERVERS=tcp:10.77.0.2:$port DELEGATE_TOKEN=$(cat "$work/token")
for _ in $(seq 100); do
    on 1 delegate-server stats --connect "$DELEGATE_SERVERS" >/dev/null 2>&1 && break
    sleep 0.1 # not listening yet: retried, bounded
done
kill -0 $spid 2>/dev/null || { echo "netbench: the server did not start" >&2; exit 1; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$spid/stat"; }
hz=$(getconf CLK_TCK)
bin=$top/build/tests/netbench

printf '%-5s %-6s %-5s %9s %10s %s\n' ranks piece op MB/s cpu-s/GiB runs
failed=0
rows=()
for n in $ranks; do
    for p in $pieces; do
        declare -A mbps=() cpu=()
        for r in $(seq "$reps"); do
            f=$work/data/f.$n.$p.$r
            for op in w r s; do
                # s: the same writes into /dev/null on the server's host
                # (spliced there and dropped, as iperf3's receiver drops
                # its bytes): the data path without the backend.
                path=$f mode=$op
                [ $op = s ] && path=/dev/null mode=w
                c0=$(cpu_ticks)
                out=$(on 1 mpiexec -n "$n" "$bin" $mode "delegate:$path" "$total" "$p" 2>&1)
                c1=$(cpu_ticks)
                b=$(field bytes <<<"$out")
                if [ -z "$b" ] || ! grep -q 'bad=0' <<<"$out"; then
                    echo "netbench: $n ranks $p $op failed: $out" >&2
                    failed=1
                    continue
                fi
                mbps[$op]+="$(field MBps <<<"$out") "
                cpu[$op]+="$(python3 -c "print(f'{($c1 - $c0) / $hz / ($b / 2**30):.3f}')") "
            done
            rm -f "$f"
        done
        for op in w r s; do
            [ -n "${mbps[$op]:-}" ] || continue
            m=$(tr ' ' '\n' <<<"${mbps[$op]}" | grep . | median)
            c=$(tr ' ' '\n' <<<"${cpu[$op]}" | grep . | median)
            name=$(case $op in w) echo write ;; r) echo read ;; s) echo sink ;; esac)
            rows+=("$n $p $name $m $c ${mbps[$op]}")
            printf '%-5s %-6s %-5s %9.0f %10.2f %s\n' "$n" "$p" "$name" "$m" "$c" "${mbps[$op]}"
        done
        unset mbps cpu
    done
done
ip1b=$(iperf 1)
ref=$(python3 -c "print(max($ip1, ${ip1b:-0}))")
echo
echo "iperf3 after delegate's runs: ${ip1b:-?} MB/s (1 stream); reference: the faster one-stream run, $ref MB/s"
printf '%-5s %-6s %-5s %9s %7s %9s %10s %s\n' ranks piece op MB/s x-iperf x-backend cpu-s/GiB runs
for row in "${rows[@]}"; do
    read -r n p op m c runs <<<"$row"
    xb=-
    [ "$op" = write ] && [ "${bk:-0}" -gt 0 ] 2>/dev/null && xb=$(python3 -c "print(f'{$m / $bk:.2f}')")
    [ "$op" = read ] && [ "${raw[$p]:-0}" -gt 0 ] 2>/dev/null && xb=$(python3 -c "print(f'{$m / ${raw[$p]}:.2f}r')")
    printf '%-5s %-6s %-5s %9.0f %7.2f %9s %10.2f %s\n' "$n" "$p" "$op" "$m" "$(python3 -c "print($m / $ref)")" "$xb" "$c" "$runs"
done
echo "$total per run, $reps runs per case, median; x-iperf: MB/s over iperf3's one-stream MB/s;"
echo "x-backend: writes, MB/s over the backend's own one-writer MB/s ($bk, dd above); reads (r),"
echo "MB/s over rawread's of the same pieces (the least a read of real data costs, above);"
echo "sink: the writes into /dev/null on the server's host, the data path without the backend;"
echo "cpu-s/GiB: the server's CPU seconds (user + system) per GiB moved; runs: MB/s of each run."
exit $failed
