package testutil

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/delegate-io/delegate/internal/server"
	"github.com/delegate-io/delegate/internal/transport"
)

// Restart stops server i at once, as a crash would for its clients (their
// connections end mid-stream; what it buffers is still written out, in the
// background), and starts a new server with the same configuration on the
// same address. Only for Unix socket clusters: a TCP port may be taken.
func (c *Cluster) Restart(t testing.TB, i int) {
	t.Helper()
	a := c.Addrs[i]
	if a.Net != "unix" {
		t.Fatalf("Restart: server %d listens on %s, not a Unix socket", i, a)
	}
	old := c.Servers[i]
	old.Close()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := old.Shutdown(ctx); err != nil {
			t.Errorf("shutdown of the restarted server: %v", err)
		}
	})
	l, err := transport.Listen(a)
	if err != nil {
		t.Fatal(err)
	}
	peers := transport.Strings(c.Addrs)
	cfg := server.DefaultConfig()
	cfg.Name = peers[i]
	cfg.Peers = peers
	cfg.Index = i
	if c.opts.Root != "" {
		cfg.Root = c.opts.Root
	}
	cfg.Logger = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	if c.opts.Mutate != nil {
		c.opts.Mutate(i, &cfg)
	}
	s, err := server.New(cfg)
	if err != nil {
		l.Close()
		t.Fatal(err)
	}
	c.Servers[i] = s // Start's cleanup shuts it down
	go func() {
		if err := s.Serve(l); !errors.Is(err, server.ErrServerClosed) {
			t.Errorf("serve: %v", err)
		}
	}()
}
