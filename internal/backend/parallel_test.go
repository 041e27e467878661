package backend

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// TestWriteParallel: a write split into pieces written concurrently puts
// every byte where one pwritev would, whatever the buffers' sizes and
// boundaries, the piece size's multiple or not, with 1 to 5 writers; and a
// failing write (a read-only descriptor) reports the error and no bytes
// beyond it.
func TestWriteParallel(t *testing.T) {
	cases := []struct {
		name    string
		sizes   []int // the buffers, in order
		off     int64
		writers int
	}{
		{"one buffer, exact pieces", []int{4 << 20}, 0, 4},
		{"one buffer, ragged end", []int{3<<20 + 12345}, 4096, 3},
		{"buffers across piece boundaries", []int{700 << 10, 900 << 10, 1 << 20, 5, 1500 << 10}, 1 << 20, 2},
		{"many small buffers", repeat(64<<10+1, 70), 77, 5},
		{"more writers than pieces", []int{2<<20 + 1}, 0, 8},
		{"one writer", []int{2 << 20, 1 << 20}, 10, 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "f")
			fd, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
			if err != nil {
				t.Fatal(err)
			}
			defer fd.Close()
			f := &osFile{f: fd, writers: c.writers}
			var bufs [][]byte
			var want []byte
			for i, n := range c.sizes {
				b := bytes.Repeat([]byte{byte(i*7 + 1)}, n)
				for j := range b {
					b[j] += byte(j / 4096)
				}
				bufs = append(bufs, b)
				want = append(want, b...)
			}
			n, err := f.writeParallel(bufs, c.off)
			if err != nil || n != int64(len(want)) {
				t.Fatalf("writeParallel: %d, %v; want %d, nil", n, err, len(want))
			}
			got, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if int64(len(got)) != c.off+int64(len(want)) || !bytes.Equal(got[c.off:], want) {
				t.Fatalf("file holds %d bytes, the written range differs", len(got))
			}
		})
	}
	t.Run("failure", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "ro")
		if err := os.WriteFile(path, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		fd, err := os.Open(path) // read-only: every pwritev fails
		if err != nil {
			t.Fatal(err)
		}
		defer fd.Close()
		f := &osFile{f: fd, writers: 3}
		n, err := f.writeParallel([][]byte{make([]byte, 5<<20)}, 0)
		if err == nil || n != 0 {
			t.Fatalf("writeParallel on a read-only file: %d, %v; want 0 and an error", n, err)
		}
		if _, err := f.WriteAt(make([]byte, 3<<20), 0); err == nil {
			t.Fatal("WriteAt on a read-only file split into pieces succeeded")
		}
	})
}

func repeat(n, times int) []int {
	s := make([]int, times)
	for i := range s {
		s[i] = n
	}
	return s
}
