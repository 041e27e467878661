package server_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/delegate-io/delegate/internal/backend"
	"github.com/delegate-io/delegate/internal/client"
	"github.com/delegate-io/delegate/internal/monitor"
	"github.com/delegate-io/delegate/internal/route"
	"github.com/delegate-io/delegate/internal/server"
	"github.com/delegate-io/delegate/internal/testutil"
	"github.com/delegate-io/delegate/internal/wire"
	"github.com/hashicorp/yamux"
)

// openRaw opens (creating) name on a new stream of a new raw session and
// returns the stream, its reader and the file id.
func openRaw(t *testing.T, c *testutil.Cluster, name string) (*yamux.Stream, *wire.Reader, uint64) {
	t.Helper()
	st, err := rawSession(t, c).OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	st.Write(frame(wire.TOpen, &wire.Open{Path: filepath.Join(c.Dir, name), Flags: wire.ORdwr | wire.OCreat, RegionSize: route.DefaultRegionSize}))
	rd := wire.NewReader(st, 64<<10)
	st.SetReadDeadline(time.Now().Add(10 * time.Second))
	var o wire.Reply
	if _, err := rd.Next(); err != nil || rd.Decode(&o) != nil || o.Code != wire.OK {
		t.Fatalf("open: %v %+v", err, o)
	}
	return st, rd, o.File
}

// writeHead is a write frame's header and description for n bytes at off,
// without the payload (the caller writes it after).
func writeHead(file uint64, off, n int64) []byte {
	var b wire.Builder
	b.Add(off, n)
	e := wire.NewEncoder(wire.Compression{})
	if err := e.Begin(wire.TWrite, 1, &wire.Write{File: file, Ext: b.Bytes()}, int(n)); err != nil {
		panic(err)
	}
	return append([]byte(nil), e.Bytes()...)
}

// sendSmall writes p in pieces of 64 KiB: yamux's send loop copies each
// write into a buffer of its session (kept), which in these tests would be
// the test's memory in the server's process.
func sendSmall(w io.Writer, p []byte) error {
	for len(p) > 0 {
		n := min(len(p), 64<<10)
		if _, err := w.Write(p[:n]); err != nil {
			return err
		}
		p = p[n:]
	}
	return nil
}

// TestInlineOverLimit: a request that carries more than wire.MaxInline
// inline is answered EPROTO with a message naming the limit, its payload
// skipped unread, counted as a bad frame; the stream serves the next
// request.
func TestInlineOverLimit(t *testing.T) {
	c := testutil.Start(t, testutil.Options{})
	st, rd, file := openRaw(t, c, "over")
	big := bytes.Repeat([]byte{7}, wire.MaxInline+1)
	st.Write(append(writeHead(file, 0, int64(len(big))), big...))
	refusedThenNext(t, c, st, rd, file, "over", "MaxInline")
	works(t, c)
}

