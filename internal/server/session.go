package server

import (
	"errors"
	"log/slog"
	"net"
	"runtime/debug"
	"sync"
	"sync/atomic"

	"github.com/delegate-io/delegate/internal/route"
	"github.com/delegate-io/delegate/internal/shm"
	"github.com/delegate-io/delegate/internal/transport"
	"github.com/delegate-io/delegate/internal/wire"
	"github.com/hashicorp/yamux"
)

// session is one client connection: the hello, then yamux streams served
// concurrently, each in order.
type session struct {
	srv  *Server
	conn net.Conn
	log  *slog.Logger

	// Set by the hello, read-only afterwards.
	client  string
	servers int
	index   int
	ring    *shm.Region
	monitor bool      // a stats-only session (delegate-server stats, delegate-run)
	bulk    *bulkSide // bulk connections offered in the hello (bulk.go); nil: none
	// admitted: counted among the sessions the server serves (admit),
	// until cleanup; full: refused by admit, the server serves its maximum.
	admitted, full bool
	move           *movePair // paired with the session of its move to the Unix socket (admit); under srv.adm
	// open counts the streams being served (run, maxStreams).
	open atomic.Int32

	mu struct {
		sync.Mutex
		ymx       *yamux.Session
		handles   map[uint64]*handle
		next      uint64
		closed    bool
		freeSlots []uint32 // control page slots not given to a handle
	}
	streams sync.WaitGroup
	// closing is closed by close: a request that waits on other clients
	// (a collective's end marker) stops waiting.
	closing     chan struct{}
	closingOnce sync.Once
}

// handle is a file as one session opened it.
type handle struct {
	f        *file
	writable bool
	rule     route.Rule
	ss       *session
	slot     uint32 // control page slot (wire/ctrl.go), 0 if none
}

// publish sets the handle's control page slot.
func (h *handle) publish(v uint64) {
	if h.slot != 0 {
		h.ss.ring.Word(8 * uint64(h.slot)).Store(v)
	}
}

func newSession(s *Server, c net.Conn) *session {
	ss := &session{srv: s, conn: c, log: s.log.With("remote", c.RemoteAddr().String()), closing: make(chan struct{})}
	ss.mu.handles = map[uint64]*handle{}
	ss.mu.next = 1
	return ss
}

func (ss *session) run() {
	if ss.takeBulk() {
		return // a bulk connection, now its session's (bulk.go)
	}
	s := ss.srv
	defer ss.cleanup()
	defer ss.recoverPanic()
	if err := ss.hello(); err != nil {
		s.stats.rejected.Add(1)
		if !ss.full {
			ss.log.Warn("client refused", "err", err)
		}
		return
	}
	ymx, err := yamux.Server(ss.conn, transport.ServerYamuxConfig(ss.log, s.cfg.KeepAlive))
	if err != nil {
		ss.log.Error("yamux", "err", err)
		return
	}
	ss.mu.Lock()
	if ss.mu.closed {
		ss.mu.Unlock()
		ymx.Close()
		return
	}
	ss.mu.ymx = ymx
	ss.mu.Unlock()
	s.stats.sessions.Add(1)
	s.stats.sessionsTotal.Add(1)
	defer func() {
		ss.leave() // before the gauge drops: a client that sees it drop gets in
		s.stats.sessions.Add(-1)
	}()
	ss.log.Info("client connected", "client", ss.client, "ring", ss.ring != nil)
	for first := true; ; first = false {
		c, err := ymx.AcceptStream()
		if err != nil {
			break
		}
		if ss.open.Load() >= maxStreams {
			// Clients open one stream, monitors one. A stream the server
			// closes still takes what the client sends into it, up to its
			// window, until the client closes its side: the session ends.
			c.Close()
			s.stats.strmRefused.Add(1)
			ss.log.Warn("session opened more streams than a client does, closing it", "max_streams", maxStreams)
			ss.close()
			break
		}
		if first && !ss.monitor {
			// Counted at the first stream: a client that moves to the
			// Unix socket after a TCP hello never opens one on TCP.
			ss.countTransport()
		}
		ss.streams.Add(1)
		ss.open.Add(1)
		go func() {
			defer ss.streams.Done()
			defer ss.open.Add(-1)
			// Whatever ends the stream (the client's close, a bad frame, a
			// failed reply, a panic) ends its session: serve closes it, as
			// recoverPanic does. A client has no other, and a session that
			// could go on opening streams after the server closed them
			// would keep what it sends into them.
			defer ss.recoverPanic()
			newStream(ss, c).serve()
		}()
	}
	ss.streams.Wait()
	ss.log.Info("client disconnected", "client", ss.client)
}

