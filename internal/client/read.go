package client

import (
	"errors"
	"fmt"

	"github.com/delegate-io/delegate/internal/shm"
	"github.com/delegate-io/delegate/internal/wire"
)

// reader runs one Read: the extent list is cut into windows small enough
// that each server's share fits one request (and one ring slot); each
// window is sent to every owner at once, then its pieces are copied into
// memory in list order.
type reader struct {
	f      *File
	flags  uint32
	tag    wire.CollTag
	pieces []rpiece
	// In atomic mode, ag is the call's id (File.atomicCall) and more says
	// that the window being read is not the call's last: its request
	// carries wire.IOMore, so that the server applies the call's windows
	// as one unit.
	ag   uint64
	more bool
}

// rpiece is a piece of the list: n bytes at file offset off, found at pos
// in the data of request c.
type rpiece struct {
	c           *call
	pos, off, n int64
}

// run reads the extents ext, of total bytes, into mem.
func (r *reader) run(mem [][]byte, ext []Extent, total int64) (int64, error) {
	f := r.f
	window := f.cl.cfg.MaxRequestBytes
	for _, s := range f.sess {
		window = min(window, f.maxChunk(s))
	}
	cur := memCursor{mem: mem}
	var got int64
	maxExt := len(ext)
	for len(ext) > 0 {
		win, rest := cutWindow(ext, window, maxExt)
		var winBytes int64
		for _, e := range win {
			winBytes += e.Len
		}
		// Bytes, not extents, after this window: zero-length extents left
		// over send nothing, and a part flagged IOMore with no part after
		// it would keep the server's lock waiting (found in review).
		r.more = r.flags&wire.IOAtomic != 0 && total-winBytes > 0
		n, short, err := r.window(win, &cur)
		if errors.Is(err, errTooManyRuns) {
			// Nothing was sent: the window again, in halves (of its
			// extents; one extent that the servers' regions cut into more
			// runs than that, of its bytes).
			if len(win) > 1 {
				maxExt = len(win) / 2
			} else {
				window = max(1, window/2)
			}
			continue
		}
		ext, total = rest, total-winBytes
		got += n
		if err != nil {
			return got, err
		}
		if short {
			break
		}
	}
	return got, nil
}

// ringSlots takes a ring slot of totals[i] bytes on each server i with a
// ring and bytes in the window, all or none: when one ring is full it lets
// the others go, sends the client's corked batches (another file's hold
// ring space too, until they are sent: found in review), waits for that
// ring's space and tries again.
func (r *reader) ringSlots(totals []int64) ([]*shm.Slot, error) {
	f := r.f
	slots := make([]*shm.Slot, len(totals))
	for {
		missing := -1
		for i, t := range totals {
			if t > 0 && f.sess[i].ring != nil && slots[i] == nil {
				if slots[i] = f.sess[i].ring.TryAlloc(uint64(t)); slots[i] == nil {
					missing = i
					break
				}
			}
		}
		if missing < 0 {
			return slots, nil
		}
		for i, sl := range slots {
			if sl != nil {
				f.sess[i].ring.Free(sl)
				slots[i] = nil
			}
		}
		sl, err := f.sess[missing].ring.AllocKick(uint64(totals[missing]), f.cl.corkKicker())
		if err != nil {
			return nil, err
		}
		slots[missing] = sl
	}
}

// errTooManyRuns: a window's request to some server would have more than
// wire.MaxRequestRuns runs in its extent list (servers refuse it); the
// window is cut smaller and tried again.
var errTooManyRuns = errors.New("too many runs for one request")

// cutWindow splits off a prefix of ext holding at most limit bytes and
// maxExt extents.
func cutWindow(ext []Extent, limit int64, maxExt int) (win, rest []Extent) {
	var sum int64
	for i, e := range ext {
		if i == maxExt {
			return ext[:i], ext[i:]
		}
		if sum+e.Len > limit {
			k := limit - sum
			if k == 0 {
				return ext[:i], ext[i:]
			}
			win = append(append([]Extent(nil), ext[:i]...), Extent{e.Off, k})
			rest = append([]Extent{{e.Off + k, e.Len - k}}, ext[i+1:]...)
			return win, rest
		}
		sum += e.Len
	}
	return ext, nil
}

