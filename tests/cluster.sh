#!/usr/bin/env bash
# tests/cluster.sh: delegate across hosts. Three hosts made of network
# namespaces on a bridge (10.77.0.1-3/24, addresses only inside the
# namespaces this script creates), hydra launching into them through an
# rsh-like script (HYDRA_LAUNCHER=rsh HYDRA_LAUNCHER_EXEC=...), servers
# started by `delegate-run --hosts`, 6 ranks spread over the hosts:
#  - iotest leaves a file byte-identical to ufs:, reads equal; the example
#    and a write-barrier-read check pass;
#  - every server was reached by the 2 ranks of its own host over the
#    shared-memory ring and by the 4 others over TCP (servers' counters);
#  - a client with a wrong or no secret is refused with MPI_ERR_ACCESS;
#  - with delegate-run --tls the same run goes over TLS, and a rank without
#    the CA, or with another, is refused saying why;
#  - a server that cannot listen fails delegate-run at once, naming it;
#  - a host whose link goes down mid-write gives MPI_ERR_IO ("connection
#    ... lost") in bounded time, and the job ends (the ranks say when they
#    write and when they fail on a FIFO: no polling, no sleeps).
# Namespaces share /tmp and Unix sockets, hence the counters: they show
# which transport each session used. Everything this script makes
# (namespaces, bridge, veths, processes in them, files) is removed on exit.
# Skips (exit 0) only if network namespaces cannot be made here.
set -uo pipefail
top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
. "$top/build/env.sh"

. "$top/tests/netns.sh"
if ! netns_possible; then
    echo "cluster: SKIP: cannot create network namespaces here (need root and ip netns)"
    exit 0
fi

work=$(mktemp -d /tmp/dlg-cluster-XXXXXX)
. "$top/tests/statedirs.sh"
statedirs_mark
failures=0
ok() { printf '  ok    %s\n' "$*"; }
bad() { printf '  FAIL  %s\n' "$*"; failures=$((failures + 1)); }
cleanup() {
    netns_down
    statedirs_sweep
    [ -n "${KEEP:-}" ] && echo "cluster: kept $work" || rm -rf "$work"
}
trap cleanup EXIT
# Temporary files of everything started from here (the servers' Unix
# socket directories too, which a killed server leaves) go with $work.
export TMPDIR=$work
netns_up 3 "$work" || { echo "cluster: cannot make the namespace hosts"; exit 1; }
hosts=("${ns_hosts[@]}")
H=$(IFS=,; echo "${hosts[*]}")
export DLG_CLUSTER_MAP=$work/hosts.map HYDRA_LAUNCHER=rsh HYDRA_LAUNCHER_EXEC=$work/rsh.sh
# Every namespace resolves the machine's host name to 127.0.0.1: proxies
# must reach mpiexec by the address of the namespace's own interface.
export HYDRA_IFACE=dlg0
on1() { timeout "${T:-120}" ip netns exec "$tag-1" "$@" </dev/null; }
mpi6() { echo mpiexec -hosts "$H" -ppn 2 -n 6; }

echo "== 3 hosts, 6 ranks: iotest on ufs: and delegate: (servers through delegate-run --hosts)"
t0=$SECONDS
on1 $(mpi6) "$top/build/tests/iotest" "ufs:$work/u" >"$work/u.out" 2>&1 || bad "iotest on ufs: $(tail -2 "$work/u.out")"
link3() { echo $(($(cat "/sys/class/net/${tag}v3/statistics/rx_bytes") + $(cat "/sys/class/net/${tag}v3/statistics/tx_bytes"))); }
link3_before=$(link3)
if on1 delegate-run --hosts "$H" -- $(mpi6) "$top/build/tests/iotest" "delegate:$work/d" >"$work/d.out" 2>"$work/d.err"; then
    if cmp -s "$work/u" "$work/d" && cmp -s <(sort "$work/u.out") <(sort "$work/d.out"); then
        ok "iotest: $(stat -c %s "$work/d") bytes identical to ufs:, read checksums equal ($((SECONDS - t0))s both)"
    else
        bad "iotest: files or reads differ: $(cmp "$work/u" "$work/d" 2>&1 | head -1)"
    fi
else
    bad "iotest on delegate: $(tail -5 "$work/d.err")"
fi

