package server

import (
	"crypto/rand"
	"errors"
	"io"
	"net"
	"sync"
	"time"

	"github.com/delegate-io/delegate/internal/transport"
	"github.com/delegate-io/delegate/internal/wire"
	"golang.org/x/sys/unix"
)

// Bulk connections (wire/spec.md, "Bulk connections"): a client on TCP may
// bind raw connections to its session, on the same listener (the first
// byte tells them from a hello), and send the data of large writes on them
// and receive the data of large reads. The stream worker reads a write's
// data itself, when it reaches the write, straight from the connection
// into the stream's scratch buffer (pooled: not zeroed per request), and
// from there the data goes to the backend (direct writes) or into chunk
// buffers; nothing reads ahead of the worker, so the server's --buffer
// backpressure reaches the client through TCP's flow control. A transfer
// that does not arrive, or arrives wrong, in bulkTimeout closes the
// session: its connections are then out of step.

// bulkTimeout bounds each read or write of a transfer on a bulk connection.
var bulkTimeout = 30 * time.Second

// bulkRegistry holds the sessions that may bind bulk connections, by id.
type bulkRegistry struct {
	mu   sync.Mutex
	next uint64
	byID map[uint64]*session
}

// bulkSide is a session's bulk state. id, nonce, key and max are set by
// the hello and read-only afterwards; conns are bound later, under mu (no
// I/O under it); owner is the only stream that may use them.
type bulkSide struct {
	id    uint64
	nonce []byte
	key   []byte
	max   int

	// splice is the pipe of bulkDirect (bulksplice.go): used by the owner
	// stream's worker only, closed by session.cleanup after every stream.
	splice *splicePipe

	mu struct {
		sync.Mutex
		conns  [wire.MaxBulkConns]net.Conn
		owner  *stream
		closed bool
	}
}

// offerBulk registers ss for up to want bulk connections and fills in the
// hello reply's bulk fields.
func (ss *session) offerBulk(rep *wire.Reply, want uint32) error {
	nonce := make([]byte, 16)
	if _, err := rand.Read(nonce); err != nil {
		return err
	}
	b := &bulkSide{nonce: nonce, key: transport.BulkKey(ss.srv.cfg.Token), max: min(int(want), wire.MaxBulkConns)}
	reg := &ss.srv.bulk
	reg.mu.Lock()
	if reg.byID == nil {
		reg.byID = map[uint64]*session{}
	}
	reg.next++
	b.id = reg.next
	reg.byID[b.id] = ss
	reg.mu.Unlock()
	ss.bulk = b
	rep.BulkID, rep.BulkNonce, rep.BulkConns = b.id, b.nonce, uint32(b.max)
	return nil
}

// closeBulk forgets the session's bulk id and closes its connections,
// which ends a transfer the worker is blocked in.
func (ss *session) closeBulk() {
	b := ss.bulk
	if b == nil {
		return
	}
	reg := &ss.srv.bulk
	reg.mu.Lock()
	delete(reg.byID, b.id)
	reg.mu.Unlock()
	b.mu.Lock()
	b.mu.closed = true
	conns := b.mu.conns
	b.mu.Unlock()
	for _, c := range conns {
		if c != nil {
			c.Close()
		}
	}
}

// takeBulk looks at the first byte of a new TCP connection: a bulk
// connection is bound to its session here (and then belongs to it), and
// takeBulk reports true; anything else is left for the hello. It runs in
// the connection's hello slot (Config.MaxHellos, HandshakeTimeout).
func (ss *session) takeBulk() bool {
	s := ss.srv
	c := ss.conn
	if _, raw := c.(*net.TCPConn); !raw {
		return false // Unix sockets; and TLS, whose bytes cannot be peeked: no bulk connections
	}
	_ = c.SetReadDeadline(time.Now().Add(s.cfg.HandshakeTimeout))
	first, err := peekByte(c)
	_ = c.SetReadDeadline(time.Time{})
	if err == nil && !wire.IsBulk(first) {
		return false
	}
	defer s.stats.helloInProgress.Add(-1)
	if err == nil {
		err = ss.bindBulk()
	}
	if err != nil {
		s.stats.rejected.Add(1)
		if !errors.Is(err, io.EOF) {
			ss.log.Warn("bulk connection refused", "err", err)
		}
		c.Close()
		return true
	}
	s.stats.bulkConns.Add(1)
	return true
}

