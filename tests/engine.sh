#!/usr/bin/env bash
# tests/engine.sh: the server engine through real MPI programs, checked
# against the servers' own counters:
#  - 64-byte records interleaved between ranks reach the backend as a few
#    large writes (coalescing factor);
#  - with --buffer 64M, writing ten times that reaches the bound (writers
#    stall), the buffer never holds more than its limit, the server's peak
#    memory stays within the buffer plus a fixed overhead, and every byte is
#    right;
#  - SIGTERM with dirty data: every acknowledged byte is on the backend after
#    the server shut down.
# Needs build/env.sh (tests/setup.sh). Every command is bounded by timeout.
set -uo pipefail
top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
. "$top/build/env.sh"
work=$(mktemp -d /tmp/dlg-eng-XXXXXX)
trap 'rm -rf "$work"' EXIT
failures=0
ok() { printf '  ok    %s\n' "$*"; }
bad() { printf '  FAIL  %s\n' "$*"; failures=$((failures + 1)); }
# stat NAME FILE: a number from a server's final statistics (JSON).
jstat() { python3 -c "import json,sys; print(json.load(open(sys.argv[2]))[sys.argv[1]])" "$1" "$2"; }

# Servers started by hand here, so the test can read their final
# statistics file (delegate-run removes its directory).
serve() { # name args...
    local name=$1
    shift
    delegate-server --listen "unix:$work/$name.sock" --final-stats "$work/$name.json" --log-level warn "$@" &
    echo $! >"$work/$name.pid"
    for _ in $(seq 100); do [ -S "$work/$name.sock" ] && return 0; sleep 0.05; done
    echo "server $name did not start" >&2
    return 1
}
stop() { # name
    local pid
    pid=$(cat "$work/$1.pid")
    kill -TERM "$pid"
    timeout 120 tail --pid="$pid" -f /dev/null
}

echo "== interleaved records coalesce"
serve rec
DELEGATE_SERVERS=unix:$work/rec.sock timeout 300 mpiexec -n 2 "$top/build/tests/bench" records "delegate:$work/records" 1 </dev/null >"$work/rec.out" 2>&1
stop rec
extents=$(jstat extents_in "$work/rec.json")
writes=$(jstat backend_writes "$work/rec.json")
if grep -q "BAD" "$work/rec.out" || ! grep -q "secs=" "$work/rec.out"; then
    bad "records workload: $(tail -2 "$work/rec.out")"
elif [ "$writes" -gt 0 ] && [ $((extents / writes)) -ge 1000 ]; then
    ok "131072 records from 2 ranks: $extents extents in, $writes backend writes (factor $((extents / writes)))"
else
    bad "records: $extents extents in, $writes backend writes: not coalesced"
fi
# The per-file summary in the same statistics names the file, with every
# byte the ranks wrote (131072 records of 64 bytes), all of them in the
# smallest size class, and the file's backend writes.
if python3 - "$work/rec.json" "$work/records" <<'PY'; then ok "the per-file summary names $work/records: 8388608 bytes in 64-byte extents, as written"; else bad "per-file summary of the records file wrong"; fi
import json, sys
snap = json.load(open(sys.argv[1]))
f = [x for x in snap["files"] if x["path"] == sys.argv[2]]
if len(f) != 1:
    print("files:", [x["path"] for x in snap["files"]]); sys.exit(1)
f = f[0]
w = f["write"]
good = (w["bytes"] == 131072 * 64 and w["extents"] > 0 and w["sizes"][0] == w["extents"] and sum(w["sizes"]) == w["extents"]
        and f["backend_write_bytes"] == 131072 * 64 and f["backend_writes"] >= 1 and f["direct_bytes"] == 0
        and f["buffered_bytes"] == 131072 * 64 and not f.get("errors") and f["requests"].get("write", 0) > 0)
if not good:
    print(json.dumps(f)); sys.exit(1)
PY

