package journal

import (
	"bytes"
	"testing"
)

// FuzzHeaders: a segment header page and a slot header page decode
// without panicking whatever a state directory holds (recovery reads
// files a killed server left, maybe torn or damaged); what decodes as a
// slot header encodes back to the same fields and the same bytes (its
// reserved bytes aside).
func FuzzHeaders(f *testing.F) {
	seg := make([]byte, pageBytes)
	encodeSegHeader(seg, newGeometry(64<<10, 3))
	slot := make([]byte, hdrBytes)
	writeHeader(slot, header{seq: 7, off: 128 << 10, id: FileID{Dev: 1, Ino: 2, Birth: 3}, path: "/data/f"})
	f.Add(seg[:64], slot[:128], int64(64<<10))
	f.Add(make([]byte, 64), make([]byte, 64), int64(4096))
	f.Fuzz(func(t *testing.T, segHead, slotHead []byte, chunk int64) {
		b := make([]byte, pageBytes)
		copy(b, segHead)
		if g, ok := decodeSegHeader(b); ok {
			if g.chunk < pageBytes || g.n <= 0 || g.slot != hdrBytes+g.bitmap+g.chunk {
				t.Fatalf("accepted geometry %+v", g)
			}
		}
		if chunk < pageBytes || chunk > 1<<30 || chunk&(chunk-1) != 0 {
			chunk = 64 << 10
		}
		h := make([]byte, hdrBytes)
		copy(h, slotHead)
		got, ok := readHeader(h, chunk)
		if !ok {
			return
		}
		if got.off < 0 || got.off%chunk != 0 || len(got.path) == 0 || len(got.path) > PathMax {
			t.Fatalf("accepted header %+v", got)
		}
		again := make([]byte, hdrBytes)
		writeHeader(again, got)
		back, ok := readHeader(again, chunk)
		if !ok || back != got || !bytes.Equal(again[4:48], h[4:48]) {
			t.Fatalf("header %+v does not encode back: %+v %v", got, back, ok)
		}
	})
}