func (r *reader) window(win []Extent, cur *memCursor) (got int64, short bool, err error) {
	f := r.f
	totals, _ := f.perServer(win, r.flags)
	flags := r.flags
	if r.more {
		flags |= wire.IOMore
	}
	// calls[i] is server i's request; a bulk read large enough is cut into
	// parts (parts[i], calls[i] the first), each on its own bulk
	// connection, received at once by as many goroutines (recvParts).
	calls := make([]*call, len(totals))
	parts := make([][]*call, len(totals))
	defer func() {
		for i, c := range calls {
			if c != nil && c.slot != nil {
				f.sess[i].ring.Free(c.slot)
			}
			for _, c := range parts[i] {
				if c.viaBulk {
					clear(c.iov) // no reference to the caller's memory stays behind
				}
				if c.bulk != nil { // not submitted (an earlier part failed)
					f.sess[i].putBulk(c.bulk)
					c.bulk = nil
				}
			}
		}
	}()
	partLen := make([]int64, len(totals))
	// Ring slots first, bulk connections after: a reader never holds bulk
	// connections while it waits for ring space, since a writer may hold a
	// ring slot while it waits for a bulk connection. And the ring slots
	// all or none: a reader that waited for one ring's space holding
	// another's slot, unsent, waited for ever for a writer of the same
	// process that held the first ring's space the other way round (a ring
	// reuses space in order only; found in review).
	slots, err := r.ringSlots(totals)
	if err != nil {
		return 0, false, err
	}
	for pass := 0; pass < 2; pass++ {
		for i, t := range totals {
			if t == 0 || (f.sess[i].ring != nil) != (pass == 0) {
				continue
			}
			s := f.sess[i]
			c := newCall(wire.TRead, &wire.Read{File: f.ids[i], AG: r.ag})
			c.file, c.flags, c.coll = f, flags, r.tag
			calls[i], parts[i] = c, []*call{c}
			if s.ring != nil {
				slot := slots[i]
				c.slot = slot
				c.data = s.shmem.slice(s.ring.Off(slot), slot.Len())
			} else if s.useBulk(t) {
				// An atomic read's window is one request (not cut in parts
				// on several connections, which the server would serve in
				// any order): a call of several windows is one unit by
				// wire.IOMore, which needs its parts in the stream's order.
				conns, err := s.takeBulkParts(t, r.flags&wire.IOAtomic == 0)
				if err != nil {
					return 0, false, err
				}
				c.viaBulk, c.bulk = true, conns[0] // received straight into the caller's memory (recvBulk)
				for _, b := range conns[1:] {
					p := newCall(wire.TRead, &wire.Read{File: f.ids[i]})
					p.file, p.flags, p.coll = f, flags, r.tag
					p.viaBulk, p.bulk = true, b
					parts[i] = append(parts[i], p)
				}
				partLen[i] = (t + int64(len(conns)) - 1) / int64(len(conns))
			} else {
				c.inline, c.data = true, make([]byte, t)
			}
		}
	}
	r.pieces = r.pieces[:0]
	// mc: where each piece lands in the caller's memory, for bulk reads;
	// next: the part being filled, per server.
	mc := *cur
	next := make([]int, len(totals))
	for _, e := range win {
		f.split(r.flags, e.Off, e.Len, func(s int, off, n int64) {
			for n > 0 {
				c, k := parts[s][next[s]], n
				if next[s] < len(parts[s])-1 {
					k = min(n, partLen[s]-c.filled)
					if k == 0 {
						next[s]++
						continue
					}
				}
				c.ext.Add(off, k)
				r.pieces = append(r.pieces, rpiece{c: c, pos: c.filled, off: off, n: k})
				c.filled += k
				for left := k; left > 0; {
					b := mc.next(left)
					if c.viaBulk {
						c.iov = append(c.iov, b)
					}
					left -= int64(len(b))
				}
				off, n = off+k, n-k
			}
		})
	}
	for i := range calls {
		for _, c := range parts[i] {
			if c.ext.Runs() > wire.MaxRequestRuns {
				return 0, false, errTooManyRuns // the deferred cleanup frees what was taken
			}
		}
	}
	for i := range calls {
		for _, c := range parts[i] {
			switch {
			case c.viaBulk:
				f.sess[i].startBulkRead(c)
			default:
				f.sess[i].submit(c)
			}
		}
	}
	// The data on the bulk connections comes before the replies. A failed
	// receive fails the read even when its reply already came: the caller's
	// memory does not hold the data.
	for i := range calls {
		if e := f.sess[i].recvParts(parts[i]); e != nil && err == nil {
			err = fmt.Errorf("read %s: %w", f.path, e)
		}
	}
	// The end of file: every server that answered knows its own part; if
	// one of them stopped short, others may hold data beyond what it knows.
	var eof int64
	for i := range calls {
		for _, c := range parts[i] {
			if e := c.wait(); e != nil && err == nil {
				err = fmt.Errorf("read %s: %w", f.path, e)
			}
			if c.viaBulk && err == nil && c.bulkGot < c.rep.N {
				err = wire.Errorf(wire.EPROTO, "read %s: the server sent %d bytes on its bulk connection for %d below its end of file",
					f.path, c.bulkGot, c.rep.N)
			}
			eof = max(eof, c.rep.Size)
			short = short || c.rep.N < c.filled
		}
	}
	if err != nil {
		return 0, false, err
	}
	if short && len(f.sess) > 1 {
		size, err := f.statAll()
		if err != nil {
			return 0, false, err
		}
		eof = max(eof, size)
	}
	// Servers zero what lies past their end of file, so the bytes below eof
	// are right as they stand. A bulk read's bytes are in place already, up
	// to what its server sent (its own end of file); below eof the rest are
	// zeros.
	for _, p := range r.pieces {
		below := min(p.n, max(0, eof-p.off))
		if p.c.viaBulk {
			in := min(below, max(0, p.c.bulkGot-p.pos))
			cur.skip(in)
			cur.zero(below - in)
		} else {
			cur.scatter(p.c.data[p.pos : p.pos+below])
		}
		got += below
		if below < p.n {
			return got, true, nil
		}
	}
	return got, false, nil
}
