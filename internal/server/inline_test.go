package server_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/delegate-io/delegate/internal/client"
	"github.com/delegate-io/delegate/internal/route"
	"github.com/delegate-io/delegate/internal/server"
	"github.com/delegate-io/delegate/internal/testutil"
	"github.com/delegate-io/delegate/internal/wire"
)

// inlineClient is a TCP client without bulk connections: its data travels
// inline, as payloads of its requests and of the replies.
func inlineClient(t *testing.T, c *testutil.Cluster) *client.Client {
	return c.Client(t, func(cfg *client.Config) { cfg.BulkConns = 0 })
}

// TestInlinePayloadsOwn: inline write payloads are their streams' own,
// not the transfer share's: eight clients' 2 MiB inline writes against a
// 4 MiB share never wait for it, and every byte arrives.
func TestInlinePayloadsOwn(t *testing.T) {
	const (
		buffer  = 32 << 20 // a 4 MiB share
		piece   = 2 << 20
		clients = 8
		rounds  = 4
	)
	c := testutil.Start(t, testutil.Options{TCP: true, Mutate: func(_ int, cfg *server.Config) {
		cfg.BufferBytes, cfg.DirectBytes = buffer, 8<<20
	}})
	writeRounds(t, c, func() *client.Client { return inlineClient(t, c) }, "inline", clients, piece, rounds)
	st := c.Servers[0].Stats()
	if st.BulkIn != 0 || st.TransferPeak != 0 || st.TransferWaits != 0 {
		t.Fatalf("bulk in %d, transfer memory peak %d, %d waits: want every byte inline, none of it in the share", st.BulkIn, st.TransferPeak, st.TransferWaits)
	}
}

