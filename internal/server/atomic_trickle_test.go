package server_test

import (
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/delegate-io/delegate/internal/server"
	"github.com/delegate-io/delegate/internal/testutil"
	"github.com/delegate-io/delegate/internal/wire"
)

// TestAtomicBulkTrickle (found in review): an atomic write whose data
// comes on a bulk connection takes the file's atomic lock before its data
// (write -> atomicEnter -> writeOne -> bulkRecv), and each read of it was
// bounded by bulkTimeout, not the transfer: a rank whose data trickles in
// (4 KiB every 150 ms: a slow client, simulated; bulkTimeout 300 ms) kept
// the lock for the whole transfer, 2.3 s here. Under the lock the whole
// transfer is bounded now (bulkTimeout + 1 s per MiB), and another rank's
// atomic write gets the lock within 1.5 s.
func TestAtomicBulkTrickle(t *testing.T) {
	t.Cleanup(server.SetBulkTimeoutForTest(300 * time.Millisecond))
	t.Cleanup(server.SetAtomicForTest(300*time.Millisecond, nil))
	c := testutil.Start(t, testutil.Options{TCP: true})
	st, b := bulkStream(t, c)
	rd := wire.NewReader(st, 1<<16)
	if _, err := rd.Next(); err != nil { // the open's reply
		t.Fatal(err)
	}
	var orep wire.Reply
	if err := rd.Decode(&orep); err != nil || orep.Code != wire.OK {
		t.Fatalf("open: %+v %v", orep, err)
	}
	const n = 64 << 10
	var xb wire.Builder
	xb.Add(0, n)
	st.Write(frame(wire.TWrite, &wire.Write{File: orep.File, Ext: xb.Bytes(), Flags: wire.IOAtomic, AG: 1,
		BulkRef: wire.BulkRef{BulkLen: n, BulkSeq: 1}}))
	h := make([]byte, wire.BulkHeaderSize)
	(&wire.BulkHeader{Kind: wire.BulkWrite, Seq: 1, Len: n}).Put(h)
	b.Write(h)
	trickleThenLock(t, c, b, n, 1)
}

// TestAtomicSplicedTrickle (found in review): as TestAtomicBulkTrickle,
// but the trickling bulk write is a plain one of another thread that
// comes between two parts of an atomic call (the lock held), large enough
// to be spliced (DirectBytes 4 KiB here), whose transfer was bounded per
// wait only: the lock was held for the whole trickle. A write is not
// spliced while the lock is held, and the ordinary way bounds it whole.
func TestAtomicSplicedTrickle(t *testing.T) {
	t.Cleanup(server.SetBulkTimeoutForTest(300 * time.Millisecond))
	t.Cleanup(server.SetAtomicForTest(300*time.Millisecond, nil))
	c := testutil.Start(t, testutil.Options{TCP: true, Mutate: func(_ int, cfg *server.Config) { cfg.DirectBytes = 4096 }})
	st, b := bulkStream(t, c)
	rd := wire.NewReader(st, 1<<16)
	next := func(what string) wire.Reply {
		if _, err := rd.Next(); err != nil {
			t.Fatal(what, err)
		}
		var rep wire.Reply
		if err := rd.Decode(&rep); err != nil {
			t.Fatal(what, err)
		}
		return rep
	}
	orep := next("open")
	var x1 wire.Builder
	x1.Add(0, 4096)
	st.Write(frame(wire.TWrite, &wire.Write{File: orep.File, Ext: x1.Bytes(), Flags: wire.IOAtomic | wire.IOMore, AG: 1},
		make([]byte, 4096)))
	if r := next("first part"); r.Code != wire.OK {
		t.Fatalf("first part: %+v", r)
	}
	const n = 64 << 10
	var xb wire.Builder
	xb.Add(1<<20, n)
	st.Write(frame(wire.TWrite, &wire.Write{File: orep.File, Ext: xb.Bytes(),
		BulkRef: wire.BulkRef{BulkLen: n, BulkSeq: 1}}))
	h := make([]byte, wire.BulkHeaderSize)
	(&wire.BulkHeader{Kind: wire.BulkWrite, Seq: 1, Len: n}).Put(h)
	b.Write(h)
	trickleThenLock(t, c, b, n, 2)
}

// trickleThenLock sends n bytes on bulk connection b, 4 KiB every 150 ms
// (a slow client, simulated), and, once the server has counted writes
// write requests (the trickling one holds the lock), has another session
// ask for the file's atomic lock: it must get it within 1.5 s
// (bulkTimeout 300 ms).
func trickleThenLock(t *testing.T, c *testutil.Cluster, b net.Conn, n int, writes int64) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for sent := 0; sent < n; sent += 4096 {
			time.Sleep(150 * time.Millisecond)
			if _, err := b.Write(make([]byte, 4096)); err != nil {
				return
			}
		}
	}()
	for deadline := time.Now().Add(10 * time.Second); c.Servers[0].Stats().Requests["write"] < writes; {
		if time.Now().After(deadline) {
			t.Fatal("the trickling write did not reach the server")
		}
	}
	p := newAtomicPeer(t, c, filepath.Join(c.Dir, "f"))
	start := time.Now()
	p.write(7, 0, 4096, 'b', wire.IOAtomic)
	r, _, err := p.reply()
	d := time.Since(start)
	<-done
	t.Logf("other rank's atomic write: %+v %v after %v", r.Code, err, d)
	if d > 1500*time.Millisecond {
		t.Fatalf("the lock was held %v by a trickling bulk transfer (bulkTimeout 300 ms)", d)
	}
}
