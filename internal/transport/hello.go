package transport

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"time"

	"github.com/delegate-io/delegate/internal/wire"
	"github.com/hashicorp/yamux"
	"golang.org/x/sys/unix"
)

// Dial connects to a, failing within timeout with a wire.EUNREACHABLE error
// that names the address. With tc, a TCP connection runs TLS (tls.go): a
// server whose certificate the client does not trust fails with EACCES.
func Dial(ctx context.Context, a Addr, timeout time.Duration, tc *tls.Config) (net.Conn, error) {
	deadline := time.Now().Add(timeout)
	d := net.Dialer{Deadline: deadline}
	c, err := d.DialContext(ctx, a.Net, a.Addr)
	if err != nil {
		return nil, wire.Errorf(wire.EUNREACHABLE, "delegate server %s: %w", a, err)
	}
	if t, ok := c.(*net.TCPConn); ok {
		_ = t.SetNoDelay(true)
		if tc != nil {
			return dialTLS(c, a, tc, deadline)
		}
	}
	return c, nil
}

// Listen listens on a; for a Unix socket a stale socket file is replaced.
func Listen(a Addr) (net.Listener, error) {
	if a.Net == "unix" {
		// A socket left by a server that died is in the way; a live one
		// answers, and then we refuse to steal its address.
		if c, err := net.DialTimeout("unix", a.Addr, 200*time.Millisecond); err == nil {
			c.Close()
			return nil, fmt.Errorf("listen %s: another server is listening there", a)
		}
		_ = unix.Unlink(a.Addr)
	}
	l, err := net.Listen(a.Net, a.Addr)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", a, err)
	}
	return l, nil
}

// ClientHello sends h on the raw connection, with ringFD (if >= 0) as
// SCM_RIGHTS on a Unix socket, and waits up to timeout for the reply. With
// a secret it answers the server's challenge and accepts the reply only if
// the server proves it holds the same secret (wire/spec.md,
// "Authentication"); the secret itself is never sent. A refusal comes back
// as a reply with its code set, not as an error.
func ClientHello(c net.Conn, h *wire.Hello, ringFD int, timeout time.Duration, secret string) (*wire.Reply, error) {
	_ = c.SetDeadline(time.Now().Add(timeout))
	defer c.SetDeadline(time.Time{})
	h.Nonce = nil
	if secret != "" {
		cn, err := newNonce()
		if err != nil {
			return nil, err
		}
		h.Nonce = cn
	}
	enc := wire.NewEncoder(wire.Compression{})
	if err := enc.Append(wire.THello, 0, h); err != nil {
		return nil, err
	}
	frame := append([]byte(nil), enc.Bytes()...)
	if uc, ok := c.(*net.UnixConn); ok && ringFD >= 0 {
		n, _, err := uc.WriteMsgUnix(frame, unix.UnixRights(ringFD), nil)
		if err == nil && n < len(frame) {
			_, err = c.Write(frame[n:])
		}
		if err != nil {
			return nil, err
		}
	} else if ringFD >= 0 {
		return nil, errors.New("transport: a ring can only be passed over a Unix socket")
	} else if _, err := c.Write(frame); err != nil {
		return nil, err
	}
	var sn []byte
	var rep wire.Reply
	var ch wire.Auth
	hd, got, err := readOne(c, nil, nil)
	if err != nil {
		return nil, err
	}
	if hd.Type == wire.TAuth|wire.ReplyBit {
		// The server wants a secret: answer its challenge. Without one
		// the answer is empty, and the server refuses with its reason.
		if err := wire.Unmarshal(got[wire.HeaderSize:], &ch); err != nil {
			return nil, err
		}
		if len(ch.Nonce) != wire.AuthNonceSize {
			return nil, wire.Errorf(wire.EPROTO, "challenge nonce of %d bytes, want %d", len(ch.Nonce), wire.AuthNonceSize)
		}
		sn = ch.Nonce
		ans := &wire.Auth{}
		if secret != "" {
			ans.Proof = ClientProof([]byte(secret), sn, h.Nonce, frame)
		}
		enc.Reset()
		if err := enc.Append(wire.TAuth, 0, ans); err != nil {
			return nil, err
		}
		if _, err := c.Write(enc.Bytes()); err != nil {
			return nil, err
		}
		if hd, got, err = readOne(c, nil, nil); err != nil {
			return nil, err
		}
	}
	if hd.Type != wire.THello|wire.ReplyBit {
		return nil, wire.Errorf(wire.EPROTO, "expected hello reply, got %v", hd.Type)
	}
	if err := wire.Unmarshal(got[wire.HeaderSize:], &rep); err != nil {
		return nil, err
	}
	if secret != "" && rep.Code == wire.OK {
		switch {
		case sn == nil:
			return nil, wire.Errorf(wire.EACCES, "the server asked for no secret, so it cannot prove it holds the job's: refusing it (a server of this job has the secret; is the address right?)")
		case !proofOK(rep.Proof, ServerProof([]byte(secret), h.Nonce, sn, frame, &rep)):
			return nil, wire.Errorf(wire.EACCES, "the server's proof does not match the job secret: refusing it (wrong server, or another job's?)")
		}
	}
	return &rep, nil
}

// ServerHello reads the client's hello; the caller has set the
// connection's deadline. On a Unix socket it also returns a descriptor
// passed with it (-1 if none); the caller owns it. frame is the hello as
// received (header and description), which the proofs cover.
func ServerHello(c net.Conn) (h *wire.Hello, fd int, frame []byte, err error) {
	h = &wire.Hello{}
	fds := []int{}
	hd, frame, err := readOne(c, &fds, h)
	fd = -1
	for i, f := range fds {
		if i == 0 {
			fd = f
		} else {
			unix.Close(f)
		}
	}
	if err == nil && hd.Type != wire.THello {
		err = wire.Errorf(wire.EPROTO, "expected hello, got %v", hd.Type)
	}
	if err != nil {
		if fd >= 0 {
			unix.Close(fd)
		}
		return nil, -1, nil, err
	}
	return h, fd, frame, nil
}

