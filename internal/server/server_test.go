package server_test

import (
	"bytes"
	"context"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/delegate-io/delegate/internal/client"
	"github.com/delegate-io/delegate/internal/monitor"
	"github.com/delegate-io/delegate/internal/server"
	"github.com/delegate-io/delegate/internal/testutil"
	"github.com/delegate-io/delegate/internal/transport"
	"github.com/delegate-io/delegate/internal/wire"
)

// works checks that the cluster still serves a real client.
func works(t *testing.T, c *testutil.Cluster) {
	t.Helper()
	cl := c.Client(t, nil)
	f, err := cl.Open(context.Background(), filepath.Join(c.Dir, "ok"), wire.ORdwr|wire.OCreat, 0, nil)
	if err != nil {
		t.Fatalf("server stopped serving: %v", err)
	}
	if _, err := f.Write([][]byte{[]byte("fine")}, []client.Extent{{Off: 0, Len: 4}}, client.IOOpts{Ack: true}); err != nil {
		t.Fatal(err)
	}
	f.Close()
}

func TestSurvivesGarbage(t *testing.T) {
	c := testutil.Start(t, testutil.Options{})
	a := c.Addrs[0]
	garbage := [][]byte{
		[]byte("GET / HTTP/1.1\r\n\r\n"),
		bytes.Repeat([]byte{0xff}, 100),
		{1, 1, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0x7f, 0, 0, 0, 0}, // huge description
		{},
	}
	for _, g := range garbage {
		conn, err := net.Dial(a.Net, a.Addr)
		if err != nil {
			t.Fatal(err)
		}
		conn.Write(g)
		conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		buf := make([]byte, 256)
		conn.Read(buf) // the server answers or closes; it must not hang or die
		conn.Close()
	}
	works(t, c)
	if n := c.Servers[0].Stats().Rejected; n < 3 {
		t.Fatalf("%d connections refused, want >= 3", n)
	}
}

func TestBadFrameOnStream(t *testing.T) {
	c := testutil.Start(t, testutil.Options{})
	st, err := rawSession(t, c).OpenStream() // hello as a client, then frames by hand
	if err != nil {
		t.Fatal(err)
	}
	// A frame whose description is not msgpack of the right shape: the
	// server replies EPROTO and keeps the stream.
	enc := wire.NewEncoder(wire.Compression{})
	enc.Append(wire.TOpen, 1, "not an open request")
	// Then a header with an unknown type: the stream is closed.
	bad := make([]byte, wire.HeaderSize)
	(&wire.Header{Type: wire.TOpen}).Put(bad)
	bad[1] = 99
	st.Write(append(enc.Bytes(), bad...))
	rd := wire.NewReader(st, 4096)
	st.SetReadDeadline(time.Now().Add(5 * time.Second))
	h, err := rd.Next()
	if err != nil || h.Type != wire.TOpen|wire.ReplyBit {
		t.Fatalf("reply to a bad description: %v %v", h, err)
	}
	var r wire.Reply
	if err := rd.Decode(&r); err != nil || r.Code != wire.EPROTO {
		t.Fatalf("reply %+v %v, want EPROTO", r, err)
	}
	if _, err := rd.Next(); err == nil {
		t.Fatal("stream stayed open after an unknown frame type")
	}
	works(t, c)
	if n := c.Servers[0].Stats().BadFrames; n < 2 {
		t.Fatalf("bad frames counted %d, want 2", n)
	}
}

func TestPeerListMismatchRefused(t *testing.T) {
	c := testutil.Start(t, testutil.Options{Servers: 2})
	cfg := c.Config()
	cfg.Servers = []transport.Addr{c.Addrs[1], c.Addrs[0]} // wrong order
	_, err := client.New(context.Background(), cfg)
	if wire.CodeOf(err) != wire.ENOTOWNER {
		t.Fatalf("client with a reordered list: %v, want ENOTOWNER", err)
	}
}

func TestTokenRequired(t *testing.T) {
	c := testutil.Start(t, testutil.Options{TCP: true, Mutate: func(i int, cfg *server.Config) { cfg.Token = "s3cret" }})
	cfg := c.Config()
	if _, err := client.New(context.Background(), cfg); wire.CodeOf(err) != wire.EACCES {
		t.Fatalf("no token: %v, want EACCES", err)
	}
	cfg.Token = "s3cret"
	cl, err := client.New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	cl.Close()
}

// TestStopRequest: a monitor's stop request reaches the server's owner;
// a client session may not send one.
func TestStopRequest(t *testing.T) {
	c := testutil.Start(t, testutil.Options{})
	s := c.Servers[0]
	st, err := rawSession(t, c).OpenStream() // hello as a client, then frames by hand
	if err != nil {
		t.Fatal(err)
	}
	enc := wire.NewEncoder(wire.Compression{})
	enc.Append(wire.TStats, 1, &wire.Stats{Stop: true})
	st.Write(enc.Bytes())
	rd := wire.NewReader(st, 64<<10)
	st.SetReadDeadline(time.Now().Add(5 * time.Second))
	var r wire.Reply
	if _, err := rd.Next(); err != nil {
		t.Fatal(err)
	}
	if err := rd.Decode(&r); err != nil || r.Code != wire.EACCES {
		t.Fatalf("a client session's stop request: %+v %v, want EACCES", r, err)
	}
	select {
	case <-s.StopRequested():
		t.Fatal("stop requested by a client session")
	default:
	}
	m, err := monitor.Connect(context.Background(), c.Addrs[0].String(), "", nil, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if _, err := m.Stop(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.StopRequested():
	case <-time.After(5 * time.Second):
		t.Fatal("the stop request did not reach the server")
	}
}
