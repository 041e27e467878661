package extent

import (
	"bytes"
	"math/rand/v2"
	"testing"
)

// memSlots are Slots in memory that remember what a crash would keep: the
// marked bytes of every slot in use.
type memSlots struct {
	chunk int64
	inUse int
	live  map[*memSlot]struct{}
	// failEvery: every failEvery-th Acquire finds no slot (0: never), so
	// heap items and slot items mix in a chunk.
	failEvery, calls int
	// plain: the slots do not count (not CountingSlot), so items keep
	// hole bitmaps of their own.
	plain bool
}

// plainSlot hides memSlot's counting.
type plainSlot struct{ s *memSlot }

func (p plainSlot) Data() []byte        { return p.s.Data() }
func (p plainSlot) Mark(i, n int64)     { p.s.Mark(i, n) }
func (p plainSlot) Unmark(i, n int64)   { p.s.Unmark(i, n) }
func (p plainSlot) Release()            { p.s.Release() }
func (p plainSlot) MarkWords() []uint64 { return p.s.MarkWords() }

type memSlot struct {
	ms       *memSlots
	off      int64
	data     []byte
	marks    []uint64 // bit i: byte i marked (the marker's bitmap)
	released bool
}

func (m *memSlots) Acquire(off int64) Slot {
	if m.live == nil {
		m.live = map[*memSlot]struct{}{}
	}
	if m.calls++; m.failEvery > 0 && m.calls%m.failEvery == 0 {
		return nil
	}
	s := &memSlot{ms: m, off: off, data: bytes.Repeat([]byte{0xA5}, int(m.chunk)), marks: make([]uint64, (m.chunk+63)/64)}
	m.inUse++
	m.live[s] = struct{}{}
	if m.plain {
		return plainSlot{s}
	}
	return s
}

func (m *memSlots) Footprint() int64 { return m.chunk + m.chunk/8 }

// replay returns the bytes a recovery would write, 0xEE where it writes
// nothing (the model's masked view).
func (m *memSlots) replay() []byte {
	var out []byte
	for s := range m.live {
		for i := range s.data {
			if !s.marked(int64(i)) {
				continue
			}
			o := s.off + int64(i)
			for int64(len(out)) <= o {
				out = append(out, 0xEE)
			}
			out[o] = s.data[i]
		}
	}
	return out
}

func (s *memSlot) Data() []byte      { return s.data }
func (s *memSlot) Mark(i, n int64)   { setBits(s.marks, i, n) }
func (s *memSlot) Unmark(i, n int64) { clearBits(s.marks, i, n) }
func (s *memSlot) MarkCount(i, n int64) int64 {
	if n <= 0 {
		return 0
	}
	return setBits(s.marks, i, n)
}
func (s *memSlot) MarkRunCount(i, n, stride, count int64) (c int64) {
	for k := int64(0); k < count; k++ {
		c += s.MarkCount(i+k*stride, n)
	}
	return c
}
func (s *memSlot) UnmarkCount(i, n int64) int64 {
	if n <= 0 {
		return 0
	}
	return clearBits(s.marks, i, n)
}
func (s *memSlot) MarkWords() []uint64 { return s.marks }
func (s *memSlot) marked(i int64) bool { return s.marks[i/64]>>(i%64)&1 == 1 }
func (s *memSlot) Release() {
	if s.released {
		panic("slot released twice")
	}
	s.released = true
	for i := range s.data {
		s.data[i] = 0x5A // a view kept after Release shows in the model check
	}
	s.ms.inUse--
	delete(s.ms.live, s)
}

// subsetOf reports whether every marked byte of the slots in use is a
// buffered byte of m, with its value; else the first offset that is not.
func (ms *memSlots) subsetOf(m *model) (int64, bool) {
	for s := range ms.live {
		for i := range s.data {
			o := s.off + int64(i)
			if s.marked(int64(i)) && (o >= int64(len(m.have)) || !m.have[o] || m.data[o] != s.data[i]) {
				return o, false
			}
		}
	}
	return 0, true
}

