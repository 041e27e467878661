package server_test

import (
	"bytes"
	"path/filepath"
	"testing"
	"time"

	"github.com/delegate-io/delegate/internal/server"
	"github.com/delegate-io/delegate/internal/testutil"
	"github.com/delegate-io/delegate/internal/wire"
	"github.com/hashicorp/yamux"
)

// atomicPeer is a raw session with one file open, sending atomic-mode
// requests by hand.
type atomicPeer struct {
	t   *testing.T
	ymx *yamux.Session
	st  *yamux.Stream
	rd  *wire.Reader
	f   uint64
	id  uint32
}

func newAtomicPeer(t *testing.T, c *testutil.Cluster, path string) *atomicPeer {
	ymx := rawSession(t, c)
	st, rd, f := rawOpen(t, ymx, path)
	return &atomicPeer{t: t, ymx: ymx, st: st, rd: rd, f: f, id: 100}
}

func oneExtent(off, n int64) []byte {
	var b wire.Builder
	b.Add(off, n)
	return append([]byte(nil), b.Bytes()...)
}

func (p *atomicPeer) send(typ wire.Type, desc any, payload ...[]byte) {
	if err := p.trySend(typ, desc, payload...); err != nil {
		p.t.Fatal(err)
	}
}

// trySend is send for a caller to whom a failed write is an outcome.
func (p *atomicPeer) trySend(typ wire.Type, desc any, payload ...[]byte) error {
	p.id++
	_, err := p.st.Write(frameID(typ, p.id, desc, payload...))
	return err
}

// write and read send a request of atomic call ag (0: not atomic).
func (p *atomicPeer) write(ag uint64, off, n int64, b byte, flags uint32) {
	p.send(wire.TWrite, &wire.Write{File: p.f, Ext: oneExtent(off, n), Flags: flags, AG: ag}, bytes.Repeat([]byte{b}, int(n)))
}

func (p *atomicPeer) read(ag uint64, off, n int64, flags uint32) {
	p.send(wire.TRead, &wire.Read{File: p.f, Ext: oneExtent(off, n), Flags: flags, AG: ag})
}

// reply reads the next reply and its payload.
func (p *atomicPeer) reply() (wire.Reply, []byte, error) {
	var r wire.Reply
	p.st.SetReadDeadline(time.Now().Add(20 * time.Second))
	if _, err := p.rd.Next(); err != nil {
		return r, nil, err
	}
	if err := p.rd.Decode(&r); err != nil {
		return r, nil, err
	}
	data, err := p.rd.ReadPayloadAll()
	return r, data, err
}

// ok reads the next reply and fails unless it succeeded; it returns the
// payload.
func (p *atomicPeer) ok(what string) []byte {
	p.t.Helper()
	r, data, err := p.reply()
	if err != nil || r.Code != wire.OK {
		p.t.Fatalf("%s: %+v %v", what, r, err)
	}
	return data
}

// replyLater reads the next reply in the background.
func (p *atomicPeer) replyLater() <-chan wire.Reply {
	ch := make(chan wire.Reply, 1)
	go func() {
		r, _, err := p.reply()
		if err != nil {
			r.Code, r.Msg = wire.EIO, err.Error()
		}
		ch <- r
	}()
	return ch
}

func uniform(b []byte, c byte) bool { return bytes.Count(b, []byte{c}) == len(b) }