// TestInlineSplitByClient: 5 MiB written by a client without bulk
// connections (and without a ring: TCP) reaches the server as requests of
// at most wire.MaxInline, byte-exact (the server refuses larger ones, and
// counts them as bad frames): one large write, small writes merged into
// the queued request, and small writes corked into batches of 4 MiB.
func TestInlineSplitByClient(t *testing.T) {
	const total = 5 << 20
	for _, tc := range []struct {
		name  string
		piece int
		hints map[string]string
	}{
		{"one-write", total, nil},
		{"merged", 60 << 10, nil},
		{"corked", 4 << 10, map[string]string{"delegate_cork": "true", "delegate_cork_size": "4M"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := testutil.Start(t, testutil.Options{TCP: true})
			cl := inlineClient(t, c)
			path := filepath.Join(c.Dir, "split")
			f, err := cl.Open(context.Background(), path, wire.ORdwr|wire.OCreat, 0o644, tc.hints)
			if err != nil {
				t.Fatal(err)
			}
			data := make([]byte, total)
			for i := range data {
				data[i] = byte(i*7 + i>>12)
			}
			for off := 0; off < total; off += tc.piece {
				p := data[off : off+min(tc.piece, total-off)]
				if n, err := f.Write([][]byte{p}, []client.Extent{{Off: int64(off), Len: int64(len(p))}}, client.IOOpts{}); err != nil || n != int64(len(p)) {
					t.Fatalf("write at %d: %d, %v", off, n, err)
				}
			}
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
			if b, err := os.ReadFile(path); err != nil || !bytes.Equal(b, data) {
				t.Fatalf("file: %d bytes (%v), want the 5 MiB written", len(b), err)
			}
			s := c.Servers[0].Stats()
			if s.BadFrames != 0 || s.BulkIn != 0 || s.Requests["write"] < total/wire.MaxInline {
				t.Fatalf("bad frames %d, bulk in %d, %d write requests: want 0, 0 and at least %d (5 MiB inline in pieces of at most 1 MiB)",
					s.BadFrames, s.BulkIn, s.Requests["write"], total/wire.MaxInline)
			}
			t.Logf("%d write requests", s.Requests["write"])
		})
	}
}

// liveHeap is the heap's live bytes after a collection.
func liveHeap() int64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc)
}

