package server

import (
	"time"

	"github.com/delegate-io/delegate/internal/wire"
)

// Atomic mode. Every atomic request of a file comes to its home server
// (route.Rule.Home), which applies it under the file's atomic lock:
// exclusively for a write, shared for a read. A call larger than one
// request (wire.MaxInline inline, a ring slot, wire.MaxRequestRuns runs)
// comes as several, all carrying the call's id (wire.Write.AG) and all but
// the last flagged wire.IOMore: the stream keeps the lock from the first
// part to the last, so no other atomic request of the file lands between
// them and the call is one unit, as MPI's atomic mode asks (ROMIO's ufs:
// locks the call's whole range). A client sends one atomic call at a time
// per session (client.File.atomicCall), so parts of two calls never
// interleave, and no end marker between two parts (client
// session.lockAtomic); its other requests may come between two parts and
// are applied as usual, the group going on (they take no atomic lock).
//
// The lock is held across requests, and so across the worker's waits
// between them (the one lock held across network I/O, by design). What
// bounds it:
//   - the group ends at its last part, at a part that fails (the call's
//     remaining parts fail too), at a read part that reaches the end of
//     file (the client stops there), at an atomic request of another call,
//     and when the stream ends;
//   - every wait on the client while the lock is held is bounded: the
//     next part (the worker waits for it at most atomicGap in all after
//     the last part's reply, counting only the time it has nothing of the
//     stream to do, and at most atomicBusyGaps gaps however busy the
//     stream keeps it), a batch of replies (sendReplies: bulkTimeout), a
//     large reply or a bulk transfer (bulk.go: bulkTimeout plus 1 s per
//     MiB, the whole of it; no splice meanwhile);
//   - what would wait for other streams breaks it: a collective's end
//     marker between two parts (the other ranks' requests may wait for
//     this lock); so does a request refused on arrival that did not
//     decode (it may have been a part) or was a part.
//
// A group whose lock went early (a late part, an end marker, a refused
// part) is broken: the
// lock is let go, a warning is logged, atomic_broken is counted, and the
// call's remaining parts fail (ETIMEDOUT, EIO), so the call reports that
// it was not applied as one unit and no part of it lands after the gap.
// So do the remaining parts of a call one of whose parts failed.
//
// A request waiting for the lock holds no transfer memory or buffer space
// yet (write and read take the lock before their data), so the holder's
// next parts never wait for a waiter.

// atomicGap bounds the wait for a group's next part (a variable for
// tests).
var atomicGap = bulkTimeout

// atomicWaitHook, for tests, runs when a request finds the lock taken.
var atomicWaitHook func()

// atomicGroup is the atomic lock a stream holds for the call it is
// applying; only the stream's worker touches it. A broken group (err set)
// holds no lock, and its f may be nil.
type atomicGroup struct {
	f     *file
	id    uint64 // the handle the parts name
	ag    uint64 // the call's id (wire.Write.AG)
	write bool   // held exclusively
	more  bool   // the last part applied said more parts follow
	err   error  // broken: the lock was let go, and the call's next parts fail with it
	// idle: how long the worker may still wait, with nothing of the
	// stream to do, for the next part (atomicGap from the last part's
	// reply). Only idle time counts: while the worker handles the
	// stream's other requests the client is not late, however long they
	// take, and the reader may be waiting for the worker to queue frames
	// sent in time (review: stamps by arrival failed timely parts
	// behind a slow request and large inline writes); a stream that
	// sends stats now and then still runs it out (review: a stat every
	// second restarted a wait counted from the last request).
	idle time.Duration
	// due: however busy the stream keeps the worker, the next part must
	// come by then (atomicBusyGaps gaps after the last part's reply;
	// review: a stream of large reads kept the lock as long as they came).
	due time.Time
	// replied: the last part's reply is still to be sent (the wait starts
	// after it).
	replied bool
}

// atomicBusyGaps: how many gaps a group may wait in all for its next part
// while the stream keeps the worker busy (atomicGap of it idle at most).
const atomicBusyGaps = 4

