// Package extent is a file's write-behind buffer: an index of buffered byte
// ranges on a google/btree, with overwrite semantics.
//
// An item holds the bytes of [off, off+len) in one buffer. Bytes inside an
// item that were never written are holes, marked in a bitmap; writes that
// land near an item (within the index's gap) extend it instead of starting
// a new one, so 64-byte records written in any order by many ranks fill
// one buffer per chunk: filling a hole sets bits, it never deletes or
// copies items. 175,000 four-byte extents in one call are a real workload
// (mpich issue #7283).
//
// Invariants (checked by Check):
//
//	I1. Items do not overlap, and are kept in offset order.
//	I2. No item crosses a multiple of the chunk size.
//	I3. Two items in the same chunk are more than gap bytes apart.
//	I4. The first and last byte of an item are buffered (not holes). An
//	    item that never had holes has no bitmap; one that had keeps it
//	    (holes come and go as ranks fill each other's gaps). An item in
//	    a counting slot (CountingSlot: the server's journal) has none at
//	    all: its holes are the slot's unmarked bytes of its range.
//	I5. Bytes() is the number of buffered bytes; Alloc() the memory held
//	    by buffers and bitmaps.
//
// I2 bounds what one merge copies, and lets the flusher cut runs at chunk
// boundaries, so backend writes inside a run are aligned.
//
// An Index is a value type for one goroutine at a time: no locks, no I/O,
// no clock. The server owns one per file and guards it. Runs, Bytes and
// End only read, and may run concurrently with each other.
package extent

import (
	"fmt"
	"math"
	"math/bits"

	"github.com/google/btree"
)

type item struct {
	off   int64
	data  []byte
	holes []uint64 // bit i set: byte i is not buffered; nil when there are none
	nhole int64
	slot  *slotRef // data is a view of this slot (UseSlots); nil: heap
}

func (it *item) end() int64 { return it.off + int64(len(it.data)) }

func less(a, b *item) bool { return a.off < b.off }

// Index is the set of buffered extents of one file.
type Index struct {
	tree  *btree.BTreeG[*item]
	chunk int64
	gap   int64
	bytes int64
	alloc int64
	full  int64   // items that are a whole chunk without holes
	probe item    // reused search key
	merge []*item // reused list of items a write absorbs

	// hot is the item the last write landed in, and hotNext the offset of
	// the item after it (MaxInt64 if none): a write near hot that stays
	// clear of hotNext needs no btree search. Any other change clears hot.
	hot     *item
	hotNext int64

	pool *Pool // where chunk-sized buffers come from and go back; may be nil

	// With slots, every item of a chunk is a view of the chunk's slot
	// (slot.go), at its offset in the chunk: an item grows in place and
	// items that merge are already where they belong.
	slots  Slots
	chunks map[int64]*slotRef // by chunk offset
}

// New returns an empty index whose items never cross a multiple of chunk,
// and where a write at most gap bytes from an item extends it.
func New(chunk, gap int64) *Index {
	if chunk <= 0 || gap < 0 || gap >= chunk {
		panic("extent: need chunk > gap >= 0")
	}
	return &Index{tree: btree.NewG(16, less), chunk: chunk, gap: gap}
}

// NewPooled is New with chunk-sized buffers taken from and returned to p,
// whose chunk size must be chunk.
func NewPooled(chunk, gap int64, p *Pool) *Index {
	x := New(chunk, gap)
	if p != nil && p.chunk != chunk {
		panic("extent: pool of another chunk size")
	}
	x.pool = p
	return x
}

// bigItem is the size from which a growing item that starts a chunk gets
// a whole chunk buffer instead of doubling its way there (copying each
// time): past it the chunk is likely to fill, and the memory it may waste
// is bounded (at most 4x what the item holds).
func (x *Index) bigItem() int64 { return x.chunk / 4 }

// newBuf returns a buffer of length n and capacity c, a whole chunk from
// the pool when c is one.
func (x *Index) newBuf(n, c int64) []byte {
	if c == x.chunk {
		if b := x.pool.take(); b != nil {
			return b[:n]
		}
	}
	return make([]byte, n, c)
}