// TestTransitMemoryBounded is the reviewer's case: a server with --buffer
// 32M and eight clients that each send 16 MiB inline. Sent as single
// 16 MiB payloads, the server refuses them unread; sent as 1 MiB writes
// (as clients cut them) against a backend that does not answer, every
// stream holds at most server.TransitPerStream: the live heap grows by at
// most eight of them (before the inline limit and the 1 MiB window, about
// 8 MiB per stream: yamux's 4 MiB window and 4 MiB of queued payloads).
func TestTransitMemoryBounded(t *testing.T) {
	const (
		sessions = 8
		total    = 16 << 20
		slack    = 4 << 20 // goroutines, the sessions' own state
	)
	if float64(server.TransitPerStream) > 5.18*(1<<20) {
		t.Fatalf("a stream may hold %d bytes in transit, more than README says (5.18 MiB)", server.TransitPerStream)
	}
	bound := int64(sessions*server.TransitPerStream + slack)
	t.Run("one-payload", func(t *testing.T) {
		// The backend does not answer until the payloads were sent: a
		// server that took them would hold all of them at once.
		efs := &backend.ErrorFS{Gate: make(chan struct{})}
		var gateOnce sync.Once
		open := func() { gateOnce.Do(func() { close(efs.Gate) }) }
		defer open()
		c := testutil.Start(t, testutil.Options{Mutate: func(_ int, cfg *server.Config) {
			cfg.BufferBytes = 32 << 20
			cfg.Wrap = func(f backend.FS) backend.FS { efs.FS = f; return efs }
		}})
		payload := bytes.Repeat([]byte{9}, total) // the clients' memory, before the baseline
		conns := openConns(t, c, "one", sessions)
		base := liveHeap()
		var wg sync.WaitGroup
		var sent, answered atomic.Int32
		codes := make([]wire.Code, sessions)
		for i, cn := range conns {
			wg.Add(1)
			go func() {
				defer wg.Done()
				cn.st.Write(writeHead(cn.file, 0, total))
				sendSmall(cn.st, payload)
				sent.Add(1)
				var rep wire.Reply
				cn.st.SetReadDeadline(time.Now().Add(30 * time.Second))
				if _, err := cn.rd.Next(); err == nil && cn.rd.Decode(&rep) == nil {
					codes[i] = rep.Code
				}
				answered.Add(1)
			}()
		}
		// Sample the live heap until every payload was sent (taken by
		// the server, or refused and skipped) or answered.
		var peak int64
		deadline := time.Now().Add(30 * time.Second)
		for answered.Load() < sessions && sent.Load() < sessions && time.Now().Before(deadline) {
			peak = max(peak, liveHeap()-base)
		}
		peak = max(peak, liveHeap()-base)
		open()
		wg.Wait()
		t.Logf("live heap growth at most %.1f MiB (bound %.1f MiB)", float64(peak)/(1<<20), float64(bound)/(1<<20))
		if peak > bound {
			t.Errorf("live heap grew by %d bytes, want at most %d", peak, bound)
		}
		for i, code := range codes {
			if code != wire.EPROTO {
				t.Fatalf("session %d: a 16 MiB inline write answered %v, want EPROTO", i, code)
			}
		}
	})
	t.Run("pipelined", func(t *testing.T) {
		efs := &backend.ErrorFS{Gate: make(chan struct{})}
		var gateOnce sync.Once
		open := func() { gateOnce.Do(func() { close(efs.Gate) }) }
		defer open()
		// A reader waits once for its worker here: the worker never
		// finishes a write while the backend is stopped.
		var nwait atomic.Int32
		t.Cleanup(server.SetOwnWaitHookForTest(func(int64) { nwait.Add(1) }))
		c := testutil.Start(t, testutil.Options{Mutate: func(_ int, cfg *server.Config) {
			cfg.BufferBytes = 32 << 20
			cfg.DirectBytes = 64 << 10 // every write straight to the (stopped) backend: the workers wait there
			cfg.Wrap = func(f backend.FS) backend.FS { efs.FS = f; return efs }
		}})
		const piece = wire.MaxInline
		payloads := make([][]byte, sessions)
		for i := range payloads {
			payloads[i] = bytes.Repeat([]byte{byte(i + 1)}, piece)
		}
		conns := openConns(t, c, "pipe", sessions)
		base := liveHeap()
		var sent atomic.Int64 // pieces sent, all sessions
		var wg sync.WaitGroup
		errs := make([]error, sessions)
		for i, cn := range conns {
			wg.Add(2)
			go func() {
				defer wg.Done()
				for k := int64(0); k < total/piece; k++ {
					if _, err := cn.st.Write(writeHead(cn.file, k*piece, piece)); err != nil {
						return
					}
					if sendSmall(cn.st, payloads[i]) != nil {
						return
					}
					sent.Add(1)
				}
			}()
			go func() {
				defer wg.Done()
				errs[i] = func() error {
					cn.st.SetReadDeadline(time.Now().Add(60 * time.Second))
					for k := 0; k < total/piece; k++ {
						var rep wire.Reply
						if _, err := cn.rd.Next(); err != nil {
							return err
						}
						if err := cn.rd.Decode(&rep); err != nil {
							return err
						}
						if rep.Code != wire.OK || rep.N != piece {
							return fmt.Errorf("write %d: %v %q, %d bytes", k, rep.Code, rep.Msg, rep.N)
						}
					}
					return nil
				}()
			}()
		}
		// Every reader waits for its worker, which waits for the backend;
		// the clients stop once the streams' windows are full. Sample the
		// live heap until the pieces sent stay the same over a sample.
		var peak int64
		deadline := time.Now().Add(30 * time.Second)
		var stalled int64
		for last := int64(-1); ; {
			peak = max(peak, liveHeap()-base)
			n := sent.Load()
			stalled = n
			if nwait.Load() >= sessions && n == last {
				break
			}
			if time.Now().After(deadline) {
				open()
				t.Fatalf("the clients did not stall: %d pieces sent, %d reader waits", n, nwait.Load())
			}
			last = n
		}
		open()
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("session %d: %v", i, err)
			}
		}
		for i := range conns {
			b, err := os.ReadFile(filepath.Join(c.Dir, fmt.Sprintf("pipe-%d", i)))
			if err != nil || int64(len(b)) != total || !bytes.Equal(b[:piece], payloads[i]) || !bytes.Equal(b[total-piece:], payloads[i]) {
				t.Fatalf("file %d: %d bytes (%v), want %d of byte %d", i, len(b), err, total, i+1)
			}
		}
		t.Logf("%d pieces of 1 MiB sent before the clients stalled; live heap growth at most %.1f MiB (bound %.1f MiB: %d streams of %.2f MiB and %.0f MiB)",
			stalled, float64(peak)/(1<<20), float64(bound)/(1<<20), sessions, float64(server.TransitPerStream)/(1<<20), float64(slack)/(1<<20))
		if peak > bound {
			t.Fatalf("live heap grew by %d bytes with every stream stalled, want at most %d", peak, bound)
		}
	})
}

