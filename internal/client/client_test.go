package client_test

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/delegate-io/delegate/internal/backend"
	"github.com/delegate-io/delegate/internal/client"
	"github.com/delegate-io/delegate/internal/route"
	"github.com/delegate-io/delegate/internal/server"
	"github.com/delegate-io/delegate/internal/testutil"
	"github.com/delegate-io/delegate/internal/transport"
	"github.com/delegate-io/delegate/internal/wire"
)

var ctx = context.Background()

type variant struct {
	name    string
	servers int
	tcp     bool
	ring    int
}

var variants = []variant{
	{"unix-ring-1", 1, false, 4 << 20},
	{"unix-inline-1", 1, false, 0},
	{"unix-ring-3", 3, false, 4 << 20},
	{"tcp-3", 3, true, 0},
}

func open(t *testing.T, cl *client.Client, path string, flags uint32, hints map[string]string) *client.File {
	t.Helper()
	f, err := cl.Open(ctx, path, flags, 0o644, hints)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// model is a plain byte array: the file as it must be.
type model struct{ b []byte }

func (m *model) write(off int64, p []byte) {
	if end := off + int64(len(p)); end > int64(len(m.b)) {
		m.b = append(m.b, make([]byte, end-int64(len(m.b)))...)
	}
	copy(m.b[off:], p)
}

// TestModel drives random strided writes and reads through the client
// against a byte-array model, on every transport variant, and checks the
// backend file at the end.
func TestModel(t *testing.T) {
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			c := testutil.Start(t, testutil.Options{Servers: v.servers, TCP: v.tcp})
			cl := c.Client(t, func(cfg *client.Config) { cfg.RingBytes = v.ring })
			path := filepath.Join(c.Dir, "model")
			f := open(t, cl, path, wire.ORdwr|wire.OCreat, nil)
			var m model
			rnd := rand.New(rand.NewPCG(7, uint64(v.servers)))
			for op := 0; op < 300; op++ {
				// A random list of extents (maybe strided, maybe decreasing
				// for reads), split into random memory pieces.
				var ext []client.Extent
				var total int64
				base := rnd.Int64N(400 << 10)
				n := 1 + rnd.IntN(20)
				for i := 0; i < n; i++ {
					l := 1 + rnd.Int64N(20000)
					ext = append(ext, client.Extent{Off: base, Len: l})
					total += l
					base += l + rnd.Int64N(3000)
				}
				if rnd.IntN(4) == 0 {
					// regular runs, as a file view flattens (the writer
					// copies a run's pieces at once), some longer than
					// a request, some contiguous, between odd pieces
					ext, total = ext[:0], 0
					for r := 1 + rnd.IntN(3); r > 0; r-- {
						l := []int64{1, 7, 64, 4096, 20000}[rnd.IntN(5)]
						stride := l + []int64{0, 1, l, rnd.Int64N(3000)}[rnd.IntN(4)]
						count := 2 + rnd.Int64N(200)
						for k := int64(0); k < count; k++ {
							ext = append(ext, client.Extent{Off: base + k*stride, Len: l})
						}
						total += count * l
						base += count*stride + rnd.Int64N(3000)
						if rnd.IntN(2) == 0 {
							ext = append(ext, client.Extent{Off: base, Len: 1 + rnd.Int64N(100)})
							total += ext[len(ext)-1].Len
							base += ext[len(ext)-1].Len + 1
						}
					}
				}
				switch rnd.IntN(3) {
				case 0, 1:
					data := make([]byte, total)
					for i := range data {
						data[i] = byte(rnd.Uint32())
					}
					if _, err := f.Write(split(data, rnd), ext, client.IOOpts{}); err != nil {
						t.Fatal(err)
					}
					pos := int64(0)
					for _, e := range ext {
						m.write(e.Off, data[pos:pos+e.Len])
						pos += e.Len
					}
				case 2:
					got := make([]byte, total)
					n, err := f.Read(split(got, rnd), ext, client.IOOpts{})
					if err != nil {
						t.Fatal(err)
					}
					want, wantN := expect(m.b, ext)
					if n != wantN || !bytes.Equal(got[:n], want) {
						t.Fatalf("op %d: read %d bytes, want %d (equal=%v)", op, n, wantN, bytes.Equal(got[:min(n, wantN)], want[:min(n, wantN)]))
					}
				}
			}
			size, err := f.Size()
			if err != nil || size != int64(len(m.b)) {
				t.Fatalf("size %d %v, want %d", size, err, len(m.b))
			}
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
			disk, err := os.ReadFile(path)
			if err != nil || !bytes.Equal(disk, m.b) {
				t.Fatalf("backend file differs from the model (%d vs %d bytes)", len(disk), len(m.b))
			}
		})
	}
}

