package client_test

import (
	"path/filepath"
	"testing"

	"github.com/delegate-io/delegate/internal/client"
	"github.com/delegate-io/delegate/internal/server"
	"github.com/delegate-io/delegate/internal/testutil"
	"github.com/delegate-io/delegate/internal/wire"
)

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
