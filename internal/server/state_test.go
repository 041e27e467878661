package server_test

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/delegate-io/delegate/internal/backend"
	"github.com/delegate-io/delegate/internal/client"
	"github.com/delegate-io/delegate/internal/journal"
	"github.com/delegate-io/delegate/internal/server"
	"github.com/delegate-io/delegate/internal/testutil"
	"github.com/delegate-io/delegate/internal/wire"
)

// stateConfig keeps everything buffered (no idle or full-chunk flush) in a
// state directory.
func stateConfig(stateDir string) func(int, *server.Config) {
	return func(_ int, cfg *server.Config) {
		cfg.StateDir = stateDir
		cfg.FlushIdle = time.Hour
		cfg.FlushFull = false
		cfg.ChunkBytes = 64 << 10
		cfg.FlushRunBytes = 64 << 10
		cfg.BufferBytes = 8 << 20
		cfg.DirectBytes = 32 << 10
	}
}

// restartOn starts a new server on stateDir, as a server restarted after
// a crash would be (stateConfig), logging warnings; the caller shuts it
// down.
func restartOn(t *testing.T, stateDir string) *server.Server {
	t.Helper()
	cfg := server.DefaultConfig()
	stateConfig(stateDir)(0, &cfg)
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	s, err := server.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// fileModel is what a file must hold: the backend's bytes with every
// acknowledged write applied in order.
type fileModel []byte

func (m *fileModel) write(off int64, p []byte) {
	for int64(len(*m)) < off+int64(len(p)) {
		*m = append(*m, 0)
	}
	copy((*m)[off:], p)
}

// TestCrashRecoversAcknowledged: a server killed while it buffers
// acknowledged writes (interleaved records from two clients, overwrites,
// a direct write over buffered bytes, a truncation, a flushed file
// written again, a deleted file) loses none of them: a server started on
// the same state directory writes them before it serves anyone.
func TestCrashRecoversAcknowledged(t *testing.T) {
	stateDir := filepath.Join(t.TempDir(), "state")
	c := testutil.Start(t, testutil.Options{Mutate: stateConfig(stateDir)})
	ack := client.IOOpts{Ack: true}
	write := func(f *client.File, m *fileModel, off int64, p []byte) {
		t.Helper()
		if _, err := f.Write([][]byte{p}, []client.Extent{{Off: off, Len: int64(len(p))}}, ack); err != nil {
			t.Fatal(err)
		}
		m.write(off, p)
	}
	open := func(cl *client.Client, name string) *client.File {
		t.Helper()
		f, err := cl.Open(bg, filepath.Join(c.Dir, name), wire.ORdwr|wire.OCreat, 0, nil)
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	cl1, cl2 := c.Client(t, nil), c.Client(t, nil)
	r := rand.New(rand.NewPCG(1, 2))
	random := func(n int) []byte {
		p := make([]byte, n)
		for i := range p {
			p[i] = byte(r.Uint32())
		}
		return p
	}

	// a: interleaved 64-byte records of two clients over three chunks,
	// some overwritten, a direct write over buffered bytes, a truncation.
	var ma fileModel
	a1, a2 := open(cl1, "a"), open(cl2, "a")
	for i := int64(0); i < 3*1024; i++ {
		f := a1
		if i%2 == 1 {
			f = a2
		}
		write(f, &ma, i*64, random(64))
	}
	for i := 0; i < 50; i++ {
		write(a1, &ma, r.Int64N(3<<16), random(1+r.IntN(300)))
	}
	write(a2, &ma, 70000, random(40<<10)) // direct: supersedes what was buffered
	if err := a1.SetSize(190000); err != nil {
		t.Fatal(err)
	}
	ma = ma[:190000]
	write(a1, &ma, 5, []byte("after the truncation"))

	// b: written, synced (on the backend), then partly written again.
	var mb fileModel
	b := open(cl1, "b")
	write(b, &mb, 0, random(100000))
	if err := b.Sync(); err != nil {
		t.Fatal(err)
	}
	write(b, &mb, 1000, random(5000))

	// gone: written, then deleted: nothing of it may come back.
	gone := open(cl2, "gone")
	write(gone, new(fileModel), 0, random(1000))
	if err := cl2.Delete(bg, filepath.Join(c.Dir, "gone")); err != nil {
		t.Fatal(err)
	}

	// Not vacuous: the acknowledged bytes are not on the backend yet.
	if got, _ := os.ReadFile(filepath.Join(c.Dir, "a")); bytes.Equal(got, ma) {
		t.Fatal("a is on the backend before the crash: the test proves nothing")
	}
	if got, _ := os.ReadFile(filepath.Join(c.Dir, "b")); bytes.Equal(got, mb) {
		t.Fatal("b is on the backend before the crash: the test proves nothing")
	}
	before := c.Servers[0].Stats()
	if before.StateSlots == 0 || before.StateFallbacks != 0 {
		t.Fatalf("%d slots in use, %d heap fallbacks before the crash", before.StateSlots, before.StateFallbacks)
	}

	c.Servers[0].CrashForTest()

	s := restartOn(t, stateDir)
	st := s.Stats()
	if st.RecoveredFiles != 2 || st.RecoveredChunks != before.StateSlots || st.RecoveryDropped != 0 {
		t.Errorf("recovered %d files, %d chunks (%d were in use), %d dropped; want 2 files", st.RecoveredFiles, st.RecoveredChunks, before.StateSlots, st.RecoveryDropped)
	}
	for name, want := range map[string]fileModel{"a": ma, "b": mb} {
		if got, _ := os.ReadFile(filepath.Join(c.Dir, name)); !bytes.Equal(got, want) {
			t.Errorf("%s after recovery: %d bytes, want %d; first difference at %d", name, len(got), len(want), firstDiff(got, want))
		}
	}
	if _, err := os.Stat(filepath.Join(c.Dir, "gone")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a deleted file came back: %v", err)
	}
	ctx, cancel := context.WithTimeout(bg, 10*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stateDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("state directory left after a clean shutdown: %v", err)
	}
}

// TestCrashRecoveryReplacedPath: a file whose path was replaced (removed
// and created again) while no server ran does not get the old file's
// buffered chunks written over its bytes: they are dropped and counted;
// a file beside it is recovered as usual.
func TestCrashRecoveryReplacedPath(t *testing.T) {
	stateDir := filepath.Join(t.TempDir(), "state")
	c := testutil.Start(t, testutil.Options{Mutate: stateConfig(stateDir)})
	cl := c.Client(t, nil)
	data := bytes.Repeat([]byte("buffered, not flushed "), 3000) // two 64 KiB chunks
	for _, name := range []string{"replaced", "kept"} {
		f, err := cl.Open(bg, filepath.Join(c.Dir, name), wire.ORdwr|wire.OCreat, 0, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.Write([][]byte{data[:1000]}, []client.Extent{{Off: 0, Len: 1000}}, client.IOOpts{Ack: true}); err != nil {
			t.Fatal(err)
		}
		if _, err := f.Write([][]byte{data[1000:]}, []client.Extent{{Off: 1000, Len: int64(len(data) - 1000)}}, client.IOOpts{Ack: true}); err != nil {
			t.Fatal(err)
		}
	}
	chunks := c.Servers[0].Stats().StateSlots
	if got, _ := os.ReadFile(filepath.Join(c.Dir, "kept")); bytes.Equal(got, data) {
		t.Fatal("the data is on the backend before the crash: the test proves nothing")
	}
	c.Servers[0].CrashForTest()
	replaced := filepath.Join(c.Dir, "replaced")
	if err := os.Remove(replaced); err != nil {
		t.Fatal(err)
	}
	fresh := []byte("another file, created at the path while no server ran")
	if err := os.WriteFile(replaced, fresh, 0o644); err != nil {
		t.Fatal(err)
	}
	s := restartOn(t, stateDir)
	defer func() {
		ctx, cancel := context.WithTimeout(bg, 10*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Error(err)
		}
	}()
	st := s.Stats()
	if st.RecoveredFiles != 1 || st.RecoveryDropped != chunks/2 || st.RecoveredChunks != chunks/2 {
		t.Errorf("recovered %d files, %d chunks, dropped %d (of %d): want the kept file's half recovered, the replaced one's dropped",
			st.RecoveredFiles, st.RecoveredChunks, st.RecoveryDropped, chunks)
	}
	if got, _ := os.ReadFile(replaced); !bytes.Equal(got, fresh) {
		t.Errorf("the file created at the replaced path holds %d bytes, not its own %d (first difference at %d)", len(got), len(fresh), firstDiff(got, fresh))
	}
	if got, _ := os.ReadFile(filepath.Join(c.Dir, "kept")); !bytes.Equal(got, data) {
		t.Errorf("kept after recovery: %d bytes, want %d", len(got), len(data))
	}
}

// TestRecoveryInodeReused (found in review): after a real crash nothing
// holds the old file open, so removing it frees its inode, and ext4 gives
// the same inode number to the next file created at the path: the slot's
// device and inode match the new file. Its birth time does not: recovery
// drops the old chunk instead of writing it over the new file. The new
// file is created again until its inode number is the old one's, and its
// identity is not (the file system's clock may give two files created in
// the same tick one birth time); where neither happens the test says so.
func TestRecoveryInodeReused(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "replaced")
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	fsys, err := backend.NewOS("/")
	if err != nil {
		t.Fatal(err)
	}
	identity := func() journal.FileID {
		f, err := fsys.OpenFile(path, os.O_RDONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		dev, ino, _ := backend.IdentityOf(f)
		return journal.FileID{Dev: dev, Ino: ino, Birth: backend.BirthOf(f)}
	}
	old := identity()
	if old.Birth == 0 {
		t.Skip("no birth times on this file system")
	}
	state := filepath.Join(dir, "state")
	j, pend, err := journal.Open(state, 64<<10, 4)
	if err != nil || len(pend) != 0 {
		t.Fatal(err, len(pend))
	}
	s := j.Acquire(path, old, 0)
	stale := []byte("OLD DATA of the removed file")
	copy(s.Data(), stale)
	s.Mark(0, int64(len(stale)))
	j.Close(false) // the server dies; its descriptors close with it
	fresh := []byte("another file, created at the path while no server ran")
	reused := false
	for range 100 {
		os.Remove(path)
		if err := os.WriteFile(path, fresh, 0o644); err != nil {
			t.Fatal(err)
		}
		if id := identity(); id.Ino == old.Ino && id != old {
			reused = true
			break
		}
	}
	j, pend, err = journal.Open(state, 64<<10, 4)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close(true)
	rec, err := server.Recover(fsys, pend, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(path); !bytes.Equal(got, fresh) {
		t.Fatalf("the new file at the path holds %q: the old file's chunk was written over it", got)
	}
	if rec.Dropped != 1 || rec.Files != 0 {
		t.Fatalf("recovery %+v: want the chunk dropped", rec)
	}
	if !reused {
		t.Log("the file system gave the new file another inode number: the inode check alone sufficed")
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// gateFS holds every backend write until gate is closed, and closes
// entered when the first one arrives: a flush that is under way.
type gateFS struct {
	backend.FS
	gate, entered chan struct{}
	once          sync.Once
}

func (g *gateFS) OpenFile(path string, flag int, perm fs.FileMode) (backend.File, error) {
	f, err := g.FS.OpenFile(path, flag, perm)
	if err != nil {
		return nil, err
	}
	return gateFile{f, g}, nil
}

type gateFile struct {
	backend.File
	g *gateFS
}

func (f gateFile) WriteAt(p []byte, off int64) (int, error) {
	f.g.once.Do(func() { close(f.g.entered) })
	<-f.g.gate
	return f.File.WriteAt(p, off)
}

// TestCrashDuringFlush: while a flush is writing a layer, writes to the
// same chunks land in newer slots; the server dies with both committed.
// The recovery writes both, the newer bytes last (journal rule J4).
func TestCrashDuringFlush(t *testing.T) {
	stateDir := filepath.Join(t.TempDir(), "state")
	g := &gateFS{gate: make(chan struct{}), entered: make(chan struct{})}
	c := testutil.Start(t, testutil.Options{Mutate: func(i int, cfg *server.Config) {
		stateConfig(stateDir)(i, cfg)
		cfg.Wrap = func(f backend.FS) backend.FS { g.FS = f; return g }
	}})
	defer close(g.gate) // then the old server's flush and drain finish
	path := filepath.Join(c.Dir, "f")
	f, err := c.Client(t, nil).Open(bg, path, wire.ORdwr|wire.OCreat, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	var m fileModel
	write := func(off int64, p []byte) {
		t.Helper()
		if _, err := f.Write([][]byte{p}, []client.Extent{{Off: off, Len: int64(len(p))}}, client.IOOpts{Ack: true}); err != nil {
			t.Fatal(err)
		}
		m.write(off, p)
	}
	for off := int64(0); off < 120000; off += 4000 { // two chunks, below --direct
		write(off, bytes.Repeat([]byte("old "), 1000))
	}
	// A sync through another handle (one per goroutine, as in MPI),
	// held at the gate with its layer's slots committed.
	f2, err := c.Client(t, nil).Open(bg, path, wire.ORdwr, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	go f2.Sync()
	select {
	case <-g.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the flush did not start")
	}
	write(1000, []byte("NEW in the first chunk"))
	write(70000, []byte("NEW in the second chunk"))
	if n := c.Servers[0].Stats().StateSlots; n != 4 {
		t.Fatalf("%d slots in use, want 2 chunks x 2 layers", n)
	}
	// The server dies here: nothing it holds reaches the backend.
	c.Servers[0].AbandonStateForTest()

	s := restartOn(t, stateDir)
	defer s.Shutdown(bg)
	if st := s.Stats(); st.RecoveredChunks != 4 {
		t.Errorf("recovered %d chunks, want 4", st.RecoveredChunks)
	}
	if got, _ := os.ReadFile(path); !bytes.Equal(got, m) {
		t.Fatalf("after recovery: %d bytes, want %d; first difference at %d", len(got), len(m), firstDiff(got, m))
	}
}

// TestFreeSlotsTrimmedWhenIdle: slots released by a flush stay resident
// (a file written again soon reuses them); those beyond the journal's keep
// (a quarter of --buffer) are given back once they have been free for
// FlushIdle, and never before.
func TestFreeSlotsTrimmedWhenIdle(t *testing.T) {
	const chunks = 40 // the keep of stateConfig's 8 MiB buffer is 26 slots of 64 KiB
	for _, tc := range []struct {
		name string
		idle time.Duration
		want int // resident free slots at the end
	}{{"kept while busy", time.Hour, chunks}, {"trimmed when idle", 20 * time.Millisecond, -1}} {
		t.Run(tc.name, func(t *testing.T) {
			stateDir := filepath.Join(t.TempDir(), "state")
			c := testutil.Start(t, testutil.Options{Mutate: func(i int, cfg *server.Config) {
				stateConfig(stateDir)(i, cfg)
				cfg.FlushIdle = tc.idle
			}})
			bg := context.Background()
			f, err := c.Client(t, nil).Open(bg, filepath.Join(c.Dir, "f"), wire.ORdwr|wire.OCreat, 0, nil)
			if err != nil {
				t.Fatal(err)
			}
			// One request for all the chunks: the server puts its pieces
			// under one hold of the file's buffer, so all the slots are in
			// use at once. Written one request each, a loaded machine let
			// FlushIdle pass between two of them, the idle flush released
			// the first slots and the later writes reused them: fewer slots
			// than the keep ever existed, and none was left to trim.
			p := bytes.Repeat([]byte("z"), 1000)
			bufs := make([][]byte, chunks)
			exts := make([]client.Extent, chunks)
			for i := range exts {
				bufs[i], exts[i] = p, client.Extent{Off: int64(i) << 16, Len: 1000}
			}
			if _, err := f.Write(bufs, exts, client.IOOpts{Ack: true}); err != nil {
				t.Fatal(err)
			}
			if err := f.Sync(); err != nil {
				t.Fatal(err)
			}
			s := c.Servers[0]
			fp := journal.Geometry(64 << 10)
			keep := int64(8<<20) / 4 / fp
			want := int64(tc.want)
			if want < 0 {
				want = keep
			}
			deadline := time.Now().Add(10 * time.Second)
			for s.Stats().BufferPooled != want*fp && time.Now().Before(deadline) {
				time.Sleep(5 * time.Millisecond) // waits for the flusher's timer, bounded
			}
			if got := s.Stats().BufferPooled; got != want*fp || keep >= chunks {
				t.Fatalf("%d bytes of free slots resident, want %d slots of %d (keep %d)", got, want, fp, keep)
			}
		})
	}
}
