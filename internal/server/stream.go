package server

import (
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"runtime/debug"
	"sync/atomic"
	"time"

	"github.com/delegate-io/delegate/internal/transport"
	"github.com/delegate-io/delegate/internal/wire"
	"github.com/hashicorp/yamux"
)

// stream serves one yamux stream. A reader goroutine decodes frames into
// requests and queues them; the stream's worker applies them one at a
// time, in order, so a read sees every earlier write of the stream. The
// queue is what the statistics call queue depth and time in queue; it is
// bounded, so a worker that waits (for buffer space) stops the reader, and
// the client, in turn.
type stream struct {
	ss   *session
	c    net.Conn
	rd   *wire.Reader
	enc  *wire.Encoder
	q    chan *request
	data []byte // scratch for inline read results up to smallRead
	// bulkHdr, bulkIOV: the header and writev list of bulk reads (bulk.go).
	bulkHdr [wire.BulkHeaderSize]byte
	bulkIOV net.Buffers
	// stopAfterReply: a monitor asked the server to stop (wire.Stats.Stop);
	// the request goes to the owner once the reply is written, since the
	// shutdown closes this session.
	stopAfterReply bool
	// held: collective writes kept unanswered for their end marker
	// (coll.go, stream.hold); only the worker touches it.
	held heldColl
	// atom: the atomic lock held for the call being applied, atomBuf its
	// storage (atomic.go); only the worker touches them.
	atom    *atomicGroup
	atomBuf atomicGroup
	// ownQueued counts the bytes of queued requests' inline payloads and
	// descriptions: the reader adds, the worker takes away and tells
	// ownTaken (admit).
	ownQueued atomic.Int64
	ownTaken  chan struct{}

	// warnedInline, warnedDesc: the reader logged a request over
	// wire.MaxInline, over wire.MaxRequestDesc.
	warnedInline, warnedDesc bool
}

// request is a decoded frame waiting in the queue.
type request struct {
	h       wire.Header
	desc    any          // the decoded description, nil if it did not decode
	ext     wire.Extents // a write's or read's extents, validated (stream.extents)
	err     error        // why it did not decode
	payload []byte       // inline payload
	// xfer is what the request counts in the transfer share (xfermem.go):
	// its read result; released once it is answered. own is what its
	// inline payload and description count in the stream's ownQueued.
	xfer, own int64
	arrived   time.Time
	waited    time.Duration // in the queue
	// sum is the summary of the file the request is about, set by its
	// handler once it knows the file (filestats.go); nil for none.
	sum *fileStats
	// refused: the atomic call a request refused on arrival was a part of
	// (atomic.go), its description being dropped.
	refused atomicPart
}

// queueLen bounds the requests read ahead of the worker per stream.
const queueLen = 64

// A handler serves one request. It returns the reply and, for a read
// answered inline, the data.
type handler func(st *stream, r *request) (wire.Reply, []byte)

var handlers = [wire.NumTypes]handler{
	wire.TOpen:    (*stream).open,
	wire.TClose:   (*stream).closeFile,
	wire.TWrite:   (*stream).write,
	wire.TRead:    (*stream).readAny,
	wire.TStat:    (*stream).stat,
	wire.TResize:  (*stream).resize,
	wire.TSync:    (*stream).sync,
	wire.TFlush:   (*stream).flushFile,
	wire.TDelete:  (*stream).delete,
	wire.TCounter: (*stream).counter,
	wire.TStats:   (*stream).statsReq,
	wire.TAlloc:   (*stream).alloc,
	wire.TCollEnd: (*stream).collEnd,
}

// descs makes the description value of each request type.
var descs = [wire.NumTypes]func() any{
	wire.TOpen:    func() any { return new(wire.Open) },
	wire.TClose:   func() any { return new(wire.Close) },
	wire.TWrite:   func() any { return new(wire.Write) },
	wire.TRead:    func() any { return new(wire.Read) },
	wire.TStat:    func() any { return new(wire.FileOp) },
	wire.TResize:  func() any { return new(wire.Resize) },
	wire.TSync:    func() any { return new(wire.FileOp) },
	wire.TFlush:   func() any { return new(wire.FileOp) },
	wire.TDelete:  func() any { return new(wire.Delete) },
	wire.TCounter: func() any { return new(wire.Counter) },
	wire.TStats:   func() any { return new(wire.Stats) },
	wire.TAlloc:   func() any { return new(wire.Resize) },
	wire.TCollEnd: func() any { return new(wire.CollEnd) },
}

