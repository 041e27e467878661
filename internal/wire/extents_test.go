package wire

import (
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

// BenchmarkServerExtents is what a server does with a read's extent list:
// the old way decoded it three times (total, ownership, apply); now it is
// parsed once and the validated form iterated twice.
func BenchmarkServerExtents(bm *testing.B) {
	lists := map[string]func(b *Builder){
		"one-run-1000": func(b *Builder) {
			for j := int64(0); j < 1000; j++ {
				b.Add(j*100, 64)
			}
		},
		"irregular-1000": func(b *Builder) {
			for j := int64(0); j < 1000; j++ {
				b.Add(j*100+j%7, 64)
			}
		},
	}
	for name, fill := range lists {
		var b Builder
		fill(&b)
		enc := b.Bytes()
		walk := func(it ExtentIter) (s int64) {
			for _, n, ok := it.Next(); ok; _, n, ok = it.Next() {
				s += n
			}
			return s
		}
		bm.Run(name+"/decode-thrice", func(bm *testing.B) {
			for i := 0; i < bm.N; i++ {
				t, err := ExtentsTotal(enc, math.MaxInt64)
				if err != nil || walk(NewExtentIter(enc, t)) != t || walk(NewExtentIter(enc, t)) != t {
					bm.Fatal(err)
				}
			}
		})
		bm.Run(name+"/parse-once", func(bm *testing.B) {
			var x Extents
			for i := 0; i < bm.N; i++ {
				if err := x.Parse(enc, math.MaxInt64); err != nil || walk(x.Iter()) != x.Total() || walk(x.Iter()) != x.Total() {
					bm.Fatal(err)
				}
			}
		})
	}
}
