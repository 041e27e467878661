package server_test

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/delegate-io/delegate/internal/route"
	"github.com/delegate-io/delegate/internal/server"
	"github.com/delegate-io/delegate/internal/testutil"
	"github.com/delegate-io/delegate/internal/wire"
	"github.com/hashicorp/yamux"
)

// rawOpen opens path on a new stream of ymx and returns the stream, its
// reply reader and the file id.
func rawOpen(t *testing.T, ymx *yamux.Session, path string) (*yamux.Stream, *wire.Reader, uint64) {
	t.Helper()
	st, err := ymx.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	st.Write(frame(wire.TOpen, &wire.Open{Path: path, Flags: wire.ORdwr | wire.OCreat, RegionSize: route.DefaultRegionSize}))
	rd := wire.NewReader(st, 1<<20)
	st.SetReadDeadline(time.Now().Add(30 * time.Second))
	var o wire.Reply
	if _, err := rd.Next(); err != nil || rd.Decode(&o) != nil || o.Code != wire.OK {
		t.Fatalf("open: %v %+v", err, o)
	}
	return st, rd, o.File
}

// TestTransferReadBehindOwnPayloads (found in review): one stream sends
// a read answered inline (1 MiB), then two inline writes (3 MiB in review,
// wire.MaxInline now), while its
// worker waits in a collective's end marker. When inline payloads came out
// of the transfer share (4 MiB here), the reader took the first write's
// room and waited for the second's, the worker then waited behind it for
// the read's room, which only the first write, queued behind the read,
// could give back: nothing moved for 30 s, then a write failed with
// EAGAIN. Payloads are the stream's own now: the reader waits for its own
// worker, the read gets its room, and every request succeeds.
func TestTransferReadBehindOwnPayloads(t *testing.T) {
	t.Cleanup(server.SetXferMemWaitForTest(3 * time.Second)) // a failure shows as EAGAIN after 3 s
	waited := make(chan struct{}, 1)
	t.Cleanup(server.SetOwnWaitHookForTest(func(int64) {
		select {
		case waited <- struct{}{}:
		default:
		}
	}))
	c := testutil.Start(t, testutil.Options{Mutate: func(_ int, cfg *server.Config) {
		cfg.BufferBytes, cfg.DirectBytes, cfg.CollTimeout = 32<<20, 16<<20, time.Minute
	}})
	path := filepath.Join(c.Dir, "rb")
	a, ard, fa := rawOpen(t, rawSession(t, c), path)
	b, brd, fb := rawOpen(t, rawSession(t, c), path)
	tag := wire.CollTag{Size: 2, Seq: 1}
	a.Write(frameID(wire.TCollEnd, 10, &wire.CollEnd{File: fa, CollTag: tag})) // holds a's worker until rank 1's
	var rx wire.Builder
	rx.Add(0, 1<<20)
	a.Write(frameID(wire.TRead, 11, &wire.Read{File: fa, Ext: rx.Bytes()}))
	const piece = wire.MaxInline
	go func() {
		for i := range 2 {
			var wx wire.Builder
			wx.Add(int64(i)*piece, piece)
			if _, err := a.Write(frameID(wire.TWrite, uint32(12+i), &wire.Write{File: fa, Ext: wx.Bytes()}, bytes.Repeat([]byte{byte(i + 1)}, piece))); err != nil {
				return
			}
		}
	}()
	select {
	case <-waited: // the reader holds the first write and waits for its worker
	case <-time.After(10 * time.Second):
		t.Fatal("the reader never waited for its worker")
	}
	tag1 := tag
	tag1.Rank = 1
	b.Write(frameID(wire.TCollEnd, 20, &wire.CollEnd{File: fb, CollTag: tag1}))
	var o wire.Reply
	if _, err := brd.Next(); err != nil || brd.Decode(&o) != nil || o.Code != wire.OK {
		t.Fatalf("rank 1's marker: %v %+v", err, o)
	}
	for range 4 {
		h, err := ard.Next()
		if err != nil {
			t.Fatal(err)
		}
		var rep wire.Reply
		if err := ard.Decode(&rep); err != nil {
			t.Fatal(err)
		}
		if rep.Code != wire.OK {
			t.Errorf("request %d: %v %s", h.ID, rep.Code, rep.Msg)
		}
	}
	if st := c.Servers[0].Stats(); st.TransferWaits != 0 {
		t.Errorf("%d waits for transfer memory: the read should have found room", st.TransferWaits)
	}
}

// TestTransferReleasedAfterPanic (found in review): a handler that panics
// after it took transfer memory (a read answered inline, 1 MiB) gives it
// back with its stream: the worker's cleanup drained the queue but not
// the request it was handling, and each panic kept its memory for good.
func TestTransferReleasedAfterPanic(t *testing.T) {
	c := testutil.Start(t, testutil.Options{})
	ymx := rawSession(t, c)
	st, _, f := rawOpen(t, ymx, filepath.Join(c.Dir, "p"))
	restore := server.PanicOn(wire.TRead, "after")
	defer restore()
	var b wire.Builder
	b.Add(0, 1<<20)
	st.Write(frame(wire.TRead, &wire.Read{File: f, Ext: b.Bytes()}))
	if !closedWithin(st, 10*time.Second) {
		t.Fatal("stream not closed after its handler panicked")
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		s := c.Servers[0].Stats()
		if s.Panics == 1 && s.TransferBytes == 0 && s.TransferPeak >= 1<<20 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the panic: %d panics, transfer memory holds %d bytes (peak %d), want 1, 0, 1 MiB", s.Panics, s.TransferBytes, s.TransferPeak)
		}
		time.Sleep(10 * time.Millisecond) // polling a counter, bounded
	}
}

