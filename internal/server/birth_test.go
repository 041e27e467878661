package server_test

import (
	"bytes"
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/delegate-io/delegate/internal/backend"
	"github.com/delegate-io/delegate/internal/client"
	"github.com/delegate-io/delegate/internal/server"
	"github.com/delegate-io/delegate/internal/testutil"
	"github.com/delegate-io/delegate/internal/wire"
)

type copyUpFS struct {
	backend.FS
	mu       sync.Mutex
	copiedUp map[string]bool
}

type copyUpFile struct {
	backend.File
	fs   *copyUpFS
	path string
}

func (c *copyUpFS) OpenFile(path string, flag int, perm fs.FileMode) (backend.File, error) {
	f, err := c.FS.OpenFile(path, flag, perm)
	if err != nil {
		return nil, err
	}
	if flag&(os.O_RDWR|os.O_WRONLY) != 0 {
		c.mu.Lock()
		c.copiedUp[path] = true
		c.mu.Unlock()
	}
	return &copyUpFile{File: f, fs: c, path: path}, nil
}

func (f *copyUpFile) Identity() (uint64, uint64, error) {
	return f.File.(backend.Identifier).Identity()
}

func (f *copyUpFile) Birth() (uint64, error) {
	b, err := f.File.(backend.Birther).Birth()
	f.fs.mu.Lock()
	up := f.fs.copiedUp[f.path]
	f.fs.mu.Unlock()
	if err != nil || b == 0 || up {
		return b, err
	}
	return b + uint64(time.Second), nil // the lower layer's file
}

// TestRecoveryBirthAfterCopyUp (found in review): the birth time a slot
// records comes from the file's writable descriptor. On an overlay file
// system a file of the lower layer, opened read-only, reports the lower
// file's birth time; the first read-write open copies it up, and from then
// on it reports the upper file's, with the same device and inode number.
// Slots that kept the read-only descriptor's birth time made recovery drop
// the file's own acknowledged data. copyUpFS models that: before the first
// read-write open of a path, Birth reports the real birth time plus 1 s.
func TestRecoveryBirthAfterCopyUp(t *testing.T) {
	stateDir := filepath.Join(t.TempDir(), "state")
	c := testutil.Start(t, testutil.Options{Mutate: func(i int, cfg *server.Config) {
		stateConfig(stateDir)(i, cfg)
		cfg.Wrap = func(f backend.FS) backend.FS { return &copyUpFS{FS: f, copiedUp: map[string]bool{}} }
	}})
	path := filepath.Join(c.Dir, "image-file")
	if err := os.WriteFile(path, []byte("from the image"), 0o644); err != nil {
		t.Fatal(err)
	}
	cl := c.Client(t, nil)
	ro, err := cl.Open(bg, path, wire.ORdonly, 0, nil) // first open: read-only
	if err != nil {
		t.Fatal(err)
	}
	_ = ro
	rw, err := cl.Open(bg, path, wire.ORdwr, 0, nil) // reopenWritable: copy-up
	if err != nil {
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte("acknowledged "), 10000)
	if _, err := rw.Write([][]byte{data[:1000]}, []client.Extent{{Off: 0, Len: 1000}}, client.IOOpts{Ack: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := rw.Write([][]byte{data[1000:]}, []client.Extent{{Off: 1000, Len: int64(len(data) - 1000)}}, client.IOOpts{Ack: true}); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(path); bytes.Equal(got, data) {
		t.Fatal("flushed before the crash: proves nothing")
	}
	c.Servers[0].CrashForTest()
	s := restartOn(t, stateDir)
	defer func() {
		ctx, cancel := context.WithTimeout(bg, 10*time.Second)
		defer cancel()
		s.Shutdown(ctx)
	}()
	st := s.Stats()
	if got, _ := os.ReadFile(path); !bytes.Equal(got, data) || st.RecoveryDropped != 0 {
		t.Fatalf("acknowledged data of the same file dropped by recovery: %d chunks dropped, %d recovered; file holds %d bytes, want %d, first difference at %d",
			st.RecoveryDropped, st.RecoveredChunks, len(got), len(data), firstDiff(got, data))
	}
}