// TestInlineTransferBusy: while a bulk write's receive buffer holds the
// whole transfer share, an inline read of 1 MiB (its result counted in the
// share) waits for room and fails with EAGAIN after xferWait, the session
// going on; an inline write of 3 MiB meanwhile does not wait (its payload
// is its stream's own); once the share is free the read succeeds.
func TestInlineTransferBusy(t *testing.T) {
	t.Cleanup(server.SetXferMemWaitForTest(100 * time.Millisecond))
	arrived, release := make(chan struct{}), make(chan struct{})
	var releaseOnce sync.Once
	letGo := func() { releaseOnce.Do(func() { close(release) }) }
	defer letGo()
	var first atomic.Bool
	t.Cleanup(server.SetBulkHooksForTest(nil, func() {
		if !first.Swap(true) { // the first bulk receiver holds the whole share
			close(arrived)
			<-release
		}
	}))
	c := testutil.Start(t, testutil.Options{TCP: true, Mutate: func(_ int, cfg *server.Config) {
		cfg.BufferBytes, cfg.DirectBytes = 32<<20, 16<<20
	}})
	hold, busy := c.Client(t, nil), inlineClient(t, c)
	openFile := func(cl *client.Client, name string) *client.File {
		f, err := cl.Open(context.Background(), filepath.Join(c.Dir, name), wire.ORdwr|wire.OCreat, 0o644, nil)
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	fh, fb := openFile(hold, "hold"), openFile(busy, "busy")
	big := bytes.Repeat([]byte{1}, 6<<20) // above the 4 MiB share: admitted alone
	done := make(chan error, 1)
	go func() {
		_, err := fh.Write([][]byte{big}, []client.Extent{{Off: 0, Len: int64(len(big))}}, client.IOOpts{Ack: true})
		done <- err
	}()
	select {
	case <-arrived:
	case <-time.After(10 * time.Second):
		t.Fatal("the holder's bulk write did not arrive")
	}
	data := bytes.Repeat([]byte{3}, 3<<20)
	if _, err := fb.Write([][]byte{data}, []client.Extent{{Off: 0, Len: int64(len(data))}}, client.IOOpts{Ack: true}); err != nil {
		t.Fatalf("inline write while the share is held: %v, want success (payloads are the stream's own)", err)
	}
	got := make([]byte, 1<<20)
	if _, err := fb.Read([][]byte{got}, []client.Extent{{Off: 0, Len: int64(len(got))}}, client.IOOpts{}); wire.CodeOf(err) != wire.EAGAIN {
		t.Fatalf("inline read of 1 MiB while the share is held: %v, want EAGAIN", err)
	}
	letGo()
	if err := <-done; err != nil {
		t.Fatalf("the holder's write: %v", err)
	}
	if n, err := fb.Read([][]byte{got}, []client.Extent{{Off: 0, Len: int64(len(got))}}, client.IOOpts{}); err != nil || n != int64(len(got)) || !bytes.Equal(got, data[:len(got)]) {
		t.Fatalf("the read again: %d bytes, %v; the bytes differ: %v", n, err, !bytes.Equal(got, data[:len(got)]))
	}
	for _, f := range []*client.File{fh, fb} {
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if b, err := os.ReadFile(filepath.Join(c.Dir, "hold")); err != nil || !bytes.Equal(b, big) {
		t.Fatalf("hold file: %d bytes, %v", len(b), err)
	}
	if st := c.Servers[0].Stats(); st.TransferBytes > st.TransferLimit || st.TransferWaits == 0 {
		t.Fatalf("transfer memory holds %d bytes at the end (limit %d), %d waits (want some)", st.TransferBytes, st.TransferLimit, st.TransferWaits)
	}
}

// TestInlineOwnQueueBounded: a stream whose worker cannot go on (it waits
// in a collective's end marker for a rank that does not come) reads small
// inline payloads (200 KiB, outside the transfer share) only up to the
// stream's bound of wire.MaxInline, then waits for its worker: not queueLen of
// them. Ending the session frees it.
func TestInlineOwnQueueBounded(t *testing.T) {
	waited := make(chan int64, 1)
	t.Cleanup(server.SetOwnWaitHookForTest(func(q int64) {
		select {
		case waited <- q:
		default:
		}
	}))
	c := testutil.Start(t, testutil.Options{Mutate: func(_ int, cfg *server.Config) { cfg.CollTimeout = time.Minute }})
	ymx := rawSession(t, c)
	st, err := ymx.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	st.Write(frame(wire.TOpen, &wire.Open{Path: filepath.Join(c.Dir, "own"), Flags: wire.ORdwr | wire.OCreat, RegionSize: route.DefaultRegionSize}))
	rd := wire.NewReader(st, 4096)
	st.SetReadDeadline(time.Now().Add(10 * time.Second))
	var o wire.Reply
	if _, err := rd.Next(); err != nil || rd.Decode(&o) != nil || o.Code != wire.OK {
		t.Fatalf("open: %v %+v", err, o)
	}
	// The worker waits here for rank 1 of 2, which never comes.
	st.Write(frame(wire.TCollEnd, &wire.CollEnd{File: o.File, CollTag: wire.CollTag{Size: 2, Seq: 1}}))
	const piece = 200 << 10
	payload := bytes.Repeat([]byte{5}, piece)
	go func() {
		for i := range 60 { // under queueLen: only the byte bound stops the reader
			var b wire.Builder
			b.Add(int64(i)*piece, piece)
			if _, err := st.Write(frame(wire.TWrite, &wire.Write{File: o.File, Ext: b.Bytes()}, payload)); err != nil {
				return // the session ended
			}
		}
	}()
	select {
	case q := <-waited:
		if q > wire.MaxInline || q <= wire.MaxInline-piece {
			t.Fatalf("the reader waited with %d bytes of small payloads queued, want just under wire.MaxInline (%d)", q, wire.MaxInline)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the reader never waited for its worker: small payloads queue without a bound")
	}
	ymx.Close() // the marker's wait ends with the session
	works(t, c)
}