// recycle gives it's buffer back to the pool, or drops its reference to
// its slot; it must not be used after.
func (x *Index) recycle(it *item) {
	if it.slot != nil {
		x.detach(it)
		return
	}
	x.pool.put(it.data)
	it.data = nil
}

// Release gives every buffer back to the pool and empties the index. The
// caller guarantees that nobody reads the index or slices of it (Runs'
// Bufs) any more.
func (x *Index) Release() {
	if x.pool != nil {
		x.tree.Ascend(func(it *item) bool {
			if it.slot == nil {
				x.pool.put(it.data)
			}
			return true
		})
	}
	for cs, r := range x.chunks {
		r.s.Release()
		delete(x.chunks, cs)
	}
	x.tree.Clear(false)
	x.bytes, x.alloc, x.full, x.hot = 0, 0, 0, nil
}

// Bytes returns the number of buffered bytes.
func (x *Index) Bytes() int64 { return x.bytes }

// Alloc returns the memory the index holds in buffers and bitmaps.
func (x *Index) Alloc() int64 { return x.alloc }

// Len returns the number of items.
func (x *Index) Len() int { return x.tree.Len() }

// End returns the end of the last buffered byte, or 0 when empty.
func (x *Index) End() int64 {
	if it, ok := x.tree.Max(); ok {
		return it.end()
	}
	return 0
}

func (x *Index) key(off int64) *item {
	x.probe.off = off
	return &x.probe
}

func bitmapBytes(b []uint64) int64 { return int64(8 * cap(b)) }

// itemAlloc is the memory an item holds itself: its buffer (unless it is a
// view of a slot, counted once per slot) and its hole bitmap.
func itemAlloc(it *item) int64 {
	n := bitmapBytes(it.holes)
	if it.slot == nil {
		n += int64(cap(it.data))
	}
	return n
}

func (x *Index) account(it *item, sign int64) {
	x.bytes += sign * (int64(len(it.data)) - it.nhole)
	x.alloc += sign * itemAlloc(it)
	if x.isFull(it) {
		x.full += sign
	}
}

func (x *Index) isFull(it *item) bool {
	return it.off%x.chunk == 0 && int64(len(it.data)) == x.chunk && it.nhole == 0
}

// FullBytes returns the bytes of the chunks that are entirely buffered
// (what TakeFullChunks would take).
func (x *Index) FullBytes() int64 { return x.full * x.chunk }

func (x *Index) insert(it *item) {
	x.tree.ReplaceOrInsert(it)
	x.account(it, 1)
}

func (x *Index) remove(it *item) {
	x.tree.Delete(it)
	x.account(it, -1)
	if x.hot == it {
		x.hot = nil
	}
}

// Write buffers p at off, replacing what was buffered there.
func (x *Index) Write(off int64, p []byte) {
	for len(p) > 0 {
		ce := (off/x.chunk + 1) * x.chunk
		n := min(int64(len(p)), ce-off)
		x.writeChunk(off, n, 0, 1, p[:n], ce)
		off, p = off+n, p[n:]
	}
}

// WriteRun buffers count pieces of n bytes at off, off+stride,
// off+2*stride, ..., held back to back in p (count*n bytes): the same as
// that many Writes, in order. A regular strided description (a file view,
// strided independent writes) is applied to each chunk in one pass: the
// pieces of a chunk become one item, found or made with one search, with
// holes between them, instead of one search, insert and merge per piece
// (issue 13). Pieces are bridged so when the holes between them are
// within the gap (as separate writes would be), or always with slots,
// where the chunk's slot is held anyway and a hole costs a bit. Other
// runs (pieces that overlap, go backwards, or are far apart in the heap)
// are written piece by piece.
func (x *Index) WriteRun(off, n, stride, count int64, p []byte) {
	if count < 1 || int64(len(p)) != count*n {
		panic("extent: WriteRun: data does not match the run")
	}
	bridge := count > 1 && stride >= n && (x.slots != nil || stride-n <= x.gap)
	for count > 0 {
		ce := (off/x.chunk + 1) * x.chunk
		// pieces that lie wholly in this chunk
		k := int64(1)
		if bridge && off+n <= ce {
			k = min(count, (ce-off-n)/stride+1)
		}
		if k == 1 {
			x.Write(off, p[:n])
		} else {
			x.writeChunk(off, n, stride, k, p[:k*n], ce)
		}
		off, p, count = off+k*stride, p[k*n:], count-k
	}
}

