package client_test

import (
	"path/filepath"
	"testing"

	"github.com/delegate-io/delegate/internal/client"
	"github.com/delegate-io/delegate/internal/testutil"
	"github.com/delegate-io/delegate/internal/wire"
)

// BenchmarkWrite64 is the client's hot path: 64-byte writes of interleaved
// records through the ring to a real server, acknowledged asynchronously.
func BenchmarkWrite64(b *testing.B) {
	for _, cork := range []bool{false, true} {
		name := "async"
		if cork {
			name = "corked"
		}
		b.Run(name, func(b *testing.B) {
			c := testutil.Start(b, testutil.Options{})
			cl := c.Client(b, nil)
			hints := map[string]string{}
			if cork {
				hints["delegate_cork"] = "true"
			}
			f, err := cl.Open(ctx, filepath.Join(c.Dir, "b"), wire.ORdwr|wire.OCreat, 0, hints)
			if err != nil {
				b.Fatal(err)
			}
			rec := make([]byte, 64)
			mem := [][]byte{rec}
			ext := []client.Extent{{Len: 64}}
			b.SetBytes(64)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				ext[0].Off = int64(i) * 64
				if _, err := f.Write(mem, ext, client.IOOpts{}); err != nil {
					b.Fatal(err)
				}
			}
			if err := f.Close(); err != nil {
				b.Fatal(err)
			}
		})
	}
}

// BenchmarkWriteView is one rank's part of the view and view-all workloads
// (tests/prog/bench.c): 4 MiB in 65,536 pieces of 64 bytes, every second
// 128 bytes, as the driver hands them over (an extent list), against the
// same 4 MiB as one extent: what the description costs the client.
func BenchmarkWriteView(b *testing.B) {
	const piece, n = 64, 65536
	for _, tc := range []struct {
		name   string
		pieces int
	}{{"strided-64", n}, {"contiguous", 1}} {
		b.Run(tc.name, func(b *testing.B) {
			c := testutil.Start(b, testutil.Options{})
			cl := c.Client(b, nil)
			f, err := cl.Open(ctx, filepath.Join(c.Dir, "b"), wire.ORdwr|wire.OCreat, 0, nil)
			if err != nil {
				b.Fatal(err)
			}
			buf := make([]byte, piece*n)
			mem := [][]byte{buf}
			ext := make([]client.Extent, tc.pieces)
			b.SetBytes(int64(len(buf)))
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				// the two ranks' halves in turn, so that the flush finds
				// whole chunks, as in the workload
				base := int64(i/2%64)*2*piece*n + int64(i%2)*piece
				if tc.pieces == 1 {
					ext[0] = client.Extent{Off: base - int64(i%2)*piece + int64(i%2)*piece*n, Len: piece * n}
				} else {
					for j := range ext {
						ext[j] = client.Extent{Off: base + int64(j)*2*piece, Len: piece}
					}
				}
				if _, err := f.Write(mem, ext, client.IOOpts{Ack: true}); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			if err := f.Close(); err != nil {
				b.Fatal(err)
			}
		})
	}
}
