package client

import (
	"sync"

	"github.com/delegate-io/delegate/internal/shm"
	"github.com/delegate-io/delegate/internal/wire"
)

// inlineMin is the smallest inline buffer a small write gets, so that the
// writes that follow can join it.
const inlineMin = 256 << 10

// writer places one Write's data bound for one server into requests: it
// joins the previous unsent write of the same file when that is small and
// allowed, else fills new requests of at most maxChunk bytes.
type writer struct {
	f     *File
	s     *session
	left  int64 // bytes of this write for s not yet given a request
	st    opState
	merge bool // this write goes to one server only, so it may join

	c      *call
	room   int64 // bytes c can still take from this write
	joined int   // c was created by someone else and is locked: joinedCork or joinedQueue
	calls  []*call
	// others: the writers of the same Write for other servers (place),
	// whose filled ring slots go out before this one waits for ring space.
	others []*writer
}

const (
	joinedCork  = 1 // c is the file's corked batch; f.mu is held
	joinedQueue = 2 // c is the session's last queued request; s.mu is held
)

// take moves the caller's next k bytes into request c at c.filled: as
// references for a bulk transfer (sent from the caller's memory), else as
// the one copy into its ring slice or inline buffer.
func (c *call) take(k int64, cur *memCursor) {
	if c.viaBulk {
		for left := k; left > 0; {
			b := cur.next(left)
			c.iov = append(c.iov, b)
			left -= int64(len(b))
		}
		return
	}
	cur.gather(c.data[c.filled : c.filled+k])
}

func (w *writer) put(off, n int64, cur *memCursor) error {
	for n > 0 {
		if w.room == 0 || !w.runsRoom(1) {
			if err := w.next(); err != nil {
				return err
			}
		}
		k := min(n, w.room)
		c := w.c
		c.take(k, cur)
		c.ext.Add(off, k)
		c.filled += k
		off, n, w.room = off+k, n-k, w.room-k
	}
	return nil
}

// putRun puts count pieces of n bytes at off, off+stride, ... (a run of
// a strided description: a file view's blocks, as the driver flattened
// them): as many whole pieces as the request has room for take one copy
// of their bytes, which lie back to back in the caller's memory order,
// instead of a copy per piece; a piece the request cannot hold whole is
// split by put.
func (w *writer) putRun(off, n, stride, count int64, cur *memCursor) error {
	for count > 0 {
		if w.room == 0 || !w.runsRoom(2) {
			if err := w.next(); err != nil {
				return err
			}
		}
		k := min(count, w.room/n)
		if k <= 1 {
			if err := w.put(off, n, cur); err != nil {
				return err
			}
			off, count = off+stride, count-1
			continue
		}
		c, data := w.c, k*n
		c.take(data, cur)
		for i := int64(0); i < k; i++ {
			c.ext.Add(off+i*stride, n)
		}
		c.filled += data
		w.room -= data
		off, count = off+k*stride, count-k
	}
	return nil
}

// runsRoom reports whether the current request's extent list can take k
// more runs (a piece adds at most one, putRun's pieces at most two) and
// stay within wire.MaxRequestRuns, which servers refuse more of; if not,
// the room left in it goes back to w.left for the next request, which
// next starts (w.c == nil: there is none yet, and room is 0).
func (w *writer) runsRoom(k int) bool {
	if w.c == nil || w.c.ext.Runs()+k <= wire.MaxRequestRuns {
		return true
	}
	w.left += w.room
	w.room = 0
	return false
}

// runAt returns the length of the run of extents that starts at ext[0]:
// pieces of one nonzero length at one positive stride (1 when ext[1] does
// not continue it), and that stride.
func runAt(ext []Extent) (count int, stride int64) {
	if len(ext) < 2 || ext[0].Len <= 0 || ext[1].Len != ext[0].Len || ext[1].Off <= ext[0].Off {
		return 1, 0
	}
	stride = ext[1].Off - ext[0].Off
	count = 2
	for count < len(ext) && ext[count].Len == ext[0].Len && ext[count].Off == ext[count-1].Off+stride {
		count++
	}
	return count, stride
}

// next hands over the current request and starts the next one.
func (w *writer) next() error {
	part := w.c != nil && w.st.flags&wire.IOAtomic != 0
	if part {
		// The call goes on in the next request: the server applies its
		// parts as one unit (wire.IOMore). Atomic requests never join
		// others (place), so the flag stays on this call's parts.
		w.c.flags |= wire.IOMore
	}
	if err := w.release(); err != nil {
		return err
	}
	if part && atomicPartHook != nil {
		atomicPartHook()
	}
	bulk := !w.st.cork && w.s.useBulk(w.left)
	if !bulk && w.merge && w.left <= w.f.cl.cfg.MergeBytes && w.join() {
		return nil
	}
	n := min(w.left, w.f.maxChunk(w.s))
	var err error
	c := newCall(wire.TWrite, &wire.Write{File: w.f.ids[w.s.idx], AG: w.st.ag})
	c.file, c.flags, c.coll = w.f, w.st.flags, w.st.tag
	if bulk {
		// The data stays in the caller's memory until sendBulk.
		c.viaBulk = true
		c.flags &^= wire.IOHold // only ring slots are held
	} else if n, err = w.f.reserveData(w.s, c, n, w.handOverOthers); err != nil {
		return err
	}
	w.f.mu.Lock()
	w.f.mu.writes++ // until writeDone: reads go through the servers meanwhile
	w.f.cl.pending.Add(1)
	w.f.mirrorLocked()
	w.f.mu.Unlock()
	w.c, w.room, w.left = c, n, w.left-n
	return nil
}

