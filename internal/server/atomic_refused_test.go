package server_test

import (
	"bytes"
	"path/filepath"
	"testing"

	"github.com/delegate-io/delegate/internal/testutil"
	"github.com/delegate-io/delegate/internal/wire"
)

// TestAtomicRefusedFirstPart (found in review): a request refused on
// arrival between two parts breaks the call, but a refused first part had
// no group to break: the next part opened one and was applied after the
// hole; and a stale broken record of an earlier call (here call 5, whose
// first part was refused too and which the client gave up) hid a refused
// first part even once that was fixed. The server keeps the call of a
// refused part now, whatever came before: call 6's later parts fail.
func TestAtomicRefusedFirstPart(t *testing.T) {
	const half = 64 << 10
	for _, tc := range []struct {
		name   string
		before func(a *atomicPeer)
	}{
		{"nothing before", func(a *atomicPeer) {}},
		{"a stale broken record before", func(a *atomicPeer) {
			a.send(wire.TRead, &wire.Read{File: a.f, Ext: []byte{0xff, 0xff, 0xff}, Flags: wire.IOAtomic | wire.IOMore, AG: 5})
			if r, _, err := a.reply(); err != nil || r.Code == wire.OK {
				t.Fatalf("malformed first part of call 5: %+v %v, want refused", r, err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := testutil.Start(t, testutil.Options{})
			a := newAtomicPeer(t, c, filepath.Join(c.Dir, "f"))
			tc.before(a)
			// Call 6's first part: malformed (its extents do not cover its payload).
			a.send(wire.TWrite, &wire.Write{File: a.f, Ext: oneExtent(0, 10), Flags: wire.IOAtomic | wire.IOMore, AG: 6}, make([]byte, 20))
			if r, _, err := a.reply(); err != nil || r.Code != wire.EPROTO {
				t.Fatalf("malformed first part of call 6: %+v %v, want EPROTO", r, err)
			}
			a.write(6, half, half, 'x', wire.IOAtomic|wire.IOMore)
			a.write(6, 2*half, half, 'x', wire.IOAtomic)
			r2, _, _ := a.reply()
			r3, _, _ := a.reply()
			a.read(0, half, 2*half, 0)
			data := a.ok("read back")
			if r2.Code == wire.OK || r3.Code == wire.OK || bytes.IndexByte(data, 'x') >= 0 {
				t.Fatalf("parts 2 and 3 after a refused first part: %v, %v; 'x' on disk: %v (want both failed, nothing applied)",
					r2.Code, r3.Code, bytes.IndexByte(data, 'x') >= 0)
			}
		})
	}
}