// writeChunk writes count pieces of n bytes at off, off+stride, ... (p
// holds them back to back; stride >= n when count > 1), inside the chunk
// that ends at ce.
func (x *Index) writeChunk(off, n, stride, count int64, p []byte, ce int64) {
	end := off + (count-1)*stride + n
	cs := ce - x.chunk
	// Fast path: the hot item reaches off (within the gap) and the write
	// stays more than a gap short of the next item.
	if h := x.hot; h != nil && h.off >= cs && h.off <= off && off <= h.end()+x.gap && end+x.gap < x.hotNext && end <= ce {
		x.fill(h, off, n, stride, count, p)
		return
	}
	// The base is the item that starts at or before off and reaches it
	// (within the gap), in this chunk; else a new item at off.
	var base *item
	x.tree.DescendLessOrEqual(x.key(off), func(it *item) bool {
		if it.off >= cs && it.end()+x.gap >= off {
			base = it
		}
		return false
	})
	fresh := base == nil
	if fresh {
		base = &item{off: off}
	}
	// Items after the base that the write reaches (within the gap) join it.
	absorb := x.merge[:0]
	next := int64(math.MaxInt64)
	x.tree.AscendGreaterOrEqual(x.key(base.off+1), func(it *item) bool {
		if it.off > end+x.gap || it.off >= ce {
			next = it.off
			return false
		}
		absorb = append(absorb, it)
		return true
	})
	if fresh && len(absorb) == 0 && count == 1 {
		// A new item of its own: no holes, no bitmap.
		if r := x.slotFor(cs); r != nil {
			x.attach(base, r, int64(len(p)))
		} else {
			base.data = x.newBuf(int64(len(p)), min(max(int64(len(p)), 64), ce-off))
		}
		x.place(base, off, p)
		x.insert(base)
		x.hot, x.hotNext = base, next
		x.merge = absorb[:0]
		return
	}
	if !fresh {
		x.account(base, -1)
	}
	// Grow the base once to where the write and the absorbed items end,
	// then mark as holes only the new bytes that neither covers: a write
	// that extends an item with its own bytes needs no bitmap (setting
	// and clearing one per piece was a quarter of the index's time for
	// random 4 KiB writes).
	oldEnd, newEnd := base.off+int64(len(base.data)), end
	if k := len(absorb); k > 0 {
		newEnd = max(newEnd, absorb[k-1].end())
	}
	x.grow(base, newEnd, ce)
	x.markGaps(base, oldEnd, newEnd, off, n, stride, count, absorb)
	for _, it := range absorb {
		x.remove(it)
		if base.counted() && it.slot == base.slot {
			// Already in place and marked: grow counted its bytes as
			// holes, and only its own holes are.
			base.nhole -= int64(len(it.data)) - it.nhole
			x.recycle(it)
			continue
		}
		holes := func(i, n int64) { x.setHoles(base, it.off-base.off+i, n) }
		if base.slot != nil && it.slot == nil {
			// A heap item into the slot: only its buffered bytes are
			// copied and marked, never its holes (they hold what a Punch
			// left: bytes a direct write superseded), not even for the
			// moment a crash could catch between a mark and an unmark.
			dirtyRuns(it, 0, int64(len(it.data)), func(i, n int64) {
				x.place(base, it.off+i, it.data[i:i+n])
			}, holes)
			x.recycle(it)
			continue
		}
		x.place(base, it.off, it.data)
		// Holes of the absorbed item are holes of the base too.
		if it.nhole > 0 {
			dirtyRuns(it, 0, int64(len(it.data)), func(int64, int64) {}, holes)
		}
		// A heap base (no slot could be had) took bytes out of a slot.
		if r := it.slot; r != nil && r != base.slot {
			r.s.Unmark(it.off-r.off, int64(len(it.data)))
		}
		x.recycle(it)
	}
	clear(absorb)
	x.merge = absorb[:0]
	x.placeRun(base, off, n, stride, count, p)
	if fresh {
		x.tree.ReplaceOrInsert(base)
	}
	x.account(base, 1)
	x.hot, x.hotNext = base, next
}

