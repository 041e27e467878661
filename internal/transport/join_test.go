package transport_test

import (
	"bytes"
	"encoding/binary"
	"io"
	"math/rand"
	"net"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/delegate-io/delegate/internal/transport"
	"github.com/hashicorp/yamux"
)

// recConn records each Write it gets (a net.Conn for JoinFrames to wrap).
type recConn struct {
	net.Conn
	writes [][]byte
}

func (r *recConn) Write(p []byte) (int, error) {
	r.writes = append(r.writes, append([]byte(nil), p...))
	return len(p), nil
}

func hdr(typ byte, length uint32) []byte {
	h := make([]byte, 12)
	h[1] = typ
	binary.BigEndian.PutUint32(h[4:8], 3) // stream id
	binary.BigEndian.PutUint32(h[8:], length)
	return h
}

// TestJoinFramesWrites: a data frame's header and body leave in one Write;
// every other frame passes at once, and each Write reports its own bytes.
func TestJoinFramesWrites(t *testing.T) {
	body := bytes.Repeat([]byte("b"), 100)
	tests := []struct {
		name   string
		writes [][]byte
		want   []int // the lengths of the underlying writes
	}{
		{"data frame", [][]byte{hdr(0, 100), body}, []int{112}},
		{"two data frames", [][]byte{hdr(0, 100), body, hdr(0, 100), body}, []int{112, 112}},
		{"window update passes", [][]byte{hdr(1, 100)}, []int{12}},
		{"ping passes", [][]byte{hdr(2, 7)}, []int{12}},
		{"empty data frame (FIN) passes", [][]byte{hdr(0, 0)}, []int{12}},
		{"update between data frames", [][]byte{hdr(0, 100), body, hdr(1, 5), hdr(0, 100), body}, []int{112, 12, 112}},
		{"body of 4 KiB copied", [][]byte{hdr(0, 4096), make([]byte, 4096)}, []int{4108}},
		// a plain net.Conn has no writev: net.Buffers writes its two parts
		{"larger body by writev", [][]byte{hdr(0, 5000), make([]byte, 5000)}, []int{12, 5000}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := &recConn{}
			j := transport.JoinFrames(r)
			var all []byte
			for _, w := range tc.writes {
				n, err := j.Write(w)
				if err != nil || n != len(w) {
					t.Fatalf("Write of %d bytes: %d, %v", len(w), n, err)
				}
				all = append(all, w...)
			}
			var got []int
			var sent []byte
			for _, w := range r.writes {
				got = append(got, len(w))
				sent = append(sent, w...)
			}
			if !equalInts(got, tc.want) {
				t.Errorf("underlying writes %v, want %v", got, tc.want)
			}
			if !bytes.Equal(sent, all) {
				t.Errorf("bytes sent differ from the bytes written")
			}
		})
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// countConn counts the Write calls that reach a real socket.
type countConn struct {
	net.Conn
	n atomic.Int64
}

func (c *countConn) Write(p []byte) (int, error) {
	c.n.Add(1)
	return c.Conn.Write(p)
}

// TestJoinFramesYamux: two yamux sessions over a Unix socket, JoinFrames
// on both sides: every message of 1 byte to 300 KiB comes back intact,
// pings are answered, and 200 small messages each way take about one write
// each instead of two.
func TestJoinFramesYamux(t *testing.T) {
	for _, join := range []bool{false, true} {
		a, b := unixPair(t)
		ca, cb := &countConn{Conn: a}, &countConn{Conn: b}
		wrap := func(c net.Conn) net.Conn {
			if join {
				return transport.JoinFrames(c)
			}
			return c
		}
		cfg := yamux.DefaultConfig()
		cfg.LogOutput = io.Discard
		cs, err := yamux.Client(wrap(ca), cfg)
		if err != nil {
			t.Fatal(err)
		}
		ss, err := yamux.Server(wrap(cb), cfg)
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		wg.Add(1)
		go func() { // echo
			defer wg.Done()
			st, err := ss.AcceptStream()
			if err != nil {
				return
			}
			io.Copy(st, st)
			st.Close()
		}()
		st, err := cs.OpenStream()
		if err != nil {
			t.Fatal(err)
		}
		rng := rand.New(rand.NewSource(1))
		small := make([]byte, 100)
		w0 := ca.n.Load() + cb.n.Load()
		for i := 0; i < 200; i++ {
			rng.Read(small)
			echo(t, st, small)
		}
		writes := ca.n.Load() + cb.n.Load() - w0
		for _, n := range []int{1, 4095, 4096, 4097, 65536, 300 << 10} {
			m := make([]byte, n)
			rng.Read(m)
			echo(t, st, m)
		}
		if _, err := cs.Ping(); err != nil {
			t.Fatalf("ping: %v", err)
		}
		st.Close()
		cs.Close()
		ss.Close()
		wg.Wait()
		// 400 messages: 800 writes without joining, plus a few window updates
		if join && writes > 440 {
			t.Errorf("joined: %d writes for 400 small messages, want about 400", writes)
		}
		if !join && writes < 800 {
			t.Errorf("not joined: %d writes for 400 small messages, want 800 or more (does yamux still write header and body apart?)", writes)
		}
		t.Logf("join %v: %d writes for 400 small messages", join, writes)
	}
}

func echo(t *testing.T, st net.Conn, m []byte) {
	t.Helper()
	errc := make(chan error, 1)
	go func() { _, err := st.Write(m); errc <- err }()
	got := make([]byte, len(m))
	if _, err := io.ReadFull(st, got); err != nil {
		t.Fatalf("echo of %d bytes: %v", len(m), err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, m) {
		t.Fatalf("echo of %d bytes came back different", len(m))
	}
}

func unixPair(t *testing.T) (net.Conn, net.Conn) {
	t.Helper()
	l, err := net.Listen("unix", t.TempDir()+"/s")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ch := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			ch <- nil
			return
		}
		ch <- c
	}()
	a, err := net.Dial("unix", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	b := <-ch
	if b == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}