// continuedBy reports whether r is a part of the group's call.
func (g *atomicGroup) continuedBy(r *request) bool {
	if r.err != nil {
		return false
	}
	switch d := r.desc.(type) {
	case *wire.Write:
		return g.write && d.File == g.id && d.AG == g.ag && d.Flags&wire.IOAtomic != 0
	case *wire.Read:
		return !g.write && d.File == g.id && d.AG == g.ag && d.Flags&wire.IOAtomic != 0
	}
	return false
}

// atomicPart is what the server keeps of an atomic request refused on
// arrival (its description is dropped): which call it was part of, and
// whether more parts follow.
type atomicPart struct {
	file, ag    uint64
	write, more bool
	known       bool // its description decoded: whether it was a part is known
}

// refusedPart returns the atomic call desc, decoded, is a part of, if any.
func refusedPart(desc any) atomicPart {
	switch d := desc.(type) {
	case *wire.Write:
		if d.Flags&wire.IOAtomic != 0 {
			return atomicPart{file: d.File, ag: d.AG, write: true, more: d.Flags&wire.IOMore != 0, known: true}
		}
	case *wire.Read:
		if d.Flags&wire.IOAtomic != 0 {
			return atomicPart{file: d.File, ag: d.AG, more: d.Flags&wire.IOMore != 0, known: true}
		}
	}
	return atomicPart{known: true}
}

// atomicOther reports whether r is an atomic request (of another call
// than a group's, which continuedBy tells).
func atomicOther(r *request) bool {
	switch d := r.desc.(type) {
	case *wire.Write:
		return d.Flags&wire.IOAtomic != 0
	case *wire.Read:
		return d.Flags&wire.IOAtomic != 0
	}
	return false
}

// atomicBefore settles the stream's group before the worker handles r: a
// part of its call goes on in it, an atomic request of another call ends
// it, a collective's end marker breaks it (the marker waits for other
// ranks, whose requests may wait for this lock), and anything else is
// applied inside it.
func (st *stream) atomicBefore(r *request) {
	g := st.atom
	if r.err != nil {
		// Refused on arrival (its description is gone, but what call it
		// was part of is kept: refusedPart).
		p := r.refused
		switch {
		case g != nil && g.err == nil && (!p.known || g.is(p)):
			// It may have been (it did not decode), or was, a part of the
			// open call, which must not go on past the hole.
			st.atomBreak(wire.Errorf(wire.EIO, "%s: a request refused on arrival (%v) came between two parts of an atomic call; the call was not applied as one unit",
				g.f.path, r.err))
		case p.more:
			// A part of a call with more to come: its later parts must
			// not land after the hole either, whatever came before
			// (review: a stale broken record hid it).
			st.atomEnd()
			st.atomBuf = atomicGroup{id: p.file, ag: p.ag, write: p.write,
				err: wire.Errorf(wire.EIO, "a part of this atomic call was refused on arrival (%v); the call was not applied as one unit", r.err)}
			st.atom = &st.atomBuf
			st.ss.srv.stats.atomicBroken.Add(1)
		}
		return
	}
	switch {
	case g == nil:
	case g.err == nil && !g.replied && time.Now().After(g.due):
		// The stream kept the worker busy past the bound, and the part
		// did not come before r (the queue is in order).
		st.atomLate()
		if !g.continuedBy(r) && atomicOther(r) {
			st.atomEnd()
		}
	case g.continuedBy(r):
	case atomicOther(r):
		st.atomEnd()
	case g.err != nil:
	case r.h.Type.Request() == wire.TCollEnd:
		st.atomBreak(wire.Errorf(wire.EIO, "%s: a collective's end marker came between two parts of an atomic call on this session; the call was not applied as one unit",
			g.f.path))
	}
}

// is reports whether p is a part of g's call.
func (g *atomicGroup) is(p atomicPart) bool {
	return g.id == p.file && g.ag == p.ag && g.write == p.write
}

// atomicEnter takes f's atomic lock for an atomic request (a write if
// write) of handle id and call ag, or finds it held by the request's
// group. On
// success the handler calls atomicLeave once done with the file.
func (st *stream) atomicEnter(f *file, id uint64, write bool, flags uint32, ag uint64) error {
	more := flags&wire.IOMore != 0
	if g := st.atom; g != nil { // r continues it (atomicBefore ended any other)
		if g.err != nil {
			if !more {
				st.atom = nil // the call's last part
			}
			return g.err
		}
		g.more = more
		return nil
	}
	if write && !f.atomic.TryLock() || !write && !f.atomic.TryRLock() {
		if atomicWaitHook != nil {
			atomicWaitHook()
		}
		if write {
			f.atomic.Lock()
		} else {
			f.atomic.RLock()
		}
	}
	st.atomBuf = atomicGroup{f: f, id: id, ag: ag, write: write, more: more}
	st.atom = &st.atomBuf
	return nil
}