// fill writes the pieces into h (the fast path), extending h if needed.
func (x *Index) fill(h *item, off, n, stride, count int64, p []byte) {
	x.account(h, -1)
	oldEnd, newEnd := h.end(), max(h.end(), off+(count-1)*stride+n)
	x.grow(h, newEnd, (h.off/x.chunk+1)*x.chunk)
	if count == 1 { // one piece (64-byte records): a hole only before it
		if off > oldEnd {
			x.setHoles(h, oldEnd-h.off, off-oldEnd)
		}
	} else {
		x.markGaps(h, oldEnd, newEnd, off, n, stride, count, nil)
	}
	x.placeRun(h, off, n, stride, count, p)
	x.account(h, 1)
}

// markGaps marks as holes of it the bytes of [lo, hi) (absolute offsets,
// inside it) that none of the count pieces of n bytes at off, off+stride,
// ... and none of the items in absorb (in offset order) covers.
func (x *Index) markGaps(it *item, lo, hi, off, n, stride, count int64, absorb []*item) {
	if it.counted() {
		return // its holes are its slot's unmarked bytes (setHoles)
	}
	pos := lo // every byte of [lo, pos) is covered or marked
	var k int64
	a := 0
	for pos < hi && (k < count || a < len(absorb)) {
		var s, e int64
		if ps := off + k*stride; k < count && (a == len(absorb) || ps <= absorb[a].off) {
			s, e = ps, ps+n
			k++
		} else {
			s, e = absorb[a].off, absorb[a].end()
			a++
		}
		if s > pos {
			x.setHoles(it, pos-it.off, min(s, hi)-pos)
		}
		pos = max(pos, e)
	}
	if pos < hi {
		x.setHoles(it, pos-it.off, hi-pos)
	}
}

// placeRun places count pieces of n bytes, back to back in p, at off,
// off+stride, ... (inside it).
func (x *Index) placeRun(it *item, off, n, stride, count int64, p []byte) {
	if count > 1 && it.counted() {
		// place's work for every piece at once: the bytes first, then
		// the marks (what a crash in between replays is only older bytes'
		// absence). p is the request's data, never a view of the slot.
		d := it.data[off-it.off:]
		if n == 64 {
			for k := int64(0); k < count; k++ {
				*(*[64]byte)(d[k*stride:]) = *(*[64]byte)(p[k*64:])
			}
		} else {
			for k := int64(0); k < count; k++ {
				copy(d[k*stride:k*stride+n], p[k*n:(k+1)*n])
			}
		}
		it.nhole -= it.slot.cs.MarkRunCount(off-it.slot.off, n, stride, count)
		return
	}
	for k := int64(0); k < count; k++ {
		x.place(it, off+k*stride, p[k*n:(k+1)*n])
	}
}