// peekByte returns the first byte waiting on c without consuming it,
// within c's read deadline.
func peekByte(c net.Conn) (byte, error) {
	rc, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		return 0, err
	}
	var b [1]byte
	var n int
	var rerr error
	err = rc.Read(func(fd uintptr) bool {
		n, _, rerr = unix.Recvfrom(int(fd), b[:], unix.MSG_PEEK)
		return rerr != unix.EAGAIN && rerr != unix.EINTR
	})
	switch {
	case err != nil:
		return 0, err
	case rerr != nil:
		return 0, rerr
	case n == 0:
		return 0, io.EOF
	}
	return b[0], nil
}

// bindBulk reads the BulkBind header and tag, checks the tag against the
// session the id names, hands the connection to it and acknowledges.
func (ss *session) bindBulk() error {
	s, c := ss.srv, ss.conn
	_ = c.SetDeadline(time.Now().Add(s.cfg.HandshakeTimeout))
	var buf [wire.BulkHeaderSize + wire.BulkTagSize]byte
	if _, err := io.ReadFull(c, buf[:]); err != nil {
		return err
	}
	h, err := wire.ParseBulkHeader(buf[:wire.BulkHeaderSize])
	if err != nil {
		return err
	}
	if h.Kind != wire.BulkBind || h.Len != wire.BulkTagSize {
		return wire.Errorf(wire.EPROTO, "bulk connection starts with %+v, want a bind", h)
	}
	s.bulk.mu.Lock()
	owner := s.bulk.byID[h.Seq]
	s.bulk.mu.Unlock()
	if owner == nil {
		return wire.Errorf(wire.EACCES, "bulk bind to unknown session %d", h.Seq)
	}
	b := owner.bulk
	if !transport.BulkTagOK(buf[wire.BulkHeaderSize:], transport.BulkTag(b.key, b.id, b.nonce, h.Index)) {
		return wire.Errorf(wire.EACCES, "bulk bind to session %d: wrong tag", h.Seq)
	}
	if int(h.Index) >= b.max {
		return wire.Errorf(wire.EPROTO, "bulk connection %d of a session granted %d", h.Index, b.max)
	}
	// The connection is made ready before it is published: once the owner
	// holds it, its stream sets its own deadlines (each transfer's read,
	// each reply's write), and a deadline changed here after that could
	// clear one the stream had set (seen: a silent sender never timed out).
	// The write deadline of the handshake stays for the acknowledgement;
	// every write of the owner sets its own.
	_ = c.SetReadDeadline(time.Time{})
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}
	b.mu.Lock()
	taken := b.mu.closed || b.mu.conns[h.Index] != nil
	if !taken {
		b.mu.conns[h.Index] = c
	}
	b.mu.Unlock()
	if taken {
		return wire.Errorf(wire.EPROTO, "bulk connection %d of session %d already bound (or the session ended)", h.Index, h.Seq)
	}
	// From here the connection is the owner's: it closes it.
	ack := wire.BulkHeader{Kind: wire.BulkBind, Index: h.Index, Seq: h.Seq}
	ack.Put(buf[:])
	_, err = c.Write(buf[:wire.BulkHeaderSize])
	if bindAckedHook != nil {
		bindAckedHook()
	}
	if err != nil {
		owner.log.Warn("bulk bind acknowledgement failed", "err", err)
	}
	return nil
}

// bindAckedHook, when set (tests), runs in bindBulk after the
// acknowledgement, when the owner may already be using the connection;
// bulkWaitHook in readFullBy once its deadline is set.
var bindAckedHook, bulkWaitHook func()

