package server_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/delegate-io/delegate/internal/backend"
	"github.com/delegate-io/delegate/internal/client"
	"github.com/delegate-io/delegate/internal/server"
	"github.com/delegate-io/delegate/internal/testutil"
	"github.com/delegate-io/delegate/internal/wire"
)

// failFS fails the writes of files whose name starts with "bad" while fail
// is set (ENOSPC, as a full file system does).
type failFS struct {
	backend.FS
	fail  atomic.Bool
	tries atomic.Int64 // writes failed
}

func (f *failFS) OpenFile(path string, flag int, perm fs.FileMode) (backend.File, error) {
	bf, err := f.FS.OpenFile(path, flag, perm)
	if err != nil || !strings.HasPrefix(filepath.Base(path), "bad") {
		return bf, err
	}
	return failFile{bf, f}, nil
}

type failFile struct {
	backend.File
	fs *failFS
}

func (f failFile) WriteAt(p []byte, off int64) (int, error) {
	if f.fs.fail.Load() {
		f.fs.tries.Add(1)
		return 0, &fs.PathError{Op: "write", Path: "(test)", Err: syscall.ENOSPC}
	}
	return f.File.WriteAt(p, off)
}

// Identity names the file as the wrapped one does (the table's replaced
// path check needs it).
func (f failFile) Identity() (dev, ino uint64, err error) {
	dev, ino, ok := backend.IdentityOf(f.File)
	if !ok {
		return 0, 0, errors.ErrUnsupported
	}
	return dev, ino, nil
}

// countHandler counts log records whose message starts with prefix.
type countHandler struct {
	slog.Handler
	prefix string
	n      *atomic.Int64
}

func (h countHandler) Handle(ctx context.Context, r slog.Record) error {
	if strings.HasPrefix(r.Message, h.prefix) {
		h.n.Add(1)
	}
	return h.Handler.Handle(ctx, r)
}

// TestKeptAfterFailedFlush: with a state directory, the data of a file
// nobody holds any more whose flush fails (its close failed) is kept, in
// the buffer and the journal, and retried with a backoff, logged once and
// counted; when the backend recovers it is written. A server shut down
// meanwhile leaves it in the state directory, and the next one started on
// it writes it.
func TestKeptAfterFailedFlush(t *testing.T) {
	for _, restart := range []bool{false, true} {
		t.Run(map[bool]string{false: "backend recovers", true: "restart"}[restart], func(t *testing.T) {
			stateDir := filepath.Join(t.TempDir(), "state")
			ffs := &failFS{}
			ffs.fail.Store(true)
			var logged atomic.Int64
			events := keptEvents(t, 5*time.Millisecond, 20*time.Millisecond)
			c := testutil.Start(t, testutil.Options{Mutate: func(i int, cfg *server.Config) {
				stateConfig(stateDir)(i, cfg)
				cfg.Wrap = func(f backend.FS) backend.FS { ffs.FS = f; return ffs }
				cfg.Logger = slog.New(countHandler{slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelWarn}),
					"flush", &logged})
			}})
			path := filepath.Join(c.Dir, "bad")
			f, err := c.Client(t, nil).Open(context.Background(), path, wire.ORdwr|wire.OCreat, 0o644, nil)
			if err != nil {
				t.Fatal(err)
			}
			var m fileModel
			for off := int64(0); off < 100000; off += 4000 { // buffered: below --direct
				p := bytes.Repeat([]byte{byte(off / 4000)}, 4000)
				if _, err := f.Write([][]byte{p}, []client.Extent{{Off: off, Len: 4000}}, client.IOOpts{Ack: true}); err != nil {
					t.Fatal(err)
				}
				m.write(off, p)
			}
			if err := f.Close(); wire.CodeOf(err) != wire.ENOSPC {
				t.Fatalf("close with the backend full: %v, want ENOSPC", err)
			}
			for range 3 { // three failed tries: kept, retried
				awaitFailedFlush(t, events, "no retry of the kept data")
			}
			st := c.Servers[0].Stats()
			if st.KeptFiles != 1 || st.KeptRetries < 2 || st.Dirty != int64(len(m)) || logged.Load() != 2 {
				t.Fatalf("kept files %d (want 1), retries %d (want 2 or more), dirty %d (want %d), %d flush errors logged (want 2: the failure, the keeping)",
					st.KeptFiles, st.KeptRetries, st.Dirty, len(m), logged.Load())
			}
			if got, _ := os.ReadFile(path); bytes.Equal(got, m) {
				t.Fatal("the data is on the backend while it fails: the test proves nothing")
			}
			if !restart {
				ffs.fail.Store(false)
				for err := range events {
					if err == nil {
						break
					}
				}
			} else {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				if err := c.Servers[0].Shutdown(ctx); err == nil {
					t.Fatal("shutdown with kept data that cannot be written: no error")
				}
				if _, err := os.Stat(stateDir); err != nil {
					t.Fatalf("state directory after the shutdown: %v", err)
				}
				cfg := server.DefaultConfig()
				stateConfig(stateDir)(0, &cfg)
				s, err := server.New(cfg) // the backend works again
				if err != nil {
					t.Fatal(err)
				}
				c.Servers[0] = s // shut down by Start's cleanup
				if st := s.Stats(); st.RecoveredFiles != 1 || st.RecoveryDropped != 0 {
					t.Fatalf("recovered %d files, %d dropped; want 1, 0", st.RecoveredFiles, st.RecoveryDropped)
				}
			}
			if got, _ := os.ReadFile(path); !bytes.Equal(got, m) {
				t.Fatalf("after recovery: %d bytes, want %d; first difference at %d", len(got), len(m), firstDiff(got, m))
			}
			if logged.Load() != 2 {
				t.Fatalf("%d flush errors logged, want 2: the failure, the keeping", logged.Load())
			}
		})
	}
}

