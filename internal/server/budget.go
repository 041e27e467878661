package server

import (
	"sync"
	"time"
)

// budget bounds the memory all write-behind buffers hold together
// (Config.BufferBytes). Above the high-water mark the flusher is woken; at
// the limit a writer waits on a condition until flushes free space, which
// stops its stream from reading and so reaches the client as backpressure.
// Nothing sleeps or polls: every release broadcasts.
type budget struct {
	mu    sync.Mutex
	cond  sync.Cond
	limit int64
	high  int64
	used  int64
	peak  int64
	stop  bool // shutting down: nobody waits any more
	// waiting counts writers waiting for space: the flusher frees memory
	// for them even below the high-water mark (a request may need more
	// than the room between the mark and the limit).
	waiting int
	// waitRounds counts the times a writer went to wait (stalledSince).
	waitRounds int64

	stalls     int64
	stallNanos int64
	wake       func() // wakes the flusher
	sample     func() // records memory use at a stall (the buffers are full)
}

func newBudget(limit, high int64, wake func()) *budget {
	b := &budget{limit: limit, high: high, wake: wake}
	b.cond.L = &b.mu
	return b
}

// acquire reserves n bytes, waiting while the buffers are full. It gives up
// with abort's error when abort reports one (the bytes could never be
// flushed), and admits a request larger than the limit once the buffers
// are empty, so no request waits for ever. abort runs without the budget's
// lock held (it takes the file's): the predicate is checked again under the
// lock before each wait, so no wakeup is lost.
func (b *budget) acquire(n int64, abort func() error) error {
	var t0 time.Time
	b.mu.Lock()
	defer b.mu.Unlock()
	for b.used > 0 && b.used+n > b.limit && !b.stop {
		first := t0.IsZero()
		if first {
			t0 = time.Now()
			b.stalls++
		}
		b.mu.Unlock()
		if first && b.sample != nil {
			b.sample() // the buffers are full: a good moment to note memory use
		}
		err := abort()
		b.mu.Lock()
		if err != nil {
			return err
		}
		if !(b.used > 0 && b.used+n > b.limit && !b.stop) {
			break
		}
		b.wake()
		b.waiting++
		b.waitRounds++
		b.cond.Wait()
		b.waiting--
	}
	if !t0.IsZero() {
		b.stallNanos += int64(time.Since(t0))
	}
	b.usedLocked(n)
	if b.used > b.high {
		b.wake()
	}
	return nil
}

// tryAcquire reserves n bytes if that needs no wait.
func (b *budget) tryAcquire(n int64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.used > 0 && b.used+n > b.limit && !b.stop {
		return false
	}
	b.usedLocked(n)
	if b.used > b.high {
		b.wake()
	}
	return true
}

// adjust corrects a reservation by delta bytes (positive: more memory was
// allocated than reserved; negative: less).
func (b *budget) adjust(delta int64) {
	if delta == 0 {
		return
	}
	b.mu.Lock()
	b.usedLocked(delta)
	b.mu.Unlock()
	if delta < 0 {
		b.cond.Broadcast()
	}
}

func (b *budget) usedLocked(delta int64) {
	b.used += delta
	b.peak = max(b.peak, b.used)
}

// release returns n bytes and wakes waiting writers.
func (b *budget) release(n int64) { b.adjust(-n) }

// overHigh reports whether the flusher should free memory: above the
// high-water mark, or while a writer waits.
func (b *budget) overHigh() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.used > b.high || b.waiting > 0
}

// stalledSince reports whether a writer went to wait for space since *mark
// was taken, and moves *mark to now. Not the live count of waiters: one
// that a release just woke is still counted until it looks again, though
// it may have its room now; one that finds none goes to wait again, and
// that counts.
func (b *budget) stalledSince(mark *int64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	stalled := b.waitRounds != *mark
	*mark = b.waitRounds
	return stalled
}

// settleMark moves *mark to now when no writer waits: stalls that ended
// (flushes made room) must not count at a later drop decision. A writer
// still waiting keeps its stall counted for the next pass.
func (b *budget) settleMark(mark *int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.waiting == 0 {
		*mark = b.waitRounds
	}
}

// wakeAll makes every waiter re-check (after a flush failed, or at
// shutdown).
func (b *budget) wakeAll(stop bool) {
	b.mu.Lock()
	b.stop = b.stop || stop
	b.mu.Unlock()
	b.cond.Broadcast()
}

type budgetStats struct{ used, peak, limit, stalls, stallNanos int64 }

func (b *budget) stats() budgetStats {
	b.mu.Lock()
	defer b.mu.Unlock()
	return budgetStats{b.used, b.peak, b.limit, b.stalls, b.stallNanos}
}