// atomicLeave ends the hold of a request that atomicEnter let in, given
// its reply: the group goes on if the request said more parts follow,
// succeeded and, a read, did not stop at the end of file (short). A part
// that failed lets the lock go and the call's remaining parts fail, so
// that no part lands after a hole.
func (st *stream) atomicLeave(rep *wire.Reply, short bool) {
	g := st.atom
	switch {
	case g == nil || g.err != nil:
	case rep.Code != wire.OK && g.more:
		g.unlock()
		g.err = wire.Errorf(rep.Code, "%s: an earlier part of this atomic call failed: %s", g.f.path, rep.Msg)
	case rep.Code != wire.OK || !g.more || short:
		st.atomEnd()
	default: // the call goes on: the wait for its next part starts once this reply is sent
		g.idle, g.replied = atomicGap, true
	}
}

// atomicHeld reports whether the stream holds a file's atomic lock.
func (st *stream) atomicHeld() bool {
	g := st.atom
	return g != nil && g.err == nil
}

// atomicReplyDue reports whether the reply of a part after which more
// parts follow waits in the batch: the worker sends it at once (the
// client may wait for it before it sends the next part, which is due
// within atomicGap of it; review: a stream of large replies, or of slow
// requests, kept the batch from going out, and the lock beyond the bound).
func (st *stream) atomicReplyDue() bool {
	g := st.atom
	return g != nil && g.err == nil && g.replied
}

// atomicReplied starts the wait for the next part once the last part's
// reply is sent (the client may wait for it before sending the next).
func (st *stream) atomicReplied() {
	if g := st.atom; g != nil && g.err == nil && g.replied {
		g.idle, g.due, g.replied = atomicGap, time.Now().Add(atomicBusyGaps*atomicGap), false
	}
}

// atomBreak lets the lock of an open group go early: the call's remaining
// parts fail with err.
func (st *stream) atomBreak(err error) {
	g := st.atom
	g.unlock()
	g.err = err
	st.ss.srv.stats.atomicBroken.Add(1)
	st.ss.log.Warn("atomic call not applied as one unit", "file", g.f.path, "err", err)
}

// atomEnd lets the group's lock go and forgets the group.
func (st *stream) atomEnd() {
	g := st.atom
	if g == nil {
		return
	}
	st.atom = nil
	if g.err == nil {
		g.unlock()
	}
}

func (g *atomicGroup) unlock() {
	if g.write {
		g.f.atomic.Unlock()
	} else {
		g.f.atomic.RUnlock()
	}
}

// nextRequest takes the stream's next request; ok is false once the
// reader is done. While a group waits for its next part, the worker's
// idle time counts against the group's budget (g.idle): once it has
// waited that long in all, with nothing of the stream to do, the part is
// late.
func (st *stream) nextRequest() (r *request, ok bool) {
	g := st.atom
	if g == nil || g.err != nil || g.replied { // replied: its reply is not sent, so requests wait
		r, ok = <-st.q
		return r, ok
	}
	select { // work at hand is not idle time
	case r, ok = <-st.q:
		return r, ok
	default:
	}
	start := time.Now()
	t := time.NewTimer(min(g.idle, time.Until(g.due)))
	defer t.Stop()
	select {
	case r, ok = <-st.q:
		g.idle -= time.Since(start)
		return r, ok
	case <-t.C:
	}
	select { // a request that came as the timer fired
	case r, ok = <-st.q:
		g.idle = 0
		return r, ok
	default:
	}
	st.atomLate()
	r, ok = <-st.q
	return r, ok
}

// atomLate breaks the group whose next part is overdue.
func (st *stream) atomLate() {
	st.atomBreak(wire.Errorf(wire.ETIMEDOUT, "%s: the next part of an atomic call did not come within %v; the call was not applied as one unit",
		st.atom.f.path, atomicGap))
}
