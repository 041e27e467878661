package journal

import (
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

// BenchmarkSyncPerBatch measures what making each acknowledged batch
// durable across a node crash would cost with the state directory on a
// disk: a batch of 64 KiB copied into a slot and marked (what the write
// path does now), then msync(MS_SYNC) of the pages it touched (data and
// mark bitmap) and fdatasync of the segment. Set JOURNAL_BENCH_DIR to a
// directory on the disk to measure (default: the test's temporary
// directory); compare with BenchmarkBatchNoSync.
func BenchmarkSyncPerBatch(b *testing.B) { benchBatch(b, true) }

// BenchmarkBatchNoSync is the write path as it is: copy and mark.
func BenchmarkBatchNoSync(b *testing.B) { benchBatch(b, false) }

func benchBatch(b *testing.B, durable bool) {
	dir := os.Getenv("JOURNAL_BENCH_DIR")
	if dir == "" {
		dir = b.TempDir()
	} else {
		d, err := os.MkdirTemp(dir, "jbench-")
		if err != nil {
			b.Fatal(err)
		}
		defer os.RemoveAll(d)
		dir = d
	}
	const chunk, batch = 1 << 20, 64 << 10
	j, _, err := Open(dir+"/state", chunk, 4)
	if err != nil {
		b.Fatal(err)
	}
	defer j.Close(true)
	s := j.Acquire("/bench", FileID{}, 0)
	p := make([]byte, batch)
	b.SetBytes(batch)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		off := int64(i*batch) % chunk
		copy(s.Data()[off:], p)
		s.Mark(off, batch)
		if durable {
			if err := s.sync(off, batch); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.StopTimer()
	s.Release()
}

// sync makes bytes [i, i+n) of the slot, their marks and the header
// durable.
func (s *Slot) sync(i, n int64) error {
	page := int64(pageBytes)
	base := s.pos + hdrBytes + s.seg.geo.bitmap // data offset in the segment
	lo, hi := (base+i)/page*page, (base+i+n+page-1)/page*page
	if err := unix.Msync(s.seg.mem[lo:hi], unix.MS_SYNC); err != nil {
		return err
	}
	if err := unix.Msync(s.seg.mem[s.pos:s.pos+hdrBytes+s.seg.geo.bitmap], unix.MS_SYNC); err != nil {
		return err
	}
	return unix.Fdatasync(int(s.seg.f.Fd()))
}
