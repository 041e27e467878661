package extent

import (
	"fmt"
	"math/bits"
)

// Slot is a chunk buffer whose bytes and whose record of which bytes were
// written outlive the process (the server's journal: DESIGN.md §8). An
// Index with Slots keeps every item of a chunk in that chunk's slot, at
// its offset in the chunk, so the buffer itself is the journal and no byte
// is copied twice.
//
// The Index calls Mark after it copied written bytes into Data, before the
// write returns (so before the server acknowledges it), and Unmark when
// bytes are dropped (a direct write or a truncation superseded them).
// Release is called once no item uses the slot: its bytes are on the
// backend (the layer was flushed) or were dropped.
type Slot interface {
	// Data returns the chunk's bytes; its length is the chunk size.
	Data() []byte
	// Mark records that bytes [i, i+n) of the chunk hold written data.
	Mark(i, n int64)
	// Unmark records that bytes [i, i+n) need not be written any more.
	Unmark(i, n int64)
	// Release gives the slot back; nothing uses it afterwards.
	Release()
}

// Slots hands out the slots of one file's chunks.
type Slots interface {
	// Acquire returns an empty slot for the chunk at chunkOff, or nil when
	// none can be had: the Index then buffers in the heap (not crash-safe).
	Acquire(chunkOff int64) Slot
	// Footprint is the memory one slot holds; Alloc counts it once per
	// slot in use, whatever the items in it hold.
	Footprint() int64
}

// CountingSlot is a Slot that shows its marks and counts what each change
// made. An item in such a slot keeps no hole bitmap of its own: its holes
// are the slot's unmarked bytes of its range (the invariant checkSlots
// holds: a slot's marks are exactly the buffered bytes of its items), and
// its hole count moves by what Mark and Unmark report. A strided 4 KiB
// piece then costs one bitmap pass (the mark) instead of three (a hole
// set by the other rank's piece, cleared by this one, and the mark), and
// an item no zeroed bitmap of up to chunk/8 bytes (issue 13).
type CountingSlot interface {
	Slot
	// MarkWords returns the marks: bit i%64 of word i/64 is set when
	// byte i of the chunk is marked. The Index only reads it.
	MarkWords() []uint64
	// MarkCount is Mark; it returns how many of the bytes were unmarked.
	MarkCount(i, n int64) int64
	// MarkRunCount is MarkCount for count pieces of n bytes at i,
	// i+stride, ... (stride >= n); it returns the sum.
	MarkRunCount(i, n, stride, count int64) int64
	// UnmarkCount is Unmark; it returns how many of the bytes were marked.
	UnmarkCount(i, n int64) int64
}

// slotRef is a slot in use by an Index: the items of one chunk share it.
type slotRef struct {
	s     Slot
	cs    CountingSlot // s, when it counts: its items' holes are its unmarked bytes
	words []uint64     // cs.MarkWords()
	off   int64        // the chunk's offset
	items int          // items whose data is a view of s
}

// counted reports whether it's holes are its slot's unmarked bytes (no
// bitmap of its own): it is in a counting slot.
func (it *item) counted() bool { return it.slot != nil && it.slot.cs != nil }

// markedBit reports whether byte i of a counted item is marked.
func (it *item) markedBit(i int64) bool {
	j := it.off - it.slot.off + i
	return it.slot.words[j/64]>>(j%64)&1 == 1
}

// UseSlots makes x keep its chunks in slots from s. x must be empty.
func (x *Index) UseSlots(s Slots) {
	if x.tree.Len() > 0 {
		panic("extent: UseSlots on a non-empty index")
	}
	x.slots = s
	x.chunks = map[int64]*slotRef{}
}

// slotFor returns the slot of the chunk at cs, acquiring one if the chunk
// has none; nil without Slots or when none is available.
func (x *Index) slotFor(cs int64) *slotRef {
	if x.slots == nil {
		return nil
	}
	if r := x.chunks[cs]; r != nil {
		return r
	}
	s := x.slots.Acquire(cs)
	if s == nil {
		return nil
	}
	r := &slotRef{s: s, off: cs}
	if c, ok := s.(CountingSlot); ok {
		r.cs, r.words = c, c.MarkWords()
	}
	x.chunks[cs] = r
	x.alloc += x.slots.Footprint()
	return r
}

// attach makes it's data the n bytes of r's chunk from it.off. The slice's
// capacity reaches the chunk's end, so the item never reallocates.
// In a counting slot the n bytes count as holes until marked (an item's
// new bytes are outside every other item, so unmarked).
func (x *Index) attach(it *item, r *slotRef, n int64) {
	it.slot = r
	r.items++
	i := it.off - r.off
	it.data = r.s.Data()[i : i+n : x.chunk]
	if r.cs != nil {
		it.nhole += n
	}
}

// detach drops it's reference to its slot, releasing the slot with the
// last one.
func (x *Index) detach(it *item) {
	r := it.slot
	it.slot, it.data = nil, nil
	r.items--
	if r.items == 0 {
		delete(x.chunks, r.off)
		x.alloc -= x.slots.Footprint()
		r.s.Release()
	}
}

// Slotted returns the number of slots the index uses.
func (x *Index) Slotted() int { return len(x.chunks) }

// marker is what a Slot may offer tests: its marks as a bitmap, bit i%64
// of word i/64 set when byte i of the chunk is marked. Check compares them
// a word at a time: byte by byte, with -race, it was most of the time of
// TestModelRandom, which checks after every operation.
type marker interface{ MarkWords() []uint64 }

// checkSlots verifies that each slot in use is referenced by exactly the
// items that say so, and, when the slot can tell, that its marks are the
// buffered bytes of its chunk (no more: a mark on a hole would replay
// bytes nobody wrote; no less: a buffered byte unmarked is lost in a
// crash).
func (x *Index) checkSlots(refs map[*slotRef]int) error {
	for cs, r := range x.chunks {
		if refs[r] != r.items || r.items == 0 || r.off != cs {
			return fmt.Errorf("slot of chunk %d: %d items say they use it, it counts %d", cs, refs[r], r.items)
		}
		m, ok := r.s.(marker)
		if !ok {
			continue
		}
		want := make([]uint64, (x.chunk+63)/64)
		x.tree.AscendRange(&item{off: cs}, &item{off: cs + x.chunk}, func(it *item) bool {
			if it.slot != r {
				return true // a heap item of the chunk: no slot could be had
			}
			dirtyRuns(it, 0, int64(len(it.data)), func(i, n int64) {
				setBits(want, it.off-cs+i, n)
			}, nil)
			return true
		})
		got := m.MarkWords()
		if len(got) < len(want) {
			return fmt.Errorf("slot of chunk %d: %d words of marks, want %d", cs, len(got), len(want))
		}
		for w := range want {
			if d := got[w] ^ want[w]; d != 0 {
				b := bits.TrailingZeros64(d)
				return fmt.Errorf("slot of chunk %d: byte %d marked %v, buffered %v", cs, w*64+b, got[w]>>b&1 == 1, want[w]>>b&1 == 1)
			}
		}
	}
	if len(refs) != len(x.chunks) {
		return fmt.Errorf("%d slots referenced by items, %d in use", len(refs), len(x.chunks))
	}
	return nil
}