echo "== memory bound: --buffer 64M, 640 MiB written in 4 KiB pieces, the bound reached"
# The writers must reach the bound, or this tests nothing: with the default
# high-water mark and background flushes of full chunks the flusher keeps
# the buffer a quarter full (the page cache takes writes faster than two
# ranks make them). With the mark at 100% and no background flush, only a
# writer waiting for space makes the flusher write: every time the buffer
# fills, writers stall (counted) until it frees space. The collectives are
# buffered (--coll-direct=false): written from the ranks' rings, their
# contiguous runs would go to the backend and never fill the buffer.
serve mem --buffer 64M --high-water 100 --flush-full=false --flush-idle 1h --coll-direct=false
DELEGATE_SERVERS=unix:$work/mem.sock timeout 600 mpiexec -n 2 "$top/build/tests/bench" ior "delegate:$work/mem" 20 </dev/null >"$work/mem.out" 2>&1
stop mem
rss=$(jstat peak_rss "$work/mem.json")
own=$(jstat peak_own "$work/mem.json")
peak=$(jstat buffer_peak "$work/mem.json")
blimit=$(jstat buffer_limit "$work/mem.json")
stalls=$(jstat stalls "$work/mem.json")
hw=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['flushes'].get('highwater', 0))" "$work/mem.json")
size=$(stat -c %s "$work/mem" 2>/dev/null || echo 0)
limit=$((64 << 20))
# The server's own memory may exceed the buffer by the buffers' hole bitmaps
# (an eighth) and a fixed 48 MiB (Go runtime, stream and request buffers).
# The clients' shared-memory rings it maps (16 MiB each by default) count in
# its RSS too, but they are the clients' memory. The buffer's data limit
# (buffer_limit) is five eighths of --buffer (a quarter keeps chunk buffers
# for reuse, an eighth receives bulk writes); it may be passed by one
# extent and two chunks per writing stream (4 MiB here).
allowed=$((limit + limit / 8 + (48 << 20)))
if ! grep -q "secs=" "$work/mem.out"; then
    bad "memory workload: $(tail -2 "$work/mem.out")"
elif [ "$size" != $((640 << 20)) ]; then
    bad "memory workload left $size bytes, want $((640 << 20))"
elif [ "$stalls" -gt 0 ] && [ "$hw" -gt 0 ] && [ "$peak" -ge $((blimit * 9 / 10)) ] &&
    [ "$peak" -le $((blimit + (4 << 20))) ] && [ "$own" -le "$allowed" ]; then
    ok "the bound reached and held: buffer peak $((peak >> 20)) MiB of a $((blimit >> 20)) MiB data limit (--buffer 64M), $stalls stalls, $hw flushes for memory; server's own memory peaked at $((own >> 20)) MiB (<= 64 + 8 + 48); RSS with 2 clients' rings $((rss >> 20)) MiB"
else
    bad "buffer peak $((peak >> 20)) MiB of $((blimit >> 20)) MiB (want 90-100% plus 4 MiB), $stalls stalls and $hw flushes for memory (want > 0), own memory $((own >> 20)) MiB (allowed $((allowed >> 20))), RSS $((rss >> 20)) MiB"
fi
# The file's bytes: the ior pattern of bench.c, checked by reading it back.
if timeout 120 python3 - "$work/mem" <<'PY'; then ok "640 MiB written through a 64 MiB buffer read back intact"; else bad "bytes wrong after the memory test"; fi
import os, sys
if os.path.getsize(sys.argv[1]) != 640 << 20:
    sys.exit(1)
f = open(sys.argv[1], "rb")
off = 0
while True:
    b = f.read(1 << 20)
    if not b:
        break
    for i in range(0, len(b), 4099):
        o = off + i
        if b[i] != (o * 29 + (o >> 9)) & 0xff:
            print("bad byte at", o)
            sys.exit(1)
    off += len(b)
PY

echo "== SIGTERM with dirty data"
# Nothing may reach the disk before the signal, or this tests nothing.
serve term --flush-idle 1h --flush-full=false
mkfifo "$work/fifo"
(DELEGATE_SERVERS=unix:$work/term.sock timeout 120 mpiexec -n 2 "$top/build/tests/acktest" "delegate:$work/term" 4194304 <"$work/fifo" >"$work/term.out" 2>&1) &
prog=$!
exec 7>"$work/fifo"
for _ in $(seq 600); do grep -q acknowledged "$work/term.out" && break; sleep 0.05; done
before=$(stat -c %s "$work/term" 2>/dev/null || echo 0)
stop term
exec 7>&-
wait $prog
if [ "$before" -ge 8388608 ]; then
    bad "all 8 MiB were on disk before SIGTERM: the drain was not tested"
elif python3 - "$work/term" 8388608 <<'PY'; then ok "8 MiB acknowledged, $before bytes on disk before SIGTERM, all 8 MiB after"; else bad "acknowledged bytes missing after SIGTERM ($before before)"; fi
import sys
data = open(sys.argv[1], "rb").read()
n = int(sys.argv[2])
sys.exit(0 if len(data) == n and all(data[i] == (i * 7 + 3) & 0xff for i in range(0, n, 997)) else 1)
PY

echo "== engine: $failures failure(s)"
exit $((failures > 0))
