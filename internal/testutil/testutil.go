// Package testutil starts real delegate servers on Unix sockets (or TCP
// loopback) inside a test, in the manner of yamux's testClientServer.
package testutil

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/delegate-io/delegate/internal/client"
	"github.com/delegate-io/delegate/internal/server"
	"github.com/delegate-io/delegate/internal/transport"
)

// Cluster is a set of servers started for one test.
type Cluster struct {
	Addrs   []transport.Addr
	Servers []*server.Server
	Dir     string // a directory the servers may reach, for test files
	Token   string // the servers' token (TCP clusters get one), sent by Config

	opts Options // how Start made them, for Restart
}

// TCPToken is the token of TCP clusters unless Options.Mutate sets another:
// a server refuses to serve TCP without one (or Config.Insecure).
const TCPToken = "testutil-token"

// Options vary a cluster.
type Options struct {
	Servers int
	TCP     bool
	// Local (with TCP): each server also serves a Unix socket and names it
	// in its hello reply, as delegate-server does across hosts.
	Local  bool
	Root   string // default "/"
	Mutate func(i int, c *server.Config)
}

// Start starts o.Servers servers (default 1) and stops them when the test
// ends, checking that shutdown succeeds.
func Start(t testing.TB, o Options) *Cluster {
	t.Helper()
	if o.Servers == 0 {
		o.Servers = 1
	}
	// Unix socket paths are short: use a fresh directory under /tmp.
	dir, err := os.MkdirTemp("", "dlg-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	cl := &Cluster{Dir: filepath.Join(dir, "data"), opts: o}
	if err := os.Mkdir(cl.Dir, 0o755); err != nil {
		t.Fatal(err)
	}
	var ls, locals []net.Listener
	for i := 0; i < o.Servers; i++ {
		var a transport.Addr
		if o.TCP {
			a = transport.Addr{Net: "tcp", Addr: "127.0.0.1:0"}
		} else {
			a = transport.Addr{Net: "unix", Addr: filepath.Join(dir, fmt.Sprintf("s%d.sock", i))}
		}
		l, err := transport.Listen(a)
		if err != nil {
			t.Fatal(err)
		}
		if o.TCP {
			a.Addr = l.Addr().String()
		}
		cl.Addrs = append(cl.Addrs, a)
		ls = append(ls, l)
		if o.TCP && o.Local {
			ll, err := transport.Listen(transport.Addr{Net: "unix", Addr: filepath.Join(dir, fmt.Sprintf("local%d.sock", i))})
			if err != nil {
				t.Fatal(err)
			}
			locals = append(locals, ll)
		}
	}
	peers := transport.Strings(cl.Addrs)
	for i, l := range ls {
		cfg := server.DefaultConfig()
		cfg.Name = peers[i]
		cfg.Peers = peers
		cfg.Index = i
		if o.Root != "" {
			cfg.Root = o.Root
		}
		if o.TCP {
			cfg.Token = TCPToken
		}
		cfg.Logger = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
		if os.Getenv("DELEGATE_TEST_STATE_DIR") != "" {
			// Run a suite with the buffers in state directories.
			cfg.StateDir = filepath.Join(dir, fmt.Sprintf("state%d", i))
		}
		if locals != nil {
			cfg.LocalSocket = locals[i].Addr().String()
		}
		if o.Mutate != nil {
			o.Mutate(i, &cfg)
		}
		s, err := server.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			cl.Token = cfg.Token
		}
		cl.Servers = append(cl.Servers, s)
		serve := func(l net.Listener) {
			if err := s.Serve(l); !errors.Is(err, server.ErrServerClosed) {
				t.Errorf("serve: %v", err)
			}
		}
		go serve(l)
		if locals != nil {
			go serve(locals[i])
		}
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		for _, s := range cl.Servers {
			if err := s.Shutdown(ctx); err != nil {
				t.Errorf("shutdown: %v", err)
			}
		}
	})
	return cl
}

// Config returns a client configuration for the cluster.
func (c *Cluster) Config() client.Config {
	cfg := client.DefaultConfig()
	cfg.Servers = c.Addrs
	cfg.RegionSize = 64 << 10
	if c.Token == TCPToken {
		cfg.Token = c.Token
	}
	return cfg
}

// Client connects a client with cfg (nil: c.Config()) and closes it at the end.
func (c *Cluster) Client(t testing.TB, mutate func(*client.Config)) *client.Client {
	t.Helper()
	cfg := c.Config()
	if mutate != nil {
		mutate(&cfg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cl, err := client.New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Logf("%s", p)
	return len(p), nil
}
