package extent

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"
)

// model is the reference: a byte array plus a mask of which bytes are
// buffered.
type model struct {
	data []byte
	have []bool
	n    int64 // how many of have are true, kept by set
}

// set marks byte i buffered or not, keeping the count: bytes() is read
// after every operation, and a walk over the whole span there was most
// of the test's time under -race.
func (m *model) set(i int64, h bool) {
	if m.have[i] != h {
		m.have[i] = h
		if h {
			m.n++
		} else {
			m.n--
		}
	}
}

func (m *model) ensure(n int64) {
	for int64(len(m.data)) < n {
		m.data = append(m.data, 0)
		m.have = append(m.have, false)
	}
}

func (m *model) write(off int64, p []byte) {
	m.ensure(off + int64(len(p)))
	copy(m.data[off:], p)
	for i := range p {
		m.set(off+int64(i), true)
	}
}

func (m *model) truncate(size int64) {
	for i := size; i < int64(len(m.have)); i++ {
		m.set(i, false)
	}
}

func (m *model) bytes() int64 { return m.n }

// overlay reads [off, off+n) as Overlay would: buffered bytes, and 0xEE
// where the model has none (the gap filler below writes the same).
func (m *model) overlay(off, n int64) []byte {
	out := make([]byte, n)
	for i := int64(0); i < n; i++ {
		o := off + i
		if o < int64(len(m.have)) && m.have[o] {
			out[i] = m.data[o]
		} else {
			out[i] = 0xEE
		}
	}
	return out
}

func readIndex(x *Index, off, n int64) []byte {
	out := make([]byte, n)
	last := off
	x.Overlay(off, out, func(goff int64, g []byte) {
		if goff < last {
			panic("gaps out of order")
		}
		last = goff + int64(len(g))
		for i := range g {
			g[i] = 0xEE
		}
	})
	return out
}

