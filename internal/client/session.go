package client

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"

	"github.com/delegate-io/delegate/internal/shm"
	"github.com/delegate-io/delegate/internal/transport"
	"github.com/delegate-io/delegate/internal/wire"
	"github.com/hashicorp/yamux"
)

// call is one request on a session, from the moment it is queued until its
// reply has been applied.
type call struct {
	t    wire.Type
	desc any // *wire.Write, *wire.Read, *wire.Open, ...
	file *File

	// Writes and reads: extents and data. data is the ring slot's memory
	// or an inline buffer; filled counts the bytes placed so far.
	ext    wire.Builder
	slot   *shm.Slot
	data   []byte
	filled int64
	flags  uint32
	coll   wire.CollTag // with wire.IOColl
	sealed bool         // taken by the sender: nothing more may be appended

	// Reads answered inline: the reply's payload goes into data.
	inline bool
	// viaBulk: the data travels on a bulk connection (bulk.go); a write's
	// data is then iov, the caller's memory, until sendBulk wrote it.
	// bulkConn and bulkSeq name the transfer; bulk is the connection a
	// read holds until recvBulk.
	viaBulk  bool
	iov      [][]byte
	bulkConn uint32
	bulkSeq  uint64
	bulk     *bulkConn
	bulkGot  int64 // bytes of a bulk read the server sent (recvBulk)
	// marker is the file of a collective end marker (File.endCollective).
	marker *File
	// wmarker: marker ends a collective write, and the fence waits for it
	// like for a write (fenced).
	wmarker bool
	// fseq is the session's count of fenced calls once c was queued
	// (submit): c is the fseq-th.
	fseq int64
	// Bytes counted against the session's inflight limit.
	inflight int64

	id   uint32
	rep  wire.Reply
	err  error
	done chan struct{}
}

// fenced reports whether Fence waits for c: a write, or the end marker of
// a collective write. A marker is answered once every rank's marker has
// arrived, so a rank whose marker is answered has every rank's pieces of
// that collective applied on that server: a fence that waits for its own
// markers makes the other ranks' pieces visible too (fence.go).
func (c *call) fenced() bool { return c.t == wire.TWrite || c.wmarker }

func newCall(t wire.Type, desc any) *call {
	return &call{t: t, desc: desc, done: make(chan struct{})}
}

// wait blocks until the call completes and returns its error. It never
// hangs: a session that dies completes every call it holds.
func (c *call) wait() error {
	<-c.done
	return c.err
}

// session is the connection to one server: a yamux session with one
// control stream, a sender that writes queued calls in batches, and a
// receiver that matches replies. Requests on the stream are applied by the
// server in order.
//
// A session that dies stays dead: its server's state of the files opened on
// it (file ids, control page slots, buffered writes not acknowledged) is not
// carried over to a new connection. fail marks those files lost, so their
// later operations fail with a clear error (File.lostErr), and the client
// dials a new session for later opens (Client.sessions). Its shared memory
// lives on until those files are closed (mapping).
type session struct {
	cl     *Client
	idx    int
	addr   transport.Addr // the server as the list names it
	via    transport.Addr // where the session is connected: addr, or its Unix socket
	log    *slog.Logger
	name   string   // the server's name, from the hello
	ident  identity // who the server says it is, from the hello
	direct int64    // the server's direct threshold, from the hello (0: not said)
	conn   net.Conn
	ymx    *yamux.Session
	st     net.Conn
	ring   *shm.Ring
	shmem  *mapping // nil without a ring; set by dial, never changed
	bulk   *bulkSet // nil without bulk connections; set by dial, never changed

	mu struct {
		sync.Mutex
		queue    []*call
		spare    []*call
		pending  map[uint32]*call
		nextID   uint32
		err      error // why the session died; nil while alive
		inflight int64
		files    map[*File]struct{} // opened on this session and not closed (attach)
		// Fenced calls queued (writes and the end markers of collective
		// writes, call.fenced), for Fence: replies come in request order,
		// so wdone >= n means the first n were applied.
		wqueued int64
		// sending: a goroutine is writing frames on the control stream,
		// the sender (sendLoop) or a caller that waits for its reply
		// (sendNow); the other one queues meanwhile.
		sending bool
	}
	// atomicMu serializes the atomic-mode calls sent on this session (as
	// their files' home): a call cut into several requests holds the
	// server's lock on its file from its first part to its last, which
	// must not interleave with another call's (File.atomicCall).
	// atomicID, under it, numbers the calls (wire.Write.AG).
	// A collective's end marker takes it too (lockAtomic), so that it
	// never comes between two parts of a call.
	atomicMu sync.Mutex
	atomicID uint64
	wdone    atomic.Int64 // fenced calls completed
	fencers  atomic.Int32 // fences waiting on acked
	released sync.Once    // the session's reference to shmem
	replaced atomic.Bool  // dead, and the client has dialled the server again (sessions)
	space    sync.Cond    // signalled when inflight drops or the session dies
	// spaceWaiting counts the reserves waiting on space (read without mu
	// by corked).
	spaceWaiting atomic.Int64
	acked        sync.Cond // signalled when a write completes or the session dies
	wake         chan struct{}
	done         chan struct{}
	nowEnc       *wire.Encoder // sendNow's encoder, used by the goroutine that set mu.sending
	wg           sync.WaitGroup
}

