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
	p.id++
	if _, err := p.st.Write(frameID(typ, p.id, desc, payload...)); err != nil {
		p.t.Fatal(err)
	}
}

func (p *atomicPeer) write(off, n int64, b byte, flags uint32) {
	p.send(wire.TWrite, &wire.Write{File: p.f, Ext: oneExtent(off, n), Flags: flags}, bytes.Repeat([]byte{b}, int(n)))
}

func (p *atomicPeer) read(off, n int64, flags uint32) {
	p.send(wire.TRead, &wire.Read{File: p.f, Ext: oneExtent(off, n), Flags: flags})
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
// several requests (wire.IOMore on all but the last) holds the file's
// atomic lock from its first part to its last, so another session's
// atomic write waits for the whole call (before, each request was a unit
// of its own, and a write of another rank could land between two parts of
// a call over 16 MiB or 4,096 runs). Each case has session a start a call, session b send
// an atomic write of the same bytes, which must wait for the lock (the
// hook says so; were it applied at once, its reply would come first), and
// then what ends a's call: its last part, another request, its stream's
// end, or its next part coming later than the bound.
func TestAtomicCallOfSeveralRequests(t *testing.T) {
	const half = 64 << 10
	cases := []struct {
		name string
		gap  time.Duration
		// start sends a's first part (and waits for its reply); end ends
		// the call once b waits, and checks what a got.
		start, end func(t *testing.T, a *atomicPeer)
		want       byte // the file's first half in the end: b wrote after a's call
	}{{
		name: "write parts, then the last",
		start: func(t *testing.T, a *atomicPeer) {
			a.write(0, half, 'a', wire.IOAtomic|wire.IOMore)
			a.ok("first part")
		},
		end: func(t *testing.T, a *atomicPeer) {
			a.write(half, half, 'a', wire.IOAtomic)
			a.ok("last part")
		},
		want: 'b',
	}, {
		name: "read parts see one state",
		start: func(t *testing.T, a *atomicPeer) {
			a.read(0, half, wire.IOAtomic|wire.IOMore)
			if got := a.ok("first read part"); len(got) != half || !uniform(got, 'o') {
				t.Fatalf("first read part: %d bytes, want %d of 'o'", len(got), half)
			}
		},
		end: func(t *testing.T, a *atomicPeer) {
			a.read(half, half, wire.IOAtomic)
			if got := a.ok("last read part"); len(got) != half || !uniform(got, 'o') {
				t.Fatal("the last read part saw the other session's write: the call was not one unit")
			}
		},
		want: 'b',
	}, {
		name: "another request ends the call",
		start: func(t *testing.T, a *atomicPeer) {
			a.write(0, half, 'a', wire.IOAtomic|wire.IOMore)
			a.ok("first part")
		},
		end: func(t *testing.T, a *atomicPeer) {
			a.send(wire.TStat, &wire.FileOp{File: a.f})
			a.ok("stat")
		},
		want: 'b',
	}, {
		name: "the stream's end ends the call",
		start: func(t *testing.T, a *atomicPeer) {
			a.write(0, half, 'a', wire.IOAtomic|wire.IOMore)
			a.ok("first part")
		},
		end:  func(t *testing.T, a *atomicPeer) { a.ymx.Close() },
		want: 'b',
	}, {
		name: "a late part fails",
		gap:  200 * time.Millisecond,
		start: func(t *testing.T, a *atomicPeer) {
			a.write(0, half, 'a', wire.IOAtomic|wire.IOMore)
			a.ok("first part")
		},
		end:  func(t *testing.T, a *atomicPeer) {}, // the bound ends it
		want: 'b',
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
			a.write(0, 2*half, 'o', 0)
			a.ok("the file's first bytes")
			tc.start(t, a)
			b.write(0, half, 'b', wire.IOAtomic)
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
			b.read(0, 2*half, wire.IOAtomic)
			got := b.ok("read back")
			if !uniform(got[:half], tc.want) {
				t.Fatalf("first half %q..., want %q", got[:4], tc.want)
			}
			if tc.gap == 0 {
				return
			}
			// The late part fails, says why, and is counted; the session
			// goes on, its next call applied as usual.
			a.write(half, half, 'a', wire.IOAtomic)
			if r, _, err := a.reply(); err != nil || r.Code != wire.ETIMEDOUT {
				t.Fatalf("late part: %+v %v, want ETIMEDOUT", r, err)
			}
			if n := c.Servers[0].Stats().AtomicGaps; n != 1 {
				t.Fatalf("atomic_gaps %d, want 1", n)
			}
			a.write(half, half, 'c', wire.IOAtomic)
			a.ok("the next call")
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
	a.write(0, 1000, 'o', 0)
	a.ok("the file")
	a.read(0, 4096, wire.IOAtomic|wire.IOMore)
	if got := a.ok("read past the end"); len(got) < 1000 || !uniform(got[:1000], 'o') {
		t.Fatalf("read %d bytes", len(got))
	}
	b.write(0, 10, 'b', wire.IOAtomic)
	b.ok("write after the short read")
	if len(waited) != 0 {
		t.Fatal("the write waited for a call that ended at the end of file")
	}
}