// TestAtomicCallOfSeveralRequests: an atomic call the client cut into
// several requests (one call id, wire.IOMore on all but the last) holds
// the file's atomic lock from its first part to its last, so another
// session's atomic write waits for the whole call (before, each request
// was a unit of its own, and a write of another rank could land between
// two parts of a call over 16 MiB or 4,096 runs). Each case has session a
// start a call, session b send an atomic write over the whole range,
// which must wait for the lock (the hook says so; were it applied at once,
// its reply would come first), and then what happens next in a: the
// call's last part, a request of another kind (applied inside the call),
// its stream's end, a part later than the bound, a collective's end
// marker, another call, a part that fails.
func TestAtomicCallOfSeveralRequests(t *testing.T) {
	const half = 64 << 10
	first := func(t *testing.T, a *atomicPeer) {
		a.write(1, 0, half, 'a', wire.IOAtomic|wire.IOMore)
		a.ok("first part")
	}
	// failsRest: a's call was broken; its next parts fail with code, the
	// last one too, and a's next call is applied as usual.
	failsRest := func(code wire.Code) func(t *testing.T, a *atomicPeer) {
		return func(t *testing.T, a *atomicPeer) {
			for i, flags := range []uint32{wire.IOAtomic | wire.IOMore, wire.IOAtomic} {
				a.write(1, half, half, 'a', flags)
				if r, _, err := a.reply(); err != nil || r.Code != code {
					t.Fatalf("part %d after the break: %+v %v, want %v", i+2, r, err, code)
				}
			}
			a.write(2, half, half, 'c', wire.IOAtomic)
			a.ok("the next call")
		}
	}
	cases := []struct {
		name  string
		gap   time.Duration
		start func(t *testing.T, a *atomicPeer)
		// end ends the call (or not) once b waits.
		end func(t *testing.T, a *atomicPeer)
		// after checks a once b's write is done.
		after  func(t *testing.T, a *atomicPeer)
		broken int64 // atomic_broken counted
	}{{
		name:  "write parts, then the last",
		start: first,
		end: func(t *testing.T, a *atomicPeer) {
			a.write(1, half, half, 'a', wire.IOAtomic)
			a.ok("last part")
		},
	}, {
		name: "read parts see one state",
		start: func(t *testing.T, a *atomicPeer) {
			a.read(1, 0, half, wire.IOAtomic|wire.IOMore)
			if got := a.ok("first read part"); len(got) != half || !uniform(got, 'o') {
				t.Fatalf("first read part: %d bytes, want %d of 'o'", len(got), half)
			}
		},
		end: func(t *testing.T, a *atomicPeer) {
			a.read(1, half, half, wire.IOAtomic)
			if got := a.ok("last read part"); len(got) != half || !uniform(got, 'o') {
				t.Fatal("the last read part saw the other session's write: the call was not one unit")
			}
		},
	}, {
		// A request of another kind (a stat, a write that is not atomic)
		// between two parts is applied inside the call, which goes on.
		name:  "other requests inside the call",
		start: first,
		end: func(t *testing.T, a *atomicPeer) {
			a.send(wire.TStat, &wire.FileOp{File: a.f})
			a.ok("stat")
			a.write(0, 4*half, 10, 'x', 0)
			a.ok("a write that is not atomic")
			a.write(1, half, half, 'a', wire.IOAtomic)
			a.ok("last part")
		},
	}, {
		name:  "the stream's end ends the call",
		start: first,
		end:   func(t *testing.T, a *atomicPeer) { a.ymx.Close() },
	}, {
		name:   "a late part fails, and the rest of the call",
		gap:    200 * time.Millisecond,
		start:  first,
		end:    func(t *testing.T, a *atomicPeer) {}, // the bound ends it
		after:  failsRest(wire.ETIMEDOUT),
		broken: 1,
	}, {
		// An end marker waits for other ranks, whose requests may wait
		// for this lock: it breaks the call.
		name:  "an end marker breaks the call",
		start: first,
		end: func(t *testing.T, a *atomicPeer) {
			a.send(wire.TCollEnd, &wire.CollEnd{File: a.f, CollTag: wire.CollTag{Seq: 1, Size: 1}})
			a.ok("end marker")
		},
		after:  failsRest(wire.EIO),
		broken: 1,
	}, {
		name:  "another call ends the call",
		start: first,
		end: func(t *testing.T, a *atomicPeer) {
			a.write(2, 3*half, 10, 'z', wire.IOAtomic)
			a.ok("another call")
		},
	}, {
		// A part that fails (a ring slot on a session without a ring)
		// lets the lock go, and the call's later parts fail too: none
		// lands after the hole.
		name:  "a failed part fails the rest",
		start: first,
		end: func(t *testing.T, a *atomicPeer) {
			a.send(wire.TWrite, &wire.Write{File: a.f, Ext: oneExtent(half, 10), RingLen: 10, Flags: wire.IOAtomic | wire.IOMore, AG: 1})
			if r, _, err := a.reply(); err != nil || r.Code != wire.EPROTO {
				t.Fatalf("part with a ring slot and no ring: %+v %v", r, err)
			}
		},
		after: failsRest(wire.EPROTO),
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			gap := tc.gap
			if gap == 0 {
				gap = 30 * time.Second
			}
			waited := make(chan struct{}, 8)
			t.Cleanup(server.SetAtomicForTest(gap, func() { waited <- struct{}{} }))
			c := testutil.Start(t, testutil.Options{})
			path := filepath.Join(c.Dir, "f")
			a, b := newAtomicPeer(t, c, path), newAtomicPeer(t, c, path)
			a.write(0, 0, 2*half, 'o', 0)
			a.ok("the file's first bytes")
			tc.start(t, a)
			b.write(7, 0, 2*half, 'b', wire.IOAtomic)
			bRep := b.replyLater()
			select {
			case <-waited:
			case r := <-bRep:
				t.Fatalf("the other session's atomic write was applied in the middle of the call (%+v)", r)
			case <-time.After(20 * time.Second):
				t.Fatal("the other session's write neither waited nor was answered")
			}
			tc.end(t, a)
			select {
			case r := <-bRep:
				if r.Code != wire.OK {
					t.Fatalf("the other session's write: %+v", r)
				}
			case <-time.After(20 * time.Second):
				t.Fatal("the other session's write still waits after the call ended")
			}
			// b wrote after a's call (or its first part, when the call
			// was broken): the whole range is b's.
			b.read(8, 0, 2*half, wire.IOAtomic)
			if got := b.ok("read back"); !uniform(got, 'b') {
				t.Fatalf("after the call: %d of %d bytes are b's", bytes.Count(got, []byte{'b'}), len(got))
			}
			if tc.after != nil {
				tc.after(t, a)
			}
			if n := c.Servers[0].Stats().AtomicBroken; n != tc.broken {
				t.Fatalf("atomic_broken %d, want %d", n, tc.broken)
			}
		})
	}
}