// dial connects to the server at index idx of the list. A server named by
// its TCP address that turns out to run on this host (its hello reply
// names a Unix socket and our host identity) is reached through that
// socket instead, with the shared-memory ring; if the socket does not
// answer, the session stays on TCP.
func dial(ctx context.Context, cl *Client, idx int) (*session, error) {
	cfg := &cl.cfg
	a := cfg.Servers[idx]
	s := &session{cl: cl, idx: idx, addr: a, via: a, wake: make(chan struct{}, 1), done: make(chan struct{})}
	s.log = cl.log.With("server", a.String())
	s.mu.pending = map[uint32]*call{}
	s.mu.files = map[*File]struct{}{}
	s.space.L = &s.mu
	s.acked.L = &s.mu
	conn, rep, err := s.connect(ctx, a)
	if err != nil {
		return nil, err
	}
	if a.Net == "tcp" && cfg.PreferLocal && rep.Local != "" && rep.Host != "" && rep.Host == transport.HostID() {
		local := transport.Addr{Net: "unix", Addr: rep.Local}
		if lconn, lrep, err := s.connect(ctx, local); err == nil {
			conn.Close()
			conn, rep, s.via = lconn, lrep, local
		} else {
			s.log.Warn("the server's unix socket refused the session or did not answer, staying on tcp", "path", rep.Local, "err", err)
		}
	}
	s.name = rep.Name
	s.ident = identity{id: rep.ID, peers: rep.Peers, index: rep.Index}
	s.direct = rep.Direct
	s.conn = conn
	if s.via.Net == "tcp" {
		s.dialBulk(ctx, s.via, rep)
	}
	s.ymx, err = yamux.Client(conn, transport.YamuxConfig(s.log, cfg.Timeout))
	if err == nil {
		s.st, err = s.ymx.OpenStream()
	}
	if err != nil {
		conn.Close()
		s.closeBulk()
		s.releaseRing()
		return nil, wire.Errorf(wire.EUNREACHABLE, "delegate server %s: %w", a, err)
	}
	s.nowEnc = wire.NewEncoder(s.compression())
	s.wg.Add(2)
	go s.sendLoop()
	go s.recvLoop()
	return s, nil
}

