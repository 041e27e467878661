package client

import (
	"fmt"
	"os"
	"sync"
	"sync/atomic"

	"github.com/delegate-io/delegate/internal/route"
	"github.com/delegate-io/delegate/internal/wire"
)

// Extent is a piece of a file. Its layout matches delegate_extent, so the
// C layer passes arrays without copying.
type Extent struct {
	Off, Len int64
}

// IOOpts qualify one read or write.
type IOOpts struct {
	Ack  bool          // write: wait for the servers' acknowledgement
	Coll *wire.CollTag // part of a collective: its tag; nil otherwise

	atomic     bool // posted in atomic mode (IWrite, IRead): stays atomic when its goroutine runs
	background bool // a nonblocking request's goroutine (IWrite): a lease write takes a turn
}

// File is a file open on every server. Safe for concurrent use.
type File struct {
	cl    *Client
	path  string
	flags uint32
	rule  route.Rule
	sess  []*session
	ids   []uint64 // the file id on each server
	slots []uint32 // the file's control page slot on each server (0: none)
	// inodes: the device and inode number of each server's backend file
	// (open reply; 0: not said). A descriptor the client opens by path is
	// used only if it names that file on every server (sameFile).
	inodes []fileID

	// corkMu orders the sending of corked batches: whoever takes a batch
	// out of mu.corked holds it until the batch is submitted, so that a
	// newer batch for the same server, published meanwhile, cannot be
	// sent ahead of it (found in review: an older write's bytes landed
	// over a newer one's). Taken before mu, never under it; submit does
	// not block.
	corkMu sync.Mutex

	mu struct {
		sync.Mutex
		hints   Hints
		err     error   // first failed write not yet reported
		corked  []*call // per server: the corked batch being filled
		closed  bool
		atomic  bool
		reqs    int // nonblocking requests in progress
		writes  int // write requests created and not yet acknowledged
		markers int // collective end markers not yet answered

		// The last collective write, for FenceScoped: per session (as
		// sess), the session's count of fenced calls before its pieces
		// (collBase) and with its end marker (collEnd); nil when the
		// markers were not all sent.
		collBase, collEnd []int64

		direct   *os.File      // the backend file, read directly when no server holds dirty data
		noDirect bool          // direct reads are impossible (TCP, no slot, cannot open)
		mirror   *atomic.Int64 // ExportDirect's word, kept by mirrorLocked; nil when not exported

		lease   *os.File // the backend file, written directly by lease writes (lease.go)
		noLease bool     // lease writes are impossible (cannot open it for writing, closed)
		leased  bool     // a lease write since the last Sync: Sync fsyncs lease
		// cLease: the counters of the C library's lease writes (ExportLease:
		// a write since the last Sync, writes, bytes), C memory; folded
		// into leased and the counts by Sync and Close.
		cLease *[3]atomic.Int64
	}
	idle sync.Cond // on mu: signalled when reqs drops to 0

	// leaseWrites and leaseBytes count f's lease writes, for the file's
	// summary (sent with the close, closeOn).
	leaseWrites, leaseBytes atomic.Int64

	// fsKind: whether the backend file is on a local file system
	// (onLocalFS, for LeaseMinLocal): fsUnknown until the first write
	// long enough to ask.
	fsKind atomic.Int32

	// lost is the first of sess that died (lose): f is unusable (lostErr).
	// Set under mu, read without it on every operation's way in.
	lost atomic.Pointer[session]
}

// Path returns the file's absolute path.
func (f *File) Path() string { return f.path }

// writeDone records the outcome of one write request.
func (f *File) writeDone(err error) {
	f.cl.pending.Add(-1)
	f.mu.Lock()
	f.mu.writes--
	if err != nil && f.mu.err == nil {
		f.mu.err = fmt.Errorf("write %s: %w", f.path, err)
	}
	f.mirrorLocked()
	f.mu.Unlock()
}

