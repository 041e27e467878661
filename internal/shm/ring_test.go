package shm

import (
	"errors"
	"math/rand/v2"
	"sync/atomic"
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

// TestRingWakesBlockedWaiter: an allocation that waits for space is
// blocked (it reached the condition's wait, seen through beforeWait, not
// guessed with a sleep) and is woken by the event that frees the space, or
// by Close; freeing a slot that is not the oldest frees nothing yet. If the
// wake-up were missing, the waiter would stay blocked and the test fails
// after its timeout instead of passing.
func TestRingWakesBlockedWaiter(t *testing.T) {
	closed := errors.New("session closed")
	for _, c := range []struct {
		name string
		wake func(r *Ring, older, newer *Slot, got chan error)
		want error
	}{
		{"the oldest slot freed", func(r *Ring, older, newer *Slot, got chan error) {
			r.Free(newer) // not the oldest: no space yet
			select {
			case err := <-got:
				t.Errorf("the waiter returned (%v) when a slot that is not the oldest was freed", err)
			default:
			}
			r.Free(older)
		}, nil},
		{"close", func(r *Ring, _, _ *Slot, _ chan error) { r.Close(closed) }, closed},
	} {
		t.Run(c.name, func(t *testing.T) {
			ring := NewRing(0, 1024)
			older, _ := ring.Alloc(512)
			newer, _ := ring.Alloc(512)
			blocked := make(chan struct{}, 1)
			ring.beforeWait = func() {
				select {
				case blocked <- struct{}{}:
				default:
				}
			}
			got := make(chan error, 1)
			go func() {
				_, err := ring.Alloc(100)
				got <- err
			}()
			select {
			case <-blocked:
			case err := <-got:
				t.Fatalf("an allocation in a full ring returned at once (%v)", err)
			case <-time.After(10 * time.Second):
				t.Fatal("the allocation never waited")
			}
			// The waiter is inside cond.Wait now: beforeWait ran under the
			// lock that Wait releases, and wake takes it.
			c.wake(ring, older, newer, got)
			select {
			case err := <-got:
				if !errors.Is(err, c.want) {
					t.Fatalf("the woken waiter got %v, want %v", err, c.want)
				}
			case <-time.After(10 * time.Second):
				ring.Close(errors.New("test over")) // let the goroutine go
				<-got
				t.Fatal("the blocked waiter was not woken")
			}
			if ring.waits != 1 && c.want == nil {
				t.Fatalf("%d allocations counted as waited, want 1", ring.waits)
			}
		})
	}
}

// TestRingAllocKickSendsHeldSlots: an allocation that must wait first runs
// kick (the client sends its corked batches, whose slots it would
// otherwise wait for), and runs it again when woken (Wake) after gen
// changed: a slot held after its first kick (another thread's cork) is
// released by the second, and the allocation goes through. Without the
// second kick the waiter stays blocked on a slot nobody releases.
func TestRingAllocKickSendsHeldSlots(t *testing.T) {
	ring := NewRing(0, 4096)
	var gen atomic.Int64
	held := make(chan *Slot, 4) // slots "corked": released by a kick
	kicks := make(chan struct{}, 8)
	kick := func() {
		kicks <- struct{}{}
		for {
			select {
			case s := <-held:
				ring.Free(s)
			default:
				return
			}
		}
	}
	// In flight: x at [2500,3500) and b at [0,1500) (after a wrap); 1,000
	// bytes free, at [1500,2500).
	a, _ := ring.Alloc(2500)
	x, _ := ring.Alloc(1000)
	ring.Free(a)
	b, _ := ring.Alloc(1500)
	blocked := make(chan struct{}, 16)
	ring.beforeWait = func() { blocked <- struct{}{} }
	got := make(chan error, 1)
	go func() {
		_, err := ring.AllocKick(2048, &Kicker{Gen: gen.Load, Kick: kick})
		got <- err
	}()
	wait := func(what string) {
		t.Helper()
		select {
		case <-blocked:
		case err := <-got:
			t.Fatalf("%s: the allocation returned (%v)", what, err)
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: the allocation never waited", what)
		}
	}
	wait("a full ring")
	if len(kicks) != 1 {
		t.Fatalf("%d kicks before the first wait, want 1", len(kicks))
	}
	<-kicks
	// Another thread corks: 900 bytes at [1500,2400), held.
	corked, err := ring.Alloc(900)
	if err != nil {
		t.Fatal(err)
	}
	held <- corked
	// The slots in flight come back; the corked one alone keeps 2,048
	// bytes from fitting (from 2400 to the end, or from 0 to 1500).
	ring.Free(x)
	wait("x freed")
	ring.Free(b)
	wait("b freed")
	if len(kicks) != 0 {
		t.Fatal("kicked again without a change of gen")
	}
	gen.Add(1)
	ring.Wake()
	select {
	case err := <-got:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		ring.Close(errors.New("test over"))
		<-got
		t.Fatal("the allocation still waits for a slot its kick would release")
	}
	if len(kicks) != 1 {
		t.Fatalf("%d kicks after the change of gen, want 1", len(kicks))
	}
}

// Prefault touches pages but changes no byte, in either mode, also on a
// region whose end is not on a page boundary, and through both mappings.
func TestPrefaultKeepsBytes(t *testing.T) {
	for _, size := range []int{pageBytes, 5*pageBytes + 123} {
		r, err := Create("test", size) // Prefault(write) ran on an empty region
		if err != nil {
			t.Fatal(err)
		}
		want := make([]byte, size)
		rng := rand.New(rand.NewPCG(uint64(size), 1))
		for i := range want {
			want[i] = byte(rng.Uint32())
		}
		copy(r.Bytes(), want)
		fd, err := dup(r.FD())
		if err != nil {
			t.Fatal(err)
		}
		a, err := Attach(fd, uint64(size)) // Prefault(read) over the bytes
		if err != nil {
			t.Fatal(err)
		}
		Prefault(r.Bytes(), true)
		Prefault(a.Bytes(), true)
		Prefault(r.Bytes(), false)
		for i, b := range a.Bytes() {
			if b != want[i] {
				t.Fatalf("size %d: byte %d is %#x, want %#x", size, i, b, want[i])
			}
		}
		a.Close()
		r.Close()
	}
	Prefault(nil, true)
}
