package client

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/delegate-io/delegate/internal/transport"
	"github.com/delegate-io/delegate/internal/wire"
	"golang.org/x/sys/unix"
)

// Bulk connections (wire/spec.md, "Bulk connections"): over TCP the data of
// large writes and reads travels on raw TCP connections beside the yamux
// session, which keeps the descriptions and replies. A write's data goes
// from the caller's memory to the socket in one writev (no copy in user
// space); a read's data comes from the socket into a pooled buffer. The
// server reads a write's data when its stream worker reaches the write,
// straight from the connection, so TCP's flow control carries its buffer's
// backpressure to the writer, and control frames never wait behind data.

// bulkConn is one bulk connection. Whoever took it from the session's pool
// (takeBulk) owns it, and its fields, until putBulk.
type bulkConn struct {
	idx uint32
	c   net.Conn
	seq uint64 // transfers numbered so far
	hdr [wire.BulkHeaderSize]byte
	iov net.Buffers
	raw syscall.RawConn // the TCP socket, for its receive low-water mark (nil: none)
	low int             // the low-water mark set last (the kernel starts at 1)
}

// bulkLowat is the receive low-water mark while a read's data arrives
// (SO_RCVLOWAT): the receiving thread is woken once this much, or all that
// is left of the transfer, waits in the socket, not for every segment.
const bulkLowat = 256 << 10

// lowat sets the connection's receive low-water mark to n bytes.
func (b *bulkConn) lowat(n int64) {
	if b.raw == nil || int(n) == b.low {
		return
	}
	b.low = int(n)
	_ = b.raw.Control(func(fd uintptr) {
		_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVLOWAT, int(n))
	})
}

// bulkSet is a session's bulk connections: free holds those not in use.
type bulkSet struct {
	conns []*bulkConn
	free  chan *bulkConn
	min   int64 // requests of at least this many bytes use them
	parts int   // connections a large read is cut over, at most
}

// bulkRecvTimeout bounds the wait for a read's bulk data (the server's own
// bound on a transfer is 30 s; its worker may first finish older requests).
var bulkRecvTimeout = 60 * time.Second

// dialBulk opens n bulk connections to a and binds them to the session the
// hello reply rep describes. Any failure leaves the session without bulk
// connections (the data then travels inline): it is logged, not fatal.
func (s *session) dialBulk(ctx context.Context, a transport.Addr, rep *wire.Reply) {
	cfg := &s.cl.cfg
	n := min(int(rep.BulkConns), cfg.BulkConns)
	if a.Net != "tcp" || rep.BulkID == 0 || n <= 0 {
		return
	}
	key := transport.BulkKey(cfg.Token)
	set := &bulkSet{free: make(chan *bulkConn, n), min: cfg.BulkMin, parts: max(1, min(n, cfg.BulkReadParts))}
	for i := range n {
		c, err := bindBulk(ctx, a, cfg.Timeout, cfg.TLS, key, rep, uint32(i))
		if err != nil {
			s.log.Warn("bulk connection failed, data stays on the control session", "err", err)
			for _, b := range set.conns {
				b.c.Close()
			}
			return
		}
		b := &bulkConn{idx: uint32(i), c: c, low: 1}
		// Only a bare TCP connection gets a receive low-water mark: behind
		// a TLS layer that reads ahead, the socket may never hold the mark.
		if t, ok := c.(*net.TCPConn); ok {
			b.raw, _ = t.SyscallConn()
		}
		set.conns = append(set.conns, b)
		set.free <- b
	}
	s.bulk = set
}

// bindBulk dials one bulk connection and binds it (BulkBind, the tag, the
// server's acknowledgement), all within timeout.
func bindBulk(ctx context.Context, a transport.Addr, timeout time.Duration, tc *tls.Config, key []byte, rep *wire.Reply, idx uint32) (net.Conn, error) {
	c, err := transport.Dial(ctx, a, timeout, tc)
	if err != nil {
		return nil, err
	}
	_ = c.SetDeadline(time.Now().Add(timeout))
	var b [wire.BulkHeaderSize + wire.BulkTagSize]byte
	h := wire.BulkHeader{Kind: wire.BulkBind, Index: idx, Seq: rep.BulkID, Len: wire.BulkTagSize}
	h.Put(b[:])
	tag := transport.BulkTag(key, rep.BulkID, rep.BulkNonce, idx)
	copy(b[wire.BulkHeaderSize:], tag[:])
	if _, err = c.Write(b[:]); err == nil {
		_, err = io.ReadFull(c, b[:wire.BulkHeaderSize])
	}
	if err == nil {
		var ack wire.BulkHeader
		ack, err = wire.ParseBulkHeader(b[:wire.BulkHeaderSize])
		if err == nil && (ack.Kind != wire.BulkBind || ack.Seq != rep.BulkID || ack.Index != idx || ack.Len != 0) {
			err = wire.Errorf(wire.EPROTO, "unexpected bulk bind answer %+v", ack)
		}
	}
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("bind bulk connection %d to %s: %w", idx, a, err)
	}
	_ = c.SetDeadline(time.Time{})
	if t, ok := transport.NetConn(c).(*net.TCPConn); ok {
		_ = t.SetNoDelay(true)
	}
	return c, nil
}

// useBulk reports whether a request of n bytes goes on a bulk connection.
func (s *session) useBulk(n int64) bool {
	return s.bulk != nil && n >= s.bulk.min
}

// takeBulk waits for a free bulk connection, or for the session to die.
func (s *session) takeBulk() (*bulkConn, error) {
	select {
	case b := <-s.bulk.free:
		return b, nil
	case <-s.done:
		return nil, s.alive()
	}
}

func (s *session) putBulk(b *bulkConn) { s.bulk.free <- b }