// lose marks f lost because its session s died (session.fail): direct
// reads stop at once, and every later operation fails with lostErr.
func (f *File) lose(s *session) {
	f.mu.Lock()
	f.lost.CompareAndSwap(nil, s)
	f.mirrorLocked()
	f.mu.Unlock()
}

// lostErr is the error of an operation on a file whose session died, nil
// while every session lives. The server's state of the file (its id, its
// control page slot, writes not yet acknowledged) died with the session, so
// the file must be reopened; writes are not resent (README, Semantics).
func (f *File) lostErr(op string) error {
	s := f.lost.Load()
	if s == nil {
		return nil
	}
	if s.replaced.Load() {
		return wire.Errorf(wire.ECONNLOST, "%s %s: delegate server %s restarted; reopen the file (writes it had not acknowledged may be lost)",
			op, f.path, s.addr)
	}
	cause := s.alive() // session.lost: names the server, says to reopen
	return fmt.Errorf("%s %s: %w", op, f.path, cause)
}

// enter starts an operation: it fails on a closed or lost file, and reports
// (once) the failure of an earlier write.
func (f *File) enter(op string) error {
	if err := f.lostErr(op); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.mu.closed {
		return ErrClosed
	}
	err := f.mu.err
	f.mu.err = nil
	f.mirrorLocked()
	return err
}

// endCollective sends the end marker of a collective to every server (after
// this rank's pieces, on the same streams). A server answers the marker once
// it holds every rank's marker, so the rank's later requests see every
// rank's pieces; nothing waits here for the answers, which are counted: no
// direct read happens while one is outstanding. Every rank sends its
// markers, also when its part failed or was empty.
//
// The markers of a collective write are fenced calls (call.fenced), counted
// in the fence word until answered; end records where they are for
// FenceScoped.
//
// A marker never goes between two parts of an atomic call on its session
// (session.lockAtomic): the server would wait with the file's atomic lock
// for the other ranks' markers, whose ranks' atomic requests may wait for
// that lock, so it breaks the call instead (found by the differential
// test: a nonblocking atomic write, then a collective).
func (f *File) endCollective(tag wire.CollTag, write bool) {
	if f.live() != nil {
		return
	}
	f.sendCorked() // corked pieces go before the marker
	var end []int64
	if write {
		end = make([]int64, len(f.sess))
	}
	for i, s := range f.sess {
		c := newCall(wire.TCollEnd, &wire.CollEnd{File: f.ids[i], CollTag: tag})
		c.marker = f
		c.wmarker = write
		f.mu.Lock()
		f.mu.markers++
		f.mirrorLocked()
		f.mu.Unlock()
		if write {
			f.cl.pending.Add(1)
		}
		s.lockAtomic(f.ids[i])
		err := s.submit(c)
		s.atomicMu.Unlock()
		if err != nil {
			end = nil
		} else if end != nil {
			end[i] = c.fseq
		}
	}
	if write {
		f.mu.Lock()
		if f.mu.collBase != nil && end != nil {
			f.mu.collEnd = end
		}
		f.mu.Unlock()
	}
}

// startCollective records, before a collective write's pieces, how many
// fenced calls each of the file's sessions has queued (FenceScoped). The
// file's corked writes, issued before the collective, are sent first so
// that they are counted before it.
func (f *File) startCollective() {
	f.sendCorked()
	base := make([]int64, len(f.sess))
	for i, s := range f.sess {
		base[i] = s.fencedQueued()
	}
	f.mu.Lock()
	f.mu.collBase, f.mu.collEnd = base, nil
	f.mu.Unlock()
}

// markerDone counts an answered collective end marker; a failed one is
// reported like a failed write.
func (f *File) markerDone(err error, write bool) {
	if write {
		f.cl.pending.Add(-1)
	}
	f.mu.Lock()
	f.mu.markers--
	if err != nil && f.mu.err == nil {
		f.mu.err = fmt.Errorf("collective on %s: %w", f.path, err)
	}
	f.mirrorLocked()
	f.mu.Unlock()
}