// Replies larger than this go out in their own write instead of being
// copied into the batch of replies.
const bigPayload = 64 << 10

// replyBatchBytes: the batch of replies goes out once it holds this much,
// even while more requests wait, so that a stream's batch holds at most
// this plus one reply of up to bigPayload (README, Memory), not queueLen
// of them.
const replyBatchBytes = 256 << 10

// readerBytes is the buffer of a stream's frame reader.
const readerBytes = 64 << 10

// transitPerStream is the most a stream holds of requests in transit
// outside --buffer (README, Memory): what yamux keeps of the client's
// unread data (at most its window, in a bytes.Buffer that may grow to
// twice that), the requests read ahead (ownQueueMax, the one the worker
// handles included), the frame the reader holds while it waits for room
// (readerFrameMax), the descriptions of held collective pieces
// (maxHeldDesc), the frame reader's buffer, the read scratch (smallRead),
// and the batch of replies (replyBatchBytes and one reply of up to
// bigPayload, in a buffer that may grow to twice that).
const transitPerStream = 2*transport.ServerStreamWindow + ownQueueMax + readerFrameMax + maxHeldDesc +
	readerBytes + smallRead + 2*(replyBatchBytes+bigPayload)

// maxDescMem is the most one request's description counts (descMem): its
// bytes and its extent list's runs.
const maxDescMem = wire.MaxRequestDesc + wire.MaxRunsMem

// ownQueueMax bounds what a stream's queued requests hold (admit): past
// ownQueueBytes only when a single request holds more, its payload and
// description at their limits.
const ownQueueMax = wire.MaxInline + maxDescMem

// readerFrameMax is what the reader holds of the frame it waits with
// (admit): the wire.Reader's description buffer and, for a compressed
// one, its decompressed form (each at most wire.MaxRequestDesc), and the
// decoded request (descMem's count of it).
const readerFrameMax = 2*wire.MaxRequestDesc + maxDescMem

func newStream(ss *session, c net.Conn) *stream {
	return &stream{ss: ss, c: c, rd: wire.NewReader(c, readerBytes), enc: wire.NewEncoder(wire.Compression{}),
		q: make(chan *request, queueLen), ownTaken: make(chan struct{}, 1)}
}

// serve runs the worker; the reader runs beside it until the stream ends.
func (st *stream) serve() {
	defer st.c.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		st.readLoop()
	}()
	var cur *request // the request being handled: given back also after a panic
	defer func() {
		// The session ends with its stream (session.run): closing it
		// also stops the reader if the worker quit first (a stream the
		// server only closes goes on taking what the client sends).
		st.c.Close()
		st.ss.close()
		st.atomEnd() // the call's other parts will not come
		if cur != nil {
			st.done(cur)
		}
		for r := range st.q {
			st.ss.srv.stats.queueDepth.Add(-1)
			st.done(r)
		}
		<-done
	}()
	defer st.recoverPanic("worker") // first: the stream closes before its cleanup waits
	s := st.ss.srv
	for {
		r, more := st.nextRequest()
		if !more {
			break
		}
		cur = r
		r.waited = time.Since(r.arrived)
		s.stats.dequeued(r.waited)
		st.atomicBefore(r)
		ok := true
		if st.hold(r) {
			// Answered before its end marker (collEnd) or before whatever
			// else comes first (releaseHeld). Its share of the own queue
			// goes back now: the marker is behind it (admit).
			s.stats.queueDepth.Add(-1)
			st.done(r)
		} else {
			if !st.passesHeld(r) {
				ok = st.releaseHeld()
			}
			rep, payload := st.handle(r)
			s.stats.queueDepth.Add(-1)
			// Replies are held while more requests wait, so a pipelined
			// batch is answered with one write (a large result is written
			// at once, a small one copied into the batch).
			ok = st.reply(r.h, &rep, payload) == nil && ok
			st.done(r)
		}
		cur = nil
		if ok && (len(st.q) == 0 || st.stopAfterReply || st.enc.Len() >= replyBatchBytes || st.atomicReplyDue()) {
			ok = st.sendReplies()
			st.atomicReplied()
		}
		if st.stopAfterReply {
			// Whether or not the reply could be written (the monitor may
			// hang up at once): the request was made.
			st.stopAfterReply = false
			s.requestStop(st.ss.client)
		}
		if !ok {
			break
		}
	}
	// The client went away, or its stream broke, between pieces it let
	// the server hold and their end marker: they came, so they are
	// applied, as unheld pieces would have been.
	if st.releaseHeld() {
		st.sendReplies()
	}
}

