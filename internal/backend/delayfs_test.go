package backend

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestDelayFS: a write (WriteAt, a vectored run as one call) after an idle
// file waits at least WriteDelay, a read ReadDelay, a burst of writes waits
// about one delay rather than one per write, the bytes arrive intact, and
// the file hides its descriptor (the server's splice paths would bypass the
// delay) but keeps its identity.
func TestDelayFS(t *testing.T) {
	const d = 40 * time.Millisecond
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
	df := f.(*delayFile)
	idle := func() { df.nextWrite.Store(0); df.nextRead.Store(0) } // as after d without I/O
	buf := make([]byte, 8)
	const burst = 20
	tests := []struct {
		name     string
		op       func() error
		min, max time.Duration // max 0: unbounded
	}{
		{"WriteAt", func() error { _, err := f.WriteAt([]byte("abcd"), 0); return err }, d, 0},
		{"WriteRun vectored", func() error {
			calls, err := WriteRun(f, [][]byte{[]byte("ef"), []byte("gh")}, 4)
			if calls != 1 {
				t.Errorf("vectored run: %d calls, want 1", calls)
			}
			return err
		}, d, 0},
		{"ReadAt", func() error { _, err := f.ReadAt(buf, 0); return err }, d, 0},
		{"burst of writes", func() error {
			for i := 0; i < burst; i++ {
				if _, err := f.WriteAt([]byte("x"), 100+int64(i)); err != nil {
					return err
				}
			}
			return nil
		}, d, burst * d / 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			idle()
			t0 := time.Now()
			if err := tc.op(); err != nil {
				t.Fatal(err)
			}
			el := time.Since(t0)
			if el < tc.min {
				t.Errorf("took %v, want at least %v", el, tc.min)
			}
			if tc.max > 0 && el > tc.max {
				t.Errorf("took %v, want at most %v (one delay per write?)", el, tc.max)
			}
		})
	}
	if !bytes.Equal(buf, []byte("abcdefgh")) {
		t.Errorf("read %q, want abcdefgh", buf)
	}
}