// split cuts b into 1-4 memory pieces.
func split(b []byte, rnd *rand.Rand) [][]byte {
	var out [][]byte
	for len(b) > 0 && len(out) < 3 {
		k := rnd.IntN(len(b) + 1)
		out = append(out, b[:k])
		b = b[k:]
	}
	return append(out, b)
}

// expect returns what reading ext from file content b yields: bytes up to
// the first one at or past the end of file.
func expect(b []byte, ext []client.Extent) ([]byte, int64) {
	var out []byte
	for _, e := range ext {
		for i := int64(0); i < e.Len; i++ {
			if e.Off+i >= int64(len(b)) {
				return out, int64(len(out))
			}
			out = append(out, b[e.Off+i])
		}
	}
	return out, int64(len(out))
}

func TestHoleBeyondOtherServersData(t *testing.T) {
	// Server A's region is empty, server B buffers data further on: a read
	// of A's region must return zeros up to B's data, not stop short.
	c := testutil.Start(t, testutil.Options{Servers: 2})
	cl := c.Client(t, nil)
	f := open(t, cl, filepath.Join(c.Dir, "hole"), wire.ORdwr|wire.OCreat, nil)
	const region = 64 << 10
	if _, err := f.Write([][]byte{[]byte("tail")}, []client.Extent{{Off: 3 * region, Len: 4}}, client.IOOpts{Ack: true}); err != nil {
		t.Fatal(err)
	}
	buf := bytes.Repeat([]byte{0xff}, 3*region+4)
	n, err := f.Read([][]byte{buf}, []client.Extent{{Off: 0, Len: int64(len(buf))}}, client.IOOpts{})
	if err != nil || n != int64(len(buf)) {
		t.Fatalf("read %d %v, want %d", n, err, len(buf))
	}
	if !bytes.Equal(buf[:3*region], make([]byte, 3*region)) || string(buf[3*region:]) != "tail" {
		t.Fatal("hole did not read as zeros")
	}
	f.Close()
}

func TestCorkHoldsWritesUntilUncork(t *testing.T) {
	c := testutil.Start(t, testutil.Options{})
	cl := c.Client(t, nil)
	path := filepath.Join(c.Dir, "cork")
	f := open(t, cl, path, wire.ORdwr|wire.OCreat, map[string]string{"delegate_cork": "true"})
	writes := func() int64 { return c.Servers[0].Stats().Requests["write"] }
	for i := 0; i < 1000; i++ {
		if _, err := f.Write([][]byte{[]byte(fmt.Sprintf("%07d\n", i))}, []client.Extent{{Off: int64(i) * 8, Len: 8}}, client.IOOpts{}); err != nil {
			t.Fatal(err)
		}
	}
	if n := writes(); n != 0 {
		t.Fatalf("%d write requests reached the server while corked", n)
	}
	if err := f.Uncork(); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	if n := writes(); n != 1 {
		t.Fatalf("uncork sent %d write requests, want 1 batch", n)
	}
	f.Close()
	b, _ := os.ReadFile(path)
	if len(b) != 8000 || string(b[7992:]) != "0000999\n" {
		t.Fatalf("file after uncork: %d bytes", len(b))
	}
}

