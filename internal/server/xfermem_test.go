package server

import (
	"testing"
	"time"

	"github.com/delegate-io/delegate/internal/wire"
)

// TestXferMem: buffers come out of the share, kept ones are reused (if at
// most twice the request) or give their room, one larger than the share is
// admitted alone and not kept, and a request
// that finds no room waits until a buffer comes back, the session closes
// (ECONNLOST) or xferWait passes (EAGAIN).
func TestXferMem(t *testing.T) {
	old := xferWait
	xferWait = 50 * time.Millisecond
	defer func() { xferWait = old }()
	never := make(chan struct{})
	closed := make(chan struct{})
	close(closed)

	m := newXferMem(4 << 20)
	a, err := m.get(3<<20, never)
	if err != nil || len(a) != 3<<20 {
		t.Fatalf("first get: %d bytes, %v", len(a), err)
	}
	tests := []struct {
		name    string
		n       int
		closing chan struct{}
		want    wire.Code
	}{
		{"no room, times out", 2 << 20, never, wire.EAGAIN},
		{"no room, session closes", 2 << 20, closed, wire.ECONNLOST},
		{"fits beside", 1 << 20, never, wire.OK},
	}
	for _, tc := range tests {
		b, err := m.get(tc.n, tc.closing)
		if wire.CodeOf(err) != tc.want {
			t.Fatalf("%s: %v, want %v", tc.name, err, tc.want)
		}
		m.put(b)
	}
	if st := m.stats(); st.used != 4<<20 || st.peak != 4<<20 || st.waits != 2 {
		t.Fatalf("after the table: %+v, want 4 MiB used (held and kept), peak 4 MiB, 2 waits", st)
	}
	// A waiter gets room when a held buffer comes back.
	done := make(chan error)
	go func() {
		b, err := m.get(2<<20, never)
		m.put(b)
		done <- err
	}()
	m.put(a)
	if err := <-done; err != nil {
		t.Fatalf("waiter: %v", err)
	}
	// Kept buffers give their room to one that fits none of them, and one
	// larger than the share is admitted alone.
	big, err := m.get(6<<20, never)
	if err != nil || len(big) != 6<<20 {
		t.Fatalf("a transfer larger than the share: %d bytes, %v", len(big), err)
	}
	if st := m.stats(); st.used != 6<<20 {
		t.Fatalf("with the large one: %d bytes counted, want only it", st.used)
	}
	m.put(big)
	if st := m.stats(); st.used != 0 {
		t.Fatalf("the large one given back: %d bytes still counted, want 0 (not kept)", st.used)
	}
	// Two small requests at once after it: neither takes a large buffer,
	// neither waits.
	waits := m.stats().waits
	s1, err1 := m.get(64<<10, never)
	s2, err2 := m.get(64<<10, never)
	if err1 != nil || err2 != nil || cap(s1) != 64<<10 || cap(s2) != 64<<10 {
		t.Fatalf("two small requests after a large one: capacities %d, %d, errors %v, %v", cap(s1), cap(s2), err1, err2)
	}
	m.put(s1)
	m.put(s2)
	// A kept buffer more than twice a request's size is not lent to it.
	mid, _ := m.get(2<<20, never)
	m.put(mid)
	if b, _ := m.get(64<<10, never); cap(b) != 64<<10 {
		t.Fatalf("a small request got a kept buffer of %d bytes", cap(b))
	} else {
		m.put(b)
	}
	if b, _ := m.get(1<<20+1, never); cap(b) != 2<<20 {
		t.Fatalf("a kept buffer within twice the request was not reused: capacity %d", cap(b))
	} else {
		m.put(b)
	}
	if st := m.stats(); st.waits != waits || st.used > st.limit {
		t.Fatalf("after the small requests: %+v, want %d waits and used within the limit", st, waits)
	}
}

// TestXferMemFIFO: a request that waits for room is served before later
// ones that would fit: small requests arriving after a large one wait
// behind it.
func TestXferMemFIFO(t *testing.T) {
	old := xferWait
	xferWait = 10 * time.Second
	defer func() { xferWait = old }()
	never := make(chan struct{})
	m := newXferMem(4 << 20)
	held, err := m.get(3<<20, never)
	if err != nil {
		t.Fatal(err)
	}
	waiting := make(chan struct{}, 2)
	oldHook := xferWaitHook
	xferWaitHook = func() { waiting <- struct{}{} }
	defer func() { xferWaitHook = oldHook }()
	large := make(chan []byte, 1)
	go func() {
		b, _ := m.get(2<<20, never)
		large <- b
	}()
	<-waiting
	// A small one fits beside the held buffer, but the large one came
	// first: it waits.
	small := make(chan []byte, 1)
	go func() {
		b, _ := m.get(512<<10, never)
		small <- b
	}()
	select {
	case b := <-small:
		t.Fatalf("a later small request (%d bytes) was served while a large one waited", len(b))
	case <-waiting:
	case <-time.After(5 * time.Second):
		t.Fatal("the small request neither waited nor was served")
	}
	m.put(held)
	m.put(<-large)
	m.put(<-small)
	if st := m.stats(); st.waits != 2 || st.used > st.limit {
		t.Fatalf("after both: %+v, want 2 waits, used within the limit", st)
	}
}

// TestXferMemAcquire: bytes counted by acquire share the limit and the
// line with buffers: they take room from kept buffers, wait in turn for
// room, time out (EAGAIN), and release wakes a waiter; one count larger
// than the share is admitted alone.
func TestXferMemAcquire(t *testing.T) {
	old := xferWait
	xferWait = 50 * time.Millisecond
	defer func() { xferWait = old }()
	never := make(chan struct{})
	m := newXferMem(4 << 20)
	kept, _ := m.get(2<<20, never)
	m.put(kept) // kept: counted until someone needs its room
	if err := m.acquire(3<<20, never); err != nil {
		t.Fatalf("acquire beside a kept buffer: %v (the kept one gives its room)", err)
	}
	if st := m.stats(); st.used != 3<<20 {
		t.Fatalf("after acquire: %d bytes counted, want 3 MiB (the kept buffer dropped)", st.used)
	}
	if err := m.acquire(2<<20, never); wire.CodeOf(err) != wire.EAGAIN {
		t.Fatalf("acquire without room: %v, want EAGAIN", err)
	}
	if _, err := m.get(2<<20, never); wire.CodeOf(err) != wire.EAGAIN {
		t.Fatalf("get without room: %v, want EAGAIN", err)
	}
	done := make(chan error, 1)
	xferWait = 10 * time.Second
	go func() { done <- m.acquire(2<<20, never) }()
	m.release(3 << 20)
	if err := <-done; err != nil {
		t.Fatalf("waiter after release: %v", err)
	}
	m.release(2 << 20)
	if err := m.acquire(9<<20, never); err != nil {
		t.Fatalf("a count larger than the share, alone: %v", err)
	}
	m.release(9 << 20)
	if st := m.stats(); st.used != 0 || st.peak != 9<<20 {
		t.Fatalf("at the end: %+v, want nothing counted and a 9 MiB peak", st)
	}
}
