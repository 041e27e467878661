package server

import (
	"testing"
	"time"
)

// TestStallMark: the flusher drops kept data only for a writer that
// stalled since its last pass and still needs room (dropKeptForMemory):
// a stall that flushes resolved is settled at the end of the pass and
// never counts later; one still waiting at the end of a pass does.
func TestStallMark(t *testing.T) {
	b := newBudget(100, 50, func() {})
	waiters := func() int {
		b.mu.Lock()
		defer b.mu.Unlock()
		return b.waiting
	}
	stall := func() chan error {
		done := make(chan error, 1)
		go func() { done <- b.acquire(60, func() error { return nil }) }()
		for deadline := time.Now().Add(10 * time.Second); waiters() == 0; {
			if time.Now().After(deadline) {
				t.Fatal("the writer never waited")
			}
			time.Sleep(time.Millisecond) // polling a bounded condition
		}
		return done
	}
	if err := b.acquire(60, func() error { return nil }); err != nil {
		t.Fatal(err)
	}
	var mark int64

	// A stall that a flush resolves before the pass ends.
	done := stall()
	b.release(60)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	b.settleMark(&mark)
	if b.stalledSince(&mark) {
		t.Fatal("a stall resolved in an earlier pass counted at a later drop decision")
	}

	// A writer still waiting at the end of a pass stays counted.
	done = stall()
	b.settleMark(&mark)
	if !b.stalledSince(&mark) {
		t.Fatal("a writer waiting at the end of the pass was not counted")
	}
	b.release(60)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