// handOverOthers sends the requests in ring slots that the writers for
// other servers are filling, before w waits for ring space: a ring reuses
// space in order only, so a slot kept unsent while waiting for another
// ring could wait for ever for a reader or writer of the same process
// that waits the other way round (found in review). Their next bytes go
// in new requests. Never in atomic mode: all of an atomic call goes to one
// server (its parts need wire.IOMore, which next sets).
func (w *writer) handOverOthers() {
	for _, o := range w.others {
		if o != w && o.c != nil && o.joined == 0 && o.c.slot != nil {
			o.left += o.room
			o.room = 0
			_ = o.release() // a ring slot's request is queued: no error
		}
	}
}

// join appends to the file's newest unsent write on this server, if it has
// room: the corked batch, or the tail of the session's queue. On success
// the request stays locked until release.
func (w *writer) join() bool {
	f, s, n := w.f, w.s, w.left
	if w.st.cork {
		f.mu.Lock()
		if t := f.mu.corked[s.idx]; t != nil && w.compatible(t) && s.grow(t, n, f.maxChunk(s)) {
			w.c, w.room, w.left, w.joined = t, n, 0, joinedCork
			return true
		}
		f.mu.Unlock()
		return false
	}
	s.mu.Lock()
	if q := s.mu.queue; len(q) > 0 {
		if t := q[len(q)-1]; t.file == f && w.compatible(t) && !t.sealed && !t.viaBulk && s.grow(t, n, f.maxChunk(s)) {
			w.c, w.room, w.left, w.joined = t, n, 0, joinedQueue
			return true
		}
	}
	s.mu.Unlock()
	return false
}

func (w *writer) compatible(t *call) bool {
	return t.t == wire.TWrite && t.flags == w.st.flags && t.coll == w.st.tag &&
		t.ext.Runs()+2 <= wire.MaxRequestRuns
}

// release hands the current request over: a joined one is unlocked, a new
// one is corked or queued, or sent on a bulk connection (whose failure is
// returned: the caller's data did not leave).
func (w *writer) release() error {
	c := w.c
	if c == nil {
		return nil
	}
	w.c = nil
	if w.st.ack {
		w.calls = append(w.calls, c)
	}
	switch w.joined {
	case joinedCork:
		w.joined = 0
		w.f.mu.Unlock()
		w.s.corked()
		return nil
	case joinedQueue:
		w.joined = 0
		w.s.mu.Unlock()
		w.s.kick()
		return nil
	}
	f, s := w.f, w.s
	if c.viaBulk {
		return s.sendBulk(c)
	}
	if w.st.cork {
		// The batch c replaces goes out before anyone can take c
		// (File.corkMu).
		f.corkMu.Lock()
		f.mu.Lock()
		prev := f.mu.corked[s.idx]
		f.mu.corked[s.idx] = c
		f.mu.Unlock()
		if prev != nil {
			s.submit(prev) // replaced by a newer batch: a full batch goes out
		}
		f.corkMu.Unlock()
		s.corked()
		return nil
	}
	s.submit(c)
	return nil
}

// finish hands over the last request; a corked batch that reached the cork
// size goes out.
func (w *writer) finish() error {
	if err := w.release(); err != nil || !w.st.cork {
		return err
	}
	f, s := w.f, w.s
	f.corkMu.Lock()
	defer f.corkMu.Unlock()
	f.mu.Lock()
	var full *call
	if t := f.mu.corked[s.idx]; t != nil && t.filled >= w.st.corkBytes {
		full, f.mu.corked[s.idx] = t, nil
	}
	f.mu.Unlock()
	if full != nil {
		return s.submit(full)
	}
	return nil
}

// grow makes room for n more bytes in t, which the caller has locked
// against the sender (or the cork). It never waits.
func (s *session) grow(t *call, n, limit int64) bool {
	if t.filled+n > limit {
		return false
	}
	if t.slot != nil {
		if int64(t.slot.Len())-t.filled >= n {
			return true
		}
		if !s.ring.Grow(t.slot, uint64(t.filled+n)-t.slot.Len()) {
			return false
		}
		t.data = s.shmem.slice(s.ring.Off(t.slot), t.slot.Len())
		return true
	}
	return int64(len(t.data))-t.filled >= n
}