// checkLists validates the two lists and returns their common total.
func checkLists(path string, mem [][]byte, ext []Extent) (int64, error) {
	var mt, et int64
	for _, m := range mem {
		mt += int64(len(m))
	}
	for _, e := range ext {
		if !wire.CheckExtent(e.Off, e.Len) {
			return 0, wire.Errorf(wire.EFBIG, "%s: extent %d+%d is outside [0, 2^63)", path, e.Off, e.Len)
		}
		et += e.Len
		if et < 0 {
			return 0, wire.Errorf(wire.EFBIG, "%s: extents add up to more than 2^63 bytes", path)
		}
	}
	if mt != et {
		return 0, wire.Errorf(wire.EINVAL, "%s: memory holds %d bytes, file extents %d", path, mt, et)
	}
	return et, nil
}

// memCursor walks a list of memory pieces as one byte sequence.
type memCursor struct {
	mem [][]byte
	i   int
	off int
}

// gather copies the next len(dst) bytes into dst: the write path's copy
// into the shared-memory ring (or an inline buffer over TCP). Copies per
// byte written (README, Performance): a staged write (at most 4 KiB) 4:
// stage.c, this one, the server's slot (extent place), the page cache (the
// flush); a buffered write 3: this one, the slot, the page cache; a direct
// write (at least --direct) 2: this one and the server's pwrite straight
// from the ring (server writeDirect); a lease write 1, the rank's own pwrite
// (File.writeLease), as ufs: makes.
func (m *memCursor) gather(dst []byte) {
	for len(dst) > 0 {
		src := m.mem[m.i][m.off:]
		n := copy(dst, src)
		dst = dst[n:]
		m.off += n
		if m.off == len(m.mem[m.i]) {
			m.i, m.off = m.i+1, 0
		}
	}
}

// next returns the next contiguous piece of memory, at most n bytes, and
// moves past it.
func (m *memCursor) next(n int64) []byte {
	for m.off == len(m.mem[m.i]) {
		m.i, m.off = m.i+1, 0
	}
	b := m.mem[m.i][m.off:]
	if int64(len(b)) > n {
		b = b[:n]
	}
	m.off += len(b)
	return b
}

// skip moves past the next n bytes.
func (m *memCursor) skip(n int64) {
	for n > 0 {
		n -= int64(len(m.next(n)))
	}
}

// zero clears the next n bytes.
func (m *memCursor) zero(n int64) {
	for n > 0 {
		b := m.next(n)
		clear(b)
		n -= int64(len(b))
	}
}

// scatter copies src into the next len(src) bytes.
func (m *memCursor) scatter(src []byte) {
	for len(src) > 0 {
		dst := m.mem[m.i][m.off:]
		n := copy(dst, src)
		src = src[n:]
		m.off += n
		if m.off == len(m.mem[m.i]) {
			m.i, m.off = m.i+1, 0
		}
	}
}

// split cuts [off, off+n) into pieces per server by the region rule, in
// atomic mode (wire.IOAtomic in flags) too (route.Rule.Route, SetAtomic).
func (f *File) split(flags uint32, off, n int64, fn func(s int, off, n int64)) {
	f.rule.Route(flags&wire.IOAtomic != 0, off, n, fn)
}

// perServer returns how many bytes of ext each server gets, and how many
// servers get any.
func (f *File) perServer(ext []Extent, flags uint32) ([]int64, int) {
	totals := make([]int64, f.rule.Servers)
	for _, e := range ext {
		f.split(flags, e.Off, e.Len, func(s int, _, k int64) { totals[s] += k })
	}
	n := 0
	for _, t := range totals {
		if t > 0 {
			n++
		}
	}
	return totals, n
}

