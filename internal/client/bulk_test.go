package client_test

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/delegate-io/delegate/internal/client"
	"github.com/delegate-io/delegate/internal/testutil"
	"github.com/delegate-io/delegate/internal/wire"
)

// TestBulkData: over TCP, writes and reads of every size around the bulk
// threshold and the direct-write size, contiguous and scattered in memory
// and in the file, on 1 and 3 servers, with 0, 1 and 4 bulk connections:
// the file holds exactly what was written (checked on the backend), reads
// return it, a read past the end of file stops there and leaves the rest
// of the caller's buffer alone, and the servers' counters show which way
// the data went (bulk, spliced into the file, inline).
func TestBulkData(t *testing.T) {
	tests := []struct {
		name    string
		servers int
		conns   int
		parts   int // Config.BulkReadParts
	}{
		{"1 server, 4 connections", 1, 4, 2},
		{"1 server, 4 connections, reads in 4 parts", 1, 4, 4},
		{"1 server, 4 connections, reads whole", 1, 4, 1},
		{"1 server, 1 connection", 1, 1, 2},
		{"3 servers, 4 connections", 3, 4, 2},
		{"1 server, inline", 1, 0, 2},
	}
	// Around the thresholds: bulk (64 KiB), direct writes (1 MiB), and a
	// read's parts (at least 1 MiB each: 2 MiB is the least cut in two).
	sizes := []int64{1, 4 << 10, 64<<10 - 1, 64 << 10, 300 << 10, 1 << 20, 1<<20 + 7, 2<<20 - 1, 2<<20 + 1, 3<<20 - 1, 4 << 20, 9<<20 + 3}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := testutil.Start(t, testutil.Options{Servers: tc.servers, TCP: true})
			cl := c.Client(t, func(cfg *client.Config) { cfg.BulkConns, cfg.BulkReadParts = tc.conns, tc.parts })
			path := filepath.Join(c.Dir, "bulk")
			f := open(t, cl, path, wire.ORdwr|wire.OCreat, map[string]string{"delegate_region_size": "1M"})
			rng := rand.New(rand.NewPCG(1, 2))
			// want's whole length up front: growing it by appends copied
			// it again and again, most of this test's time under -race.
			var total int64
			for _, n := range sizes {
				total += n
				if n >= 3 {
					total += n + 4096
				}
			}
			want := make([]byte, 0, total)
			put := func(off int64, b []byte) {
				if n := off + int64(len(b)); n > int64(len(want)) {
					want = want[:n]
				}
				copy(want[off:], b)
			}
			var off int64
			for _, n := range sizes {
				b := make([]byte, n)
				for i := range b {
					b[i] = byte(rng.Uint32())
				}
				// Contiguous.
				if _, err := f.Write([][]byte{b}, []client.Extent{{Off: off, Len: n}}, client.IOOpts{}); err != nil {
					t.Fatalf("write %d bytes: %v", n, err)
				}
				put(off, b)
				off += n
				// Scattered: three pieces of memory to two extents with a hole.
				if n >= 3 {
					mem := [][]byte{b[:n/3], b[n/3 : n/2], b[n/2:]}
					ext := []client.Extent{{Off: off, Len: n / 2}, {Off: off + n/2 + 4096, Len: n - n/2}}
					if _, err := f.Write(mem, ext, client.IOOpts{}); err != nil {
						t.Fatalf("scattered write %d bytes: %v", n, err)
					}
					put(off, b[:n/2])
					put(off+n/2+4096, b[n/2:])
					off += n + 4096
				}
			}
			if err := f.Sync(); err != nil {
				t.Fatal(err)
			}
			got := make([]byte, len(want))
			if n, err := f.Read([][]byte{got}, []client.Extent{{Off: 0, Len: int64(len(got))}}, client.IOOpts{}); err != nil || n != int64(len(want)) || !bytes.Equal(got, want) {
				t.Fatalf("read all: %d bytes, %v, equal %v", n, err, bytes.Equal(got, want))
			}
			for _, n := range sizes {
				at := rng.Int64N(int64(len(want)) - n)
				part := make([]byte, n)
				if k, err := f.Read([][]byte{part[:n/2], part[n/2:]}, []client.Extent{{Off: at, Len: n}}, client.IOOpts{}); err != nil || k != n || !bytes.Equal(part, want[at:at+n]) {
					t.Fatalf("read %d at %d: %d, %v", n, at, k, err)
				}
			}
			// Past the end of file: the count stops there, the rest of the
			// buffer keeps its bytes.
			tail := bytes.Repeat([]byte{0xee}, 2<<20)
			at := int64(len(want)) - 1000
			if k, err := f.Read([][]byte{tail}, []client.Extent{{Off: at, Len: int64(len(tail))}}, client.IOOpts{}); err != nil || k != 1000 ||
				!bytes.Equal(tail[:1000], want[at:]) || tail[1000] != 0xee || tail[len(tail)-1] != 0xee {
				t.Fatalf("read past the end: %d, %v", k, err)
			}
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
			disk, err := os.ReadFile(path)
			if err != nil || !bytes.Equal(disk, want) {
				t.Fatalf("backend file: %d bytes, want %d, equal %v (%v)", len(disk), len(want), bytes.Equal(disk, want), err)
			}
			var conns, in, spliced, out, sent, errs int64
			for _, s := range c.Servers {
				st := s.Stats()
				conns, in, spliced, out, errs = conns+st.BulkConns, in+st.BulkIn, spliced+st.BulkSpliced, out+st.BulkOut, errs+st.BulkErrors
				sent += st.BulkSentFile
			}
			t.Logf("bulk: %d connections, %d bytes in (%d spliced), %d out (%d sent from the file)", conns, in, spliced, out, sent)
			if errs != 0 {
				t.Fatalf("%d bulk transfers failed", errs)
			}
			// Reads of 2 MiB or more to one server are cut when there are
			// connections and parts to cut them over; never otherwise.
			if split := cl.Stats().BulkReadParts; (split > 0) != (tc.conns > 1 && tc.parts > 1) {
				t.Fatalf("%d read parts beyond the first with %d connections and %d parts", split, tc.conns, tc.parts)
			}
			if tc.conns == 0 {
				if conns != 0 || in != 0 || out != 0 {
					t.Fatalf("inline: %d bulk connections, %d in, %d out", conns, in, out)
				}
				return
			}
			if conns != int64(tc.servers*tc.conns) || in == 0 || out == 0 || spliced == 0 || spliced > in || sent > out {
				t.Fatalf("bulk connections %d (want %d), in %d, spliced %d, out %d, sent from the file %d", conns, tc.servers*tc.conns, in, spliced, out, sent)
			}
			// One server: the whole-file read after Sync is one extent of a
			// clean file, sent from the file; the others are read into memory.
			if tc.servers == 1 && (sent == 0 || sent == out) {
				t.Fatalf("sent from the file %d of %d bytes out: want some, not all", sent, out)
			}
		})
	}
}

