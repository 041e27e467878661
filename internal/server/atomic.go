package server

import (
	"time"

	"github.com/delegate-io/delegate/internal/wire"
)

// Atomic mode. Every atomic request of a file comes to its home server
// (route.Rule.Home), which applies it under the file's atomic lock:
// exclusively for a write, shared for a read. A call larger than one
// request (wire.MaxInline inline, a ring slot, wire.MaxRequestRuns runs)
// comes as several, every one but the last flagged wire.IOMore: the
// stream keeps the lock from the first part to the last, so no other
// atomic request of the file lands between them and the call is one unit,
// as MPI's atomic mode asks (ROMIO's ufs: locks the call's whole range).
//
// The lock is held across requests, and so across the worker's wait for
// the next part and its replies (the one lock held across network I/O,
// by design). What bounds it:
//   - the group ends at its last part, at a part that fails (the client
//     stops a read there; a write's later parts start a group of their
//     own), at a read part that reaches the end of file (the client stops
//     there), at any request of the stream that is not the next part
//     (another file, another kind, not atomic), and when the stream ends;
//   - a next part that does not come within atomicGap (bulkTimeout) ends
//     it too: the lock goes, a warning is logged, and the part that comes
//     later fails with ETIMEDOUT, so the call reports that it was not one
//     unit.
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
// applying; only the stream's worker touches it.
type atomicGroup struct {
	f     *file
	id    uint64 // the handle the parts name
	write bool   // held exclusively
	more  bool   // the last part applied said more parts follow
	err   error  // the lock was let go (atomicGap): the next part fails with it
}

// continuedBy reports whether r is the next part of the group.
func (g *atomicGroup) continuedBy(r *request) bool {
	if r.err != nil {
		return false
	}
	switch d := r.desc.(type) {
	case *wire.Write:
		return g.write && d.File == g.id && d.Flags&wire.IOAtomic != 0
	case *wire.Read:
		return !g.write && d.File == g.id && d.Flags&wire.IOAtomic != 0
	}
	return false
}

// atomicEnter takes f's atomic lock for an atomic request (a write if
// write) of handle id, or finds it held by the request's group. On
// success the handler calls atomicLeave once done with the file.
func (st *stream) atomicEnter(f *file, id uint64, write bool, flags uint32) error {
	more := flags&wire.IOMore != 0
	if g := st.atom; g != nil { // the worker ended any group r does not continue
		if g.err != nil {
			st.atom = nil
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
	st.atomBuf = atomicGroup{f: f, id: id, write: write, more: more}
	st.atom = &st.atomBuf
	return nil
}

// atomicLeave ends the request's hold on the lock: the group goes on only
// if the request said more parts follow and end is false (the request
// failed, or a read reached the end of file).
func (st *stream) atomicLeave(end bool) {
	if g := st.atom; g != nil && g.err == nil && (end || !g.more) {
		st.atomEnd()
	}
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
// reader is done. While a group waits for its next part, the wait is
// bounded by atomicGap.
func (st *stream) nextRequest() (r *request, ok bool) {
	g := st.atom
	if g == nil || g.err != nil {
		r, ok = <-st.q
		return r, ok
	}
	t := time.NewTimer(atomicGap)
	defer t.Stop()
	select {
	case r, ok = <-st.q:
		return r, ok
	case <-t.C:
	}
	g.unlock()
	g.err = wire.Errorf(wire.ETIMEDOUT, "%s: the next part of an atomic call did not come within %v; the call was not applied as one unit",
		g.f.path, atomicGap)
	st.ss.srv.stats.atomicGaps.Add(1)
	st.ss.log.Warn("atomic call's next part late: lock released", "file", g.f.path, "after", atomicGap)
	r, ok = <-st.q
	return r, ok
}
