package client_test

import (
	"bytes"
	"path/filepath"
	"testing"

	"github.com/delegate-io/delegate/internal/client"
	"github.com/delegate-io/delegate/internal/testutil"
	"github.com/delegate-io/delegate/internal/wire"
)

// TestFenceMakesWritesVisible: client A writes a record without waiting
// for its acknowledgement, calls Fence (what the patched MPICH does before
// a barrier's first message), then client B, another process's view,
// reads the record through its own session. Without the fence B reads
// stale bytes in a good share of the trials (the write is still in A's
// queue or on the wire); with it, never. The fence word counts down to 0.
func TestFenceMakesWritesVisible(t *testing.T) {
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			c := testutil.Start(t, testutil.Options{Servers: v.servers, TCP: v.tcp})
			cfgA := func(cfg *client.Config) { cfg.RingBytes = v.ring }
			a, b := c.Client(t, cfgA), c.Client(t, cfgA)
			path := filepath.Join(c.Dir, "fence")
			fa := open(t, a, path, wire.ORdwr|wire.OCreat, nil)
			fb := open(t, b, path, wire.ORdonly, nil)
			for _, size := range []int64{64, 4 << 10, 64 << 10} {
				for i := int64(0); i < 200; i++ {
					off := (i * 7919 % 200) * size
					rec := bytes.Repeat([]byte{byte(i + 1)}, int(size))
					if _, err := fa.Write([][]byte{rec}, []client.Extent{{Off: off, Len: size}}, client.IOOpts{}); err != nil {
						t.Fatal(err)
					}
					if err := a.Fence(); err != nil {
						t.Fatal(err)
					}
					got := make([]byte, size)
					if _, err := fb.Read([][]byte{got}, []client.Extent{{Off: off, Len: size}}, client.IOOpts{}); err != nil {
						t.Fatal(err)
					}
					if !bytes.Equal(got, rec) {
						t.Fatalf("record %d of %d bytes at %d: stale after Fence (got %d, want %d)", i, size, off, got[0], rec[0])
					}
				}
			}
			if n := a.Stats().Pending; n != 0 {
				t.Fatalf("fence word %d after every write was acknowledged", n)
			}
			for _, f := range []*client.File{fa, fb} {
				if err := f.Close(); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

// TestFenceWithoutFenceIsStale shows that the test above can fail: without
// the fence reads are stale (400 of 400 on the project's machine).
func TestFenceWithoutFenceIsStale(t *testing.T) {
	c := testutil.Start(t, testutil.Options{Servers: 1})
	a, b := c.Client(t, nil), c.Client(t, nil)
	path := filepath.Join(c.Dir, "nofence")
	fa := open(t, a, path, wire.ORdwr|wire.OCreat, nil)
	fb := open(t, b, path, wire.ORdonly, nil)
	stale := 0
	for i := int64(0); i < 400; i++ {
		rec := bytes.Repeat([]byte{byte(i%250 + 1)}, 64)
		if _, err := fa.Write([][]byte{rec}, []client.Extent{{Off: i * 64, Len: 64}}, client.IOOpts{}); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, 64)
		if _, err := fb.Read([][]byte{got}, []client.Extent{{Off: i * 64, Len: 64}}, client.IOOpts{}); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, rec) {
			stale++
		}
	}
	t.Logf("without a fence: %d of 400 reads stale", stale)
	if stale == 0 {
		t.Fatal("no read was stale without a fence: TestFenceMakesWritesVisible proves nothing")
	}
}

