package server

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/delegate-io/delegate/internal/backend"
	"github.com/delegate-io/delegate/internal/extent"
	"github.com/delegate-io/delegate/internal/wire"
)

// fileTable maps paths to open files. A file stays in the table while any
// client has it open or it still holds dirty data (an asynchronous close
// drains in the background); Delete unlinks the path, so a later create
// gets a fresh entry while holders of the old one keep it.
type fileTable struct {
	srv *Server
	fs  backend.FS
	mu  struct {
		sync.Mutex
		byPath map[string]*file
		all    map[*file]struct{} // including unlinked ones still open
	}
}

func newFileTable(s *Server, fsys backend.FS) *fileTable {
	t := &fileTable{srv: s, fs: fsys}
	t.mu.byPath = map[string]*file{}
	t.mu.all = map[*file]struct{}{}
	return t
}

// file is one backend file as the server holds it, with its write-behind
// buffer.
//
// Lock order: flushMu, then buf. buf is never held across backend I/O;
// flushMu is, and serializes everything that writes buffered bytes to the
// backend or changes the backend under them (flushes, direct writes,
// truncation), so older bytes can never land after newer ones.
type file struct {
	srv        *Server
	path       string
	regionSize int64
	unlinked   atomic.Bool // deleted: buffers stay out of the journal

	mu struct {
		sync.Mutex
		bf       backend.File
		writable bool
		refs     int
		counters map[string]int64
	}
	// atomic serializes atomic-mode requests on the file: atomic writes
	// hold it exclusively, atomic reads shared.
	atomic sync.RWMutex
	colls  colls // collectives in progress (coll.go)

	// pub lists the handles that watch the file's dirty state in their
	// control page slot. Lock order: buf, then pub.
	pub struct {
		sync.Mutex
		handles map[*handle]struct{}
	}

	flushMu sync.Mutex
	buf     struct {
		sync.Mutex
		live      *extent.Index   // where writes land
		flushing  []*extent.Index // detached for a flush (or left by a failed one), oldest first
		lastWrite time.Time
		err       error // why the last flush failed; cleared by a successful one
		published bool  // the handles' slots say dirty
	}
}

// subscribe starts publishing the file's dirty state to h's slot.
func (f *file) subscribe(h *handle) {
	f.buf.Lock()
	defer f.buf.Unlock()
	f.pub.Lock()
	defer f.pub.Unlock()
	if f.pub.handles == nil {
		f.pub.handles = map[*handle]struct{}{}
	}
	f.pub.handles[h] = struct{}{}
	if f.buf.published {
		h.publish(wire.SlotDirty)
	} else {
		h.publish(wire.SlotClean)
	}
}

func (f *file) unsubscribe(h *handle) {
	f.pub.Lock()
	defer f.pub.Unlock()
	delete(f.pub.handles, h)
}

// publishLocked makes every watching slot say whether the file holds dirty
// data. The caller holds buf: a write publishes dirty before its reply, a
// flush publishes clean only after its bytes are on the backend.
func (f *file) publishLocked() {
	dirty := f.buf.live.Len() > 0 || len(f.buf.flushing) > 0
	if dirty == f.buf.published {
		return
	}
	f.buf.published = dirty
	v := wire.SlotClean
	if dirty {
		v = wire.SlotDirty
	}
	f.pub.Lock()
	for h := range f.pub.handles {
		h.publish(v)
	}
	f.pub.Unlock()
}

func needsWrite(flags uint32) bool { return flags&(wire.OWronly|wire.ORdwr) != 0 }

func (t *fileTable) newFile(path string, regionSize int64, bf backend.File, writable bool) *file {
	f := &file{srv: t.srv, path: path, regionSize: regionSize}
	f.mu.bf, f.mu.writable, f.mu.refs = bf, writable, 1
	f.buf.live = f.newIndex()
	return f
}

