// Package extent is a file's write-behind buffer: an index of buffered byte
// ranges on a google/btree, with overwrite and split semantics.
//
// Invariants (checked by Check):
//
//	I1. Extents do not overlap, and are kept in offset order.
//	I2. No extent crosses a multiple of the chunk size.
//	I3. Two extents in the same chunk are never adjacent: they are merged.
//	I4. Bytes() is the sum of the extents' lengths, Alloc() of their
//	    buffers' capacities.
//
// I2 and I3 keep the index small under tiny writes: 64-byte records written
// in any order by many ranks grow one buffer per chunk instead of one btree
// node per record (175,000 four-byte extents in one call are a real
// workload, mpich issue #7283), and I2 bounds what one merge copies. Runs
// handed to the flusher join adjacent extents across chunks, so backend
// writes are large and, in the middle of a run, start and end on chunk
// boundaries.
//
// An Index is a value type for one goroutine at a time: no locks, no I/O,
// no clock. The server owns one per file and guards it.
package extent

import (
	"fmt"

	"github.com/google/btree"
)

type item struct {
	off  int64
	data []byte
}

func (it *item) end() int64 { return it.off + int64(len(it.data)) }

func less(a, b *item) bool { return a.off < b.off }

// Index is the set of buffered extents of one file.
type Index struct {
	tree  *btree.BTreeG[*item]
	chunk int64
	bytes int64
	alloc int64
	probe item    // reused search key
	merge []*item // reused list of extents a write absorbs
}

// New returns an empty index whose extents never cross a multiple of chunk.
func New(chunk int64) *Index {
	if chunk <= 0 {
		panic("extent: chunk size must be positive")
	}
	return &Index{tree: btree.NewG(16, less), chunk: chunk}
}

// Bytes returns the number of buffered bytes.
func (x *Index) Bytes() int64 { return x.bytes }

// Alloc returns the bytes allocated for buffers (capacity included): the
// memory the index holds.
func (x *Index) Alloc() int64 { return x.alloc }

// Len returns the number of extents.
func (x *Index) Len() int { return x.tree.Len() }

// End returns the end of the last extent, or 0 when empty.
func (x *Index) End() int64 {
	if it, ok := x.tree.Max(); ok {
		return it.end()
	}
	return 0
}

func (x *Index) key(off int64) *item {
	x.probe.off = off
	return &x.probe
}

// Write buffers p at off, replacing what was buffered there.
func (x *Index) Write(off int64, p []byte) {
	for len(p) > 0 {
		ce := (off/x.chunk + 1) * x.chunk
		n := min(int64(len(p)), ce-off)
		x.writeChunk(off, p[:n], ce)
		off, p = off+n, p[n:]
	}
}

// writeChunk writes p at off, inside the chunk that ends at ce.
func (x *Index) writeChunk(off int64, p []byte, ce int64) {
	end := off + int64(len(p))
	cs := ce - x.chunk
	// The base is the extent that starts at or before off and reaches it
	// (overlapping or adjacent), in this chunk; else a new extent at off.
	var base *item
	x.tree.DescendLessOrEqual(x.key(off), func(it *item) bool {
		if it.off >= cs && it.end() >= off {
			base = it
		}
		return false
	})
	fresh := base == nil
	if fresh {
		base = &item{off: off}
	}
	// Extents after the base that overlap or touch [off, end) are absorbed.
	absorb := x.merge[:0]
	newEnd := max(base.end(), end)
	x.tree.AscendGreaterOrEqual(x.key(base.off+1), func(it *item) bool {
		if it.off > end || it.off >= ce {
			return false
		}
		absorb = append(absorb, it)
		newEnd = max(newEnd, it.end())
		return true
	})
	x.grow(base, newEnd, ce)
	for _, it := range absorb {
		copy(base.data[it.off-base.off:], it.data)
		x.tree.Delete(it)
		x.bytes -= int64(len(it.data))
		x.alloc -= int64(cap(it.data))
	}
	clear(absorb)
	x.merge = absorb[:0]
	copy(base.data[off-base.off:], p)
	if fresh {
		x.tree.ReplaceOrInsert(base)
	}
}

// grow extends it to end (zero-filled), doubling its buffer when it must
// reallocate, but never past the chunk end ce.
func (x *Index) grow(it *item, end, ce int64) {
	n := end - it.off
	old := int64(len(it.data))
	if n <= old {
		return
	}
	if n > int64(cap(it.data)) {
		c := min(max(n, 2*int64(cap(it.data)), 64), ce-it.off)
		buf := make([]byte, n, c)
		copy(buf, it.data)
		x.alloc += c - int64(cap(it.data))
		it.data = buf
	} else {
		it.data = it.data[:n]
		clear(it.data[old:])
	}
	x.bytes += n - old
}

// Overlay copies the buffered bytes of [off, off+len(dst)) into dst and
// calls gap, in offset order, for each piece of dst it has no bytes for.
func (x *Index) Overlay(off int64, dst []byte, gap func(off int64, b []byte)) {
	end := off + int64(len(dst))
	pos := off
	start := off
	x.tree.DescendLessOrEqual(x.key(off), func(it *item) bool {
		if it.end() > off {
			start = it.off
		}
		return false
	})
	x.tree.AscendGreaterOrEqual(x.key(start), func(it *item) bool {
		if it.off >= end {
			return false
		}
		if it.end() <= pos {
			return true
		}
		if it.off > pos {
			gap(pos, dst[pos-off:it.off-off])
			pos = it.off
		}
		n := min(it.end(), end) - pos
		copy(dst[pos-off:pos-off+n], it.data[pos-it.off:])
		pos += n
		return true
	})
	if pos < end {
		gap(pos, dst[pos-off:])
	}
}

