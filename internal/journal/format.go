package journal

import (
	"encoding/binary"
	"hash/crc32"
	"sync/atomic"
	"unsafe"
)

const (
	segMagic  = "DLGJNL01"
	pageBytes = 4096
	hdrBytes  = pageBytes // a slot's header page
	hdrFixed  = 64        // fixed fields before the path
	// PathMax is the longest backend path a slot can name. A longer one
	// is buffered in the heap (Acquire returns nil).
	PathMax = hdrBytes - hdrFixed
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// geometry is the shape of a segment's slots.
type geometry struct {
	chunk  int64 // data bytes of a slot
	bitmap int64 // bitmap bytes of a slot
	slot   int64 // a whole slot
	n      int   // slots in the segment
}

func newGeometry(chunk int64, n int) geometry {
	bm := (chunk/8 + pageBytes - 1) / pageBytes * pageBytes
	return geometry{chunk: chunk, bitmap: bm, slot: hdrBytes + bm + chunk, n: n}
}

func (g geometry) size() int64 { return pageBytes + int64(g.n)*g.slot }

// encodeSegHeader writes the segment header page.
func encodeSegHeader(b []byte, g geometry) {
	copy(b, segMagic)
	le := binary.LittleEndian
	le.PutUint64(b[8:], uint64(g.chunk))
	le.PutUint32(b[16:], uint32(g.n))
	le.PutUint32(b[20:], hdrBytes)
	le.PutUint64(b[24:], uint64(g.bitmap))
	le.PutUint64(b[32:], uint64(g.slot))
	le.PutUint32(b[40:], crc32.Checksum(b[:40], castagnoli))
}

// decodeSegHeader reads a segment header page; ok is false if it is not a
// valid one (a segment whose creation was interrupted: none of its slots
// was ever used).
func decodeSegHeader(b []byte) (g geometry, ok bool) {
	le := binary.LittleEndian
	if len(b) < pageBytes || string(b[:8]) != segMagic || le.Uint32(b[40:]) != crc32.Checksum(b[:40], castagnoli) {
		return g, false
	}
	chunk := int64(le.Uint64(b[8:]))
	if chunk < pageBytes || chunk&(chunk-1) != 0 || le.Uint32(b[20:]) != hdrBytes {
		return g, false
	}
	g = newGeometry(chunk, int(le.Uint32(b[16:])))
	if uint64(g.bitmap) != le.Uint64(b[24:]) || uint64(g.slot) != le.Uint64(b[32:]) || g.n <= 0 {
		return g, false
	}
	return g, true
}

// header is a slot header's content. id names the backend file the chunk
// belongs to (zero: not known, as in slots written before it was
// recorded): recovery writes a chunk only to the file it was buffered for,
// not to another one created at its path since.
type header struct {
	seq  uint64
	off  int64
	id   FileID
	path string
}

// commitWord is the header's first word, read and written atomically (the
// mapping is page-aligned, so the word is aligned).
func commitWord(h []byte) *atomic.Uint32 { return (*atomic.Uint32)(unsafe.Pointer(&h[0])) }

// writeHeader fills a free slot's header and commits it (J1): the commit
// word is stored last, atomically, so that no store before it can move
// after it.
func writeHeader(b []byte, h header) {
	le := binary.LittleEndian
	le.PutUint32(b[4:], uint32(len(h.path)))
	le.PutUint64(b[8:], h.seq)
	le.PutUint64(b[16:], uint64(h.off))
	le.PutUint64(b[24:], h.id.Dev)
	le.PutUint64(b[32:], h.id.Ino)
	le.PutUint64(b[40:], h.id.Birth)
	clear(b[48:hdrFixed])
	copy(b[hdrFixed:], h.path)
	commitWord(b).Store(checksum(b, len(h.path)))
}

// clearHeader marks a slot free.
func clearHeader(b []byte) { commitWord(b).Store(0) }

func checksum(b []byte, pathLen int) uint32 {
	c := crc32.Checksum(b[4:hdrFixed+pathLen], castagnoli)
	if c == 0 {
		c = 1 // 0 means free
	}
	return c
}

// readHeader decodes a slot header; ok is false for a free slot or a torn
// header.
func readHeader(b []byte, chunk int64) (h header, ok bool) {
	le := binary.LittleEndian
	c := commitWord(b).Load()
	n := int(le.Uint32(b[4:]))
	if c == 0 || n > PathMax || c != checksum(b, n) {
		return h, false
	}
	h = header{seq: le.Uint64(b[8:]), off: int64(le.Uint64(b[16:])),
		id:   FileID{Dev: le.Uint64(b[24:]), Ino: le.Uint64(b[32:]), Birth: le.Uint64(b[40:])},
		path: string(b[hdrFixed : hdrFixed+n])}
	if h.off < 0 || h.off%chunk != 0 || n == 0 {
		return h, false
	}
	return h, true
}

// Geometry returns the memory a slot of chunk bytes holds (its
// Footprint), for callers that size a budget before Open.
func Geometry(chunk int64) int64 { return newGeometry(chunk, 1).slot }
