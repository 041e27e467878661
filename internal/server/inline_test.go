package server_test

import (
	"bytes"
	"context"
	"fmt"
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

// TestInlinePayloadsBounded: inline write payloads count in the server's
// transfer memory (a share of --buffer): eight clients' 2 MiB payloads
// against a 4 MiB share never hold more than the share; readers wait for
// room instead, and every byte arrives.
func TestInlinePayloadsBounded(t *testing.T) {
	const (
		buffer  = 32 << 20 // a 4 MiB share
		piece   = 2 << 20
		clients = 8
		rounds  = 4
	)
	// Readers that hold a payload wait until a third one holds one too
	// (the share holds two) or one waits for room: then all go on.
	var mu sync.Mutex
	holders := 0
	release := make(chan struct{})
	var once sync.Once
	open := func() { once.Do(func() { close(release) }) }
	defer open()
	t.Cleanup(server.SetPayloadHookForTest(func() {
		mu.Lock()
		if holders++; holders >= 3 {
			open()
		}
		mu.Unlock()
		<-release
	}))
	t.Cleanup(server.SetXferMemWaitHookForTest(open))
	// Started after the hooks: their restores run after it stopped.
	c := testutil.Start(t, testutil.Options{TCP: true, Mutate: func(_ int, cfg *server.Config) {
		cfg.BufferBytes, cfg.DirectBytes = buffer, 8<<20
	}})
	var wg sync.WaitGroup
	errs := make([]error, clients)
	for i := range clients {
		cl := inlineClient(t, c)
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = func() error {
				path := filepath.Join(c.Dir, fmt.Sprintf("inline-%d", i))
				f, err := cl.Open(context.Background(), path, wire.ORdwr|wire.OCreat, 0o644, nil)
				if err != nil {
					return err
				}
				data := bytes.Repeat([]byte{byte(i + 1)}, piece)
				for r := range rounds {
					ext := []client.Extent{{Off: int64(r) * piece, Len: piece}}
					if _, err := f.Write([][]byte{data}, ext, client.IOOpts{Ack: true}); err != nil {
						f.Close()
						return err
					}
				}
				if err := f.Close(); err != nil {
					return err
				}
				got, err := os.ReadFile(path)
				if err != nil || !bytes.Equal(got, bytes.Repeat(data, rounds)) {
					return fmt.Errorf("%s: %d bytes, %v; not the written ones", path, len(got), err)
				}
				return nil
			}()
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	st := c.Servers[0].Stats()
	t.Logf("transfer memory: peak %d of %d, %d waits, %d now; bulk in %d", st.TransferPeak, st.TransferLimit, st.TransferWaits, st.TransferBytes, st.BulkIn)
	if st.BulkIn != 0 {
		t.Fatalf("bulk in %d: want every byte inline", st.BulkIn)
	}
	if st.TransferLimit <= 0 || st.TransferPeak > st.TransferLimit || st.TransferPeak < piece || st.TransferWaits == 0 {
		t.Fatalf("transfer memory peaked at %d bytes, share %d, %d waits for room (want some)", st.TransferPeak, st.TransferLimit, st.TransferWaits)
	}
	if st.TransferBytes != 0 {
		t.Fatalf("transfer memory holds %d bytes after every request was answered", st.TransferBytes)
	}
}

// TestInlineTransferBusy: while one payload holds the whole transfer
// share, another session's inline write and inline read wait for room and
// fail with EAGAIN after xferWait (the write's payload taken and dropped);
// the session goes on, and once the share is free both succeed.
func TestInlineTransferBusy(t *testing.T) {
	t.Cleanup(server.SetXferMemWaitForTest(100 * time.Millisecond))
	arrived, release := make(chan struct{}), make(chan struct{})
	var releaseOnce sync.Once
	letGo := func() { releaseOnce.Do(func() { close(release) }) }
	defer letGo()
	var armed atomic.Bool
	t.Cleanup(server.SetPayloadHookForTest(func() {
		if armed.Swap(false) { // the payload after arming holds the whole share
			close(arrived)
			<-release
		}
	}))
	c := testutil.Start(t, testutil.Options{TCP: true, Mutate: func(_ int, cfg *server.Config) {
		cfg.BufferBytes, cfg.DirectBytes = 32<<20, 16<<20
	}})
	hold, busy := inlineClient(t, c), inlineClient(t, c)
	openFile := func(cl *client.Client, name string) *client.File {
		f, err := cl.Open(context.Background(), filepath.Join(c.Dir, name), wire.ORdwr|wire.OCreat, 0o644, nil)
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	fh, fb := openFile(hold, "hold"), openFile(busy, "busy")
	small := bytes.Repeat([]byte{2}, 1<<20)
	if _, err := fb.Write([][]byte{small}, []client.Extent{{Off: 0, Len: int64(len(small))}}, client.IOOpts{Ack: true}); err != nil {
		t.Fatal(err)
	}
	armed.Store(true)                     // the hold file's write is the one held
	big := bytes.Repeat([]byte{1}, 6<<20) // above the 4 MiB share: admitted alone
	done := make(chan error, 1)
	go func() {
		_, err := fh.Write([][]byte{big}, []client.Extent{{Off: 0, Len: int64(len(big))}}, client.IOOpts{Ack: true})
		done <- err
	}()
	select {
	case <-arrived:
	case <-time.After(10 * time.Second):
		t.Fatal("the holder's payload did not arrive")
	}
	other := bytes.Repeat([]byte{3}, 1<<20)
	if _, err := fb.Write([][]byte{other}, []client.Extent{{Off: 0, Len: int64(len(other))}}, client.IOOpts{Ack: true}); wire.CodeOf(err) != wire.EAGAIN {
		t.Fatalf("inline write while the share is held: %v, want EAGAIN", err)
	}
	got := make([]byte, len(small))
	if _, err := fb.Read([][]byte{got}, []client.Extent{{Off: 0, Len: int64(len(got))}}, client.IOOpts{}); wire.CodeOf(err) != wire.EAGAIN {
		t.Fatalf("inline read of 1 MiB while the share is held: %v, want EAGAIN", err)
	}
	letGo()
	if err := <-done; err != nil {
		t.Fatalf("the holder's write: %v", err)
	}
	if n, err := fb.Read([][]byte{got}, []client.Extent{{Off: 0, Len: int64(len(got))}}, client.IOOpts{}); err != nil || n != int64(len(got)) || !bytes.Equal(got, small) {
		t.Fatalf("the read again: %d bytes, %v; the bytes differ: %v", n, err, !bytes.Equal(got, small))
	}
	for _, f := range []*client.File{fh, fb} {
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if b, err := os.ReadFile(filepath.Join(c.Dir, "busy")); err != nil || !bytes.Equal(b, small) {
		t.Fatalf("busy file: %d bytes, %v (the refused write must not land)", len(b), err)
	}
	if b, err := os.ReadFile(filepath.Join(c.Dir, "hold")); err != nil || !bytes.Equal(b, big) {
		t.Fatalf("hold file: %d bytes, %v", len(b), err)
	}
	if st := c.Servers[0].Stats(); st.TransferBytes != 0 || st.TransferWaits < 2 {
		t.Fatalf("transfer memory holds %d bytes at the end (want 0), %d waits (want 2)", st.TransferBytes, st.TransferWaits)
	}
}

// TestInlineOwnQueueBounded: a stream whose worker cannot go on (it waits
// in a collective's end marker for a rank that does not come) reads small
// inline payloads (200 KiB, outside the transfer share) only up to the
// stream's bound of 4 MiB, then waits for its worker: not queueLen of
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
		if q > 4<<20 || q < 4<<20-piece {
			t.Fatalf("the reader waited with %d bytes of small payloads queued, want just under 4 MiB", q)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the reader never waited for its worker: small payloads queue without a bound")
	}
	ymx.Close() // the marker's wait ends with the session
	works(t, c)
}
