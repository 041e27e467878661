package server_test

import (
	"bytes"
	"path/filepath"
	"testing"

	"github.com/delegate-io/delegate/internal/testutil"
	"github.com/delegate-io/delegate/internal/wire"
)

// TestAtomicStaleRecordRefusedFirstPart (found in review): call 5's first
// part is refused on arrival (a broken record is kept) and the client
// gives up on call 5 (a read's windows go one after another: it sends no
// more). Call 6's first part is refused too; a refused part was recorded
// only when no group was open, and the stale record of call 5 was:
// nothing was kept of call 6, and its later parts were applied after the
// hole.
func TestAtomicStaleRecordRefusedFirstPart(t *testing.T) {
	const half = 64 << 10
	c := testutil.Start(t, testutil.Options{})
	a := newAtomicPeer(t, c, filepath.Join(c.Dir, "f"))
	a.send(wire.TRead, &wire.Read{File: a.f, Ext: []byte{0xff, 0xff, 0xff}, Flags: wire.IOAtomic | wire.IOMore, AG: 5})
	if r, _, err := a.reply(); err != nil || r.Code == wire.OK {
		t.Fatalf("malformed first part of call 5: %+v %v, want refused", r, err)
	}
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
		t.Fatalf("parts 2 and 3 of call 6 after its refused first part: %v, %v; 'x' on disk: %v (want both failed, nothing applied)",
			r2.Code, r3.Code, bytes.IndexByte(data, 'x') >= 0)
	}
}