// open returns the file for path with one more reference, opening or
// creating the backend file as flags say. The backend is opened read-write
// when the file system allows it, since one descriptor serves every client
// of the file and the flusher.
func (t *fileTable) open(o *wire.Open) (*file, error) {
	t.mu.Lock()
	f := t.mu.byPath[o.Path]
	if f != nil && f.regionSize != o.RegionSize && f.refs() <= 0 {
		// Nobody holds the file, but its data still drains under the old
		// region rule. A new rule is safe once that data is on the backend:
		// retire the entry, write it out, and open afresh.
		delete(t.mu.byPath, o.Path)
		t.mu.Unlock()
		if err := f.flush(causeClose, false); err != nil {
			return nil, fmt.Errorf("open %s with a new region size: %w", o.Path, err)
		}
		t.finalize(f)
		t.mu.Lock()
		f = t.mu.byPath[o.Path]
	}
	if f != nil {
		if o.Flags&wire.OExcl != 0 && o.Flags&wire.OCreat != 0 {
			t.mu.Unlock()
			return nil, &os.PathError{Op: "open", Path: o.Path, Err: os.ErrExist}
		}
		if f.regionSize != o.RegionSize {
			t.mu.Unlock()
			return nil, wire.Errorf(wire.EBUSY, "open %s: region size %d differs from %d used by the file's other clients",
				o.Path, o.RegionSize, f.regionSize)
		}
		f.mu.Lock()
		f.mu.refs++
		writable := f.mu.writable
		f.mu.Unlock()
		t.mu.Unlock()
		if needsWrite(o.Flags) && !writable {
			if err := f.reopenWritable(t.fs); err != nil {
				t.release(f)
				return nil, err
			}
		}
		return f, nil
	}
	t.mu.Unlock()

	// Open outside the table lock: it is I/O. A reader gets a read-only
	// descriptor (a running executable cannot be opened for writing); a
	// writer that comes later upgrades it (reopenWritable).
	flag := os.O_RDONLY
	if needsWrite(o.Flags) {
		flag = os.O_RDWR
	}
	if o.Flags&wire.OCreat != 0 {
		flag |= os.O_CREATE
		if o.Flags&wire.OExcl != 0 {
			flag |= os.O_EXCL
		}
	}
	perm := os.FileMode(o.Perm & 0o7777)
	if perm == 0 {
		perm = 0o644
	}
	bf, err := t.fs.OpenFile(o.Path, flag, perm)
	if err != nil {
		return nil, err
	}
	nf := t.newFile(o.Path, o.RegionSize, bf, needsWrite(o.Flags))
	t.mu.Lock()
	defer t.mu.Unlock()
	if f := t.mu.byPath[o.Path]; f != nil {
		// Another client opened it meanwhile: use theirs.
		bf.Close()
		f.mu.Lock()
		f.mu.refs++
		f.mu.Unlock()
		return f, nil
	}
	t.mu.byPath[o.Path] = nf
	t.mu.all[nf] = struct{}{}
	return nf, nil
}

func (f *file) reopenWritable(fsys backend.FS) error {
	bf, err := fsys.OpenFile(f.path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	// The flusher may be writing through the old descriptor.
	f.flushMu.Lock()
	defer f.flushMu.Unlock()
	f.mu.Lock()
	old := f.mu.bf
	f.mu.bf, f.mu.writable = bf, true
	f.mu.Unlock()
	return old.Close()
}

// release drops a reference. The last one closes the backend file, unless
// the file still holds dirty data: then the flusher drains it first.
func (t *fileTable) release(f *file) error {
	f.mu.Lock()
	f.mu.refs--
	last := f.mu.refs == 0
	if last {
		// Counters (shared file pointers) live while a client holds the
		// file; ROMIO reuses their names for opens within one second.
		f.mu.counters = nil
	}
	f.mu.Unlock()
	if !last {
		return nil
	}
	if f.dirty() > 0 {
		t.srv.kickFlusher()
		return nil
	}
	return t.finalize(f)
}

// finalize closes a file nobody holds and that has nothing left to flush.
// It does nothing if a client reopened it meanwhile.
func (t *fileTable) finalize(f *file) error {
	t.mu.Lock()
	f.mu.Lock()
	if f.mu.refs != 0 || f.dirty() > 0 { // held again, or finalized already (-1)
		f.mu.Unlock()
		t.mu.Unlock()
		return nil
	}
	f.mu.refs = -1 // closed: nobody may take it
	if t.mu.byPath[f.path] == f {
		delete(t.mu.byPath, f.path)
	}
	delete(t.mu.all, f)
	bf := f.mu.bf
	f.mu.Unlock()
	t.mu.Unlock()
	return bf.Close()
}

// unlink removes path from the backend and from the table; whatever is
// buffered for it is dropped.
func (t *fileTable) unlink(path string) error {
	t.mu.Lock()
	f := t.mu.byPath[path]
	if f != nil {
		delete(t.mu.byPath, path)
	}
	t.mu.Unlock()
	if f != nil {
		f.unlinked.Store(true)
		f.drop()
	}
	return t.fs.Remove(path)
}

// files returns every file the table holds.
func (t *fileTable) files() []*file {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]*file, 0, len(t.mu.all))
	for f := range t.mu.all {
		out = append(out, f)
	}
	return out
}

