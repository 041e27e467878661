package client_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/delegate-io/delegate/internal/client"
	"github.com/delegate-io/delegate/internal/server"
	"github.com/delegate-io/delegate/internal/testutil"
	"github.com/delegate-io/delegate/internal/transport"
	"github.com/delegate-io/delegate/internal/wire"
)

// recorder is a TCP proxy in front of one server that keeps every byte
// that crosses it, both ways. Close stops it and waits for its goroutines.
type recorder struct {
	l  net.Listener
	to string
	wg sync.WaitGroup

	mu    sync.Mutex
	bytes [2]bytes.Buffer // client to server, server to client
	conns []net.Conn
}

func newRecorder(t *testing.T, to transport.Addr) *recorder {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &recorder{l: l, to: to.Addr}
	r.wg.Add(1)
	go r.accept()
	t.Cleanup(r.Close)
	return r
}

func (r *recorder) addr() transport.Addr {
	return transport.Addr{Net: "tcp", Addr: r.l.Addr().String()}
}

func (r *recorder) accept() {
	defer r.wg.Done()
	for {
		c, err := r.l.Accept()
		if err != nil {
			return
		}
		s, err := net.DialTimeout("tcp", r.to, 5*time.Second)
		if err != nil {
			c.Close()
			continue
		}
		r.mu.Lock()
		r.conns = append(r.conns, c, s)
		r.mu.Unlock()
		r.wg.Add(2)
		go r.pipe(s, c, 0)
		go r.pipe(c, s, 1)
	}
}