// TestFenceScoped: the fence inside a collective write's own completion
// (FenceScoped, libdelegate's delegate_fence_scope) does not wait for the
// collective's pieces and end markers, and everything still becomes
// visible. Rank A writes a record independently, then its piece of a
// two-rank collective write, and fences scoped: that returns although
// rank B has not written yet (A's markers cannot be answered before B's
// arrive; a full fence would wait for them), it has waited for the
// independent record (a third process reads it), and A's markers stay in
// the fence word. Then B writes its piece and fences in full (what MPICH
// does before B's next message): a third process told by B reads both
// pieces, A's included, and A's full fence returns with the word at 0.
func TestFenceScoped(t *testing.T) {
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			c := testutil.Start(t, testutil.Options{Servers: v.servers, TCP: v.tcp})
			cfg := func(cfg *client.Config) { cfg.RingBytes = v.ring }
			a, b, r := c.Client(t, cfg), c.Client(t, cfg), c.Client(t, cfg)
			path := filepath.Join(c.Dir, "scoped")
			fa := open(t, a, path, wire.ORdwr|wire.OCreat, nil)
			fb := open(t, b, path, wire.ORdwr, nil)
			fr := open(t, r, path, wire.ORdonly, nil)
			const size = 64 << 10 // pieces on every server of the 3-server variants (1 MiB apart)
			rec := func(v byte) []byte { return bytes.Repeat([]byte{v}, size) }
			read := func(off int64) []byte {
				t.Helper()
				got := make([]byte, size)
				if _, err := fr.Read([][]byte{got}, []client.Extent{{Off: off, Len: size}}, client.IOOpts{}); err != nil {
					t.Fatal(err)
				}
				return got
			}
			for seq := int64(0); seq < 20; seq++ {
				base := seq * 8 << 20
				indep, pa, pb := base+4<<20, base, base+1<<20
				tag := byte(seq + 1)
				if _, err := fa.Write([][]byte{rec(tag)}, []client.Extent{{Off: indep, Len: size}}, client.IOOpts{}); err != nil {
					t.Fatal(err)
				}
				o := client.IOOpts{Coll: &wire.CollTag{Seq: seq, Rank: 0, Size: 2, Group: 9}}
				if _, err := fa.Write([][]byte{rec(tag + 100)}, []client.Extent{{Off: pa, Len: size}}, o); err != nil {
					t.Fatal(err)
				}
				if err := a.FenceScoped(fa); err != nil {
					t.Fatal(err)
				}
				if got := read(indep); !bytes.Equal(got, rec(tag)) {
					t.Fatalf("collective %d: a write before the collective is stale after the scoped fence", seq)
				}
				if n := a.Stats().Pending; n < int64(v.servers) {
					t.Fatalf("collective %d: fence word %d with %d end markers unanswered", seq, n, v.servers)
				}
				o = client.IOOpts{Coll: &wire.CollTag{Seq: seq, Rank: 1, Size: 2, Group: 9}}
				if _, err := fb.Write([][]byte{rec(tag + 200)}, []client.Extent{{Off: pb, Len: size}}, o); err != nil {
					t.Fatal(err)
				}
				if err := b.Fence(); err != nil {
					t.Fatal(err)
				}
				if got := read(pa); !bytes.Equal(got, rec(tag+100)) {
					t.Fatalf("collective %d: rank A's piece stale after rank B's fence", seq)
				}
				if got := read(pb); !bytes.Equal(got, rec(tag+200)) {
					t.Fatalf("collective %d: rank B's piece stale after its fence", seq)
				}
				if err := a.Fence(); err != nil {
					t.Fatal(err)
				}
				if n := a.Stats().Pending; n != 0 {
					t.Fatalf("collective %d: fence word %d after a full fence", seq, n)
				}
			}
			for _, f := range []*client.File{fa, fb, fr} {
				if err := f.Close(); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

// TestFenceCloseSendsCorked: the fence inside a close of file a (FenceClose,
// MPI_File_close's barrier) waits on none of a's servers, but it still
// sends what any file holds corked: b's corked write must go before a's
// end markers, which stand in for the wait, or a peer told by the close
// would not see it. After FenceClose and a round trip on the same stream
// (a's size) the server has b's bytes; without the send it has none.
func TestFenceCloseSendsCorked(t *testing.T) {
	c := testutil.Start(t, testutil.Options{})
	cl := c.Client(t, func(cfg *client.Config) { cfg.LeaseMin, cfg.LeaseMinLocal = 0, 0 })
	fa := open(t, cl, filepath.Join(c.Dir, "a"), wire.ORdwr|wire.OCreat, nil)
	fb := open(t, cl, filepath.Join(c.Dir, "b"), wire.ORdwr|wire.OCreat, map[string]string{"delegate_cork": "true"})
	rec := bytes.Repeat([]byte{'b'}, 4096)
	if _, err := fb.Write([][]byte{rec}, []client.Extent{{Off: 0, Len: 4096}}, client.IOOpts{}); err != nil {
		t.Fatal(err)
	}
	before := c.Servers[0].Stats().BytesIn
	if err := cl.FenceClose(fa); err != nil {
		t.Fatal(err)
	}
	if _, err := fa.Size(); err != nil {
		t.Fatal(err)
	}
	if got := c.Servers[0].Stats().BytesIn - before; got != 4096 {
		t.Errorf("the server received %d bytes of b's corked write after FenceClose(a), want 4096", got)
	}
	for _, f := range []*client.File{fa, fb} {
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
	}
}
