package server_test

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/delegate-io/delegate/internal/client"
	"github.com/delegate-io/delegate/internal/route"
	"github.com/delegate-io/delegate/internal/server"
	"github.com/delegate-io/delegate/internal/testutil"
	"github.com/delegate-io/delegate/internal/transport"
	"github.com/delegate-io/delegate/internal/wire"
	"github.com/hashicorp/yamux"
)

// bulkSession says hello over TCP asking for n bulk connections and returns
// the control connection's yamux session and the hello reply.
func bulkSession(t *testing.T, c *testutil.Cluster, n uint32) (*yamux.Session, *wire.Reply) {
	t.Helper()
	conn, err := transport.Dial(context.Background(), c.Addrs[0], time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	h := &wire.Hello{Client: "raw", Servers: uint32(len(c.Addrs)),
		ListHash: route.ListHash(transport.Strings(c.Addrs)), Bulk: n}
	rep, err := transport.ClientHello(conn, h, -1, 5*time.Second, c.Token)
	if err != nil || rep.Err() != nil {
		conn.Close()
		t.Fatalf("hello: %v %v", err, rep)
	}
	if rep.BulkID == 0 || rep.BulkConns != n || len(rep.BulkNonce) == 0 {
		t.Fatalf("hello reply offers no bulk connections: %+v", rep)
	}
	ymx, err := yamux.Client(conn, transport.YamuxConfig(nil, 0))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ymx.Close() })
	return ymx, rep
}

