#!/usr/bin/env bash
# tests/restart.sh: a delegate server SIGKILLed and started again on the same
# socket under a running MPI program (tests/prog/restarttest.c).
#
# The program writes, syncs and reads back (directly from the backend, past
# the server's control page in shared memory) on delegate: in a loop and,
# after some rounds, says so through a fifo without stopping; we kill its
# server by pid while it goes on. Once the program has seen that an open
# fails fast while the server is down, and says so, we start a new server on
# the same socket, wait for it to listen (its --ready-fd line), and tell the
# program through another fifo. The program must neither crash nor hang:
# operations on the old handle fail with MPI_ERR_IO (with a message naming
# the server and saying to reopen the file) or work with the right bytes, a
# new open works, every block holds what was synced (or the bytes of the
# round that failed on it), and the new handle goes on working. No sleeps:
# every step waits for a line, each wait bounded.
#
# Needs build/env.sh (tests/setup.sh). Exit status 0 when every check passed.
set -uo pipefail
top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
. "$top/build/env.sh"
T=${T:-120}
NP=${NP:-2}
work=$(mktemp -d /tmp/dlg-restart-XXXXXX)
spid= ppid=
cleanup() {
    # Only what this script started, by pid.
    if [ -n "$ppid" ]; then
        kill -TERM "$ppid" 2>/dev/null # timeout passes it on to mpiexec
        wait "$ppid" 2>/dev/null
    fi
    if [ -n "$spid" ]; then
        kill -KILL "$spid" 2>/dev/null
        wait "$spid" 2>/dev/null
    fi
    # The killed servers' state directories (their --root is $work): what
    # they held belongs to this test's files, which go too.
    for d in /dev/shm/delegate-"$(id -u)"-*; do
        [ "$(cat "$d/root" 2>/dev/null)" = "$work" ] && rm -rf "$d"
    done
    rm -rf "$work"
}
trap cleanup EXIT
failures=0
ok() { printf '  ok    %s\n' "$*"; }
bad() { printf '  FAIL  %s\n' "$*"; failures=$((failures + 1)); }

sock=$work/s.sock
mkfifo "$work/ready" "$work/step" "$work/go"
# Opened read-write, so no open blocks and no reader sees an early EOF.
exec {ready}<>"$work/ready" {step}<>"$work/step" {go}<>"$work/go"

# start_server starts a server on $sock and waits (bounded) until it listens.
start_server() {
    delegate-server --listen "unix:$sock" --root "$work" --log-level warn --ready-fd 3 \
        3>&$ready {ready}>&- {step}>&- {go}>&- </dev/null 2>>"$work/server.log" &
    spid=$!
    local line
    if ! read -r -t 20 -u $ready line; then
        bad "the server did not listen within 20 s: $(tail -3 "$work/server.log")"
        exit 1
    fi
}

echo "== a server restarted under a running program (tests/prog/restarttest.c, $NP ranks)"
start_server
first=$spid
DELEGATE_SERVERS="unix:$sock" DELEGATE_TIMEOUT=5s timeout -k 5 "$T" \
    mpiexec -n "$NP" "$top/build/tests/restarttest" "delegate:$work/f" "$work/step" "$work/go" \
    {ready}>&- {step}>&- {go}>&- </dev/null >"$work/out" 2>&1 &
ppid=$!
if ! read -r -t "$T" -u $step line; then
    bad "the program did not reach the restart point: $(tail -5 "$work/out")"
    exit 1
fi
{
    kill -KILL "$first"
    wait "$first"
} 2>/dev/null
if ! read -r -t "$T" -u $step line; then
    bad "the program did not get past the dead server: $(tail -5 "$work/out")"
    exit 1
fi
start_server
[ "$spid" != "$first" ] && ok "server $first killed with SIGKILL, server $spid listens on the same socket"
echo go >&$go
wait "$ppid"
rc=$?
ppid=
out=$(cat "$work/out")

case $rc in
0) ok "the program exited 0" ;;
124 | 137) bad "the program hung (timeout after $T s): $(tail -5 <<<"$out")" ;;
*) bad "the program failed (exit $rc): $(tail -5 <<<"$out")" ;;
esac
if grep -qi "segmentation\|SIGSEGV\|signal 11\|core dumped" <<<"$out"; then
    bad "a rank crashed: $(grep -i -m1 "segmentation\|SIGSEGV\|signal 11\|core dumped" <<<"$out")"
fi
olds=$(grep -c "old handle after the restart" <<<"$out")
if [ "$olds" -eq "$NP" ] && ! grep "old handle after the restart" <<<"$out" | grep -v "class=MPI_ERR_IO\|bytes right" >/dev/null; then
    ok "the old handle after the reconnect, every rank: $(grep -o 'old handle after the restart: read [a-z=_A-Z]*' <<<"$out" | sort | uniq -c | tr -s ' ' | tr '\n' ';')"
else
    bad "the old handle after the reconnect: $olds of $NP ranks reported, or not MPI_ERR_IO nor the right bytes: $(grep "old handle after" <<<"$out")"
fi
during=$(grep "rank [0-9]*: old handle failed in round" <<<"$out")
if [ -n "$during" ] && ! grep -v "class=MPI_ERR_IO" <<<"$during" | grep -q .; then
    ok "the old handle when the server died: $(grep -o 'failed in round [0-9]*: [a-z]* class=[A-Z_]*' <<<"$during" | sort | uniq -c | tr -s ' ' | tr '\n' ';')"
else
    bad "the old handle when the server died: no rank saw MPI_ERR_IO: ${during:-nothing}"
fi
down=$(grep "open while the server is down" <<<"$out")
if [ "$(grep -c "class=MPI_ERR_IO" <<<"$down")" -eq "$NP" ] && grep -qF "$sock" <<<"$down"; then
    ok "open while the server is down, every rank: MPI_ERR_IO naming the socket, in $(grep -o 'secs=[0-9.]*' <<<"$down" | sort | tail -1 | cut -c6-) s at most"
else
    bad "open while the server is down: ${down:-nothing}"
fi
errs=$(grep "class=MPI_ERR_IO" <<<"$out" | grep -v "open while the server is down")
if [ -n "$errs" ]; then
    if grep -v "reopen the file" <<<"$errs" | grep -q . || grep -vF "$sock" <<<"$errs" | grep -q .; then
        bad "an MPI_ERR_IO message does not name the server or does not say to reopen the file: $errs"
    else
        ok "message: $(head -1 <<<"$errs" | grep -o 'msg=.*' | cut -c5-300)"
    fi
fi
if grep -q "restarttest ok" <<<"$out"; then
    ok "$(grep -o 'restarttest ok: .*' <<<"$out" | cut -c17-)"
else
    bad "no success line: $(grep -m3 "FAIL" <<<"$out")"
fi

echo "== restart: $failures failure(s)"
exit $((failures > 0))