// maxStreams bounds the streams a session has open at once; a session
// that opens more is closed, as one whose stream ended (run).
const maxStreams = 1

// countTransport counts the session by how it reached the server.
func (ss *session) countTransport() {
	st := &ss.srv.stats
	switch {
	case ss.ring != nil:
		st.sessionsRing.Add(1)
	case isTCPConn(ss.conn):
		st.sessionsTCP.Add(1)
	default:
		st.sessionsUnix.Add(1)
	}
}

func isTCPConn(c net.Conn) bool {
	_, ok := transport.NetConn(c).(*net.TCPConn)
	return ok
}

// recoverPanic ends a session that hit a bug instead of the whole server,
// which holds other clients' buffered data. It must be deferred directly.
func (ss *session) recoverPanic() {
	if p := recover(); p != nil {
		ss.srv.stats.panics.Add(1)
		ss.log.Error("panic in session, closing it", "panic", p, "stack", string(debug.Stack()))
		ss.close()
	}
}

// hello runs the handshake, counted among the connections still in the
// hello (Serve bounds them by Config.MaxHellos). The handshake has
// Config.HandshakeTimeout to complete, authentication included.
func (ss *session) hello() error {
	defer ss.srv.stats.helloInProgress.Add(-1)
	return ss.handshake()
}

// close ends the session: streams stop after their current request.
func (ss *session) close() {
	ss.mu.Lock()
	ss.mu.closed = true
	ymx := ss.mu.ymx
	ss.mu.Unlock()
	ss.closingOnce.Do(func() { close(ss.closing) })
	// Closed outside the lock: it is I/O. A session the hello has not
	// made yet sees closed and closes its own.
	if ymx != nil {
		ymx.Close()
	} else {
		ss.conn.Close()
	}
	ss.closeBulk()
}

// cleanup runs when every stream has ended: files the client left open are
// released (their buffered data stays with the file), the ring unmapped.
func (ss *session) cleanup() {
	ss.close()
	ss.conn.Close()
	ss.leave()
	ss.mu.Lock()
	hs := ss.mu.handles
	ss.mu.handles = map[uint64]*handle{}
	ss.mu.Unlock()
	for _, h := range hs {
		ss.forget(h)
		if err := ss.srv.files.release(h.f); err != nil {
			ss.log.Warn("release file", "file", h.f.path, "err", err)
		}
	}
	if ss.ring != nil {
		ss.srv.stats.ringBytes.Add(-int64(len(ss.ring.Bytes())))
		ss.ring.Close()
	}
	if ss.bulk != nil {
		ss.bulk.dropPipe() // every stream has ended: nobody splices any more
	}
}

// addHandle registers h, gives it a control page slot if one is free, and
// subscribes it to its file's dirty state.
func (ss *session) addHandle(h *handle) uint64 {
	ss.mu.Lock()
	id := ss.mu.next
	ss.mu.next++
	ss.mu.handles[id] = h
	h.ss = ss
	if n := len(ss.mu.freeSlots); n > 0 {
		h.slot = ss.mu.freeSlots[n-1]
		ss.mu.freeSlots = ss.mu.freeSlots[:n-1]
	}
	ss.mu.Unlock()
	h.f.subscribe(h)
	return id
}

// forget undoes addHandle's subscription and frees the slot.
func (ss *session) forget(h *handle) {
	h.f.unsubscribe(h)
	if h.slot != 0 {
		ss.mu.Lock()
		ss.mu.freeSlots = append(ss.mu.freeSlots, h.slot)
		ss.mu.Unlock()
	}
}

func (ss *session) handle(id uint64) (*handle, error) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if h := ss.mu.handles[id]; h != nil {
		return h, nil
	}
	return nil, wire.Errorf(wire.EBADF, "file id %d is not open on this session", id)
}

func (ss *session) dropHandle(id uint64) (*handle, error) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	h := ss.mu.handles[id]
	if h == nil {
		return nil, wire.Errorf(wire.EBADF, "file id %d is not open on this session", id)
	}
	delete(ss.mu.handles, id)
	return h, nil
}

var errRingMissing = errors.New("request names a ring slot but the session has no ring")