// TestKeptDroppedForSpace: kept data that fills the buffer while a writer
// waits for space is dropped (the oldest kept file first), logged with
// its file and byte count, and counted; the writer goes on.
func TestKeptDroppedForSpace(t *testing.T) {
	stateDir := filepath.Join(t.TempDir(), "state")
	ffs := &failFS{}
	ffs.fail.Store(true)
	var logged atomic.Int64
	t.Cleanup(server.SetKeptRetryForTest(time.Hour, time.Hour, nil)) // no retry meanwhile
	c := testutil.Start(t, testutil.Options{Mutate: func(i int, cfg *server.Config) {
		stateConfig(stateDir)(i, cfg)
		cfg.HighWaterPct = 100 // the flusher frees space only for a waiting writer
		cfg.DirectBytes = 4 << 20
		cfg.Wrap = func(f backend.FS) backend.FS { ffs.FS = f; return ffs }
		cfg.Logger = slog.New(countHandler{slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelWarn}),
			"dropping buffered data", &logged})
	}})
	cl := c.Client(t, throughServers)
	open := func(name string) *client.File {
		f, err := cl.Open(context.Background(), filepath.Join(c.Dir, name), wire.ORdwr|wire.OCreat, 0o644, nil)
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	bad := open("bad")
	off := fillAndKeep(t, c, bad)
	if st := c.Servers[0].Stats(); st.KeptFiles != 1 || st.Dirty != off {
		t.Fatalf("kept files %d, dirty %d: want 1, %d", st.KeptFiles, st.Dirty, off)
	}
	good := open("good")
	data := bytes.Repeat([]byte("good"), 256<<10) // 1 MiB in one request: more than is free
	done := make(chan error, 1)
	go func() {
		_, err := good.Write([][]byte{data}, []client.Extent{{Off: 0, Len: int64(len(data))}}, client.IOOpts{Ack: true})
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("write of another file: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a writer waits for space held by kept data")
	}
	if err := good.Close(); err != nil {
		t.Fatal(err)
	}
	st := c.Servers[0].Stats()
	if st.KeptDropped != 1 || logged.Load() != 1 || st.Dirty != 0 {
		t.Fatalf("kept files dropped %d, logged %d, dirty %d: want 1, 1, 0", st.KeptDropped, logged.Load(), st.Dirty)
	}
	if got, _ := os.ReadFile(filepath.Join(c.Dir, "good")); !bytes.Equal(got, data) {
		t.Fatalf("good: %d bytes, not the written ones", len(got))
	}
}

