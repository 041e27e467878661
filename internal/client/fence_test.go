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
