package server_test

import (
	"bytes"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/delegate-io/delegate/internal/route"
	"github.com/delegate-io/delegate/internal/server"
	"github.com/delegate-io/delegate/internal/testutil"
	"github.com/delegate-io/delegate/internal/wire"
)

// TestRefusedAtTheBoundary: a request whose extents, collective tag or
// routing is wrong is refused with its code before any of it is applied:
// extent lists are validated once as they arrive (stream.extents), the
// owner rule is route's (Rule.Accepts), the tag is wire's (CollTag.Check).
func TestRefusedAtTheBoundary(t *testing.T) {
	c := testutil.Start(t, testutil.Options{Servers: 2, Mutate: func(_ int, cfg *server.Config) {
		cfg.MaxReadBytes = 1 << 20
	}})
	st, err := rawSession(t, c).OpenStream() // server 0 of 2
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	rd := wire.NewReader(st, 1<<16)
	id := uint32(0)
	ask := func(typ wire.Type, desc any, payload ...[]byte) wire.Reply {
		t.Helper()
		id++
		if _, err := st.Write(frameID(typ, id, desc, payload...)); err != nil {
			t.Fatal(err)
		}
		st.SetReadDeadline(time.Now().Add(10 * time.Second))
		h, err := rd.Next()
		if err != nil || h.ID != id || h.Type != typ|wire.ReplyBit {
			t.Fatalf("reply to %v: %+v %v", typ, h, err)
		}
		var r wire.Reply
		if err := rd.Decode(&r); err != nil {
			t.Fatal(err)
		}
		return r
	}
	// A file whose first region, and so its atomic owner, is server 1.
	var path string
	for i := 0; ; i++ {
		path = filepath.Join(c.Dir, fmt.Sprintf("b%d", i))
		if (route.Rule{Key: route.FileKey(path), RegionSize: 1 << 20, Servers: 2}).Home() == 1 {
			break
		}
	}
	o := ask(wire.TOpen, &wire.Open{Path: path, Flags: wire.ORdwr | wire.OCreat, RegionSize: 1 << 20})
	if o.Code != wire.OK {
		t.Fatalf("open: %+v", o)
	}
	ext := func(pieces ...int64) []byte {
		var b wire.Builder
		for i := 0; i < len(pieces); i += 2 {
			b.Add(pieces[i], pieces[i+1])
		}
		return append([]byte(nil), b.Bytes()...)
	}
	mine := int64(1 << 20) // region 1: server 0's
	data := bytes.Repeat([]byte{7}, 20)
	cases := []struct {
		name    string
		t       wire.Type
		desc    any
		payload []byte
		code    wire.Code
	}{
		{"extents shorter than the data", wire.TWrite, &wire.Write{File: o.File, Ext: ext(mine, 10)}, data, wire.EPROTO},
		{"extents longer than the data", wire.TWrite, &wire.Write{File: o.File, Ext: ext(mine, 30)}, data, wire.EPROTO},
		{"strided run below 0", wire.TWrite, &wire.Write{File: o.File, Ext: []byte{0x05, 0x14, 0x0a, 0x15}}, data, wire.EPROTO},
		{"malformed list", wire.TWrite, &wire.Write{File: o.File, Ext: []byte{0x80}}, data, wire.EPROTO},
		{"read over the limit", wire.TRead, &wire.Read{File: o.File, Ext: ext(mine, 2<<20)}, nil, wire.EPROTO},
		{"bytes of server 1", wire.TWrite, &wire.Write{File: o.File, Ext: ext(0, 20)}, data, wire.ENOTOWNER},
		{"atomic to the wrong server", wire.TWrite, &wire.Write{File: o.File, Ext: ext(mine, 20), Flags: wire.IOAtomic}, data, wire.ENOTOWNER},
		{"atomic read to the wrong server", wire.TRead, &wire.Read{File: o.File, Ext: ext(mine, 20), Flags: wire.IOAtomic}, nil, wire.ENOTOWNER},
		{"marker of rank 2 of 2", wire.TCollEnd, &wire.CollEnd{File: o.File, CollTag: wire.CollTag{Rank: 2, Size: 2}}, nil, wire.EINVAL},
		{"marker of no ranks", wire.TCollEnd, &wire.CollEnd{File: o.File}, nil, wire.EINVAL},
		{"marker of a closed handle", wire.TCollEnd, &wire.CollEnd{File: o.File + 100, CollTag: wire.CollTag{Size: 1}}, nil, wire.EBADF},
		{"marker of rank 0 of 1", wire.TCollEnd, &wire.CollEnd{File: o.File, CollTag: wire.CollTag{Size: 1, Seq: 4}}, nil, wire.OK},
		{"a good write", wire.TWrite, &wire.Write{File: o.File, Ext: ext(mine, 10, mine+100, 10)}, data, wire.OK},
	}
	for _, tc := range cases {
		before := c.Servers[0].Stats()
		r := ask(tc.t, tc.desc, tc.payload)
		if r.Code != tc.code {
			t.Errorf("%s: %v (%q), want %v", tc.name, r.Code, r.Msg, tc.code)
		}
		after := c.Servers[0].Stats()
		if tc.code != wire.OK && after.BytesIn != before.BytesIn {
			t.Errorf("%s: refused, yet %d bytes went in", tc.name, after.BytesIn-before.BytesIn)
		}
		if tc.t == wire.TCollEnd && (after.CollEnds-before.CollEnds == 1) != (tc.code == wire.OK) {
			t.Errorf("%s: %d markers answered", tc.name, after.CollEnds-before.CollEnds)
		}
	}
	if s := c.Servers[0].Stats(); s.BytesIn != 20 || s.ExtentsIn != 2 {
		t.Fatalf("after one good write: %d bytes in %d extents, want 20 in 2", s.BytesIn, s.ExtentsIn)
	}
	r := ask(wire.TRead, &wire.Read{File: o.File, Ext: ext(mine, 10, mine+100, 10)})
	if r.Code != wire.OK || r.N != 20 {
		t.Fatalf("read back: %+v", r)
	}
	got, err := rd.ReadPayloadAll()
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read back %v %v", got, err)
	}
}

func frameID(t wire.Type, id uint32, desc any, payload ...[]byte) []byte {
	e := wire.NewEncoder(wire.Compression{})
	if err := e.Append(t, id, desc, payload...); err != nil {
		panic(err)
	}
	return append([]byte(nil), e.Bytes()...)
}