// ServerReply answers a hello; the caller has set the connection's
// deadline.
func ServerReply(c net.Conn, rep *wire.Reply) error {
	enc := wire.NewEncoder(wire.Compression{})
	if err := enc.Append(wire.THello|wire.ReplyBit, 0, rep); err != nil {
		return err
	}
	_, err := c.Write(enc.Bytes())
	return err
}

// readOne reads exactly one frame without buffering beyond it (yamux takes
// over the connection right after), collecting passed descriptors into fds
// when fds is not nil and c is a Unix socket. It decodes the description
// into v unless v is nil, and returns the frame's bytes (header and
// description). A handshake frame has no payload and at most
// maxHandshakeDesc bytes of description.
func readOne(c io.Reader, fds *[]int, v any) (wire.Header, []byte, error) {
	var hb [wire.HeaderSize]byte
	if err := readFull(c, hb[:], fds); err != nil {
		return wire.Header{}, nil, err
	}
	h, err := wire.ParseHeader(hb[:])
	if err != nil {
		return h, nil, err
	}
	if h.DescLen > maxHandshakeDesc || h.PayloadLen != 0 {
		return h, nil, wire.Errorf(wire.EPROTO, "handshake frame too large")
	}
	frame := make([]byte, wire.HeaderSize+int(h.DescLen))
	copy(frame, hb[:])
	desc := frame[wire.HeaderSize:]
	if err := readFull(c, desc, fds); err != nil {
		return h, nil, err
	}
	if v != nil {
		if err := wire.Unmarshal(desc, v); err != nil {
			return h, nil, err
		}
	}
	return h, frame, nil
}

// ErrClosedInHandshake: the peer closed the connection before the
// handshake was over (a server that refused us, or one that requires TLS).
var ErrClosedInHandshake = wire.Errorf(wire.EPROTO, "connection closed during handshake")

// maxHandshakeDesc bounds a handshake frame's description.
const maxHandshakeDesc = 64 << 10

func readFull(c io.Reader, b []byte, fds *[]int) error {
	uc, isUnix := c.(*net.UnixConn)
	for len(b) > 0 {
		var n int
		var err error
		if isUnix && fds != nil {
			oob := make([]byte, unix.CmsgSpace(4*4))
			var oobn int
			n, oobn, _, _, err = uc.ReadMsgUnix(b, oob)
			if oobn > 0 {
				*fds = append(*fds, parseRights(oob[:oobn])...)
			}
		} else {
			n, err = c.Read(b)
		}
		b = b[max(n, 0):] // ReadMsgUnix reports -1 with some errors
		if err != nil {
			if errors.Is(err, io.EOF) && len(b) > 0 {
				return ErrClosedInHandshake
			}
			if len(b) > 0 {
				return err
			}
		}
	}
	return nil
}

func parseRights(oob []byte) []int {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil
	}
	var out []int
	for _, m := range msgs {
		if fds, err := unix.ParseUnixRights(&m); err == nil {
			out = append(out, fds...)
		}
	}
	return out
}

// YamuxConfig is the yamux configuration of both sides (a server then
// narrows it: ServerYamuxConfig). Keepalives detect a silent peer within
// about keepalive + 10 s; the stream window, which bounds what the side
// receives and has not read, is large enough that a batch of descriptions
// or read replies never waits for a window update.
func YamuxConfig(log *slog.Logger, keepalive time.Duration) *yamux.Config {
	c := yamux.DefaultConfig()
	c.EnableKeepAlive = keepalive > 0
	if keepalive > 0 {
		c.KeepAliveInterval = keepalive
	}
	c.ConnectionWriteTimeout = 10 * time.Second
	c.MaxStreamWindowSize = 4 << 20
	c.StreamOpenTimeout = 30 * time.Second
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c.LogOutput = nil
	c.Logger = yamuxLogger{log}
	return c
}

// yamuxLogger gives yamux the caller's logger instead of stderr. yamux
// reports teardown it cannot tell from failure (writes on a connection
// closed at shutdown); our own error paths report real failures, so its
// lines are debug.
type yamuxLogger struct{ l *slog.Logger }

func (y yamuxLogger) Print(v ...any) { y.l.Debug("yamux", "msg", fmt.Sprint(v...)) }
func (y yamuxLogger) Printf(format string, v ...any) {
	y.l.Debug("yamux", "msg", fmt.Sprintf(format, v...))
}
func (y yamuxLogger) Println(v ...any) { y.l.Debug("yamux", "msg", fmt.Sprint(v...)) }

// ServerStreamWindow is a server's yamux stream window: what a client may
// send on a stream that the server has not read yet, held in the server's
// memory per stream (README, Memory). The client's own window stays at
// YamuxConfig's: it bounds the client's memory.
const ServerStreamWindow = 1 << 20

// ServerAcceptBacklog bounds the streams a client has opened that the
// server has not accepted yet; yamux resets those beyond it. The server
// accepts at once and serves one per session (a second ends it).
const ServerAcceptBacklog = 8

// ServerYamuxConfig is YamuxConfig with a server's stream window and
// accept backlog.
func ServerYamuxConfig(log *slog.Logger, keepalive time.Duration) *yamux.Config {
	c := YamuxConfig(log, keepalive)
	c.MaxStreamWindowSize = ServerStreamWindow
	c.AcceptBacklog = ServerAcceptBacklog
	return c
}
