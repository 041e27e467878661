package server

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/delegate-io/delegate/internal/shm"
	"github.com/delegate-io/delegate/internal/transport"
	"github.com/delegate-io/delegate/internal/wire"
)

// handshake reads and checks the hello and answers it, all within
// Config.HandshakeTimeout: a server with a secret first has the client
// prove it holds it (authenticate), and only then looks at the rest.
func (ss *session) handshake() error {
	cfg := &ss.srv.cfg
	_ = ss.conn.SetDeadline(time.Now().Add(cfg.HandshakeTimeout))
	defer ss.conn.SetDeadline(time.Time{})
	h, fd, frame, err := transport.ServerHello(ss.conn)
	if err != nil {
		if errors.Is(err, wire.ErrVersion) {
			// Answered in this version's format: the client's own check
			// of the reply names both versions.
			rep := wire.ReplyTo(wire.Errorf(wire.EPROTO, "server %s: %w", cfg.Name, err))
			_ = transport.ServerReply(ss.conn, &rep)
		}
		return err
	}
	defer func() {
		if fd >= 0 {
			closeFD(fd)
		}
	}()
	ss.client = h.Client
	ss.log = ss.log.With("client", h.Client)
	refuse := func(err *wire.Error) error {
		rep := wire.ReplyTo(err)
		_ = transport.ServerReply(ss.conn, &rep)
		return err
	}
	auth, err := ss.authenticate(h, frame)
	if err != nil {
		var we *wire.Error
		if errors.Is(err, wire.EACCES) && errors.As(err, &we) {
			return refuse(we)
		}
		return err
	}
	switch {
	case h.Monitor:
		ss.monitor = true
		if err := ss.admit(); err != nil {
			return refuse(err)
		}
		rep := ss.srv.helloReply(false)
		auth.Sign(&rep)
		return transport.ServerReply(ss.conn, &rep)
	case h.Servers == 0 || h.Index >= h.Servers:
		return refuse(wire.Errorf(wire.EPROTO, "server %s: client index %d of %d servers", cfg.Name, h.Index, h.Servers))
	case len(cfg.Peers) > 0 && (int(h.Servers) != len(cfg.Peers) || int(h.Index) != cfg.Index):
		return refuse(wire.Errorf(wire.ENOTOWNER,
			"server %s is number %d of %d in its list, the client says %d of %d: check DELEGATE_SERVERS (same servers, same order)",
			cfg.Name, cfg.Index, len(cfg.Peers), h.Index, h.Servers))
	}
	ss.servers, ss.index = int(h.Servers), int(h.Index)
	if err := ss.admit(); err != nil {
		return refuse(err)
	}
	if h.RingSize > 0 {
		if fd < 0 {
			return refuse(wire.Errorf(wire.EPROTO, "server %s: hello announces a ring but no descriptor came with it", cfg.Name))
		}
		r, err := shm.Attach(fd, h.RingSize)
		fd = -1 // shm.Attach owns it now
		if err != nil {
			return refuse(wire.Errorf(wire.EPROTO, "server %s: %w", cfg.Name, err))
		}
		ss.ring = r
		ss.srv.stats.ringBytes.Add(int64(h.RingSize))
		for i := uint32(wire.CtrlSlots - 1); i >= 1; i-- {
			ss.mu.freeSlots = append(ss.mu.freeSlots, i)
		}
	}
	rep := ss.srv.helloReply(isTCPConn(ss.conn))
	if _, raw := ss.conn.(*net.TCPConn); h.Bulk > 0 && raw { // not under TLS (bulk.go)
		if err := ss.offerBulk(&rep, h.Bulk); err != nil {
			ss.log.Warn("no bulk connections for this session", "err", err)
		}
	}
	auth.Sign(&rep)
	return transport.ServerReply(ss.conn, &rep)
}

// monitorReserve is how many monitor sessions (stats) a server admits at
// once, beside Config.MaxSessions clients, so that an operator can see
// why it is full.
const monitorReserve = 4

