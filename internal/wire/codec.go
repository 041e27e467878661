package wire

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/hashicorp/go-msgpack/v2/codec"
	"github.com/pierrec/lz4/v4"
)

// mh is the one msgpack handle. Configured here and never modified: the
// handle is safe for concurrent reads, not for modification (codec/doc.go).
var mh = func() *codec.MsgpackHandle {
	h := &codec.MsgpackHandle{}
	h.WriteExt = true // str and bin stay distinct
	h.RawToString = true
	return h
}()

// Compression decides when a description is sent lz4-compressed. DESIGN.md
// §4: on one host lz4 never pays for 10-20 KB messages; across hosts it pays
// for large descriptions that it at least halves. Zero values disable it.
type Compression struct {
	MinBytes      int // try only descriptions at least this large; 0: never
	MinSavingsPct int // send compressed only if it saves this much
}

// Counters are running byte counts of one Encoder or Reader, for stats.
type Counters struct {
	Frames    int64
	DescRaw   int64 // description bytes before compression
	DescWire  int64 // description bytes as sent or received
	Payload   int64 // inline payload bytes
	Compressd int64 // frames whose description was compressed
}

// Encoder appends frames to a buffer that the caller writes out in one call.
// Not safe for concurrent use; each stream writer owns one.
type Encoder struct {
	buf     []byte
	scratch []byte
	zbuf    []byte
	lz      lz4.Compressor
	enc     *codec.Encoder
	Policy  Compression
	Counts  Counters
}

// NewEncoder returns an Encoder with the given compression policy.
func NewEncoder(p Compression) *Encoder {
	e := &Encoder{Policy: p}
	e.enc = codec.NewEncoderBytes(&e.scratch, mh)
	return e
}

// Append adds a frame: the header, the description desc, and the inline
// payload pieces (copied).
func (e *Encoder) Append(t Type, id uint32, desc any, payload ...[]byte) error {
	n := 0
	for _, p := range payload {
		n += len(p)
	}
	if err := e.Begin(t, id, desc, n); err != nil {
		return err
	}
	for _, p := range payload {
		e.buf = append(e.buf, p...)
	}
	return nil
}

// Begin adds a header and description announcing payloadLen payload bytes,
// which the caller must append next with AppendPayload or write right after
// the buffered frames.
func (e *Encoder) Begin(t Type, id uint32, desc any, payloadLen int) error {
	if payloadLen < 0 || payloadLen > MaxPayload {
		return Errorf(EINVAL, "payload of %d bytes exceeds %d", payloadLen, MaxPayload)
	}
	e.scratch = e.scratch[:0]
	e.enc.ResetBytes(&e.scratch)
	if err := e.enc.Encode(desc); err != nil {
		return fmt.Errorf("wire: encode %v: %w", t, err)
	}
	body, flags := e.scratch, Flags(0)
	if len(body) > MaxDesc {
		return Errorf(EINVAL, "description of %d bytes exceeds %d", len(body), MaxDesc)
	}
	if p := e.Policy; p.MinBytes > 0 && len(body) >= p.MinBytes {
		if z := e.compress(body); z != nil {
			body, flags = z, FlagLZ4
			e.Counts.Compressd++
		}
	}
	var hb [HeaderSize]byte
	h := Header{Type: t, Flags: flags, ID: id, DescLen: uint32(len(body)), PayloadLen: uint32(payloadLen)}
	h.Put(hb[:])
	e.buf = append(e.buf, hb[:]...)
	e.buf = append(e.buf, body...)
	e.Counts.Frames++
	e.Counts.DescRaw += int64(len(e.scratch))
	e.Counts.DescWire += int64(len(body))
	e.Counts.Payload += int64(payloadLen)
	return nil
}

// compress returns the lz4 form of body, or nil when it does not save
// Policy.MinSavingsPct percent. lz4 can return more than it was given:
// those are sent raw.
func (e *Encoder) compress(body []byte) []byte {
	bound := lz4.CompressBlockBound(len(body)) + binary.MaxVarintLen64
	if cap(e.zbuf) < bound {
		e.zbuf = make([]byte, bound)
	}
	z := e.zbuf[:bound]
	k := binary.PutUvarint(z, uint64(len(body)))
	n, err := e.lz.CompressBlock(body, z[k:])
	if err != nil || n == 0 {
		return nil
	}
	if (k+n)*100 > len(body)*(100-e.Policy.MinSavingsPct) {
		return nil
	}
	return z[:k+n]
}

// AppendPayload appends raw payload bytes after the frame begun last.
func (e *Encoder) AppendPayload(p []byte) { e.buf = append(e.buf, p...) }

// Bytes returns the frames appended since the last Reset.
func (e *Encoder) Bytes() []byte { return e.buf }