// reserveData gives c room for n bytes, or fewer (the room it gave is
// returned): a ring slot (waiting while the ring is full, which is how the
// server's backpressure reaches the writer, after beforeWait) or an inline buffer of at most
// wire.MaxInline bytes (servers refuse more: the writer cuts the rest into
// more requests) counted against the session's inflight limit.
func (f *File) reserveData(s *session, c *call, n int64, beforeWait func()) (int64, error) {
	if s.ring == nil {
		c.flags &^= wire.IOHold // only ring slots are held
		n = min(n, wire.MaxInline)
		return n, f.reserveInline(s, c, n, beforeWait)
	}
	slot := s.ring.TryAlloc(uint64(n))
	if slot == nil && c.flags&wire.IOHold != 0 {
		// The server may hold this rank's earlier pieces of the collective,
		// and their ring space, until the end marker, which comes after
		// this piece: waiting for ring space could wait for ever. This
		// piece goes inline and without the hold, which makes the server
		// apply and answer what it holds (wire/spec.md, "Collectives");
		// small, since the ring is free again soon after.
		c.flags &^= wire.IOHold
		n = min(n, inlineMin, wire.MaxInline)
		return n, f.reserveInline(s, c, n, beforeWait)
	}
	if slot == nil {
		// Corked batches hold ring space until they are sent: send them
		// before waiting for space, and again whenever one was corked
		// meanwhile (AllocKick), or the wait would never end; so do the
		// write's own requests for other servers (beforeWait, first:
		// corked, they become batches).
		if beforeWait != nil {
			beforeWait()
		}
		var err error
		if slot, err = s.ring.AllocKick(uint64(n), f.cl.corkKicker()); err != nil {
			return 0, err
		}
	}
	c.slot = slot
	c.data = s.shmem.slice(s.ring.Off(slot), slot.Len())
	return n, nil
}

// reserveInline gives c an inline buffer for n bytes (at most
// wire.MaxInline, as later writes joined to it: grow), counted against the
// session's inflight limit.
func (f *File) reserveInline(s *session, c *call, n int64, beforeWait func()) error {
	size := n
	if n <= f.cl.cfg.MergeBytes {
		size = min(max(n, inlineMin), wire.MaxInline)
	}
	if err := s.reserve(c, size, beforeWait); err != nil {
		return err
	}
	c.data = getInline(size)
	return nil
}

// corked tells the session's waiters for ring space and in-flight room
// that a corked batch took or grew some (Client.corkGen): they send the
// corked batches again instead of waiting for what the batch holds
// (another thread's cork, after they sent them, held it for ever: found
// in review).
func (s *session) corked() {
	s.cl.corkGen.Add(1)
	if s.ring != nil {
		s.ring.Wake()
	}
	if s.spaceWaiting.Load() > 0 {
		s.mu.Lock()
		s.space.Broadcast()
		s.mu.Unlock()
	}
}

// corkKicker is the rule of a wait for ring space or in-flight room: send
// the corked batches before waiting, and again whenever one was corked or
// grew since (shm.Kicker).
func (cl *Client) corkKicker() *shm.Kicker {
	return &shm.Kicker{Gen: cl.corkGen.Load, Kick: cl.sendAllCorked}
}

// sendAllCorked sends the corked batches of every open file.
func (cl *Client) sendAllCorked() {
	cl.mu.Lock()
	files := make([]*File, 0, len(cl.mu.files))
	for f := range cl.mu.files {
		files = append(files, f)
	}
	cl.mu.Unlock()
	for _, f := range files {
		f.sendCorked()
	}
}

// sendCorked sends the file's corked batches.
func (f *File) sendCorked() error {
	f.corkMu.Lock()
	defer f.corkMu.Unlock()
	f.mu.Lock()
	batches := make([]*call, len(f.mu.corked))
	copy(batches, f.mu.corked)
	clear(f.mu.corked)
	f.mu.Unlock()
	if corkTakenHook != nil {
		corkTakenHook()
	}
	var first error
	for i, c := range batches {
		if c == nil {
			continue
		}
		if err := f.sess[i].submit(c); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// atomicPartHook, when set (tests), runs when a part of an atomic write
// with more parts to come was handed over.
var atomicPartHook func()

// corkTakenHook, for tests, runs in sendCorked between taking the batches
// and submitting them.
var corkTakenHook func()

// inlineBufs keeps the inline buffers of small writes (inlineMin bytes)
// between requests: a small write over TCP does not get 256 KiB of freshly
// zeroed memory each time. A buffer goes back once its request completed
// (session.complete): the sender copied it into a frame long before.
var inlineBufs = sync.Pool{New: func() any { return new([inlineMin]byte) }}

func getInline(n int64) []byte {
	if n == inlineMin {
		return inlineBufs.Get().(*[inlineMin]byte)[:]
	}
	return make([]byte, n)
}

// putInline returns a write's inline buffer to the pool.
func putInline(b []byte) {
	if cap(b) == inlineMin {
		inlineBufs.Put((*[inlineMin]byte)(b[:inlineMin]))
	}
}