// maxChunk is the most data one request carries on session s.
func (f *File) maxChunk(s *session) int64 {
	n := f.cl.cfg.MaxRequestBytes
	if s.ring != nil {
		n = min(n, int64(s.ring.MaxSlot()))
	}
	return n
}

// opState is what one operation reads of the file's state, under one lock.
type opState struct {
	flags     uint32
	tag       wire.CollTag // with wire.IOColl
	ag        uint64       // with wire.IOAtomic: the call's id (atomicCall)
	cork      bool
	corkBytes int64
	ack       bool
}

// begin starts an operation: it fails on a closed or lost file, reports
// (once) the failure of an earlier write, and returns the file's state for
// the call.
func (f *File) begin(op string, o *IOOpts) (opState, error) {
	if err := f.lostErr(op); err != nil {
		return opState{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.mu.closed {
		return opState{}, ErrClosed
	}
	if err := f.mu.err; err != nil {
		f.mu.err = nil
		f.mirrorLocked()
		return opState{}, err
	}
	st := opState{cork: f.mu.hints.Cork, corkBytes: f.mu.hints.CorkBytes, ack: o.Ack || f.mu.hints.WriteAck}
	if f.mu.atomic || o.atomic {
		// Not corked: a corked request would wait, and an atomic call cut
		// into several requests holds the server's lock on the file from
		// its first to its last (wire.IOMore).
		st.flags |= wire.IOAtomic
		st.cork = false
	}
	if o.Coll != nil {
		st.flags |= wire.IOColl
		st.tag = *o.Coll
	}
	return st, nil
}

// Combinable reports whether small writes may be combined before they
// reach Write (libdelegate's stage): the file is open for writing and its
// writes need no acknowledgement (no write_ack hint, no atomic mode).
// corked says the combined writes wait for the cork's own triggers.
func (f *File) Combinable() (ok, corked bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ok = !f.mu.closed && f.flags&(wire.OWronly|wire.ORdwr) != 0 && !f.mu.hints.WriteAck && !f.mu.atomic
	return ok, f.mu.hints.Cork
}

// Write writes the bytes of mem, in order, to the extents ext, in order. It
// returns once the data has left mem (o.Ack or the write_ack hint: once the
// servers acknowledged).
func (f *File) Write(mem [][]byte, ext []Extent, o IOOpts) (int64, error) {
	if o.Coll != nil {
		f.startCollective()
		defer f.endCollective(*o.Coll, true) // whatever happens here: the others wait for it
	}
	st, err := f.begin("write", &o)
	if err != nil {
		return 0, err
	}
	if f.flags&(wire.OWronly|wire.ORdwr) == 0 {
		return 0, wire.Errorf(wire.EROFS, "write %s: file opened read-only", f.path)
	}
	total, err := checkLists(f.path, mem, ext)
	if err != nil || total == 0 {
		return 0, err
	}
	if f.leaseOK(ext, &st, &o) {
		if o.background {
			return f.writeLeaseBackground(mem, ext)
		}
		return f.writeLease(mem, ext)
	}
	if st.flags&wire.IOAtomic != 0 {
		// Held until every request of the call is sent (not while it
		// waits for acknowledgements): the server applies them in order.
		var done func()
		st.ag, done = f.atomicCall()
		calls, err := f.place(mem, ext, total, &st)
		done()
		return f.placed(calls, total, &st, err)
	}
	if st.flags&(wire.IOColl|wire.IOAtomic) == wire.IOColl && !st.ack && !st.cork {
		// Nothing here waits for the pieces' answers before the end
		// marker (endCollective, deferred above): the servers may hold
		// them and write the collective from the ring (wire.IOHold).
		st.flags |= wire.IOHold
	}
	calls, err := f.place(mem, ext, total, &st)
	return f.placed(calls, total, &st, err)
}

// placed finishes a Write whose requests place made: with st.ack it waits
// for their acknowledgements.
func (f *File) placed(calls []*call, total int64, st *opState, err error) (int64, error) {
	if err != nil {
		return 0, err
	}
	if st.ack {
		if st.cork {
			f.sendCorked()
		}
		for _, c := range calls {
			if err := c.wait(); err != nil {
				f.enter("write") // reported here, not again
				return 0, fmt.Errorf("write %s: %w", f.path, err)
			}
		}
	}
	return total, nil
}

// atomicCall starts an atomic-mode call: it takes the atomic lock of the
// file's home session (every atomic request goes there) and returns the
// call's id and the lock's release. Taken before anything else of the call
// (ring space, bulk connections, a wait for either), so that no holder of
// those waits for it; held across the call's waits for them, and for a
// read's replies (its windows go one after another).
func (f *File) atomicCall() (id uint64, done func()) {
	s := f.sess[f.rule.Home()]
	s.atomicMu.Lock()
	s.atomicID++
	return s.atomicID, s.atomicMu.Unlock
}

// place puts a write's data into requests, per server, and queues them (or
// corks them). With st.ack set it returns the requests to wait for. One
// server is the common case and allocates nothing.
func (f *File) place(mem [][]byte, ext []Extent, total int64, st *opState) ([]*call, error) {
	cur := memCursor{mem: mem}
	if len(f.sess) == 1 {
		w := writer{f: f, s: f.sess[0], left: total, st: *st, merge: st.flags&wire.IOAtomic == 0}
		var err error
		for i := 0; i < len(ext) && err == nil; {
			if k, stride := runAt(ext[i:]); k > 1 {
				err = w.putRun(ext[i].Off, ext[i].Len, stride, int64(k), &cur)
				i += k
			} else {
				err = w.put(ext[i].Off, ext[i].Len, &cur)
				i++
			}
		}
		if e := w.finish(); err == nil {
			err = e
		}
		return w.calls, err
	}
	totals, owners := f.perServer(ext, st.flags)
	ws := make([]*writer, len(totals))
	var all []*writer
	for i, t := range totals {
		if t > 0 {
			ws[i] = &writer{f: f, s: f.sess[i], left: t, st: *st, merge: owners == 1 && st.flags&wire.IOAtomic == 0}
			all = append(all, ws[i])
		}
	}
	if len(all) > 1 {
		for _, w := range all {
			w.others = all
		}
	}
	var err error
	for _, e := range ext {
		f.split(st.flags, e.Off, e.Len, func(s int, off, n int64) {
			if err == nil {
				err = ws[s].put(off, n, &cur)
			}
		})
	}
	var calls []*call
	for _, w := range ws {
		if w == nil {
			continue
		}
		if e := w.finish(); err == nil {
			err = e
		}
		calls = append(calls, w.calls...)
	}
	return calls, err
}

// Read reads the extents ext, in order, into mem, in order, and returns
// the number of bytes before the end of file.
func (f *File) Read(mem [][]byte, ext []Extent, o IOOpts) (int64, error) {
	if o.Coll != nil {
		defer f.endCollective(*o.Coll, false)
	}
	st, err := f.begin("read", &o)
	if err != nil {
		return 0, err
	}
	if f.flags&(wire.ORdonly|wire.ORdwr) == 0 {
		return 0, wire.Errorf(wire.EACCES, "read %s: file opened write-only", f.path)
	}
	total, err := checkLists(f.path, mem, ext)
	if err != nil || total == 0 {
		return 0, err
	}
	if err := f.sendCorked(); err != nil {
		return 0, err
	}
	if f.directOK(st.flags) {
		return f.readDirect(mem, ext, total)
	}
	r := reader{f: f, flags: st.flags, tag: st.tag}
	if st.flags&wire.IOAtomic != 0 {
		var done func()
		r.ag, done = f.atomicCall()
		defer done()
	}
	return r.run(mem, ext, total)
}
