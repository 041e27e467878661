package server

import (
	"time"

	"github.com/delegate-io/delegate/internal/extent"
	"github.com/delegate-io/delegate/internal/stats"
	"github.com/delegate-io/delegate/internal/wire"
)

// write buffers data at the extents of it, in order. Extents of at least
// Config.DirectBytes go straight to the backend: buffering them would cost
// a copy and save nothing.
//
// A regular strided run (a file view, strided independent writes) is
// applied a chunk at a time (extent.Index.WriteRun): one search and one
// item per chunk, not one index insert per extent (issue 13).
//
// Memory is reserved in steps (an eighth of the buffer, at least a chunk,
// at most the request), not per extent: per extent, the budget's lock was
// a quarter of the server's time for 64-byte records. A step is settled
// with what the buffers really allocated (holes and chunk growth may take
// more) when the next is reserved, and at the end: the buffers exceed
// Config.BufferBytes by at most two chunks and one extent per writer.
func (f *file) write(x *wire.Extents, data []byte) (int64, error) {
	e := f.eng
	if err := f.flushErr(); err != nil {
		return 0, err
	}
	step := min(int64(len(data)), max(e.set.ChunkBytes, e.set.BufferBytes/8))
	var pos, added, alloc, reserved, direct int64
	var sizes sizeCounts // for the file's summary
	var err error
	// put buffers count pieces of n bytes at off, off+stride, ... (p, back
	// to back), which lie in one chunk or are one piece.
	put := func(off, n, stride, count int64, p []byte) error {
		if need := e.allocBound(off, (count-1)*stride+n); alloc+need > reserved {
			want := max(step, alloc+need-reserved)
			if !e.budget.tryAcquire(want) {
				f.buf.Unlock() // never wait for memory holding the buffer
				err := e.budget.acquire(want, f.flushErr)
				f.buf.Lock()
				if err != nil {
					return err
				}
			}
			reserved += want
		}
		live := f.buf.live
		b0, a0 := live.Bytes(), live.Alloc()
		live.WriteRun(off, n, stride, count, p)
		added += live.Bytes() - b0
		alloc += live.Alloc() - a0
		return nil
	}
	chunk := e.set.ChunkBytes
	f.buf.Lock()
	wasClean := f.buf.live.Len() == 0
	for _, r := range x.Runs() {
		if err != nil {
			break
		}
		off, n, stride, count := r.Off, r.Len, r.Stride, r.Count
		if pos+count*n > int64(len(data)) {
			err = wire.Errorf(wire.EPROTO, "write: extents cover more than the %d bytes sent", len(data))
			break
		}
		p := data[pos : pos+count*n]
		pos += count * n
		sizes[stats.SizeClass(n)] += count
		if n >= e.set.DirectBytes {
			for k := int64(0); k < count && err == nil; k++ {
				f.buf.Unlock()
				err = f.writeDirect(off+k*stride, p[k*n:(k+1)*n])
				f.buf.Lock()
				if err == nil {
					direct += n
				}
			}
			continue
		}
		if count > 1 && stride < n {
			// overlapping or backwards: piece by piece, in order
			for k := int64(0); k < count && err == nil; k++ {
				err = put(off+k*stride, n, 0, 1, p[k*n:(k+1)*n])
			}
			continue
		}
		for count > 0 && err == nil {
			// the pieces in off's chunk (one if it crosses the chunk's end)
			k := int64(1)
			if ce := (off/chunk + 1) * chunk; off+n <= ce && count > 1 {
				k = min(count, (ce-off-n)/stride+1)
			}
			err = put(off, n, stride, k, p[:k*n])
			off, p, count = off+k*stride, p[k*n:], count-k
		}
	}
	f.buf.lastWrite = time.Now()
	f.publishLocked()
	full := f.buf.live.FullBytes()
	f.buf.Unlock()
	e.budget.adjust(alloc - reserved)
	e.stats.dirty.Add(added)
	f.sum.wrote(&sizes, pos, direct)
	if (wasClean && added > 0) || (e.set.FlushFull && full >= e.set.FlushRunBytes) {
		e.kickFlusher()
	}
	if err == nil && pos != int64(len(data)) {
		err = wire.Errorf(wire.EPROTO, "write: %d bytes sent for extents of %d", len(data), pos)
	}
	return pos, err
}

// writeDirect writes p at off on the backend, then drops what the buffers
// hold there (it is older). In that order, under flushMu (no flush can
// land older bytes in between): acknowledged buffered bytes leave the
// layers only once newer ones are on the backend, so a read never finds
// them in neither place (lockWithSize relies on it), and a failed write
// loses nothing that was acknowledged.
func (f *file) writeDirect(off int64, p []byte) error {
	f.flushMu.Lock()
	defer f.flushMu.Unlock()
	// p is the ring slice (or the inline payload): the kernel's copy into
	// the page cache is the server's only one (2 copies per byte in all,
	// with the client's into the ring: client memCursor.gather).
	if _, err := f.backend().WriteAt(p, off); err != nil {
		return err
	}
	f.punch(off, int64(len(p)))
	f.directWritten(off, int64(len(p)))
	return nil
}

// directWritten counts n bytes written at off straight to the backend, in
// the server's and the file's statistics (writeDirect, writeDirectSplice).
func (f *file) directWritten(off, n int64) {
	e := f.eng
	e.stats.backendWrite(off, n, e.set.ChunkBytes, 1)
	e.stats.bytesDirect.Add(n)
	f.sum.backendWrite(1, n)
}

// punch drops buffered bytes of [off, off+n) from every layer; the caller
// holds flushMu, so no flush is reading the detached layers.
func (f *file) punch(off, n int64) {
	f.change(func(x *extent.Index) { x.Punch(off, n) })
}

// change applies op to every layer (caller holds flushMu) and settles the
// accounting.
func (f *file) change(op func(*extent.Index)) {
	e := f.eng
	f.buf.Lock()
	var db, da int64
	for _, x := range f.layersLocked() {
		b0, a0 := x.Bytes(), x.Alloc()
		op(x)
		db += x.Bytes() - b0
		da += x.Alloc() - a0
	}
	if db != 0 {
		f.buf.gen++ // bytes left a layer: a read that stat'd before must stat again
	}
	f.publishLocked()
	f.buf.Unlock()
	e.stats.dirty.Add(db)
	e.budget.adjust(da)
}
