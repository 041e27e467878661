package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"testing"
)

// seedFrames returns encoded frames of every request type, the corpus of
// the frame fuzzers.
func seedFrames() [][]byte {
	var xb Builder
	xb.Add(0, 10)
	xb.Add(20, 10)
	descs := []struct {
		t Type
		d any
		p []byte
	}{
		{THello, &Hello{Client: "c", Servers: 1}, nil},
		{TOpen, &Open{Path: "/a", Flags: ORdwr}, nil},
		{TClose, &Close{File: 1}, nil},
		{TWrite, &Write{File: 1, Ext: xb.Bytes()}, make([]byte, 20)},
		{TRead, &Read{File: 1, Ext: xb.Bytes()}, nil},
		{TResize, &Resize{File: 1, Size: 5}, nil},
		{TCounter, &Counter{File: 1, Key: "k", Op: CounterFetchAdd, Value: 1}, nil},
		{TOpen | ReplyBit, &Reply{Code: EIO, Msg: "x", Size: 3}, nil},
		{TStats, &Stats{Stop: true}, nil},
		{THello, &Hello{Client: "c", Servers: 2, Nonce: make([]byte, AuthNonceSize)}, nil},
		{TAuth, &Auth{Proof: make([]byte, AuthProofSize)}, nil},
		{TAuth | ReplyBit, &Auth{Nonce: make([]byte, AuthNonceSize)}, nil},
		{TCollEnd, &CollEnd{File: 1, CollTag: CollTag{Seq: 3, Rank: 1, Size: 4, Group: 9}}, nil},
		{TWrite, &Write{File: 2, Ext: xb.Bytes(), Flags: IOColl, CollTag: CollTag{Seq: 1, Size: 2}}, make([]byte, 20)},
		{THello | ReplyBit, &Reply{Name: "s", Local: "/tmp/s.sock", Host: "boot/net:1"}, nil},
	}
	var out [][]byte
	for i, m := range descs {
		e := NewEncoder(Compression{MinBytes: 1, MinSavingsPct: 0})
		if i%2 == 0 {
			e.Policy = Compression{}
		}
		_ = e.Append(m.t, uint32(i), m.d, m.p)
		out = append(out, append([]byte(nil), e.Bytes()...))
	}
	return out
}

// FuzzReader feeds arbitrary bytes to the frame reader (header,
// description, lz4, payload) and decodes every description as each message
// type. Nothing may panic or hang; what decodes must re-encode; a payload
// read whole is exactly as long as its header said; a request skipped for
// its description's size (ErrSkipped) leaves its payload to skip and the
// reader goes on to the next frame (review: the fuzzer stopped there).
func FuzzReader(f *testing.F) {
	for _, s := range seedFrames() {
		f.Add(s)
	}
	e := NewEncoder(Compression{MinBytes: 1})
	_ = e.Append(TWrite, 1, &Write{File: 1, Ext: make([]byte, MaxRequestDesc+1)}, []byte("skip"))
	_ = e.Append(TStat, 2, &FileOp{File: 3})
	f.Add(append([]byte(nil), e.Bytes()...))
	f.Fuzz(func(t *testing.T, b []byte) {
		r := NewReader(bytes.NewReader(b), 256)
		for i := 0; i < 16; i++ {
			h, err := r.Next()
			if errors.Is(err, ErrSkipped) {
				if h.Type.IsReply() || r.PayloadLeft() != int64(h.PayloadLen) || CodeOf(err) != EPROTO {
					t.Fatalf("skipped %+v: %d payload left, %v", h, r.PayloadLeft(), err)
				}
				continue
			}
			if err != nil {
				return
			}
			v := newDesc(h.Type)
			if err := r.Decode(v); err != nil {
				continue
			}
			e := NewEncoder(Compression{})
			if err := e.Append(h.Type, h.ID, v); err != nil {
				t.Fatalf("re-encode %v: %v", h.Type, err)
			}
			if w, ok := v.(*Write); ok {
				_, _ = ExtentsTotal(w.Ext, MaxPayload)
			}
			if i%2 == 1 {
				continue // leave the payload to Next, which skips it
			}
			p, err := r.ReadPayloadAll()
			if err != nil {
				return
			}
			if len(p) != int(h.PayloadLen) || r.PayloadLeft() != 0 {
				t.Fatalf("payload of %d bytes read as %d, %d left", h.PayloadLen, len(p), r.PayloadLeft())
			}
		}
	})
}

// FuzzDecompress decodes arbitrary compressed descriptions, into a fresh
// buffer and into a used one. Whatever decodes has the announced length.
func FuzzDecompress(f *testing.F) {
	f.Add([]byte{0x00, 0x10, 'x'})
	f.Add([]byte{0x04, 0x40, 'a', 'b', 'c', 'd'})
	f.Add([]byte{0x80, 0x80, 0x80, 0x20, 0x10, 'x'})
	f.Fuzz(func(t *testing.T, z []byte) {
		for _, buf := range [][]byte{nil, make([]byte, 0, 64)} {
			raw, err := decompress(z, buf)
			if err != nil {
				continue
			}
			if n, _ := binary.Uvarint(z); uint64(len(raw)) != n || n == 0 {
				t.Fatalf("decoded %d bytes, the description announced %d", len(raw), n)
			}
		}
	})
}

