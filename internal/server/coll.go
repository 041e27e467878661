package server

import (
	"fmt"
	"sync"
	"time"

	"github.com/delegate-io/delegate/internal/wire"
)

// Collectives without data exchange. After its pieces of a collective, each
// rank sends every server an end marker (wire.CollEnd) on the same stream.
// A server answers a marker only once it has the markers of all ranks of
// the collective: the stream of each rank then holds every later request
// until every rank's pieces of the collective, which came before the
// markers on their streams, are applied. So a read after MPI_File_write_all
// sees all of it, and no rank waits for an acknowledgement of its pieces.

// colls tracks the collectives of one file, by group (one per collective
// open) and sequence number.
type colls struct {
	mu     sync.Mutex
	groups map[int64]map[int64]*collWait
}

type collWait struct {
	arrived int32
	done    chan struct{} // every rank's marker came
	// held are the ranks' held pieces (collwrite.go), one list per rank
	// that holds any; written closes once the last rank's worker applied
	// them all (file.writeColl).
	held    []*[]*collPiece
	written chan struct{}
}

// arrive records one rank's marker of the collective tag names, with the
// pieces its stream held for it (mine, possibly none), and waits, up to
// timeout, until all tag.Size ranks' markers have arrived; it calls
// beforeWait first when it has to wait. The rank whose marker completes the
// collective applies every rank's held pieces (apply, file.writeColl)
// before any marker is answered; the others wait for that too. It gives up
// with ESHUTDOWN when stop closes (the session ends, or the server shuts
// down: a drain must not wait a collective timeout for ranks that will not
// come). When it gives up, mine were not applied (taken is false): the
// caller applies them.
func (c *colls) arrive(tag wire.CollTag, timeout time.Duration, beforeWait func(), stop <-chan struct{},
	mine []*collPiece, apply func([][]*collPiece)) (taken bool, err error) {
	group, seq, size := tag.Group, tag.Seq, tag.Size
	c.mu.Lock()
	if c.groups == nil {
		c.groups = map[int64]map[int64]*collWait{}
	}
	g := c.groups[group]
	if g == nil {
		g = map[int64]*collWait{}
		c.groups[group] = g
	}
	w := g[seq]
	if w == nil {
		w = &collWait{done: make(chan struct{}), written: make(chan struct{})}
		g[seq] = w
	}
	var ref *[]*collPiece
	if len(mine) > 0 {
		ref = &mine
		w.held = append(w.held, ref)
	}
	w.arrived++
	if w.arrived >= size {
		close(w.done)
		delete(g, seq)
		if len(g) == 0 {
			delete(c.groups, group)
		}
		held := w.held
		w.held = nil
		c.mu.Unlock()
		c.finish(w, held, apply)
		return true, nil
	}
	arrived := w.arrived
	c.mu.Unlock()
	beforeWait()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-w.done:
		<-w.written
		return true, nil
	case <-t.C:
		if c.leave(group, seq, w, ref) {
			return true, nil
		}
		return false, wire.Errorf(wire.ETIMEDOUT, "collective %d: only %d of %d ranks reached it within %s", seq, arrived, size, timeout)
	case <-stop:
		if c.leave(group, seq, w, ref) {
			return true, nil
		}
		return false, wire.Errorf(wire.ESHUTDOWN, "collective %d: %d of %d ranks had reached it when the session or server ended", seq, arrived, size)
	}
}

// finish applies the held pieces of a complete collective and lets the
// waiting ranks go; written closes even if apply panics (the stream's
// recovery then closes the finisher's stream, not the others').
func (c *colls) finish(w *collWait, held []*[]*collPiece, apply func([][]*collPiece)) {
	defer close(w.written)
	if len(held) == 0 {
		return
	}
	ranks := make([][]*collPiece, len(held))
	for i, h := range held {
		ranks[i] = *h
	}
	apply(ranks)
}

// leave takes back a marker whose wait gave up, and the pieces it brought
// (ref), so that a rank arriving later waits for it again (and fails too,
// as every rank of a failed collective must) instead of counting it, and
// the record goes once no marker is left in it. It reports true if the
// collective completed in the meantime: then the wait succeeded after all,
// once the held pieces are written (the rank's ring stays mapped until its
// stream ends, and that waits for this).
func (c *colls) leave(group, seq int64, w *collWait, ref *[]*collPiece) bool {
	c.mu.Lock()
	select {
	case <-w.done:
		c.mu.Unlock()
		<-w.written
		return true
	default:
	}
	defer c.mu.Unlock()
	w.arrived--
	for i, h := range w.held {
		if h == ref {
			w.held = append(w.held[:i], w.held[i+1:]...)
			break
		}
	}
	if w.arrived == 0 {
		if g := c.groups[group]; g[seq] == w {
			delete(g, seq)
			if len(g) == 0 {
				delete(c.groups, group)
			}
		}
	}
	return false
}

// pending reports the collectives with markers waiting (tests).
func (c *colls) pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, g := range c.groups {
		n += len(g)
	}
	return n
}