// readLoop decodes frames into the queue. A frame whose header is bad ends
// the stream (its length cannot be trusted); a description that does not
// decode is queued with its error and answered EPROTO.
func (st *stream) readLoop() {
	defer close(st.q)
	defer st.recoverPanic("reader")
	s := st.ss.srv
	for {
		h, err := st.rd.Next()
		at := time.Now() // it arrived: time in queue counts from here (admit may wait)
		if errors.Is(err, wire.ErrSkipped) {
			// A description over wire.MaxRequestDesc: skipped unread with
			// its payload, answered EPROTO (bad_frames counts it); the
			// stream goes on.
			if !st.warnedDesc { // once per stream
				st.warnedDesc = true
				st.ss.log.Warn("request over the description limit, refused", "type", h.Type.String(),
					"desc", h.DescLen, "max_request_desc", wire.MaxRequestDesc, "err", err)
			}
			// A write or read on a session with bulk connections may have
			// named a transfer nobody will take: the connection would be
			// out of step, so the session ends, as for a description that
			// does not decode (bulkRefused).
			if t := h.Type; (t == wire.TWrite || t == wire.TRead) && st.ss.bulk != nil {
				st.bulkFailed(err)
			}
			st.push(&request{h: h, err: err, arrived: at})
			continue
		}
		if err != nil {
			if !errors.Is(err, io.EOF) && !isClosed(err) {
				s.stats.badFrames.Add(1)
				st.ss.log.Warn("bad frame, closing stream", "err", err)
				if errors.Is(err, wire.EPROTO) && h.Type.Valid() {
					st.push(&request{h: h, err: err, arrived: at})
				}
			}
			return
		}
		r := &request{h: h, arrived: at}
		t := h.Type
		switch {
		case t.IsReply() || descs[t] == nil:
			r.err = wire.Errorf(wire.EPROTO, "unexpected %v frame", t)
		case st.ss.monitor && t != wire.TStats:
			r.err = wire.Errorf(wire.EACCES, "a monitor session may only ask for stats")
		default:
			r.desc = descs[t]()
			decoded := false
			if r.err = st.rd.Decode(r.desc); r.err == nil {
				decoded = true
				r.err = st.extents(h, r.desc, &r.ext)
			}
			if r.err == nil && h.PayloadLen > wire.MaxInline {
				// Not read: Next skips it. The stream goes on.
				r.err = wire.Errorf(wire.EPROTO, "%v request carries %d bytes inline, more than %d (wire.MaxInline): larger data goes in more requests",
					t, h.PayloadLen, wire.MaxInline)
				if !st.warnedInline { // once per stream; bad_frames counts them
					st.warnedInline = true
					st.ss.log.Warn("request over the inline limit, refused", "type", t.String(), "payload", h.PayloadLen, "max_inline", wire.MaxInline)
				}
			}
			if r.err != nil {
				if decoded {
					r.refused = refusedPart(r.desc)
				}
				st.bulkRefused(r.desc, decoded, r.err) // its data on a bulk connection will not be taken
				// Nothing of a refused request stays queued: admit counts
				// only what it takes (review: a refused write's parsed runs
				// went uncounted, 9 MiB per stream).
				r.desc, r.ext = nil, wire.Extents{}
			}
		}
		if r.err == nil {
			if err := st.admit(r); err != nil {
				if !isClosed(err) && !errors.Is(err, wire.ECONNLOST) {
					s.stats.badFrames.Add(1)
					st.ss.log.Warn("bad frame, closing stream", "err", err)
				}
				return
			}
		}
		s.stats.descWire.Add(int64(h.DescLen))
		s.stats.descRaw.Add(int64(len(st.rd.Desc())))
		st.push(r)
	}
}

