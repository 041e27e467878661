package transport

import (
	"bytes"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/delegate-io/delegate/internal/wire"
)

// fakeServer answers one hello on c as a server holding secret would
// (Challenge when secret is set), after tamper may change its reply.
func fakeServer(c net.Conn, secret string, tamper func(*wire.Reply)) error {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	h, _, frame, err := ServerHello(c)
	if err != nil {
		return err
	}
	var a *ServerAuth
	if secret != "" {
		a, err = Challenge(c, []byte(secret), h, frame)
		if err != nil {
			rep := wire.ReplyTo(err)
			_ = ServerReply(c, &rep)
			return err
		}
	}
	rep := wire.Reply{Name: "fake", ID: "id0", Local: "/tmp/x.sock", Host: "host"}
	a.Sign(&rep)
	if tamper != nil {
		tamper(&rep)
	}
	return ServerReply(c, &rep)
}

func TestAuth(t *testing.T) {
	cases := []struct {
		name           string
		server, client string
		tamper         func(*wire.Reply)
		clientErr      string // error ClientHello returns
		refused        wire.Code
	}{
		{name: "same secret", server: "s3cret", client: "s3cret"},
		{name: "no secrets", server: "", client: ""},
		{name: "client without", server: "s3cret", client: "", refused: wire.EACCES},
		{name: "wrong secret", server: "s3cret", client: "s3cre", refused: wire.EACCES},
		{name: "trailing newline", server: "s3cret", client: "s3cret\n", refused: wire.EACCES},
		{name: "server without", server: "", client: "s3cret", clientErr: "asked for no secret"},
		{name: "reply redirected", server: "s3cret", client: "s3cret",
			tamper: func(r *wire.Reply) { r.Local = "/tmp/evil.sock" }, clientErr: "proof does not match"},
		{name: "proof dropped", server: "s3cret", client: "s3cret",
			tamper: func(r *wire.Reply) { r.Proof = nil }, clientErr: "proof does not match"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cc, sc := net.Pipe()
			done := make(chan error, 1)
			go func() { done <- fakeServer(sc, c.server, c.tamper) }()
			h := &wire.Hello{Client: "t", Servers: 1}
			rep, err := ClientHello(cc, h, -1, 5*time.Second, c.client)
			cc.Close()
			srvErr := <-done
			switch {
			case c.clientErr != "":
				if err == nil || !strings.Contains(err.Error(), c.clientErr) || wire.CodeOf(err) != wire.EACCES {
					t.Fatalf("client error %v, want EACCES with %q", err, c.clientErr)
				}
			case c.refused != wire.OK:
				if err != nil || rep.Code != c.refused || !strings.Contains(rep.Msg, "wrong or missing token") {
					t.Fatalf("got %v %+v, want refusal %v", err, rep, c.refused)
				}
				if wire.CodeOf(srvErr) != wire.EACCES {
					t.Fatalf("server error %v, want EACCES", srvErr)
				}
			default:
				if err != nil || rep.Err() != nil || rep.Name != "fake" {
					t.Fatalf("got %v %+v", err, rep)
				}
				if srvErr != nil {
					t.Fatalf("server: %v", srvErr)
				}
			}
		})
	}
}