// bulkBind opens a connection and sends a bind header with tag; it returns
// the connection.
func bulkBind(t *testing.T, c *testutil.Cluster, id uint64, idx uint32, tag []byte) net.Conn {
	t.Helper()
	conn, err := transport.Dial(context.Background(), c.Addrs[0], time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	b := make([]byte, wire.BulkHeaderSize)
	(&wire.BulkHeader{Kind: wire.BulkBind, Index: idx, Seq: id, Len: uint64(len(tag))}).Put(b)
	conn.Write(append(b, tag...))
	return conn
}

// acked reads the server's bind acknowledgement.
func acked(t *testing.T, conn net.Conn, id uint64, idx uint32) {
	t.Helper()
	b := make([]byte, wire.BulkHeaderSize)
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := readFull(conn, b); err != nil {
		t.Fatalf("bind acknowledgement: %v", err)
	}
	h, err := wire.ParseBulkHeader(b)
	if err != nil || h.Kind != wire.BulkBind || h.Seq != id || h.Index != idx || h.Len != 0 {
		t.Fatalf("bind acknowledgement %+v, %v", h, err)
	}
	conn.SetReadDeadline(time.Time{})
}

func readFull(c net.Conn, b []byte) (int, error) {
	n := 0
	for n < len(b) {
		k, err := c.Read(b[n:])
		n += k
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// TestBulkBindRefused: a bulk connection with a wrong tag, for an unknown
// session, an index beyond what was granted, one bound twice, or garbage
// after the first byte is closed within the handshake timeout, counted as
// refused, and the server goes on serving.
func TestBulkBindRefused(t *testing.T) {
	c := testutil.Start(t, testutil.Options{TCP: true, Mutate: func(_ int, cfg *server.Config) {
		cfg.HandshakeTimeout = 500 * time.Millisecond
	}})
	_, rep := bulkSession(t, c, 2)
	key := transport.BulkKey(c.Token)
	good := func(idx uint32) []byte { tag := transport.BulkTag(key, rep.BulkID, rep.BulkNonce, idx); return tag[:] }
	// One good binding first, so that "bound twice" has something to hit.
	acked(t, bulkBind(t, c, rep.BulkID, 0, good(0)), rep.BulkID, 0)
	wrongKey := transport.BulkTag(transport.BulkKey("other"), rep.BulkID, rep.BulkNonce, 1)
	tests := []struct {
		name string
		conn func() net.Conn
	}{
		{"wrong key", func() net.Conn { return bulkBind(t, c, rep.BulkID, 1, wrongKey[:]) }},
		{"tag of another index", func() net.Conn { return bulkBind(t, c, rep.BulkID, 1, good(0)) }},
		{"unknown session", func() net.Conn { return bulkBind(t, c, rep.BulkID+100, 1, good(1)) }},
		{"index not granted", func() net.Conn { return bulkBind(t, c, rep.BulkID, 2, good(2)) }},
		{"bound twice", func() net.Conn { return bulkBind(t, c, rep.BulkID, 0, good(0)) }},
		{"short tag", func() net.Conn { return bulkBind(t, c, rep.BulkID, 1, good(1)[:16]) }},
		{"garbage", func() net.Conn {
			conn, err := transport.Dial(context.Background(), c.Addrs[0], time.Second, nil)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { conn.Close() })
			conn.Write([]byte("Bxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"))
			return conn
		}},
		{"silent after the first byte", func() net.Conn {
			conn, err := transport.Dial(context.Background(), c.Addrs[0], time.Second, nil)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { conn.Close() })
			conn.Write([]byte("B"))
			return conn
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := c.Servers[0].Stats().Rejected
			if !closedWithin(tc.conn(), 3*time.Second) {
				t.Fatal("the server kept the connection open")
			}
			if got := c.Servers[0].Stats().Rejected; got != before+1 {
				t.Fatalf("rejected %d, want %d", got, before+1)
			}
		})
	}
	if s := c.Servers[0].Stats(); s.BulkConns != 1 {
		t.Fatalf("%d bulk connections bound, want 1", s.BulkConns)
	}
	rawSession(t, c) // still serving
}

// TestBulkTransferBroken: a write whose data does not come, or comes with
// a header that does not match its description, closes the session (its
// connections are out of step) within the bulk timeout, counted; the
// server serves other sessions meanwhile and afterwards.
func TestBulkTransferBroken(t *testing.T) {
	t.Cleanup(server.SetBulkTimeoutForTest(300 * time.Millisecond))
	tests := []struct {
		name    string
		send    func(b net.Conn)
		bulkLen uint64 // of the description; 0: 1 MiB, what its extents cover
	}{
		{"silent", func(net.Conn) {}, 0},
		{"extents do not cover the bulk length", func(b net.Conn) {
			h := make([]byte, wire.BulkHeaderSize)
			(&wire.BulkHeader{Kind: wire.BulkWrite, Seq: 1, Len: 2 << 20}).Put(h)
			b.Write(append(h, make([]byte, 2<<20)...))
		}, 2 << 20},
		{"half the data", func(b net.Conn) {
			h := make([]byte, wire.BulkHeaderSize)
			(&wire.BulkHeader{Kind: wire.BulkWrite, Seq: 1, Len: 1 << 20}).Put(h)
			b.Write(append(h, make([]byte, 512<<10)...))
		}, 0},
		{"wrong sequence", func(b net.Conn) {
			h := make([]byte, wire.BulkHeaderSize)
			(&wire.BulkHeader{Kind: wire.BulkWrite, Seq: 2, Len: 1 << 20}).Put(h)
			b.Write(append(h, make([]byte, 1<<20)...))
		}, 0},
		{"more than announced", func(b net.Conn) {
			h := make([]byte, wire.BulkHeaderSize)
			(&wire.BulkHeader{Kind: wire.BulkWrite, Seq: 1, Len: 2 << 20}).Put(h)
			b.Write(append(h, make([]byte, 2<<20)...))
		}, 0},
		{"bad header", func(b net.Conn) {
			b.Write(make([]byte, wire.BulkHeaderSize))
		}, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// The bind's goroutine is held after its acknowledgement until
			// the stream set the deadline of the transfer's first read:
			// nothing the bind does then may undo it (it once cleared it,
			// and a silent sender held the session forever).
			release := make(chan struct{})
			var once sync.Once
			unblock := func() { once.Do(func() { close(release) }) }
			t.Cleanup(server.SetBulkHooksForTest(func() { <-release }, unblock)) // after the server stopped
			defer unblock()
			c := testutil.Start(t, testutil.Options{TCP: true})
			st, b := bulkStream(t, c)
			var xb wire.Builder
			xb.Add(0, 1<<20)
			bl := tc.bulkLen
			if bl == 0 {
				bl = 1 << 20
			}
			st.Write(frame(wire.TWrite, &wire.Write{File: 1, Ext: xb.Bytes(), BulkRef: wire.BulkRef{BulkLen: bl, BulkSeq: 1}}))
			tc.send(b)
			start := time.Now()
			if !closedWithin(st, 5*time.Second) {
				t.Fatal("the session stayed open")
			}
			if !closedWithin(b, 5*time.Second) {
				t.Fatal("the bulk connection stayed open")
			}
			if d := time.Since(start); d > 3*time.Second {
				t.Fatalf("closed after %v", d)
			}
			if s := c.Servers[0].Stats(); s.BulkErrors != 1 {
				t.Fatalf("%d failed bulk transfers counted, want 1", s.BulkErrors)
			}
			rawSession(t, c)
		})
	}
}