// TestKeptDropRacesReopen: a client that opens a kept file between the
// flusher's choice of it for dropping and the drop, and writes to it, keeps
// its acknowledged write: the drop claims the file first and gives up on a
// held one.
func TestKeptDropRacesReopen(t *testing.T) {
	stateDir := filepath.Join(t.TempDir(), "state")
	ffs := &failFS{}
	ffs.fail.Store(true)
	t.Cleanup(server.SetKeptRetryForTest(time.Hour, time.Hour, nil)) // no retry meanwhile
	c := testutil.Start(t, testutil.Options{Mutate: func(i int, cfg *server.Config) {
		stateConfig(stateDir)(i, cfg)
		cfg.HighWaterPct = 100 // the flusher frees space only for a waiting writer
		cfg.DirectBytes = 4 << 20
		cfg.Wrap = func(f backend.FS) backend.FS { ffs.FS = f; return ffs }
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}})
	cl := c.Client(t, throughServers)
	ctx := context.Background()
	badPath := filepath.Join(c.Dir, "bad")
	open := func(path string) (*client.File, error) {
		return cl.Open(ctx, path, wire.ORdwr|wire.OCreat, 0o644, nil)
	}
	bad, err := open(badPath)
	if err != nil {
		t.Fatal(err)
	}
	fillAndKeep(t, c, bad)
	// In the window: the backend works again, a client opens the file,
	// syncs (the kept data is written), writes and is acknowledged.
	fresh := bytes.Repeat([]byte("new!"), 1<<10)
	other := c.Client(t, nil)
	var again *client.File
	hookErr := make(chan error, 1)
	var once atomic.Bool
	t.Cleanup(server.SetKeptDropHookForTest(func(path string) {
		if path != badPath || !once.CompareAndSwap(false, true) {
			return
		}
		hookErr <- func() error {
			ffs.fail.Store(false)
			var err error
			// Another client: the first one's session waits behind the
			// good writer.
			if again, err = other.Open(ctx, badPath, wire.ORdwr, 0, nil); err != nil {
				return err
			}
			if err := again.Sync(); err != nil {
				return err
			}
			_, err = again.Write([][]byte{fresh}, []client.Extent{{Off: 0, Len: int64(len(fresh))}}, client.IOOpts{Ack: true})
			return err
		}()
	}))
	good, err := open(filepath.Join(c.Dir, "good"))
	if err != nil {
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte("good"), 256<<10) // 1 MiB in one request: more than is free
	done := make(chan error, 1)
	go func() {
		_, err := good.Write([][]byte{data}, []client.Extent{{Off: 0, Len: int64(len(data))}}, client.IOOpts{Ack: true})
		done <- err
	}()
	for _, ch := range []chan error{hookErr, done} {
		select {
		case err := <-ch:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("no drop attempt, or the writer waits for ever")
		}
	}
	if err := good.Close(); err != nil {
		t.Fatal(err)
	}
	if err := again.Close(); err != nil {
		t.Fatalf("close of the reopened file: %v", err)
	}
	got, err := os.ReadFile(badPath)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) < len(fresh) || !bytes.Equal(got[:len(fresh)], fresh) {
		t.Fatalf("the acknowledged write of the client that reopened the file is not on the backend (%d bytes there)", len(got))
	}
	if st := c.Servers[0].Stats(); st.KeptDropped != 0 || st.Dirty != 0 {
		t.Fatalf("kept files dropped %d, dirty %d: want 0, 0", st.KeptDropped, st.Dirty)
	}
}

