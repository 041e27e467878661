package wire

import (
	"bytes"
	"encoding/binary"
	"io"
	"runtime"
	"testing"

	"github.com/pierrec/lz4/v4"
)

// rawFrame builds a frame by hand, lengths and all, so that it can lie.
func rawFrame(t Type, fl Flags, descLen, payloadLen uint32, body ...[]byte) []byte {
	b := make([]byte, HeaderSize)
	(&Header{Type: t, Flags: fl, ID: 7, DescLen: descLen, PayloadLen: payloadLen}).Put(b)
	for _, p := range body {
		b = append(b, p...)
	}
	return b
}

// lz4Desc returns a compressed description that announces n bytes and
// carries block.
func lz4Desc(n uint64, block []byte) []byte {
	return append(binary.AppendUvarint(nil, n), block...)
}

// lz4Frame is an open frame whose compressed description announces n bytes
// and carries block.
func lz4Frame(n uint64, block []byte) []byte {
	d := lz4Desc(n, block)
	return rawFrame(TOpen, FlagLZ4, uint32(len(d)), 0, d)
}

func lz4Block(t *testing.T, raw []byte) []byte {
	t.Helper()
	z := make([]byte, lz4.CompressBlockBound(len(raw)))
	var c lz4.Compressor
	n, err := c.CompressBlock(raw, z)
	if err != nil || n == 0 {
		t.Fatalf("compress: %d %v", n, err)
	}
	return z[:n]
}

// readFrame runs a receiver over b the way the server and the client do:
// header and description, decode, payload. It returns the first error.
func readFrame(b []byte) error {
	r := NewReader(bytes.NewReader(b), 256)
	h, err := r.Next()
	if err != nil {
		return err
	}
	if err := r.Decode(newDesc(h.Type)); err != nil {
		return err
	}
	_, err = r.ReadPayloadAll()
	return err
}

// TestMalformedFrames: every bad length in a frame is an error, never a
// panic or a fault (issue 9: the lz4 zero-length description killed the
// server with SIGSEGV).
func TestMalformedFrames(t *testing.T) {
	open, _ := Marshal(&Open{Path: "/a", Flags: ORdwr})
	block := lz4Block(t, bytes.Repeat(open, 8))
	huge := bytes.Repeat([]byte{0xff}, 11) // a uvarint that overflows
	cases := []struct {
		name  string
		frame []byte
	}{
		{"short header", rawFrame(TOpen, 0, 0, 0)[:10]},
		{"bad version", func() []byte { b := rawFrame(TOpen, 0, 0, 0); b[0] = Version + 1; return b }()},
		{"type 0", func() []byte { b := rawFrame(TOpen, 0, 0, 0); b[1] = 0; return b }()},
		{"type 99", func() []byte { b := rawFrame(TOpen, 0, 0, 0); b[1] = 99; return b }()},
		{"unknown flag", rawFrame(TOpen, 0x8000, 0, 0)},
		{"description over the limit", rawFrame(TOpen, 0, MaxDesc+1, 0)},
		{"payload over the limit", rawFrame(TWrite, 0, 0, MaxPayload+1)},
		{"description truncated", rawFrame(TOpen, 0, 100, 0, open)},
		{"payload truncated", rawFrame(TWrite, 0, uint32(len(open)), 100, open, []byte("abc"))},
		{"description not msgpack", rawFrame(TOpen, 0, 3, 0, []byte{0xc1, 0xc1, 0xc1})},
		{"description empty", rawFrame(TOpen, 0, 0, 0)},
		{"lz4 zero-length description", lz4Frame(0, block)},
		{"lz4 zero-length, one byte", lz4Frame(0, []byte{0})},
		{"lz4 description of 0 bytes", rawFrame(TOpen, FlagLZ4, 0, 0)},
		{"lz4 description of 1 byte", rawFrame(TOpen, FlagLZ4, 1, 0, []byte{5})},
		{"lz4 length only", rawFrame(TOpen, FlagLZ4, 2, 0, []byte{0x80, 0x01})},
		{"lz4 length overflows", rawFrame(TOpen, FlagLZ4, uint32(len(huge)+1), 0, huge, []byte{0})},
		{"lz4 length over the limit", lz4Frame(MaxDesc+1, block)},
		{"lz4 length past what the block can hold", lz4Frame(MaxDesc, []byte{0x10, 'x'})},
		{"lz4 length larger than the block gives", lz4Frame(uint64(len(open)*8+1), block)},
		{"lz4 length smaller than the block gives", lz4Frame(5, block)},
		{"lz4 block garbage", lz4Frame(40, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})},
		{"lz4 match before the start", lz4Frame(20, []byte{0x0f, 0x10, 0x00, 0x00})},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := readFrame(c.frame)
			if err == nil {
				t.Fatal("accepted")
			}
			if err != io.EOF && CodeOf(err) != EPROTO {
				t.Fatalf("error %v (code %v), want EPROTO", err, CodeOf(err))
			}
		})
	}
	// The well-formed compressed frame the cases above corrupt decodes.
	good := lz4Frame(uint64(len(open)*8), block)
	r := NewReader(bytes.NewReader(good), 256)
	if _, err := r.Next(); err != nil {
		t.Fatalf("good compressed frame: %v", err)
	}
}