// grow makes it reach end; the caller marks which of the new bytes are
// holes (markGaps). Its buffer doubles when it must reallocate, never
// past the chunk end ce; a new base goes into its chunk's slot if there
// are slots.
func (x *Index) grow(it *item, end, ce int64) {
	old := int64(len(it.data))
	n := end - it.off
	if n <= old {
		return
	}
	if old == 0 && it.slot == nil {
		if r := x.slotFor(ce - x.chunk); r != nil {
			x.attach(it, r, n)
			return
		}
	}
	if n > int64(cap(it.data)) {
		c := min(max(n, 2*int64(cap(it.data)), 64), ce-it.off)
		if n >= x.bigItem() && ce-it.off == x.chunk {
			c = x.chunk
		}
		buf := x.newBuf(n, c)
		copy(buf, it.data)
		x.recycle(it)
		it.data = buf
	} else {
		it.data = it.data[:n]
		if it.counted() {
			it.nhole += n - old // unmarked until placed (attach)
		}
	}
}

// place copies p into it at off (inside it) and marks those bytes buffered,
// in its slot too: the bytes first, then the mark.
func (x *Index) place(it *item, off int64, p []byte) {
	i := off - it.off
	if len(p) == 0 {
		return
	}
	inPlace := &it.data[i] == &p[0] // an absorbed item of the same slot
	if !inPlace {
		// The server's one copy of a buffered byte: from the ring slice
		// (or the inline payload) into the chunk's slot or buffer. The
		// flush writes from here (copies per byte: client memCursor.gather).
		copy(it.data[i:], p)
	}
	if it.counted() {
		if !inPlace { // in place: the caller counts (writeChunk)
			it.nhole -= it.slot.cs.MarkCount(off-it.slot.off, int64(len(p)))
		}
		return
	}
	if it.nhole > 0 {
		it.nhole -= clearBits(it.holes, i, int64(len(p)))
	}
	if it.slot != nil && !inPlace {
		it.slot.s.Mark(off-it.slot.off, int64(len(p)))
	}
}

// setHoles marks n bytes of it from i as holes.
// In a counted item it does nothing: its callers mark as holes only new
// bytes of the item, which are unmarked and counted already (attach,
// grow); dropping buffered bytes is an Unmark (Punch).
func (x *Index) setHoles(it *item, i, n int64) {
	if n <= 0 || it.counted() {
		return
	}
	words := (int64(len(it.data)) + 63) / 64
	if it.holes == nil {
		// Room to grow with a heap buffer's capacity, but not with a
		// slot's: a view of a slot reaches the chunk's end, and a bitmap
		// for all of it (128 KiB zeroed for a 1 MiB chunk) for every item
		// that merged two 4 KiB writes was a third of the server's time
		// for random 4 KiB writes. Past words it doubles (below).
		c := words
		if it.slot == nil {
			c = max(words, int64(cap(it.data))/64+1)
		}
		it.holes = make([]uint64, words, c)
	} else if int64(len(it.holes)) < words {
		if int64(cap(it.holes)) >= words {
			it.holes = it.holes[:words]
		} else {
			h := make([]uint64, words, words*2)
			copy(h, it.holes)
			it.holes = h
		}
	}
	it.nhole += setBits(it.holes, i, n)
}

// setBits sets bits [i, i+n) and returns how many were clear. Whole words
// in the middle take one store each: a 4 KiB write is 64 words.
func setBits(b []uint64, i, n int64) int64 {
	var changed int64
	for n > 0 && (i%64 != 0 || n < 64) { // head (and a short range)
		w, s := i/64, i%64
		k := min(64-s, n)
		mask := ^uint64(0) >> (64 - k) << s
		changed += int64(bits.OnesCount64(mask &^ b[w]))
		b[w] |= mask
		i, n = i+k, n-k
	}
	if n == 0 {
		return changed
	}
	w, e := i/64, (i+n)/64
	for _, v := range b[w:e] {
		changed += int64(64 - bits.OnesCount64(v))
	}
	for k := w; k < e; k++ {
		b[k] = ^uint64(0)
	}
	if t := (i + n) % 64; t > 0 { // tail
		mask := ^uint64(0) >> (64 - t)
		changed += int64(bits.OnesCount64(mask &^ b[e]))
		b[e] |= mask
	}
	return changed
}