// Len returns the number of buffered bytes.
func (e *Encoder) Len() int { return len(e.buf) }

// Reset empties the buffer, keeping its memory (large buffers are dropped
// so that one burst does not pin memory for ever).
func (e *Encoder) Reset() {
	if cap(e.buf) > 4<<20 {
		e.buf = nil
	}
	e.buf = e.buf[:0]
}

// Reader reads frames from a stream. Not safe for concurrent use; each
// stream reader owns one.
type Reader struct {
	br      *bufio.Reader
	hb      [HeaderSize]byte
	desc    []byte
	raw     []byte
	body    []byte
	dec     *codec.Decoder
	h       Header
	payload int64 // payload bytes of the current frame not yet consumed
	Counts  Counters
}

// NewReader returns a Reader over r with a read buffer of size bytes.
func NewReader(r io.Reader, size int) *Reader {
	return &Reader{br: bufio.NewReaderSize(r, size), dec: codec.NewDecoderBytes(nil, mh)}
}

// Frame bodies are read in steps of at most readStep bytes into a buffer
// that starts at growStart bytes and doubles as the bytes arrive, so a
// header that announces 64 MiB and sends nothing costs growStart, not 64
// MiB. Buffers above keepBytes are not kept between frames, so that one
// large frame does not pin its memory for the life of the stream.
const (
	readStep  = 1 << 20
	growStart = 64 << 10
	keepBytes = 4 << 20
)

// readGrow reads exactly n bytes from rd into buf's memory (reallocating
// as the bytes arrive, never ahead of them) and returns the filled slice.
func readGrow(rd io.Reader, buf []byte, n int) ([]byte, error) {
	buf = buf[:0]
	for len(buf) < n {
		step := min(n-len(buf), readStep)
		if cap(buf)-len(buf) < step {
			c := min(n, max(2*cap(buf), growStart, len(buf)+step))
			nb := make([]byte, len(buf), c)
			copy(nb, buf)
			buf = nb
		}
		k, err := io.ReadFull(rd, buf[len(buf):len(buf)+step])
		buf = buf[:len(buf)+k]
		if err != nil {
			return buf, err
		}
	}
	return buf, nil
}

// Next reads the next frame's header and description. Any payload of the
// previous frame that the caller did not consume is skipped. A clean end of
// stream before a header returns io.EOF.
func (r *Reader) Next() (Header, error) {
	if r.payload > 0 {
		if _, err := r.br.Discard(int(r.payload)); err != nil {
			return Header{}, r.truncated(err)
		}
		r.payload = 0
	}
	if cap(r.desc) > keepBytes {
		r.desc = nil
	}
	if cap(r.raw) > keepBytes {
		r.raw = nil
	}
	r.body = nil
	if _, err := io.ReadFull(r.br, r.hb[:]); err != nil {
		if errors.Is(err, io.EOF) {
			return Header{}, io.EOF
		}
		return Header{}, r.truncated(err)
	}
	h, err := ParseHeader(r.hb[:])
	if err != nil {
		return h, err
	}
	limit := descLimit(h.Type)
	if int(h.DescLen) > limit {
		// A request's description over MaxRequestDesc is skipped unread,
		// with its payload: the stream can go on.
		if _, err := r.br.Discard(int(h.DescLen)); err != nil {
			return h, r.truncated(err)
		}
		r.payload = int64(h.PayloadLen)
		return h, Errorf(EPROTO, "%v request's description of %d bytes exceeds %d (wire.MaxRequestDesc): %w",
			h.Type, h.DescLen, limit, ErrSkipped)
	}
	// ParseHeader bounded DescLen; the buffer grows only as bytes arrive.
	if r.desc, err = readGrow(r.br, r.desc, int(h.DescLen)); err != nil {
		return h, r.truncated(err)
	}
	r.body = r.desc
	if h.Flags&FlagLZ4 != 0 {
		if r.body, err = r.decompress(r.desc, h.Type, limit); err != nil {
			r.body = nil
			if errors.Is(err, ErrSkipped) {
				r.payload = int64(h.PayloadLen) // the whole frame is skipped
			}
			return h, err
		}
	}
	r.h = h
	r.payload = int64(h.PayloadLen)
	r.Counts.Frames++
	r.Counts.DescWire += int64(h.DescLen)
	r.Counts.DescRaw += int64(len(r.body))
	r.Counts.Payload += int64(h.PayloadLen)
	if h.Flags&FlagLZ4 != 0 {
		r.Counts.Compressd++
	}
	return h, nil
}

// ErrSkipped is in the chain of Next's error for a frame it refused and
// skipped whole (a request's description over MaxRequestDesc): the next
// frame can be read.
var ErrSkipped = errors.New("frame skipped")