// TestMaxSessions: with --max-sessions 2 a third client gets an error that
// names the server and the limit; a monitor still gets in and sees the
// refusal counted; once a client leaves, a new one gets in.
func TestMaxSessions(t *testing.T) {
	c := testutil.Start(t, testutil.Options{Mutate: func(_ int, cfg *server.Config) { cfg.MaxSessions = 2 }})
	a, _ := c.Client(t, nil), c.Client(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := client.New(ctx, c.Config())
	if err == nil || wire.CodeOf(err) != wire.EUNREACHABLE || !strings.Contains(err.Error(), "maximum of 2 sessions (--max-sessions)") ||
		!strings.Contains(err.Error(), c.Servers[0].Stats().Name) {
		t.Fatalf("third client: %v (code %v), want EUNREACHABLE naming the server and --max-sessions", err, wire.CodeOf(err))
	}
	var mons []*monitor.Monitor
	for i := range server.MonitorReserve {
		m, err := monitor.Connect(ctx, c.Addrs[0].String(), "", nil, 5*time.Second)
		if err != nil {
			t.Fatalf("monitor %d on a full server: %v", i, err)
		}
		mons = append(mons, m)
	}
	s, err := mons[0].Stats()
	// The gauge counts a session once its yamux runs, a moment after the
	// hello's reply: at least the clients and this monitor.
	if err != nil || s.SessionsRefused != 1 || s.Sessions < 3 {
		t.Fatalf("stats: %v, %d refused (want 1), %d sessions (want at least 3)", err, s.SessionsRefused, s.Sessions)
	}
	if _, err := monitor.Connect(ctx, c.Addrs[0].String(), "", nil, 5*time.Second); err == nil || !strings.Contains(err.Error(), "monitors") {
		t.Fatalf("a monitor beyond the reserve: %v, want refused", err)
	}
	for _, m := range mons {
		m.Close()
	}
	a.Close()
	// The server sees the departures when the connections end.
	deadline := time.Now().Add(10 * time.Second)
	for c.Servers[0].Stats().Sessions != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("%d sessions after one client and the monitors left, want 1", c.Servers[0].Stats().Sessions)
		}
		time.Sleep(5 * time.Millisecond) // polling a counter, bounded
	}
	cl, err := client.New(ctx, c.Config())
	if err != nil {
		t.Fatalf("a client after one left: %v", err)
	}
	cl.Close()
	if n := c.Servers[0].Stats().SessionsRefused; n != 2 {
		t.Fatalf("sessions refused %d, want 2 (a client, a monitor)", n)
	}
}