// masked is the model's buffered bytes, 0xEE elsewhere, trimmed after the
// last buffered byte.
func (m *model) masked() []byte {
	n := len(m.have)
	for n > 0 && !m.have[n-1] {
		n--
	}
	out := make([]byte, n)
	for i := range out {
		out[i] = 0xEE
		if m.have[i] {
			out[i] = m.data[i]
		}
	}
	return out
}

func TestSlotsOnePerChunk(t *testing.T) {
	// Interleaved 64-byte records of two ranks, second rank first: items
	// merge inside one slot per chunk, and the slot's footprint is the
	// memory counted.
	const chunk = 4096
	ms := &memSlots{chunk: chunk}
	x := New(chunk, 512)
	x.UseSlots(ms)
	rec := bytes.Repeat([]byte{7}, 64)
	for _, rank := range []int64{1, 0} {
		for i := int64(0); i < 2*chunk/128; i++ {
			x.Write((2*i+rank)*64, rec)
		}
	}
	if err := x.Check(); err != nil {
		t.Fatal(err)
	}
	if ms.inUse != 2 || x.Slotted() != 2 || x.Len() != 2 {
		t.Fatalf("%d slots, %d items for 2 chunks", ms.inUse, x.Len())
	}
	if want := 2 * ms.Footprint(); x.Alloc() > want+2*chunk/4 { // plus hole bitmaps
		t.Fatalf("alloc %d, want about %d", x.Alloc(), want)
	}
	full := x.TakeFullChunks()
	if full.Slotted() != 2 || x.Slotted() != 0 || ms.inUse != 2 {
		t.Fatalf("full chunks took %d slots, left %d", full.Slotted(), x.Slotted())
	}
	full.Release()
	if ms.inUse != 0 {
		t.Fatalf("%d slots in use after Release", ms.inUse)
	}
}

func TestSlotsPunchUnmarks(t *testing.T) {
	ms := &memSlots{chunk: 1024}
	x := New(1024, 64)
	x.UseSlots(ms)
	x.Write(100, bytes.Repeat([]byte{1}, 500))
	x.Punch(200, 100) // a direct write superseded these
	x.Punch(100, 20)  // the item's head: trimmed, still a view of the slot
	if err := x.Check(); err != nil {
		t.Fatal(err)
	}
	x.Truncate(550)
	if err := x.Check(); err != nil {
		t.Fatal(err)
	}
	x.Punch(0, 1024)
	if ms.inUse != 0 || x.Alloc() != 0 {
		t.Fatalf("%d slots in use, alloc %d after everything was punched", ms.inUse, x.Alloc())
	}
}

// Strided runs of 64-byte pieces (a 64-byte file view's) and of other
// sizes into counting slots take placeRun's one pass: bytes and marks
// match the model, over a hot item, a base that absorbs items, and chunk
// ends.
func TestWriteRunIntoCountingSlots(t *testing.T) {
	const chunk = 4096
	for _, n := range []int64{64, 48, 100} {
		x := New(chunk, chunk/8)
		ms := &memSlots{chunk: chunk}
		x.UseSlots(ms)
		m := &model{}
		r := rand.New(rand.NewPCG(uint64(n), 1))
		put := func(off, stride, count int64) {
			p := make([]byte, count*n)
			for i := range p {
				p[i] = byte(r.Uint32())
			}
			x.WriteRun(off, n, stride, count, p)
			for i := int64(0); i < count; i++ {
				m.write(off+i*stride, p[i*n:(i+1)*n])
			}
			if err := x.Check(); err != nil {
				t.Fatalf("piece %d: %v", n, err)
			}
		}
		put(3*n, 2*n, 10)     // an item to absorb later
		put(0, 2*n, 200)      // rank 0 across chunks, absorbing it
		put(n, 2*n, 200)      // rank 1 into the same items
		put(500*n, 3*n, 50)   // past them: a new item
		put(500*n+n, 3*n, 50) // the hot item
		put(7*chunk+5, n, 30) // adjacent pieces
		if got, want := readIndex(x, 0, 800*n), m.overlay(0, 800*n); !bytes.Equal(got, want) {
			t.Fatalf("piece %d: the index reads other bytes than were written", n)
		}
		if off, ok := ms.subsetOf(m); !ok {
			t.Fatalf("piece %d: byte %d is marked but not buffered with its value", n, off)
		}
	}
}
