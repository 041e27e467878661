package backend

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestDelayFS: every write (WriteAt, a vectored run as one call) waits at
// least WriteDelay, reads wait ReadDelay when it is set, the bytes arrive
// intact, and the file hides its descriptor (the server's splice paths
// would bypass the delay) but keeps its identity.
func TestDelayFS(t *testing.T) {
	const d = 30 * time.Millisecond
	root := t.TempDir()
	osfs, err := NewOS(root)
	if err != nil {
		t.Fatal(err)
	}
	defer osfs.Close()
	dfs := &DelayFS{FS: osfs, WriteDelay: d, ReadDelay: d}
	f, err := dfs.OpenFile(filepath.Join(root, "f"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, ok := f.(FDFile); ok {
		t.Error("a delayed file offers its descriptor: splices would not be delayed")
	}
	if _, _, ok := IdentityOf(f); !ok {
		t.Error("a delayed file lost its identity")
	}
	buf := make([]byte, 8)
	tests := []struct {
		name string
		op   func() error
	}{
		{"WriteAt", func() error { _, err := f.WriteAt([]byte("abcd"), 0); return err }},
		{"WriteRun vectored", func() error {
			calls, err := WriteRun(f, [][]byte{[]byte("ef"), []byte("gh")}, 4)
			if calls != 1 {
				t.Errorf("vectored run: %d calls, want 1", calls)
			}
			return err
		}},
		{"ReadAt", func() error { _, err := f.ReadAt(buf, 0); return err }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t0 := time.Now()
			if err := tc.op(); err != nil {
				t.Fatal(err)
			}
			if el := time.Since(t0); el < d {
				t.Errorf("took %v, want at least %v", el, d)
			}
		})
	}
	if !bytes.Equal(buf, []byte("abcdefgh")) {
		t.Errorf("read %q, want abcdefgh", buf)
	}
}