// TestExtraStreamsClosed: a session that opens more streams than
// server.MaxStreams (a client opens one) is closed, the extra stream
// unanswered and counted; and a session whose stream the server closed (a
// bad frame) ends too, so that nothing a client sends into streams the
// server closed stays buffered (review: one session grew 39 MiB in 40
// rounds of a bad frame and 1 MiB sent into the closed stream).
func TestExtraStreamsClosed(t *testing.T) {
	c := testutil.Start(t, testutil.Options{})
	ymx := rawSession(t, c)
	var kept []rawStream
	for range server.MaxStreams {
		st, err := ymx.OpenStream()
		if err != nil {
			t.Fatal(err)
		}
		kept = append(kept, rawStream{st, wire.NewReader(st, 4096)})
	}
	for _, k := range kept {
		k.st.Write(frame(wire.TStat, &wire.FileOp{File: 99}))
		k.st.SetReadDeadline(time.Now().Add(10 * time.Second))
		var rep wire.Reply
		if _, err := k.rd.Next(); err != nil || k.rd.Decode(&rep) != nil || rep.Code != wire.EBADF {
			t.Fatalf("stat on a served stream: %v %+v, want EBADF", err, rep)
		}
	}
	extra, err := ymx.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	extra.Write(frame(wire.TStat, &wire.FileOp{File: 99}))
	extra.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, _ := io.Copy(io.Discard, extra); n != 0 {
		t.Fatalf("extra stream: %d bytes: want closed without an answer", n)
	}
	select {
	case <-ymx.CloseChan():
	case <-time.After(10 * time.Second):
		t.Fatal("a session that opened an extra stream is still open")
	}
	if n := c.Servers[0].Stats().StreamsRefused; n != 1 {
		t.Fatalf("streams refused %d, want 1", n)
	}

	// A bad frame closes the stream, and the session with it.
	ymx = rawSession(t, c)
	st, err := ymx.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	st.Write(bytes.Repeat([]byte{0xff}, 100))
	select {
	case <-ymx.CloseChan():
	case <-time.After(10 * time.Second):
		t.Fatal("a session whose stream sent a bad frame is still open")
	}
	if _, err := ymx.OpenStream(); err == nil {
		t.Fatal("a new stream on the session after its stream was closed")
	}
	works(t, c)
}

type rawStream struct {
	st *yamux.Stream
	rd *wire.Reader
}

// TestReplyBatchBounded: a worker that answers a full queue of reads of
// 64 KiB (each copied into the batch of replies) sends the batch once it
// holds server.ReplyBatchBytes, not once the queue is empty (64 of them:
// 4 MiB). The worker is held at a collective's end marker until the reads
// are queued.
func TestReplyBatchBounded(t *testing.T) {
	var most atomic.Int64
	t.Cleanup(server.SetReplyBatchHookForTest(func(n int) {
		for m := most.Load(); int64(n) > m && !most.CompareAndSwap(m, int64(n)); m = most.Load() {
		}
	}))
	c := testutil.Start(t, testutil.Options{Mutate: func(_ int, cfg *server.Config) { cfg.CollTimeout = time.Minute }})
	a, ard, fa := openRaw(t, c, "batch")
	b, brd, fb := openRaw(t, c, "batch")
	tag := wire.CollTag{Size: 2, Seq: 1}
	a.Write(frameID(wire.TCollEnd, 1, &wire.CollEnd{File: fa, CollTag: tag})) // a's worker waits for rank 1
	const reads = 60
	var out []byte
	for i := range reads {
		var x wire.Builder
		x.Add(int64(i)*server.BigPayload, server.BigPayload)
		out = append(out, frameID(wire.TRead, uint32(2+i), &wire.Read{File: fa, Ext: x.Bytes()})...)
	}
	// Then two writes of wire.MaxInline: the reader waits before the
	// second for its worker, every read queued before it.
	var wx wire.Builder
	wx.Add(0, wire.MaxInline)
	for i := range 2 {
		out = append(out, frameID(wire.TWrite, uint32(100+i), &wire.Write{File: fa, Ext: wx.Bytes()}, make([]byte, wire.MaxInline))...)
	}
	waited := make(chan struct{})
	var once sync.Once
	t.Cleanup(server.SetOwnWaitHookForTest(func(int64) { once.Do(func() { close(waited) }) }))
	wrote := make(chan error, 1)
	go func() {
		_, err := a.Write(out)
		wrote <- err
	}()
	select {
	case <-waited:
	case <-time.After(10 * time.Second):
		t.Fatal("the reader never waited for its worker")
	}
	// Rank 1's marker releases a's worker.
	tag.Rank = 1
	b.Write(frameID(wire.TCollEnd, 1, &wire.CollEnd{File: fb, CollTag: tag}))
	var rep wire.Reply
	if _, err := brd.Next(); err != nil || brd.Decode(&rep) != nil || rep.Code != wire.OK {
		t.Fatalf("rank 1's marker: %v %+v", err, rep)
	}
	for i := range reads + 3 {
		rep = wire.Reply{}
		if _, err := ard.Next(); err != nil || ard.Decode(&rep) != nil || rep.Code != wire.OK {
			t.Fatalf("reply %d: %v %+v", i, err, rep)
		}
	}
	if err := <-wrote; err != nil {
		t.Fatal(err)
	}
	limit := int64(server.ReplyBatchBytes + 2*server.BigPayload)
	t.Logf("largest batch of replies %d KiB (bound %d KiB)", most.Load()>>10, limit>>10)
	if most.Load() > limit || most.Load() < server.ReplyBatchBytes {
		t.Fatalf("largest batch of replies %d bytes, want from %d to %d", most.Load(), server.ReplyBatchBytes, limit)
	}
}

