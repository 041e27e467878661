package extent

import (
	"bytes"
	"testing"
)

// hookSlots: a Slots whose first Acquire fails (a heap item in a chunk that
// later gets a slot), and whose slot checks, at every mark it receives,
// that every marked byte was buffered before or after the operation under
// way, with that value: what a crash at that instant would replay.
type hookSlots struct {
	ms    *memSlots
	calls int
	check func(s *memSlot, where string)
}

type hookSlot struct {
	*memSlot
	h *hookSlots
}

func (h *hookSlots) Acquire(off int64) Slot {
	if h.calls++; h.calls == 1 {
		return nil
	}
	return &hookSlot{h.ms.Acquire(off).(*memSlot), h}
}
func (h *hookSlots) Footprint() int64 { return h.ms.Footprint() }

func (s *hookSlot) MarkCount(i, n int64) int64 {
	c := s.memSlot.MarkCount(i, n)
	s.h.check(s.memSlot, "MarkCount")
	return c
}
func (s *hookSlot) MarkRunCount(i, n, stride, count int64) int64 {
	c := s.memSlot.MarkRunCount(i, n, stride, count)
	s.h.check(s.memSlot, "MarkRunCount")
	return c
}
func (s *hookSlot) Mark(i, n int64) { s.memSlot.Mark(i, n); s.h.check(s.memSlot, "Mark") }

// TestAbsorbHeapItemMarksNoHole: a slot's base absorbing a heap item (one
// buffered when no slot could be had) marks only the heap item's buffered
// bytes. It marked its whole range and unmarked the holes after; the hole
// bytes hold what a Punch left there (bytes a direct write superseded), so
// a crash between the two replayed them over the direct write (review17).
func TestAbsorbHeapItemMarksNoHole(t *testing.T) {
	const chunk = 4096
	var before, after *model
	h := &hookSlots{ms: &memSlots{chunk: chunk}}
	var bad []int64
	h.check = func(s *memSlot, where string) {
		for i := range s.data {
			if !s.marked(int64(i)) {
				continue
			}
			o := s.off + int64(i)
			ok := false
			for _, m := range []*model{before, after} {
				if m != nil && o < int64(len(m.have)) && m.have[o] && m.data[o] == s.data[i] {
					ok = true
				}
			}
			if !ok {
				bad = append(bad, o)
			}
		}
	}
	x := New(chunk, 64)
	x.UseSlots(h)
	m := &model{}
	step := func(op func(*model)) {
		before = &model{data: append([]byte(nil), m.data...), have: append([]bool(nil), m.have...)}
		op(m)
		after = m
	}
	old := bytes.Repeat([]byte{0x11}, 60)
	step(func(m *model) { x.Write(1000, old); m.write(1000, old) }) // heap: Acquire fails
	// a direct write superseded [1010,1050): the heap item keeps the old bytes as holes
	step(func(m *model) {
		x.Punch(1010, 40)
		for i := int64(1010); i < 1050; i++ {
			m.set(i, false)
		}
	})
	step(func(m *model) { x.Write(0, []byte{1}); m.write(0, []byte{1}) }) // the chunk's slot: counted
	bad = nil
	// a fresh counted base at 950 absorbs the heap item
	step(func(m *model) { m.write(950, []byte{2}); x.Write(950, []byte{2}) })
	if err := x.Check(); err != nil {
		t.Fatal(err)
	}
	if len(bad) > 0 {
		t.Fatalf("during Write(950): %d marked bytes were never buffered (%v): a crash replays the superseded bytes", len(bad), bad)
	}
}