// TestAtomicShortReadEndsCall: a read part that stops at the end of file
// ends the call (the client stops there), so the lock is not kept
// waiting for a part that will not come: a writer that comes next does
// not wait.
func TestAtomicShortReadEndsCall(t *testing.T) {
	waited := make(chan struct{}, 8)
	t.Cleanup(server.SetAtomicForTest(30*time.Second, func() { waited <- struct{}{} }))
	c := testutil.Start(t, testutil.Options{})
	path := filepath.Join(c.Dir, "f")
	a, b := newAtomicPeer(t, c, path), newAtomicPeer(t, c, path)
	a.write(0, 0, 1000, 'o', 0)
	a.ok("the file")
	a.read(1, 0, 4096, wire.IOAtomic|wire.IOMore)
	if got := a.ok("read past the end"); len(got) < 1000 || !uniform(got[:1000], 'o') {
		t.Fatalf("read %d bytes", len(got))
	}
	b.write(1, 0, 10, 'b', wire.IOAtomic)
	b.ok("write after the short read")
	if len(waited) != 0 {
		t.Fatal("the write waited for a call that ended at the end of file")
	}
}

// TestAtomicReplyDeadline (found in review): while a call's lock is held,
// the worker's replies to requests between its parts were written with no
// deadline, so a client that stopped reading its stream kept the lock for
// ever (the bound on the next part never started). Here session a starts a
// call, then asks for 5 MiB of reads it never reads the replies of, more
// than its stream window: the batch of replies that does not fit fails
// within the bulk timeout, a's stream ends, and b's atomic write gets the
// lock.
func TestAtomicReplyDeadline(t *testing.T) {
	const half = 64 << 10
	waited := make(chan struct{}, 8)
	t.Cleanup(server.SetAtomicForTest(30*time.Second, func() { waited <- struct{}{} }))
	t.Cleanup(server.SetBulkTimeoutForTest(300 * time.Millisecond))
	c := testutil.Start(t, testutil.Options{})
	path := filepath.Join(c.Dir, "f")
	a, b := newAtomicPeer(t, c, path), newAtomicPeer(t, c, path)
	a.write(0, 0, 2*half, 'o', 0)
	a.ok("the file")
	a.write(1, 0, half, 'a', wire.IOAtomic|wire.IOMore)
	a.ok("first part")
	b.write(7, 0, half, 'b', wire.IOAtomic)
	bRep := b.replyLater()
	waitedFor(t, waited)
	for i := 0; i < 80; i++ { // 5 MiB of replies, never read
		// The server may drop a's session before all are sent (its reply
		// waited bulkTimeout): then a write fails, which is the point.
		if a.trySend(wire.TRead, &wire.Read{File: a.f, Ext: oneExtent(0, half)}) != nil {
			break
		}
	}
	select {
	case r := <-bRep:
		if r.Code != wire.OK {
			t.Fatalf("b's write: %+v", r)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a client that does not read its replies keeps the lock: b's atomic write waited 10 s")
	}
}

// TestAtomicGapNotRestarted (found in review): the bound on the wait for
// a call's next part restarted at every request of the stream, so a
// session whose call stopped after its first part, but which went on
// sending other requests (another thread's stats, say), kept the file's
// lock for as long. Session a sends stats without a pause; b's atomic
// write gets the lock once the part is due (300 ms here).
func TestAtomicGapNotRestarted(t *testing.T) {
	const half = 64 << 10
	waited := make(chan struct{}, 8)
	t.Cleanup(server.SetAtomicForTest(300*time.Millisecond, func() { waited <- struct{}{} }))
	c := testutil.Start(t, testutil.Options{})
	path := filepath.Join(c.Dir, "f")
	a, b := newAtomicPeer(t, c, path), newAtomicPeer(t, c, path)
	a.write(1, 0, half, 'a', wire.IOAtomic|wire.IOMore)
	a.ok("first part")
	b.write(7, 0, half, 'b', wire.IOAtomic)
	bRep := b.replyLater()
	waitedFor(t, waited)
	for deadline := time.Now().Add(10 * time.Second); ; {
		select {
		case r := <-bRep:
			if r.Code != wire.OK {
				t.Fatalf("b's write: %+v", r)
			}
			a.write(1, half, half, 'a', wire.IOAtomic)
			if r, _, err := a.reply(); err != nil || r.Code != wire.ETIMEDOUT {
				t.Fatalf("a's late last part: %+v %v, want ETIMEDOUT", r, err)
			}
			return
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("b's atomic write waited 10 s: a's other requests keep its call's lock")
		}
		a.send(wire.TStat, &wire.FileOp{File: a.f})
		a.ok("stat")
	}
}

// TestAtomicRefusedPartBreaksCall (found in review): a part refused on
// arrival (its extents do not cover its payload; its description is
// dropped) neither ended nor broke the call, whose next part was applied
// after the hole. It breaks the call now: the later parts fail.
func TestAtomicRefusedPartBreaksCall(t *testing.T) {
	const half = 64 << 10
	c := testutil.Start(t, testutil.Options{})
	a := newAtomicPeer(t, c, filepath.Join(c.Dir, "f"))
	a.write(1, 0, half, 'a', wire.IOAtomic|wire.IOMore)
	a.ok("first part")
	a.send(wire.TWrite, &wire.Write{File: a.f, Ext: oneExtent(half, 10), Flags: wire.IOAtomic | wire.IOMore, AG: 1}, make([]byte, 20))
	if r, _, err := a.reply(); err != nil || r.Code != wire.EPROTO {
		t.Fatalf("malformed part: %+v %v, want EPROTO", r, err)
	}
	a.write(1, 2*half, half, 'a', wire.IOAtomic)
	if r, _, err := a.reply(); err != nil || r.Code != wire.EIO {
		t.Fatalf("the part after a refused part: %+v %v, want EIO (not applied)", r, err)
	}
	if n := c.Servers[0].Stats().AtomicBroken; n != 1 {
		t.Fatalf("atomic_broken %d, want 1", n)
	}
}

// waitedFor fails the test unless an atomic request waits for a file's
// lock (the server's hook says so on waited) within 20 s.
func waitedFor(t *testing.T, waited <-chan struct{}) {
	t.Helper()
	select {
	case <-waited:
	case <-time.After(20 * time.Second):
		t.Fatal("b's write did not wait for a's call")
	}
}