// connect dials a, sends the hello (with a new shared-memory ring on a
// Unix socket) and returns the connection and the server's reply.
func (s *session) connect(ctx context.Context, a transport.Addr) (net.Conn, *wire.Reply, error) {
	cfg := &s.cl.cfg
	conn, err := transport.Dial(ctx, a, cfg.Timeout, cfg.TLS)
	if err != nil {
		return nil, nil, err
	}
	ringFD := -1
	hello := &wire.Hello{Client: cfg.Name, Servers: uint32(len(cfg.Servers)), Index: uint32(s.idx), ListHash: s.cl.listHash}
	if a.Net == "unix" && cfg.RingBytes > 0 {
		r, err := shm.Create("delegate-ring", cfg.RingBytes)
		if err != nil {
			conn.Close()
			return nil, nil, wire.Errorf(wire.ENOMEM, "delegate server %s: %w", a, err)
		}
		// The first page is the server's control page; the ring follows.
		s.shmem, s.ring = newMapping(r), shm.NewRing(wire.CtrlBytes, uint64(cfg.RingBytes-wire.CtrlBytes))
		ringFD = r.FD()
		hello.RingSize = uint64(cfg.RingBytes)
	}
	if a.Net == "tcp" && cfg.TLS == nil { // bulk connections are raw TCP: none under TLS
		hello.Bulk = uint32(cfg.BulkConns)
	}
	rep, err := transport.ClientHello(conn, hello, ringFD, cfg.Timeout, cfg.Token)
	if s.shmem != nil {
		s.shmem.r.CloseFD()
	}
	if err == nil {
		err = rep.Err()
	}
	if err != nil {
		conn.Close()
		// Not releaseRing: a session that stays on TCP after its Unix
		// socket failed must have no ring at all.
		s.shmem.release()
		s.shmem, s.ring = nil, nil
		if a.Net == "tcp" && cfg.TLS == nil && errors.Is(err, transport.ErrClosedInHandshake) {
			return nil, nil, wire.Errorf(wire.EUNREACHABLE, "delegate server %s closed the connection in the handshake (a server that requires TLS? set DELEGATE_TLS_CA): %w", a, err)
		}
		if wire.CodeOf(err) == wire.EIO || wire.CodeOf(err) == wire.ETIMEDOUT {
			return nil, nil, wire.Errorf(wire.EUNREACHABLE, "delegate server %s did not complete the handshake: %w", a, err)
		}
		return nil, nil, wire.Errorf(wire.CodeOf(err), "delegate server %s: %w", a, err)
	}
	return conn, rep, nil
}

// releaseRing drops the session's reference to its shared memory, once: the
// region is unmapped now, or when the last file opened on the session is
// closed (mapping).
func (s *session) releaseRing() {
	s.released.Do(s.shmem.release)
}

// attach records f as open on s and takes its reference to the shared
// memory. It fails, with why, once the session has died.
func (s *session) attach(f *File) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.err != nil {
		return s.mu.err
	}
	if _, ok := s.mu.files[f]; ok {
		return nil
	}
	if !s.shmem.acquire() {
		// Cannot happen while the session lives (it holds a reference).
		return wire.Errorf(wire.EIO, "delegate server %s: shared memory already released", s.addr)
	}
	s.mu.files[f] = struct{}{}
	return nil
}

// detach forgets f (closed, or its open failed) and drops its reference to
// the shared memory; once only per attach.
func (s *session) detach(f *File) {
	s.mu.Lock()
	_, ok := s.mu.files[f]
	delete(s.mu.files, f)
	s.mu.Unlock()
	if ok {
		s.shmem.release()
	}
}

// slotClean reports whether control page slot i says the server holds no
// dirty data of the file (wire/ctrl.go). The caller is an operation of a
// file attached to s.
func (s *session) slotClean(i uint32) bool {
	if i == 0 || s.shmem == nil || i >= wire.CtrlSlots {
		return false
	}
	return s.shmem.word(i).Load() == wire.SlotClean
}

// alive returns nil, or why the session died.
func (s *session) alive() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mu.err
}

// fail kills the session with err: the files open on it are marked lost
// (their direct reads stop at once), every queued and pending call
// completes with err, waiters wake up, and later calls fail at once.
func (s *session) fail(err error) {
	s.mu.Lock()
	if s.mu.err != nil {
		s.mu.Unlock()
		return
	}
	s.mu.err = err
	calls := s.mu.queue
	s.mu.queue = nil
	for _, c := range s.mu.pending {
		calls = append(calls, c)
	}
	s.mu.pending = map[uint32]*call{}
	files := make([]*File, 0, len(s.mu.files))
	for f := range s.mu.files {
		files = append(files, f)
	}
	s.space.Broadcast()
	s.acked.Broadcast()
	s.mu.Unlock()
	// Before any call completes, so that whoever sees a call fail also sees
	// its file lost.
	for _, f := range files {
		f.lose(s)
	}
	close(s.done)
	if s.ring != nil {
		s.ring.Close(err)
	}
	s.ymx.Close()
	s.closeBulk()
	for _, c := range calls {
		s.complete(c, err)
	}
	if errors.Is(err, errClientClosed) {
		s.log.Debug("session closed")
	} else {
		s.log.Warn("session ended", "err", err)
	}
}