// TestDecompressFreshReader: the zero-length lz4 description on a reader
// that has never decompressed anything (its scratch buffer is nil, which
// is the case that faulted).
func TestDecompressFreshReader(t *testing.T) {
	block := lz4Block(t, bytes.Repeat([]byte("abcdefgh"), 8))
	for _, n := range []uint64{0, 1, 31, 32, 63, 65} {
		if _, err := decompress(lz4Desc(n, block), nil); err == nil {
			t.Fatalf("announced %d: accepted", n)
		}
	}
}

// allocated returns the bytes allocated by f (cumulative, so it counts
// what the collector may already have freed).
func allocated(f func()) uint64 {
	var a, b runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&a)
	f()
	runtime.ReadMemStats(&b)
	return b.TotalAlloc - a.TotalAlloc
}

// TestLyingLengthsCostNothing: a frame that announces 64 MiB and sends a
// few bytes must not make the receiver allocate 64 MiB (issue 9 item 4).
func TestLyingLengthsCostNothing(t *testing.T) {
	open, _ := Marshal(&Open{Path: "/a"})
	cases := []struct {
		name  string
		frame []byte
		read  func(r *Reader) error
	}{
		{"description", rawFrame(TOpen, 0, MaxDesc, 0, []byte("abc")), func(r *Reader) error { _, err := r.Next(); return err }},
		{"payload", rawFrame(TWrite, 0, uint32(len(open)), MaxPayload, open, []byte("abc")), func(r *Reader) error {
			if _, err := r.Next(); err != nil {
				return err
			}
			_, err := r.ReadPayloadAll()
			return err
		}},
		{"lz4 length", lz4Frame(MaxDesc, []byte{0x10, 'x'}), func(r *Reader) error { _, err := r.Next(); return err }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var err error
			n := allocated(func() { err = c.read(NewReader(bytes.NewReader(c.frame), 4096)) })
			if err == nil {
				t.Fatal("accepted")
			}
			if n > 4<<20 {
				t.Fatalf("allocated %d bytes for a frame of %d", n, len(c.frame))
			}
		})
	}
}

// TestReadPayloadAllGrows: a payload read in steps arrives whole, for sizes
// around the growth boundaries.
func TestReadPayloadAllGrows(t *testing.T) {
	open, _ := Marshal(&Open{Path: "/a"})
	for _, n := range []int{1, growStart - 1, growStart, growStart + 1, readStep + 3, 3*readStep + 5} {
		p := bytes.Repeat([]byte{1, 2, 3, 4, 5, 6, 7}, n/7+1)[:n]
		b := rawFrame(TWrite, 0, uint32(len(open)), uint32(n), open, p)
		// An iotest-like reader that returns few bytes at a time.
		r := NewReader(&trickle{b: b, step: 4093}, 4096)
		if _, err := r.Next(); err != nil {
			t.Fatal(err)
		}
		got, err := r.ReadPayloadAll()
		if err != nil || !bytes.Equal(got, p) {
			t.Fatalf("%d bytes: %v, equal %v", n, err, bytes.Equal(got, p))
		}
		if r.PayloadLeft() != 0 {
			t.Fatalf("%d bytes: %d left", n, r.PayloadLeft())
		}
	}
}

type trickle struct {
	b    []byte
	step int
}

func (t *trickle) Read(p []byte) (int, error) {
	if len(t.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), t.step)], t.b)
	t.b = t.b[n:]
	return n, nil
}
