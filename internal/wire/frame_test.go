package wire

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestFrameRoundTrip(t *testing.T) {
	var xb Builder
	xb.Add(4096, 100)
	xb.Add(8192, 100)
	msgs := []struct {
		t       Type
		desc    any
		payload []byte
	}{
		{THello, &Hello{Client: "h:1", Servers: 2, Index: 1, ListHash: 99, RingSize: 1 << 20}, nil},
		{TOpen, &Open{Path: "/tmp/x", Flags: ORdwr | OCreat, Perm: 0o600, RegionSize: 1 << 20}, nil},
		{TWrite, &Write{File: 3, Ext: xb.Bytes()}, bytes.Repeat([]byte{7}, 200)},
		{TRead, &Read{File: 3, Ext: xb.Bytes(), RingOff: 64, RingLen: 200}, nil},
		{TCounter, &Counter{File: 3, Key: ".x.shfp.1", Op: CounterFetchAdd, Value: 5}, nil},
		{TOpen | ReplyBit, &Reply{Code: ENOENT, Msg: "open /x: no such file", File: 0}, nil},
	}
	// Compression on, at a threshold the long description crosses.
	enc := NewEncoder(Compression{MinBytes: 64, MinSavingsPct: 10})
	long := &Open{Path: "/" + strings.Repeat("abcd", 100), Flags: ORdonly}
	for i, m := range msgs {
		if err := enc.Append(m.t, uint32(i+1), m.desc, m.payload); err != nil {
			t.Fatal(err)
		}
	}
	if err := enc.Append(TOpen, 100, long); err != nil {
		t.Fatal(err)
	}
	if enc.Counts.Compressd != 1 {
		t.Fatalf("compressed %d frames, want 1", enc.Counts.Compressd)
	}
	r := NewReader(bytes.NewReader(enc.Bytes()), 4096)
	for i, m := range msgs {
		h, err := r.Next()
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if h.Type != m.t || h.ID != uint32(i+1) || int(h.PayloadLen) != len(m.payload) {
			t.Fatalf("frame %d: header %+v", i, h)
		}
		switch m.t.Request() {
		case TWrite:
			var w Write
			if err := r.Decode(&w); err != nil {
				t.Fatal(err)
			}
			p := make([]byte, h.PayloadLen)
			if err := r.ReadPayload(p); err != nil || !bytes.Equal(p, m.payload) {
				t.Fatalf("payload %v %v", err, p)
			}
			if tot, _ := ExtentsTotal(w.Ext, 1<<30); tot != 200 {
				t.Fatalf("extents total %d", tot)
			}
		case TOpen:
			if m.t.IsReply() {
				var rep Reply
				if err := r.Decode(&rep); err != nil {
					t.Fatal(err)
				}
				if CodeOf(rep.Err()) != ENOENT {
					t.Fatalf("reply %+v", rep)
				}
			}
		}
	}
	h, err := r.Next()
	if err != nil || h.Flags&FlagLZ4 == 0 {
		t.Fatalf("compressed frame: %+v %v", h, err)
	}
	var o Open
	if err := r.Decode(&o); err != nil || o.Path != long.Path {
		t.Fatalf("compressed open: %v %q", err, o.Path)
	}
	if _, err := r.Next(); !errors.Is(err, io.EOF) {
		t.Fatalf("end: %v", err)
	}
}

func TestFrameSkipsUnreadPayload(t *testing.T) {
	enc := NewEncoder(Compression{})
	_ = enc.Append(TWrite, 1, &Write{File: 1}, make([]byte, 1000))
	_ = enc.Append(TSync, 2, &FileOp{File: 1})
	r := NewReader(bytes.NewReader(enc.Bytes()), 64)
	if _, err := r.Next(); err != nil {
		t.Fatal(err)
	}
	h, err := r.Next()
	if err != nil || h.Type != TSync || h.ID != 2 {
		t.Fatalf("%+v %v", h, err)
	}
}

func TestParseHeaderRejects(t *testing.T) {
	good := make([]byte, HeaderSize)
	(&Header{Type: TOpen, DescLen: 10}).Put(good)
	mut := func(f func(b []byte)) []byte {
		b := append([]byte(nil), good...)
		f(b)
		return b
	}
	cases := map[string][]byte{
		"short":         good[:10],
		"version":       mut(func(b []byte) { b[0] = 9 }),
		"type":          mut(func(b []byte) { b[1] = 77 }),
		"flags":         mut(func(b []byte) { b[2] = 0x80 }),
		"desc too long": mut(func(b []byte) { b[11] = 0x7f }),
		"payload long":  mut(func(b []byte) { b[15] = 0x7f }),
	}
	if _, err := ParseHeader(good); err != nil {
		t.Fatal(err)
	}
	for name, b := range cases {
		if _, err := ParseHeader(b); CodeOf(err) != EPROTO {
			t.Errorf("%s: got %v, want EPROTO", name, err)
		}
	}
}

func TestTruncatedFrame(t *testing.T) {
	enc := NewEncoder(Compression{})
	_ = enc.Append(TWrite, 1, &Write{File: 1}, make([]byte, 100))
	b := enc.Bytes()
	for _, cut := range []int{5, HeaderSize + 2} {
		r := NewReader(bytes.NewReader(b[:cut]), 64)
		if _, err := r.Next(); CodeOf(err) != EPROTO {
			t.Errorf("cut at %d: got %v, want EPROTO", cut, err)
		}
	}
	r := NewReader(bytes.NewReader(b[:len(b)-10]), 64)
	if _, err := r.Next(); err != nil {
		t.Fatal(err)
	}
	if err := r.ReadPayload(make([]byte, 100)); CodeOf(err) != EPROTO {
		t.Errorf("short payload: got %v", err)
	}
}

// TestHeaderCodesInSync fails when include/delegate.h and the code table
// drift apart; `go generate ./internal/wire` mends it.
func TestHeaderCodesInSync(t *testing.T) {
	path := filepath.Join("..", "..", "include", "delegate.h")
	h, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want, err := RewriteHeaderCodes(h)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(h, want) {
		t.Fatalf("%s is out of date: run go generate ./internal/wire", path)
	}
}

func TestCodeOf(t *testing.T) {
	cases := []struct {
		err  error
		want Code
	}{
		{nil, OK},
		{os.ErrNotExist, ENOENT},
		{&os.PathError{Op: "open", Path: "/x", Err: os.ErrPermission}, EACCES},
		{Errorf(EPATH, "outside: %w", os.ErrPermission), EPATH},
		{errors.New("something"), EIO},
	}
	for _, c := range cases {
		if got := CodeOf(c.err); got != c.want {
			t.Errorf("CodeOf(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}