// extents validates the extent list of a write or a read, once, as it
// arrives: a write's must cover exactly the data that comes with it (the
// payload, or the ring slot it names), a read's at most MaxReadBytes. The
// handlers and the engine apply the validated form (request.ext) and never
// decode or check the list again.
func (st *stream) extents(h wire.Header, desc any, x *wire.Extents) error {
	switch d := desc.(type) {
	case *wire.Write:
		n := int64(h.PayloadLen)
		if d.RingLen > 0 {
			n = int64(min(d.RingLen, math.MaxInt64))
		}
		if d.BulkLen > 0 {
			n = int64(min(d.BulkLen, math.MaxInt64))
		}
		err := x.Parse(d.Ext, n)
		d.Ext = nil // parsed: the request keeps x (descMem)
		if err != nil {
			return fmt.Errorf("write: %w", err)
		}
		if x.Total() != n {
			return wire.Errorf(wire.EPROTO, "write: extents cover %d bytes, %d came with them", x.Total(), n)
		}
	case *wire.Read:
		limit := st.ss.srv.cfg.MaxReadBytes
		err := x.Parse(d.Ext, limit)
		d.Ext = nil
		if err != nil {
			return fmt.Errorf("read: %w (at most %d bytes per request)", err, limit)
		}
	}
	return nil
}

// recoverPanic turns a panic of the stream's reader or worker into a
// closed stream, a log line and a count, instead of a dead server that
// takes every client's buffered data with it. It must be deferred directly.
func (st *stream) recoverPanic(who string) {
	if p := recover(); p != nil {
		st.ss.srv.stats.panics.Add(1)
		st.ss.log.Error("panic in stream, closing it", "in", who, "panic", p, "stack", string(debug.Stack()))
		st.c.Close()
	}
}

func (st *stream) push(r *request) {
	st.ss.srv.stats.enqueued()
	st.q <- r
}

// handle dispatches one request and counts it.
func (st *stream) handle(r *request) (wire.Reply, []byte) {
	s := st.ss.srv
	t := r.h.Type.Request()
	var rep wire.Reply
	var payload []byte
	if r.err != nil {
		rep = wire.ReplyTo(r.err)
		if errors.Is(r.err, wire.EPROTO) {
			s.stats.badFrames.Add(1)
		}
	} else {
		s.stats.requests[t].Add(1)
		rep, payload = handlers[t](st, r)
	}
	switch rep.Code {
	case wire.OK:
	case wire.ENOENT, wire.EEXIST:
		s.stats.answers[t].Add(1) // a missing file is an answer (IOR's existence check)
	default:
		s.stats.errors[t].Add(1)
	}
	r.sum.request(t, r.waited, rep.Code)
	return rep, payload
}

func (st *stream) reply(h wire.Header, rep *wire.Reply, payload []byte) error {
	t := h.Type.Request() | wire.ReplyBit
	if len(payload) <= bigPayload {
		return st.enc.Append(t, h.ID, rep, payload)
	}
	if err := st.enc.Begin(t, h.ID, rep, len(payload)); err != nil {
		return err
	}
	// A large result holds transfer memory until it is written, so a
	// client that stops reading loses its stream instead of holding the
	// share for ever: the replies batched before it and its header must
	// leave within bulkTimeout (review: a window already full held the
	// share at this flush), each piece within bulkTimeout, the whole reply
	// within the time a bulk send gets. In pieces: yamux's send loop copies
	// each write into a buffer its session keeps (README, Memory).
	end := time.Now().Add(bulkTimeout + time.Duration(len(payload)>>20)*time.Second)
	defer st.c.SetWriteDeadline(time.Time{})
	_ = st.c.SetWriteDeadline(time.Now().Add(bulkTimeout))
	if !st.sendReplies() {
		return errors.New("stream closed")
	}
	for p := payload; len(p) > 0; {
		n := min(len(p), sendPiece)
		d := time.Now().Add(bulkTimeout)
		if d.After(end) {
			d = end
		}
		_ = st.c.SetWriteDeadline(d)
		if _, err := st.c.Write(p[:n]); err != nil {
			return err
		}
		p = p[n:]
	}
	return nil
}

// sendPiece bounds one write of a large reply on a stream: yamux copies
// each into its session's send buffer, which keeps the largest.
const sendPiece = 1 << 20

func (st *stream) sendReplies() bool {
	if st.enc.Len() == 0 {
		return true
	}
	if replyBatchHook != nil {
		replyBatchHook(st.enc.Len())
	}
	if g := st.atom; g != nil && g.err == nil {
		// The file's atomic lock is held (atomic.go): a client that stops
		// reading its replies loses its stream, not others the lock.
		_ = st.c.SetWriteDeadline(time.Now().Add(bulkTimeout))
		defer st.c.SetWriteDeadline(time.Time{})
	}
	_, err := st.c.Write(st.enc.Bytes())
	st.enc.Reset()
	return err == nil
}

