package shm

import (
	"sync"
	"sync/atomic"
)

// Ring allocates slots of a region in FIFO order for one client session.
// Slots are freed in any order; space is reused once every older slot is
// free, which matches how replies come back (nearly in order). Safe for
// concurrent use.
type Ring struct {
	mu     sync.Mutex
	cond   sync.Cond
	base   uint64 // where the ring starts in the region
	size   uint64
	head   uint64  // monotonic position of the next allocation
	tail   uint64  // monotonic position of the oldest live slot
	slots  []*Slot // live slots, oldest first
	err    error   // set by Close: every waiter returns it
	waits  int64   // allocations that had to wait (stats)
	nAlloc int64
	// beforeWait, if set, runs with mu held just before an allocation
	// waits: a test learns that a waiter is blocked (cond.Wait releases
	// mu only once it waits) without sleeping.
	beforeWait func()
	// waiting counts the allocations waiting in AllocKick (read without
	// mu by Wake).
	waiting atomic.Int64
}

// Slot is an allocated piece of the ring.
type Slot struct {
	start uint64 // monotonic position, padding included
	data  uint64 // monotonic position of the data
	end   uint64
	freed bool
}

// Off returns the slot's offset in the region.
func (r *Ring) Off(s *Slot) uint64 { return r.base + s.data%r.size }

// Len returns the slot's length.
func (s *Slot) Len() uint64 { return s.end - s.data }

// NewRing returns an allocator over size bytes of a region, from base.
func NewRing(base, size uint64) *Ring {
	r := &Ring{base: base, size: size}
	r.cond.L = &r.mu
	return r
}

// Size returns the region size.
func (r *Ring) Size() uint64 { return r.size }

// MaxSlot is the largest slot Alloc accepts; larger transfers are split.
func (r *Ring) MaxSlot() uint64 { return r.size / 2 }

// Alloc returns a slot of n bytes (0 < n <= MaxSlot), waiting while the ring
// is full. A slot never wraps: the unusable end of the ring is padding
// owned by the slot. It fails only after Close.
func (r *Ring) Alloc(n uint64) (*Slot, error) { return r.AllocKick(n, nil) }

// Kicker is the rule of a waiter whose own held resources may be what it
// waits for (a client's corked batch holds its ring slot or its in-flight
// room until it is sent): before it first waits, and whenever Gen has
// changed since it last looked, it runs Kick, without its lock, which
// sends them. Gen counts the resources so held (a batch corked or grown);
// it is read before Kick runs, so one held after that is seen next time.
// Used by AllocKick and by the client's wait for in-flight room.
type Kicker struct {
	Gen    func() int64
	Kick   func()
	kicked bool
	seen   int64
}

// Due reports whether Kick must run now, and if so records Gen.
func (k *Kicker) Due() bool {
	if g := k.Gen(); !k.kicked || g != k.seen {
		k.kicked, k.seen = true, g
		return true
	}
	return false
}

// Moved reports whether Gen changed since Due recorded it: a waiter that
// counted itself as waiting checks it before it sleeps, so that a wake
// that follows such a change finds it counted.
func (k *Kicker) Moved() bool { return k.Gen() != k.seen }

// AllocKick is Alloc for a client whose own held slots may be what the
// ring waits for: it follows k (nil: it only waits, as Alloc), woken by
// Wake when a slot is held anew.
func (r *Ring) AllocKick(n uint64, k *Kicker) (*Slot, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	waited := false
	for {
		if r.err != nil {
			return nil, r.err
		}
		if s := r.allocLocked(n); s != nil {
			if waited {
				r.waits++
			}
			return s, nil
		}
		if k != nil && k.Due() {
			r.mu.Unlock()
			k.Kick()
			r.mu.Lock()
			continue
		}
		waited = true
		if r.beforeWait != nil {
			r.beforeWait()
		}
		// Counted before Gen is read again: a Wake that follows a change
		// the waiter has not seen finds it counted, and takes mu, which
		// Wait gives up only once asleep.
		r.waiting.Add(1)
		if k != nil && k.Moved() {
			r.waiting.Add(-1)
			continue
		}
		r.cond.Wait()
		r.waiting.Add(-1)
	}
}

// Wake wakes the allocations waiting in AllocKick, so that they look at
// their gen again; it costs one atomic load when none waits.
func (r *Ring) Wake() {
	if r.waiting.Load() == 0 {
		return
	}
	r.mu.Lock()
	r.cond.Broadcast()
	r.mu.Unlock()
}

// TryAlloc is Alloc without waiting: it returns nil if the ring is full.
func (r *Ring) TryAlloc(n uint64) *Slot {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err != nil {
		return nil
	}
	return r.allocLocked(n)
}

func (r *Ring) allocLocked(n uint64) *Slot {
	pos := r.head % r.size
	pad := uint64(0)
	if pos+n > r.size {
		pad = r.size - pos
	}
	if r.size-(r.head-r.tail) < pad+n {
		return nil
	}
	s := &Slot{start: r.head, data: r.head + pad, end: r.head + pad + n}
	r.head = s.end
	r.slots = append(r.slots, s)
	r.nAlloc++
	return s
}

// Grow extends s by n bytes if s is the newest slot and the space right
// after it is free without wrapping. It never waits.
func (r *Ring) Grow(s *Slot, n uint64) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err != nil || s.freed || s.end != r.head {
		return false
	}
	pos := r.head % r.size
	if pos == 0 || pos+n > r.size || r.size-(r.head-r.tail) < n || s.Len()+n > r.size/2 {
		return false
	}
	s.end += n
	r.head += n
	return true
}

// Free releases s; the space is reused once every older slot is free too.
func (r *Ring) Free(s *Slot) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if s.freed {
		return
	}
	s.freed = true
	i := 0
	for i < len(r.slots) && r.slots[i].freed {
		r.tail = r.slots[i].end
		i++
	}
	if i > 0 {
		n := copy(r.slots, r.slots[i:])
		clear(r.slots[n:])
		r.slots = r.slots[:n]
		if len(r.slots) == 0 {
			r.tail = r.head
		}
		r.cond.Broadcast()
	}
}

// Used returns the bytes between the oldest live slot and the head.
func (r *Ring) Used() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.head - r.tail
}

// Close wakes every waiter with err and makes later allocations fail.
func (r *Ring) Close(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err == nil {
		r.err = err
	}
	r.cond.Broadcast()
}