// TestKeptHeldAgain: a client that opens the path of a kept file (its
// flush failed after the last close) starts clean: its writes are not
// refused with the old failure, and if the path was removed and created
// again meanwhile, they go to the new file, not the kept entry's unlinked
// inode.
func TestKeptHeldAgain(t *testing.T) {
	for _, replace := range []bool{false, true} {
		t.Run(map[bool]string{false: "same file", true: "path replaced"}[replace], func(t *testing.T) {
			stateDir := filepath.Join(t.TempDir(), "state")
			ffs := &failFS{}
			ffs.fail.Store(true)
			t.Cleanup(server.SetKeptRetryForTest(time.Hour, time.Hour, nil)) // no retry meanwhile
			c := testutil.Start(t, testutil.Options{Mutate: func(i int, cfg *server.Config) {
				stateConfig(stateDir)(i, cfg)
				cfg.Wrap = func(f backend.FS) backend.FS { ffs.FS = f; return ffs }
				cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
			}})
			cl := c.Client(t, nil)
			ctx := context.Background()
			path := filepath.Join(c.Dir, "bad")
			f, err := cl.Open(ctx, path, wire.ORdwr|wire.OCreat, 0o644, nil)
			if err != nil {
				t.Fatal(err)
			}
			old := bytes.Repeat([]byte("old."), 4<<10)
			if _, err := f.Write([][]byte{old}, []client.Extent{{Off: 0, Len: int64(len(old))}}, client.IOOpts{Ack: true}); err != nil {
				t.Fatal(err)
			}
			if err := f.Close(); wire.CodeOf(err) != wire.ENOSPC {
				t.Fatalf("close: %v, want ENOSPC", err)
			}
			if replace {
				if err := os.Remove(path); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, nil, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			ffs.fail.Store(false)
			f, err = cl.Open(ctx, path, wire.ORdwr, 0, nil)
			if err != nil {
				t.Fatal(err)
			}
			fresh := bytes.Repeat([]byte("new!"), 1<<10)
			if _, err := f.Write([][]byte{fresh}, []client.Extent{{Off: 0, Len: int64(len(fresh))}}, client.IOOpts{Ack: true}); err != nil {
				t.Fatalf("write after the file was opened again: %v", err)
			}
			if err := f.Close(); err != nil {
				t.Fatalf("close: %v", err)
			}
			want := append([]byte(nil), fresh...)
			if !replace {
				want = append(want, old[len(fresh):]...) // the kept data, under the new write
			}
			if got, _ := os.ReadFile(path); !bytes.Equal(got, want) {
				t.Fatalf("the file: %d bytes, want %d; first difference at %d", len(got), len(want), firstDiff(got, want))
			}
		})
	}
}

// TestKeptAgainAfterHold: a kept file that a client holds again and
// closes with the backend still failing is kept afresh: counted, logged
// and retried from the first backoff, not left to the old record's
// schedule.
func TestKeptAgainAfterHold(t *testing.T) {
	stateDir := filepath.Join(t.TempDir(), "state")
	ffs := &failFS{}
	ffs.fail.Store(true)
	var logged atomic.Int64
	events := keptEvents(t, time.Hour, time.Hour)
	c := testutil.Start(t, testutil.Options{Mutate: func(i int, cfg *server.Config) {
		stateConfig(stateDir)(i, cfg)
		cfg.Wrap = func(f backend.FS) backend.FS { ffs.FS = f; return ffs }
		cfg.Logger = slog.New(countHandler{slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelWarn}),
			"flush of a file nobody holds failed", &logged})
	}})
	cl := c.Client(t, nil)
	path := filepath.Join(c.Dir, "bad")
	for round := 1; round <= 2; round++ {
		f, err := cl.Open(context.Background(), path, wire.ORdwr|wire.OCreat, 0o644, nil)
		if err != nil {
			t.Fatal(err)
		}
		p := bytes.Repeat([]byte{byte(round)}, 4000)
		if _, err := f.Write([][]byte{p}, []client.Extent{{Off: int64(round) * 4000, Len: 4000}}, client.IOOpts{Ack: true}); err != nil {
			t.Fatalf("round %d: write: %v", round, err)
		}
		if err := f.Close(); wire.CodeOf(err) != wire.ENOSPC {
			t.Fatalf("round %d: close: %v, want ENOSPC", round, err)
		}
		awaitFailedFlush(t, events, fmt.Sprintf("round %d: the file was not kept (no idle flush of it)", round))
		if st := c.Servers[0].Stats(); st.KeptFiles != int64(round) || logged.Load() != int64(round) {
			t.Fatalf("round %d: kept files %d, logged %d: want %d, %d", round, st.KeptFiles, logged.Load(), round, round)
		}
	}
	ffs.fail.Store(false) // the shutdown writes the kept data
}

