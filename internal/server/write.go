package server

import (
	"time"

	"github.com/delegate-io/delegate/internal/extent"
	"github.com/delegate-io/delegate/internal/wire"
)

// write buffers data at the extents of it, in order. Extents of at least
// Config.DirectBytes go straight to the backend: buffering them would cost
// a copy and save nothing.
//
// Memory is reserved in steps (an eighth of the buffer, at least a chunk,
// at most the request), not per extent: per extent, the budget's lock was
// a quarter of the server's time for 64-byte records. A step is settled
// with what the buffers really allocated (holes and chunk growth may take
// more) when the next is reserved, and at the end: the buffers exceed
// Config.BufferBytes by at most two chunks and one extent per writer.
func (f *file) write(it *wire.ExtentIter, data []byte) (int64, error) {
	e := f.eng
	if err := f.flushErr(); err != nil {
		return 0, err
	}
	step := min(int64(len(data)), max(e.set.ChunkBytes, e.set.BufferBytes/8))
	var pos, added, alloc, reserved, direct int64
	var sizes sizeCounts // for the file's summary
	var err error
	f.buf.Lock()
	wasClean := f.buf.live.Len() == 0
	for off, n, ok := it.Next(); ok; off, n, ok = it.Next() {
		if pos+n > int64(len(data)) {
			err = wire.Errorf(wire.EPROTO, "write: extents cover more than the %d bytes sent", len(data))
			break
		}
		p := data[pos : pos+n]
		pos += n
		sizes.count(n)
		if n >= e.set.DirectBytes {
			f.buf.Unlock()
			err = f.writeDirect(off, p)
			f.buf.Lock()
			if err != nil {
				break
			}
			direct += n
			continue
		}
		if need := e.allocBound(off, n); alloc+need > reserved {
			want := max(step, alloc+need-reserved)
			if !e.budget.tryAcquire(want) {
				f.buf.Unlock() // never wait for memory holding the buffer
				err = e.budget.acquire(want, f.flushErr)
				f.buf.Lock()
				if err != nil {
					break
				}
			}
			reserved += want
		}
		live := f.buf.live
		b0, a0 := live.Bytes(), live.Alloc()
		live.Write(off, p)
		added += live.Bytes() - b0
		alloc += live.Alloc() - a0
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
	if err == nil {
		err = it.Err()
	}
	if err == nil && pos != int64(len(data)) {
		err = wire.Errorf(wire.EPROTO, "write: %d bytes sent for extents of %d", len(data), pos)
	}
	return pos, err
}

// writeDirect writes p at off on the backend, dropping what the buffers
// hold there (it is older).
func (f *file) writeDirect(off int64, p []byte) error {
	e := f.eng
	f.flushMu.Lock()
	defer f.flushMu.Unlock()
	f.punch(off, int64(len(p)))
	if _, err := f.backend().WriteAt(p, off); err != nil {
		return err
	}
	e.stats.backendWrite(off, int64(len(p)), e.set.ChunkBytes, 1)
	e.stats.bytesDirect.Add(int64(len(p)))
	f.sum.backendWrite(1, int64(len(p)))
	return nil
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
	f.buf.gen++
	f.publishLocked()
	f.buf.Unlock()
	e.stats.dirty.Add(db)
	e.budget.adjust(da)
}