// closeBulk closes every bulk connection, which also ends whatever transfer
// is blocked on one (session.fail).
func (s *session) closeBulk() {
	if s.bulk == nil {
		return
	}
	for _, b := range s.bulk.conns {
		b.c.Close()
	}
}

// sendBulk queues write c, whose data is c.iov (the caller's memory), and
// writes the data on a bulk connection: the description names the
// connection and the transfer, and it is queued before the data is written,
// so the server's worker, which reads the data when it reaches the write,
// always finds it coming. It returns once the data is in the socket.
func (s *session) sendBulk(c *call) error {
	b, err := s.takeBulk()
	if err != nil {
		s.complete(c, err)
		return err
	}
	b.seq++
	c.bulkConn, c.bulkSeq = b.idx, b.seq
	if err := s.submit(c); err != nil {
		s.putBulk(b)
		return err
	}
	h := wire.BulkHeader{Kind: wire.BulkWrite, Index: b.idx, Seq: b.seq, Len: uint64(c.filled)}
	h.Put(b.hdr[:])
	b.iov = append(append(b.iov[:0], b.hdr[:]), c.iov...)
	iov := b.iov // WriteTo consumes its receiver
	_, err = iov.WriteTo(b.c)
	clear(b.iov) // no reference to the caller's memory stays behind
	clear(c.iov)
	c.iov = c.iov[:0]
	s.putBulk(b)
	if err != nil {
		err = s.lost(err)
		s.fail(err)
		return err
	}
	return nil
}

// bulkPartMin is the least a part of a read cut over several bulk
// connections carries (takeBulkParts).
const bulkPartMin = 1 << 20

// takeBulkParts takes the bulk connections a read of n bytes goes on: one,
// waiting for it, and, if cut, as many more as are free right now, up to
// the configured parts and one per bulkPartMin bytes. Its parts then arrive
// at once, each received by its own goroutine (recvParts): one thread's
// receive, a copy per byte, bounds a single connection below the link.
// Never waiting for a second connection while holding one keeps two
// readers from holding each other's.
func (s *session) takeBulkParts(n int64, cut bool) ([]*bulkConn, error) {
	b, err := s.takeBulk()
	if err != nil {
		return nil, err
	}
	conns := []*bulkConn{b}
	for cut && int64(len(conns)) < min(int64(s.bulk.parts), n/bulkPartMin) {
		select {
		case b := <-s.bulk.free:
			conns = append(conns, b)
			continue
		default:
		}
		break
	}
	s.cl.bulkReadParts.Add(int64(len(conns) - 1))
	return conns, nil
}

// startBulkRead queues read c, which holds its bulk connection (c.bulk,
// from takeBulkParts); the data is then received by recvBulk, which gives
// the connection back.
func (s *session) startBulkRead(c *call) error {
	b := c.bulk
	b.seq++
	c.bulkConn, c.bulkSeq = b.idx, b.seq
	if err := s.submit(c); err != nil {
		c.bulk = nil
		s.putBulk(b)
		return err
	}
	return nil
}

// recvParts receives the bulk data of the parts of one read on session s
// at once, the first here and each other in a goroutine that it waits for;
// a failed receive fails the session, which ends the others' receives.
func (s *session) recvParts(parts []*call) error {
	errs := make([]error, len(parts))
	var wg sync.WaitGroup
	for i, c := range parts {
		if i == 0 || c.bulk == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = s.recvBulk(c)
		}()
	}
	if len(parts) > 0 && parts[0].bulk != nil {
		errs[0] = s.recvBulk(parts[0])
	}
	wg.Wait()
	return errors.Join(errs...)
}

// recvBulk receives read c's data straight into the caller's memory (c.iov,
// in the order of its extents): a BulkRead header, then the bytes below the
// server's end of file (none if the read failed: its reply says why).
func (s *session) recvBulk(c *call) error {
	b := c.bulk
	c.bulk = nil
	// The header may wait as long as the request waits in the server's
	// queue (behind a collective's markers, another thread's sync): no
	// deadline for it; a dead server or link ends the session, which
	// closes this connection (closeBulk). Once the transfer began, it is
	// bounded like the server's side: a server that stops sending within
	// it loses the session instead of holding the reader for ever.
	_ = b.c.SetReadDeadline(time.Time{})
	_, err := io.ReadFull(b.c, b.hdr[:])
	var h wire.BulkHeader
	if err == nil {
		h, err = wire.ParseBulkHeader(b.hdr[:])
		_ = b.c.SetReadDeadline(time.Now().Add(bulkRecvTimeout + time.Duration(c.filled>>20)*time.Second))
	}
	if err == nil && (h.Kind != wire.BulkRead || h.Index != b.idx || h.Seq != b.seq || h.Len > uint64(c.filled)) {
		err = wire.Errorf(wire.EPROTO, "bulk read: got %+v, want transfer %d of at most %d bytes on connection %d", h, b.seq, c.filled, b.idx)
	}
	// A small transfer arrives in a wake-up or two: no low-water mark (two
	// more system calls) for it.
	low := int64(h.Len) > 2*bulkLowat
	for left, iov := int64(h.Len), c.iov; err == nil && left > 0; iov = iov[1:] {
		p := iov[0][:min(left, int64(len(iov[0])))]
		for err == nil && len(p) > 0 {
			if low {
				b.lowat(min(bulkLowat, left))
			}
			var n int
			n, err = b.c.Read(p)
			p, left = p[n:], left-int64(n)
			if err == io.EOF && left > 0 {
				err = io.ErrUnexpectedEOF
			}
		}
	}
	b.lowat(1)
	if err == nil {
		c.bulkGot = int64(h.Len)
	}
	s.putBulk(b)
	if err != nil {
		err = s.lost(err)
		s.fail(err)
	}
	return err
}
