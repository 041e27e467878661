package server_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/delegate-io/delegate/internal/backend"
	"github.com/delegate-io/delegate/internal/client"
	"github.com/delegate-io/delegate/internal/server"
	"github.com/delegate-io/delegate/internal/stats"
	"github.com/delegate-io/delegate/internal/testutil"
	"github.com/delegate-io/delegate/internal/wire"
)

var bg = context.Background()

func record(i int) []byte {
	b := make([]byte, 64)
	for k := range b {
		b[k] = byte(i*7 + k)
	}
	return b
}

// TestInterleavedRecordsCoalesce: four clients write 64-byte records
// interleaved with each other; they reach the backend as a few large writes.
func TestInterleavedRecordsCoalesce(t *testing.T) {
	c := testutil.Start(t, testutil.Options{})
	path := filepath.Join(c.Dir, "records")
	const ranks, per = 4, 4096
	var files []*client.File
	for r := 0; r < ranks; r++ {
		cl := c.Client(t, nil)
		f, err := cl.Open(bg, path, wire.ORdwr|wire.OCreat, 0, nil)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	var wg sync.WaitGroup
	for r, f := range files {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < per; i++ {
				idx := i*ranks + r
				if _, err := f.Write([][]byte{record(idx)}, []client.Extent{{Off: int64(idx) * 64, Len: 64}}, client.IOOpts{}); err != nil {
					t.Error(err)
					return
				}
			}
			if err := f.WaitAcked(); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	for _, f := range files {
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
	}
	st := c.Servers[0].Stats()
	if st.ExtentsIn < ranks*per/64 || st.BackendWrites > 4 {
		t.Fatalf("%d extents in, %d backend writes: want few large writes\n%s", st.ExtentsIn, st.BackendWrites, st)
	}
	want := make([]byte, 0, ranks*per*64)
	for i := 0; i < ranks*per; i++ {
		want = append(want, record(i)...)
	}
	if got, _ := os.ReadFile(path); !bytes.Equal(got, want) {
		t.Fatal("file content differs")
	}
	t.Logf("coalescing: %d client extents in, %d backend writes", st.ExtentsIn, st.BackendWrites)
}

// TestMemoryBound writes ten times the buffer through a backend that holds
// every write until the writers have filled the buffer and one of them
// waits for space: the bound is reached (not merely approached), writers
// stall (counted), the buffer never holds more than its limit plus one
// chunk per writer, and no byte is lost.
func TestMemoryBound(t *testing.T) {
	t.Run("heap", func(t *testing.T) { memoryBound(t, "", 64<<10, 1) })
	// In a state directory a slot (chunk, header page, mark bitmap) counts
	// where a chunk did.
	t.Run("state-dir", func(t *testing.T) { memoryBound(t, filepath.Join(t.TempDir(), "state"), 64<<10+4096+8192, 1) })
	// Each write a strided run of 64 pieces across 8 chunks, which the
	// server applies a chunk at a time (WriteRun): the bound holds.
	t.Run("state-dir-strided", func(t *testing.T) {
		memoryBound(t, filepath.Join(t.TempDir(), "state"), 64<<10+4096+8192, 64)
	})
	t.Run("heap-strided", func(t *testing.T) { memoryBound(t, "", 64<<10, 64) })
}

func memoryBound(t *testing.T, stateDir string, perChunk int64, batch int) {
	const limit, chunk = 1 << 20, 64 << 10
	// The slow backend: every write waits until gate is closed, which this
	// test does once a writer stalls. Until then the flusher can free
	// nothing, so the writers must fill the buffer to its limit.
	efs := &backend.ErrorFS{Gate: make(chan struct{})}
	opened := false
	defer func() {
		if !opened {
			close(efs.Gate) // a failed test must not leave flushes blocked
		}
	}()
	c := testutil.Start(t, testutil.Options{Mutate: func(_ int, cfg *server.Config) {
		cfg.BufferBytes, cfg.ChunkBytes, cfg.FlushRunBytes = limit, chunk, chunk
		cfg.DirectBytes = 1 << 30 // everything through the buffer
		cfg.FlushFull = false     // only memory pressure flushes: test the bound
		cfg.StateDir = stateDir
		cfg.Wrap = func(f backend.FS) backend.FS { efs.FS = f; return efs }
	}})
	path := filepath.Join(c.Dir, "big")
	const writers, piece = 2, 4096
	total := 10 * limit
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		cl := c.Client(t, nil)
		f, err := cl.Open(bg, path, wire.ORdwr|wire.OCreat, 0, nil)
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, piece*batch)
			ext := make([]client.Extent, 0, batch)
			for off := w * piece; off < total; off += writers * piece * batch {
				ext = ext[:0]
				for i := 0; i < batch; i++ {
					o := off + i*writers*piece
					for k := range piece {
						buf[i*piece+k] = byte(o/piece + k)
					}
					ext = append(ext, client.Extent{Off: int64(o), Len: piece})
				}
				if _, err := f.Write([][]byte{buf}, ext, client.IOOpts{}); err != nil {
					t.Error(err)
					return
				}
			}
			if err := f.Close(); err != nil {
				t.Error(err)
			}
		}()
	}
	// Wait (bounded) until a writer waits for space, with nothing written.
	deadline := time.Now().Add(30 * time.Second)
	var full stats.Snapshot
	for {
		full = c.Servers[0].Stats()
		if full.Stalls > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no writer stalled within 30s with the backend held:\n%s", full)
		}
		time.Sleep(time.Millisecond) // polling a counter, not waiting for an event to happen by itself
	}
	if efs.Writes.Load() != 0 {
		t.Fatalf("%d backend writes passed the gate", efs.Writes.Load())
	}
	// At the stall the buffer is full: within one reservation step (an
	// eighth of --buffer, write.go) of its limit.
	if step := int64(limit / 8); full.BufferPeak < full.BufferLimit-step-perChunk {
		t.Fatalf("a writer stalled with the buffer at %d bytes of %d: the bound was not reached", full.BufferPeak, full.BufferLimit)
	}
	close(efs.Gate)
	opened = true
	wg.Wait()
	st := c.Servers[0].Stats()
	if st.Stalls == 0 || st.StallNanos == 0 {
		t.Fatalf("%d stalls (%d ns): the test did not reach the bound", st.Stalls, st.StallNanos)
	}
	// Free chunks kept for reuse: at most --buffer minus the data limit
	// (the pool, the journal's keep), or, slots released by a flush that
	// stay resident until --flush-idle, at most what was in use at once (a
	// slot is reserved only when no free one is resident): in use and free
	// together never pass --buffer.
	if st.BufferPeak > st.BufferLimit+writers*perChunk || st.BufferPooled > max(st.BufferPeak, limit-st.BufferLimit)+writers*perChunk {
		t.Fatalf("buffer peaked at %d bytes (%d kept for reuse), data limit %d, --buffer %d", st.BufferPeak, st.BufferPooled, st.BufferLimit, limit)
	}
	if stateDir != "" && (st.StateFallbacks != 0 || st.StateSlots != 0) {
		t.Fatalf("%d chunks in the heap, %d slots in use after close", st.StateFallbacks, st.StateSlots)
	}
	if st.Flushes["highwater"] == 0 {
		t.Fatalf("no high-water flush while writing 10x the buffer\n%s", st)
	}
	got, _ := os.ReadFile(path)
	if len(got) != total {
		t.Fatalf("file has %d bytes, want %d", len(got), total)
	}
	for off := 0; off < total; off += piece {
		if got[off] != byte(off/piece) || got[off+piece-1] != byte(off/piece+piece-1) {
			t.Fatalf("bad data at %d", off)
		}
	}
	t.Logf("peak %d of a %d-byte data limit (--buffer %d), %d stalls (%s)", st.BufferPeak, st.BufferLimit, limit, st.Stalls, time.Duration(st.StallNanos))
}