// descLimit is the most description bytes a frame of type t may carry,
// after decompression: MaxRequestDesc for a request, MaxDesc for a reply.
func descLimit(t Type) int {
	if t.IsReply() {
		return MaxDesc
	}
	return MaxRequestDesc
}

func (r *Reader) truncated(err error) error {
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return Errorf(EPROTO, "truncated frame: %w", err)
	}
	return err
}

// maxLZ4Ratio bounds how much one lz4 block can expand: a sequence of a
// few bytes stands for at most 255 output bytes per length byte.
const maxLZ4Ratio = 255

func (r *Reader) decompress(z []byte, t Type, limit int) ([]byte, error) {
	if n, k := binary.Uvarint(z); k > 0 && n > uint64(limit) && n <= MaxDesc {
		return nil, Errorf(EPROTO, "%v request's compressed description of %d bytes exceeds %d (wire.MaxRequestDesc): %w",
			t, n, limit, ErrSkipped)
	}
	raw, err := decompress(z, r.raw)
	if err != nil {
		return nil, err
	}
	r.raw = raw
	return raw, nil
}

// decompress decodes a compressed description (a uvarint of the
// uncompressed length, then one lz4 block) into buf's memory, growing it if
// needed. Every length is checked before lz4 sees it: the announced length
// must be at least 1 (lz4 handed an empty destination faults, issue 9), at
// most MaxDesc, and no more than the block's size can expand to, so a few
// bytes cannot make the receiver allocate 64 MiB.
func decompress(z []byte, buf []byte) ([]byte, error) {
	n, k := binary.Uvarint(z)
	switch {
	case k <= 0:
		return nil, Errorf(EPROTO, "bad compressed description length")
	case n == 0:
		return nil, Errorf(EPROTO, "compressed description announces 0 bytes")
	case n > MaxDesc:
		return nil, Errorf(EPROTO, "compressed description of %d bytes exceeds %d", n, MaxDesc)
	case len(z) == k:
		return nil, Errorf(EPROTO, "compressed description has no lz4 block")
	case n > uint64(len(z)-k)*maxLZ4Ratio:
		return nil, Errorf(EPROTO, "compressed description: %d bytes cannot expand to %d", len(z)-k, n)
	}
	if cap(buf) < int(n) {
		buf = make([]byte, n)
	}
	raw := buf[:n]
	m, err := lz4.UncompressBlock(z[k:], raw)
	if err != nil || m != int(n) {
		return nil, Errorf(EPROTO, "bad compressed description")
	}
	return raw, nil
}

// Decode decodes the current frame's description into v.
func (r *Reader) Decode(v any) error {
	return DecodeDesc(r.dec, r.body, v)
}

// DecodeDesc decodes one description with dec (reset onto body).
func DecodeDesc(dec *codec.Decoder, body []byte, v any) error {
	dec.ResetBytes(body)
	if err := dec.Decode(v); err != nil {
		return Errorf(EPROTO, "bad description: %w", err)
	}
	return nil
}

// Marshal encodes v with the protocol's msgpack handle, for values that
// travel as payload (the stats snapshot).
func Marshal(v any) ([]byte, error) {
	var b []byte
	err := codec.NewEncoderBytes(&b, mh).Encode(v)
	return b, err
}

// Unmarshal decodes one description; for one-off frames such as the hello.
func Unmarshal(body []byte, v any) error {
	return DecodeDesc(codec.NewDecoderBytes(nil, mh), body, v)
}

// Desc returns the current frame's raw (decompressed) description. It is
// valid until the next call to Next.
func (r *Reader) Desc() []byte { return r.body }

// PayloadLeft returns the payload bytes of the current frame not yet read.
func (r *Reader) PayloadLeft() int64 { return r.payload }

// ReadPayload reads exactly len(p) bytes of the current frame's payload.
func (r *Reader) ReadPayload(p []byte) error {
	if int64(len(p)) > r.payload {
		return Errorf(EPROTO, "payload shorter than its description says (%d < %d)", r.payload, len(p))
	}
	n, err := io.ReadFull(r.br, p)
	r.payload -= int64(n)
	if err != nil {
		return r.truncated(err)
	}
	return nil
}

// ReadPayloadAll reads the rest of the current frame's payload into a new
// buffer that grows as the bytes arrive, so a frame that announces more
// than it sends costs no more memory than what it sent.
func (r *Reader) ReadPayloadAll() ([]byte, error) {
	if r.payload == 0 {
		return nil, nil
	}
	p, err := readGrow(r.br, nil, int(r.payload))
	r.payload -= int64(len(p))
	if err != nil {
		return nil, r.truncated(err)
	}
	return p, nil
}

// Buffered returns the bytes already read from the stream and not yet
// consumed; a writer can hold replies while more requests are buffered.
func (r *Reader) Buffered() int { return r.br.Buffered() }