// admit takes the session's place among the sessions the server serves
// (Config.MaxSessions clients; monitorReserve monitors beside them, which
// never take a client's place), or refuses it with an error that
// names the limit; cleanup gives the place back (leave).
//
// A client on the server's host that named its TCP address first moves
// to the Unix socket: its Unix hello comes while its TCP session still
// holds a place (it closes that one once the move succeeded). A Unix
// hello from the client name of an admitted TCP session pairs with it and
// takes no place of its own while both live, so a move never needs two
// places, at the limit or beside other clients (review). A client that
// lies about its name can pair with another's TCP session: at worst each
// TCP session serves two.
func (ss *session) admit() *wire.Error {
	s := ss.srv
	limit := s.cfg.MaxSessions
	a := &s.adm
	a.Lock()
	held := a.clients - a.moving // places the clients hold
	ok := false
	switch {
	case ss.monitor:
		ok = a.monitors < monitorReserve
		if ok {
			a.monitors++
		}
	default:
		if !isTCPConn(ss.conn) {
			if l := a.tcp[ss.client]; len(l) > 0 {
				tcp := l[len(l)-1]
				a.dropTCP(tcp)
				p := new(movePair)
				tcp.move, ss.move = p, p
				a.moving++
				ok = true
			}
		}
		ok = ok || held < limit
		if ok {
			a.clients++
			if isTCPConn(ss.conn) {
				if a.tcp == nil {
					a.tcp = map[string][]*session{}
				}
				a.tcp[ss.client] = append(a.tcp[ss.client], ss)
			}
		}
	}
	ss.admitted = ok
	a.Unlock()
	if ok {
		return nil
	}
	s.stats.sessRefused.Add(1)
	ss.full = true // logged here, rate-limited, not once per client by run
	if log, held := a.log.allow(time.Second); log {
		s.log.Warn("serving the maximum of sessions, refusing new ones", "max_sessions", limit, "monitor_reserve", monitorReserve,
			"client", ss.client, "remote", ss.conn.RemoteAddr().String(), "refused_since_last_line", held)
	}
	what := fmt.Sprintf("its maximum of %d sessions (--max-sessions)", limit)
	if ss.monitor {
		what = fmt.Sprintf("its maximum of %d monitors (beside --max-sessions %d)", monitorReserve, limit)
	}
	return wire.Errorf(wire.EUNREACHABLE, "server %s serves %s: try again once a job has ended, or start it with a larger --max-sessions",
		s.cfg.Name, what)
}

// movePair links a client's TCP session and the Unix session it moved to
// (admit): while both live they hold one place; done once either left.
type movePair struct{ done bool }

// dropTCP forgets ss among the TCP sessions a Unix hello may pair with.
// Under a's lock.
func (a *admission) dropTCP(ss *session) {
	l := a.tcp[ss.client]
	for i, x := range l {
		if x == ss {
			l = append(l[:i], l[i+1:]...)
			break
		}
	}
	if len(l) == 0 {
		delete(a.tcp, ss.client)
	} else {
		a.tcp[ss.client] = l
	}
}

// leave gives back the place admit took.
func (ss *session) leave() {
	s := ss.srv
	a := &s.adm
	a.Lock()
	defer a.Unlock()
	if !ss.admitted {
		return
	}
	ss.admitted = false
	if ss.monitor {
		a.monitors--
		return
	}
	a.clients--
	a.dropTCP(ss)
	if p := ss.move; p != nil && !p.done {
		p.done = true
		a.moving--
	}
}

// authenticate runs the challenge-response when the server has a secret
// (wire/spec.md, "Authentication"); nil without one. A client that does
// not prove it holds the secret gets EACCES.
func (ss *session) authenticate(h *wire.Hello, frame []byte) (*transport.ServerAuth, error) {
	cfg := &ss.srv.cfg
	if cfg.Token == "" {
		return nil, nil
	}
	a, err := transport.Challenge(ss.conn, []byte(cfg.Token), h, frame)
	if errors.Is(err, wire.EACCES) {
		return nil, wire.Errorf(wire.EACCES, "server %s: wrong or missing token", cfg.Name)
	}
	return a, err
}

// helloReply is the server's answer to an accepted hello: its name and
// identity, and over TCP (tcp) its Unix socket and host identity.
func (s *Server) helloReply(tcp bool) wire.Reply {
	rep := wire.Reply{Name: s.cfg.Name, ID: s.id, Peers: s.listHash, Index: uint32(s.cfg.Index), Direct: s.cfg.DirectBytes}
	if tcp && s.cfg.LocalSocket != "" && s.hostID != "" {
		rep.Local, rep.Host = s.cfg.LocalSocket, s.hostID
	}
	return rep
}

// newServerID returns 16 random bytes in hex: the server's identity in
// hello replies, different for every server process.
func newServerID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return hex.EncodeToString(b[:])
}
