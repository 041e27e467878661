package server_test

import (
	"bytes"
	"path/filepath"
	"testing"

	"github.com/delegate-io/delegate/internal/backend"
	"github.com/delegate-io/delegate/internal/client"
	"github.com/delegate-io/delegate/internal/server"
	"github.com/delegate-io/delegate/internal/stats"
	"github.com/delegate-io/delegate/internal/testutil"
	"github.com/delegate-io/delegate/internal/wire"
)

func fileOf(t *testing.T, st stats.Snapshot, path string) stats.File {
	t.Helper()
	for _, f := range st.Files {
		if f.Path == path {
			return f
		}
	}
	t.Fatalf("no summary of %s in %d files:\n%s", path, len(st.Files), stats.FilesSummary(st.Files, 0))
	return stats.File{}
}

// TestFileSummaryCounts: after known writes and reads of one file, its
// summary (kept after the close) has the right requests, sizes, bytes by
// path (buffered or direct), backend writes, and no errors.
func TestFileSummaryCounts(t *testing.T) {
	const direct = 1 << 20
	c := testutil.Start(t, testutil.Options{Mutate: func(_ int, cfg *server.Config) {
		cfg.DirectBytes = direct
	}})
	cl := c.Client(t, nil)
	path := filepath.Join(c.Dir, "summary")
	f, err := cl.Open(bg, path, wire.ORdwr|wire.OCreat, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Each write waits for its acknowledgement, so none joins another.
	writes := []struct {
		off  int64
		lens []int64
	}{
		{0, []int64{64, 64, 64, 64, 64, 64, 64, 64, 64, 64}}, // one request of ten 64-byte extents
		{4096, []int64{4096}},
		{direct, []int64{2 * direct}}, // straight to the backend
	}
	var total, extents int64
	for _, w := range writes {
		var mem [][]byte
		var ext []client.Extent
		off := w.off
		for _, n := range w.lens {
			mem = append(mem, bytes.Repeat([]byte{byte(n)}, int(n)))
			ext = append(ext, client.Extent{Off: off, Len: n})
			off += n + 100 // a hole between extents: they stay ten
			total += n
			extents++
		}
		if _, err := f.Write(mem, ext, client.IOOpts{Ack: true}); err != nil {
			t.Fatal(err)
		}
	}
	// A read while the 4 KiB are buffered goes to the server.
	buf := make([]byte, 4096)
	if n, err := f.Read([][]byte{buf}, []client.Extent{{Off: 4096, Len: 4096}}, client.IOOpts{}); err != nil || n != 4096 || buf[0] != byte(4096&0xff) {
		t.Fatalf("read %d %v", n, err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}

	st := c.Servers[0].Stats()
	got := fileOf(t, st, path)
	sizes := make([]int64, stats.SizeClasses)
	sizes[stats.SizeClass(64)] = 10
	sizes[stats.SizeClass(4096)] = 1
	sizes[stats.SizeClass(2*direct)] = 1
	buffered := int64(10*64 + 4096)
	for _, c := range []struct {
		what      string
		got, want int64
	}{
		{"write requests", got.Requests["write"], 3},
		{"read requests", got.Requests["read"], 1},
		{"open requests", got.Requests["open"], 1},
		{"close requests", got.Requests["close"], 1},
		{"sync requests", got.Requests["sync"], 1},
		{"bytes written", got.Write.Bytes, total},
		{"extents written", got.Write.Extents, extents},
		{"bytes read", got.Read.Bytes, 4096},
		{"extents read", got.Read.Extents, 1},
		{"read from the buffer", got.ReadFromBuffer, 4096},
		{"direct bytes", got.DirectBytes, 2 * direct},
		{"buffered bytes", got.BufferedBytes, buffered},
		{"bytes to the backend", got.BackendWriteBytes, total},
		{"files", got.Files, 1},
	} {
		if c.got != c.want {
			t.Errorf("%s: %d, want %d", c.what, c.got, c.want)
		}
	}
	for i := range sizes {
		if got.Write.Sizes[i] != sizes[i] {
			t.Errorf("written extents of %s: %d, want %d", stats.SizeNames[i], got.Write.Sizes[i], sizes[i])
		}
	}
	if got.Read.Sizes[stats.SizeClass(4096)] != 1 {
		t.Errorf("read sizes %v", got.Read.Sizes)
	}
	// The direct write is one backend write; the buffered extents (holes
	// between them are not written) at least one more, in a flush.
	if got.BackendWrites < 2 || got.Flushes < 1 {
		t.Errorf("%d backend writes, %d flushes", got.BackendWrites, got.Flushes)
	}
	if len(got.Errors) != 0 || got.Total() != 7 || got.WaitMaxNanos <= 0 || got.WaitNanos < got.WaitMaxNanos {
		t.Errorf("errors %v, %d requests, wait total %d max %d", got.Errors, got.Total(), got.WaitNanos, got.WaitMaxNanos)
	}
	// The whole server's counters agree with the file's (the only file).
	if st.BytesIn != got.Write.Bytes || st.BytesDirect != got.DirectBytes || st.BackendWriteBytes != got.BackendWriteBytes ||
		st.BackendWrites != got.BackendWrites || st.ExtentsIn != got.Write.Extents {
		t.Errorf("server: %d in, %d direct, %d to the backend in %d writes, %d extents; file: %d, %d, %d in %d, %d",
			st.BytesIn, st.BytesDirect, st.BackendWriteBytes, st.BackendWrites, st.ExtentsIn,
			got.Write.Bytes, got.DirectBytes, got.BackendWriteBytes, got.BackendWrites, got.Write.Extents)
	}
	if t.Failed() {
		t.Log(got.String())
	}
}

// TestFileSummaryBounded: past the cap, new files add into one aggregate
// entry; a failed request counts as an error of its file, a delete on the
// file it removed, and a missing file is no error at all.
func TestFileSummaryBounded(t *testing.T) {
	efs := &backend.ErrorFS{}
	c := testutil.Start(t, testutil.Options{Mutate: func(_ int, cfg *server.Config) {
		cfg.FileStats = 2
		cfg.Wrap = func(f backend.FS) backend.FS { efs.FS = f; return efs }
	}})
	cl := c.Client(t, nil)
	var paths []string
	for i := 0; i < 4; i++ {
		p := filepath.Join(c.Dir, string(rune('a'+i)))
		paths = append(paths, p)
		f, err := cl.Open(bg, p, wire.ORdwr|wire.OCreat, 0, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.Write([][]byte{make([]byte, 10*(i+1))}, []client.Extent{{Off: 0, Len: int64(10 * (i + 1))}}, client.IOOpts{Ack: true}); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			// A backend that fails: the sync fails, on this file.
			efs.Fail.Store(true)
			if err := f.Sync(); err == nil {
				t.Fatal("a sync on a failing backend succeeded")
			}
			efs.Fail.Store(false)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := cl.Open(bg, filepath.Join(c.Dir, "missing"), wire.ORdonly, 0, nil); err == nil {
		t.Fatal("opened a missing file")
	}
	if err := cl.Delete(bg, paths[1]); err != nil {
		t.Fatal(err)
	}
	st := c.Servers[0].Stats()
	if len(st.Files) != 3 {
		t.Fatalf("%d entries, want 2 files and the aggregate:\n%s", len(st.Files), stats.FilesSummary(st.Files, 0))
	}
	a, b := fileOf(t, st, paths[0]), fileOf(t, st, paths[1])
	other := fileOf(t, st, stats.OtherFiles)
	if other.Files != 2 || other.Write.Bytes != 30+40 || other.Requests["open"] != 2 || other.Requests["write"] != 2 {
		t.Errorf("aggregate: %+v", other)
	}
	if a.Write.Bytes != 10 || b.Write.Bytes != 20 || b.Requests["delete"] != 1 || len(b.Errors) != 0 {
		t.Errorf("a: %+v\nb: %+v", a, b)
	}
	if a.Errors["sync"] != 1 || len(a.Errors) != 1 {
		t.Errorf("a's errors %v, want sync=1", a.Errors)
	}
	for _, f := range st.Files {
		if f.Path == filepath.Join(c.Dir, "missing") {
			t.Errorf("a missing file got a summary: %+v", f)
		}
	}
}
