package client_test

import (
	"bytes"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/delegate-io/delegate/internal/client"
	"github.com/delegate-io/delegate/internal/testutil"
	"github.com/delegate-io/delegate/internal/wire"
)

// TestAtomicReadZeroLengthTail (found in review): an atomic read whose
// extent list is cut by errTooManyRuns (reader.run halves maxExt) ended in
// windows of zero-length extents only. Those send nothing, yet the last
// window sent carried IOMore (it looked at extents left, not bytes): the
// server kept the file's atomic lock for a part that never came, another
// rank's atomic write waited 30 s, and this rank's next atomic read, a new
// call, failed with the ETIMEDOUT meant for the old one.
func TestAtomicReadZeroLengthTail(t *testing.T) {
	c := testutil.Start(t, testutil.Options{})
	path := filepath.Join(c.Dir, "atomic")
	cl1, cl2 := c.Client(t, nil), c.Client(t, nil)
	f1 := open(t, cl1, path, wire.ORdwr|wire.OCreat, nil)
	f2 := open(t, cl2, path, wire.ORdwr|wire.OCreat, nil)
	for _, f := range []*client.File{f1, f2} {
		if err := f.SetAtomic(true); err != nil {
			t.Fatal(err)
		}
	}
	one := []byte{'x'}
	if _, err := f1.Write([][]byte{one}, []client.Extent{{Off: 41e6, Len: 1}}, client.IOOpts{}); err != nil {
		t.Fatal(err)
	}
	const pieces, zeros = 9000, 9000
	var ext []client.Extent
	for i := int64(0); i < pieces; i++ {
		ext = append(ext, client.Extent{Off: i * (i + 3) / 2, Len: 1})
	}
	for i := 0; i < zeros; i++ {
		ext = append(ext, client.Extent{Off: 0, Len: 0})
	}
	buf := make([]byte, pieces)
	if n, err := f1.Read([][]byte{buf}, ext, client.IOOpts{}); err != nil || n != pieces {
		t.Fatalf("read %d %v", n, err)
	}
	done := make(chan time.Duration, 1)
	start := time.Now()
	go func() {
		f2.Write([][]byte{one}, []client.Extent{{Off: 0, Len: 1}}, client.IOOpts{Ack: true})
		done <- time.Since(start)
	}()
	select {
	case d := <-done:
		t.Logf("other rank's atomic write took %v", d)
	case <-time.After(5 * time.Second):
		d := <-done
		t.Errorf("other rank's atomic write waited %v for a read call that had ended", d)
	}
	small := make([]byte, 1)
	if _, err := f1.Read([][]byte{small}, []client.Extent{{Off: 0, Len: 1}}, client.IOOpts{}); err != nil {
		t.Errorf("the next, unrelated atomic read failed: %v", err)
	}
}

// TestAtomicNonblockingCalls (found in review): two nonblocking atomic
// writes of one rank (each run by its own goroutine, request.go start)
// share the session's stream. Their parts interleaved, and the server took
// one call's parts as continuing the other's group, ending it at the
// other's last part, so another rank's atomic write landed in the middle
// of a call, which a third rank's atomic read saw. A session now sends one
// atomic call at a time (File.atomicCall), and the parts carry the call's
// id.
func TestAtomicNonblockingCalls(t *testing.T) {
	c := testutil.Start(t, testutil.Options{})
	path := filepath.Join(c.Dir, "atomic")
	cfg := func(c *client.Config) { c.MaxRequestBytes = 64 << 10 }
	var fs []*client.File
	for i := 0; i < 3; i++ {
		f := open(t, c.Client(t, cfg), path, wire.ORdwr|wire.OCreat, nil)
		if err := f.SetAtomic(true); err != nil {
			t.Fatal(err)
		}
		fs = append(fs, f)
	}
	f1, f2, f3 := fs[0], fs[1], fs[2]
	const span = 1 << 20
	fill := func(b byte) [][]byte { return [][]byte{bytes.Repeat([]byte{b}, span)} }
	region := func(i int64) []client.Extent { return []client.Extent{{Off: i * span, Len: span}} }
	if _, err := f1.Write(fill('B'), region(1), client.IOOpts{Ack: true}); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { // rank 1: two nonblocking atomic writes at a time
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			ra, _ := f1.IWrite(fill('A'), region(0), client.IOOpts{})
			rb, _ := f1.IWrite(fill('B'), region(1), client.IOOpts{})
			ra.Wait()
			rb.Wait()
		}
	}()
	go func() { // rank 2: atomic writes over B's region
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			f2.Write(fill('C'), region(1), client.IOOpts{})
		}
	}()
	defer func() { close(stop); wg.Wait() }()
	got := make([]byte, span)
	deadline := time.Now().Add(3 * time.Second)
	for k := 0; time.Now().Before(deadline); k++ {
		if _, err := f3.Read([][]byte{got}, region(1), client.IOOpts{}); err != nil {
			t.Fatal(err)
		}
		if n := bytes.Count(got, got[:1]); n != span {
			t.Fatalf("read %d: region 1 holds a mix of rank 1's IWrite and rank 2's write (%d of %d bytes %q)", k, n, span, got[0])
		}
	}
}

