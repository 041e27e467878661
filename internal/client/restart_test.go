package client_test

import (
	"bytes"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/delegate-io/delegate/internal/client"
	"github.com/delegate-io/delegate/internal/testutil"
	"github.com/delegate-io/delegate/internal/wire"
)

// mirrorBlocked is client's bit of the exported word that forbids direct
// reads (direct.go).
const mirrorBlocked = 1 << 62

// TestServerRestart: a file is open, written, synced and exported for
// direct reads (the words libdelegate's direct.c reads) when its server goes
// away and a new one starts on the same socket. The old file's operations
// fail with a clear error naming the server, its exported word forbids
// direct reads from then on, the control page words stay readable (still
// mapped: the file holds the region) after the client has reconnected, a
// new open works and reads straight from the backend again, and closing the
// old file lets go of everything.
func TestServerRestart(t *testing.T) {
	for _, servers := range []int{1, 2} {
		t.Run(map[int]string{1: "one-server", 2: "two-servers"}[servers], func(t *testing.T) {
			c := testutil.Start(t, testutil.Options{Servers: servers})
			cl := c.Client(t, nil)
			path := filepath.Join(c.Dir, "restart")
			f := open(t, cl, path, wire.ORdwr|wire.OCreat, nil)
			data := bytes.Repeat([]byte("0123456789abcdef"), 16<<10) // 256 KiB: every server gets some
			ext := []client.Extent{{Off: 0, Len: int64(len(data))}}
			if _, err := f.Write([][]byte{data}, ext, client.IOOpts{}); err != nil {
				t.Fatal(err)
			}
			if err := f.Sync(); err != nil {
				t.Fatal(err)
			}
			var mirror atomic.Int64
			fd, words, ok := f.ExportDirect(&mirror)
			if !ok || fd < 0 || len(words) != servers {
				t.Fatalf("ExportDirect: fd %d, %d words, ok %v", fd, len(words), ok)
			}
			word := func(i int) uint64 { return (*atomic.Uint64)(unsafe.Pointer(words[i])).Load() }
			if mirror.Load() != 0 || word(0) != 0 {
				t.Fatalf("synced file: mirror %#x, word %#x; want both 0", mirror.Load(), word(0))
			}

			c.Restart(t, 0)

			// The next operation on the old file fails (the session is found
			// dead when the sync's reply cannot come), and so does every later one.
			start := time.Now()
			err := f.Sync()
			checkLost(t, "sync after restart", err, c.Addrs[0].Addr)
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("the error took %v", d)
			}
			if mirror.Load()&mirrorBlocked == 0 {
				t.Fatalf("exported word %#x allows direct reads of a file whose server restarted", mirror.Load())
			}

			// A new open reconnects, which closes the dead session: its
			// shared memory must stay mapped while the old file holds it.
			g := open(t, cl, path, wire.ORdwr, nil)
			for i := range words {
				_ = word(i) // a SIGSEGV here is the bug this test is for
			}
			buf := make([]byte, len(data))
			_, err = f.Read([][]byte{buf}, ext, client.IOOpts{})
			checkLost(t, "read on the old file", err, c.Addrs[0].Addr)
			if !strings.Contains(err.Error(), "restarted") {
				t.Errorf("after the client reconnected, the error should say the server restarted: %v", err)
			}
			_, err = f.Write([][]byte{data[:10]}, []client.Extent{{Off: 0, Len: 10}}, client.IOOpts{})
			checkLost(t, "write on the old file", err, c.Addrs[0].Addr)
			_, err = f.Size()
			checkLost(t, "size of the old file", err, c.Addrs[0].Addr)
			if _, _, ok := f.ExportDirect(&mirror); ok {
				t.Error("ExportDirect succeeded on a file whose server restarted")
			}

			// The new file works, also for direct reads: the synced data
			// is on the backend.
			d0 := cl.Stats().DirectReads
			n, err := g.Read([][]byte{buf}, ext, client.IOOpts{})
			if err != nil || n != int64(len(data)) || !bytes.Equal(buf, data) {
				t.Fatalf("read on the reopened file: %d bytes, %v, equal %v", n, err, bytes.Equal(buf, data))
			}
			if cl.Stats().DirectReads != d0+1 {
				t.Error("the clean reopened file was not read directly")
			}
			if _, err := g.Write([][]byte{[]byte("new")}, []client.Extent{{Off: 5, Len: 3}}, client.IOOpts{Ack: true}); err != nil {
				t.Fatal(err)
			}
			n, err = g.Read([][]byte{buf[:8]}, []client.Extent{{Off: 0, Len: 8}}, client.IOOpts{})
			if err != nil || string(buf[:n]) != "01234new" {
				t.Fatalf("read back %q, %v", buf[:n], err)
			}

			err = f.Close()
			checkLost(t, "close of the old file", err, c.Addrs[0].Addr)
			if mirror.Load()&mirrorBlocked == 0 {
				t.Error("closed file: exported word allows direct reads")
			}
			if err := g.Close(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// checkLost checks the error of an operation on a file whose server went
// away: ECONNLOST (MPI_ERR_IO in the driver), naming the server, asking to
// reopen the file.
func checkLost(t *testing.T, what string, err error, addr string) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: no error", what)
	}
	var we *wire.Error
	if !errors.As(err, &we) || we.Code != wire.ECONNLOST {
		t.Fatalf("%s: %v (code %v), want ECONNLOST", what, err, wire.CodeOf(err))
	}
	if !strings.Contains(err.Error(), addr) || !strings.Contains(err.Error(), "reopen the file") {
		t.Fatalf("%s: %q should name %s and say to reopen the file", what, err, addr)
	}
}

// TestServerRestartUnderLoad restarts the server while goroutines write,
// sync and read (directly and through the server) on files opened before,
// each also reading its file's exported control page words as stage.c
// does. Under -race this finds unsynchronised use of a session's state by
// its replacement, and without the ownership rule a read of unmapped
// memory. Every operation either succeeds or fails with ECONNLOST; none
// hangs; the workers go on hitting their dead files while the client
// reconnects and a new open works.
func TestServerRestartUnderLoad(t *testing.T) {
	c := testutil.Start(t, testutil.Options{})
	cl := c.Client(t, nil)
	const workers = 4
	files := make([]*client.File, workers)
	for i := range files {
		files[i] = open(t, cl, filepath.Join(c.Dir, "load"+string(rune('a'+i))), wire.ORdwr|wire.OCreat, nil)
	}
	var ready, failed, wg sync.WaitGroup
	var reopened atomic.Bool
	for i, f := range files {
		ready.Add(1)
		failed.Add(1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			isReady, isFailed := sync.OnceFunc(ready.Done), sync.OnceFunc(failed.Done)
			defer isReady()
			defer isFailed()
			p := bytes.Repeat([]byte{byte('A' + i)}, 4096)
			buf := make([]byte, len(p))
			var mirror atomic.Int64
			var words []*uint64
			after := 0 // iterations since the client reconnected
			for k := int64(0); after < 50; k++ {
				if reopened.Load() {
					after++
				}
				off := (k % 64) * 4096
				_, err := f.Write([][]byte{p}, []client.Extent{{Off: off, Len: 4096}}, client.IOOpts{})
				if err == nil && k%8 == 0 {
					err = f.Sync() // so that reads go directly to the backend too
				}
				if err == nil && words == nil {
					if _, ws, ok := f.ExportDirect(&mirror); ok {
						words = ws
					}
				}
				for _, w := range words {
					_ = (*atomic.Uint64)(unsafe.Pointer(w)).Load() // as stage.c does
				}
				if err == nil {
					_, err = f.Read([][]byte{buf}, []client.Extent{{Off: off, Len: 4096}}, client.IOOpts{})
					if err == nil && !bytes.Equal(buf, p) {
						t.Errorf("worker %d: read other bytes than written", i)
					}
				}
				if k == 9 || err != nil {
					isReady() // a direct read and reads through the server done (or an error)
				}
				if err != nil {
					if wire.CodeOf(err) != wire.ECONNLOST || !strings.Contains(err.Error(), "reopen the file") {
						t.Errorf("worker %d: %v, want ECONNLOST saying to reopen the file", i, err)
					}
					isFailed()
				}
			}
			if words == nil {
				t.Errorf("worker %d: the file was never exported for direct reads", i)
			}
		}()
	}
	ready.Wait()
	c.Restart(t, 0)
	done := make(chan struct{})
	go func() { failed.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("operations on files of the restarted server did not fail within 20 s")
	}
	// Reconnect while the workers keep hitting their dead files.
	g := open(t, cl, filepath.Join(c.Dir, "after"), wire.ORdwr|wire.OCreat, nil)
	reopened.Store(true)
	if _, err := g.Write([][]byte{[]byte("ok")}, []client.Extent{{Off: 0, Len: 2}}, client.IOOpts{Ack: true}); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	for _, f := range files {
		if err := f.Close(); wire.CodeOf(err) != wire.ECONNLOST {
			t.Errorf("close of a file of the restarted server: %v", err)
		}
	}
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
}