// TestBulkSpliceSmallPipe: spliced writes through pipes of one page and of
// 16 pages (a pipe's slots run out before its bytes when the socket's
// pieces are smaller than pages: fillPipe drains what it holds) put every
// byte in its place, for sizes around the pipe's and the direct-write
// threshold, and all of them are spliced.
func TestBulkSpliceSmallPipe(t *testing.T) {
	for _, pipe := range []int{4 << 10, 64 << 10} {
		t.Run(fmt.Sprint(pipe), func(t *testing.T) {
			t.Cleanup(server.SetPipeBytesForTest(pipe))
			c := testutil.Start(t, testutil.Options{TCP: true})
			cl := c.Client(t, nil)
			path := filepath.Join(c.Dir, "f")
			f, err := cl.Open(context.Background(), path, wire.ORdwr|wire.OCreat, 0o644, nil)
			if err != nil {
				t.Fatal(err)
			}
			rng := rand.New(rand.NewPCG(3, 4))
			var want []byte
			var spliced int64
			for _, n := range []int64{1 << 20, 1<<20 + 1, 2<<20 - 3, 4<<20 + 4095} {
				b := make([]byte, n)
				for i := range b {
					b[i] = byte(rng.Uint32())
				}
				if _, err := f.Write([][]byte{b}, []client.Extent{{Off: int64(len(want)), Len: n}}, client.IOOpts{}); err != nil {
					t.Fatalf("write %d: %v", n, err)
				}
				want = append(want, b...)
				spliced += n
			}
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
			disk, err := os.ReadFile(path)
			if err != nil || !bytes.Equal(disk, want) {
				t.Fatalf("backend file: %d bytes, want %d, equal %v (%v)", len(disk), len(want), bytes.Equal(disk, want), err)
			}
			if st := c.Servers[0].Stats(); st.BulkSpliced != spliced || st.BulkErrors != 0 {
				t.Fatalf("spliced %d bytes, want %d; %d bulk errors", st.BulkSpliced, spliced, st.BulkErrors)
			}
		})
	}
}