// pipe copies src to dst, recording into bytes[dir]; it closes both ends
// when src ends, so the other direction ends too.
func (r *recorder) pipe(dst, src net.Conn, dir int) {
	defer r.wg.Done()
	defer dst.Close()
	defer src.Close()
	buf := make([]byte, 64<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			r.mu.Lock()
			r.bytes[dir].Write(buf[:n])
			r.mu.Unlock()
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (r *recorder) Close() {
	r.l.Close()
	r.mu.Lock()
	for _, c := range r.conns {
		c.Close()
	}
	r.mu.Unlock()
	r.wg.Wait()
}

// recorded returns everything that crossed the proxy, both directions.
func (r *recorder) recorded() []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append(append([]byte(nil), r.bytes[0].Bytes()...), r.bytes[1].Bytes()...)
}

// secretForms are the ways a secret could show in a byte stream: as it
// is, in hex and base64 (of the text and of the 32 bytes it encodes), in
// either case.
func secretForms(secret string, raw []byte) [][]byte {
	var out [][]byte
	for _, s := range []string{secret, strings.ToUpper(secret), hex.EncodeToString([]byte(secret)),
		base64.StdEncoding.EncodeToString([]byte(secret)), base64.RawURLEncoding.EncodeToString([]byte(secret)),
		string(raw), base64.StdEncoding.EncodeToString(raw), base64.RawStdEncoding.EncodeToString(raw),
		base64.RawURLEncoding.EncodeToString(raw)} {
		out = append(out, []byte(s))
		// a part long enough to be no accident (a prefix a stream might cut)
		out = append(out, []byte(s[:len(s)/2]))
	}
	return out
}

// session runs a whole client session through the recorders: open, an
// acknowledged write over both servers, sync, read back, stat, a counter,
// close, delete.
func session(t *testing.T, c *testutil.Cluster, mutate func(*client.Config), addrs []transport.Addr, path string, data []byte) {
	t.Helper()
	cl := c.Client(t, func(cfg *client.Config) {
		cfg.Servers = addrs
		if mutate != nil {
			mutate(cfg)
		}
	})
	f := open(t, cl, path, wire.ORdwr|wire.OCreat, nil)
	if _, err := f.Write([][]byte{data}, []client.Extent{{Off: 0, Len: int64(len(data))}}, client.IOOpts{Ack: true}); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(data))
	if n, err := f.Read([][]byte{got}, []client.Extent{{Off: 0, Len: int64(len(got))}}, client.IOOpts{}); err != nil || !bytes.Equal(got[:n], data) {
		t.Fatalf("read back %d bytes, %v", n, err)
	}
	if sz, err := f.Size(); err != nil || sz != int64(len(data)) {
		t.Fatalf("size %d, %v", sz, err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := cl.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestSecretNeverOnTheWire: a full session (hello, writes, reads, sync,
// close) with a TCP cluster that requires the job secret, recorded byte for
// byte both ways: the secret appears in none of its forms. The recording
// is shown to work (the path and the data are in it), and the check to be
// able to fail (it finds the secret planted in a copy of the recording).
func TestSecretNeverOnTheWire(t *testing.T) {
	var raw [32]byte
	rand.Read(raw[:])
	secret := hex.EncodeToString(raw[:]) // as delegate-run makes it
	c := testutil.Start(t, testutil.Options{Servers: 2, TCP: true, Mutate: func(i int, cfg *server.Config) { cfg.Token = secret }})
	var addrs []transport.Addr
	var recs []*recorder
	for _, a := range c.Addrs {
		r := newRecorder(t, a)
		recs = append(recs, r)
		addrs = append(addrs, r.addr())
	}
	path := filepath.Join(c.Dir, "recorded-file-name")
	data := bytes.Repeat([]byte("recorded data! "), 20000) // 300 KB over both servers
	session(t, c, func(cfg *client.Config) { cfg.Token = secret }, addrs, path, data)
	for i, r := range recs {
		r.Close()
		wire := r.recorded()
		if !bytes.Contains(wire, []byte("recorded-file-name")) || !bytes.Contains(wire, []byte("recorded data! recorded data!")) {
			t.Fatalf("server %d: the recording (%d bytes) lacks the path or the data: it records nothing useful", i, len(wire))
		}
		for _, form := range secretForms(secret, raw[:]) {
			if bytes.Contains(wire, form) {
				t.Errorf("server %d: the secret is on the wire as %q", i, form)
			}
			planted := append(append([]byte(nil), wire...), form...)
			if !bytes.Contains(planted, form) {
				t.Fatal("the check cannot find what is there")
			}
		}
		t.Logf("server %d: %d bytes recorded, no form of the secret in them", i, len(wire))
	}
	// A client with another secret is refused, and learns nothing to say so.
	_, err := client.New(context.Background(), func() client.Config {
		cfg := c.Config()
		cfg.Token = strings.Repeat("0", 64)
		return cfg
	}())
	if wire.CodeOf(err) != wire.EACCES || !strings.Contains(err.Error(), "wrong or missing token") {
		t.Fatalf("wrong secret: %v", err)
	}
}

// tlsPair makes a certificate for 127.0.0.1 (only) and returns the server's
// configuration and a client's that trusts it.
func tlsPair(t *testing.T) (srv func(int, *server.Config), ca string) {
	t.Helper()
	cert, key, err := transport.SelfSigned([]string{"127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	sc, err := transport.ServerTLS(transport.InlinePEM(cert), transport.InlinePEM(key))
	if err != nil {
		t.Fatal(err)
	}
	return func(i int, cfg *server.Config) { cfg.TLS = sc }, transport.InlinePEM(cert)
}

// TestTLS: with TLS, a session works end to end and nothing of it is
// readable on the wire (neither the path nor the data); a client that
// trusts another CA, or none, is refused with a clear error.
func TestTLS(t *testing.T) {
	srvTLS, ca := tlsPair(t)
	c := testutil.Start(t, testutil.Options{Servers: 2, TCP: true, Mutate: srvTLS})
	clientTLS, err := transport.ClientTLS(ca)
	if err != nil {
		t.Fatal(err)
	}
	var addrs []transport.Addr
	var recs []*recorder
	for _, a := range c.Addrs {
		r := newRecorder(t, a)
		recs = append(recs, r)
		addrs = append(addrs, r.addr())
	}
	data := bytes.Repeat([]byte("tls data in clear? "), 10000)
	session(t, c, func(cfg *client.Config) { cfg.TLS = clientTLS }, addrs, filepath.Join(c.Dir, "tls-file-name"), data)
	for i, r := range recs {
		r.Close()
		w := r.recorded()
		if len(w) < len(data)/2 {
			t.Fatalf("server %d: only %d bytes recorded", i, len(w))
		}
		if bytes.Contains(w, []byte("tls-file-name")) || bytes.Contains(w, []byte("tls data in clear?")) || bytes.Contains(w, []byte(testutil.TCPToken)) {
			t.Errorf("server %d: plaintext on the TLS wire", i)
		}
	}
	if st := c.Servers[0].Stats(); st.SessionsTCP != 1 {
		t.Errorf("server 0 counted %d tcp sessions, want 1", st.SessionsTCP)
	}

	_, otherCA := tlsPair(t)
	otherTLS, err := transport.ClientTLS(otherCA)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		tls  func(*client.Config)
		code wire.Code
		msg  string
	}{
		{"wrong CA", func(cfg *client.Config) { cfg.TLS = otherTLS }, wire.EACCES, "not signed by DELEGATE_TLS_CA"},
		{"name not in the certificate", func(cfg *client.Config) {
			cfg.TLS = clientTLS
			cfg.Servers = append([]transport.Addr(nil), cfg.Servers...)
			for i := range cfg.Servers {
				_, port, _ := net.SplitHostPort(cfg.Servers[i].Addr)
				cfg.Servers[i].Addr = net.JoinHostPort("localhost", port)
			}
		}, wire.EACCES, "does not name"},
		{"no TLS", func(cfg *client.Config) { cfg.TLS = nil }, wire.EUNREACHABLE, "requires TLS? set DELEGATE_TLS_CA"},
	}
	for _, tc := range cases {
		cfg := c.Config()
		tc.tls(&cfg)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		start := time.Now()
		_, err := client.New(ctx, cfg)
		cancel()
		if wire.CodeOf(err) != tc.code || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: %v (code %v), want %v with %q", tc.name, err, wire.CodeOf(err), tc.code, tc.msg)
		}
		if d := time.Since(start); d > 8*time.Second {
			t.Errorf("%s: took %v", tc.name, d)
		}
		t.Logf("%s: %v", tc.name, err)
	}
}

// TestServerNamedByNameOrAddress: servers started with a list of host
// names serve a client whose list gives the same servers by address (and
// the other way round): identity is the server's, not the text's. A list
// naming one server twice (by name and by address) is refused, with or
// without a server list on the servers.
func TestServerNamedByNameOrAddress(t *testing.T) {
	byName := func(addrs []string) []string {
		var out []string
		for _, a := range addrs {
			out = append(out, strings.Replace(a, "tcp:127.0.0.1:", "tcp:localhost:", 1))
		}
		return out
	}
	for _, serverNames := range []bool{true, false} {
		c := testutil.Start(t, testutil.Options{Servers: 2, TCP: true, Mutate: func(i int, cfg *server.Config) {
			if serverNames {
				cfg.Peers = byName(cfg.Peers)
			}
		}})
		addrs := c.Addrs // 127.0.0.1:port
		if !serverNames {
			// servers by address, client by name
			addrs = nil
			for _, s := range byName(transport.Strings(c.Addrs)) {
				a, err := transport.ParseAddr(s)
				if err != nil {
					t.Fatal(err)
				}
				addrs = append(addrs, a)
			}
		}
		data := bytes.Repeat([]byte("identity "), 30000) // several regions on each server
		session(t, c, nil, addrs, filepath.Join(c.Dir, "ident"), data)
		for i, s := range c.Servers {
			if st := s.Stats(); st.BackendWriteBytes == 0 {
				t.Errorf("server names %v: server %d got no data", serverNames, i)
			}
		}
	}

	// One server listed twice, by address and by name.
	for _, peers := range []bool{true, false} {
		c := testutil.Start(t, testutil.Options{Servers: 2, TCP: true, Mutate: func(i int, cfg *server.Config) {
			if !peers {
				cfg.Peers = nil
			}
		}})
		cfg := c.Config()
		twice, err := transport.ParseAddr(byName(transport.Strings(c.Addrs))[0])
		if err != nil {
			t.Fatal(err)
		}
		cfg.Servers = []transport.Addr{c.Addrs[0], twice}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err = client.New(ctx, cfg)
		cancel()
		want := "names one server twice"
		if peers {
			want = "number 0 of 2 in its list, the client says 1 of 2" // the server's own check comes first
		}
		if wire.CodeOf(err) != wire.ENOTOWNER || !strings.Contains(err.Error(), want) {
			t.Errorf("server list on the servers %v: %v, want ENOTOWNER with %q", peers, err, want)
		}
	}
}

// TestRegionFollowsStripingHints: ROMIO's striping hints set the region
// size by route.FitRegion (delegate_region_size, when given, wins), and
// the servers accept the pieces cut that way.
func TestRegionFollowsStripingHints(t *testing.T) {
	c := testutil.Start(t, testutil.Options{Servers: 2})
	cl := c.Client(t, nil) // DELEGATE_REGION_SIZE 64K (testutil)
	cases := []struct {
		hints map[string]string
		want  string
	}{
		{nil, "65536"},
		{map[string]string{"striping_unit": "262144"}, "262144"},
		{map[string]string{"striping_unit": "262144", "striping_factor": "4"}, "524288"},
		{map[string]string{"striping_unit": "262144", "striping_factor": "3"}, "262144"},
		{map[string]string{"striping_unit": "262144", "striping_factor": "4", "delegate_region_size": "128K"}, "131072"},
		{map[string]string{"striping_unit": "0"}, "65536"},
	}
	for i, tc := range cases {
		f := open(t, cl, filepath.Join(c.Dir, fmt.Sprintf("striped%d", i)), wire.ORdwr|wire.OCreat, tc.hints)
		if got, err := f.Hint("delegate_region_size"); err != nil || got != tc.want {
			t.Errorf("hints %v: region size %s (%v), want %s", tc.hints, got, err, tc.want)
		}
		data := bytes.Repeat([]byte{byte(i + 1)}, 3<<20)
		if _, err := f.Write([][]byte{data}, []client.Extent{{Off: 0, Len: int64(len(data))}}, client.IOOpts{Ack: true}); err != nil {
			t.Fatalf("hints %v: %v", tc.hints, err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := cl.Open(ctx, filepath.Join(c.Dir, "bad"), wire.ORdwr|wire.OCreat, 0o644, map[string]string{"striping_unit": "lots"}); wire.CodeOf(err) != wire.EHINT {
		t.Errorf("striping_unit=lots: %v, want EHINT", err)
	}
}
