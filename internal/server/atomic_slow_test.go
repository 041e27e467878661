package server_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/delegate-io/delegate/internal/server"
	"github.com/delegate-io/delegate/internal/testutil"
	"github.com/delegate-io/delegate/internal/wire"
)

// TestAtomicSlowWorkerTimelyPart (found in review, three times): the
// call's second part is sent right behind the first, but the stream's own
// requests between them keep the worker past the part's due time: a read
// of cold data (backend 2 s; a sync of a big file would do the same),
// then 1 MiB inline writes of another thread, for which the stream's
// reader waits before it can even read the part (its queue's room held).
// Judged by when the worker got to it, or by its arrival as the reader
// stamped it, the part failed with ETIMEDOUT though it came at once; only
// the worker's idle time counts now.
func TestAtomicSlowWorkerTimelyPart(t *testing.T) {
	const half = 64 << 10
	for _, writes := range []int{0, 1, 2} {
		t.Run(fmt.Sprintf("%d inline writes", writes), func(t *testing.T) {
			a := slowBackendPeer(t)
			a.write(1, 0, half, 'a', wire.IOAtomic|wire.IOMore)
			a.read(0, 2<<20, 4096, 0) // not atomic, cold: applied inside the call
			for i := 0; i < writes; i++ {
				a.write(0, 3<<20, wire.MaxInline, 'p', 0) // not atomic, inline, 1 MiB
			}
			a.write(1, half, half, 'a', wire.IOAtomic)
			a.ok("first part")
			a.ok("non-atomic read")
			for i := 0; i < writes; i++ {
				a.ok("non-atomic write")
			}
			if r, _, err := a.reply(); err != nil || r.Code != wire.OK {
				t.Fatalf("second part, sent right after the first: %+v %v, want OK", r, err)
			}
		})
	}
}

// TestAtomicSlowPartItself (found in review): the due time was set before
// the part was applied, so a part's own work (a cold read, backend 2 s
// here) counted against the gap to the next part, which the client sends
// once the reply comes. It starts once the reply is sent now.
func TestAtomicSlowPartItself(t *testing.T) {
	const half = 64 << 10
	a := slowBackendPeer(t)
	a.read(1, 0, half, wire.IOAtomic|wire.IOMore)
	a.ok("first part")
	a.read(1, half, half, wire.IOAtomic) // at once
	if r, _, err := a.reply(); err != nil || r.Code != wire.OK {
		t.Fatalf("second part, sent as soon as the first was answered: %+v %v, want OK", r, err)
	}
}

// slowBackendPeer: a raw session with a file of 4 MiB open on a server
// whose backend reads take 2 s, and atomic calls' parts due within 1 s:
// twice the gap, so that the work between the parts would time them out
// if it counted, and a gap wide enough for the race detector on a loaded
// machine (300 ms was not: two 1 MiB inline writes took longer once, in
// CI's go test -race beside a benchmark).
func slowBackendPeer(t *testing.T) *atomicPeer {
	const gap, delay = time.Second, 2 * time.Second
	t.Cleanup(server.SetAtomicForTest(gap, nil))
	c := testutil.Start(t, testutil.Options{Mutate: func(i int, cfg *server.Config) {
		cfg.BackendReadDelay = delay
	}})
	path := filepath.Join(c.Dir, "f")
	if err := os.WriteFile(path, bytes.Repeat([]byte{'z'}, 4<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	return newAtomicPeer(t, c, path)
}
