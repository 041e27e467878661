package server

import (
	"errors"
	"testing"
	"time"

	"github.com/delegate-io/delegate/internal/wire"
)

// TestCollWaitEnds: an end marker waiting for ranks that will not come
// ends when its session or the server closes (stop), with ESHUTDOWN, and
// at its timeout with ETIMEDOUT; a complete collective ends at once. A
// drain used to wait the whole collective timeout (a minute) for such a
// marker (seen as TestMutatedFrameStorm's shutdown running out of time).
func TestCollWaitEnds(t *testing.T) {
	for _, c := range []struct {
		name    string
		ranks   int32 // markers that arrive (the last one waited for)
		timeout time.Duration
		stop    bool
		want    error
	}{
		{"complete", 2, time.Hour, false, nil},
		{"stopped", 1, time.Hour, true, wire.ESHUTDOWN},
		{"timed out", 1, 10 * time.Millisecond, false, wire.ETIMEDOUT},
	} {
		t.Run(c.name, func(t *testing.T) {
			var cs colls
			tag := wire.CollTag{Seq: 1, Size: 2}
			stop := make(chan struct{})
			applied := make(chan int, 1)
			apply := func(r [][]*collPiece) { applied <- len(r) } // by whichever rank completes it
			if c.ranks == 2 {
				go cs.arrive(wire.CollTag{Seq: 1, Rank: 1, Size: 2}, time.Hour, func() {}, nil, nil, apply)
			}
			waiting := make(chan struct{})
			done := make(chan error, 1)
			mine := []*collPiece{{}}
			go func() {
				taken, err := cs.arrive(tag, c.timeout, func() { close(waiting) }, stop, mine, apply)
				if taken != (err == nil) {
					t.Errorf("arrive: taken %v with error %v", taken, err)
				}
				done <- err
			}()
			if c.stop {
				<-waiting // it is about to wait: now end the session
				close(stop)
			}
			select {
			case err := <-done:
				if c.want == nil && err != nil || c.want != nil && !errors.Is(err, c.want) {
					t.Fatalf("arrive: %v, want %v", err, c.want)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("arrive still waiting after 10 s")
			}
			if c.want == nil {
				if n := <-applied; n != 1 {
					t.Fatalf("the complete collective applied %d ranks' held pieces, want 1", n)
				}
				return
			}
			// The marker that gave up is taken back: no record is left, and
			// a rank that comes late waits for it again (and fails too)
			// instead of completing the collective alone.
			if n := cs.pending(); n != 0 {
				t.Fatalf("%d collective records left after the wait gave up", n)
			}
			_, late := cs.arrive(wire.CollTag{Seq: 1, Rank: 1, Size: 2}, 10*time.Millisecond, func() {}, nil, nil,
				func([][]*collPiece) { t.Error("a failed collective's pieces were applied") })
			if !errors.Is(late, wire.ETIMEDOUT) {
				t.Fatalf("a late rank's marker: %v, want ETIMEDOUT", late)
			}
			if n := cs.pending(); n != 0 {
				t.Fatalf("%d collective records left after the late rank gave up", n)
			}
		})
	}
}
