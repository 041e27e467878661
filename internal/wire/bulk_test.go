package wire

import (
	"bytes"
	"encoding/binary"
	"testing"
)

func bulkBytes(h BulkHeader) []byte {
	b := make([]byte, BulkHeaderSize)
	h.Put(b)
	return b
}

func TestBulkHeader(t *testing.T) {
	tests := []struct {
		name string
		b    []byte
		ok   bool
	}{
		{"write", bulkBytes(BulkHeader{Kind: BulkWrite, Index: 3, Seq: 7, Len: 4 << 20}), true},
		{"read failed", bulkBytes(BulkHeader{Kind: BulkRead, Index: 0, Seq: 1, Len: 0}), true},
		{"bind", bulkBytes(BulkHeader{Kind: BulkBind, Index: 1, Seq: 99, Len: BulkTagSize}), true},
		{"bind ack", bulkBytes(BulkHeader{Kind: BulkBind, Index: 1, Seq: 99}), true},
		{"max payload", bulkBytes(BulkHeader{Kind: BulkWrite, Len: MaxPayload}), true},
		{"over max payload", bulkBytes(BulkHeader{Kind: BulkWrite, Len: MaxPayload + 1}), false},
		{"huge length", bulkBytes(BulkHeader{Kind: BulkRead, Len: 1 << 63}), false},
		{"bind with odd tag", bulkBytes(BulkHeader{Kind: BulkBind, Len: 31}), false},
		{"kind 0", bulkBytes(BulkHeader{Kind: 0}), false},
		{"kind 4", bulkBytes(BulkHeader{Kind: 4}), false},
		{"index too large", bulkBytes(BulkHeader{Kind: BulkWrite, Index: MaxBulkConns}), false},
		{"short", bulkBytes(BulkHeader{Kind: BulkWrite})[:BulkHeaderSize-1], false},
		{"control frame", func() []byte {
			b := make([]byte, BulkHeaderSize)
			(&Header{Type: TWrite}).Put(b)
			return b
		}(), false},
		{"bad version", func() []byte {
			b := bulkBytes(BulkHeader{Kind: BulkWrite})
			b[2] = Version + 1
			return b
		}(), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h, err := ParseBulkHeader(tc.b)
			if (err == nil) != tc.ok {
				t.Fatalf("ParseBulkHeader: err %v, want ok %v", err, tc.ok)
			}
			if err != nil {
				if CodeOf(err) != EPROTO {
					t.Fatalf("code %v, want EPROTO", CodeOf(err))
				}
				return
			}
			if !bytes.Equal(bulkBytes(h), tc.b[:BulkHeaderSize]) {
				t.Fatalf("re-encoded %x, want %x", bulkBytes(h), tc.b)
			}
		})
	}
	// The first byte tells a bulk connection from a control session.
	var fb [HeaderSize]byte
	(&Header{Type: THello}).Put(fb[:])
	if IsBulk(fb[0]) || !IsBulk(bulkBytes(BulkHeader{Kind: BulkBind})[0]) {
		t.Fatal("IsBulk does not tell a bulk header from a hello frame")
	}
}

// FuzzBulkHeader checks that bulk header parsing never panics, that what it
// accepts re-encodes to the same bytes, and that an accepted length is
// within the limits a receiver allocates for.
func FuzzBulkHeader(f *testing.F) {
	f.Add(bulkBytes(BulkHeader{Kind: BulkWrite, Index: 1, Seq: 2, Len: 3}))
	f.Add(bulkBytes(BulkHeader{Kind: BulkBind, Seq: 5, Len: BulkTagSize}))
	f.Add(bulkBytes(BulkHeader{Kind: BulkRead, Len: MaxPayload + 1}))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := ParseBulkHeader(b)
		if err != nil {
			return
		}
		if h.Len > MaxPayload || h.Index >= MaxBulkConns || binary.LittleEndian.Uint16(b) != BulkMagic {
			t.Fatalf("accepted %+v", h)
		}
		if out := bulkBytes(h); !bytes.Equal(out, b[:BulkHeaderSize]) {
			t.Fatalf("re-encoded %x, want %x", out, b[:BulkHeaderSize])
		}
	})
}