// TestReadSendsCorkedBatches (found in review): a corked batch of file h
// holds ring space at the ring's tail; a read of file f on the same
// session, larger than one window, waited for ever for ring space that
// only the sending of h's batch frees (the reader, unlike the writer,
// never sent corked batches). In atomic mode the read held the session's
// atomic lock and the server's lock of f meanwhile.
func TestReadSendsCorkedBatches(t *testing.T) {
	for _, atomic := range []bool{false, true} {
		name := "plain"
		if atomic {
			name = "atomic"
		}
		t.Run(name, func(t *testing.T) {
			c := testutil.Start(t, testutil.Options{})
			cl := c.Client(t, nil)
			f := open(t, cl, filepath.Join(c.Dir, "f"), wire.ORdwr|wire.OCreat, nil)
			h := open(t, cl, filepath.Join(c.Dir, "h"), wire.ORdwr|wire.OCreat, nil)
			const span = 24 << 20
			piece := bytes.Repeat([]byte{'f'}, 512<<10)
			for off := int64(0); off < span; off += 512 << 10 { // buffered by the server: no direct read
				if _, err := f.Write([][]byte{piece}, []client.Extent{{Off: off, Len: 512 << 10}}, client.IOOpts{Ack: true}); err != nil {
					t.Fatal(err)
				}
			}
			if atomic {
				if err := f.SetAtomic(true); err != nil {
					t.Fatal(err)
				}
			}
			if err := h.Cork(); err != nil {
				t.Fatal(err)
			}
			small := bytes.Repeat([]byte{'h'}, 4096)
			for i := int64(0); i < 256; i++ { // 1 MiB corked, in small writes (no lease)
				if _, err := h.Write([][]byte{small}, []client.Extent{{Off: i * 4096, Len: 4096}}, client.IOOpts{}); err != nil {
					t.Fatal(err)
				}
			}
			done := make(chan error, 1)
			go func() {
				got := make([]byte, span)
				_, err := f.Read([][]byte{got}, []client.Extent{{Off: 0, Len: span}}, client.IOOpts{})
				done <- err
			}()
			select {
			case err := <-done:
				if err != nil {
					t.Fatal(err)
				}
			case <-time.After(10 * time.Second):
				h.Uncork() // let it go
				<-done
				t.Fatal("a read of f waited 10 s for ring space held by h's corked batch")
			}
		})
	}
}