func (f *file) backend() backend.File {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.mu.bf
}

func (f *file) refs() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.mu.refs
}

// layersLocked returns the buffers to read through, newest first.
func (f *file) layersLocked() []*extent.Index {
	out := make([]*extent.Index, 0, 1+len(f.buf.flushing))
	out = append(out, f.buf.live)
	for i := len(f.buf.flushing) - 1; i >= 0; i-- {
		out = append(out, f.buf.flushing[i])
	}
	return out
}

// overlay copies the newest buffered bytes of [off, off+len(dst)) into dst
// and reports the pieces no buffer holds.
func overlay(layers []*extent.Index, off int64, dst []byte, gap func(int64, []byte)) {
	if len(layers) == 0 {
		gap(off, dst)
		return
	}
	layers[0].Overlay(off, dst, func(goff int64, g []byte) { overlay(layers[1:], goff, g, gap) })
}

// fullBytes is what the live buffer holds in entire chunks.
func (f *file) fullBytes() int64 {
	f.buf.Lock()
	defer f.buf.Unlock()
	return f.buf.live.FullBytes()
}

func (f *file) dirty() int64 {
	f.buf.Lock()
	defer f.buf.Unlock()
	n := f.buf.live.Bytes()
	for _, x := range f.buf.flushing {
		n += x.Bytes()
	}
	return n
}

func (f *file) flushErr() error {
	f.buf.Lock()
	defer f.buf.Unlock()
	return f.buf.err
}