func TestErrors(t *testing.T) {
	c := testutil.Start(t, testutil.Options{Root: ""})
	cl := c.Client(t, nil)
	_, err := cl.Open(ctx, filepath.Join(c.Dir, "missing"), wire.ORdonly, 0, nil)
	if wire.CodeOf(err) != wire.ENOENT {
		t.Fatalf("open missing: %v", err)
	}
	f := open(t, cl, filepath.Join(c.Dir, "x"), wire.ORdwr|wire.OCreat|wire.OExcl, nil)
	defer f.Close()
	if _, err := cl.Open(ctx, filepath.Join(c.Dir, "x"), wire.ORdwr|wire.OCreat|wire.OExcl, 0, nil); wire.CodeOf(err) != wire.EEXIST {
		t.Fatalf("exclusive create of an open file: %v", err)
	}
	if _, err := f.Write([][]byte{make([]byte, 3)}, []client.Extent{{Off: 0, Len: 4}}, client.IOOpts{}); wire.CodeOf(err) != wire.EINVAL {
		t.Fatalf("mismatched lists: %v", err)
	}
	if _, err := cl.Open(ctx, "/x", wire.ORdwr|wire.OWronly, 0, nil); wire.CodeOf(err) != wire.EINVAL {
		t.Fatalf("bad flags: %v", err)
	}
	if _, err := cl.Open(ctx, "/x", wire.ORdonly, 0, map[string]string{"delegate_cork": "maybe"}); wire.CodeOf(err) != wire.EHINT {
		t.Fatalf("bad hint: %v", err)
	}
	if _, err := cl.Open(ctx, "/x", wire.ORdonly, 0, map[string]string{"delegate_nonsense": "1"}); wire.CodeOf(err) != wire.EHINTKEY {
		t.Fatalf("unknown hint: %v", err)
	}
	if err := cl.Delete(ctx, filepath.Join(c.Dir, "nothing")); wire.CodeOf(err) != wire.ENOENT {
		t.Fatalf("delete missing: %v", err)
	}
}

func TestPathOutsideRoot(t *testing.T) {
	root := t.TempDir()
	c := testutil.Start(t, testutil.Options{Root: root})
	cl := c.Client(t, nil)
	_, err := cl.Open(ctx, "/etc/passwd", wire.ORdonly, 0, nil)
	if wire.CodeOf(err) != wire.EPATH {
		t.Fatalf("open outside root: %v", err)
	}
	f := open(t, cl, filepath.Join(root, "in"), wire.ORdwr|wire.OCreat, nil)
	f.Close()
}

func TestUnreachable(t *testing.T) {
	cfg := client.DefaultConfig()
	cfg.Servers = []transport.Addr{{Net: "unix", Addr: "/tmp/dlg-no-such-socket"}}
	_, err := client.New(ctx, cfg)
	if wire.CodeOf(err) != wire.EUNREACHABLE || !bytes.Contains([]byte(err.Error()), []byte("/tmp/dlg-no-such-socket")) {
		t.Fatalf("got %v, want EUNREACHABLE naming the address", err)
	}
}

func TestCounterSizeResize(t *testing.T) {
	c := testutil.Start(t, testutil.Options{Servers: 2})
	cl := c.Client(t, nil)
	f := open(t, cl, filepath.Join(c.Dir, "ctr"), wire.ORdwr|wire.OCreat, nil)
	defer f.Close()
	for i := int64(0); i < 5; i++ {
		old, err := f.Counter("shfp", wire.CounterFetchAdd, 10)
		if err != nil || old != i*10 {
			t.Fatalf("fetch-add %d: %d %v", i, old, err)
		}
	}
	if err := f.SetSize(1 << 20); err != nil {
		t.Fatal(err)
	}
	if n, err := f.Size(); n != 1<<20 || err != nil {
		t.Fatalf("size %d %v", n, err)
	}
	if err := f.Preallocate(100); err != nil {
		t.Fatal(err)
	}
	if n, _ := f.Size(); n != 1<<20 {
		t.Fatalf("preallocate shrank the file to %d", n)
	}
	if err := f.SetSize(10); err != nil {
		t.Fatal(err)
	}
	if n, _ := f.Size(); n != 10 {
		t.Fatalf("size after truncate %d", n)
	}
}