func TestModelRandom(t *testing.T) {
	for _, tc := range []struct {
		chunk     int64
		pooled    bool
		slotted   bool
		failEvery int  // slotted: every failEvery-th slot cannot be had
		plain     bool // slotted: slots that do not count (items keep hole bitmaps)
	}{{64, false, false, 0, false}, {1000, false, false, 0, false}, {4096, false, false, 0, false}, {64, true, false, 0, false}, {1000, true, false, 0, false}, {4096, true, false, 0, false},
		{64, true, true, 0, false}, {1000, true, true, 0, false}, {4096, true, true, 0, false}, {64, true, true, 3, false}, {1000, true, true, 2, false},
		{64, true, true, 0, true}, {1000, true, true, 0, true}, {1000, true, true, 2, true}} {
		chunk := tc.chunk
		r := rand.New(rand.NewPCG(uint64(chunk), 9))
		x := New(chunk, chunk/8)
		if tc.pooled {
			// Recycled buffers come back full of garbage: reading a hole
			// or a buffer after it was recycled shows in the model check.
			x = NewPooled(chunk, chunk/8, &Pool{chunk: chunk, max: 8, poison: true})
		}
		var ms *memSlots
		if tc.slotted {
			// Slots come full of garbage too, and Check compares their
			// marks with the buffered bytes after every operation.
			ms = &memSlots{chunk: chunk, failEvery: tc.failEvery, plain: tc.plain}
			x.UseSlots(ms)
		}
		m := &model{}
		const span = 20000
		for op := 0; op < 6000; op++ {
			switch k := r.IntN(10); {
			case k < 7:
				off := r.Int64N(span)
				n := 1 + r.Int64N(300)
				if r.IntN(4) == 0 {
					n = 1 + r.Int64N(3*chunk)
				}
				p := make([]byte, n)
				for i := range p {
					p[i] = byte(r.Uint32())
				}
				if r.IntN(3) > 0 {
					x.Write(off, p)
					m.write(off, p)
					break
				}
				// A strided run: pieces apart, adjacent, overlapping
				// (written piece by piece) or going backwards.
				n = 1 + r.Int64N(200)
				count := 1 + r.Int64N(40)
				stride := n + r.Int64N(3*chunk/2) - 2
				if r.IntN(8) == 0 {
					stride = -stride
					off += (count - 1) * -stride
				}
				p = make([]byte, count*n)
				for i := range p {
					p[i] = byte(r.Uint32())
				}
				x.WriteRun(off, n, stride, count, p)
				for i := int64(0); i < count; i++ {
					m.write(off+i*stride, p[i*n:(i+1)*n])
				}
			case k < 9:
				off, n := r.Int64N(span), r.Int64N(2000)
				if got, want := readIndex(x, off, n), m.overlay(off, n); !bytes.Equal(got, want) {
					t.Fatalf("chunk %d op %d: overlay of %d+%d differs", chunk, op, off, n)
				}
			case k < 10 && r.IntN(2) == 0:
				off, n := r.Int64N(span), r.Int64N(3000)
				x.Punch(off, n)
				for i := off; i < off+n && i < int64(len(m.have)); i++ {
					m.set(i, false)
				}
			default:
				size := r.Int64N(span)
				x.Truncate(size)
				m.truncate(size)
			}
			if tc.pooled && op%97 == 0 {
				// Full chunks leave for a flush and come back as writes;
				// their buffers return to the pool.
				y := x.TakeFullChunks()
				if err := y.Runs(chunk, func(r Run) error {
					off := r.Off
					for _, b := range r.Bufs {
						x.Write(off, append([]byte(nil), b...))
						off += int64(len(b))
					}
					return nil
				}); err != nil {
					t.Fatal(err)
				}
				y.Release()
			}
			if err := x.Check(); err != nil {
				t.Fatalf("chunk %d op %d: %v", chunk, op, err)
			}
			if x.Bytes() != m.bytes() {
				t.Fatalf("chunk %d op %d: %d bytes, model %d", chunk, op, x.Bytes(), m.bytes())
			}
		}
		// Runs cover exactly the buffered bytes, in order, within the limit.
		var pos int64 = -1
		var total int64
		err := x.Runs(3*chunk, func(r Run) error {
			if r.Off <= pos {
				t.Fatalf("runs out of order")
			}
			var n int64
			for _, b := range r.Bufs {
				if !bytes.Equal(b, m.data[r.Off+n:r.Off+n+int64(len(b))]) {
					t.Fatalf("run at %d holds the wrong bytes", r.Off)
				}
				n += int64(len(b))
			}
			// Runs are cut at chunk boundaries once they reach the maximum.
			if n != r.Len || r.Len >= 3*chunk+chunk {
				t.Fatalf("run %d+%d: %d bytes in %d buffers", r.Off, r.Len, n, len(r.Bufs))
			}
			pos = r.Off + r.Len - 1
			total += r.Len
			return nil
		})
		if err != nil || total != m.bytes() {
			t.Fatalf("runs cover %d bytes, want %d (%v)", total, m.bytes(), err)
		}
		if ms != nil {
			// What a crash would leave: the marked bytes of the slots in
			// use are exactly the buffered bytes.
			if got := ms.replay(); tc.failEvery == 0 && !bytes.Equal(got, m.masked()) {
				t.Fatalf("chunk %d: the slots replay other bytes than the buffer holds", chunk)
			}
			// With heap items mixed in, the slots replay a part of the
			// buffered bytes, and never a byte the buffer does not hold.
			if o, ok := ms.subsetOf(m); !ok {
				t.Fatalf("chunk %d: the slots replay byte %d, which the buffer does not hold", chunk, o)
			}
			x.Release()
			if ms.inUse != 0 {
				t.Fatalf("chunk %d: %d slots still in use after Release", chunk, ms.inUse)
			}
		}
	}
}

func TestInterleavedRecordsMerge(t *testing.T) {
	// 64-byte records from 4 "ranks", each rank in turn: one buffer per
	// chunk, whatever the order.
	const chunk = 1 << 20
	x := New(chunk, chunk/8)
	rec := make([]byte, 64)
	for round := 0; round < 4096*4; round++ {
		rank := round % 4
		i := round / 4
		x.Write(int64(i*4+rank)*64, rec)
	}
	if x.Len() != 1 || x.Bytes() != 1<<20 {
		t.Fatalf("%d extents, %d bytes; want one extent of 1 MiB", x.Len(), x.Bytes())
	}
	// The buffer plus the hole bitmap (an eighth, with some slack).
	if x.Alloc() > 1<<20+1<<20/4 {
		t.Fatalf("allocated %d bytes for 1 MiB", x.Alloc())
	}
	full := x.TakeFullChunks()
	if full.Bytes() != 1<<20 || x.Len() != 0 {
		t.Fatalf("take full chunks: %d moved, %d left", full.Bytes(), x.Len())
	}
}

func TestSmallExtentsOneCall(t *testing.T) {
	// 175,000 four-byte extents of a strided view (mpich issue #7283).
	x := New(1<<20, 512)
	p := []byte{1, 2, 3, 4}
	for i := int64(0); i < 175000; i++ {
		x.Write(i*8, p)
	}
	if err := x.Check(); err != nil {
		t.Fatal(err)
	}
	if x.Bytes() != 700000 {
		t.Fatalf("%d bytes", x.Bytes())
	}
}

func BenchmarkWrite64Interleaved(b *testing.B) {
	x := New(1<<20, 512)
	rec := make([]byte, 64)
	b.SetBytes(64)
	for i := 0; i < b.N; i++ {
		if i%(1<<18) == 0 {
			x = New(1<<20, 512)
		}
		x.Write(int64(i^1)*64, rec)
	}
}