// endLocked is the end of the buffered data.
func (f *file) endLocked() int64 {
	end := f.buf.live.End()
	for _, x := range f.buf.flushing {
		end = max(end, x.End())
	}
	return end
}

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
	s := f.srv
	if err := f.flushErr(); err != nil {
		return 0, err
	}
	step := min(int64(len(data)), max(s.cfg.ChunkBytes, s.cfg.BufferBytes/8))
	var pos, added, alloc, reserved int64
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
		if n >= s.cfg.DirectBytes {
			f.buf.Unlock()
			err = f.writeDirect(off, p)
			f.buf.Lock()
			if err != nil {
				break
			}
			continue
		}
		if need := s.allocBound(off, n); alloc+need > reserved {
			want := max(step, alloc+need-reserved)
			if !s.budget.tryAcquire(want) {
				f.buf.Unlock() // never wait for memory holding the buffer
				err = s.budget.acquire(want, f.flushErr)
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
	s.budget.adjust(alloc - reserved)
	s.stats.dirty.Add(added)
	if (wasClean && added > 0) || (s.cfg.FlushFull && full >= s.cfg.FlushRunBytes) {
		s.kickFlusher()
	}
	if err == nil {
		err = it.Err()
	}
	if err == nil && pos != int64(len(data)) {
		err = wire.Errorf(wire.EPROTO, "write: %d bytes sent for extents of %d", len(data), pos)
	}
	return pos, err
}

// allocBound is the most memory buffering n bytes at off can take: n in
// the heap (where a chunk's buffer grows in place or doubles, which the
// settling covers), and with a state directory a new slot and hole bitmap
// for every chunk touched, so that slots never take the buffer past its
// limit.
func (s *Server) allocBound(off, n int64) int64 {
	if s.journal == nil {
		return n
	}
	c := s.cfg.ChunkBytes
	chunks := (off+n-1)/c - off/c + 1
	return chunks * (s.journal.Footprint() + c/8)
}

// writeDirect writes p at off on the backend, dropping what the buffers
// hold there (it is older).
func (f *file) writeDirect(off int64, p []byte) error {
	s := f.srv
	f.flushMu.Lock()
	defer f.flushMu.Unlock()
	f.punch(off, int64(len(p)))
	if _, err := f.backend().WriteAt(p, off); err != nil {
		return err
	}
	s.stats.backendWrite(off, int64(len(p)), s.cfg.ChunkBytes, 1)
	s.stats.bytesDirect.Add(int64(len(p)))
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
	s := f.srv
	f.buf.Lock()
	var db, da int64
	for _, x := range f.layersLocked() {
		b0, a0 := x.Bytes(), x.Alloc()
		op(x)
		db += x.Bytes() - b0
		da += x.Alloc() - a0
	}
	f.publishLocked()
	f.buf.Unlock()
	s.stats.dirty.Add(db)
	s.budget.adjust(da)
}

type gap struct {
	off int64
	b   []byte
}

// read fills dst from the extents of it: buffered bytes over backend
// bytes, zeros past the end of file. It returns how many bytes from the
// start of the list lie below the end of file, and that end of file (the
// backend size or the end of buffered data, whichever is larger).
func (f *file) read(it *wire.ExtentIter, dst []byte) (valid, size int64, err error) {
	s := f.srv
	bf := f.backend()
	var gaps []gap
	f.buf.Lock()
	// The size is taken under the lock: a flush removes a layer only after
	// its bytes are on the backend, so they are either overlaid here or
	// inside bsize.
	bsize, err := bf.Size()
	if err != nil {
		f.buf.Unlock()
		return 0, 0, err
	}
	size = max(bsize, f.endLocked())
	layers := f.layersLocked()
	var pos int64
	valid = -1
	for off, n, ok := it.Next(); ok; off, n, ok = it.Next() {
		if pos+n > int64(len(dst)) {
			f.buf.Unlock()
			return 0, size, wire.Errorf(wire.EPROTO, "read: extents exceed the %d-byte slot", len(dst))
		}
		if valid < 0 && off+n > size {
			valid = pos + max(0, size-off)
		}
		overlay(layers, off, dst[pos:pos+n], func(goff int64, g []byte) { gaps = append(gaps, gap{goff, g}) })
		pos += n
	}
	f.buf.Unlock()
	if err := it.Err(); err != nil {
		return 0, size, err
	}
	if valid < 0 {
		valid = pos
	}
	var fromBackend int64
	for _, g := range gaps {
		m := 0
		if g.off < bsize {
			m, err = bf.ReadAt(g.b[:min(int64(len(g.b)), bsize-g.off)], g.off)
			if err != nil && !errors.Is(err, io.EOF) {
				return 0, size, err
			}
			s.stats.backendReads.Add(1)
			fromBackend += int64(m)
		}
		clear(g.b[m:])
	}
	s.stats.readFromBackend.Add(fromBackend)
	s.stats.readFromBuffer.Add(pos - fromBackend)
	return valid, size, nil
}

// size is the logical size: the backend's or the end of the buffered data.
func (f *file) size() (int64, error) {
	f.buf.Lock()
	defer f.buf.Unlock()
	n, err := f.backend().Size()
	if err != nil {
		return 0, err
	}
	return max(n, f.endLocked()), nil
}

// resize drops buffered bytes past n and truncates or extends the backend.
func (f *file) resize(n int64) error {
	f.flushMu.Lock()
	defer f.flushMu.Unlock()
	f.change(func(x *extent.Index) { x.Truncate(n) })
	return f.backend().Truncate(n)
}

func (f *file) allocate(n int64) (int64, error) {
	f.flushMu.Lock()
	defer f.flushMu.Unlock()
	if err := f.backend().Allocate(n); err != nil {
		return 0, err
	}
	return f.size()
}

// sync writes every buffered byte to the backend and fsyncs it.
func (f *file) sync() error {
	if err := f.flush(causeSync, false); err != nil {
		return err
	}
	f.srv.stats.backendSyncs.Add(1)
	return f.backend().Sync()
}

// drop discards everything buffered (the file was deleted).
func (f *file) drop() {
	f.flushMu.Lock()
	defer f.flushMu.Unlock()
	s := f.srv
	f.buf.Lock()
	var db, da int64
	old := f.layersLocked()
	for _, x := range old {
		db += x.Bytes()
		da += x.Alloc()
	}
	f.buf.live = f.newIndex()
	f.buf.flushing = nil
	f.buf.err = nil
	f.publishLocked()
	f.buf.Unlock()
	s.stats.dirty.Add(-db)
	s.budget.release(da)
	for _, x := range old {
		x.Release() // readers take layers under buf: none sees these now
	}
}

// newIndex returns an empty write-behind buffer for a file.
func (s *Server) newIndex() *extent.Index {
	return extent.NewPooled(s.cfg.ChunkBytes, s.cfg.GapBytes, s.pool)
}

// flush writes buffered bytes to the backend in coalesced runs, in offset
// order: with fullOnly just the chunks that are entirely buffered (under
// memory pressure), else everything. No buffer lock is held across the
// writes; reads go on meanwhile through the detached layer.
func (f *file) flush(c cause, fullOnly bool) error {
	s := f.srv
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
		err := x.Runs(s.cfg.FlushRunBytes, func(r extent.Run) error {
			calls, err := backend.WriteRun(bf, r.Bufs, r.Off)
			s.stats.backendWrite(r.Off, r.Len, s.cfg.ChunkBytes, calls)
			return err
		})
		if err != nil {
			err = fmt.Errorf("flush %s: %w", f.path, err)
			f.buf.Lock()
			f.buf.err = err
			f.buf.Unlock()
			s.stats.flushErrors.Add(1)
			s.budget.wakeAll(false) // writers waiting for space must see it
			s.log.Error("flush failed; the data stays buffered", "file", f.path, "err", err)
			return err
		}
		f.buf.Lock()
		f.buf.flushing = f.buf.flushing[1:] // x is the oldest
		f.publishLocked()                   // clean only now that x is on the backend
		f.buf.Unlock()
		s.stats.dirty.Add(-x.Bytes())
		s.stats.flushBytes.Add(x.Bytes())
		s.budget.release(x.Alloc())
		x.Release() // no reader holds x: it left the layers under buf
	}
	f.buf.Lock()
	f.buf.err = nil
	f.buf.Unlock()
	s.stats.flushes[c].Add(1)
	s.stats.sampleMemory()
	return nil
}

// discardOnFailure drops the buffered data of a file nobody holds any more
// whose flushes keep failing, so that its memory is not held for ever. The
// failure was reported to the clients that synced or closed it.
func (f *file) discardOnFailure() {
	if n := f.dirty(); n > 0 {
		f.srv.log.Error("dropping buffered data that cannot be written", "file", f.path, "bytes", n, "err", f.flushErr())
	}
	f.drop()
}

// counter applies a counter operation and returns the value before it.
func (f *file) counter(key string, op uint8, v int64) (int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.mu.counters == nil {
		f.mu.counters = map[string]int64{}
	}
	old := f.mu.counters[key]
	switch op {
	case wire.CounterGet:
	case wire.CounterSet:
		f.mu.counters[key] = v
	case wire.CounterFetchAdd:
		f.mu.counters[key] = old + v
	default:
		return 0, wire.Errorf(wire.EINVAL, "counter %q: unknown operation %d", key, op)
	}
	return old, nil
}
