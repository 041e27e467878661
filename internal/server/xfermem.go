package server

import (
	"slices"
	"sync"
	"time"

	"github.com/delegate-io/delegate/internal/wire"
)

// Transfer memory: what a stream's worker holds of a request's data in
// the heap: bulk receive buffers (bulkRecv: a bulk write's data read into
// memory before the handler places it) and inline read results over 64
// KiB (stream.readBuffer), from the handler until the reply. All of it
// comes out of one share of --buffer, xferShareOf: the write-behind budget
// is --buffer less the chunk pool and this share, so all three together
// stay within --buffer, however many clients and streams there are. A
// separate share, not the budget itself: a stream holds its request's
// data while its write waits in the budget for room, and transfers in the
// budget could fill it with nothing a flush can free.
//
// Only workers wait here, and a worker holds nothing of the share while
// it waits for anything but its own reply's write (budget, a collective's
// other ranks: it takes a bulk buffer or a read's room, uses it, gives it
// back), so no holder needs a waiter to give its room back; a client that
// stops reading its replies loses its stream once a piece of a large reply
// waits bulkTimeout (stream.reply), which gives the read's room back.
// Inline write payloads,
// which a stream's reader reads ahead of its worker, are not counted here
// but bounded per stream (stream.admit): a reader waiting for room
// that requests queued behind a worker hold, or that another stream's
// queued requests hold while that stream's worker waits for this stream's
// collective end marker, would wait for ever.
//
// Bulk receive buffers are held for one request and then kept for the
// next one (free), still counted; read results are the worker's own
// allocations, counted from acquire to release. A
// request that needs room drops kept buffers first, then waits for room to
// come back, bounded by xferWait (then EAGAIN: the data is taken and
// dropped, and only that request fails) and ended by the session's close.
// Waiters are served in their order of arrival: while one waits, a later
// request waits behind it even if it would fit, so a large transfer is not
// starved by a stream of small ones. One transfer larger than the share is
// admitted alone, as the budget admits one request larger than its limit;
// its buffer is not kept (put drops a buffer larger than the share, or any
// while the share is over its limit), and a kept buffer more than twice a
// request's size is dropped rather than lent to it, so that one large
// transfer does not leave the share full of a buffer that small requests
// take one at a time.

// xferShareOf is the part of a --buffer of total bytes for transfers.
func xferShareOf(total int64) int64 { return total / 8 }

type xferMem struct {
	mu      sync.Mutex
	limit   int64
	used    int64    // held and kept buffers' capacity, and acquired bytes
	peak    int64    // most used
	free    [][]byte // kept, by capacity, smallest first
	queue   []*int   // waiting requests, first come first
	changed chan struct{}
	waits   int64 // requests that waited for room
}

func newXferMem(limit int64) *xferMem {
	return &xferMem{limit: limit, changed: make(chan struct{})}
}

// xferWait bounds a wait for room (a variable for tests).
var xferWait = 30 * time.Second

// get returns a buffer of n bytes, counted until put. It waits while the
// share is full or earlier requests wait, until closing is closed or
// xferWait passed (EAGAIN).
func (m *xferMem) get(n int, closing <-chan struct{}) ([]byte, error) {
	var b []byte
	err := m.wait(closing, func() (ok bool) {
		b, ok = m.take(n)
		return ok
	})
	return b, err
}

// acquire counts n bytes the caller allocates itself (a read's result)
// until release gives them back; it waits as get does.
func (m *xferMem) acquire(n int64, closing <-chan struct{}) error {
	return m.wait(closing, func() bool { return m.room(n) })
}

// release gives back n bytes counted by acquire.
func (m *xferMem) release(n int64) {
	if n == 0 {
		return
	}
	m.mu.Lock()
	m.used -= n
	m.wake()
	m.mu.Unlock()
}

