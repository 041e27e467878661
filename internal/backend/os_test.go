package backend

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

func TestOSConfinesToRoot(t *testing.T) {
	top := t.TempDir()
	root := filepath.Join(top, "root")
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(top, "secret"), []byte("x"), 0o644)
	os.Symlink(filepath.Join(top, "secret"), filepath.Join(root, "abs-link"))
	os.Symlink("../secret", filepath.Join(root, "rel-link"))
	os.Mkdir(filepath.Join(root, "d"), 0o755)
	os.Symlink("../d", filepath.Join(root, "d", "up-inside")) // stays inside
	fsys, err := NewOS(root)
	if err != nil {
		t.Fatal(err)
	}
	defer fsys.Close()
	escapes := []string{
		filepath.Join(top, "secret"),
		filepath.Join(root, "abs-link"),
		filepath.Join(root, "rel-link"),
	}
	for _, p := range escapes {
		_, err := fsys.OpenFile(p, os.O_RDONLY, 0)
		if !errors.Is(err, ErrPathEscape) {
			t.Errorf("open %s: got %v, want ErrPathEscape", p, err)
		}
	}
	if err := fsys.Remove(filepath.Join(top, "secret")); !errors.Is(err, ErrPathEscape) {
		t.Errorf("remove outside: %v", err)
	}
	in := filepath.Join(root, "d", "up-inside", "f")
	f, err := fsys.OpenFile(in, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatalf("open inside through a symlink: %v", err)
	}
	if _, err := f.WriteAt([]byte("hello"), 3); err != nil {
		t.Fatal(err)
	}
	if err := f.Allocate(100); err != nil {
		t.Fatal(err)
	}
	if n, _ := f.Size(); n != 100 {
		t.Fatalf("size after allocate %d", n)
	}
	if err := f.Allocate(10); err != nil {
		t.Fatal(err)
	}
	if n, _ := f.Size(); n != 100 {
		t.Fatalf("allocate shrank the file to %d", n)
	}
	buf := make([]byte, 200)
	if n, err := f.ReadAt(buf, 0); n != 100 || err != io.EOF || string(buf[3:8]) != "hello" {
		t.Fatalf("read %d %v %q", n, err, buf[:8])
	}
	calls, err := WriteRun(f, [][]byte{[]byte("ab"), []byte("cd"), []byte("ef")}, 200)
	if err != nil || calls != 1 {
		t.Fatalf("vectored write: %d calls, %v", calls, err)
	}
	buf = make([]byte, 6)
	if _, err := f.ReadAt(buf, 200); err != nil || string(buf) != "abcdef" {
		t.Fatalf("after pwritev: %q %v", buf, err)
	}
	f.Close()
	// Reopening an existing file (no O_CREAT) under a root: openat2 must
	// not be given a mode.
	f, err = fsys.OpenFile(in, os.O_RDONLY, 0)
	if err != nil {
		t.Fatalf("reopen under the root: %v", err)
	}
	f.Close()
	if err := fsys.Remove(filepath.Join(root, "d", "f")); err != nil {
		t.Fatal(err)
	}
	if _, err := fsys.OpenFile("relative", os.O_RDONLY, 0); err == nil {
		t.Fatal("relative path accepted")
	}
}
