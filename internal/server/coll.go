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
	done    chan struct{}
}

// arrive records one rank's marker of the collective tag names and waits,
// up to timeout, until all tag.Size ranks' markers have arrived; it calls
// beforeWait first when it has to wait. It gives up with ESHUTDOWN when
// stop closes (the session ends, or the server shuts down: a drain must
// not wait a collective timeout for ranks that will not come).
func (c *colls) arrive(tag wire.CollTag, timeout time.Duration, beforeWait func(), stop <-chan struct{}) error {
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
		w = &collWait{done: make(chan struct{})}
		g[seq] = w
	}
	w.arrived++
	if w.arrived >= size {
		close(w.done)
		delete(g, seq)
		if len(g) == 0 {
			delete(c.groups, group)
		}
		c.mu.Unlock()
		return nil
	}
	arrived := w.arrived
	c.mu.Unlock()
	beforeWait()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-w.done:
		return nil
	case <-t.C:
		if c.leave(group, seq, w) {
			return nil
		}
		return wire.Errorf(wire.ETIMEDOUT, "collective %d: only %d of %d ranks reached it within %s", seq, arrived, size, timeout)
	case <-stop:
		if c.leave(group, seq, w) {
			return nil
		}
		return wire.Errorf(wire.ESHUTDOWN, "collective %d: %d of %d ranks had reached it when the session or server ended", seq, arrived, size)
	}
}

// leave takes back a marker whose wait gave up, so that a rank arriving
// later waits for it again (and fails too, as every rank of a failed
// collective must) instead of counting it, and the record goes once no
// marker is left in it. It reports true if the collective completed in
// the meantime: then the wait succeeded after all.
func (c *colls) leave(group, seq int64, w *collWait) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	select {
	case <-w.done:
		return true
	default:
	}
	w.arrived--
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

// collEnd serves an end marker.
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
	// The replies held for this stream's earlier requests (stream.serve
	// sends a batch's replies at its end) go out before the wait: the
	// rank's fence inside the collective waits for its writes before the
	// pieces, not for the other ranks (client.FenceScoped).
	flush := func() { st.sendReplies() }
	if err := hd.f.colls.arrive(ce.CollTag, s.cfg.CollTimeout, flush, st.ss.closing); err != nil {
		return fail(fmt.Errorf("%s: %w", hd.f.path, err))
	}
	s.stats.collEnds.Add(1)
	return wire.Reply{}, nil
}
