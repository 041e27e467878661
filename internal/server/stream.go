package server

import (
	"errors"
	"io"
	"net"

	"github.com/delegate-io/delegate/internal/wire"
	"github.com/hashicorp/yamux"
)

// stream serves the requests of one yamux stream, one at a time, in
// order. It owns its reader, encoder and buffers.
type stream struct {
	ss   *session
	c    net.Conn
	rd   *wire.Reader
	enc  *wire.Encoder
	data []byte // inline write payloads and inline read results
}

// A handler serves one request whose header and description are current
// in st.rd. It returns the reply and, for a read answered inline, the data.
type handler func(st *stream, h wire.Header) (wire.Reply, []byte)

var handlers = [wire.NumTypes]handler{
	wire.TOpen:    (*stream).open,
	wire.TClose:   (*stream).closeFile,
	wire.TWrite:   (*stream).write,
	wire.TRead:    (*stream).read,
	wire.TStat:    (*stream).stat,
	wire.TResize:  (*stream).resize,
	wire.TSync:    (*stream).sync,
	wire.TFlush:   (*stream).flushFile,
	wire.TDelete:  (*stream).delete,
	wire.TCounter: (*stream).counter,
	wire.TStats:   (*stream).statsReq,
	wire.TAlloc:   (*stream).alloc,
}

// Replies larger than this go out in their own write instead of being
// copied into the batch of replies.
const bigPayload = 64 << 10

func newStream(ss *session, c net.Conn) *stream {
	return &stream{ss: ss, c: c, rd: wire.NewReader(c, 256<<10), enc: wire.NewEncoder(wire.Compression{})}
}

func (st *stream) serve() {
	defer st.c.Close()
	s := st.ss.srv
	for {
		// Replies are held while more requests are already buffered, so a
		// pipelined batch is answered with one write.
		if st.rd.Buffered() == 0 && st.enc.Len() > 0 {
			if !st.sendReplies() {
				return
			}
		}
		h, err := st.rd.Next()
		if err != nil {
			if !errors.Is(err, io.EOF) && !isClosed(err) {
				s.stats.badFrames.Add(1)
				st.ss.log.Warn("bad frame, closing stream", "err", err)
				if wire.CodeOf(err) == wire.EPROTO && h.Type.Valid() {
					rep := wire.ReplyTo(err)
					_ = st.enc.Append(h.Type.Request()|wire.ReplyBit, h.ID, &rep)
				}
			}
			st.sendReplies()
			return
		}
		var rep wire.Reply
		var payload []byte
		t := h.Type
		if st.ss.monitor && t != wire.TStats {
			rep = wire.ReplyTo(wire.Errorf(wire.EACCES, "a monitor session may only ask for stats"))
		} else if fn := handlers[t]; fn != nil && !t.IsReply() {
			s.stats.requests[t].Add(1)
			rep, payload = fn(st, h)
		} else {
			rep = wire.ReplyTo(wire.Errorf(wire.EPROTO, "unexpected %v frame", t))
		}
		if rep.Code != wire.OK {
			s.stats.errors[t.Request()].Add(1)
			if rep.Code == wire.EPROTO {
				s.stats.badFrames.Add(1)
			}
		}
		if err := st.reply(h, &rep, payload); err != nil {
			st.ss.log.Warn("reply", "err", err)
			return
		}
	}
}

func (st *stream) reply(h wire.Header, rep *wire.Reply, payload []byte) error {
	t := h.Type.Request() | wire.ReplyBit
	if len(payload) <= bigPayload {
		return st.enc.Append(t, h.ID, rep, payload)
	}
	if err := st.enc.Begin(t, h.ID, rep, len(payload)); err != nil {
		return err
	}
	if !st.sendReplies() {
		return errors.New("stream closed")
	}
	_, err := st.c.Write(payload)
	return err
}

func (st *stream) sendReplies() bool {
	if st.enc.Len() == 0 {
		return true
	}
	_, err := st.c.Write(st.enc.Bytes())
	s := st.ss.srv
	s.stats.descRaw.Add(st.enc.Counts.DescRaw)
	s.stats.descWire.Add(st.enc.Counts.DescWire)
	st.enc.Counts = wire.Counters{}
	st.enc.Reset()
	return err == nil
}

// payload reads the current frame's inline payload into the stream's buffer.
func (st *stream) payload(n uint32) ([]byte, error) {
	buf := st.buffer(int(n))
	if err := st.rd.ReadPayload(buf); err != nil {
		return nil, err
	}
	return buf, nil
}

// buffer returns the stream's scratch buffer resized to n bytes; a large
// buffer is not kept once a smaller request comes.
func (st *stream) buffer(n int) []byte {
	if cap(st.data) < n || (cap(st.data) > 8<<20 && n < 1<<20) {
		st.data = make([]byte, n)
	}
	return st.data[:n]
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