// TestAtomicCalls: two clients overwrite the same range concurrently and
// in atomic mode while one of them reads it. Every read sees one writer's
// bytes throughout, never a mix, and so does the file. "across servers":
// the range spans three servers' regions (the home applies all of it).
// The others are calls larger than one request, sent as several
// (wire.IOMore), which the home applies as one unit: 16 ring slots of
// 64 KiB, 3 inline requests (wire.MaxInline), 4 bulk transfers of 256 KiB;
// reads are cut into windows the same way.
func TestAtomicCalls(t *testing.T) {
	for _, tc := range []struct {
		name    string
		servers int
		tcp     bool
		span    int64
		cfg     func(*client.Config)
	}{
		{"across servers", 3, false, 3 * 64 << 10, nil},
		{"ring slots", 1, false, 1 << 20, func(c *client.Config) { c.MaxRequestBytes = 64 << 10 }},
		{"inline", 2, true, 5 * wire.MaxInline / 2, func(c *client.Config) { c.BulkConns = 0 }},
		{"bulk", 1, true, 1 << 20, func(c *client.Config) { c.MaxRequestBytes = 256 << 10 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := testutil.Start(t, testutil.Options{Servers: tc.servers, TCP: tc.tcp})
			path := filepath.Join(c.Dir, "atomic")
			hints := map[string]string{"delegate_region_size": fmt.Sprint(64 << 10)}
			var files []*client.File
			for i := 0; i < 2; i++ {
				cl := c.Client(t, tc.cfg)
				f := open(t, cl, path, wire.ORdwr|wire.OCreat, hints)
				if err := f.SetAtomic(true); err != nil {
					t.Fatal(err)
				}
				files = append(files, f)
			}
			span := tc.span
			done := make(chan error, 2)
			for i, f := range files {
				go func() {
					buf := bytes.Repeat([]byte{byte('A' + i)}, int(span))
					for k := 0; k < 30; k++ {
						if _, err := f.Write([][]byte{buf}, []client.Extent{{Off: 0, Len: span}}, client.IOOpts{}); err != nil {
							done <- err
							return
						}
					}
					done <- f.WaitAcked()
				}()
			}
			got := make([]byte, span)
			for k := 0; k < 30; k++ {
				n, err := files[0].Read([][]byte{got}, []client.Extent{{Off: 0, Len: span}}, client.IOOpts{})
				if err != nil {
					t.Fatal(err)
				}
				if n == span && bytes.Count(got, got[:1]) != int(span) {
					t.Fatalf("read %d: a mix of writers (%d of %d bytes are %q)", k, bytes.Count(got, got[:1]), span, got[0])
				}
			}
			for range files {
				if err := <-done; err != nil {
					t.Fatal(err)
				}
			}
			for _, f := range files {
				if err := f.Close(); err != nil {
					t.Fatal(err)
				}
			}
			b, _ := os.ReadFile(path)
			if int64(len(b)) != span || bytes.Count(b, b[:1]) != int(span) {
				t.Fatal("the file holds a mix of writers")
			}
		})
	}
}

