package server_test

import (
	"bytes"
	"context"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/delegate-io/delegate/internal/client"
	"github.com/delegate-io/delegate/internal/server"
	"github.com/delegate-io/delegate/internal/testutil"
	"github.com/delegate-io/delegate/internal/wire"
)

// manyRuns is an extent encoding of n runs of 1 byte (lengths alternate
// between 1 and 2 bytes apart, so that no two runs fold): n*3/2 bytes in
// all, from off.
func manyRuns(off int64, n int) (enc []byte, total int64) {
	var b wire.Builder
	for i := range n {
		b.Add(off+int64(i)*4, int64(1+i%2))
	}
	return append([]byte(nil), b.Bytes()...), b.Total()
}

// TestDescOverLimit: a request whose description is over
// wire.MaxRequestDesc (as sent, or once decompressed), or whose extent
// list has more than wire.MaxRequestRuns runs, is answered EPROTO naming
// the limit, counted as a bad frame, its payload skipped; the stream
// serves the next request.
func TestDescOverLimit(t *testing.T) {
	big := bytes.Repeat([]byte{0x55}, wire.MaxRequestDesc+1) // not an extent list: never parsed
	runs, runsTotal := manyRuns(0, wire.MaxRequestRuns+1)
	for _, tc := range []struct {
		name  string
		frame func(file uint64) []byte
		want  string
	}{
		{"desc", func(file uint64) []byte {
			return frame(wire.TWrite, &wire.Write{File: file, Ext: big}, []byte("skip"))
		}, "MaxRequestDesc"},
		{"desc-lz4", func(file uint64) []byte {
			// A few KiB on the wire, over the limit once decompressed.
			e := wire.NewEncoder(wire.Compression{MinBytes: 1})
			if err := e.Append(wire.TWrite, 1, &wire.Write{File: file, Ext: make([]byte, wire.MaxRequestDesc)}, []byte("skip")); err != nil {
				panic(err)
			}
			if len(e.Bytes()) > 64<<10 {
				panic("not compressed")
			}
			return append([]byte(nil), e.Bytes()...)
		}, "MaxRequestDesc"},
		{"runs-write", func(file uint64) []byte {
			return frame(wire.TWrite, &wire.Write{File: file, Ext: runs}, make([]byte, runsTotal))
		}, "MaxRequestRuns"},
		{"runs-read", func(file uint64) []byte {
			return frame(wire.TRead, &wire.Read{File: file, Ext: runs})
		}, "MaxRequestRuns"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := testutil.Start(t, testutil.Options{})
			st, rd, file := openRaw(t, c, "over")
			st.SetWriteDeadline(time.Now().Add(30 * time.Second))
			if err := sendSmall(st, tc.frame(file)); err != nil {
				t.Fatal(err)
			}
			refusedThenNext(t, c, st, rd, file, "over", tc.want)
		})
	}
}

// TestDescQueueBounded: a hostile client pipelines 64 requests with
// descriptions near wire.MaxRequestDesc behind its worker, which waits in
// a collective's end marker for a rank that does not come. The stream's
// reader counts descriptions in its own queue and waits for its worker,
// so the server's live heap grows by at most server.TransitPerStream
// (without the count, by all 64 descriptions: opens keep their paths,
// reads their extent lists' runs). Once the other rank's marker arrives,
// every request is answered.
func TestDescQueueBounded(t *testing.T) {
	const (
		n     = 64
		slack = 4 << 20
	)
	for _, tc := range []struct {
		name string
		make func(file uint64, i int) []byte
	}{
		{"open-paths", func(file uint64, i int) []byte {
			// Kept by the decoded description; refused by the handler.
			p := "/" + strings.Repeat("p", wire.MaxRequestDesc-100) + fmt.Sprint(i)
			return frameID(wire.TOpen, uint32(100+i), &wire.Open{Path: p, Flags: wire.ORdonly})
		}},
		{"read-runs", func(file uint64, i int) []byte {
			// wire.MaxRequestRuns runs: 128 KiB of them on the server.
			enc, _ := manyRuns(int64(i)<<20, wire.MaxRequestRuns)
			return frameID(wire.TRead, uint32(100+i), &wire.Read{File: file, Ext: enc})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var waits atomic.Int32
			t.Cleanup(server.SetOwnWaitHookForTest(func(int64) { waits.Add(1) }))
			c := testutil.Start(t, testutil.Options{Mutate: func(_ int, cfg *server.Config) {
				cfg.CollTimeout = time.Minute
			}})
			path := filepath.Join(c.Dir, "held")
			a, ard, fa := rawOpen(t, rawSession(t, c), path)
			b, brd, fb := rawOpen(t, rawSession(t, c), path)
			frames := make([][]byte, n) // the client's memory, before the baseline
			for i := range frames {
				frames[i] = tc.make(fa, i)
			}
			tag := wire.CollTag{Size: 2, Seq: 1}
			base := liveHeap()
			a.Write(frameID(wire.TCollEnd, 10, &wire.CollEnd{File: fa, CollTag: tag})) // holds a's worker
			go func() {
				a.SetWriteDeadline(time.Now().Add(60 * time.Second))
				for _, f := range frames {
					if sendSmall(a, f) != nil {
						return
					}
				}
			}()
			// Sample until the reader waits for its worker (bounded) or
			// queued every request behind the marker (unbounded).
			var peak int64
			queued := func() bool { return c.Servers[0].Stats().QueueDepth >= n+1 }
			deadline := time.Now().Add(30 * time.Second)
			for waits.Load() == 0 && !queued() && time.Now().Before(deadline) {
				peak = max(peak, liveHeap()-base)
			}
			if waits.Load() > 0 {
				// The reader holds what it can: a few more samples.
				for range 5 {
					peak = max(peak, liveHeap()-base)
				}
			}
			peak = max(peak, liveHeap()-base)
			bound := int64(server.TransitPerStream + slack)
			t.Logf("live heap growth at most %.1f MiB (bound %.1f MiB), reader waits %d, all queued %v",
				float64(peak)/(1<<20), float64(bound)/(1<<20), waits.Load(), queued())
			if peak > bound {
				t.Errorf("live heap grew by %d bytes, want at most %d", peak, bound)
			}
			if waits.Load() == 0 {
				t.Errorf("the reader never waited for its worker")
			}
			tag1 := tag
			tag1.Rank = 1
			b.Write(frameID(wire.TCollEnd, 20, &wire.CollEnd{File: fb, CollTag: tag1}))
			brd.Next()
			ard.Next() // the marker's reply
			var rep wire.Reply
			if err := ard.Decode(&rep); err != nil || rep.Code != wire.OK {
				t.Fatalf("rank 0's marker: %v %+v", err, rep)
			}
			for i := range n {
				h, err := ard.Next()
				if err != nil {
					t.Fatalf("reply %d: %v", i, err)
				}
				if h.ID != uint32(100+i) {
					t.Fatalf("reply %d for request %d", h.ID, 100+i)
				}
			}
			runtime.KeepAlive(frames)
		})
	}
}

