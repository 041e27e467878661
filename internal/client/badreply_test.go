package client_test

import (
	"context"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/delegate-io/delegate/internal/client"
	"github.com/delegate-io/delegate/internal/transport"
	"github.com/delegate-io/delegate/internal/wire"
	"github.com/hashicorp/yamux"
)

// fakeServer accepts one client on a Unix socket, answers its hello, and
// answers its first request with reply(header of the request); then it
// holds the connection open if hold, else closes it.
func fakeServer(t *testing.T, reply func(h wire.Header) []byte, hold bool) transport.Addr {
	t.Helper()
	dir, err := os.MkdirTemp("", "dlg-fake-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	a := transport.Addr{Net: "unix", Addr: filepath.Join(dir, "s.sock")}
	l, err := transport.Listen(a)
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	t.Cleanup(func() { close(stop); l.Close() })
	go func() {
		conn, err := l.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		if _, fd, _, err := transport.ServerHello(conn); err != nil {
			return
		} else if fd >= 0 {
			os.NewFile(uintptr(fd), "ring").Close()
		}
		if transport.ServerReply(conn, &wire.Reply{Name: "fake"}) != nil {
			return
		}
		conn.SetDeadline(time.Time{})
		ymx, err := yamux.Server(conn, transport.YamuxConfig(nil, 0))
		if err != nil {
			return
		}
		defer ymx.Close()
		st, err := ymx.AcceptStream()
		if err != nil {
			return
		}
		rd := wire.NewReader(st, 4096)
		h, err := rd.Next()
		if err != nil {
			return
		}
		st.Write(reply(h))
		if hold {
			// The client must fail on the reply itself, not on the
			// connection closing.
			select {
			case <-stop:
			case <-time.After(20 * time.Second):
			}
		}
	}()
	return a
}

func header(t wire.Type, fl wire.Flags, id, descLen, payloadLen uint32) []byte {
	b := make([]byte, wire.HeaderSize)
	(&wire.Header{Type: t, Flags: fl, ID: id, DescLen: descLen, PayloadLen: payloadLen}).Put(b)
	return b
}

// TestBadReplies: a server whose reply is malformed gives the client's call
// an error, promptly; the client process does not crash (it decodes replies
// with the same code as the server, which had the lz4 zero-length fault).
func TestBadReplies(t *testing.T) {
	ok, _ := wire.Marshal(&wire.Reply{File: 1})
	cases := []struct {
		name  string
		reply func(h wire.Header) []byte
		close bool // the server closes after the reply
	}{
		{"lz4 zero-length description", func(h wire.Header) []byte {
			d := append([]byte{0x00, 0x40, 'a', 'b', 'c', 'd'}, make([]byte, 16)...)
			return append(header(h.Type|wire.ReplyBit, wire.FlagLZ4, h.ID, uint32(len(d)), 0), d...)
		}, false},
		{"lz4 length past the block", func(h wire.Header) []byte {
			d := append(binary.AppendUvarint(nil, wire.MaxDesc), 0x10, 'x')
			return append(header(h.Type|wire.ReplyBit, wire.FlagLZ4, h.ID, uint32(len(d)), 0), d...)
		}, false},
		{"bad version", func(h wire.Header) []byte {
			b := header(h.Type|wire.ReplyBit, 0, h.ID, 0, 0)
			b[0] = 9
			return b
		}, false},
		{"description not msgpack", func(h wire.Header) []byte {
			return append(header(h.Type|wire.ReplyBit, 0, h.ID, 3, 0), 0xc1, 0xc1, 0xc1)
		}, false},
		{"wrong reply type", func(h wire.Header) []byte {
			return append(header(wire.TStats|wire.ReplyBit, 0, h.ID, uint32(len(ok)), 0), ok...)
		}, false},
		{"unknown request id", func(h wire.Header) []byte {
			return append(header(h.Type|wire.ReplyBit, 0, h.ID+1000, uint32(len(ok)), 0), ok...)
		}, false},
		{"payload announced, a few bytes sent", func(h wire.Header) []byte {
			return append(append(header(h.Type|wire.ReplyBit, 0, h.ID, uint32(len(ok)), wire.MaxPayload), ok...), "abc"...)
		}, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a := fakeServer(t, c.reply, !c.close)
			cfg := client.DefaultConfig()
			cfg.Servers = []transport.Addr{a}
			cfg.Timeout = 2 * time.Second
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			cl, err := client.New(ctx, cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer cl.Close()
			t0 := time.Now()
			_, err = cl.Open(ctx, "/tmp/x", wire.ORdwr, 0, nil)
			if err == nil {
				t.Fatal("open succeeded on a malformed reply")
			}
			if code := wire.CodeOf(err); code != wire.EPROTO && code != wire.ECONNLOST {
				t.Fatalf("error %v (code %v), want EPROTO or ECONNLOST", err, code)
			}
			if d := time.Since(t0); d > 15*time.Second {
				t.Fatalf("error after %v", d)
			}
		})
	}
}
