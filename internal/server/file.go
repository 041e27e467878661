package server

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/delegate-io/delegate/internal/backend"
	"github.com/delegate-io/delegate/internal/extent"
	"github.com/delegate-io/delegate/internal/wire"
)

// file is one backend file as the server holds it, with its write-behind
// buffer.
//
// Lock order: flushMu, then buf. buf is never held across backend I/O;
// flushMu is, and serializes everything that writes buffered bytes to the
// backend or changes the backend under them (flushes, direct writes,
// truncation), so older bytes can never land after newer ones.
type file struct {
	eng        *engine
	path       string
	regionSize int64
	unlinked   atomic.Bool // deleted: buffers stay out of the journal
	noSplice   atomic.Bool // the backend refused a splice: bulk writes are not spliced (bulksplice.go)
	sum        *fileStats  // the path's summary (filestats.go); nil if none is kept
	// dev and ino name the backend file (fstat at the first open; 0: not
	// known), for the open reply: a client opening the path itself checks
	// it reached this file. The descriptor may be replaced by a writable
	// one (reopenWritable), never by one of another file.
	dev, ino uint64
	// birth is its birth time (backend.BirthOf; 0: not known), for the
	// journal's slots: read again from the writable descriptor by
	// reopenWritable (an overlay file system copies a file up when it is
	// first opened for writing: same inode number, another birth time),
	// and only writes take slots.
	birth atomic.Uint64

	mu struct {
		sync.Mutex
		bf       backend.File
		retired  []backend.File // replaced by reopenWritable, closed by finalize
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

	// holds counts the times the file was held again after nobody held
	// it (join).
	holds atomic.Int64

	// kept: the flusher's record of a file nobody holds whose flush failed
	// and whose data stays for a retry (with a journal: flusher.go,
	// keepFailed). Only the flusher goroutine touches it.
	kept struct {
		hold  int64         // holds when kept: another one starts afresh (keptNow)
		since time.Time     // the first failure; zero: not kept
		at    time.Time     // the next retry
		wait  time.Duration // the backoff after the next failure
	}

	flushMu sync.Mutex
	buf     struct {
		sync.Mutex
		live      *extent.Index   // where writes land
		flushing  []*extent.Index // detached for a flush (or left by a failed one), oldest first
		lastWrite time.Time
		err       error  // why the last flush failed; cleared by a successful one
		published bool   // the handles' slots say dirty
		gen       uint64 // bumped when bytes leave the layers (read.go, lockWithSize)
		// releasing counts flushed layers whose journal slots are not
		// released yet: the slots still say dirty (publishLocked).
		releasing int
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
// flush publishes clean only after its bytes are on the backend and its
// journal slots are released (flush): a client that finds the slot clean
// may write the backend itself (client lease writes), and a slot still
// committed would be replayed over those bytes after a crash.
func (f *file) publishLocked() {
	dirty := f.buf.live.Len() > 0 || len(f.buf.flushing) > 0 || f.buf.releasing > 0
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
