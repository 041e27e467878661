package client_test

import (
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/delegate-io/delegate/internal/client"
	"github.com/delegate-io/delegate/internal/testutil"
	"github.com/delegate-io/delegate/internal/wire"
)

// The corked batches a wait for ring space or in-flight room sends
// (shm.Ring.AllocKick, session.reserve): also those corked after the
// waiter first sent them. By review18.

// TestCorkAfterKick: the hang, deterministic, through File.Write and
// File.Read (reader.ringSlots). One server, a 1 MiB ring. An acked write
// puts the ring's head at 700K; corked batches of h1 [700K,1M) and h2
// [0,300K) leave 400K free at [300K,700K). A's 450K (a write or a read of
// f) does not fit: it sends the corked batches. Inside that send
// (corkTakenHook) "thread B" opens g (not in the send's snapshot of open
// files) and corks 400K into [300K,700K). Once h1 and h2 are out, B's
// batch alone keeps A's 450K from fitting (no room after 700K, only 300K
// before). Without a second send A waits for ever.
func TestCorkAfterKick(t *testing.T) {
	const K = 1024
	for _, tc := range []struct {
		name string
		// read: f in atomic mode (no direct read from the backend: the
		// read takes ring space), and the hook skips the read's own
		// f.sendCorked, the first
		read bool
		a    func(f *client.File) error
	}{
		{"write", false, func(f *client.File) error {
			_, err := f.Write([][]byte{make([]byte, 450*K)}, []client.Extent{{Off: 0, Len: 450 * K}}, client.IOOpts{})
			return err
		}},
		{"read", true, func(f *client.File) error {
			_, err := f.Read([][]byte{make([]byte, 450*K)}, []client.Extent{{Off: 0, Len: 450 * K}}, client.IOOpts{})
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := testutil.Start(t, testutil.Options{})
			cl := c.Client(t, func(cfg *client.Config) { cfg.RingBytes = 1 << 20; cfg.LeaseMin = 0 })
			defer cl.Close()
			corked := map[string]string{"delegate_cork": "true"}
			f := open(t, cl, filepath.Join(c.Dir, "f"), wire.ORdwr|wire.OCreat, nil)
			h1 := open(t, cl, filepath.Join(c.Dir, "h1"), wire.ORdwr|wire.OCreat, corked)
			h2 := open(t, cl, filepath.Join(c.Dir, "h2"), wire.ORdwr|wire.OCreat, corked)
			buf := make([]byte, 1<<20)
			w := func(x *client.File, n int, ack bool) error {
				_, err := x.Write([][]byte{buf[:n]}, []client.Extent{{Off: 0, Len: int64(n)}}, client.IOOpts{Ack: ack})
				return err
			}
			for _, err := range []error{
				w(f, 700*K, true),                          // head at 700K, all free
				w(h1, (1<<20)-wire.CtrlBytes-700*K, false), // corked: [700K, end of ring)
				w(h2, 300*K, false),                        // corked: [0, 300K)
			} {
				if err != nil {
					t.Fatal(err)
				}
			}
			if tc.read {
				if err := f.SetAtomic(true); err != nil {
					t.Fatal(err)
				}
			}
			calls, fire := 0, 1
			if tc.read {
				fire = 2
			}
			restore := client.SetCorkTakenHookForTest(func() {
				if calls++; calls != fire {
					return
				}
				g, err := cl.Open(ctx, filepath.Join(c.Dir, "g"), wire.ORdwr|wire.OCreat, 0o644, corked)
				if err == nil {
					err = w(g, 400*K, false)
				}
				if err != nil {
					t.Error(err)
				}
			})
			defer restore()
			done := make(chan error, 1)
			go func() { done <- tc.a(f) }()
			select {
			case err := <-done:
				if err != nil {
					t.Fatal(err)
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("%s A waits for ring space held by a batch corked after its kick", tc.name)
			}
		})
	}
}

// TestCorkedInflight: the same on a session without a ring (TCP, or
// RingBytes 0): a corked inline batch holds its bytes against
// MaxInflightBytes until it is sent. h corks 600K, f writes 700K, limit 1
// MiB: f's write sends h's batch before it waits (one thread). With
// afterKick, inside that first send "thread B" corks 400K of a new file g
// (it fits beside h's 600K, so B does not wait), which alone keeps f's
// 700K from fitting once h's is out: f's write must send again.
func TestCorkedInflight(t *testing.T) {
	for _, afterKick := range []bool{false, true} {
		t.Run(map[bool]string{false: "one thread", true: "corked after the kick"}[afterKick], func(t *testing.T) {
			c := testutil.Start(t, testutil.Options{})
			cl := c.Client(t, func(cfg *client.Config) {
				cfg.RingBytes = 0
				cfg.LeaseMin = 0
				cfg.MaxRequestBytes = 1 << 20
				cfg.MaxInflightBytes = 1 << 20
			})
			const K = 1024
			f := open(t, cl, filepath.Join(c.Dir, "f"), wire.ORdwr|wire.OCreat, nil)
			h := open(t, cl, filepath.Join(c.Dir, "h"), wire.ORdwr|wire.OCreat, map[string]string{"delegate_cork": "true"})
			buf := make([]byte, 1<<20)
			if _, err := h.Write([][]byte{buf[:600*K]}, []client.Extent{{Off: 0, Len: 600 * K}}, client.IOOpts{}); err != nil {
				t.Fatal(err)
			}
			if afterKick {
				var once sync.Once
				restore := client.SetCorkTakenHookForTest(func() {
					once.Do(func() {
						g, err := cl.Open(ctx, filepath.Join(c.Dir, "g"), wire.ORdwr|wire.OCreat, 0o644, map[string]string{"delegate_cork": "true"})
						if err != nil {
							t.Error(err)
							return
						}
						if _, err := g.Write([][]byte{buf[:400*K]}, []client.Extent{{Off: 0, Len: 400 * K}}, client.IOOpts{}); err != nil {
							t.Error(err)
						}
					})
				})
				defer restore()
			}
			done := make(chan error, 1)
			go func() {
				_, err := f.Write([][]byte{buf[:700*K]}, []client.Extent{{Off: 0, Len: 700 * K}}, client.IOOpts{})
				done <- err
			}()
			select {
			case err := <-done:
				if err != nil {
					t.Fatal(err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("a write waits for in-flight room held by a corked batch")
			}
		})
	}
}