// lost turns a transport error into the error calls see.
// The server's state of the files open on the session dies with it, so
// the message says what to do (File.lostErr).
func (s *session) lost(err error) error {
	if errors.Is(err, wire.EPROTO) {
		return wire.Errorf(wire.EPROTO, "delegate server %s: %w; connection closed: reopen the file", s.addr, err)
	}
	return wire.Errorf(wire.ECONNLOST, "connection to delegate server %s lost (%w): reopen the file", s.addr, err)
}

// close ends the session (if it is still alive) and waits for its loops.
func (s *session) close() {
	s.fail(errClientClosed)
	s.wg.Wait()
	s.releaseRing()
}

// kick wakes the sender.
func (s *session) kick() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// submit queues c for sending.
func (s *session) submit(c *call) error {
	s.mu.Lock()
	if err := s.mu.err; err != nil {
		s.mu.Unlock()
		s.complete(c, err)
		return err
	}
	s.mu.queue = append(s.mu.queue, c)
	if c.fenced() {
		s.mu.wqueued++
		c.fseq = s.mu.wqueued
	}
	s.mu.Unlock()
	s.kick()
	return nil
}

// lockAtomic takes atomicMu for an end marker, which must not come
// between two parts of an atomic call (File.endCollective). The call that
// holds it may be waiting for ring space that this rank's pieces of a
// collective hold on the server until their marker (wire.IOHold), the one
// waiting here: so a stat of the marker's file (handle id) goes first,
// which makes the server apply and answer what the stream holds
// (server passesHeld) and free their space.
func (s *session) lockAtomic(id uint64) {
	if s.atomicMu.TryLock() {
		return
	}
	if s.ring != nil {
		s.submit(newCall(wire.TStat, &wire.FileOp{File: id})) // its answer is not waited for
	}
	if markerWaitHook != nil {
		markerWaitHook()
	}
	s.atomicMu.Lock()
}

// markerWaitHook, when set (tests), runs when an end marker waits for an
// atomic call of its session (lockAtomic).
var markerWaitHook func()

// roundTrip sends c and waits for its reply.
func (s *session) roundTrip(c *call) error {
	if err := s.sendNow(c); err != nil {
		return err
	}
	return c.wait()
}

// sendNow sends c from the calling goroutine when nothing is queued and
// nobody is sending, and otherwise queues it as submit does. For a caller
// that waits for c's reply: it saves the hand-over to the sender, which on
// a C thread that called into Go (every delegate_* call) means waking
// another thread, since that goroutine is locked to its thread (measured
// on the checkpoint's open and close: the request took 0.07-0.28 ms from
// submit to the server's queue, the reply 0.03-0.15 ms back). Order holds:
// everything queued before c was written before it (the queue is empty
// and no other writer is active), and whatever comes while c is written
// waits in the queue for the sender, kicked once c is out.
func (s *session) sendNow(c *call) error {
	s.mu.Lock()
	if err := s.mu.err; err != nil {
		s.mu.Unlock()
		s.complete(c, err)
		return err
	}
	if c.fenced() {
		s.mu.wqueued++
		c.fseq = s.mu.wqueued
	}
	if s.mu.sending || len(s.mu.queue) > 0 {
		s.mu.queue = append(s.mu.queue, c)
		s.mu.Unlock()
		s.kick()
		return nil
	}
	s.mu.sending = true
	c.sealed = true
	s.mu.nextID++
	c.id = s.mu.nextID
	s.mu.pending[c.id] = c
	s.mu.Unlock()
	err := s.encode(s.nowEnc, c)
	if err != nil {
		s.mu.Lock()
		delete(s.mu.pending, c.id)
		s.mu.Unlock()
		s.complete(c, err) // only our own bug can get here, as in sendLoop
	} else if _, err = s.st.Write(s.nowEnc.Bytes()); err != nil {
		s.fail(s.lost(err)) // completes c with the session's error
	}
	s.cl.countWire(s.nowEnc)
	s.nowEnc.Reset()
	s.mu.Lock()
	s.mu.sending = false
	more := len(s.mu.queue) > 0
	s.mu.Unlock()
	if more {
		s.kick()
	}
	return nil
}

