package server_test

import (
	"bytes"
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/delegate-io/delegate/internal/client"
	"github.com/delegate-io/delegate/internal/server"
	"github.com/delegate-io/delegate/internal/testutil"
	"github.com/delegate-io/delegate/internal/wire"
)

// rankPart is one rank's part of a collective write: its extents, in order.
type rankPart []client.Extent

// interleaved returns ranks' parts of count pieces of n bytes each, the
// ranks' pieces alternating over [base, base+ranks*count*n): a file view
// written with write_all (view-all, ior).
func interleaved(ranks, count int, n, base int64) []rankPart {
	parts := make([]rankPart, ranks)
	for i := 0; i < count; i++ {
		for r := range parts {
			parts[r] = append(parts[r], client.Extent{Off: base + (int64(i*ranks+r))*n, Len: n})
		}
	}
	return parts
}

// collTest writes collectives through one client per rank and keeps the
// model of the file.
type collTest struct {
	t     *testing.T
	c     *testutil.Cluster
	path  string
	files []*client.File
	model fileModel
	rand  *rand.Rand
	seq   int64
}

func newCollTest(t *testing.T, c *testutil.Cluster, ranks int, mutate func(*client.Config)) *collTest {
	ct := &collTest{t: t, c: c, path: filepath.Join(c.Dir, "coll"), rand: rand.New(rand.NewPCG(3, 4))}
	for r := 0; r < ranks; r++ {
		f, err := c.Client(t, mutate).Open(bg, ct.path, wire.ORdwr|wire.OCreat, 0, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		ct.files = append(ct.files, f)
	}
	return ct
}

func (ct *collTest) random(n int64) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = byte(ct.rand.Uint32())
	}
	return p
}

// independent writes p at off from rank 0 and waits for the answer: the
// bytes are buffered (or direct) before the next collective.
func (ct *collTest) independent(off, n int64) {
	ct.t.Helper()
	p := ct.random(n)
	if _, err := ct.files[0].Write([][]byte{p}, []client.Extent{{Off: off, Len: n}}, client.IOOpts{Ack: true}); err != nil {
		ct.t.Fatal(err)
	}
	ct.model.write(off, p)
}

// collective writes parts[r] from rank r, all ranks at once, as one
// collective; within a rank later pieces win (the model applies them in
// order; the parts of different ranks never overlap in these tests).
func (ct *collTest) collective(parts []rankPart) {
	ct.t.Helper()
	ranks := len(ct.files)
	data := make([][]byte, ranks)
	for r := range ranks {
		var n int64
		for _, e := range parts[r] {
			n += e.Len
		}
		data[r] = ct.random(n)
		pos := int64(0)
		for _, e := range parts[r] {
			ct.model.write(e.Off, data[r][pos:pos+e.Len])
			pos += e.Len
		}
	}
	errs := make(chan error, ranks)
	for r, f := range ct.files {
		go func() {
			tag := wire.CollTag{Seq: ct.seq, Rank: int32(r), Size: int32(ranks), Group: 9}
			_, err := f.Write([][]byte{data[r]}, parts[r], client.IOOpts{Coll: &tag})
			errs <- err
		}()
	}
	for range ranks {
		select {
		case err := <-errs:
			if err != nil {
				ct.t.Fatal(err)
			}
		case <-time.After(30 * time.Second):
			ct.t.Fatal("a rank's collective write still waits after 30 s")
		}
	}
	ct.seq++
}

// check reads the file back through every rank (no sync: a read after the
// collective sees it), then syncs and compares the backend file.
func (ct *collTest) check() {
	ct.t.Helper()
	for r, f := range ct.files {
		got := make([]byte, len(ct.model))
		n, err := f.Read([][]byte{got}, []client.Extent{{Off: 0, Len: int64(len(got))}}, client.IOOpts{})
		if err != nil || !bytes.Equal(got[:n], ct.model) {
			ct.t.Fatalf("rank %d reads %d of %d bytes (%v); first difference at %d", r, n, len(ct.model), err, firstDiff(got[:n], ct.model))
		}
	}
	if err := ct.files[0].Sync(); err != nil {
		ct.t.Fatal(err)
	}
	if got, _ := os.ReadFile(ct.path); !bytes.Equal(got, ct.model) {
		ct.t.Fatalf("backend file after sync: %d bytes, want %d; first difference at %d", len(got), len(ct.model), firstDiff(got, ct.model))
	}
}

func collStats(c *testutil.Cluster) (held, direct int64) {
	held, direct, _ = collCounts(c)
	return held, direct
}

// collCounts adds up the servers' collective counters; writes counts the
// collective write requests, held or not.
func collCounts(c *testutil.Cluster) (held, direct, writes int64) {
	for _, s := range c.Servers {
		st := s.Stats()
		held += st.CollHeld
		direct += st.CollDirect
		writes += st.CollWrites
	}
	return held, direct, writes
}

