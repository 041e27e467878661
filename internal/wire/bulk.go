package wire

import (
	"encoding/binary"
)

// Bulk connections (spec.md, "Bulk connections") carry the data of large
// writes and reads across hosts, apart from the yamux control session.
// Every transfer on one starts with this fixed header:
//
//	0  u16 magic 0x4442 (bytes 0x42 0x44)
//	2  u8  version (1)
//	3  u8  kind (BulkBind, BulkWrite, BulkRead)
//	4  u32 connection index within the session
//	8  u64 sequence number (BulkBind: the session's bulk id)
//	16 u64 length of the bytes that follow
//
// All integers are little-endian; the first byte (0x42) can never start a
// control frame (whose first byte is Version), so a server tells a bulk
// connection from a session by it.
const BulkHeaderSize = 24

// BulkMagic opens every bulk header.
const BulkMagic = 0x4442

// BulkTagSize is the length of the binding tag that follows a BulkBind
// header (transport.BulkTag).
const BulkTagSize = 32

// MaxBulkConns bounds the bulk connections of one session.
const MaxBulkConns = 16

// BulkKind says what a bulk header introduces.
type BulkKind uint8

const (
	// BulkBind is the first header on a new bulk connection, client to
	// server: Seq is the session's bulk id (from the hello reply), Index
	// the connection's index, and BulkTagSize bytes of tag follow. The
	// server answers with a BulkBind header of length 0 once the
	// connection is bound, or closes it.
	BulkBind BulkKind = 1
	// BulkWrite precedes the data of a write, client to server; Seq and
	// Len equal the write description's BulkSeq and BulkLen.
	BulkWrite BulkKind = 2
	// BulkRead precedes the data of a read, server to client: Len is at
	// most the read's BulkLen: the bytes from the start of its extents
	// that lie below the server's end of file (the reply's N), 0 when the
	// read failed (its reply says why).
	BulkRead  BulkKind = 3
	bulkKinds BulkKind = 4
)

// BulkHeader is the decoded fixed header of a bulk transfer.
type BulkHeader struct {
	Kind  BulkKind
	Index uint32
	Seq   uint64
	Len   uint64
}

// Put writes h into b[:BulkHeaderSize].
func (h *BulkHeader) Put(b []byte) {
	_ = b[BulkHeaderSize-1]
	binary.LittleEndian.PutUint16(b[0:], BulkMagic)
	b[2] = Version
	b[3] = byte(h.Kind)
	binary.LittleEndian.PutUint32(b[4:], h.Index)
	binary.LittleEndian.PutUint64(b[8:], h.Seq)
	binary.LittleEndian.PutUint64(b[16:], h.Len)
}

// IsBulk reports whether a connection whose first byte is b is a bulk
// connection rather than a control session.
func IsBulk(b byte) bool { return b == byte(BulkMagic&0xff) }

// ParseBulkHeader decodes and checks a bulk header: magic, version, kind,
// index below MaxBulkConns, and a length within MaxPayload (BulkTagSize
// for BulkBind).
func ParseBulkHeader(b []byte) (BulkHeader, error) {
	if len(b) < BulkHeaderSize {
		return BulkHeader{}, Errorf(EPROTO, "short bulk header (%d bytes)", len(b))
	}
	if m := binary.LittleEndian.Uint16(b); m != BulkMagic {
		return BulkHeader{}, Errorf(EPROTO, "bulk header magic %#04x, want %#04x", m, BulkMagic)
	}
	if b[2] != Version {
		return BulkHeader{}, Errorf(EPROTO, "bulk protocol version %d, want %d", b[2], Version)
	}
	h := BulkHeader{
		Kind:  BulkKind(b[3]),
		Index: binary.LittleEndian.Uint32(b[4:]),
		Seq:   binary.LittleEndian.Uint64(b[8:]),
		Len:   binary.LittleEndian.Uint64(b[16:]),
	}
	switch {
	case h.Kind == 0 || h.Kind >= bulkKinds:
		return h, Errorf(EPROTO, "unknown bulk kind %d", b[3])
	case h.Index >= MaxBulkConns:
		return h, Errorf(EPROTO, "bulk connection index %d, at most %d connections", h.Index, MaxBulkConns)
	case h.Kind == BulkBind && h.Len != BulkTagSize && h.Len != 0:
		return h, Errorf(EPROTO, "bulk bind with %d bytes of tag, want %d", h.Len, BulkTagSize)
	case h.Len > MaxPayload:
		return h, Errorf(EPROTO, "bulk transfer of %d bytes exceeds %d", h.Len, MaxPayload)
	}
	return h, nil
}
