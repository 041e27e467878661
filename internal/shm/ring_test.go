package shm

import (
	"errors"
	"math/rand/v2"
	"testing"
	"time"
)

func TestRegionSealedAndShared(t *testing.T) {
	r, err := Create("test", 1<<16)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	// Attach through a dup of the fd, as a server gets it over SCM_RIGHTS.
	fd, err := dup(r.FD())
	if err != nil {
		t.Fatal(err)
	}
	a, err := Attach(fd, 1<<16)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	copy(r.Bytes()[100:], "hello")
	if got, _ := a.Slice(100, 5); string(got) != "hello" {
		t.Fatalf("server sees %q", got)
	}
	if _, ok := a.Slice(1<<16-2, 5); ok {
		t.Fatal("slice past the end accepted")
	}
	fd2, _ := dup(r.FD())
	if _, err := Attach(fd2, 1<<15); err == nil {
		t.Fatal("wrong size accepted")
	}
}

func TestRingNoOverlapRandomFree(t *testing.T) {
	const size = 1 << 12
	ring := NewRing(0, size)
	rnd := rand.New(rand.NewPCG(3, 4))
	owner := make([]int, size) // slot id owning each byte, 0 = free
	var live []*Slot
	ids := map[*Slot]int{}
	next := 1
	for i := 0; i < 20000; i++ {
		// A single goroutine must never wait: free while an allocation
		// (with up to 499 bytes of padding) might not fit.
		if len(live) > 0 && (rnd.IntN(2) == 0 || ring.Used() > size-1100) {
			k := rnd.IntN(len(live))
			s := live[k]
			for j := ring.Off(s); j < ring.Off(s)+s.Len(); j++ {
				owner[j] = 0
			}
			ring.Free(s)
			live = append(live[:k], live[k+1:]...)
			continue
		}
		n := uint64(1 + rnd.IntN(500))
		s, err := ring.Alloc(n)
		if err != nil {
			t.Fatal(err)
		}
		if rnd.IntN(3) == 0 && ring.Grow(s, 7) {
			n += 7
		}
		if s.Len() != n || ring.Off(s)+n > size {
			t.Fatalf("slot %d+%d, want len %d inside the ring", ring.Off(s), s.Len(), n)
		}
		for j := ring.Off(s); j < ring.Off(s)+n; j++ {
			if owner[j] != 0 {
				t.Fatalf("byte %d given to two live slots", j)
			}
			owner[j] = next
		}
		ids[s] = next
		next++
		live = append(live, s)
	}
}

func TestRingWaitsAndClose(t *testing.T) {
	ring := NewRing(0, 1024)
	a, _ := ring.Alloc(512)
	b, _ := ring.Alloc(512)
	got := make(chan error, 1)
	go func() {
		_, err := ring.Alloc(100)
		got <- err
	}()
	select {
	case <-got:
		t.Fatal("allocation in a full ring did not wait")
	case <-time.After(20 * time.Millisecond):
	}
	ring.Free(b) // not the oldest: no space yet
	ring.Free(a)
	if err := <-got; err != nil {
		t.Fatal(err)
	}
	ring.Alloc(900 - 100)
	go func() {
		_, err := ring.Alloc(500)
		got <- err
	}()
	closed := errors.New("session closed")
	time.Sleep(10 * time.Millisecond)
	ring.Close(closed)
	if err := <-got; !errors.Is(err, closed) {
		t.Fatalf("waiter got %v", err)
	}
}