// TestShutdownDrains: acknowledged writes still buffered reach the backend
// when the server shuts down, without close or sync.
func TestShutdownDrains(t *testing.T) {
	c := testutil.Start(t, testutil.Options{Mutate: func(_ int, cfg *server.Config) { cfg.FlushIdle = time.Hour }})
	cl := c.Client(t, nil)
	path := filepath.Join(c.Dir, "drain")
	f, err := cl.Open(bg, path, wire.ORdwr|wire.OCreat, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([][]byte{[]byte("acknowledged")}, []client.Extent{{Off: 100, Len: 12}}, client.IOOpts{Ack: true}); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(path); len(b) != 0 {
		t.Fatalf("data reached the backend before shutdown (%d bytes): the test proves nothing", len(b))
	}
	ctx, cancel := context.WithTimeout(bg, 10*time.Second)
	defer cancel()
	if err := c.Servers[0].Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(path); string(b[100:]) != "acknowledged" {
		t.Fatalf("after shutdown the file holds %q", b)
	}
}

// TestFlushFailureReportedNotLost: a failing backend makes sync fail with a
// clear error; the data stays readable and reaches the disk once the
// backend recovers.
func TestFlushFailureReportedNotLost(t *testing.T) {
	efs := &backend.ErrorFS{}
	c := testutil.Start(t, testutil.Options{Mutate: func(_ int, cfg *server.Config) {
		cfg.Wrap = func(f backend.FS) backend.FS { efs.FS = f; return efs }
		cfg.FlushIdle = time.Hour
	}})
	cl := c.Client(t, nil)
	path := filepath.Join(c.Dir, "faulty")
	f, err := cl.Open(bg, path, wire.ORdwr|wire.OCreat, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	efs.Fail.Store(true)
	if _, err := f.Write([][]byte{[]byte("precious")}, []client.Extent{{Off: 0, Len: 8}}, client.IOOpts{}); err != nil {
		t.Fatal(err)
	}
	err = f.Sync()
	if err == nil || !bytes.Contains([]byte(err.Error()), []byte("injected")) {
		t.Fatalf("sync on a failing backend: %v", err)
	}
	buf := make([]byte, 8)
	if n, err := f.Read([][]byte{buf}, []client.Extent{{Off: 0, Len: 8}}, client.IOOpts{}); err != nil || n != 8 || string(buf) != "precious" {
		t.Fatalf("read after the failure: %d %v %q", n, err, buf)
	}
	efs.Fail.Store(false)
	if err := f.Sync(); err != nil {
		t.Fatalf("sync after recovery: %v", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "precious" {
		t.Fatalf("file holds %q", b)
	}
	f.Close()
}

// TestIdleAndAsyncClose: with delegate_async_close, close returns before
// the data is on the backend; the idle flush writes it soon after.
func TestIdleAndAsyncClose(t *testing.T) {
	c := testutil.Start(t, testutil.Options{Mutate: func(_ int, cfg *server.Config) { cfg.FlushIdle = 100 * time.Millisecond }})
	cl := c.Client(t, nil)
	path := filepath.Join(c.Dir, "async")
	f, err := cl.Open(bg, path, wire.ORdwr|wire.OCreat, 0, map[string]string{"delegate_async_close": "true"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([][]byte{[]byte("later")}, []client.Extent{{Off: 0, Len: 5}}, client.IOOpts{}); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		// The data reaches the disk a moment before the file is finalized.
		if b, _ := os.ReadFile(path); string(b) == "later" && c.Servers[0].Stats().OpenFiles == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("async-closed data did not reach the backend within 5s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if st := c.Servers[0].Stats(); st.Flushes["idle"] == 0 || st.OpenFiles != 0 {
		t.Fatalf("want an idle flush and the file finalized:\n%s", st)
	}
}

var _ = errors.New

// TestFullChunksFlushInBackground: chunks written entirely reach the
// backend while the file stays open (Config.FlushFull, with a run of one
// chunk); the partial chunk after them stays buffered until close.
func TestFullChunksFlushInBackground(t *testing.T) {
	const chunk = 64 << 10
	c := testutil.Start(t, testutil.Options{Mutate: func(_ int, cfg *server.Config) {
		cfg.ChunkBytes, cfg.FlushRunBytes, cfg.FlushIdle = chunk, chunk, time.Hour
		cfg.DirectBytes = 1 << 30 // everything through the buffer
	}})
	cl := c.Client(t, nil)
	path := filepath.Join(c.Dir, "full")
	f, err := cl.Open(bg, path, wire.ORdwr|wire.OCreat, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := make([]byte, 4*chunk+100)
	for i := range want {
		want[i] = byte(i*13 + i>>16)
	}
	for off := 0; off < len(want); off += 4096 {
		p := want[off:min(off+4096, len(want))]
		if _, err := f.Write([][]byte{p}, []client.Extent{{Off: int64(off), Len: int64(len(p))}}, client.IOOpts{}); err != nil {
			t.Fatal(err)
		}
	}
	// The flush counts itself once its writes are done: wait for both.
	deadline := time.Now().Add(5 * time.Second)
	for {
		fi, err := os.Stat(path)
		st := c.Servers[0].Stats()
		if err == nil && fi.Size() == 4*chunk && st.Flushes["full"] > 0 && st.Dirty == 100 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("want the full chunks on disk and the 100-byte tail still buffered:\n%s", st)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(path); !bytes.Equal(got, want) {
		t.Fatalf("file holds %d bytes, want %d, or wrong bytes", len(got), len(want))
	}
}