// TestLargeReplyNotRead: a read answered inline holds its result in the
// transfer share until the reply is written; a client that asks and then
// stops reading must not keep it for ever. The stream ends once a piece of
// the reply waits longer than the bulk timeout, and the share is empty again.
func TestLargeReplyNotRead(t *testing.T) {
	t.Cleanup(server.SetBulkTimeoutForTest(300 * time.Millisecond))
	c := testutil.Start(t, testutil.Options{Mutate: func(_ int, cfg *server.Config) {
		cfg.BufferBytes = 256 << 20
	}})
	st, _, f := rawOpen(t, rawSession(t, c), filepath.Join(c.Dir, "silent"))
	var rx wire.Builder
	rx.Add(0, 16<<20) // beyond the client's yamux window: the worker's write blocks
	if _, err := st.Write(frameID(wire.TRead, 2, &wire.Read{File: f, Ext: rx.Bytes()})); err != nil {
		t.Fatal(err)
	}
	srv := c.Servers[0]
	deadline := time.Now().Add(20 * time.Second)
	held := false
	for time.Now().Before(deadline) {
		tb := srv.Stats().TransferBytes
		if tb > 0 {
			held = true
		}
		if held && tb == 0 {
			break
		}
		time.Sleep(10 * time.Millisecond) // polling a counter, bounded by deadline
	}
	s := srv.Stats()
	if !held {
		t.Fatal("the read's result never counted in the transfer share")
	}
	if s.TransferBytes != 0 {
		t.Fatalf("transfer share still holds %d bytes 20 s after the client stopped reading", s.TransferBytes)
	}
	// The stream is gone: the client's next read finds it closed.
	st.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.Copy(io.Discard, st); err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatal("the stream stayed open")
		}
	}
}

// rawOpenRO opens an existing path read-write on a new stream and returns
// the stream, reader, file id and the bytes the open reply took of the
// stream's window.
func rawOpenRO(t *testing.T, ymx *yamux.Session, path string) (*yamux.Stream, *wire.Reader, uint64, int) {
	t.Helper()
	st, err := ymx.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	st.Write(frame(wire.TOpen, &wire.Open{Path: path, Flags: wire.ORdwr, RegionSize: route.DefaultRegionSize}))
	rd := wire.NewReader(st, 64<<10)
	st.SetReadDeadline(time.Now().Add(30 * time.Second))
	var o wire.Reply
	h, err := rd.Next()
	if err != nil || rd.Decode(&o) != nil || o.Code != wire.OK {
		t.Fatalf("open: %v %+v", err, o)
	}
	return st, rd, o.File, wire.HeaderSize + int(h.DescLen) + int(h.PayloadLen)
}

// TestLargeReplyHeaderDeadline (found in review): the pieces of a large
// reply were under a write deadline, but its header (and the small replies
// batched before it) went out with none, after the result's room was taken
// in the transfer share. A client that let an earlier reply fill its
// window exactly, then asked for a large read and stopped reading, held
// that read's room for ever.
func TestLargeReplyHeaderDeadline(t *testing.T) {
	t.Cleanup(server.SetBulkTimeoutForTest(300 * time.Millisecond))
	c := testutil.Start(t, testutil.Options{Mutate: func(_ int, cfg *server.Config) {
		cfg.BufferBytes = 256 << 20
	}})
	path := filepath.Join(c.Dir, "big")
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, 64<<20); err != nil {
		t.Fatal(err)
	}
	const window = 4 << 20 // the client's yamux stream window (transport.YamuxConfig)
	// Calibration: the size of a read reply's header for a result near 4 MiB.
	st, rd, f, openBytes := rawOpenRO(t, rawSession(t, c), path)
	var rx wire.Builder
	rx.Add(0, window-4096)
	st.Write(frameID(wire.TRead, 2, &wire.Read{File: f, Ext: rx.Bytes()}))
	h, err := rd.Next()
	if err != nil {
		t.Fatal(err)
	}
	hdr := wire.HeaderSize + int(h.DescLen)
	st.Close()
	t.Logf("open reply %d bytes, read reply header %d bytes", openBytes, hdr)

	// The real client: one read that fills the window exactly, then 16 MiB.
	st2, _, f2, open2 := rawOpenRO(t, rawSession(t, c), path)
	nA := window - open2 - hdr
	var xa, xb wire.Builder
	xa.Add(0, int64(nA))
	xb.Add(0, 16<<20)
	st2.Write(frameID(wire.TRead, 2, &wire.Read{File: f2, Ext: xa.Bytes()}))
	st2.Write(frameID(wire.TRead, 3, &wire.Read{File: f2, Ext: xb.Bytes()}))
	srv := c.Servers[0]
	held := false
	deadline := time.Now().Add(10 * time.Second) // bulk timeout 300 ms: 33 times over
	for time.Now().Before(deadline) {
		tb := srv.Stats().TransferBytes
		if tb >= 16<<20 {
			held = true
		}
		if held && tb == 0 {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !held {
		t.Fatal("the 16 MiB read never counted in the transfer share")
	}
	t.Fatalf("transfer share still holds %d bytes 10 s after the client stopped reading (bulk timeout 300 ms)", srv.Stats().TransferBytes)
}