// TestDescSplitByClient: a write of 250,000 one-byte extents at random
// offsets (in random order) and the read of them back are cut by the
// client into requests of at most wire.MaxRequestRuns runs: no bad frame,
// every byte where it belongs, the counts reported whole. Through a ring,
// inline over TCP, and striped over two servers.
func TestDescSplitByClient(t *testing.T) {
	const (
		pieces = 250_000 // about 30 requests of wire.MaxRequestRuns runs each way
		span   = 4 << 20
	)
	rng := rand.New(rand.NewSource(7))
	offs := rng.Perm(span)[:pieces]
	ext := make([]client.Extent, pieces)
	data := make([]byte, pieces)
	want := make([]byte, span)
	for i, o := range offs {
		ext[i] = client.Extent{Off: int64(o), Len: 1}
		data[i] = byte(rng.Intn(255) + 1)
		want[o] = data[i]
	}
	for _, tc := range []struct {
		name   string
		opts   testutil.Options
		inline bool
	}{
		{"ring", testutil.Options{}, false},
		{"tcp-inline", testutil.Options{TCP: true}, true},
		{"two-servers", testutil.Options{Servers: 2}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := testutil.Start(t, tc.opts)
			cl := c.Client(t, nil)
			if tc.inline {
				cl = inlineClient(t, c)
			}
			path := filepath.Join(c.Dir, "irregular")
			f, err := cl.Open(context.Background(), path, wire.ORdwr|wire.OCreat, 0o644, nil)
			if err != nil {
				t.Fatal(err)
			}
			if n, err := f.Write([][]byte{data}, ext, client.IOOpts{}); err != nil || n != pieces {
				t.Fatalf("write: %d, %v; want %d", n, err, pieces)
			}
			back := make([]byte, pieces)
			if n, err := f.Read([][]byte{back}, ext, client.IOOpts{}); err != nil || n != pieces {
				t.Fatalf("read: %d, %v; want %d", n, err, pieces)
			}
			if !bytes.Equal(back, data) {
				t.Fatalf("read back differs from what was written")
			}
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			last := int64(0)
			for _, o := range offs {
				last = max(last, int64(o)+1)
			}
			if int64(len(got)) != last || !bytes.Equal(got, want[:last]) {
				t.Fatalf("file: %d bytes, want %d and the bytes written at their offsets", len(got), last)
			}
			var writes, reads, bad int64
			for _, s := range c.Servers {
				st := s.Stats()
				writes += st.Requests["write"]
				reads += st.Requests["read"]
				bad += st.BadFrames
			}
			// Two one-byte pieces fold into a strided run of two (the
			// Builder), the next one starts a run: about half a run a piece.
			least := int64(pieces / 2 / wire.MaxRequestRuns)
			t.Logf("%d write and %d read requests", writes, reads)
			if bad != 0 || writes < least || reads < least {
				t.Fatalf("bad frames %d, %d writes, %d reads: want 0 and at least %d of each", bad, writes, reads, least)
			}
		})
	}
}
