package server

import (
	"testing"
	"time"

	"github.com/delegate-io/delegate/internal/wire"
)

// TestBulkMem: buffers come out of the share, kept ones are reused or give
// their room, one larger than the share is admitted alone, and a request
// that finds no room waits until a buffer comes back, the session closes
// (ECONNLOST) or bulkMemWait passes (EAGAIN).
func TestBulkMem(t *testing.T) {
	old := bulkMemWait
	bulkMemWait = 50 * time.Millisecond
	defer func() { bulkMemWait = old }()
	never := make(chan struct{})
	closed := make(chan struct{})
	close(closed)

	m := newBulkMem(4 << 20)
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
	if b, _ := m.get(1<<20, never); cap(b) != 6<<20 {
		t.Fatalf("a kept buffer was not reused: capacity %d", cap(b))
	}
}
