package wire

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"testing"
)

// The collective tag travels inline: Write, Read and CollEnd carry the keys
// cs, cr, cn, cg at the top of their map, as spec.md says.
func TestCollTagInline(t *testing.T) {
	tag := CollTag{Seq: 7, Rank: 2, Size: 5, Group: -3}
	for _, d := range []any{
		&Write{File: 1, Flags: IOColl, CollTag: tag},
		&Read{File: 1, Flags: IOColl, CollTag: tag},
		&CollEnd{File: 1, CollTag: tag},
	} {
		b, err := Marshal(d)
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		for _, k := range []string{"f", "cs", "cr", "cn", "cg"} {
			if _, ok := m[k]; !ok {
				t.Errorf("%T: key %q missing from %v", d, k, m)
			}
		}
		var e CollEnd
		if err := Unmarshal(b, &e); err != nil || e.CollTag != tag || e.File != 1 {
			t.Errorf("%T decoded as CollEnd: %+v, %v", d, e, err)
		}
	}
}

func TestCollTagCheck(t *testing.T) {
	for _, c := range []struct {
		tag CollTag
		ok  bool
	}{
		{CollTag{Rank: 0, Size: 1}, true},
		{CollTag{Rank: 3, Size: 4, Seq: 9, Group: 1}, true},
		{CollTag{Rank: 0, Size: 0}, false},
		{CollTag{Rank: -1, Size: 2}, false},
		{CollTag{Rank: 2, Size: 2}, false},
	} {
		if err := c.tag.Check(); (err == nil) != c.ok || (err != nil && CodeOf(err) != EINVAL) {
			t.Errorf("%+v: %v, want ok %v", c.tag, err, c.ok)
		}
	}
}

func TestCollEndType(t *testing.T) {
	if !TCollEnd.Valid() || TCollEnd.String() != "collend" || (TCollEnd|ReplyBit).String() != "collend-reply" {
		t.Fatalf("TCollEnd: valid %v, %q", TCollEnd.Valid(), TCollEnd.String())
	}
}

// A code survives wrapping: errors.Is finds it through fmt.Errorf's %w and
// through an *Error's cause, and CodeOf reports the outermost *Error's.
func TestCodeSurvivesWrapping(t *testing.T) {
	base := Errorf(ENOENT, "open /x: %w", fs.ErrNotExist)
	for _, c := range []struct {
		name string
		err  error
		code Code
	}{
		{"plain", base, ENOENT},
		{"wrapped once", fmt.Errorf("read /x: %w", base), ENOENT},
		{"wrapped twice", fmt.Errorf("a: %w", fmt.Errorf("b: %w", base)), ENOENT},
		{"reply", (&Reply{Code: EPROTO, Msg: "m"}).Err(), EPROTO},
		{"wrapped reply", fmt.Errorf("x: %w", (&Reply{Code: EPROTO, Msg: "m"}).Err()), EPROTO},
		{"bare code", fmt.Errorf("x: %w", ETIMEDOUT), ETIMEDOUT},
	} {
		t.Run(c.name, func(t *testing.T) {
			if !errors.Is(c.err, c.code) {
				t.Errorf("errors.Is(%v, %v) = false", c.err, c.code)
			}
			if errors.Is(c.err, EIO) {
				t.Errorf("errors.Is(%v, EIO) = true", c.err)
			}
			if got := CodeOf(c.err); got != c.code {
				t.Errorf("CodeOf = %v, want %v", got, c.code)
			}
			if got := ReplyTo(c.err); got.Code != c.code || got.Msg != c.err.Error() {
				t.Errorf("ReplyTo = %+v", got)
			}
		})
	}
	if !errors.Is(base, fs.ErrNotExist) {
		t.Error("the cause of an *Error is lost")
	}
}

func TestParseExtents(t *testing.T) {
	var b Builder
	for i := int64(0); i < 100; i++ {
		b.Add(i*64, 4)
	}
	b.Add(10000, 100)
	x, err := ParseExtents(b.Bytes(), 500)
	if err != nil {
		t.Fatal(err)
	}
	if x.Total() != 500 || x.Count() != 101 || len(x.Runs()) != 2 || x.Runs()[0] != (Run{Off: 0, Len: 4, Stride: 64, Count: 100}) {
		t.Fatalf("total %d count %d runs %+v", x.Total(), x.Count(), x.Runs())
	}
	if e := x.Runs()[0].End(); e != 99*64+4 {
		t.Fatalf("run end %d", e)
	}
	got := decodeAll(t, b.Bytes(), 500)
	it := x.Iter()
	for i := 0; ; i++ {
		off, n, ok := it.Next()
		if !ok {
			if i != len(got) || it.Err() != nil {
				t.Fatalf("validated iteration ended after %d of %d: %v", i, len(got), it.Err())
			}
			break
		}
		if (ext{off, n}) != got[i] {
			t.Fatalf("extent %d: %d+%d, want %+v", i, off, n, got[i])
		}
	}
	if _, err := ParseExtents(b.Bytes(), 499); CodeOf(err) != EPROTO {
		t.Fatalf("over the limit: %v", err)
	}
	bad := map[string][]byte{
		"truncated header": {0x80},
		"zero length":      {0x02, 0x00, 0x00},
		// a strided run whose last extent lies below 0: refused up front,
		// before anything is applied
		"run leaves below 0": {0x05, 0x14, 0x01, 0x15},
		"stride overflow":    {0x05, 0x00, 0x01, 0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01},
	}
	for name, enc := range bad {
		if _, err := ParseExtents(enc, math.MaxInt64); CodeOf(err) != EPROTO {
			t.Errorf("%s: %v, want EPROTO", name, err)
		}
	}
	if x, err := ParseExtents(nil, 0); err != nil || x.Total() != 0 || x.Count() != 0 {
		t.Fatalf("empty list: %+v %v", x, err)
	}
}

// A list of one run, the common case, is parsed without allocating.
func TestParseOneRunAllocatesNothing(t *testing.T) {
	var b Builder
	for i := int64(0); i < 64; i++ {
		b.Add(i*128, 64)
	}
	enc := b.Bytes()
	var x Extents
	allocs := testing.AllocsPerRun(100, func() {
		if err := x.Parse(enc, 1<<20); err != nil || x.Count() != 64 {
			t.Fatal(x.Count(), err)
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per parse of one run", allocs)
	}
}

// TestBulkRefInline: a write's and a read's bulk keys stay at the top
// level of the description (bc, bs, bl), as spec.md has them.
func TestBulkRefInline(t *testing.T) {
	ref := BulkRef{BulkConn: 3, BulkSeq: 9, BulkLen: 4 << 20}
	for _, d := range []any{&Write{File: 1, BulkRef: ref}, &Read{File: 1, BulkRef: ref}} {
		b, err := Marshal(d)
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		for _, k := range []string{"bc", "bs", "bl"} {
			if _, ok := m[k]; !ok {
				t.Errorf("%T: key %q missing from %v", d, k, m)
			}
		}
		var w Write
		if err := Unmarshal(b, &w); err != nil || w.BulkRef != ref {
			t.Errorf("%T decoded as Write: %+v, %v", d, w.BulkRef, err)
		}
	}
}