// TestCollectiveDirect: a collective write's contiguous runs go from the
// ranks' rings straight to the backend (coll_direct), its other pieces to
// the buffer, and every byte is right: read back through each rank right
// after the collective (no sync) and on the backend after a sync. Older
// buffered bytes under a direct run must not come back at the flush;
// a rank's later piece over its earlier one wins; a collective larger than
// a rank's ring must not hang (the piece that finds the ring full goes
// inline, unheld, and the server applies what it held).
func TestCollectiveDirect(t *testing.T) {
	const mib = 1 << 20
	for _, c := range []struct {
		name    string
		servers int
		ranks   int
		direct  int64 // the servers' --direct
		ring    int   // the clients' ring
		run     func(ct *collTest)
		// want: bytes written from the rings, at least and at most
		wantMin, wantMax int64
		unheld           bool // some pieces found the ring full and went unheld
	}{
		{name: "64-byte pieces interleave into one run", servers: 1, ranks: 2, direct: mib,
			run: func(ct *collTest) {
				ct.collective(interleaved(2, 16384, 64, 0))
			}, wantMin: 2 * mib, wantMax: 2 * mib},
		{name: "pieces of mixed lengths, gathered and not", servers: 1, ranks: 2, direct: 256 << 10,
			run: func(ct *collTest) {
				ct.independent(0, 50000)
				parts := make([]rankPart, 2)
				off := int64(1000)
				for i := 0; i < 3000; i++ {
					n := []int64{1, 64, 511, 512, 3000, 100}[i%6]                    // below and above gatherMax
					parts[i%2] = append(parts[i%2], client.Extent{Off: off, Len: n}) // the ranks alternate: no piece joins its neighbour
					off += n
				}
				ct.collective(parts) // about 2.1 MiB, one run
			}, wantMin: 2094000, wantMax: 2094000},
		{name: "over buffered independent writes", servers: 1, ranks: 2, direct: mib,
			run: func(ct *collTest) {
				ct.independent(0, 3*mib) // direct itself: the file's old bytes
				for i := int64(0); i < 200; i++ {
					ct.independent(i*15000+7, 100) // buffered, under the collective and beyond it
				}
				ct.collective(interleaved(2, 256, 4096, 4096))
				ct.independent(100000, 50) // buffered, newer than the collective
			}, wantMin: 2 * mib, wantMax: 2 * mib},
		{name: "three servers own 64 KiB regions", servers: 3, ranks: 2, direct: 32 << 10,
			run: func(ct *collTest) {
				for i := int64(0); i < 300; i++ {
					ct.independent(i*10000+3, 77)
				}
				ct.collective(interleaved(2, 512, 4096, 0))
			}, wantMin: 4 * mib, wantMax: 4 * mib},
		{name: "consecutive collectives overlap", servers: 1, ranks: 3, direct: 64 << 10,
			run: func(ct *collTest) {
				ct.collective(interleaved(3, 200, 4096, 0))
				ct.independent(300000, 5000)
				ct.collective(interleaved(3, 100, 4096, 1<<20+1000))
				ct.collective(interleaved(3, 100, 2048, 1000000))
			}, wantMin: 200*3*4096 + 100*3*4096 + 100*3*2048, wantMax: 200*3*4096 + 100*3*4096 + 100*3*2048},
		{name: "a rank's pieces overlap and go backwards", servers: 1, ranks: 2, direct: 64 << 10,
			run: func(ct *collTest) {
				ct.independent(0, 400<<10)
				ct.collective([]rankPart{
					{{Off: 0, Len: 64 << 10}, {Off: 32 << 10, Len: 64 << 10}, {Off: 10, Len: 20}, {Off: 96 << 10, Len: 100 << 10}},
					{{Off: 196 << 10, Len: 100 << 10}, {Off: 296 << 10, Len: 8}},
				})
			}, wantMin: 1, wantMax: 400 << 10},
		{name: "pieces with gaps stay buffered", servers: 1, ranks: 2, direct: 32 << 10,
			run: func(ct *collTest) {
				parts := interleaved(2, 4096, 64, 0)
				parts[1] = nil // every other 64 bytes: no run
				ct.collective(parts)
				ct.collective(interleaved(2, 4, 1000, 1<<20)) // 8000 bytes: a run below --direct
			}, wantMin: 0, wantMax: 0},
		{name: "a collective larger than the ring", servers: 1, ranks: 2, direct: mib, ring: mib,
			run: func(ct *collTest) {
				ct.independent(5, 1000)
				ct.collective(interleaved(2, 1024, 4096, 0)) // 4 MiB a rank through 1 MiB rings
				ct.collective(interleaved(2, 1024, 4096, 6<<20))
			}, wantMin: 0, wantMax: 16 * mib, unheld: true},
	} {
		t.Run(c.name, func(t *testing.T) {
			cl := testutil.Start(t, testutil.Options{Servers: c.servers, Mutate: func(_ int, cfg *server.Config) {
				cfg.CollDirect = true // off by default
				cfg.DirectBytes = c.direct
				cfg.FlushIdle = time.Hour // the buffered bytes stay buffered until the sync
				cfg.FlushFull = false
			}})
			ct := newCollTest(t, cl, c.ranks, func(cfg *client.Config) {
				if c.ring != 0 {
					cfg.RingBytes = c.ring
				}
			})
			c.run(ct)
			ct.check()
			held, direct, writes := collCounts(cl)
			if held == 0 {
				t.Errorf("no collective write was held")
			}
			if c.unheld != (writes > held) {
				t.Errorf("%d of %d collective writes held; want some unheld: %v", held, writes, c.unheld)
			}
			if direct < c.wantMin || direct > c.wantMax {
				t.Errorf("%d bytes written from the rings, want %d to %d", direct, c.wantMin, c.wantMax)
			}
		})
	}
}