// TestCorkedBatchOrder (found in review): writer.release put its new batch
// c in f.mu.corked, unlocked f.mu, and only then submitted the batch c
// replaced (prev). A sendCorked in between (a File.Read of the file on
// another thread, or any read that finds its ring full, via
// sendAllCorked) submitted c before prev: the older write was applied
// after the newer one over the same bytes (3 runs in 4). Write i covers
// blocks i..i+19 (4 KiB) with value v(i); block i must end with v(i).
func TestCorkedBatchOrder(t *testing.T) {
	c := testutil.Start(t, testutil.Options{})
	cl := c.Client(t, nil)
	h := open(t, cl, filepath.Join(c.Dir, "h"), wire.ORdwr|wire.OCreat, nil)
	if err := h.Cork(); err != nil {
		t.Fatal(err)
	}
	const blk, span, n = 4096, 20, 3000
	v := func(i int) byte { return byte(i%251 + 1) }
	var stop atomic.Bool
	done := make(chan struct{})
	go func() { // another thread: reads of the corked file send its batches
		defer close(done)
		b := make([]byte, 1)
		for !stop.Load() {
			h.Read([][]byte{b}, []client.Extent{{Off: 0, Len: 1}}, client.IOOpts{})
		}
	}()
	for i := 0; i < n; i++ {
		data := bytes.Repeat([]byte{v(i)}, blk*span)
		if _, err := h.Write([][]byte{data}, []client.Extent{{Off: int64(i) * blk, Len: blk * span}}, client.IOOpts{}); err != nil {
			t.Fatal(err)
		}
	}
	stop.Store(true)
	<-done
	if err := h.Uncork(); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, n*blk)
	if _, err := h.Read([][]byte{got}, []client.Extent{{Off: 0, Len: n * blk}}, client.IOOpts{}); err != nil {
		t.Fatal(err)
	}
	bad := 0
	for i := 0; i < n; i++ {
		if got[i*blk] != v(i) {
			if bad < 5 {
				t.Errorf("block %d holds the value of write %d's era (%d), want %d: an older batch landed after a newer one", i, int(got[i*blk]), got[i*blk], v(i))
			}
			bad++
		}
	}
	if bad > 0 {
		t.Fatalf("%d of %d blocks out of order", bad, n)
	}
}

// TestCorkedBatchTakenFirst (found in review): a sendCorked took a
// file's corked batch X (holding W1) out of the file, unlocked it, and was
// preempted before it submitted X; meanwhile the same thread's W2 over the
// same bytes went into a new batch that another sendCorked sent: X landed
// after it, W1 over W2. Whoever takes a batch now holds File.corkMu until
// it is submitted. The hook pauses the first sendCorked there; W2 and a
// read that sends its batch run meanwhile in a goroutine, given 300 ms
// (without the fix they finish in that time, and the bytes end up 1).
func TestCorkedBatchTakenFirst(t *testing.T) {
	c := testutil.Start(t, testutil.Options{})
	cl := c.Client(t, nil)
	h := open(t, cl, filepath.Join(c.Dir, "h"), wire.ORdwr|wire.OCreat, nil)
	if err := h.Cork(); err != nil {
		t.Fatal(err)
	}
	write := func(v byte) error {
		_, err := h.Write([][]byte{bytes.Repeat([]byte{v}, 4096)}, []client.Extent{{Off: 0, Len: 4096}}, client.IOOpts{})
		return err
	}
	read := func() (byte, error) {
		b := make([]byte, 1)
		_, err := h.Read([][]byte{b}, []client.Extent{{Off: 0, Len: 1}}, client.IOOpts{})
		return b[0], err
	}
	if err := write(1); err != nil { // W1, corked in X
		t.Fatal(err)
	}
	var n atomic.Int32
	entered, release := make(chan struct{}), make(chan struct{})
	t.Cleanup(client.SetCorkTakenHookForTest(func() {
		if n.Add(1) == 1 {
			close(entered)
			<-release
		}
	}))
	first := make(chan error, 1)
	go func() { // another thread's read of the file: its sendCorked takes X
		_, err := read()
		first <- err
	}()
	<-entered
	second := make(chan error, 1)
	go func() { // W2 over the same bytes, and a read that sends its batch
		if err := write(2); err != nil {
			second <- err
			return
		}
		_, err := read()
		second <- err
	}()
	select {
	case err := <-second:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(300 * time.Millisecond):
	}
	close(release)
	for _, ch := range []chan error{first, second} {
		select {
		case err := <-ch:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("a read or write waits for ever")
		}
	}
	if err := h.Uncork(); err != nil {
		t.Fatal(err)
	}
	if v, err := read(); err != nil || v != 2 {
		t.Fatalf("byte 0 = %d (%v) after W1 (1) then W2 (2) by one thread: the older batch landed over the newer", v, err)
	}
}