// TestReadOnlyOpenOfRunningExecutable: reading a file that is being
// executed works (the server must not open it for writing).
func TestReadOnlyOpenOfRunningExecutable(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Skip(err)
	}
	c := testutil.Start(t, testutil.Options{})
	cl := c.Client(t, nil)
	f := open(t, cl, exe, wire.ORdonly, nil)
	buf := make([]byte, 4)
	if n, err := f.Read([][]byte{buf}, []client.Extent{{Off: 0, Len: 4}}, client.IOOpts{}); err != nil || n != 4 || string(buf[1:]) != "ELF" {
		t.Fatalf("read %d %v %q", n, err, buf)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestDirectReads: reads go straight to the backend only while no server
// holds dirty data, and never miss another client's acknowledged write.
func TestDirectReads(t *testing.T) {
	for _, servers := range []int{1, 2} {
		c := testutil.Start(t, testutil.Options{Servers: servers})
		path := filepath.Join(c.Dir, "direct")
		clA, clB := c.Client(t, nil), c.Client(t, nil)
		a := open(t, clA, path, wire.ORdwr|wire.OCreat, nil)
		b := open(t, clB, path, wire.ORdonly, nil)
		read := func(want string) {
			t.Helper()
			buf := make([]byte, len(want))
			n, err := b.Read([][]byte{buf}, []client.Extent{{Off: 70000, Len: int64(len(want))}}, client.IOOpts{})
			if err != nil || string(buf[:n]) != want {
				t.Fatalf("%d servers: read %q %v, want %q", servers, buf[:n], err, want)
			}
		}
		write := func(s string) {
			t.Helper()
			if _, err := a.Write([][]byte{[]byte(s)}, []client.Extent{{Off: 70000, Len: int64(len(s))}}, client.IOOpts{Ack: true}); err != nil {
				t.Fatal(err)
			}
		}
		write("one")
		d0 := clB.Stats().DirectReads
		read("one") // buffered on a server: through it
		if clB.Stats().DirectReads != d0 {
			t.Fatal("a read went to the backend while a server held dirty data")
		}
		if err := a.Sync(); err != nil {
			t.Fatal(err)
		}
		read("one") // clean everywhere: straight from the backend
		if clB.Stats().DirectReads != d0+1 {
			t.Fatalf("%d servers: clean file, yet the read went through a server", servers)
		}
		write("two")
		read("two")
		a.Close()
		b.Close()
	}
}

// TestCollectiveVisibility: ranks write their parts collectively (no
// acknowledgement awaited), then each reads the whole range at once, with
// no sync and no barrier: every read sees every rank's part.
func TestCollectiveVisibility(t *testing.T) {
	for _, servers := range []int{1, 3} {
		c := testutil.Start(t, testutil.Options{Servers: servers})
		path := filepath.Join(c.Dir, "coll")
		const ranks, part = 4, 100000
		var files []*client.File
		for r := 0; r < ranks; r++ {
			files = append(files, open(t, c.Client(t, nil), path, wire.ORdwr|wire.OCreat, nil))
		}
		for seq := int64(0); seq < 10; seq++ {
			errs := make(chan error, ranks)
			for r, f := range files {
				go func() {
					tag := wire.CollTag{Seq: 2 * seq, Rank: int32(r), Size: ranks, Group: 77}
					o := client.IOOpts{Coll: &tag}
					buf := bytes.Repeat([]byte{byte(int(seq)*ranks + r + 1)}, part)
					if r == 2 {
						buf = nil // a rank with nothing to write still takes part
					}
					ext := []client.Extent{{Off: int64(r) * part, Len: int64(len(buf))}}
					if _, err := f.Write([][]byte{buf}, ext[:min(1, len(buf))], o); err != nil {
						errs <- err
						return
					}
					got := make([]byte, ranks*part)
					o.Coll = &wire.CollTag{Seq: tag.Seq + 1, Rank: tag.Rank, Size: tag.Size, Group: tag.Group}
					n, err := f.Read([][]byte{got}, []client.Extent{{Off: 0, Len: ranks * part}}, o)
					if err != nil {
						errs <- err
						return
					}
					for q := 0; q < ranks; q++ {
						if q == 2 {
							continue
						}
						if got[q*part] != byte(int(seq)*ranks+q+1) || got[q*part+part-1] != byte(int(seq)*ranks+q+1) {
							errs <- fmt.Errorf("%d servers, collective %d: rank %d does not see rank %d's part (%d bytes read)", servers, seq, r, q, n)
							return
						}
					}
					errs <- nil
				}()
			}
			for range files {
				if err := <-errs; err != nil {
					t.Fatal(err)
				}
			}
		}
		for _, f := range files {
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// TestCollectiveMissingRank: a rank that never reaches the collective makes
// the others' next call fail after the server's timeout, never hang.
func TestCollectiveMissingRank(t *testing.T) {
	c := testutil.Start(t, testutil.Options{Mutate: func(_ int, cfg *server.Config) { cfg.CollTimeout = 300 * time.Millisecond }})
	f := open(t, c.Client(t, nil), filepath.Join(c.Dir, "lonely"), wire.ORdwr|wire.OCreat, nil)
	o := client.IOOpts{Coll: &wire.CollTag{Seq: 0, Rank: 0, Size: 2, Group: 5}}
	if _, err := f.Write([][]byte{[]byte("x")}, []client.Extent{{Off: 0, Len: 1}}, o); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	err := f.Sync()
	if wire.CodeOf(err) != wire.ETIMEDOUT || time.Since(t0) > 5*time.Second {
		t.Fatalf("after a collective nobody else joined: %v after %s", err, time.Since(t0))
	}
	f.Close()
}

// TestCounterEndsWithLastClose: a counter (a shared file pointer) starts
// again at 0 once every handle of the file was closed, even while the file's
// data still drains after an asynchronous close (found by the differential
// test: ROMIO reuses counter names for opens within one second).
func TestCounterEndsWithLastClose(t *testing.T) {
	// Backend writes wait at the gate, so the drain outlasts the reopens.
	efs := &backend.ErrorFS{Gate: make(chan struct{})}
	defer close(efs.Gate)
	c := testutil.Start(t, testutil.Options{Mutate: func(_ int, cfg *server.Config) {
		cfg.Wrap = func(f backend.FS) backend.FS { efs.FS = f; return efs }
	}})
	cl := c.Client(t, nil)
	path := filepath.Join(c.Dir, "shfp")
	for i := 0; i < 3; i++ {
		f := open(t, cl, path, wire.ORdwr|wire.OCreat, map[string]string{"delegate_async_close": "true"})
		if old, err := f.Counter(".shfp.1", wire.CounterFetchAdd, 800); err != nil || old != 0 {
			t.Fatalf("open %d: counter starts at %d (%v), want 0", i, old, err)
		}
		// dirty data keeps the file's entry alive after the close
		if _, err := f.Write([][]byte{[]byte("x")}, []client.Extent{{Off: int64(i), Len: 1}}, client.IOOpts{}); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestRegionSizeConflict: a file open with one region size refuses another
// with EBUSY while it is held; once released, a new size is fine.
func TestRegionSizeConflict(t *testing.T) {
	c := testutil.Start(t, testutil.Options{Servers: 2})
	cl := c.Client(t, nil)
	path := filepath.Join(c.Dir, "regions")
	f := open(t, cl, path, wire.ORdwr|wire.OCreat, map[string]string{"delegate_region_size": "64K"})
	if _, err := cl.Open(ctx, path, wire.ORdwr, 0, map[string]string{"delegate_region_size": "128K"}); wire.CodeOf(err) != wire.EBUSY {
		t.Fatalf("conflicting region size: %v, want EBUSY", err)
	}
	f.Close()
	g := open(t, cl, path, wire.ORdwr, map[string]string{"delegate_region_size": "128K"})
	g.Close()
}

// TestDescriptionCompression: over TCP a large description that lz4 halves
// goes compressed (the server counts bytes before and after); over a Unix
// socket it goes raw.
func TestDescriptionCompression(t *testing.T) {
	for _, tcp := range []bool{true, false} {
		c := testutil.Start(t, testutil.Options{TCP: tcp})
		f := open(t, c.Client(t, nil), filepath.Join(c.Dir, "z"), wire.ORdwr|wire.OCreat, nil)
		// Alternating lengths defeat the stride folding but repeat well;
		// 4 KiB apart, each run takes 4 bytes, so that a request of
		// wire.MaxRequestRuns runs is over the threshold (16 KiB).
		var ext []client.Extent
		var total int64
		for i := int64(0); i < 20000; i++ {
			l := 1 + i%2
			ext = append(ext, client.Extent{Off: i * 4096, Len: l})
			total += l
		}
		if _, err := f.Write([][]byte{make([]byte, total)}, ext, client.IOOpts{Ack: true}); err != nil {
			t.Fatal(err)
		}
		f.Close()
		st := c.Servers[0].Stats()
		compressed := st.DescWire < st.DescRaw/2
		if compressed != tcp {
			t.Fatalf("tcp=%v: descriptions %d bytes raw, %d on the wire", tcp, st.DescRaw, st.DescWire)
		}
	}
}

// TestWriteRunsAcrossRequests writes regular runs (the pieces of a file
// view) whose pieces do not fit one request (MaxRequestBytes 64 KiB, its least), so
// the writer's run copy (putRun) fills requests with whole pieces and
// splits the piece at each request's end, and reads them back; the
// backend file must equal the model.
func TestWriteRunsAcrossRequests(t *testing.T) {
	cases := []struct {
		name               string
		len, stride, count int64
	}{
		{"64-every-128", 64, 128, 5000},
		{"4k-every-8k", 4096, 8192, 100},
		{"7-every-9", 7, 9, 30000},
		{"3000-contiguous", 3000, 3000, 100},
		{"70000-beyond-a-request", 70000, 70001, 5},
	}
	for _, v := range variants[:2] {
		for _, tc := range cases {
			t.Run(v.name+"/"+tc.name, func(t *testing.T) {
				c := testutil.Start(t, testutil.Options{Servers: v.servers, TCP: v.tcp})
				cl := c.Client(t, func(cfg *client.Config) { cfg.RingBytes, cfg.MaxRequestBytes = v.ring, 64<<10 })
				path := filepath.Join(c.Dir, "runs")
				f := open(t, cl, path, wire.ORdwr|wire.OCreat, nil)
				var m model
				rnd := rand.New(rand.NewPCG(uint64(tc.len), uint64(tc.count)))
				data := make([]byte, tc.len*tc.count)
				for i := range data {
					data[i] = byte(rnd.Uint32())
				}
				base := int64(5)
				ext := make([]client.Extent, tc.count)
				for k := range ext {
					ext[k] = client.Extent{Off: base + int64(k)*tc.stride, Len: tc.len}
					m.write(ext[k].Off, data[int64(k)*tc.len:int64(k+1)*tc.len])
				}
				if _, err := f.Write(split(data, rnd), ext, client.IOOpts{}); err != nil {
					t.Fatal(err)
				}
				if err := f.Close(); err != nil {
					t.Fatal(err)
				}
				disk, err := os.ReadFile(path)
				if err != nil || !bytes.Equal(disk, m.b) {
					t.Fatalf("backend file differs from the model (%d vs %d bytes, %v)", len(disk), len(m.b), err)
				}
			})
		}
	}
}

// TestWriteZeroLengthPieces: empty pieces at a regular stride, between
// others, are no run (a run of empty pieces would divide by zero) and
// write nothing.
func TestWriteZeroLengthPieces(t *testing.T) {
	c := testutil.Start(t, testutil.Options{})
	cl := c.Client(t, nil)
	path := filepath.Join(c.Dir, "zero")
	f := open(t, cl, path, wire.ORdwr|wire.OCreat, nil)
	ext := []client.Extent{{Off: 0, Len: 0}, {Off: 10, Len: 0}, {Off: 20, Len: 0}, {Off: 30, Len: 3}, {Off: 40, Len: 0}, {Off: 50, Len: 0}, {Off: 60, Len: 2}}
	if _, err := f.Write([][]byte{[]byte("abcde")}, ext, client.IOOpts{}); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	want := make([]byte, 62)
	copy(want[30:], "abc")
	copy(want[60:], "de")
	if disk, err := os.ReadFile(path); err != nil || !bytes.Equal(disk, want) {
		t.Fatalf("file %q %v, want %q", disk, err, want)
	}
}

// atomicHome returns the home server of path with regions of region bytes
// on servers servers: where every request goes in atomic mode.
func atomicHome(path string, region int64, servers int) int {
	return route.Rule{Key: route.FileKey(path), RegionSize: region, Servers: servers}.Home()
}

// TestAtomicAsyncClose: in atomic mode every write goes to the home
// server, also into regions other servers own; after an asynchronous
// close and a reopen (not atomic) those regions are read from their
// owners, so the home must have written them out before the close
// returned (found by the differential test, seed 44). "flush fails": the
// home's backend refuses writes, and the asynchronous close reports it,
// which it can only if it waited for the home's flush; "bytes": the
// reopened file reads what was written.
func TestAtomicAsyncClose(t *testing.T) {
	const region = 64 << 10
	for _, tc := range []struct {
		name string
		fail bool
	}{{"bytes", false}, {"flush fails", true}} {
		t.Run(tc.name, func(t *testing.T) {
			fss := []*backend.ErrorFS{{}, {}}
			c := testutil.Start(t, testutil.Options{Servers: 2, Mutate: func(i int, cfg *server.Config) {
				cfg.Wrap = func(f backend.FS) backend.FS { fss[i].FS = f; return fss[i] }
			}})
			path := filepath.Join(c.Dir, "f")
			efs := fss[atomicHome(path, region, 2)]
			hints := map[string]string{"delegate_region_size": fmt.Sprint(region), "delegate_async_close": "true"}
			cl := c.Client(t, nil)
			f := open(t, cl, path, wire.ORdwr|wire.OCreat, hints)
			if err := f.SetAtomic(true); err != nil {
				t.Fatal(err)
			}
			data := make([]byte, 4*region)
			for i := range data {
				data[i] = byte(i*7 + i/region)
			}
			if _, err := f.Write([][]byte{data}, []client.Extent{{Off: 0, Len: int64(len(data))}}, client.IOOpts{}); err != nil {
				t.Fatal(err)
			}
			efs.Fail.Store(tc.fail)
			err := f.Close()
			efs.Fail.Store(false) // the kept data flushes later, and the servers stop cleanly
			if tc.fail {
				if err == nil || !strings.Contains(err.Error(), backend.ErrInjected.Error()) {
					t.Fatalf("asynchronous close in atomic mode with the home's backend failing: %v, want the flush's error", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			g := open(t, cl, path, wire.ORdonly, map[string]string{"delegate_region_size": fmt.Sprint(region)})
			defer g.Close()
			got := make([]byte, len(data))
			if _, err := g.Read([][]byte{got}, []client.Extent{{Off: 0, Len: int64(len(got))}}, client.IOOpts{}); err != nil {
				t.Fatal(err)
			}
			if i := firstDiff(got, data); i >= 0 {
				t.Fatalf("reopened file differs at byte %d (region %d)", i, i/region)
			}
		})
	}
}

// TestSetAtomicSettles: a nonblocking write posted in atomic mode goes to
// the home server even if it runs after SetAtomic(false); SetAtomic waits
// for it, so that its flush covers it and a read afterwards (from the
// regions' owners) sees it. The request is held before it starts until
// SetAtomic either returned (the bug) or waits for it.
func TestSetAtomicSettles(t *testing.T) {
	const region = 64 << 10
	c := testutil.Start(t, testutil.Options{Servers: 2})
	path := filepath.Join(c.Dir, "f")
	cl := c.Client(t, nil)
	f := open(t, cl, path, wire.ORdwr|wire.OCreat, map[string]string{"delegate_region_size": fmt.Sprint(region)})
	defer f.Close()
	if err := f.SetAtomic(true); err != nil {
		t.Fatal(err)
	}
	release, waiting := make(chan struct{}), make(chan struct{}, 1)
	restore := client.SetRequestHooksForTest(func() { <-release }, func() {
		select {
		case waiting <- struct{}{}:
		default:
		}
	})
	defer restore()
	data := bytes.Repeat([]byte("atomic posted "), 4*region/14+1)[:4*region]
	req, err := f.IWrite([][]byte{data}, []client.Extent{{Off: 0, Len: int64(len(data))}}, client.IOOpts{})
	if err != nil {
		t.Fatal(err)
	}
	set := make(chan error, 1)
	go func() { set <- f.SetAtomic(false) }()
	var setErr error
	returned := false
	select {
	case <-waiting:
	case setErr = <-set:
		returned = true
	}
	close(release)
	if _, err := req.Wait(); err != nil {
		t.Fatal(err)
	}
	if !returned {
		setErr = <-set
	}
	if setErr != nil {
		t.Fatal(setErr)
	}
	got := make([]byte, len(data))
	if _, err := f.Read([][]byte{got}, []client.Extent{{Off: 0, Len: int64(len(got))}}, client.IOOpts{}); err != nil {
		t.Fatal(err)
	}
	if i := firstDiff(got, data); i >= 0 {
		t.Fatalf("read after SetAtomic(false) differs at byte %d (region %d; SetAtomic returned before the request ran: %v)", i, i/region, returned)
	}
}

// firstDiff returns the first index where a and b differ, or -1.
func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	if len(a) != len(b) {
		return min(len(a), len(b))
	}
	return -1
}

// TestRoundTripOrder: a call whose caller waits for its reply is written
// by that caller (session.sendNow) when the sender is idle, and queued
// otherwise; either way it follows every request queued before it. Writes
// that return before their acknowledgement, then WaitAcked (a round trip
// on each session) from several goroutines at once: once it returns,
// another client reads the writes (the servers answer in order, so the
// round trip's reply means the writes were applied). Over Unix sockets
// (the ring) and TCP (inline data), one server and three.
func TestRoundTripOrder(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    testutil.Options
	}{
		{"unix, 1 server", testutil.Options{}},
		{"unix, 3 servers", testutil.Options{Servers: 3}},
		{"tcp, 2 servers", testutil.Options{Servers: 2, TCP: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := testutil.Start(t, tc.o)
			path := filepath.Join(c.Dir, "order")
			cl, ocl := c.Client(t, nil), c.Client(t, nil)
			f := open(t, cl, path, wire.ORdwr|wire.OCreat, nil)
			other := open(t, ocl, path, wire.ORdonly, nil)
			const writers, rounds, piece = 4, 50, 3000 // pieces of regions on every server
			var wg sync.WaitGroup
			errs := make(chan error, writers)
			for w := range writers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for r := range rounds {
						off := int64((r*writers + w) * piece)
						p := bytes.Repeat([]byte{byte(1 + (r*writers+w)%251)}, piece)
						if _, err := f.Write([][]byte{p}, []client.Extent{{Off: off, Len: piece}}, client.IOOpts{}); err != nil {
							errs <- err
							return
						}
						if err := f.WaitAcked(); err != nil {
							errs <- err
							return
						}
						got := make([]byte, piece)
						if n, err := other.Read([][]byte{got}, []client.Extent{{Off: off, Len: piece}}, client.IOOpts{}); err != nil || n != piece || !bytes.Equal(got, p) {
							errs <- fmt.Errorf("writer %d round %d: read %d bytes (%v) after WaitAcked, not the write's", w, r, n, err)
							return
						}
					}
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
		})
	}
}