// Truncate drops every buffered byte at or past size.
func (x *Index) Truncate(size int64) {
	var drop []*item
	x.tree.AscendGreaterOrEqual(x.key(size), func(it *item) bool {
		drop = append(drop, it)
		return true
	})
	for _, it := range drop {
		x.tree.Delete(it)
		x.bytes -= int64(len(it.data))
		x.alloc -= int64(cap(it.data))
	}
	x.tree.DescendLessOrEqual(x.key(size), func(it *item) bool {
		if it.end() > size {
			x.bytes -= it.end() - size
			it.data = it.data[:size-it.off]
		}
		return false
	})
}

// Punch drops every buffered byte of [off, off+n): a newer write that goes
// straight to the backend supersedes them.
func (x *Index) Punch(off, n int64) {
	end := off + n
	var hit []*item
	start := off
	x.tree.DescendLessOrEqual(x.key(off), func(it *item) bool {
		if it.end() > off {
			start = it.off
		}
		return false
	})
	x.tree.AscendGreaterOrEqual(x.key(start), func(it *item) bool {
		if it.off >= end {
			return false
		}
		hit = append(hit, it)
		return true
	})
	for _, it := range hit {
		x.tree.Delete(it)
		x.bytes -= int64(len(it.data))
		x.alloc -= int64(cap(it.data))
		// Keep what lies outside the hole: the head in place, the tail in
		// a buffer of its own.
		if it.off < off {
			head := &item{off: it.off, data: it.data[:off-it.off]}
			x.tree.ReplaceOrInsert(head)
			x.bytes += int64(len(head.data))
			x.alloc += int64(cap(head.data))
		}
		if it.end() > end {
			tail := &item{off: end, data: append([]byte(nil), it.data[end-it.off:]...)}
			x.tree.ReplaceOrInsert(tail)
			x.bytes += int64(len(tail.data))
			x.alloc += int64(cap(tail.data))
		}
	}
}

// Run is a piece of a flush: Bufs hold the bytes of [Off, Off+Len), in
// order, ready for one vectored write.
type Run struct {
	Off  int64
	Len  int64
	Bufs [][]byte
}

// Runs calls fn for each run of adjacent extents, in offset order, with
// runs cut at extent boundaries so none exceeds max bytes (an extent longer
// than max, at most a chunk, is a run of its own). fn must not keep Bufs
// after the Index changes. It stops at fn's first error.
func (x *Index) Runs(max int64, fn func(Run) error) error {
	var r Run
	var err error
	x.tree.Ascend(func(it *item) bool {
		n := int64(len(it.data))
		if r.Len > 0 && (it.off != r.Off+r.Len || r.Len+n > max) {
			if err = fn(r); err != nil {
				return false
			}
			r = Run{Bufs: r.Bufs[:0]}
		}
		if r.Len == 0 {
			r.Off = it.off
		}
		r.Len += n
		r.Bufs = append(r.Bufs, it.data)
		return true
	})
	if err == nil && r.Len > 0 {
		err = fn(r)
	}
	return err
}

// TakeFullChunks moves every chunk that is entirely buffered into a new
// index and returns it: the flusher's preferred work under memory
// pressure, since a full chunk becomes one aligned write that no later
// write of the same chunk will have to repeat.
func (x *Index) TakeFullChunks() *Index {
	out := New(x.chunk)
	var move []*item
	x.tree.Ascend(func(it *item) bool {
		if it.off%x.chunk == 0 && int64(len(it.data)) == x.chunk {
			move = append(move, it)
		}
		return true
	})
	for _, it := range move {
		x.tree.Delete(it)
		x.bytes -= int64(len(it.data))
		x.alloc -= int64(cap(it.data))
		out.tree.ReplaceOrInsert(it)
		out.bytes += int64(len(it.data))
		out.alloc += int64(cap(it.data))
	}
	return out
}

// Check verifies the invariants; tests call it after every operation.
func (x *Index) Check() error {
	var prev *item
	var bytes, alloc int64
	var err error
	x.tree.Ascend(func(it *item) bool {
		switch {
		case len(it.data) == 0:
			err = fmt.Errorf("empty extent at %d", it.off)
		case it.off/x.chunk != (it.end()-1)/x.chunk:
			err = fmt.Errorf("extent %d+%d crosses a chunk boundary", it.off, len(it.data))
		case prev != nil && prev.end() > it.off:
			err = fmt.Errorf("extents %d+%d and %d+%d overlap", prev.off, len(prev.data), it.off, len(it.data))
		case prev != nil && prev.end() == it.off && prev.off/x.chunk == it.off/x.chunk:
			err = fmt.Errorf("adjacent extents %d and %d in one chunk", prev.off, it.off)
		}
		bytes += int64(len(it.data))
		alloc += int64(cap(it.data))
		prev = it
		return err == nil
	})
	if err == nil && (bytes != x.bytes || alloc != x.alloc) {
		err = fmt.Errorf("accounting: %d/%d bytes, %d/%d alloc", x.bytes, bytes, x.alloc, alloc)
	}
	return err
}
