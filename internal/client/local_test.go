package client_test

import (
	"bytes"
	"path/filepath"
	"testing"

	"github.com/delegate-io/delegate/internal/client"
	"github.com/delegate-io/delegate/internal/server"
	"github.com/delegate-io/delegate/internal/testutil"
	"github.com/delegate-io/delegate/internal/wire"
)

// TestLocalServerOverSharedMemory: servers named by TCP addresses that run
// on the client's own host are reached through the Unix socket their hello
// reply names, with the shared-memory ring (and direct reads); with
// PreferLocal off the same client stays on TCP. The servers' per-transport
// counters tell which was used.
func TestLocalServerOverSharedMemory(t *testing.T) {
	for _, local := range []bool{true, false} {
		c := testutil.Start(t, testutil.Options{Servers: 2, TCP: true, Local: true})
		cl := c.Client(t, func(cfg *client.Config) { cfg.PreferLocal = local })
		path := filepath.Join(c.Dir, "local")
		f := open(t, cl, path, wire.ORdwr|wire.OCreat, nil)
		data := bytes.Repeat([]byte("0123456789abcdef"), 16<<10) // 256 KiB over both servers
		if _, err := f.Write([][]byte{data}, []client.Extent{{Off: 0, Len: int64(len(data))}}, client.IOOpts{Ack: true}); err != nil {
			t.Fatal(err)
		}
		if err := f.Sync(); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, len(data))
		if n, err := f.Read([][]byte{got}, []client.Extent{{Off: 0, Len: int64(len(got))}}, client.IOOpts{}); err != nil || !bytes.Equal(got[:n], data) {
			t.Fatalf("prefer local %v: read back %d bytes, %v", local, n, err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		for i, s := range c.Servers {
			st := s.Stats()
			ring, tcp := int64(0), int64(1)
			if local {
				ring, tcp = 1, 0
			}
			if st.SessionsRing != ring || st.SessionsTCP != tcp || st.SessionsUnix != 0 {
				t.Errorf("prefer local %v: server %d counted %d ring, %d unix, %d tcp sessions; want %d ring, %d tcp",
					local, i, st.SessionsRing, st.SessionsUnix, st.SessionsTCP, ring, tcp)
			}
		}
		if direct := cl.Stats().DirectReads; local != (direct > 0) {
			t.Errorf("prefer local %v: %d direct reads", local, direct)
		}
	}
}

// TestLocalSocketUnusable: a server names a Unix socket nobody listens on;
// the client stays on TCP and works.
func TestLocalSocketUnusable(t *testing.T) {
	c := testutil.Start(t, testutil.Options{Servers: 1, TCP: true, Mutate: func(i int, cfg *server.Config) {
		cfg.LocalSocket = filepath.Join(t.TempDir(), "nobody.sock")
	}})
	cl := c.Client(t, nil)
	f := open(t, cl, filepath.Join(c.Dir, "f"), wire.ORdwr|wire.OCreat, nil)
	if _, err := f.Write([][]byte{[]byte("tcp")}, []client.Extent{{Off: 0, Len: 3}}, client.IOOpts{Ack: true}); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if st := c.Servers[0].Stats(); st.SessionsTCP != 1 || st.SessionsRing != 0 {
		t.Errorf("sessions: %d tcp, %d ring; want 1 tcp", st.SessionsTCP, st.SessionsRing)
	}
}

// TestLocalMoveAtLimit (found in review): a client named its server by TCP
// address, runs on its host and moves to the Unix socket; at
// --max-sessions 1 its TCP session held the one place while it said hello
// on the Unix socket, so the move was refused, the client stayed on TCP
// (no ring) and the server counted a refusal. The Unix hello pairs with
// the TCP session now and takes no place of its own.
func TestLocalMoveAtLimit(t *testing.T) {
	c := testutil.Start(t, testutil.Options{Servers: 1, TCP: true, Local: true, Mutate: func(i int, cfg *server.Config) {
		cfg.MaxSessions = 1
	}})
	cl := c.Client(t, func(cfg *client.Config) { cfg.PreferLocal = true })
	f := open(t, cl, filepath.Join(c.Dir, "f"), wire.ORdwr|wire.OCreat, nil)
	if _, err := f.Write([][]byte{[]byte("x")}, []client.Extent{{Off: 0, Len: 1}}, client.IOOpts{Ack: true}); err != nil {
		t.Fatal(err)
	}
	f.Close()
	st := c.Servers[0].Stats()
	if st.SessionsRing != 1 || st.SessionsRefused != 0 {
		t.Errorf("one client at --max-sessions 1: %d ring, %d tcp sessions, %d refused; want the ring session and no refusal",
			st.SessionsRing, st.SessionsTCP, st.SessionsRefused)
	}
}