// TestBulkUpgradeUnderTransfer: a file's descriptor is replaced by a
// writable one (another open with write access: reopenWritable) between
// the moment a spliced write or a sendfile checked it and the transfer.
// The transfer must still reach the file: the old descriptor is not closed
// under it, and a splice takes the descriptor under flushMu.
func TestBulkUpgradeUnderTransfer(t *testing.T) {
	const size = 4 << 20
	tests := []struct {
		name  string
		write bool // a spliced write; else a sendfile read
	}{
		{name: "spliced write", write: true},
		{name: "sendfile read"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := testutil.Start(t, testutil.Options{TCP: true})
			cl := c.Client(t, nil)
			path := filepath.Join(c.Dir, "upgrade")
			data := bytes.Repeat([]byte("0123456789abcdef"), size/16)
			flags := wire.ORdwr | wire.OCreat
			if !tc.write {
				if err := os.WriteFile(path, data, 0o644); err != nil {
					t.Fatal(err)
				}
				flags = wire.ORdonly
			}
			f, err := cl.Open(context.Background(), path, flags, 0o644, nil)
			if err != nil {
				t.Fatal(err)
			}
			var once sync.Once
			upgraded := false
			restore := c.Servers[0].SetSpliceTakenHookForTest(func(p string, upgrade func() error) {
				if p != path {
					return
				}
				once.Do(func() {
					if err := upgrade(); err != nil {
						t.Errorf("upgrade: %v", err)
					}
					upgraded = true
				})
			})
			defer restore()
			ext := []client.Extent{{Off: 0, Len: size}}
			if tc.write {
				if n, err := f.Write([][]byte{data}, ext, client.IOOpts{Ack: true}); err != nil || n != size {
					t.Fatalf("write: %d, %v", n, err)
				}
			}
			got := make([]byte, size)
			if n, err := f.Read([][]byte{got}, ext, client.IOOpts{}); err != nil || n != size || !bytes.Equal(got, data) {
				t.Fatalf("read: %d, %v (same bytes: %v)", n, err, bytes.Equal(got, data))
			}
			if !upgraded {
				t.Fatal("the hook never ran: no splice or sendfile")
			}
			st := c.Servers[0].Stats()
			if tc.write && st.BulkSpliced == 0 || !tc.write && st.BulkSentFile == 0 || st.BulkErrors != 0 {
				t.Fatalf("spliced %d, sent by sendfile %d, bulk errors %d", st.BulkSpliced, st.BulkSentFile, st.BulkErrors)
			}
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
			if b, err := os.ReadFile(path); err != nil || !bytes.Equal(b, data) {
				t.Fatalf("backend file: %d bytes, %v", len(b), err)
			}
		})
	}
}

// TestBulkSpliceRefused: the backend refuses a splice (EINVAL, as a file
// system or an O_DIRECT file without splice does, or EOPNOTSUPP) in the
// middle of a spliced write. The bytes already in the pipe are written
// with pwrite, the writer sees success, and the file's later bulk writes
// are not spliced.
func TestBulkSpliceRefused(t *testing.T) {
	const size = 4 << 20
	tests := []struct {
		refusal error
		always  bool // every splice after the first pipe's worth, else once
	}{{syscall.EINVAL, false}, {syscall.EOPNOTSUPP, true}}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%v, always %v", tc.refusal, tc.always), func(t *testing.T) {
			c := testutil.Start(t, testutil.Options{TCP: true})
			cl := c.Client(t, nil)
			path := filepath.Join(c.Dir, "refused")
			f, err := cl.Open(context.Background(), path, wire.ORdwr|wire.OCreat, 0o644, nil)
			if err != nil {
				t.Fatal(err)
			}
			data := make([]byte, 2*size)
			for i := range data {
				data[i] = byte(i*13/7) ^ byte(i>>20)
			}
			// After the first pipe's worth went in by splice.
			var calls atomic.Int64
			restore := server.SetSpliceFailForTest(func() error {
				if k := calls.Add(1); k == 2 || k > 2 && tc.always {
					return tc.refusal
				}
				return nil
			})
			defer restore()
			for i := range 2 {
				ext := []client.Extent{{Off: int64(i) * size, Len: size}}
				if n, err := f.Write([][]byte{data[i*size : (i+1)*size]}, ext, client.IOOpts{Ack: true}); err != nil || n != size {
					t.Fatalf("write %d: %d, %v; want success", i, n, err)
				}
				st := c.Servers[0].Stats()
				if st.SpliceRefused != 1 || st.BulkErrors != 0 || st.BulkSpliced != size {
					t.Fatalf("after write %d: splice refused for %d files (want 1), %d bulk errors, %d bytes spliced (want %d: the first write's, none of the second's)",
						i, st.SpliceRefused, st.BulkErrors, st.BulkSpliced, size)
				}
			}
			got := make([]byte, 2*size)
			if n, err := f.Read([][]byte{got}, []client.Extent{{Off: 0, Len: 2 * size}}, client.IOOpts{}); err != nil || n != 2*size || !bytes.Equal(got, data) {
				t.Fatalf("read: %d, %v (same bytes: %v)", n, err, bytes.Equal(got, data))
			}
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
			if b, err := os.ReadFile(path); err != nil || !bytes.Equal(b, data) {
				t.Fatalf("backend file: %d bytes, %v", len(b), err)
			}
		})
	}
}

