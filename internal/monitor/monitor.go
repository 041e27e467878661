// Package monitor is the stats-only client of a delegate server, for
// `delegate-server stats` and delegate-run: it opens no files.
package monitor

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/delegate-io/delegate/internal/stats"
	"github.com/delegate-io/delegate/internal/transport"
	"github.com/delegate-io/delegate/internal/wire"
	"github.com/hashicorp/yamux"
)

// Monitor is a stats-only connection to a running server, for
// `delegate-server stats` and delegate-run. It opens no files.
type Monitor struct {
	addr transport.Addr
	ymx  *yamux.Session
	st   io.ReadWriteCloser
	rd   *wire.Reader
	enc  *wire.Encoder
	id   uint32
}

// Connect opens a monitor session to the server at addr.
func Connect(ctx context.Context, addr, token string, tc *tls.Config, timeout time.Duration) (*Monitor, error) {
	a, err := transport.ParseAddr(addr)
	if err != nil {
		return nil, err
	}
	c, err := transport.Dial(ctx, a, timeout, tc)
	if err != nil {
		return nil, err
	}
	host, _ := os.Hostname()
	h := &wire.Hello{Client: fmt.Sprintf("monitor@%s:%d", host, os.Getpid()), Monitor: true}
	rep, err := transport.ClientHello(c, h, -1, timeout, token)
	if err == nil {
		err = rep.Err()
	}
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("delegate server %s: %w", a, err)
	}
	ymx, err := yamux.Client(c, transport.YamuxConfig(nil, 0))
	if err != nil {
		c.Close()
		return nil, err
	}
	st, err := ymx.OpenStream()
	if err != nil {
		ymx.Close()
		return nil, err
	}
	return &Monitor{addr: a, ymx: ymx, st: st, rd: wire.NewReader(st, 64<<10), enc: wire.NewEncoder(wire.Compression{})}, nil
}

// Stats fetches a snapshot.
func (m *Monitor) Stats() (stats.Snapshot, error) { return m.stats(false) }

// Stop fetches a snapshot and asks the server to shut down gracefully, as
// SIGTERM does; it returns once the server has the request.
func (m *Monitor) Stop() (stats.Snapshot, error) { return m.stats(true) }

func (m *Monitor) stats(stop bool) (stats.Snapshot, error) {
	var snap stats.Snapshot
	m.id++
	m.enc.Reset()
	if err := m.enc.Append(wire.TStats, m.id, &wire.Stats{Stop: stop}); err != nil {
		return snap, err
	}
	if _, err := m.st.Write(m.enc.Bytes()); err != nil {
		return snap, fmt.Errorf("delegate server %s: %w", m.addr, err)
	}
	h, err := m.rd.Next()
	if err != nil {
		return snap, fmt.Errorf("delegate server %s: %w", m.addr, err)
	}
	var rep wire.Reply
	if err := m.rd.Decode(&rep); err != nil {
		return snap, err
	}
	if err := rep.Err(); err != nil {
		return snap, err
	}
	if h.ID != m.id || h.Type != wire.TStats|wire.ReplyBit {
		return snap, wire.Errorf(wire.EPROTO, "unexpected %v", h.Type)
	}
	b, err := m.rd.ReadPayloadAll() // grows as the bytes arrive
	if err != nil {
		return snap, err
	}
	err = wire.Unmarshal(b, &snap)
	return snap, err
}

// Close ends the session.
func (m *Monitor) Close() error { return m.ymx.Close() }