// TestChallengeBounds: answers of the wrong size, the wrong type or too
// large are refused, and the server waits no longer than its deadline.
func TestChallengeBounds(t *testing.T) {
	frameOf := func(typ wire.Type, v any) []byte {
		enc := wire.NewEncoder(wire.Compression{})
		if err := enc.Append(typ, 0, v); err != nil {
			t.Fatal(err)
		}
		return append([]byte(nil), enc.Bytes()...)
	}
	nonce := bytes.Repeat([]byte{1}, wire.AuthNonceSize)
	cases := []struct {
		name   string
		answer []byte // nil: say nothing
		code   wire.Code
	}{
		{"short proof", frameOf(wire.TAuth, &wire.Auth{Proof: []byte{1, 2, 3}}), wire.EACCES},
		{"long proof", frameOf(wire.TAuth, &wire.Auth{Proof: make([]byte, 64)}), wire.EACCES},
		{"not an answer", frameOf(wire.TOpen, &wire.Open{Path: "/x"}), wire.EPROTO},
		{"huge frame", func() []byte {
			b := frameOf(wire.TAuth, &wire.Auth{})
			b[8], b[9], b[10] = 0, 0, 2 // description of 128 KiB announced
			return b
		}(), wire.EPROTO},
		{"silence", nil, wire.ETIMEDOUT},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cc, sc := net.Pipe()
			defer cc.Close()
			go func() {
				var hb [4096]byte
				cc.Read(hb[:]) // the challenge
				if c.answer != nil {
					cc.Write(c.answer)
				}
			}()
			_ = sc.SetDeadline(time.Now().Add(300 * time.Millisecond))
			start := time.Now()
			_, err := Challenge(sc, []byte("s3cret"), &wire.Hello{Nonce: nonce}, []byte("hello"))
			if err == nil {
				t.Fatal("accepted")
			}
			var ne net.Error
			if c.code == wire.ETIMEDOUT {
				if !errors.As(err, &ne) || !ne.Timeout() {
					t.Fatalf("err %v, want a timeout", err)
				}
				if d := time.Since(start); d > 2*time.Second {
					t.Fatalf("waited %v", d)
				}
				return
			}
			if wire.CodeOf(err) != c.code {
				t.Fatalf("err %v, want %v", err, c.code)
			}
		})
	}
}

func TestProofOK(t *testing.T) {
	p := ClientProof([]byte("k"), []byte("sn"), []byte("cn"), []byte("hello"))
	if len(p) != wire.AuthProofSize || !proofOK(p, p) {
		t.Fatalf("proof of %d bytes not accepted", len(p))
	}
	q := append([]byte(nil), p...)
	q[31] ^= 1
	for _, bad := range [][]byte{nil, q, p[:31], append(append([]byte(nil), p...), 0)} {
		if proofOK(bad, p) {
			t.Errorf("proof %x accepted", bad)
		}
	}
	// A client's proof never passes as a server's, nor one for other nonces.
	if bytes.Equal(p, ClientProof([]byte("k"), []byte("cn"), []byte("sn"), []byte("hello"))) {
		t.Error("nonces in either order give the same proof")
	}
	sp := ServerProof([]byte("k"), []byte("sn"), []byte("cn"), []byte("hello"), &wire.Reply{})
	if bytes.Equal(p, sp) {
		t.Error("client and server proofs coincide")
	}
}

// FuzzHandshakeFrame: whatever arrives as a handshake frame is bounded,
// never panics, and decodes into a hello, an auth or a reply or fails.
func FuzzHandshakeFrame(f *testing.F) {
	for _, v := range []struct {
		t wire.Type
		d any
	}{
		{wire.THello, &wire.Hello{Client: "c", Servers: 2, Nonce: make([]byte, 32)}},
		{wire.TAuth | wire.ReplyBit, &wire.Auth{Nonce: make([]byte, 32)}},
		{wire.TAuth, &wire.Auth{Proof: make([]byte, 32)}},
		{wire.THello | wire.ReplyBit, &wire.Reply{Name: "s", ID: "x", Proof: make([]byte, 32)}},
	} {
		enc := wire.NewEncoder(wire.Compression{})
		if err := enc.Append(v.t, 0, v.d); err != nil {
			f.Fatal(err)
		}
		f.Add(append([]byte(nil), enc.Bytes()...))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, v := range []any{&wire.Hello{}, &wire.Auth{}, &wire.Reply{}} {
			_, frame, err := readOne(bytes.NewReader(b), nil, v)
			if err == nil && (len(frame) > wire.HeaderSize+maxHandshakeDesc || !bytes.Equal(frame, b[:len(frame)])) {
				t.Fatalf("frame of %d bytes from %d", len(frame), len(b))
			}
		}
	})
}