// admit counts r's description (descMem) and inline payload in the
// stream's own queue and reads the payload into r.payload.
//
// Inline payloads and descriptions are the stream's own, not the transfer
// share's: the reader waits, for its own worker only, while the stream's
// queued requests hold anything and with this one would hold more than
// ownQueueBytes (a request alone may hold more: wire.MaxInline of payload
// and its description at wire.MaxRequestDesc; readLoop refuses more
// unread). No reader ever
// waits for another stream, nor for room that requests queued behind its
// own worker hold: a worker waiting in a collective's end marker for
// another rank (clients send the next collective's pieces behind an
// unanswered marker) must never keep that rank's reader from its marker,
// and a worker waiting for room for a read result must never wait for
// payloads queued behind it; a held collective piece gives its share back
// when it is held (serve). So every stream's queue holds at most
// ownQueueMax, the request its worker handles included (README, Memory).
//
// The payload is read into a buffer that grows with the bytes that
// arrive (wire.Reader.ReadPayloadAll): a frame that announces 1 MiB and
// sends nothing costs no memory (issue 9); it holds up only its own
// stream.
func (st *stream) admit(r *request) error {
	n := st.rd.PayloadLeft() + descMem(r, st.rd.Desc())
	for q := st.ownQueued.Load(); q > 0 && q+n > ownQueueBytes; q = st.ownQueued.Load() {
		if ownWaitHook != nil {
			ownWaitHook(q)
		}
		select {
		case <-st.ownTaken:
		case <-st.ss.closing:
			return wire.Errorf(wire.ECONNLOST, "session closed")
		}
	}
	st.ownQueued.Add(n)
	r.own = n
	var err error
	r.payload, err = st.rd.ReadPayloadAll()
	return err
}

// descMem is what a decoded request keeps of its description raw: the
// description's size (an open's path, counted for every request, a
// write's and a read's extent bytes, dropped once parsed, over-counted)
// and its parsed extent list's runs (wire.Extents.Mem). At most maxDescMem.
func descMem(r *request, raw []byte) int64 {
	return int64(len(raw)) + r.ext.Mem()
}

// replyBatchHook, when set (tests), sees the size of each batch of
// replies written (sendReplies).
var replyBatchHook func(n int)

// ownWaitHook, when set (tests), runs when a reader waits for its worker
// to take queued requests (admit).
var ownWaitHook func(queued int64)

// ownQueueBytes bounds what a stream's queued requests hold (admit): a
// MiB of inline payloads (wire.MaxInline) and room for the descriptions
// of a queue of ordinary requests (tens of bytes each) beside them.
const ownQueueBytes = wire.MaxInline + 64<<10

// done gives back what r held once it is answered (or dropped with its
// stream): its transfer memory and its place in the stream's own payloads.
func (st *stream) done(r *request) {
	st.ss.srv.xferMem.release(r.xfer)
	if r.own > 0 {
		st.ownQueued.Add(-r.own)
		select {
		case st.ownTaken <- struct{}{}:
		default:
		}
	}
	r.xfer, r.own = 0, 0
}

// smallRead: a read result up to this size goes into the stream's own
// scratch buffer, as a reply up to it goes into the stream's batch of
// replies; larger ones are counted in the transfer share.
const smallRead = 64 << 10

// readBuffer returns memory for r's result of n bytes: the stream's
// scratch buffer, or for more than smallRead a buffer counted in the
// transfer share until r is answered (it may wait for room: EAGAIN).
func (st *stream) readBuffer(r *request, n int64) ([]byte, error) {
	if n <= smallRead {
		if st.data == nil {
			st.data = make([]byte, smallRead)
		}
		return st.data[:n], nil
	}
	if err := st.ss.srv.xferMem.acquire(n, st.ss.closing); err != nil {
		return nil, err
	}
	r.xfer += n
	return make([]byte, n), nil
}

// isClosed reports whether err means the peer or the session went away,
// which is not worth a warning.
func isClosed(err error) bool {
	for _, e := range []error{net.ErrClosed, io.ErrClosedPipe, yamux.ErrSessionShutdown, yamux.ErrStreamClosed,
		yamux.ErrConnectionReset, yamux.ErrKeepAliveTimeout} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}
