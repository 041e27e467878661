package server

import (
	"os"
	"testing"

	"github.com/delegate-io/delegate/internal/extent"
	"github.com/delegate-io/delegate/internal/journal"
)

// The write path's cost of the state directory, at the index: the same
// writes into heap chunks (recycled through the pool, as a server does)
// and into journal slots on /dev/shm (recycled the same way). A flush of
// every 64 MiB releases the buffers.
func BenchmarkIndexRecordsHeap(b *testing.B)  { benchIndex(b, false, 64) }
func BenchmarkIndexRecordsSlots(b *testing.B) { benchIndex(b, true, 64) }
func BenchmarkIndex47KHeap(b *testing.B)      { benchIndex(b, false, 47008) }
func BenchmarkIndex47KSlots(b *testing.B)     { benchIndex(b, true, 47008) }

func benchIndex(b *testing.B, slots bool, size int) {
	const chunk, flushEvery = 1 << 20, 64 << 20
	pool := extent.NewPool(chunk, 64)
	var j *journal.Journal
	if slots {
		dir, err := os.MkdirTemp("/dev/shm", "dlg-bench-")
		if err != nil {
			b.Skip("no /dev/shm")
		}
		defer os.RemoveAll(dir)
		j, _, err = journal.Open(dir+"/state", chunk, 64)
		if err != nil {
			b.Fatal(err)
		}
		defer j.Close(true)
	}
	newIndex := func() *extent.Index {
		x := extent.NewPooled(chunk, 512, pool)
		if slots {
			x.UseSlots(fileSlots{j: j, f: &file{path: "/bench"}})
		}
		return x
	}
	x := newIndex()
	rec := make([]byte, size)
	b.SetBytes(int64(size))
	var written int64
	for i := 0; i < b.N; i++ {
		// two "ranks" interleaved, record by record
		x.Write(int64(i^1)*int64(size), rec)
		if written += int64(size); written >= flushEvery {
			x.Release()
			x, written = newIndex(), 0
		}
	}
	x.Release()
}

// Random 4 KiB writes, as bench.c's random-w: 8,192 per "rank" at distinct
// 4 KiB slots of the rank's 128 MiB block (a quarter of each chunk), then
// the flusher's pass over the runs and the release of the buffers.
func BenchmarkIndexRandom4KHeap(b *testing.B)  { benchRandom(b, false) }
func BenchmarkIndexRandom4KSlots(b *testing.B) { benchRandom(b, true) }

func benchRandom(b *testing.B, slots bool) {
	const chunk, piece, nslots, n = 1 << 20, 4096, 32768, 8192
	pool := extent.NewPool(chunk, 64)
	var j *journal.Journal
	if slots {
		dir, err := os.MkdirTemp("/dev/shm", "dlg-bench-")
		if err != nil {
			b.Skip("no /dev/shm")
		}
		defer os.RemoveAll(dir)
		j, _, err = journal.Open(dir+"/state", chunk, 256)
		if err != nil {
			b.Fatal(err)
		}
		defer j.Close(true)
	}
	rec := make([]byte, piece)
	b.SetBytes(2 * n * piece)
	for i := 0; i < b.N; i++ {
		x := extent.NewPooled(chunk, 512, pool)
		if slots {
			x.UseSlots(fileSlots{j: j, f: &file{path: "/bench"}})
		}
		for k := int64(0); k < n; k++ {
			for rank := int64(0); rank < 2; rank++ {
				off := rank*nslots*piece + (40503*k+12345)%nslots*piece
				x.Write(off, rec)
			}
		}
		var runs int
		x.Runs(8<<20, func(r extent.Run) error { runs += len(r.Bufs); return nil })
		x.Release()
	}
}

// Strided 4 KiB and 1 KiB pieces from two "ranks" (bench.c's strided-4k,
// strided-1k, ior), each rank's batch of 256 pieces one run: written
// extent by extent (Write) and a chunk at a time (WriteRun).
func BenchmarkIndexStrided4KExtents(b *testing.B) { benchStrided(b, 4096, 256, 64<<20, false) }
func BenchmarkIndexStrided4KRuns(b *testing.B)    { benchStrided(b, 4096, 256, 64<<20, true) }
func BenchmarkIndexStrided1KExtents(b *testing.B) { benchStrided(b, 1024, 256, 64<<20, false) }
func BenchmarkIndexStrided1KRuns(b *testing.B)    { benchStrided(b, 1024, 256, 64<<20, true) }

// bench.c's view and view-all: each "rank" writes 4 MiB as one run of
// 65,536 pieces of 64 bytes, interleaved with the other's.
func BenchmarkIndexView64Runs(b *testing.B) { benchStrided(b, 64, 65536, 8<<20, true) }

func benchStrided(b *testing.B, piece, batch, total int64, runs bool) {
	const chunk = 1 << 20
	dir, err := os.MkdirTemp("/dev/shm", "dlg-bench-")
	if err != nil {
		b.Skip("no /dev/shm")
	}
	defer os.RemoveAll(dir)
	j, _, err := journal.Open(dir+"/state", chunk, 128)
	if err != nil {
		b.Fatal(err)
	}
	defer j.Close(true)
	pool := extent.NewPool(chunk, 64)
	data := make([]byte, batch*piece)
	b.SetBytes(total)
	for i := 0; i < b.N; i++ {
		x := extent.NewPooled(chunk, 512, pool)
		x.UseSlots(fileSlots{j: j, f: &file{path: "/bench"}})
		for base := int64(0); base < total; base += 2 * batch * piece {
			for rank := int64(0); rank < 2; rank++ {
				off := base + rank*piece
				if runs {
					x.WriteRun(off, piece, 2*piece, batch, data)
					continue
				}
				for k := int64(0); k < batch; k++ {
					x.Write(off+k*2*piece, data[k*piece:(k+1)*piece])
				}
			}
		}
		x.Runs(8<<20, func(extent.Run) error { return nil })
		x.Release()
	}
}