// wait calls try, under mu, until it succeeds in its turn: at once if
// nobody waits, else when it is first in line.
func (m *xferMem) wait(closing <-chan struct{}, try func() bool) error {
	var timer *time.Timer
	var me *int // in m.queue while waiting
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	m.mu.Lock()
	for {
		if len(m.queue) == 0 || m.queue[0] == me {
			if try() {
				if me != nil {
					m.leave(me)
				}
				m.mu.Unlock()
				return nil
			}
		}
		ch := m.changed
		first := timer == nil
		if first {
			m.waits++
			me = new(int)
			m.queue = append(m.queue, me)
			timer = time.NewTimer(xferWait)
		}
		m.mu.Unlock()
		if first && xferWaitHook != nil {
			xferWaitHook()
		}
		var err error
		select {
		case <-ch:
		case <-closing:
			err = wire.Errorf(wire.ECONNLOST, "session closed while waiting for transfer memory")
		case <-timer.C:
			err = wire.Errorf(wire.EAGAIN, "the server's transfer memory (%d bytes) stayed full for %v", m.limit, xferWait)
		}
		m.mu.Lock()
		if err != nil {
			m.leave(me)
			m.mu.Unlock()
			return err
		}
	}
}

// take returns a buffer of n bytes if there is room: a kept one of at
// most 2n bytes, else a new one, after kept buffers gave their room. The
// caller holds mu.
func (m *xferMem) take(n int) ([]byte, bool) {
	if i := m.fit(n); i >= 0 {
		b := m.free[i]
		if cap(b) <= 2*n {
			m.free = slices.Delete(m.free, i, i+1)
			return b[:n], true
		}
	}
	if m.room(int64(n)) {
		return make([]byte, n), true
	}
	return nil, false
}

// room counts n more bytes if they fit, after kept buffers gave their
// room, largest first (those that fit are too large to lend). The caller
// holds mu.
func (m *xferMem) room(n int64) bool {
	for len(m.free) > 0 && m.used > 0 && m.used+n > m.limit {
		m.dropLast()
	}
	if m.used == 0 || m.used+n <= m.limit {
		m.used += n
		m.peak = max(m.peak, m.used)
		return true
	}
	return false
}

// dropLast drops the largest kept buffer. The caller holds mu.
func (m *xferMem) dropLast() {
	last := len(m.free) - 1
	m.used -= int64(cap(m.free[last]))
	m.free[last] = nil
	m.free = m.free[:last]
}

// leave takes a waiter out of the queue and wakes the others (the next
// one may be served now). The caller holds mu.
func (m *xferMem) leave(me *int) {
	if i := slices.Index(m.queue, me); i >= 0 {
		m.queue = slices.Delete(m.queue, i, i+1)
	}
	m.wake()
}

// wake tells waiters that something changed. The caller holds mu.
func (m *xferMem) wake() {
	close(m.changed)
	m.changed = make(chan struct{})
}

// fit returns the index of the smallest kept buffer of at least n bytes,
// or -1. The caller holds mu.
func (m *xferMem) fit(n int) int {
	i, _ := slices.BinarySearchFunc(m.free, n, func(b []byte, n int) int { return cap(b) - n })
	if i < len(m.free) {
		return i
	}
	return -1
}

// put gives b back: it is kept for the next request, still counted;
// unless it is larger than the share or the share is over its limit (an
// oversized transfer was admitted alone): then its room is given back.
func (m *xferMem) put(b []byte) {
	if b == nil {
		return
	}
	b = b[:cap(b)]
	m.mu.Lock()
	if int64(len(b)) > m.limit || m.used > m.limit {
		m.used -= int64(len(b))
	} else {
		i, _ := slices.BinarySearchFunc(m.free, len(b), func(x []byte, n int) int { return cap(x) - n })
		m.free = slices.Insert(m.free, i, b)
	}
	m.wake()
	m.mu.Unlock()
}

// xferWaitHook, when set (tests), runs when a request starts waiting
// for room.
var xferWaitHook func()

type xferMemStats struct{ used, peak, limit, waits int64 }

func (m *xferMem) stats() xferMemStats {
	m.mu.Lock()
	defer m.mu.Unlock()
	return xferMemStats{m.used, m.peak, m.limit, m.waits}
}
