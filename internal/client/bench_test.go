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
