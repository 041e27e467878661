package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Version is the protocol version carried in every frame header.
const Version = 4

// HeaderSize is the size of the fixed frame header.
const HeaderSize = 16

// Limits on one frame. A peer that announces more is broken or hostile.
const (
	MaxDesc    = 64 << 20 // description bytes, before and after decompression
	MaxPayload = 64 << 20 // inline payload bytes
)

// MaxInline bounds the inline payload of a request frame: clients cut
// larger data into more requests (or send it in a ring slot or on a bulk
// connection), and a server answers a request that carries more with
// EPROTO, skipping the payload. It is what a server's stream reads ahead
// of its worker (README, Memory). Replies may carry up to MaxPayload (a
// read's result: the client's memory).
const MaxInline = 1 << 20

// MaxRequestDesc bounds a request's description, after decompression, and
// MaxRequestRuns the runs of a request's extent list (Extents.Parse): what
// a server holds of one queued request's description is at most
// MaxRequestDesc bytes and MaxRequestRuns runs (README, Memory in transit).
// Clients cut an extent list into requests of at most MaxRequestRuns runs;
// a run encodes in at most MaxRunBytes, so such a request's description
// (160 KiB of runs at most, and a few fields) stays under MaxRequestDesc.
// A server answers a request over either with EPROTO (a description over
// MaxRequestDesc is skipped unread with its payload, Reader.Next: the
// stream goes on). Replies may carry descriptions of up to MaxDesc.
const (
	MaxRequestDesc = 256 << 10
	MaxRequestRuns = 4 << 10
	MaxRunBytes    = 4 * binary.MaxVarintLen64 // four varints
)

// Type is a message type. A reply has the type of its request with ReplyBit set.
type Type uint8

// ReplyBit marks the reply to a request type.
const ReplyBit Type = 0x80

// Request types. The numbers are part of the protocol: append, never renumber.
const (
	THello   Type = 1  // Hello -> Reply; first frame on a connection, before yamux
	TOpen    Type = 2  // Open -> Reply{File, Size}
	TClose   Type = 3  // Close -> Reply
	TWrite   Type = 4  // Write (+ payload or ring slot) -> Reply{N}
	TRead    Type = 5  // Read -> Reply{N, Size} (+ payload or ring slot)
	TStat    Type = 6  // Stat -> Reply{Size}
	TResize  Type = 7  // Resize -> Reply
	TSync    Type = 8  // Sync -> Reply
	TFlush   Type = 9  // Flush -> Reply
	TDelete  Type = 10 // Delete -> Reply
	TCounter Type = 11 // Counter -> Reply{Value}
	TStats   Type = 12 // Stats -> Reply + payload (msgpack stats snapshot)
	TAlloc   Type = 13 // Alloc -> Reply{Size}
	TCollEnd Type = 14 // CollEnd -> Reply, once every rank's marker arrived
	TAuth    Type = 15 // handshake only, before yamux: Auth challenge (reply) and answer (request)
	numTypes Type = 16
)

var typeNames = [numTypes]string{
	THello: "hello", TOpen: "open", TClose: "close", TWrite: "write", TRead: "read",
	TStat: "stat", TResize: "resize", TSync: "sync", TFlush: "flush", TDelete: "delete",
	TCounter: "counter", TStats: "stats", TAlloc: "alloc", TCollEnd: "collend", TAuth: "auth",
}

// Request returns the request type of t (t itself for a request).
func (t Type) Request() Type { return t &^ ReplyBit }

// IsReply reports whether t is a reply type.
func (t Type) IsReply() bool { return t&ReplyBit != 0 }

// Valid reports whether t is a known request or reply type.
func (t Type) Valid() bool { r := t.Request(); return r > 0 && r < numTypes }

func (t Type) String() string {
	if !t.Valid() {
		return fmt.Sprintf("type(%d)", uint8(t))
	}
	if t.IsReply() {
		return typeNames[t.Request()] + "-reply"
	}
	return typeNames[t]
}

// NumTypes is one past the largest request type, for tables indexed by type.
const NumTypes = int(numTypes)

// Flags qualify a frame.
type Flags uint16

const (
	// FlagLZ4 says the description is an lz4 block preceded by its
	// uncompressed length as a uvarint.
	FlagLZ4    Flags = 1 << iota
	knownFlags       = FlagLZ4
)

// Header is the fixed part of a frame:
//
//	0  u8  version
//	1  u8  type
//	2  u16 flags
//	4  u32 request id (echoed in the reply)
//	8  u32 description length (as sent)
//	12 u32 payload length (raw bytes after the description)
//
// All integers are little-endian.
type Header struct {
	Type       Type
	Flags      Flags
	ID         uint32
	DescLen    uint32
	PayloadLen uint32
}

// Put writes h into b[:HeaderSize].
func (h *Header) Put(b []byte) {
	_ = b[HeaderSize-1]
	b[0] = Version
	b[1] = byte(h.Type)
	binary.LittleEndian.PutUint16(b[2:], uint16(h.Flags))
	binary.LittleEndian.PutUint32(b[4:], h.ID)
	binary.LittleEndian.PutUint32(b[8:], h.DescLen)
	binary.LittleEndian.PutUint32(b[12:], h.PayloadLen)
}

// ErrVersion is in the chain of ParseHeader's error for a frame of
// another protocol version.
var ErrVersion = errors.New("client and servers must come from the same build")

// ParseHeader decodes and checks a header.
func ParseHeader(b []byte) (Header, error) {
	if len(b) < HeaderSize {
		return Header{}, Errorf(EPROTO, "short frame header (%d bytes)", len(b))
	}
	if b[0] != Version {
		return Header{}, Errorf(EPROTO, "protocol version %d, want %d: %w", b[0], Version, ErrVersion)
	}
	h := Header{
		Type:       Type(b[1]),
		Flags:      Flags(binary.LittleEndian.Uint16(b[2:])),
		ID:         binary.LittleEndian.Uint32(b[4:]),
		DescLen:    binary.LittleEndian.Uint32(b[8:]),
		PayloadLen: binary.LittleEndian.Uint32(b[12:]),
	}
	switch {
	case !h.Type.Valid():
		return h, Errorf(EPROTO, "unknown message type %d", b[1])
	case h.Flags&^knownFlags != 0:
		return h, Errorf(EPROTO, "unknown frame flags %#x", uint16(h.Flags))
	case h.DescLen > MaxDesc:
		return h, Errorf(EPROTO, "description of %d bytes exceeds %d", h.DescLen, MaxDesc)
	case h.PayloadLen > MaxPayload:
		return h, Errorf(EPROTO, "payload of %d bytes exceeds %d", h.PayloadLen, MaxPayload)
	case h.Flags&FlagLZ4 != 0 && h.DescLen < 2:
		return h, Errorf(EPROTO, "compressed description of %d bytes (a length and a block take at least 2)", h.DescLen)
	}
	return h, nil
}

// A request of MaxRequestRuns runs, each encoded at its largest, and its
// other fields fits under MaxRequestDesc (clients rely on it).
var _ = [1]struct{}{}[MaxRequestRuns*MaxRunBytes/(MaxRequestDesc-4<<10)]