// FuzzUnmarshal decodes arbitrary msgpack as the description of each
// message type; what decodes must re-encode and decode again.
func FuzzUnmarshal(f *testing.F) {
	for _, s := range seedFrames() {
		h, err := ParseHeader(s)
		if err == nil && h.Flags == 0 {
			f.Add(uint8(h.Type), s[HeaderSize:HeaderSize+int(h.DescLen)])
		}
	}
	f.Fuzz(func(t *testing.T, typ uint8, b []byte) {
		v := newDesc(Type(typ))
		if err := Unmarshal(b, v); err != nil {
			return
		}
		out, err := Marshal(v)
		if err != nil {
			t.Fatalf("re-encode %T: %v", v, err)
		}
		if err := Unmarshal(out, newDesc(Type(typ))); err != nil {
			t.Fatalf("decode of a re-encoded %T: %v", v, err)
		}
	})
}

// newDesc returns a fresh description value for a frame type.
func newDesc(t Type) any {
	if t == TAuth|ReplyBit {
		return &Auth{}
	}
	if t.IsReply() {
		return &Reply{}
	}
	switch t {
	case THello:
		return &Hello{}
	case TOpen:
		return &Open{}
	case TClose:
		return &Close{}
	case TWrite:
		return &Write{}
	case TRead:
		return &Read{}
	case TResize, TAlloc:
		return &Resize{}
	case TDelete:
		return &Delete{}
	case TCounter:
		return &Counter{}
	case TStats:
		return &Stats{}
	case TAuth:
		return &Auth{}
	case TCollEnd:
		return &CollEnd{}
	}
	return &FileOp{}
}

// FuzzExtents decodes arbitrary extent lists under a limit; whatever
// decodes must lie in range, respect the limit, and survive a rebuild.
func FuzzExtents(f *testing.F) {
	var b Builder
	for i := int64(0); i < 10; i++ {
		b.Add(i*100, 10)
	}
	b.Add(5, 1)
	f.Add(b.Bytes(), int64(1000))
	f.Add([]byte{0x05, 0x00, 0x01, 0x02}, int64(math.MaxInt64))
	f.Fuzz(func(t *testing.T, enc []byte, limit int64) {
		// Real limits are the data that comes with a request (<= 64 MiB);
		// keep the fuzzer's loops short the same way.
		if limit < 0 || limit > 1<<20 {
			limit = 1 << 20
		}
		var rb Builder
		var total int64
		it := NewExtentIter(enc, limit)
		for off, n, ok := it.Next(); ok; off, n, ok = it.Next() {
			if off < 0 || n <= 0 || !CheckExtent(off, n) {
				t.Fatalf("bad extent %d+%d", off, n)
			}
			total += n
			if total > limit {
				t.Fatalf("total %d over limit %d", total, limit)
			}
			rb.Add(off, n)
		}
		// The validated form accepts exactly what the decoding iterator
		// accepts, and yields the same extents.
		x, perr := ParseExtents(enc, limit)
		if (perr == nil) != (it.Err() == nil) {
			t.Fatalf("ParseExtents: %v; iterator: %v", perr, it.Err())
		}
		if it.Err() != nil {
			if CodeOf(perr) != EPROTO {
				t.Fatalf("ParseExtents error %v, want EPROTO", perr)
			}
			return
		}
		if x.Total() != total {
			t.Fatalf("ParseExtents total %d, iterator %d", x.Total(), total)
		}
		var vb Builder
		vi := x.Iter()
		for off, n, ok := vi.Next(); ok; off, n, ok = vi.Next() {
			vb.Add(off, n)
		}
		if vi.Err() != nil || vb.Total() != total || vb.Pieces() != x.Count() || !bytes.Equal(vb.Bytes(), rb.Bytes()) {
			t.Fatalf("validated iteration differs: %d bytes in %d pieces (count %d), want %d", vb.Total(), vb.Pieces(), x.Count(), total)
		}
		// The Builder may take more runs than the input did (an extent
		// that joins the previous run, then a run of the rest): past
		// MaxRequestRuns the rebuild is refused.
		if got, err := ExtentsTotal(rb.Bytes(), limit); rb.Runs() <= MaxRequestRuns && (err != nil || got != total) {
			t.Fatalf("rebuild: %d %v, want %d", got, err, total)
		} else if rb.Runs() > MaxRequestRuns && CodeOf(err) != EPROTO {
			t.Fatalf("rebuild of %d runs: %v, want EPROTO", rb.Runs(), err)
		}
	})
}

// FuzzParseHeader checks that header parsing never panics and that what it
// accepts re-encodes to the same bytes.
func FuzzParseHeader(f *testing.F) {
	for _, s := range seedFrames() {
		f.Add(s[:HeaderSize])
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := ParseHeader(b)
		if err != nil {
			return
		}
		out := make([]byte, HeaderSize)
		h.Put(out)
		if !bytes.Equal(out, b[:HeaderSize]) {
			t.Fatalf("re-encoded %x, want %x", out, b[:HeaderSize])
		}
	})
}