// TestMonitorsKeepClientPlaces (found in review): monitors were held only
// to the total, so MaxSessions+MonitorReserve monitors (5 at
// --max-sessions 1) left no place for a client, which was refused with
// "serves its maximum of 1 sessions" while the server served none.
// Monitors have their own places now: MonitorReserve of them, a client
// still gets in beside them, and one more monitor is refused.
func TestMonitorsKeepClientPlaces(t *testing.T) {
	c := testutil.Start(t, testutil.Options{Mutate: func(_ int, cfg *server.Config) { cfg.MaxSessions = 1 }})
	ctx := context.Background()
	for i := 0; i < server.MonitorReserve; i++ {
		m, err := monitor.Connect(ctx, c.Addrs[0].String(), "", nil, 5*time.Second)
		if err != nil {
			t.Fatalf("monitor %d: %v", i, err)
		}
		defer m.Close()
	}
	if _, err := monitor.Connect(ctx, c.Addrs[0].String(), "", nil, 5*time.Second); err == nil || !strings.Contains(err.Error(), "monitors") {
		t.Fatalf("a monitor beyond the reserve: %v, want refused", err)
	}
	cl := c.Client(t, nil)
	if _, err := cl.Open(ctx, filepath.Join(c.Dir, "f"), wire.ORdwr|wire.OCreat, 0, nil); err != nil {
		t.Errorf("a client at a server that serves no client but %d monitors: %v", server.MonitorReserve, err)
	}
}

// TestRefusedKeepsNoRuns (found in review): a write whose extent list of
// wire.MaxRequestRuns runs parses but does not cover the bytes it names
// (stream.extents) is queued with its error and never admitted (admit
// counts only what it takes), and it kept its parsed runs (~128 KiB): 64
// of them behind a worker held in a collective end marker held ~9 MiB
// outside the own-queue count, beyond server.TransitPerStream, for ~16 KiB
// each on the wire. A refused request keeps nothing now.
func TestRefusedKeepsNoRuns(t *testing.T) {
	const n = 64
	c := testutil.Start(t, testutil.Options{Mutate: func(_ int, cfg *server.Config) {
		cfg.CollTimeout = time.Minute
	}})
	path := filepath.Join(c.Dir, "held")
	a, ard, fa := rawOpen(t, rawSession(t, c), path)
	b, brd, fb := rawOpen(t, rawSession(t, c), path)
	frames := make([][]byte, n)
	for i := range frames {
		enc, total := manyRuns(int64(i)<<20, wire.MaxRequestRuns)
		// RingLen one byte more than the list covers: parsed, then refused.
		frames[i] = frameID(wire.TWrite, uint32(100+i), &wire.Write{File: fa, Ext: enc, RingOff: 0, RingLen: uint64(total + 1)})
	}
	tag := wire.CollTag{Size: 2, Seq: 1}
	base := liveHeap()
	a.Write(frameID(wire.TCollEnd, 10, &wire.CollEnd{File: fa, CollTag: tag}))
	go func() {
		a.SetWriteDeadline(time.Now().Add(60 * time.Second))
		for _, f := range frames {
			if sendSmall(a, f) != nil {
				return
			}
		}
	}()
	deadline := time.Now().Add(30 * time.Second)
	for c.Servers[0].Stats().QueueDepth < n+1 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	peak := liveHeap() - base
	t.Logf("queued %d, live heap growth %.2f MiB, TransitPerStream %.2f MiB",
		c.Servers[0].Stats().QueueDepth, float64(peak)/(1<<20), float64(server.TransitPerStream)/(1<<20))
	if peak > server.TransitPerStream {
		t.Errorf("live heap grew by %d bytes with the reader never waiting, want at most TransitPerStream %d", peak, server.TransitPerStream)
	}
	tag1 := tag
	tag1.Rank = 1
	b.Write(frameID(wire.TCollEnd, 20, &wire.CollEnd{File: fb, CollTag: tag1}))
	brd.Next()
	ard.Next()
	runtime.KeepAlive(frames)
}