// reserve counts n bytes against the inflight limit of an inline session,
// waiting while the limit is reached. Corked batches hold their room until
// they are sent, as they hold ring space (shm.Ring.AllocKick): before it
// first waits (after beforeWait) and whenever a batch was corked or grew
// since (Client.corkGen, session.corked), it sends them, without s.mu; a
// batch corked by another thread after the waiter sent them held the room
// for ever (found in review, with the same hang on the ring).
func (s *session) reserve(c *call, n int64, beforeWait func()) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := s.cl.corkKicker()
	first := true
	for s.mu.err == nil && s.mu.inflight > 0 && s.mu.inflight+n > s.cl.cfg.MaxInflightBytes {
		if k.Due() {
			s.mu.Unlock()
			if first && beforeWait != nil {
				beforeWait()
			}
			first = false
			k.Kick()
			s.mu.Lock()
			continue
		}
		// Counted before the generation is read again: a corked() that
		// follows a change the waiter has not seen finds it counted and
		// takes s.mu, which Wait gives up only once asleep.
		s.spaceWaiting.Add(1)
		if k.Moved() {
			s.spaceWaiting.Add(-1)
			continue
		}
		s.space.Wait()
		s.spaceWaiting.Add(-1)
	}
	if s.mu.err != nil {
		return s.mu.err
	}
	s.mu.inflight += n
	c.inflight += n
	return nil
}

// compression is the policy of the session's encoders: the configured
// one over TCP, none on a Unix socket.
func (s *session) compression() wire.Compression {
	if s.via.Net == "tcp" {
		return s.cl.cfg.Compression
	}
	return wire.Compression{}
}

func (s *session) sendLoop() {
	defer s.wg.Done()
	enc := wire.NewEncoder(s.compression())
	for {
		select {
		case <-s.wake:
		case <-s.done:
			return
		}
		s.mu.Lock()
		if s.mu.sending || len(s.mu.queue) == 0 {
			// A caller is sending (sendNow): it kicks again once done if
			// anything was queued meanwhile.
			s.mu.Unlock()
			continue
		}
		s.mu.sending = true
		batch := s.mu.queue
		s.mu.queue = s.mu.spare[:0]
		for _, c := range batch {
			c.sealed = true
			s.mu.nextID++
			c.id = s.mu.nextID
			s.mu.pending[c.id] = c
		}
		s.mu.Unlock()
		for i, c := range batch {
			if err := s.encode(enc, c); err != nil {
				// Only our own bug can get here; fail the call, not the session.
				s.mu.Lock()
				delete(s.mu.pending, c.id)
				s.mu.Unlock()
				s.complete(c, err)
			}
			if enc.Len() >= 1<<20 || i == len(batch)-1 {
				if _, err := s.st.Write(enc.Bytes()); err != nil {
					s.fail(s.lost(err))
					return
				}
				enc.Reset()
			}
		}
		s.cl.countWire(enc)
		clear(batch)
		s.mu.Lock()
		s.mu.spare = batch[:0]
		s.mu.sending = false
		more := len(s.mu.queue) > 0
		s.mu.Unlock()
		if more {
			s.kick()
		}
	}
}

// encode appends c's frame, finishing its description from the data.
func (s *session) encode(enc *wire.Encoder, c *call) error {
	switch d := c.desc.(type) {
	case *wire.Write:
		d.Ext = c.ext.Bytes()
		d.Flags, d.CollTag = c.flags, c.coll
		if c.slot != nil {
			d.RingOff, d.RingLen = s.ring.Off(c.slot), uint64(c.filled)
			return enc.Append(c.t, c.id, d)
		}
		if c.viaBulk {
			d.BulkConn, d.BulkSeq, d.BulkLen = c.bulkConn, c.bulkSeq, uint64(c.filled)
			return enc.Append(c.t, c.id, d)
		}
		return enc.Append(c.t, c.id, d, c.data[:c.filled])
	case *wire.Read:
		d.Ext = c.ext.Bytes()
		d.Flags, d.CollTag = c.flags, c.coll
		if c.slot != nil {
			d.RingOff, d.RingLen = s.ring.Off(c.slot), uint64(c.filled)
		}
		if c.viaBulk {
			d.BulkConn, d.BulkSeq, d.BulkLen = c.bulkConn, c.bulkSeq, uint64(c.filled)
		}
	}
	return enc.Append(c.t, c.id, c.desc)
}