// clearBits clears bits [i, i+n) (within the bitmap: bits past its end
// are clear already) and returns how many were set.
func clearBits(b []uint64, i, n int64) int64 {
	if lim := int64(len(b)) * 64; i+n > lim {
		n = lim - i
	}
	var changed int64
	for n > 0 && (i%64 != 0 || n < 64) { // head (and a short range)
		w, s := i/64, i%64
		k := min(64-s, n)
		mask := ^uint64(0) >> (64 - k) << s
		changed += int64(bits.OnesCount64(mask & b[w]))
		b[w] &^= mask
		i, n = i+k, n-k
	}
	if n <= 0 {
		return changed
	}
	w, e := i/64, (i+n)/64
	for _, v := range b[w:e] {
		changed += int64(bits.OnesCount64(v))
	}
	clear(b[w:e])
	if t := (i + n) % 64; t > 0 { // tail
		mask := ^uint64(0) >> (64 - t)
		changed += int64(bits.OnesCount64(mask & b[e]))
		b[e] &^= mask
	}
	return changed
}

// countBits returns the number of bits set among the first n of b (a
// word at a time: Check counts every item's holes after each operation of
// the model tests).
func countBits(b []uint64, n int64) (c int64) {
	w := min(int64(len(b)), n/64)
	for _, v := range b[:w] {
		c += int64(bits.OnesCount64(v))
	}
	if r := n % 64; r != 0 && n/64 < int64(len(b)) {
		c += int64(bits.OnesCount64(b[n/64] & (1<<r - 1)))
	}
	return c
}

func isHole(it *item, i int64) bool {
	if it.counted() {
		return it.nhole > 0 && !it.markedBit(i)
	}
	return it.nhole > 0 && i/64 < int64(len(it.holes)) && it.holes[i/64]&(1<<(i%64)) != 0
}

// dirtyRuns calls fn for each run of buffered bytes of it within [lo, hi)
// (relative to it.off), and hole for each run of holes. It scans the
// bitmap a word at a time: 64-byte records interleaved from two ranks make
// a run every 64 bytes, and a bit-by-bit scan of a large item cost 40% of
// a server's time.
func dirtyRuns(it *item, lo, hi int64, fn func(i, n int64), hole func(i, n int64)) {
	if it.nhole == 0 {
		fn(lo, hi-lo)
		return
	}
	b, base, holeBit := it.holes, int64(0), true
	if it.counted() { // holes are the slot's clear bits
		b, base, holeBit = it.slot.words, it.off-it.slot.off, false
	}
	for i := lo; i < hi; {
		h := isHole(it, i)
		j := nextChange(b, base+i+1, base+hi, h == holeBit) - base
		if h {
			if hole != nil {
				hole(i, j-i)
			}
		} else {
			fn(i, j-i)
		}
		i = j
	}
}

// nextChange returns the first bit index in [i, hi) whose value is not v,
// or hi. Bits past the bitmap are clear.
func nextChange(b []uint64, i, hi int64, v bool) int64 {
	for i < hi {
		w := i / 64
		var word uint64
		if w < int64(len(b)) {
			word = b[w]
		}
		if v {
			word = ^word // look for a clear bit
		}
		if word >>= uint(i % 64); word != 0 {
			return min(i+int64(bits.TrailingZeros64(word)), hi)
		}
		i = (w + 1) * 64
	}
	return hi
}

// overlapping calls fn, in offset order, for each item holding bytes of
// [off, end), until fn returns false.
func (x *Index) overlapping(off, end int64, fn func(*item) bool) {
	start := off
	x.tree.DescendLessOrEqual(x.key(off), func(it *item) bool {
		if it.end() > off {
			start = it.off // it reaches into the range
		}
		return false
	})
	x.tree.AscendGreaterOrEqual(x.key(start), func(it *item) bool {
		return it.off < end && fn(it)
	})
}