// TestKeptBackoffUnderPressure: a flush for memory (above the high-water
// mark) does not retry a kept file before its retry time.
func TestKeptBackoffUnderPressure(t *testing.T) {
	stateDir := filepath.Join(t.TempDir(), "state")
	ffs := &failFS{}
	ffs.fail.Store(true)
	events := keptEvents(t, time.Hour, time.Hour)
	c := testutil.Start(t, testutil.Options{Mutate: func(i int, cfg *server.Config) {
		stateConfig(stateDir)(i, cfg)
		cfg.BufferBytes = 32 << 20
		cfg.HighWaterPct = 50
		cfg.DirectBytes = 4 << 20
		cfg.Wrap = func(f backend.FS) backend.FS { ffs.FS = f; return ffs }
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}})
	cl := c.Client(t, nil)
	open := func(name string) *client.File {
		f, err := cl.Open(context.Background(), filepath.Join(c.Dir, name), wire.ORdwr|wire.OCreat, 0o644, nil)
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	piece := bytes.Repeat([]byte("data"), 4<<10)
	fill := func(f *client.File, until func(off int64) bool) {
		for off := int64(0); !until(off); off += int64(len(piece)) {
			if off > 12<<20 {
				t.Fatal("no flush for memory")
			}
			if _, err := f.Write([][]byte{piece}, []client.Extent{{Off: off, Len: int64(len(piece))}}, client.IOOpts{Ack: true}); err != nil {
				t.Fatalf("write at %d: %v", off, err)
			}
		}
	}
	bad := open("bad")
	fill(bad, func(off int64) bool { return off >= 6<<20 }) // below the mark, dirtier than good will be
	if err := bad.Close(); wire.CodeOf(err) != wire.ENOSPC {
		t.Fatalf("close: %v, want ENOSPC", err)
	}
	awaitFailedFlush(t, events, "the file was not kept")
	tries := ffs.tries.Load()
	good := open("good")
	fill(good, func(int64) bool { return c.Servers[0].Stats().Flushes["highwater"] > 0 })
	if err := good.Close(); err != nil {
		t.Fatal(err)
	}
	if n := ffs.tries.Load() - tries; n != 0 {
		t.Fatalf("%d writes of the kept file under memory pressure, before its retry time", n)
	}
	ffs.fail.Store(false) // the shutdown writes the kept data
}

// throughServers makes a client whose writes go through the servers at
// any size, as LeaseMin and the servers' --direct say: a test of the
// servers' buffer runs in a temporary directory on a local file system,
// where LeaseMinLocal would let the client write pieces of 32 KiB and
// more itself.
func throughServers(cfg *client.Config) { cfg.LeaseMinLocal = 0 }

// fillAndKeep writes f (whose backend fails) until the server's buffers
// are nearly full, closes it (its flush fails with ENOSPC) and waits until
// the flusher kept its data. It returns the bytes written.
func fillAndKeep(t *testing.T, c *testutil.Cluster, f *client.File) int64 {
	t.Helper()
	limit := c.Servers[0].Stats().BufferLimit
	piece := bytes.Repeat([]byte("kept"), 4<<10)
	var off int64
	for c.Servers[0].Stats().BufferBytes < limit-(256<<10) {
		if _, err := f.Write([][]byte{piece}, []client.Extent{{Off: off, Len: int64(len(piece))}}, client.IOOpts{Ack: true}); err != nil {
			t.Fatalf("filling the buffer at %d: %v", off, err)
		}
		off += int64(len(piece))
	}
	if err := f.Close(); wire.CodeOf(err) != wire.ENOSPC {
		t.Fatalf("close: %v, want ENOSPC", err)
	}
	// The flusher keeps it in its next pass, after the close returned.
	for deadline := time.Now().Add(10 * time.Second); c.Servers[0].Stats().KeptFiles == 0; {
		if time.Now().After(deadline) {
			t.Fatal("the file's data was not kept within 10 s of its failed close")
		}
		time.Sleep(time.Millisecond) // polling a bounded condition
	}
	return off
}

// keptEvents sets the backoff of kept data's retries and returns the
// outcomes of the idle flushes of the file named "bad", until the test and
// its server end.
func keptEvents(t *testing.T, minWait, maxWait time.Duration) <-chan error {
	events := make(chan error, 100)
	t.Cleanup(server.SetKeptRetryForTest(minWait, maxWait, func(path string, err error) {
		if filepath.Base(path) == "bad" {
			events <- err
		}
	}))
	return events
}

// awaitFailedFlush waits (10 s at most: else it fails with missing) for
// the next idle flush of the kept file, which must fail.
func awaitFailedFlush(t *testing.T, events <-chan error, missing string) {
	t.Helper()
	select {
	case err := <-events:
		if err == nil {
			t.Fatal("a flush succeeded while the backend failed")
		}
	case <-time.After(10 * time.Second):
		t.Fatal(missing)
	}
}
