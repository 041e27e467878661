package wire

import (
	"bytes"
	"errors"
	"testing"
)

// TestReaderSkipsOversizeRequestDesc: a request whose description is over
// MaxRequestDesc, as sent or once decompressed, is refused with EPROTO and
// ErrSkipped, its description and payload skipped, and the next frame
// reads; a reply may carry more.
func TestReaderSkipsOversizeRequestDesc(t *testing.T) {
	big := &Write{File: 1, Ext: make([]byte, MaxRequestDesc)}
	for _, tc := range []struct {
		name string
		t    Type
		c    Compression
		skip bool
	}{
		{"request", TWrite, Compression{}, true},
		{"request-lz4", TWrite, Compression{MinBytes: 1}, true},
		{"reply", TWrite | ReplyBit, Compression{}, false},
		{"reply-lz4", TWrite | ReplyBit, Compression{MinBytes: 1}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := NewEncoder(tc.c)
			if err := e.Append(tc.t, 1, big, []byte("payload")); err != nil {
				t.Fatal(err)
			}
			if err := e.Append(TStat, 2, &FileOp{File: 3}); err != nil {
				t.Fatal(err)
			}
			r := NewReader(bytes.NewReader(e.Bytes()), 64<<10)
			h, err := r.Next()
			if tc.skip {
				if !errors.Is(err, ErrSkipped) || !errors.Is(err, EPROTO) || h.ID != 1 {
					t.Fatalf("oversize request: %+v %v, want EPROTO and ErrSkipped", h, err)
				}
			} else if err != nil {
				t.Fatalf("large reply: %v", err)
			}
			h, err = r.Next()
			var op FileOp
			if err != nil || h.ID != 2 || r.Decode(&op) != nil || op.File != 3 {
				t.Fatalf("the frame after it: %+v %v %+v", h, err, op)
			}
		})
	}
}

// TestRunsLimit: the Builder counts the runs Parse sees, and Parse takes
// MaxRequestRuns of them, not one more; what it keeps is Mem, within
// MaxRunsMem.
func TestRunsLimit(t *testing.T) {
	for _, n := range []int{1, 2, 1000, MaxRequestRuns, MaxRequestRuns + 1} {
		var b Builder
		for i := range n {
			b.Add(int64(i)*4, int64(1+i%2))
		}
		if b.Runs() != n {
			t.Fatalf("%d runs added, Builder counts %d", n, b.Runs())
		}
		var x Extents
		err := x.Parse(b.Bytes(), 1<<40)
		if n > MaxRequestRuns {
			if !errors.Is(err, EPROTO) {
				t.Fatalf("%d runs: %v, want EPROTO", n, err)
			}
			continue
		}
		if err != nil || len(x.Runs()) != n {
			t.Fatalf("%d runs: %v, %d parsed", n, err, len(x.Runs()))
		}
		if m := x.Mem(); m > MaxRunsMem || (n > 1 && m < int64(n)*runBytes) {
			t.Fatalf("%d runs keep %d bytes, want %d to %d", n, m, int64(n)*runBytes, MaxRunsMem)
		}
		if len(b.Bytes()) > n*MaxRunBytes {
			t.Fatalf("%d runs encode in %d bytes, more than %d", n, len(b.Bytes()), n*MaxRunBytes)
		}
	}
}