// collEnd serves an end marker. The pieces its stream holds for it
// (stream.hold: the same handle and tag, released otherwise) go with it to
// arrive, and are answered, in order, before it.
func (st *stream) collEnd(r *request) (wire.Reply, []byte) {
	ce := r.desc.(*wire.CollEnd)
	hd, err := st.fileHandle(r, ce.File)
	if err != nil {
		return fail(err)
	}
	if err := ce.CollTag.Check(); err != nil {
		return fail(err)
	}
	s := st.ss.srv
	h := st.held
	st.held = heldColl{}
	var mine []*collPiece
	if len(h.reqs) > 0 {
		mine = h.pieces
	}
	// The replies held for this stream's earlier requests (stream.serve
	// sends a batch's replies at its end) go out before the wait: the
	// rank's fence inside the collective waits for its writes before the
	// pieces, not for the other ranks (client.FenceScoped).
	flush := func() { st.sendReplies() }
	taken, err := hd.f.colls.arrive(ce.CollTag, s.cfg.CollTimeout, flush, st.ss.closing, mine, hd.f.writeColl)
	for i, hr := range h.reqs {
		p := mine[i]
		if !taken {
			p.n, p.err = h.hd.f.write(p.ext, p.data)
		}
		st.answerHeld(hr, p.n, p.err)
	}
	if err != nil {
		return fail(fmt.Errorf("%s: %w", hd.f.path, err))
	}
	s.stats.collEnds.Add(1)
	return wire.Reply{}, nil
}

// heldColl is what a stream holds of a collective write (wire.IOHold):
// requests whose data stays in the rank's ring, unanswered, until the
// rank's end marker of the same handle and tag.
type heldColl struct {
	hd     *handle
	tag    wire.CollTag
	reqs   []*request
	pieces []*collPiece // one per request
	bytes  int64        // their ring bytes
	desc   int64        // their extent lists' memory (wire.Extents.Mem)
}

// maxHeldReqs bounds the requests a stream holds for one collective (a
// client merges a collective's pieces into about one request per chunk,
// so a real one stays far below it). A variable for tests.
var maxHeldReqs = 1024

// maxHeldDesc bounds the memory of the extent lists of the pieces a
// stream holds (hold): they left the stream's own queue (admit).
const maxHeldDesc = wire.MaxRunsMem

// heldHook, when set (tests), is told how many requests a stream holds
// each time it takes one.
var heldHook func(n int)

// hold keeps r, a collective write the client lets the server hold, for
// its end marker, and reports whether it did. A write it does not take
// (any check fails: the handler answers it) is applied as usual.
func (st *stream) hold(r *request) bool {
	s := st.ss.srv
	if r.err != nil || r.h.Type.Request() != wire.TWrite || !s.cfg.CollDirect {
		return false
	}
	w := r.desc.(*wire.Write)
	if w.Flags&(wire.IOHold|wire.IOColl|wire.IOAtomic) != wire.IOHold|wire.IOColl ||
		w.RingLen == 0 || w.BulkLen != 0 || len(r.payload) != 0 || w.CollTag.Check() != nil {
		return false
	}
	hd, err := st.fileHandle(r, w.File)
	if err != nil || !hd.writable {
		return false
	}
	data, err := st.slot(w.RingOff, w.RingLen)
	if err != nil || st.checkOwned(hd, &r.ext, w.Flags) != nil {
		return false
	}
	if len(st.held.reqs) > 0 && (st.held.hd != hd || st.held.tag != w.CollTag) && !st.releaseHeld() {
		return false // the stream broke; the request goes the usual way and fails too
	}
	// What a stream holds is bounded (a client that never sends its
	// marker, or names one ring slice many times, must not grow the
	// server): at most maxHeldReqs requests and a ring's worth of bytes.
	// Past it, what is held is applied and answered, and holding starts
	// again with this request.
	// Their extent lists at most maxHeldDesc (one at most wire.MaxRunsMem).
	if len(st.held.reqs) >= maxHeldReqs || st.held.bytes+int64(len(data)) > int64(len(st.ss.ring.Bytes())) ||
		(len(st.held.reqs) > 0 && st.held.desc+r.ext.Mem() > maxHeldDesc) {
		if !st.releaseHeld() {
			return false
		}
	}
	if heldHook != nil {
		heldHook(len(st.held.reqs) + 1)
	}
	st.held.hd, st.held.tag = hd, w.CollTag
	st.held.reqs = append(st.held.reqs, r)
	st.held.pieces = append(st.held.pieces, &collPiece{ext: &r.ext, data: data})
	st.held.bytes += int64(len(data))
	st.held.desc += r.ext.Mem()
	s.stats.collHeld.Add(1)
	return true
}

// passesHeld reports whether r may be served while the stream holds
// pieces: only their end marker may (it takes them).
func (st *stream) passesHeld(r *request) bool {
	if len(st.held.reqs) == 0 {
		return true
	}
	if r.err != nil || r.h.Type.Request() != wire.TCollEnd {
		return false
	}
	ce := r.desc.(*wire.CollEnd)
	hd, err := st.ss.handle(ce.File)
	return err == nil && hd == st.held.hd && ce.CollTag == st.held.tag
}

// releaseHeld applies what the stream holds as ordinary writes and answers
// it, in order; false if a reply could not be written.
func (st *stream) releaseHeld() bool {
	h := st.held
	st.held = heldColl{}
	ok := true
	for i, r := range h.reqs {
		p := h.pieces[i]
		p.n, p.err = h.hd.f.write(p.ext, p.data)
		if !st.answerHeld(r, p.n, p.err) {
			ok = false
		}
	}
	return ok
}

// answerHeld answers a held write and counts it as stream.handle and
// stream.write count a write.
func (st *stream) answerHeld(r *request, n int64, err error) bool {
	s := st.ss.srv
	s.stats.requests[wire.TWrite].Add(1)
	s.stats.collWrites.Add(1)
	s.stats.bytesIn.Add(n)
	s.stats.extentsIn.Add(r.ext.Count())
	rep := wire.Reply{N: n}
	if err != nil {
		rep, _ = fail(err)
		s.stats.errors[wire.TWrite].Add(1)
	}
	r.sum.request(wire.TWrite, r.waited, rep.Code)
	return st.reply(r.h, &rep, nil) == nil
}
