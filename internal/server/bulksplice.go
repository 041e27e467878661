package server

import (
	"errors"
	"net"
	"syscall"
	"time"

	"github.com/delegate-io/delegate/internal/backend"
	"github.com/delegate-io/delegate/internal/wire"
	"golang.org/x/sys/unix"
)

// A bulk write of one extent that goes straight to the backend (at least
// Config.DirectBytes, not atomic) is spliced from its connection into the
// backend file: socket -> pipe -> file in the kernel, no copy through the
// server's memory, which halves the server's CPU per byte on such writes.
// Anything else takes the ordinary way (bulkRecv, then the handler).

// pipeBytes is the capacity asked for the splice pipe (the kernel's default
// limit for unprivileged pipes is 1 MiB).
const pipeBytes = 1 << 20

// splicePipe is a session's pipe for splicing. Only the stream that owns
// the session's bulk connections uses it (bulkConn), one request at a
// time; session.cleanup closes it once every stream has ended.
type splicePipe struct {
	r, w int
	size int
}

// bulkDirect serves write w by splicing when it can. ok false: nothing was
// read from the connection, and the caller takes the ordinary way.
func (st *stream) bulkDirect(w *wire.Write) (rep wire.Reply, ok bool) {
	ss := st.ss
	s := ss.srv
	if w.RingLen > 0 || w.Flags&wire.IOAtomic != 0 || int64(w.BulkLen) < s.engine.set.DirectBytes || w.BulkLen > wire.MaxPayload {
		return rep, false
	}
	it := wire.NewExtentIter(w.Ext, int64(w.BulkLen))
	off, n, one := it.Next()
	if _, _, more := it.Next(); !one || more || it.Err() != nil || n != int64(w.BulkLen) {
		return rep, false
	}
	hd, err := ss.handle(w.File)
	if err != nil || !hd.writable || !hd.rule.Owns(ss.index, off, n) || hd.f.flushErr() != nil {
		return rep, false
	}
	c, err := st.bulkConn(w.BulkConn)
	if err != nil {
		return rep, false
	}
	tc, isTCP := c.(*net.TCPConn)
	fdf, isFD := hd.f.backend().(backend.FDFile)
	if !isTCP || !isFD {
		return rep, false
	}
	p, err := ss.bulk.pipe()
	if err != nil {
		return rep, false
	}
	var hb [wire.BulkHeaderSize]byte
	err = readFullBy(c, hb[:])
	var h wire.BulkHeader
	if err == nil {
		h, err = wire.ParseBulkHeader(hb[:])
	}
	if err == nil && (h.Kind != wire.BulkWrite || h.Index != w.BulkConn || h.Seq != w.BulkSeq || h.Len != w.BulkLen) {
		err = wire.Errorf(wire.EPROTO, "bulk connection %d: got %+v for a write of transfer %d, %d bytes",
			w.BulkConn, h, w.BulkSeq, w.BulkLen)
	}
	if err != nil {
		return st.bulkFailed(err), true
	}
	if w.Flags&wire.IOColl != 0 {
		s.stats.collWrites.Add(1)
	}
	moved, err := hd.f.writeDirectSplice(off, n, tc, fdf, p)
	if err != nil {
		// The socket side failed, or the file's: either way the rest of
		// the transfer is not taken, so the session ends (bulkFailed).
		ss.bulk.dropPipe()
		return st.bulkFailed(err), true
	}
	s.stats.bulkIn.Add(moved)
	s.stats.bulkSpliced.Add(moved)
	s.stats.bytesIn.Add(moved)
	s.stats.extentsIn.Add(1)
	return wire.Reply{N: moved}, true
}

// bulkFailed counts and logs a transfer that failed, closes the session
// (its connections are out of step) and answers the request.
func (st *stream) bulkFailed(err error) wire.Reply {
	st.ss.srv.stats.bulkErrors.Add(1)
	st.ss.log.Warn("bulk transfer failed, closing the session", "err", err)
	st.ss.close()
	return wire.ReplyTo(err)
}

// writeDirectSplice is writeDirect with the data spliced from c: the
// buffered bytes of the range are dropped, then n bytes go from the socket
// into the backend file at off.
func (f *file) writeDirectSplice(off, n int64, c *net.TCPConn, dst backend.FDFile, p *splicePipe) (int64, error) {
	e := f.eng
	f.flushMu.Lock()
	defer f.flushMu.Unlock()
	f.punch(off, n)
	moved, err := spliceTo(c, dst, off, n, p)
	if moved > 0 {
		e.stats.backendWrite(off, moved, e.set.ChunkBytes, 1)
		e.stats.bytesDirect.Add(moved)
	}
	return moved, err
}

// spliceTo moves n bytes from c into dst at off through pipe p, each wait
// for the socket bounded by bulkTimeout.
func spliceTo(c *net.TCPConn, dst backend.FDFile, off, n int64, p *splicePipe) (int64, error) {
	src, err := c.SyscallConn()
	if err != nil {
		return 0, err
	}
	out, err := dst.SyscallConn()
	if err != nil {
		return 0, err
	}
	var done int64
	for done < n {
		_ = c.SetReadDeadline(time.Now().Add(bulkTimeout))
		var got int64
		var serr error
		err := src.Read(func(fd uintptr) bool {
			got, serr = unix.Splice(int(fd), nil, p.w, nil, int(min(n-done, int64(p.size))), unix.SPLICE_F_MOVE|unix.SPLICE_F_NONBLOCK)
			return serr != unix.EAGAIN && serr != unix.EINTR
		})
		switch {
		case err != nil:
			return done, err
		case serr != nil:
			return done, serr
		case got == 0:
			return done, wire.Errorf(wire.EPROTO, "bulk connection closed within a transfer")
		}
		for got > 0 {
			var k int64
			var werr error
			if err := out.Control(func(fd uintptr) {
				k, werr = unix.Splice(p.r, nil, int(fd), &off, int(got), unix.SPLICE_F_MOVE)
			}); err != nil {
				return done, err
			}
			if errors.Is(werr, syscall.EINTR) {
				continue
			}
			if werr != nil {
				return done, werr
			}
			if k == 0 {
				return done, wire.Errorf(wire.EIO, "splice into the backend file made no progress")
			}
			got -= k
			done += k
		}
	}
	return done, nil
}

// pipe returns the session's splice pipe, made on first use.
func (b *bulkSide) pipe() (*splicePipe, error) {
	if b.splice != nil {
		return b.splice, nil
	}
	var fds [2]int
	if err := unix.Pipe2(fds[:], unix.O_CLOEXEC); err != nil {
		return nil, err
	}
	p := &splicePipe{r: fds[0], w: fds[1], size: 64 << 10}
	if sz, err := unix.FcntlInt(uintptr(p.w), unix.F_SETPIPE_SZ, pipeBytes); err == nil && sz > 0 {
		p.size = sz
	}
	b.splice = p
	return p, nil
}

// dropPipe closes the pipe after a failed splice (it may hold bytes).
func (b *bulkSide) dropPipe() {
	if p := b.splice; p != nil {
		unix.Close(p.r)
		unix.Close(p.w)
		b.splice = nil
	}
}