// Overlay copies the buffered bytes of [off, off+len(dst)) into dst and
// calls gap, in offset order, for each piece of dst it has no bytes for.
func (x *Index) Overlay(off int64, dst []byte, gap func(off int64, b []byte)) {
	end := off + int64(len(dst))
	pos := off
	x.overlapping(off, end, func(it *item) bool {
		if it.off > pos {
			gap(pos, dst[pos-off:it.off-off])
			pos = it.off
		}
		hi := min(it.end(), end)
		dirtyRuns(it, pos-it.off, hi-it.off, func(i, n int64) {
			o := it.off + i
			copy(dst[o-off:o-off+n], it.data[i:i+n])
		}, func(i, n int64) {
			o := it.off + i
			gap(o, dst[o-off:o-off+n])
		})
		pos = hi
		return true
	})
	if pos < end {
		gap(pos, dst[pos-off:])
	}
}

// trim restores I4 for it after holes appeared at its edges: it drops
// leading and trailing holes, or the whole item if nothing is left.
func (x *Index) trim(it *item) {
	if it.nhole == 0 {
		return
	}
	n := int64(len(it.data))
	lo, hi := int64(0), n
	for lo < hi && isHole(it, lo) {
		lo++
	}
	for hi > lo && isHole(it, hi-1) {
		hi--
	}
	if lo == hi {
		x.remove(it)
		x.recycle(it)
		return
	}
	if lo == 0 && hi == n {
		return
	}
	x.tree.Delete(it)
	x.account(it, -1)
	nt := &item{off: it.off + lo}
	if it.slot != nil {
		x.attach(nt, it.slot, hi-lo) // the same bytes of the same slot
	} else {
		nt.data = append([]byte(nil), it.data[lo:hi]...)
	}
	if nt.counted() {
		nt.nhole = it.nhole - lo - (n - hi) // the edges cut off were holes
	}
	for i := lo; i < hi && !nt.counted(); i++ {
		if isHole(it, i) {
			x.setHoles(nt, i-lo, 1)
		}
	}
	x.recycle(it)
	x.insert(nt)
	x.hot = nil
}

// Truncate drops every buffered byte at or past size.
func (x *Index) Truncate(size int64) {
	x.Punch(size, math.MaxInt64-size)
}

// Punch drops every buffered byte of [off, off+n): a newer write that goes
// straight to the backend supersedes them.
func (x *Index) Punch(off, n int64) {
	if n <= 0 {
		return
	}
	x.hot = nil
	end := off + n
	if end < off {
		end = math.MaxInt64
	}
	var hit []*item
	x.overlapping(off, end, func(it *item) bool {
		hit = append(hit, it)
		return true
	})
	for _, it := range hit {
		whole := it.off >= off && it.end() <= end
		lo, hi := max(off, it.off)-it.off, min(end, it.end())-it.off
		if r := it.slot; r != nil && (whole || !it.counted()) {
			r.s.Unmark(it.off+lo-r.off, hi-lo)
		}
		if whole {
			x.remove(it)
			x.recycle(it)
			continue
		}
		x.account(it, -1)
		if it.counted() {
			it.nhole += it.slot.cs.UnmarkCount(it.off+lo-it.slot.off, hi-lo)
		} else {
			x.setHoles(it, lo, hi-lo)
		}
		x.account(it, 1)
		x.trim(it)
	}
}

// Run is a piece of a flush: Bufs hold the bytes of [Off, Off+Len), in
// order, ready for one vectored write.
type Run struct {
	Off  int64
	Len  int64
	Bufs [][]byte
}

// Runs calls fn for each run of contiguous buffered bytes, in offset order,
// with runs cut at chunk boundaries once they hold max bytes or more. fn must
// not keep Bufs after the Index changes. It stops at fn's first error.
//
// A run holds only buffered bytes: holes end a run, and nothing is padded
// or read back to fill them (never a read-modify-write). The server's
// flush writes exactly what clients wrote, so it cannot overwrite bytes
// another writer put on the backend beside them (a client's lease write,
// README Semantics); TestRunsSkipHoles holds this.
func (x *Index) Runs(max int64, fn func(Run) error) error {
	var r Run
	var err error
	emit := func() {
		if r.Len > 0 && err == nil {
			err = fn(r)
		}
		r = Run{Bufs: r.Bufs[:0]}
	}
	x.tree.Ascend(func(it *item) bool {
		dirtyRuns(it, 0, int64(len(it.data)), func(i, n int64) {
			o := it.off + i
			if r.Len > 0 && (o != r.Off+r.Len || (r.Len >= max && o%x.chunk == 0)) {
				emit()
			}
			if r.Len == 0 {
				r.Off = o
			}
			r.Len += n
			r.Bufs = append(r.Bufs, it.data[i:i+n])
		}, nil)
		return err == nil
	})
	emit()
	return err
}