// TestCorkThenAtomic (found in review): one thread, one server. W1 is
// corked; the thread turns atomic mode on (with one server SetAtomic sent
// nothing) and writes W2 over the same bytes, which is not corked and went
// out at once; the corked W1 went later (Uncork) and landed over W2.
// SetAtomic(true) sends the corked batches first now.
func TestCorkThenAtomic(t *testing.T) {
	c := testutil.Start(t, testutil.Options{})
	cl := c.Client(t, nil)
	h := open(t, cl, filepath.Join(c.Dir, "h"), wire.ORdwr|wire.OCreat, nil)
	if err := h.Cork(); err != nil {
		t.Fatal(err)
	}
	write := func(v byte) {
		if _, err := h.Write([][]byte{bytes.Repeat([]byte{v}, 4096)}, []client.Extent{{Off: 0, Len: 4096}}, client.IOOpts{}); err != nil {
			t.Fatal(err)
		}
	}
	write(1)
	if err := h.SetAtomic(true); err != nil {
		t.Fatal(err)
	}
	write(2)
	if err := h.SetAtomic(false); err != nil {
		t.Fatal(err)
	}
	if err := h.Uncork(); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 1)
	if _, err := h.Read([][]byte{b}, []client.Extent{{Off: 0, Len: 1}}, client.IOOpts{}); err != nil {
		t.Fatal(err)
	}
	if b[0] != 2 {
		t.Fatalf("byte 0 = %d after W1 (1, corked) then W2 (2, atomic) by one thread", b[0])
	}
}

// TestAtomicCallThenMarker (differential seed 176, found in CI): a
// nonblocking atomic write of several parts runs in its own goroutine
// while the caller's next call, a collective, sends its end marker on the
// same session. The marker went out between two parts of the atomic call;
// the server, which would wait with the file's atomic lock for the other
// ranks' markers, broke the call instead (atomic_broken), and the rank's
// MPI_Test failed with "not applied as one unit". A marker now waits for
// the session's atomic call to be sent (File.endCollective).
func TestAtomicCallThenMarker(t *testing.T) {
	for _, tc := range []struct {
		name string
		ring bool
	}{{"inline", false}, {"ring", true}} {
		t.Run(tc.name, func(t *testing.T) {
			c := testutil.Start(t, testutil.Options{})
			path := filepath.Join(c.Dir, "atomic")
			cfg := func(c *client.Config) {
				c.MaxRequestBytes = 64 << 10
				c.LeaseMin, c.LeaseMinLocal = 0, 0
				if !tc.ring {
					c.RingBytes = 0
				}
			}
			f := open(t, c.Client(t, cfg), path, wire.ORdwr|wire.OCreat, nil)
			if err := f.SetAtomic(true); err != nil {
				t.Fatal(err)
			}
			coll := make(chan error, 1)
			waits := make(chan struct{}, 1)
			var once sync.Once
			t.Cleanup(client.SetAtomicHooksForTest(func() {
				// The call's first part is out: now the collective.
				once.Do(func() {
					go func() {
						tag := wire.CollTag{Seq: 1, Rank: 0, Size: 1, Group: 3}
						_, err := f.Write(nil, nil, client.IOOpts{Coll: &tag})
						coll <- err
					}()
					select {
					case <-waits:
					case err := <-coll:
						coll <- err
						t.Errorf("the collective's end marker went out between two parts of an atomic call")
					}
				})
			}, func() { waits <- struct{}{} }))
			const span = 1 << 20
			data := bytes.Repeat([]byte{'a'}, span)
			r, err := f.IWrite([][]byte{data}, []client.Extent{{Off: 0, Len: span}}, client.IOOpts{})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := r.Wait(); err != nil {
				t.Errorf("atomic write: %v", err)
			}
			if err := <-coll; err != nil {
				t.Errorf("collective: %v", err)
			}
			if n := c.Servers[0].Stats().AtomicBroken; n != 0 {
				t.Errorf("%d atomic calls were not applied as one unit", n)
			}
			got := make([]byte, span)
			if n, err := f.Read([][]byte{got}, []client.Extent{{Off: 0, Len: span}}, client.IOOpts{}); err != nil || n != span || !bytes.Equal(got, data) {
				t.Errorf("read back %d bytes (%v), equal %v", n, err, bytes.Equal(got, data))
			}
		})
	}
}