func (s *session) recvLoop() {
	defer s.wg.Done()
	rd := wire.NewReader(s.st, 256<<10)
	for {
		h, err := rd.Next()
		if err != nil {
			s.fail(s.lost(err))
			return
		}
		s.mu.Lock()
		c := s.mu.pending[h.ID]
		delete(s.mu.pending, h.ID)
		s.mu.Unlock()
		// c is no longer pending: on a bad reply fail does not see it, so
		// it is completed here, or its caller would wait for ever.
		if c == nil || h.Type != c.t|wire.ReplyBit {
			err := wire.Errorf(wire.EPROTO, "delegate server %s: unexpected %v for request %d", s.addr, h.Type, h.ID)
			s.fail(err)
			if c != nil {
				s.complete(c, err)
			}
			return
		}
		err = rd.Decode(&c.rep)
		if err == nil && h.PayloadLen > 0 {
			err = s.payload(rd, c, h)
		}
		if err != nil {
			err = s.lost(err)
			s.fail(err)
			s.complete(c, err)
			return
		}
		s.complete(c, nil)
	}
}

// payload takes a reply's inline data: read results, or a stats snapshot.
func (s *session) payload(rd *wire.Reader, c *call, h wire.Header) error {
	if c.inline {
		if int64(h.PayloadLen) != int64(len(c.data)) {
			return wire.Errorf(wire.EPROTO, "read reply of %d bytes for %d requested", h.PayloadLen, len(c.data))
		}
		return rd.ReadPayload(c.data[:h.PayloadLen])
	}
	// Read as the bytes arrive: a reply announcing 64 MiB costs what it sends.
	var err error
	c.data, err = rd.ReadPayloadAll()
	return err
}

// complete finishes c with err (or its reply's error).
func (s *session) complete(c *call, err error) {
	if err == nil {
		if err = c.rep.Err(); err != nil {
			err = s.annotate(c, err)
		}
	}
	c.err = err
	if c.slot != nil && c.t == wire.TWrite {
		s.ring.Free(c.slot)
	}
	if err == nil && c.t == wire.TWrite && c.slot == nil && !c.viaBulk && c.data != nil {
		// Answered (recvLoop), so the sender encoded it long ago; a call
		// failed by a dying session may still be in the sender's hands,
		// and its buffer is left to the garbage collector.
		putInline(c.data)
		c.data = nil
	}
	if c.inflight > 0 {
		s.mu.Lock()
		s.mu.inflight -= c.inflight
		s.space.Broadcast()
		s.mu.Unlock()
	}
	// The file's counts first: whoever a fence lets go sees the fence word
	// without this write or marker.
	if c.file != nil && c.t == wire.TWrite {
		c.file.writeDone(err)
	}
	if c.marker != nil {
		c.marker.markerDone(err, c.wmarker)
	}
	if c.fenced() {
		// No lock per acknowledgement unless a fence waits: it registers
		// under s.mu before it reads wdone, so either it sees this count
		// or this sees it waiting and wakes it (session.fence).
		s.wdone.Add(1)
		if s.fencers.Load() > 0 {
			s.mu.Lock()
			s.acked.Broadcast()
			s.mu.Unlock()
		}
	}
	close(c.done)
}

// annotate names the server in a server's error message.
func (s *session) annotate(c *call, err error) error {
	return fmt.Errorf("%w (delegate server %s)", err, s.addr)
}

var errNoSession = errors.New("no session")

// errClientClosed ends the sessions of a client that closes: not worth a warning.
var errClientClosed = wire.Errorf(wire.EBADF, "delegate client closed")

func (s *session) String() string { return fmt.Sprintf("server %d (%s)", s.idx, s.addr) }