// bulkConn returns connection i for stream st, which becomes the only
// stream allowed to use the session's bulk connections.
func (st *stream) bulkConn(i uint32) (net.Conn, error) {
	b := st.ss.bulk
	if b == nil {
		return nil, wire.Errorf(wire.EPROTO, "request names bulk connection %d but the session has none", i)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.mu.owner == nil {
		b.mu.owner = st
	}
	switch {
	case b.mu.owner != st:
		return nil, wire.Errorf(wire.EPROTO, "bulk connections belong to another stream of the session")
	case i >= wire.MaxBulkConns || b.mu.conns[i] == nil:
		return nil, wire.Errorf(wire.EPROTO, "bulk connection %d is not bound", i)
	}
	return b.mu.conns[i], nil
}

// bulkRecv reads write w's data from its bulk connection into a bulk
// receive buffer (xfermem.go), which the caller gives back (xferMem.put)
// once the request is done with it. An error closes the session: the
// transfer was not taken whole, so the connection is out of step; except
// when no buffer could be had (EAGAIN): then the transfer was taken and
// dropped, and only this write fails.
func (st *stream) bulkRecv(w *wire.Write) ([]byte, error) {
	data, err := st.bulkRecvData(w)
	if err != nil {
		var busy busyError
		if errors.As(err, &busy) {
			return nil, busy.err
		}
		st.bulkFailed(err)
		return nil, err
	}
	st.ss.srv.stats.bulkIn.Add(int64(len(data)))
	return data, nil
}

func (st *stream) bulkRecvData(w *wire.Write) ([]byte, error) {
	if w.BulkLen > wire.MaxPayload {
		return nil, wire.Errorf(wire.EPROTO, "bulk write of %d bytes exceeds %d", w.BulkLen, wire.MaxPayload)
	}
	c, err := st.bulkConn(w.BulkConn)
	if err != nil {
		return nil, err
	}
	// The buffer before the header: while the server waits for room, the
	// client's transfer waits in the socket (its header has no deadline).
	m := st.ss.srv.xferMem
	data, err := m.get(int(w.BulkLen), st.ss.closing)
	var end time.Time
	if st.atomicHeld() {
		// The file's atomic lock is held (atomic.go): the whole transfer,
		// not only each read, is bounded, as a large reply's is (review:
		// a client that trickled its data held the lock for hours).
		end = time.Now().Add(bulkTimeout + time.Duration(w.BulkLen>>20)*time.Second)
	}
	if errors.Is(err, wire.EAGAIN) {
		// No room for long: the transfer is taken through a small
		// buffer and dropped, so that the connection stays in step, and
		// the writer gets EAGAIN.
		if rerr := readBulkWriteHeader(c, w, end); rerr != nil {
			return nil, rerr
		}
		if rerr := discardBulk(c, make([]byte, min(int(w.BulkLen), 64<<10)), int64(w.BulkLen), end); rerr != nil {
			return nil, rerr
		}
		st.ss.srv.stats.bulkIn.Add(int64(w.BulkLen))
		return nil, busyError{err}
	}
	if err != nil {
		return nil, err
	}
	if err := readBulkWriteHeader(c, w, end); err != nil {
		m.put(data)
		return nil, err
	}
	if err := readFullBy(c, data, end); err != nil {
		m.put(data)
		return nil, err
	}
	return data, nil
}

// busyError: a bulk write's transfer was taken and dropped for want of a
// receive buffer; the connection is in step.
type busyError struct{ err error }

func (e busyError) Error() string { return e.err.Error() }

// readBulkWriteHeader reads the BulkWrite header that opens write w's data
// on c and checks that it announces exactly that transfer.
func readBulkWriteHeader(c net.Conn, w *wire.Write, end ...time.Time) error {
	var hb [wire.BulkHeaderSize]byte
	if err := readFullBy(c, hb[:], end...); err != nil {
		return err
	}
	h, err := wire.ParseBulkHeader(hb[:])
	if err != nil {
		return err
	}
	if h.Kind != wire.BulkWrite || h.Index != w.BulkConn || h.Seq != w.BulkSeq || h.Len != w.BulkLen {
		return wire.Errorf(wire.EPROTO, "bulk connection %d: got %+v for a write of transfer %d, %d bytes",
			w.BulkConn, h, w.BulkSeq, w.BulkLen)
	}
	return nil
}

// readFullBy fills b from c, each read bounded by bulkTimeout: a client that
// announces data and stops sending loses its session, it does not hold the
// worker. A non-zero end bounds the whole transfer too.
func readFullBy(c net.Conn, b []byte, end ...time.Time) error {
	for len(b) > 0 {
		d := time.Now().Add(bulkTimeout)
		if len(end) > 0 && !end[0].IsZero() && end[0].Before(d) {
			d = end[0]
		}
		_ = c.SetReadDeadline(d)
		if bulkWaitHook != nil {
			bulkWaitHook()
		}
		n, err := c.Read(b)
		b = b[n:]
		if err != nil && len(b) > 0 {
			if errors.Is(err, io.EOF) {
				return wire.Errorf(wire.EPROTO, "bulk connection closed within a transfer")
			}
			return err
		}
	}
	return nil
}

// readAny serves a read: on a bulk connection when it names one.
func (st *stream) readAny(r *request) (wire.Reply, []byte) {
	rd := r.desc.(*wire.Read)
	if rd.BulkLen == 0 {
		return st.read(r)
	}
	var rep wire.Reply
	var data []byte
	if rd.RingLen > 0 {
		rep = wire.ReplyTo(wire.Errorf(wire.EPROTO, "bulk read with a ring slot"))
	} else if sent, ok := st.bulkSendfile(r); ok {
		return sent, nil
	} else {
		rep, data = st.read(r)
		if rep.Code == wire.OK && uint64(len(data)) != rd.BulkLen {
			rep, data = wire.ReplyTo(wire.Errorf(wire.EPROTO, "bulk read of %d bytes for extents of %d", rd.BulkLen, len(data))), nil
		}
		if rep.Code == wire.OK {
			// Only the bytes below the end of file: the client fills in
			// zeros where they belong, and leaves the rest of its memory.
			data = data[:min(max(rep.N, 0), int64(len(data)))]
		}
	}
	if rep.Code != wire.OK {
		data = nil
	}
	if err := st.bulkSend(rd, data); err != nil {
		return st.bulkFailed(err), nil
	}
	st.ss.srv.stats.bulkOut.Add(int64(len(data)))
	return rep, nil
}

// bulkSend writes a BulkRead header and data (none if the read failed) on
// the read's bulk connection, in one writev.
func (st *stream) bulkSend(rd *wire.Read, data []byte) error {
	c, err := st.bulkConn(rd.BulkConn)
	if err != nil {
		return err
	}
	h := wire.BulkHeader{Kind: wire.BulkRead, Index: rd.BulkConn, Seq: rd.BulkSeq, Len: uint64(len(data))}
	h.Put(st.bulkHdr[:])
	_ = c.SetWriteDeadline(time.Now().Add(bulkTimeout + time.Duration(len(data)>>20)*time.Second))
	st.bulkIOV = append(st.bulkIOV[:0], st.bulkHdr[:], data)
	iov := st.bulkIOV
	_, err = iov.WriteTo(c)
	clear(st.bulkIOV)
	return err
}

// bulkRefused ends the session of a request refused before its handler
// will run (its extents did not validate), desc its description, if the
// request's data travels on a bulk connection: the data is not taken, so
// the connection would be out of step, and a client writing it would wait
// for ever. A write or read whose description did not decode may have
// named a bulk transfer the server cannot see: on a session with bulk
// connections it ends the session too (a client reading would wait for a
// header that never comes).
func (st *stream) bulkRefused(desc any, decoded bool, err error) {
	var n uint64
	isIO := false
	switch d := desc.(type) {
	case *wire.Write:
		n, isIO = d.BulkLen, true
	case *wire.Read:
		n, isIO = d.BulkLen, true
	}
	if n > 0 || (isIO && !decoded && st.ss.bulk != nil) {
		st.bulkFailed(err)
	}
}
