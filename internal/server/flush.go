package server

import (
	"fmt"

	"github.com/delegate-io/delegate/internal/backend"
	"github.com/delegate-io/delegate/internal/extent"
)

// flush writes buffered bytes to the backend in coalesced runs, in offset
// order: with fullOnly just the chunks that are entirely buffered (under
// memory pressure), else everything. No buffer lock is held across the
// writes; reads go on meanwhile through the detached layer.
//
// Invariant: a flush writes only bytes the buffer holds. A run is a span
// of buffered bytes (extent.Index.Runs cuts runs at every hole); a hole is
// never filled by reading the backend first, nor written as zeros. So a
// flush cannot overwrite a concurrent write that did not go through this
// server and does not overlap a buffered byte (a client's direct write to
// the backend under a lease relies on it). Runs of one chunk that holes
// separate are separate writes for that reason.
func (f *file) flush(c cause, fullOnly bool) error {
	e := f.eng
	f.flushMu.Lock()
	defer f.flushMu.Unlock()
	f.buf.Lock()
	var snap *extent.Index
	if fullOnly {
		snap = f.buf.live.TakeFullChunks()
	} else if f.buf.live.Len() > 0 {
		snap = f.buf.live
		f.buf.live = f.newIndex()
	}
	if snap != nil && snap.Len() > 0 {
		f.buf.flushing = append(f.buf.flushing, snap)
	}
	work := append([]*extent.Index(nil), f.buf.flushing...)
	f.buf.Unlock()
	if len(work) == 0 {
		return nil
	}
	bf := f.backend()
	for _, x := range work {
		err := x.Runs(e.set.FlushRunBytes, func(r extent.Run) error {
			// Straight from the slots (vectored): the last copy of a
			// buffered byte, into the page cache.
			calls, err := backend.WriteRun(bf, r.Bufs, r.Off)
			e.stats.backendWrite(r.Off, r.Len, e.set.ChunkBytes, calls)
			f.sum.backendWrite(calls, r.Len)
			return err
		})
		if err != nil {
			err = fmt.Errorf("flush %s: %w", f.path, err)
			f.buf.Lock()
			first := f.buf.err == nil
			f.buf.err = err
			f.buf.Unlock()
			e.stats.flushErrors.Add(1)
			e.budget.wakeAll(false) // writers waiting for space must see it
			if first {              // not again at every retry, until a flush succeeds
				e.log.Error("flush failed; the data stays buffered", "file", f.path, "err", err)
			}
			return err
		}
		f.buf.Lock()
		f.buf.flushing = f.buf.flushing[1:] // x is the oldest
		f.buf.gen++
		f.buf.releasing++ // the slots stay dirty until x's journal slots are free
		f.buf.Unlock()
		e.stats.dirty.Add(-x.Bytes())
		e.stats.flushBytes.Add(x.Bytes())
		// The slots go back before the memory: a writer the release wakes
		// reuses them resident instead of reserving new ones beside them.
		alloc := x.Alloc()
		x.Release() // no reader holds x: it left the layers under buf
		e.budget.release(alloc)
		f.buf.Lock()
		f.buf.releasing--
		// Clean only now that x is on the backend and no journal slot
		// would replay it over a client's lease write after a crash.
		f.publishLocked()
		f.buf.Unlock()
	}
	f.buf.Lock()
	f.buf.err = nil
	f.buf.Unlock()
	e.stats.flushes[c].Add(1)
	f.sum.flushed()
	e.stats.sampleMemory()
	e.kickForTrim()
	return nil
}

// discardOnFailure drops the buffered data of a file nobody holds any more
// whose flushes keep failing, so that its memory is not held for ever. The
// failure was reported to the clients that synced or closed it.
func (f *file) discardOnFailure() {
	if n := f.dirty(); n > 0 {
		f.eng.log.Error("dropping buffered data that cannot be written", "file", f.path, "bytes", n, "err", f.flushErr())
	}
	f.drop()
}

// sync writes every buffered byte to the backend and fsyncs it.
func (f *file) sync() error {
	if err := f.flush(causeSync, false); err != nil {
		return err
	}
	f.eng.stats.backendSyncs.Add(1)
	return f.backend().Sync()
}

// drop discards everything buffered (the file was deleted).
func (f *file) drop() {
	f.flushMu.Lock()
	defer f.flushMu.Unlock()
	e := f.eng
	f.buf.Lock()
	var db, da int64
	old := f.layersLocked()
	for _, x := range old {
		db += x.Bytes()
		da += x.Alloc()
	}
	f.buf.live = f.newIndex()
	f.buf.flushing = nil
	f.buf.gen++
	f.buf.err = nil
	f.buf.releasing++ // dirty until the slots are free, as in flush
	f.buf.Unlock()
	e.stats.dirty.Add(-db)
	for _, x := range old {
		x.Release() // readers take layers under buf: none sees these now
	}
	e.budget.release(da) // after the slots went back (flush)
	f.buf.Lock()
	f.buf.releasing--
	// Clean only now: a crash before the release would replay the dropped
	// slots over a client's lease write to a file re-created at the path.
	f.publishLocked()
	f.buf.Unlock()
	e.kickForTrim()
}