// refusedThenNext follows a request the server refuses and skips (over a
// limit) on st: it sends a write of "next", and checks that the refusal is
// EPROTO naming want, the write is stored, the close succeeds, one bad
// frame is counted and the file (name, in c.Dir) holds only "next".
func refusedThenNext(t *testing.T, c *testutil.Cluster, st *yamux.Stream, rd *wire.Reader, file uint64, name, want string) {
	t.Helper()
	var nx wire.Builder
	nx.Add(0, 4)
	st.Write(frame(wire.TWrite, &wire.Write{File: file, Ext: nx.Bytes()}, []byte("next")))
	st.SetReadDeadline(time.Now().Add(30 * time.Second))
	var rep wire.Reply
	if _, err := rd.Next(); err != nil || rd.Decode(&rep) != nil {
		t.Fatalf("reply to the oversize request: %v", err)
	}
	if rep.Code != wire.EPROTO || !strings.Contains(rep.Msg, want) {
		t.Fatalf("oversize request: %v %q, want EPROTO naming wire.%s", rep.Code, rep.Msg, want)
	}
	rep = wire.Reply{}
	if _, err := rd.Next(); err != nil || rd.Decode(&rep) != nil || rep.Code != wire.OK || rep.N != 4 {
		t.Fatalf("the write after it: %v %+v, want 4 bytes stored", err, rep)
	}
	st.Write(frame(wire.TClose, &wire.Close{File: file}))
	rep = wire.Reply{}
	if _, err := rd.Next(); err != nil || rd.Decode(&rep) != nil || rep.Code != wire.OK {
		t.Fatalf("close: %v %+v", err, rep)
	}
	st.Close()
	if s := c.Servers[0].Stats(); s.BadFrames != 1 {
		t.Fatalf("bad frames %d, want 1", s.BadFrames)
	}
	if b, err := os.ReadFile(filepath.Join(c.Dir, name)); err != nil || string(b) != "next" {
		t.Fatalf("file holds %q (%v), want only the second write's bytes", b, err)
	}
}

// rawConn is a raw session's stream with its reply reader and a file open.
type rawConn struct {
	st   *yamux.Stream
	rd   *wire.Reader
	file uint64
}

// openConns opens n raw sessions, each with file prefix-i open.
func openConns(t *testing.T, c *testutil.Cluster, prefix string, n int) []rawConn {
	t.Helper()
	conns := make([]rawConn, n)
	for i := range conns {
		st, rd, file := openRaw(t, c, fmt.Sprintf("%s-%d", prefix, i))
		conns[i] = rawConn{st, rd, file}
	}
	return conns
}