// TestBulkSpliceBackendError: a direct write spliced from its bulk
// connection into a backend file that refuses it (/dev/full) fails with the
// backend's error, not a lost connection: the server takes the rest of the
// transfer, the session goes on, and the next bulk write and read on it,
// of another file, work.
func TestBulkSpliceBackendError(t *testing.T) {
	if _, err := os.Stat("/dev/full"); err != nil {
		t.Skip("no /dev/full")
	}
	c := testutil.Start(t, testutil.Options{TCP: true})
	cl := c.Client(t, nil)
	bad := open(t, cl, "/dev/full", wire.OWronly, nil)
	data := bytes.Repeat([]byte{7}, 3<<20+5)
	_, err := bad.Write([][]byte{data}, []client.Extent{{Off: 0, Len: int64(len(data))}}, client.IOOpts{})
	if err == nil {
		err = bad.Sync()
	}
	if err == nil || errors.Is(err, wire.ECONNLOST) || errors.Is(err, wire.EPROTO) {
		t.Fatalf("write into /dev/full: %v, want the backend's error", err)
	}
	t.Logf("write into /dev/full: %v", err)
	bad.Close()
	path := filepath.Join(c.Dir, "after")
	f := open(t, cl, path, wire.ORdwr|wire.OCreat, nil)
	if _, err := f.Write([][]byte{data}, []client.Extent{{Off: 0, Len: int64(len(data))}}, client.IOOpts{}); err != nil {
		t.Fatalf("write after the failed one: %v", err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(data))
	if n, err := f.Read([][]byte{got}, []client.Extent{{Off: 0, Len: int64(len(got))}}, client.IOOpts{}); err != nil || n != int64(len(data)) || !bytes.Equal(got, data) {
		t.Fatalf("read after the failed write: %d, %v", n, err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	st := c.Servers[0].Stats()
	if st.BulkErrors != 0 || st.BulkSpliced == 0 {
		t.Fatalf("bulk errors %d (want 0), spliced %d (want some)", st.BulkErrors, st.BulkSpliced)
	}
}

// TestBulkAtomicReadWhole: in atomic mode a large read stays one request
// on one bulk connection (the server applies it as one unit); out of it,
// the same read is cut into parts. Both return the file's bytes.
func TestBulkAtomicReadWhole(t *testing.T) {
	c := testutil.Start(t, testutil.Options{TCP: true})
	cl := c.Client(t, nil)
	f := open(t, cl, filepath.Join(c.Dir, "atomic"), wire.ORdwr|wire.OCreat, nil)
	data := make([]byte, 4<<20)
	for i := range data {
		data[i] = byte(i * 7)
	}
	if _, err := f.Write([][]byte{data}, []client.Extent{{Off: 0, Len: int64(len(data))}}, client.IOOpts{}); err != nil {
		t.Fatal(err)
	}
	for _, atomic := range []bool{true, false} {
		if err := f.SetAtomic(atomic); err != nil {
			t.Fatal(err)
		}
		before := cl.Stats().BulkReadParts
		got := make([]byte, len(data))
		if n, err := f.Read([][]byte{got}, []client.Extent{{Off: 0, Len: int64(len(got))}}, client.IOOpts{}); err != nil || n != int64(len(data)) || !bytes.Equal(got, data) {
			t.Fatalf("atomic %v: read %d, %v, equal %v", atomic, n, err, bytes.Equal(got, data))
		}
		if cut := cl.Stats().BulkReadParts - before; (cut > 0) == atomic {
			t.Fatalf("atomic %v: %d parts beyond the first", atomic, cut)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}