echo "== which transport each server saw (its final statistics)"
# Each server has 2 ranks on its own host (shared memory) and 4 elsewhere (TCP).
mapfile -t lines < <(awk '/^server tcp:/ {name=$2} /^  transports/ && name {print name, $2, $5, $7; name=""}' "$work/d.err")
if [ ${#lines[@]} -ne 3 ]; then
    bad "expected 3 servers' transport lines in the summary, got ${#lines[@]}"
fi
for l in "${lines[@]}"; do
    read -r name ring unix tcp <<<"$l"
    if [ "$ring" = 2 ] && [ "$unix" = 0 ] && [ "$tcp" = 4 ]; then
        ok "server $name: 2 sessions over shared memory (its host's ranks), 4 over TCP"
    else
        bad "server $name: $ring shared memory, $unix unix, $tcp tcp sessions; want 2, 0, 4"
    fi
done
# TCP between namespaces crosses the bridge: host 3's link carried at
# least half of what its server received (4 of the 6 ranks are elsewhere).
moved=$(($(link3) - link3_before))
in3=$(awk -v s="tcp:${hosts[2]}:" 'index($0, "server " s) == 1 {on=1} on && /^  data/ {print int($2 * 1048576); exit}' "$work/d.err")
if [ -n "$in3" ] && [ "$in3" -gt 0 ] && [ $moved -gt $((in3 / 2)) ]; then
    ok "host 3's link carried $moved bytes during the run; its server received $in3 bytes of data"
else
    bad "host 3's link carried $moved bytes, its server received ${in3:-?} bytes of data: was TCP really used?"
fi

echo "== the example and write-barrier-read across hosts"
if out=$(on1 delegate-run --servers-per-host 2 --hosts "$H" -- $(mpi6) "$top/build/examples/delegate_example" "delegate:$work/ex" 2 2>&1) &&
    grep -q "all bytes correct" <<<"$out"; then
    # 6 servers, 2 per host: each reached by its host's 2 ranks over shared memory.
    rings=$(grep -c '^  transports     2 shared memory, 0 unix, 4 tcp' <<<"$out")
    if [ "$rings" = 6 ]; then
        ok "delegate_example, 6 ranks and 2 servers on each of 3 hosts, every server: 2 shared memory, 4 tcp"
    else
        bad "delegate_example with 2 servers per host: $rings of 6 servers saw 2 shared-memory and 4 tcp sessions: $(grep transports <<<"$out" | tr -s ' ' | head -7 | tr '\n' ';')"
    fi
else
    bad "delegate_example: $(tail -5 <<<"$out")"
fi
printf '# hydra host file\n%s:2\n%s:2 # second\n%s:2\n' "${hosts[@]}" >"$work/hostfile"
# Default hints: a write, then a barrier (send/recv, collective, window
# fence), then another rank's read, ranks on other hosts (tests/visibility.sh).
out=$(on1 delegate-run --quiet --hostfile "$work/hostfile" -- mpiexec -f "$work/hostfile" -n 6 "$top/build/tests/vistest" "delegate:$work/vis" 20 2>&1)
cases=$(grep -c 'reads stale' <<<"$out")
stale=$(awk '/reads stale/ {n += $(NF-4)} END {print n + 0}' <<<"$out")
reads=$(awk '/reads stale/ {n += $(NF-2)} END {print n + 0}' <<<"$out")
if grep -q "vistest ok" <<<"$out" && [ "$cases" -gt 0 ] && [ "$stale" = 0 ]; then
    ok "write, order, read across hosts, default hints (delegate-run --hostfile): $cases cases, 0 of $reads reads stale"
else
    bad "vistest across hosts: $cases cases, $stale stale: $(grep -v " 0 of" <<<"$out" | grep -E "stale|FAILED|rror" | head -4 | tr "\n" " ")"
fi

echo "== the job secret"
for variant in wrong none; do
    if [ $variant = wrong ]; then
        set -- env DELEGATE_TOKEN=not-the-secret
    else
        set -- env -u DELEGATE_TOKEN -u DELEGATE_TOKEN_FILE
    fi
    out=$(on1 delegate-run --quiet --hosts "$H" -- "$@" mpiexec -hosts "$H" -ppn 1 -n 3 "$top/build/tests/errtest" create "delegate:$work/sec" 2>&1)
    line=$(grep -m1 '^class=' <<<"$out")
    if grep -q "class=MPI_ERR_ACCESS" <<<"$line" && grep -q "token" <<<"$line"; then
        ok "$variant secret refused: ${line:0:160}"
    else
        bad "$variant secret: ${line:-$(tail -3 <<<"$out")}"
    fi
done

echo "== TLS across hosts (delegate-run --tls: a per-job certificate in the environment)"
if out=$(on1 delegate-run --tls --hosts "$H" -- $(mpi6) "$top/build/tests/iotest" "delegate:$work/tls" 2>&1) &&
    cmp -s "$work/u" "$work/tls"; then
    rings=$(grep -c '^  transports     2 shared memory, 0 unix, 4 tcp' <<<"$out")
    if [ "$rings" = 3 ]; then
        ok "iotest over TLS: $(stat -c %s "$work/tls") bytes identical to ufs:, every server: 2 shared memory, 4 TLS sessions"
    else
        bad "iotest over TLS: $rings of 3 servers saw 2 shared-memory and 4 tcp sessions"
    fi
else
    bad "iotest over TLS: $(tail -5 <<<"$out")"
fi
# A rank without the CA, or with another one, is refused, saying why.
variants=(none)
if command -v openssl >/dev/null; then
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=other -days 1 \
        -keyout "$work/other.key" -out "$work/other.pem" >/dev/null 2>&1 && variants+=(wrong)
fi
for variant in "${variants[@]}"; do
    if [ $variant = wrong ]; then
        set -- env DELEGATE_TLS_CA="$work/other.pem" DELEGATE_PREFER_LOCAL=0
        want="MPI_ERR_ACCESS.*not signed by DELEGATE_TLS_CA"
    else
        set -- env -u DELEGATE_TLS_CA DELEGATE_PREFER_LOCAL=0
        want="requires TLS. set DELEGATE_TLS_CA"
    fi
    out=$(on1 delegate-run --quiet --tls --hosts "$H" -- "$@" mpiexec -hosts "$H" -ppn 1 -n 3 "$top/build/tests/errtest" create "delegate:$work/tlsbad" 2>&1)
    line=$(grep -m1 '^class=' <<<"$out")
    if grep -q "$want" <<<"$line"; then
        ok "$variant CA refused: ${line:0:200}"
    else
        bad "$variant CA: ${line:-$(tail -3 <<<"$out")}"
    fi
done

echo "== a server that cannot listen"
port=$((20000 + RANDOM % 10000))
# (the squatter keeps its buffer in memory: with the default state directory
# it would hold the lock of the same listen address, and the server would
# fail on that before it tries the port)
# It says it listens on a FIFO (--ready-fd): a bounded read, no polling.
mkfifo "$work/squat.fifo"
exec 4<>"$work/squat.fifo"
ip netns exec "$tag-2" delegate-server --insecure --state-dir none --listen "tcp:${hosts[1]}:$port" --log-level error \
    --ready-fd 5 </dev/null >/dev/null 2>&1 5>"$work/squat.fifo" 4<&- &
squatter=$!
read -r -t 10 -u 4 _ || bad "the port squatter did not say it listens within 10 s"
exec 4<&-
t0=$SECONDS
out=$(on1 delegate-run --quiet --hosts "$H" --port $port -- true 2>&1)
rc=$?
kill $squatter 2>/dev/null
wait $squatter 2>/dev/null
if [ $rc -ne 0 ] && grep -q "failed to start.*${hosts[1]}:$port.*address already in use" <<<"$out" && [ $((SECONDS - t0)) -lt 30 ]; then
    ok "port taken on host 2: delegate-run failed in $((SECONDS - t0))s: $(grep -m1 'failed to start' <<<"$out" | cut -c1-150)"
else
    bad "port taken on host 2: status $rc after $((SECONDS - t0))s: $(tail -3 <<<"$out")"
fi

echo "== a server killed mid-job: the others still drain"
# hydra would kill every server when one dies (auto-cleanup) or abort when
# it cannot pass a signal on to its host; delegate-run asks each server to
# stop over the network instead.
out=$(on1 delegate-run --hosts "$H" --drain-timeout 30s -- sh -c \
    "kill -9 \$(ip netns pids $tag-2 | xargs ps -o pid=,comm= -p | awk '\$2 == \"delegate-server\" {print \$1}')" 2>&1)
rc=$?
if [ $rc -ne 0 ] && grep -q "server tcp:${hosts[1]}:[0-9]* sent no final statistics" <<<"$out" &&
    [ "$(grep -c "^server tcp:.*(up " <<<"$out")" = 2 ] && grep -q "^delegate-run: 2 server(s), final statistics" <<<"$out"; then
    ok "server 2 killed: servers 1 and 3 drained and reported, delegate-run status $rc names server 2"
else
    bad "server 2 killed: status $rc: $(grep -v '^  ' <<<"$out" | tail -6 | tr '\n' ';')"
fi

# link_start NAME NP DRAIN: linktest on hosts 1 and 2 (NP ranks) with
# servers on all three, in the background (job=$!), its output in
# $work/NAME.out. Returns once every rank has written for a while: each
# says so on a FIFO the script holds open on fd 3 (and says "failed" there
# before it aborts), so nothing polls or sleeps; each wait is bounded by
# read -t. DELEGATE_TIMEOUT=2s: keepalives every 2 s.
link_start() {
    local name=$1 np=$2 drain=$3 n=0 word
    exec 3<&- 2>/dev/null
    rm -f "$work/$name.fifo"
    mkfifo "$work/$name.fifo"
    exec 3<>"$work/$name.fifo"
    on1 env DELEGATE_TIMEOUT=2s delegate-run --quiet --hosts "$H" --drain-timeout "$drain" -- \
        mpiexec -hosts "${hosts[0]},${hosts[1]}" -ppn $((np / 2)) -n "$np" "$top/build/tests/linktest" \
        "delegate:$work/$name" 60 "$work/$name.fifo" >"$work/$name.out" 2>&1 3<&- &
    job=$!
    while [ $n -lt "$np" ] && read -r -t 60 -u 3 word _; do
        [ "$word" = writing ] && n=$((n + 1))
    done
    [ $n -eq "$np" ] || bad "$name: $n of $np ranks started writing within 60 s: $(tail -3 "$work/$name.out")"
}

# link_failed: waits (at most 30 s) until a rank says on the FIFO that a
# call failed, and sets $line to that rank's error line (taken from the
# FIFO: MPI_Abort may end the job before hydra forwards the rank's stdout).
link_failed() {
    local word r
    line=
    while read -r -t 30 -u 3 word r line; do
        [ "$word" = failed ] && return 0
    done
    line=
    return 1
}

echo "== a host's link goes down mid-write"
# Ranks on hosts 1 and 2, servers on all three; host 3 leaves the network
# while the ranks write.
link_start link 6 60s
ip -n "$tag-3" link set dlg0 down
tdown=$SECONDS
link_failed
tfail=$SECONDS
# Back on the network so that host 3's server drains and the job ends.
ip -n "$tag-3" link set dlg0 up
wait $job
rc=$?
exec 3<&-
if [ $rc -ne 0 ] && grep -q "class=MPI_ERR_IO" <<<"$line" && grep -q "${hosts[2]}.*lost" <<<"$line" &&
    [ $((tfail - tdown)) -le 30 ]; then
    ok "link down: error $((tfail - tdown))s after, job over $((SECONDS - tdown))s after: ${line:0:120} ... $(grep -o "connection to delegate server [^ ]* lost[^,]*" <<<"$line" | head -1)"
else
    bad "link down: status $rc, $((tfail - tdown))s: ${line:-$(tail -5 "$work/link.out")}"
fi

echo "== a host that stays off the network"
# The same, but host 3 does not come back: the ranks fail as before, and
# delegate-run gives up on host 3's server after --drain-timeout, saying so.
link_start gone 4 10s
ip -n "$tag-3" link set dlg0 down
tdown=$SECONDS
link_failed
wait $job
rc=$?
tend=$SECONDS
exec 3<&-
ip -n "$tag-3" link set dlg0 up
if [ $rc -ne 0 ] && grep -q "class=MPI_ERR_IO" <<<"$line" &&
    grep -q "did not drain within 10s" "$work/gone.out" && grep -q "server tcp:${hosts[2]}:[0-9]* sent no final statistics" "$work/gone.out" &&
    [ $((tend - tdown)) -le 60 ]; then
    ok "host gone: the job ended $((tend - tdown))s after, with status $rc: $(grep -o "server tcp:${hosts[2]}:[0-9]* sent no final statistics[^)]*)" "$work/gone.out")"
else
    bad "host gone: status $rc after $((tend - tdown))s: $(tail -6 "$work/gone.out" | cut -c1-200)"
fi

echo
if [ $failures -gt 0 ]; then
    echo "cluster: $failures FAILED"
    exit 1
fi
echo "cluster: all passed"