func BenchmarkWrite4Strided(b *testing.B) {
	x := New(1<<20, 512)
	p := []byte{1, 2, 3, 4}
	for i := 0; i < b.N; i++ {
		if i%(1<<18) == 0 {
			x = New(1<<20, 512)
		}
		x.Write(int64(i)*8, p)
	}
}

// BenchmarkInterleavedBatches: two ranks' batches of 1000 strided 64-byte
// records arrive alternately (what the server sees for workload 1).
func BenchmarkInterleavedBatches(b *testing.B) { benchBatches(b, false) }

// BenchmarkInterleavedBatchesLateFirst is BenchmarkInterleavedBatches with
// the second rank's batch first: each batch of the first rank then starts
// an item that absorbs a large item full of holes (measured: a bit-by-bit
// hole scan made this 40% of a server's time).
func BenchmarkInterleavedBatchesLateFirst(b *testing.B) { benchBatches(b, true) }

// benchBatches writes 64-byte records of two ranks in batches of 1,000 per
// rank, as a server receives them, the second rank first if lateFirst.
func benchBatches(b *testing.B, lateFirst bool) {
	rec := make([]byte, 64)
	x := New(1<<20, 512)
	const batch = 1000
	b.SetBytes(64)
	for i := 0; i < b.N; i++ {
		if i%(1<<17) == 0 {
			x = New(1<<20, 512)
		}
		// record index: batch number decides the rank, position within
		// the batch the record.
		k := i % (2 * batch)
		rank := k / batch
		if lateFirst {
			rank = 1 - rank
		}
		base := (i / (2 * batch)) * batch
		x.Write(int64((base+k%batch)*2+rank)*64, rec)
	}
}

// TestBitsMatchNaive: setBits and clearBits (word-at-a-time in the middle)
// against a bit-by-bit model, on random ranges of every alignment.
func TestBitsMatchNaive(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 7))
	const words = 8
	b := make([]uint64, words)
	m := make([]bool, words*64)
	for op := 0; op < 20000; op++ {
		i := r.Int64N(words * 64)
		n := r.Int64N(words*64 - i + 1)
		set := r.IntN(2) == 0
		if !set {
			n += r.Int64N(200) // past the end of the bitmap: ignored
		}
		var want int64
		for k := i; k < i+n && k < int64(len(m)); k++ {
			if m[k] != set {
				want++
			}
			m[k] = set
		}
		var got int64
		if set {
			got = setBits(b, i, n)
		} else {
			got = clearBits(b, i, n)
		}
		for k := range m {
			if (b[k/64]>>(k%64)&1 == 1) != m[k] {
				t.Fatalf("op %d (%v %d+%d): bit %d differs", op, set, i, n, k)
			}
		}
		if got != want {
			t.Fatalf("op %d (%v %d+%d): changed %d, want %d", op, set, i, n, got, want)
		}
	}
}

// TestRunsSkipHoles: a flush writes only buffered bytes, never the holes
// between them (the server's flush relies on it beside clients' lease
// writes: README, Semantics). Writes land within the merge gap, so they
// share one item with holes inside it.
func TestRunsSkipHoles(t *testing.T) {
	tests := []struct {
		name   string
		writes [][2]int64 // off, len
		want   [][2]int64 // the runs: off, len
	}{
		{"one", [][2]int64{{100, 10}}, [][2]int64{{100, 10}}},
		{"gap inside an item", [][2]int64{{0, 64}, {128, 64}}, [][2]int64{{0, 64}, {128, 64}}},
		{"filled gap", [][2]int64{{0, 64}, {128, 64}, {64, 64}}, [][2]int64{{0, 192}}},
		{"many records", [][2]int64{{0, 1}, {2, 1}, {4, 1}}, [][2]int64{{0, 1}, {2, 1}, {4, 1}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			x := New(1<<20, 4096)
			for _, w := range tc.writes {
				x.Write(w[0], bytes.Repeat([]byte{0xab}, int(w[1])))
			}
			var got [][2]int64
			err := x.Runs(1<<20, func(r Run) error {
				var n int64
				for _, b := range r.Bufs {
					n += int64(len(b))
					if len(bytes.Trim(b, "\xab")) > 0 {
						t.Errorf("run at %d holds bytes nobody wrote", r.Off)
					}
				}
				if n != r.Len {
					t.Errorf("run at %d: %d bytes in Bufs, Len %d", r.Off, n, r.Len)
				}
				got = append(got, [2]int64{r.Off, r.Len})
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Fatalf("runs %v, want %v", got, tc.want)
			}
		})
	}
}
