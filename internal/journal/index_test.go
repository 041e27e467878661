package journal_test

// The write-behind index (internal/extent) on the journal's real slots,
// which count (extent.CountingSlot: an item keeps no hole bitmap, its holes
// are the slot's unmarked bytes): slot failures (heap and slot items mixed
// in a chunk), flush-like layer swaps, TakeFullChunks, Punch, Truncate,
// slot reuse (stale marks cleared by touched pages) and Trim; after every
// operation it checks Check, Bytes, Overlay and what a crash would replay
// (the marks of the slots in use) against a model. By review17.

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"testing"

	"github.com/delegate-io/delegate/internal/extent"
	"github.com/delegate-io/delegate/internal/journal"
)

// model is the bytes the index should hold: offset -> value.
type model map[int64]byte

func (m model) write(off int64, p []byte) {
	for i, b := range p {
		m[off+int64(i)] = b
	}
}

// punch drops [off, off+n) (n may reach far past the span: Truncate).
func (m model) punch(off, n int64) {
	for o := range m {
		if o >= off && o-off < n {
			delete(m, o)
		}
	}
}

// at returns the byte at o and whether the index should hold it.
func (m model) at(o int64) (byte, bool) {
	b, ok := m[o]
	return b, ok
}

// slots wraps the journal: it records which slot serves which chunk, and
// can refuse.
type slots struct {
	j     *journal.Journal
	fail  func() bool
	inUse map[*rslot]int64
}

type rslot struct {
	*journal.Slot
	ss *slots
}

func (r *rslot) Release() {
	delete(r.ss.inUse, r)
	r.Slot.Release()
}

func (s *slots) Acquire(off int64) extent.Slot {
	if s.fail != nil && s.fail() {
		return nil
	}
	js := s.j.Acquire("/x", journal.FileID{}, off)
	if js == nil {
		return nil
	}
	r := &rslot{Slot: js, ss: s}
	s.inUse[r] = off
	return r
}
func (s *slots) Footprint() int64 { return s.j.Footprint() }

func read(x *extent.Index, off, n int64) []byte {
	out := make([]byte, n)
	x.Overlay(off, out, func(_ int64, g []byte) {
		for i := range g {
			g[i] = 0xEE
		}
	})
	return out
}

// TestIndexOnSlots: DELEGATE_STRESS_SEEDS=150 runs 300 sequences (4 by
// default: about a second, 13 with -race).
func TestIndexOnSlots(t *testing.T) {
	seeds := 2
	if s := os.Getenv("DELEGATE_STRESS_SEEDS"); s != "" {
		fmt.Sscan(s, &seeds)
	}
	for seed := 0; seed < seeds; seed++ {
		for _, failPct := range []int{0, 30} {
			t.Run(fmt.Sprintf("seed%d-fail%d", seed, failPct), func(t *testing.T) {
				runStress(t, uint64(seed), failPct)
			})
		}
	}
}

