package server_test

import (
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/delegate-io/delegate/internal/server"
	"github.com/delegate-io/delegate/internal/testutil"
	"github.com/delegate-io/delegate/internal/wire"
)

// TestAtomicPartReplyGoesOut (found in review): a's call 1 sends its
// first part (more to come) and never its second; meanwhile a's stream
// pipelines non-atomic reads of 128 KiB (over bigPayload: each reply is
// written at once by stream.reply, which flushed the batch, the part's
// reply included, but the wait for the next part started only when the
// queue was empty or the batch full). It never started, lateness was never
// judged, and b's atomic write waited as long as a kept reading. A part's
// reply goes out at once now, and the wait starts then; however busy a
// keeps its worker, the part is late atomicBusyGaps gaps after it (1.2 s
// here, atomicGap 300 ms): b gets the lock within 3 s.
func TestAtomicPartReplyGoesOut(t *testing.T) {
	const half = 64 << 10
	const big = 128 << 10
	t.Cleanup(server.SetAtomicForTest(300*time.Millisecond, nil))
	c := testutil.Start(t, testutil.Options{})
	path := filepath.Join(c.Dir, "f")
	a, b := newAtomicPeer(t, c, path), newAtomicPeer(t, c, path)
	a.write(0, 1<<20, big, 'z', 0) // data for the big reads
	a.ok("plain write")

	var buf []byte
	nextID := func() uint32 { a.id++; return a.id }
	buf = append(buf, frameID(wire.TWrite, nextID(), &wire.Write{File: a.f, Ext: oneExtent(0, half), Flags: wire.IOAtomic | wire.IOMore, AG: 1}, make([]byte, half))...)
	const depth = 32
	for i := 0; i < depth; i++ {
		buf = append(buf, frameID(wire.TRead, nextID(), &wire.Read{File: a.f, Ext: oneExtent(1<<20, big)})...)
	}
	if _, err := a.st.Write(buf); err != nil {
		t.Fatal(err)
	}
	var stop atomic.Bool
	go func() { // drain a's replies
		for !stop.Load() {
			if _, _, err := a.reply(); err != nil {
				return
			}
		}
	}()
	go func() { // reads as fast as the stream takes them: the queue stays full
		id := a.id
		for !stop.Load() {
			id++
			if _, err := a.st.Write(frameID(wire.TRead, id, &wire.Read{File: a.f, Ext: oneExtent(1<<20, big)})); err != nil {
				return
			}
		}
	}()
	// b comes once a's part holds the lock (the server counted it: the
	// plain write and the part), and waits for it.
	for deadline := time.Now().Add(10 * time.Second); c.Servers[0].Stats().Requests["write"] < 2; {
		if time.Now().After(deadline) {
			t.Fatal("a's first part was not applied")
		}
	}
	b.write(7, 0, half, 'b', wire.IOAtomic)
	bRep := b.replyLater()
	select {
	case r := <-bRep:
		if r.Code != wire.OK {
			t.Fatalf("b's write: %+v", r)
		}
	case <-time.After(3 * time.Second):
		stop.Store(true)
		t.Fatal("b's atomic write waited 3 s (atomicGap 300 ms): a's stream of large reads keeps its call's lock")
	}
	stop.Store(true)
}

// TestAtomicRefusedPlainRequest (found in review): a request refused on
// arrival whose description decoded and says it is not atomic (another
// thread's plain write, its extents not covering its payload) is known not
// to be a part; it broke the open call all the same, and the call's
// timely last part failed EIO. Only a request that did not decode may
// have been a part.
func TestAtomicRefusedPlainRequest(t *testing.T) {
	const half = 64 << 10
	c := testutil.Start(t, testutil.Options{})
	a := newAtomicPeer(t, c, filepath.Join(c.Dir, "f"))
	a.write(1, 0, half, 'a', wire.IOAtomic|wire.IOMore)
	a.ok("first part")
	a.send(wire.TWrite, &wire.Write{File: a.f, Ext: oneExtent(4<<20, 10)}, make([]byte, 20)) // plain, refused
	if r, _, err := a.reply(); err != nil || r.Code != wire.EPROTO {
		t.Fatalf("malformed plain write: %+v %v, want EPROTO", r, err)
	}
	a.write(1, half, half, 'a', wire.IOAtomic)
	if r, _, err := a.reply(); err != nil || r.Code != wire.OK {
		t.Fatalf("the call's timely last part after another thread's refused plain write: %+v %v, want OK", r, err)
	}
}
