package wire

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"testing"
)

type ext struct{ off, n int64 }

func decodeAll(t *testing.T, enc []byte, limit int64) []ext {
	t.Helper()
	var out []ext
	it := NewExtentIter(enc, limit)
	for off, n, ok := it.Next(); ok; off, n, ok = it.Next() {
		out = append(out, ext{off, n})
	}
	if err := it.Err(); err != nil {
		t.Fatalf("decode: %v", err)
	}
	return out
}

// flat expands extents into the byte offsets they cover, in order: two
// lists are equivalent exactly when these sequences match.
func flat(es []ext) []int64 {
	var out []int64
	for _, e := range es {
		for i := int64(0); i < e.n; i++ {
			out = append(out, e.off+i)
		}
	}
	return out
}

func TestExtentsRoundTrip(t *testing.T) {
	cases := []struct {
		name     string
		in       []ext
		maxBytes int // upper bound on the encoded size, 0: no check
	}{
		{"empty", nil, 0},
		{"one", []ext{{0, 64}}, 4},
		{"contiguous", []ext{{0, 64}, {64, 64}, {128, 64}}, 4},
		{"strided", []ext{{0, 64}, {128, 64}, {256, 64}, {384, 64}}, 6},
		{"zero length dropped", []ext{{10, 0}, {10, 5}, {20, 0}}, 4},
		{"decreasing", []ext{{1000, 8}, {500, 8}, {0, 8}}, 0},
		{"overlapping", []ext{{0, 100}, {50, 100}, {0, 10}}, 0},
		{"irregular", []ext{{0, 1}, {7, 3}, {100, 2}, {101, 9}, {1 << 40, 5}}, 0},
		{"huge offsets", []ext{{math.MaxInt64 - 10, 10}}, 0},
		{"stride then break", []ext{{0, 4}, {8, 4}, {16, 4}, {20, 4}, {100, 4}}, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var b Builder
			var want []ext
			for _, e := range c.in {
				b.Add(e.off, e.n)
				if e.n > 0 {
					want = append(want, e)
				}
			}
			enc := b.Bytes()
			got := decodeAll(t, enc, math.MaxInt64)
			if f, w := flat(got), flat(want); !equal(f, w) {
				t.Fatalf("got %v, want %v", got, want)
			}
			if c.maxBytes > 0 && len(enc) > c.maxBytes {
				t.Errorf("encoded in %d bytes, want <= %d", len(enc), c.maxBytes)
			}
		})
	}
}

func equal(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestExtentsRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for iter := 0; iter < 2000; iter++ {
		var b Builder
		var want []ext
		off := int64(r.IntN(1000))
		for i := r.IntN(40); i > 0; i-- {
			n := int64(r.IntN(20))
			switch r.IntN(4) {
			case 0:
				off += n // contiguous
			case 1:
				off += 32 // regular
			default:
				off = int64(r.IntN(5000))
			}
			b.Add(off, n)
			if n > 0 {
				want = append(want, ext{off, n})
			}
		}
		got := decodeAll(t, b.Bytes(), math.MaxInt64)
		if !equal(flat(got), flat(want)) {
			t.Fatalf("iteration %d: got %v, want %v", iter, got, want)
		}
		if b.Total() != int64(len(flat(want))) {
			t.Fatalf("total %d, want %d", b.Total(), len(flat(want)))
		}
	}
}

func TestExtentsLimit(t *testing.T) {
	var b Builder
	for i := int64(0); i < 1000; i++ {
		b.Add(i*10, 4)
	}
	enc := b.Bytes()
	if _, err := ExtentsTotal(enc, 4000); err != nil {
		t.Fatalf("at the limit: %v", err)
	}
	if _, err := ExtentsTotal(enc, 3999); CodeOf(err) != EPROTO {
		t.Fatalf("over the limit: got %v, want EPROTO", err)
	}
}