// TestBulkBuffersBounded: many sessions' concurrent bulk writes that are
// read into memory (below --direct, so not spliced) never hold more
// receive buffers than their share of --buffer, and that share, the
// write-behind limit and the chunk pool together stay within --buffer.
func TestBulkBuffersBounded(t *testing.T) {
	const (
		buffer  = 32 << 20
		piece   = 2 << 20
		clients = 8
		rounds  = 4
	)
	// Receivers that hold a buffer wait until a third one holds one too
	// (the share holds two pieces) or one waits for room: then all go on.
	var mu sync.Mutex
	holders := 0
	release := make(chan struct{})
	var once sync.Once
	open := func() { once.Do(func() { close(release) }) }
	defer open()
	t.Cleanup(server.SetBulkHooksForTest(nil, func() {
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
	writeRounds(t, c, func() *client.Client { return c.Client(t, nil) }, "bounded", clients, piece, rounds)
	st := c.Servers[0].Stats()
	t.Logf("bulk buffers: peak %d of %d, %d waits; write-behind limit %d; bulk in %d, spliced %d",
		st.TransferPeak, st.TransferLimit, st.TransferWaits, st.BufferLimit, st.BulkIn, st.BulkSpliced)
	if st.BulkIn != clients*rounds*piece || st.BulkSpliced != 0 {
		t.Fatalf("bulk in %d, spliced %d: want %d read into memory", st.BulkIn, st.BulkSpliced, clients*rounds*piece)
	}
	if st.TransferLimit <= 0 || st.TransferPeak > st.TransferLimit || st.TransferPeak < piece || st.TransferWaits == 0 {
		t.Fatalf("transfer memory peaked at %d bytes, share %d, %d waits for room (want some)", st.TransferPeak, st.TransferLimit, st.TransferWaits)
	}
	if st.BufferLimit+st.TransferLimit > buffer-buffer/4 {
		t.Fatalf("write-behind limit %d and bulk share %d exceed --buffer %d less the pool's quarter", st.BufferLimit, st.TransferLimit, buffer)
	}
}

// TestBulkBufferBusy: a bulk write that finds no room for its receive
// buffer for bulkTimeout fails with EAGAIN, its transfer taken and dropped:
// the session stays in step and its next write succeeds.
func TestBulkBufferBusy(t *testing.T) {
	t.Cleanup(server.SetXferMemWaitForTest(100 * time.Millisecond))
	arrived, release := make(chan struct{}), make(chan struct{})
	var releaseOnce sync.Once
	letGo := func() { releaseOnce.Do(func() { close(release) }) }
	defer letGo() // also when the test fails before it lets the holder go
	var first atomic.Bool
	t.Cleanup(server.SetBulkHooksForTest(nil, func() {
		if !first.Swap(true) { // the first receiver holds the whole share
			close(arrived)
			<-release
		}
	}))
	// Started after the hooks: their restores run after it stopped.
	c := testutil.Start(t, testutil.Options{TCP: true, Mutate: func(_ int, cfg *server.Config) {
		cfg.BufferBytes, cfg.DirectBytes = 32<<20, 16<<20
	}})
	hold, busy := c.Client(t, nil), c.Client(t, nil)
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
	<-arrived
	small := bytes.Repeat([]byte{2}, 1<<20)
	_, err := fb.Write([][]byte{small}, []client.Extent{{Off: 0, Len: int64(len(small))}}, client.IOOpts{Ack: true})
	if wire.CodeOf(err) != wire.EAGAIN {
		t.Fatalf("write while the share is held: %v, want EAGAIN", err)
	}
	letGo()
	if err := <-done; err != nil {
		t.Fatalf("the holder's write: %v", err)
	}
	if _, err := fb.Write([][]byte{small}, []client.Extent{{Off: 0, Len: int64(len(small))}}, client.IOOpts{Ack: true}); err != nil {
		t.Fatalf("the next write of the same session: %v", err)
	}
	for _, f := range []*client.File{fh, fb} {
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if st := c.Servers[0].Stats(); st.BulkErrors != 0 || st.TransferWaits == 0 {
		t.Fatalf("bulk errors %d (want 0: no session closed), waits %d", st.BulkErrors, st.TransferWaits)
	}
	if b, err := os.ReadFile(filepath.Join(c.Dir, "busy")); err != nil || !bytes.Equal(b, small) {
		t.Fatalf("busy file: %d bytes, %v", len(b), err)
	}
}

// writeRounds has clients clients (made by newClient) at once each write
// rounds pieces of piece bytes, acknowledged, to a file of its own
// (name-i in c.Dir), close it and check its bytes; it fails t on the first
// error.
func writeRounds(t *testing.T, c *testutil.Cluster, newClient func() *client.Client, name string, clients, piece, rounds int) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make([]error, clients)
	for i := range clients {
		cl := newClient()
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = func() error {
				path := filepath.Join(c.Dir, fmt.Sprintf("%s-%d", name, i))
				f, err := cl.Open(context.Background(), path, wire.ORdwr|wire.OCreat, 0o644, nil)
				if err != nil {
					return err
				}
				data := bytes.Repeat([]byte{byte(i + 1)}, piece)
				for r := range rounds {
					ext := []client.Extent{{Off: int64(r * piece), Len: int64(piece)}}
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
}

// TestBulkSkippedDescription (found in review): a write skipped for its
// description's size (over wire.MaxRequestDesc) on a session with bulk
// connections may have named a transfer nobody will take; the session
// ends at once, counted, as for a description that does not decode,
// instead of failing a later, valid transfer on that connection.
func TestBulkSkippedDescription(t *testing.T) {
	c := testutil.Start(t, testutil.Options{TCP: true})
	st, b := bulkStream(t, c)
	st.Write(frame(wire.TWrite, &wire.Write{File: 1, Ext: make([]byte, wire.MaxRequestDesc+1), BulkRef: wire.BulkRef{BulkLen: 1 << 20, BulkSeq: 1}}))
	if !closedWithin(st, 5*time.Second) {
		t.Fatal("the session stayed open")
	}
	if !closedWithin(b, 5*time.Second) {
		t.Fatal("the bulk connection stayed open")
	}
	if s := c.Servers[0].Stats(); s.BulkErrors != 1 {
		t.Fatalf("%d failed bulk transfers counted, want 1", s.BulkErrors)
	}
	rawSession(t, c)
}

// bulkStream opens a raw session with one bound bulk connection, opens its
// stream and sends the open of file 1 (c.Dir/f, unanswered yet).
func bulkStream(t *testing.T, c *testutil.Cluster) (*yamux.Stream, net.Conn) {
	t.Helper()
	ymx, rep := bulkSession(t, c, 1)
	key := transport.BulkKey(c.Token)
	tag := transport.BulkTag(key, rep.BulkID, rep.BulkNonce, 0)
	b := bulkBind(t, c, rep.BulkID, 0, tag[:])
	acked(t, b, rep.BulkID, 0)
	st, err := ymx.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	st.Write(frame(wire.TOpen, &wire.Open{Path: filepath.Join(c.Dir, "f"), Flags: wire.ORdwr | wire.OCreat, RegionSize: route.DefaultRegionSize}))
	return st, b
}