func runStress(t *testing.T, seed uint64, failPct int) {
	const chunk = 4096
	dir := t.TempDir()
	j, _, err := journal.Open(dir, chunk, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close(true)
	r := rand.New(rand.NewPCG(seed, 17))
	ss := &slots{j: j, inUse: map[*rslot]int64{}}
	if failPct > 0 {
		ss.fail = func() bool { return r.IntN(100) < failPct }
	}
	gap := int64([]int{0, 64, 512, 2048}[seed%4])
	newX := func() *extent.Index {
		x := extent.New(chunk, gap)
		x.UseSlots(ss)
		return x
	}
	x := newX()
	m := model{}
	const span = 5 * chunk
	rnd := func(n int) []byte {
		p := make([]byte, n)
		for i := range p {
			p[i] = byte(r.Uint32())
		}
		return p
	}
	for op := 0; op < 3000; op++ {
		var desc string
		switch k := r.IntN(20); {
		case k < 8:
			off := r.Int64N(span)
			n := 1 + r.Int64N(200)
			if r.IntN(5) == 0 {
				n = 1 + r.Int64N(2*chunk)
			}
			p := rnd(int(n))
			x.Write(off, p)
			m.write(off, p)
			desc = fmt.Sprintf("Write(%d,%d)", off, n)
		case k < 12:
			n := 1 + r.Int64N(100)
			count := 1 + r.Int64N(60)
			stride := n + r.Int64N(300)
			if r.IntN(4) == 0 {
				stride = n
			}
			off := r.Int64N(span)
			p := rnd(int(n * count))
			x.WriteRun(off, n, stride, count, p)
			for i := int64(0); i < count; i++ {
				m.write(off+i*stride, p[i*n:(i+1)*n])
			}
			desc = fmt.Sprintf("WriteRun(%d,%d,%d,%d)", off, n, stride, count)
		case k < 14:
			off, n := r.Int64N(span), r.Int64N(600)
			if r.IntN(3) == 0 {
				n = r.Int64N(3 * chunk)
			}
			x.Punch(off, n)
			m.punch(off, n)
			desc = fmt.Sprintf("Punch(%d,%d)", off, n)
		case k < 15:
			size := r.Int64N(span)
			x.Truncate(size)
			m.punch(size, 1<<40)
			desc = fmt.Sprintf("Truncate(%d)", size)
		case k < 17:
			off, n := r.Int64N(span), r.Int64N(3000)
			got := read(x, off, n)
			want := make([]byte, n)
			for i := int64(0); i < n; i++ {
				o := off + i
				want[i] = 0xEE
				if b, ok := m.at(o); ok {
					want[i] = b
				}
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("op %d: overlay %d+%d differs", op, off, n)
			}
			desc = "Overlay"
		case k < 18:
			// a fullOnly flush: take the full chunks, write them (here:
			// check them), release.
			y := x.TakeFullChunks()
			if err := y.Check(); err != nil {
				t.Fatalf("op %d: taken: %v", op, err)
			}
			checkRuns(t, op, y, m)
			// the taken chunks are flushed: the model drops them
			y.Runs(1<<40, func(r extent.Run) error {
				m.punch(r.Off, r.Len)
				return nil
			})
			if y.Bytes()%chunk != 0 || y.Bytes() != y.FullBytes() {
				t.Fatalf("op %d: taken %d bytes, full %d", op, y.Bytes(), y.FullBytes())
			}
			y.Release()
			desc = "TakeFullChunks"
		case k < 19:
			// a full flush: the layer leaves, is checked, released
			checkRuns(t, op, x, m)
			x.Release()
			x = newX()
			m = model{}
			desc = "flush"
		default:
			j.Trim()
			desc = "Trim"
		}
		if err := x.Check(); err != nil {
			t.Fatalf("op %d (%s): %v", op, desc, err)
		}
		if x.Bytes() != int64(len(m)) {
			t.Fatalf("op %d (%s): %d bytes, model %d", op, desc, x.Bytes(), len(m))
		}
		// crash: every marked byte of a slot in use is a buffered byte
		// with its value; without failures, every buffered byte is marked.
		covered := map[int64]bool{}
		for s, off := range ss.inUse {
			covered[off] = true
			d := s.Data()
			for i := int64(0); i < chunk; i++ {
				o := off + i
				v, has := m.at(o)
				if s.Marked(i) && (!has || v != d[i]) {
					t.Fatalf("op %d (%s): crash replays byte %d (buffered %v)", op, desc, o, has)
				}
				if failPct == 0 && has && !s.Marked(i) {
					t.Fatalf("op %d (%s): crash loses byte %d", op, desc, o)
				}
			}
		}
	}
	x.Release()
	if len(ss.inUse) != 0 {
		t.Fatalf("%d slots in use after Release", len(ss.inUse))
	}
}

func checkRuns(t *testing.T, op int, x *extent.Index, m model) {
	t.Helper()
	var total int64
	err := x.Runs(1<<20, func(r extent.Run) error {
		o := r.Off
		for _, b := range r.Bufs {
			for i := range b {
				p := o + int64(i)
				v, ok := m.at(p)
				if !ok {
					return fmt.Errorf("run writes byte %d, a hole", p)
				}
				if v != b[i] {
					return fmt.Errorf("run writes byte %d wrong", p)
				}
			}
			o += int64(len(b))
		}
		total += r.Len
		return nil
	})
	if err != nil {
		t.Fatalf("op %d: %v", op, err)
	}
	if total != x.Bytes() {
		t.Fatalf("op %d: runs %d bytes, Bytes %d", op, total, x.Bytes())
	}
}