// TestCollectiveDirectOff: with --coll-direct off (the default) nothing is
// held and the bytes are the same.
func TestCollectiveDirectOff(t *testing.T) {
	cl := testutil.Start(t, testutil.Options{})
	ct := newCollTest(t, cl, 2, nil)
	ct.independent(0, 100)
	ct.collective(interleaved(2, 16384, 64, 0))
	ct.check()
	if held, direct := collStats(cl); held != 0 || direct != 0 {
		t.Fatalf("--coll-direct off: %d held, %d bytes from the rings", held, direct)
	}
}

// TestCollectiveDirectCrash: a server killed after a collective written
// from the rings over acknowledged buffered bytes (in the state directory)
// must not replay those older bytes over it at recovery: the direct run
// punched them out of the journal's slots. Bytes buffered after the
// collective, over it, come back.
func TestCollectiveDirectCrash(t *testing.T) {
	stateDir := filepath.Join(t.TempDir(), "state")
	cl := testutil.Start(t, testutil.Options{Mutate: func(i int, cfg *server.Config) {
		stateConfig(stateDir)(i, cfg) // --direct 32 KiB
		cfg.CollDirect = true
	}})
	ct := newCollTest(t, cl, 2, nil)
	for i := int64(0); i < 100; i++ {
		ct.independent(i*5000, 1000) // buffered, in the journal
	}
	ct.collective(interleaved(2, 64, 2048, 10000)) // 256 KiB from the rings, over buffered bytes
	ct.independent(20000, 300)                     // buffered over the collective
	if _, direct := collStats(cl); direct != 256<<10 {
		t.Fatalf("%d bytes written from the rings, want %d", direct, 256<<10)
	}
	if got, _ := os.ReadFile(ct.path); bytes.Equal(got, ct.model) {
		t.Fatal("the file is on the backend before the crash: the test proves nothing")
	}
	cl.Servers[0].CrashForTest()
	s := restartOn(t, stateDir)
	if st := s.Stats(); st.RecoveredFiles != 1 {
		t.Errorf("recovered %d files, want 1", st.RecoveredFiles)
	}
	if got, _ := os.ReadFile(ct.path); !bytes.Equal(got, ct.model) {
		t.Errorf("after recovery: %d bytes, want %d; first difference at %d", len(got), len(ct.model), firstDiff(got, ct.model))
	}
	ctx, cancel := context.WithTimeout(bg, 10*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestCollectiveDirectSkippedOverlap: a rank's piece that overlaps an
// earlier one of its own is applied after the direct runs; a later piece
// of the rank (in another request) that starts inside the skipped one must
// not go direct, or the skipped, older bytes would land over it.
func TestCollectiveDirectSkippedOverlap(t *testing.T) {
	const k = 64 << 10
	cl := testutil.Start(t, testutil.Options{Mutate: func(_ int, cfg *server.Config) {
		cfg.CollDirect = true
		cfg.DirectBytes = 32 << 10
		cfg.FlushIdle = time.Hour
		cfg.FlushFull = false
	}})
	ct := newCollTest(t, cl, 2, func(cfg *client.Config) { cfg.MaxRequestBytes = k })
	ct.collective([]rankPart{
		{{Off: 0, Len: k - 200}, {Off: k, Len: 100}, {Off: k + 50, Len: 100}, {Off: k + 120, Len: k}},
		{{Off: 4 * k, Len: 10}},
	})
	ct.check()
}

// TestCollectiveHeldBounded: a stream holds at most maxHeldReqs requests
// of a collective (a client that never sends its marker cannot grow the
// server); past it, what it holds is applied, and the bytes are the same.
func TestCollectiveHeldBounded(t *testing.T) {
	var most atomic.Int64
	t.Cleanup(server.SetHeldBoundForTest(4, func(n int) {
		for m := most.Load(); int64(n) > m && !most.CompareAndSwap(m, int64(n)); m = most.Load() {
		}
	}))
	cl := testutil.Start(t, testutil.Options{Mutate: func(_ int, cfg *server.Config) {
		cfg.CollDirect = true
		cfg.DirectBytes = 32 << 10
	}})
	ct := newCollTest(t, cl, 2, func(cfg *client.Config) { cfg.MaxRequestBytes = 64 << 10 })
	ct.collective(interleaved(2, 256, 4096, 0)) // 1 MiB a rank: 16 requests each
	ct.check()
	if m := most.Load(); m == 0 || m > 4 {
		t.Fatalf("a stream held %d requests at once, want 1..4", m)
	}
}