func TestExtentsMalformed(t *testing.T) {
	cases := map[string][]byte{
		"truncated header":  {0x80},
		"zero count":        {0x00, 0x00, 0x01},
		"strided count one": {0x03, 0x00, 0x01, 0x02},
		"zero length":       {0x02, 0x00, 0x00},
		"negative offset":   {0x02, 0x01, 0x01},
		"missing stride":    {0x05, 0x00, 0x01},
		"stride overflow":   {0x05, 0x00, 0x01, 0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01},
	}
	for name, enc := range cases {
		t.Run(name, func(t *testing.T) {
			if _, err := ExtentsTotal(enc, math.MaxInt64); CodeOf(err) != EPROTO {
				t.Fatalf("got %v, want EPROTO", err)
			}
		})
	}
}

func TestExtentsCompactStrided(t *testing.T) {
	// 175,000 four-byte pieces of a regular view (mpich issue #7283) fit in
	// one run.
	var b Builder
	for i := int64(0); i < 175000; i++ {
		b.Add(i*64, 4)
	}
	if n := len(b.Bytes()); n > 16 {
		t.Fatalf("encoded in %d bytes, want one run", n)
	}
}

func BenchmarkExtentsBuildDecode(bm *testing.B) {
	var b Builder
	for i := 0; i < bm.N; i++ {
		b.Reset()
		for j := int64(0); j < 1000; j++ {
			b.Add(j*100+j%7, 64)
		}
		if _, err := ExtentsTotal(b.Bytes(), math.MaxInt64); err != nil {
			bm.Fatal(err)
		}
	}
}

func TestExtentsNextRun(t *testing.T) {
	type runT struct{ off, n, stride, count int64 }
	cases := []struct {
		name string
		in   []ext
		want []runT
	}{
		{"one", []ext{{10, 5}}, []runT{{10, 5, 0, 1}}},
		{"contiguous", []ext{{0, 4}, {4, 4}}, []runT{{0, 8, 0, 1}}},
		{"strided", []ext{{0, 4}, {8, 4}, {16, 4}}, []runT{{0, 4, 8, 3}}},
		{"descending", []ext{{100, 4}, {90, 4}, {80, 4}}, []runT{{100, 4, -10, 3}}},
		{"two runs", []ext{{0, 4}, {8, 4}, {100, 1}, {200, 1}, {300, 1}, {1000, 7}},
			[]runT{{0, 4, 8, 2}, {100, 1, 100, 3}, {1000, 7, 0, 1}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var b Builder
			for _, e := range c.in {
				b.Add(e.off, e.n)
			}
			it := NewExtentIter(b.Bytes(), math.MaxInt64)
			var got []runT
			for off, n, stride, count, ok := it.NextRun(); ok; off, n, stride, count, ok = it.NextRun() {
				got = append(got, runT{off, n, stride, count})
			}
			if it.Err() != nil || len(got) != len(c.want) {
				t.Fatalf("got %v (err %v), want %v", got, it.Err(), c.want)
			}
			for i := range got {
				if got[i] != c.want[i] {
					t.Fatalf("run %d: got %v, want %v", i, got[i], c.want[i])
				}
			}
		})
	}
	// The rest of a run Next started.
	var b Builder
	for i := int64(0); i < 5; i++ {
		b.Add(i*10, 2)
	}
	it := NewExtentIter(b.Bytes(), math.MaxInt64)
	it.Next()
	it.Next()
	if off, n, stride, count, ok := it.NextRun(); !ok || off != 20 || n != 2 || stride != 10 || count != 3 {
		t.Fatalf("rest of run: %d %d %d %d %v", off, n, stride, count, ok)
	}
	// A run that leaves the offset range fails before any extent.
	enc := binary.AppendUvarint(nil, 3<<1|1)
	enc = binary.AppendVarint(enc, math.MaxInt64-100)
	enc = binary.AppendUvarint(enc, 10)
	enc = binary.AppendVarint(enc, 50)
	it = NewExtentIter(enc, math.MaxInt64)
	if _, _, _, _, ok := it.NextRun(); ok || CodeOf(it.Err()) != EPROTO {
		t.Fatalf("overflowing run: ok %v err %v", ok, it.Err())
	}
}