// TakeFullChunks moves every chunk that is entirely buffered into a new
// index and returns it: the flusher's preferred work under memory
// pressure, since a full chunk becomes one aligned write that no later
// write of the same chunk will have to repeat.
func (x *Index) TakeFullChunks() *Index {
	out := NewPooled(x.chunk, x.gap, x.pool)
	if x.slots != nil {
		out.UseSlots(x.slots)
	}
	var move []*item
	x.tree.Ascend(func(it *item) bool {
		if x.isFull(it) {
			move = append(move, it)
		}
		return true
	})
	for _, it := range move {
		x.remove(it)
		out.insert(it)
		if r := it.slot; r != nil {
			// A full chunk is the only item of its chunk: its slot moves.
			delete(x.chunks, r.off)
			out.chunks[r.off] = r
			x.alloc -= x.slots.Footprint()
			out.alloc += x.slots.Footprint()
		}
	}
	return out
}

// Check verifies the invariants; tests call it after every operation.
func (x *Index) Check() error {
	var prev *item
	var nbytes, alloc int64
	var err error
	refs := map[*slotRef]int{}
	x.tree.Ascend(func(it *item) bool {
		n := int64(len(it.data))
		var holes int64
		switch {
		case it.counted():
			for i := int64(0); i < n; i++ {
				if !it.markedBit(i) {
					holes++
				}
			}
		case it.nhole > 0:
			holes = countBits(it.holes, n)
		}
		switch {
		case n == 0:
			err = fmt.Errorf("empty item at %d", it.off)
		case it.off/x.chunk != (it.end()-1)/x.chunk:
			err = fmt.Errorf("item %d+%d crosses a chunk boundary", it.off, n)
		case prev != nil && prev.end() > it.off:
			err = fmt.Errorf("items %d+%d and %d+%d overlap", prev.off, len(prev.data), it.off, n)
		case prev != nil && prev.off/x.chunk == it.off/x.chunk && it.off-prev.end() <= x.gap:
			err = fmt.Errorf("items at %d and %d are within the gap", prev.off, it.off)
		case holes != it.nhole:
			err = fmt.Errorf("item %d counts %d holes, has %d", it.off, it.nhole, holes)
		case isHole(it, 0) || isHole(it, n-1):
			err = fmt.Errorf("item %d starts or ends with a hole", it.off)
		}
		nbytes += n - it.nhole
		alloc += itemAlloc(it)
		if r := it.slot; err == nil && r != nil {
			if x.chunks[r.off] != r || r.off != it.off/x.chunk*x.chunk || &it.data[0] != &r.s.Data()[it.off-r.off] {
				err = fmt.Errorf("item %d is not a view of its chunk's slot", it.off)
			}
			refs[r]++
		}
		prev = it
		return err == nil
	})
	var full int64
	x.tree.Ascend(func(it *item) bool {
		if x.isFull(it) {
			full++
		}
		return true
	})
	if err == nil {
		err = x.checkSlots(refs)
	}
	if x.slots != nil {
		alloc += int64(len(x.chunks)) * x.slots.Footprint()
	}
	if err == nil && (nbytes != x.bytes || alloc != x.alloc || full != x.full) {
		err = fmt.Errorf("accounting: %d/%d bytes, %d/%d alloc, %d/%d full chunks", x.bytes, nbytes, x.alloc, alloc, x.full, full)
	}
	return err
}
