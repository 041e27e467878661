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
// limit for unprivileged pipes is 1 MiB). A variable for tests only.
var pipeBytes = 1 << 20

// splicePipe is a session's pipe for splicing. Only the stream that owns
// the session's bulk connections uses it (bulkConn), one request at a
// time; session.cleanup closes it once every stream has ended.
type splicePipe struct {
	r, w int
	size int
}

// bulkDirect serves write w by splicing when it can. ok false: nothing was
// read from the connection, and the caller takes the ordinary way.
func (st *stream) bulkDirect(r *request) (rep wire.Reply, ok bool) {
	w := r.desc.(*wire.Write)
	ss := st.ss
	s := ss.srv
	if w.RingLen > 0 || w.Flags&wire.IOAtomic != 0 || int64(w.BulkLen) < s.engine.set.DirectBytes || w.BulkLen > wire.MaxPayload ||
		r.ext.Count() != 1 || r.ext.Total() != int64(w.BulkLen) || st.atomicHeld() {
		// Not while an atomic call's lock is held: the ordinary way bounds
		// the whole transfer then (bulkRecvData; review: a spliced write
		// between two parts, its data trickling in, kept the lock).
		return rep, false
	}
	it := r.ext.Iter()
	off, n, _ := it.Next()
	hd, err := st.fileHandle(r, w.File)
	if err != nil || !hd.writable || !hd.rule.Accepts(ss.index, false, off, n) || hd.f.flushErr() != nil || hd.f.noSplice.Load() {
		return rep, false
	}
	c, err := st.bulkConn(w.BulkConn)
	if err != nil {
		return rep, false
	}
	tc, isTCP := c.(*net.TCPConn)
	_, isFD := hd.f.backend().(backend.FDFile) // can splice; the descriptor is taken under flushMu
	if !isTCP || !isFD {
		return rep, false
	}
	if spliceTakenHook != nil {
		spliceTakenHook(hd.f)
	}
	p, err := ss.bulk.pipe()
	if err != nil {
		return rep, false
	}
	if err := readBulkWriteHeader(c, w); err != nil {
		return st.bulkFailed(err), true
	}
	if w.Flags&wire.IOColl != 0 {
		s.stats.collWrites.Add(1)
	}
	moved, taken, err := hd.f.writeDirectSplice(off, n, tc, p)
	if err != nil {
		ss.bulk.dropPipe() // it may hold bytes of the transfer
		var fe fileSideError
		if !errors.As(err, &fe) {
			// The socket failed: the rest of the transfer is not taken,
			// so the connection is out of step and the session ends.
			return st.bulkFailed(err), true
		}
		// The backend refused the bytes: the rest of the transfer is
		// taken and dropped, so that the connection stays in step, and
		// the writer gets the backend's error, as from writeDirect.
		if err := discardBulk(c, make([]byte, min(n-taken, 64<<10)), n-taken); err != nil {
			return st.bulkFailed(err), true
		}
		s.stats.bulkIn.Add(n)
		s.stats.bulkSpliced.Add(moved)
		return wire.ReplyTo(fe.err), true
	}
	s.stats.bulkIn.Add(moved)
	s.stats.bulkSpliced.Add(moved)
	s.stats.bytesIn.Add(moved)
	s.stats.extentsIn.Add(1)
	var sizes sizeCounts
	sizes.count(moved)
	hd.f.sum.wrote(&sizes, moved, moved)
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

// fileSideError is an error of the backend file in writeDirectSplice (the
// socket side's are returned as they are).
type fileSideError struct{ err error }

func (e fileSideError) Error() string { return e.err.Error() }
func (e fileSideError) Unwrap() error { return e.err }

// writeDirectSplice is writeDirect with the data spliced from c, a pipe's
// worth at a time: the pipe is filled from the socket without a lock, then
// under flushMu the piece goes into the backend file and then the older
// buffered bytes of that range are dropped. So a slow sender holds up nobody else's
// writes of the file, and no lock is held across network I/O. It reports
// the bytes that reached the file and those taken from the socket; a
// failure of the file's side is a fileSideError.
//
// The backend descriptor is taken under flushMu, for each piece: the lock
// an upgrade to a writable descriptor takes (reopenWritable), so the
// splice goes into the file's current descriptor, which nobody closes
// under it.
func (f *file) writeDirectSplice(off, n int64, c *net.TCPConn, p *splicePipe) (moved, taken int64, err error) {
	src, err := c.SyscallConn()
	if err != nil {
		return 0, 0, err
	}
	for moved < n {
		got, err := fillPipe(c, src, p, min(n-moved, int64(p.size)))
		if err != nil {
			return moved, moved + got, err
		}
		f.flushMu.Lock()
		// The piece first, then the older buffered bytes it replaces
		// (writeDirect says why).
		err = f.drainInto(p, off+moved, got)
		if err == nil {
			f.punch(off+moved, got)
		}
		f.flushMu.Unlock()
		if err != nil {
			return moved, moved + got, fileSideError{err}
		}
		f.directWritten(off+moved, got)
		moved += got
	}
	return moved, moved, nil
}

// discardBulk reads and drops the n bytes left of a transfer on c, through
// buf.
func discardBulk(c net.Conn, buf []byte, n int64, end ...time.Time) error {
	for n > 0 {
		k := min(n, int64(len(buf)))
		if err := readFullBy(c, buf[:k], end...); err != nil {
			return err
		}
		n -= k
	}
	return nil
}

// fillPipe splices max bytes from the socket into the empty pipe p (max is
// at most the pipe's size, and at most what is left of the transfer, so
// the sender is sending them): a full pipe per drain, not whatever one
// splice found in the socket, so that flushMu, the file splice and the
// accounting come once per pipe. Each wait for the socket is bounded by
// bulkTimeout.
func fillPipe(c *net.TCPConn, src syscall.RawConn, p *splicePipe, max int64) (int64, error) {
	_ = c.SetReadDeadline(time.Now().Add(bulkTimeout))
	var got, armed int64 // armed: got when the deadline was last set
	var serr error
	err := src.Read(func(fd uintptr) bool {
		for got < max {
			k, err := unix.Splice(int(fd), nil, p.w, nil, int(max-got), unix.SPLICE_F_MOVE|unix.SPLICE_F_NONBLOCK)
			switch {
			case err == unix.EINTR:
			case err == unix.EAGAIN && got > 0 && pipeFull(fd):
				return true // the pipe's slots ran out before its bytes: drain what it holds
			case err == unix.EAGAIN:
				if got > armed { // bytes came: the next wait gets its own bulkTimeout
					armed = got
					_ = c.SetReadDeadline(time.Now().Add(bulkTimeout))
				}
				return false // wait for the socket, then splice on
			case err != nil:
				serr = err
				return true
			case k == 0:
				serr = wire.Errorf(wire.EPROTO, "bulk connection closed within a transfer")
				return true
			default:
				got += k
			}
		}
		return true
	})
	switch {
	case err != nil:
		return got, err
	case serr != nil:
		return got, serr
	}
	return got, nil
}

// pipeFull reports, after a splice from socket fd found nothing to move,
// whether that was the pipe's doing (full: its slots hold smaller pieces
// than pages) rather than the socket's (nothing waiting in it).
func pipeFull(fd uintptr) bool {
	n, err := unix.IoctlGetInt(int(fd), unix.SIOCINQ)
	return err != nil || n > 0
}

// drainInto splices n bytes from pipe p into f's backend file at off. The
// caller holds flushMu.
func (f *file) drainInto(p *splicePipe, off, n int64) error {
	bf := f.backend()
	dst, ok := bf.(backend.FDFile)
	if !ok {
		return wire.Errorf(wire.EIO, "the backend file cannot splice")
	}
	if f.noSplice.Load() { // refused before, in this transfer
		return pipeToFile(p, bf, off, n)
	}
	out, err := dst.SyscallConn()
	if err != nil {
		return err
	}
	done, err := drainPipe(out, p, off, n)
	if err == nil || !spliceRefused(err) {
		return err
	}
	// The file system does not take splices (some FUSE and network file
	// systems; the server never opens a file O_DIRECT): the
	// bytes in the pipe go out of it through a buffer and pwrite, and
	// this file's later bulk writes take the ordinary way.
	if !f.noSplice.Swap(true) {
		f.eng.stats.spliceRefused.Add(1)
		f.eng.log.Warn("the backend refuses splice into the file; writing it with pwrite", "path", f.path, "err", err)
	}
	return pipeToFile(p, bf, off+done, n-done)
}

// spliceRefused reports whether err is a splice's refusal of the file
// (its file system or its open mode cannot take one), not a failure of
// the write itself.
func spliceRefused(err error) bool {
	return errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EOPNOTSUPP)
}

// pipeToFile writes the n bytes in pipe p to bf at off, through a buffer.
func pipeToFile(p *splicePipe, bf backend.File, off, n int64) error {
	buf := make([]byte, min(n, 64<<10))
	for n > 0 {
		k, err := unix.Read(p.r, buf[:min(n, int64(len(buf)))])
		switch {
		case err == unix.EINTR:
			continue
		case err != nil:
			return err
		case k == 0:
			return wire.Errorf(wire.EIO, "the splice pipe ended early")
		}
		if _, err := bf.WriteAt(buf[:k], off); err != nil {
			return err
		}
		off, n = off+int64(k), n-int64(k)
	}
	return nil
}

// spliceFailHook, when set (tests), is asked before each splice into a
// backend file; an error it returns is the splice's.
var spliceFailHook func() error

// spliceTakenHook, when set (tests), runs in a spliced write or a sendfile
// after its check of the backend descriptor and before the transfer: where
// a descriptor taken without flushMu could be closed under it.
var spliceTakenHook func(f *file)

// drainPipe splices n bytes from pipe p into the file at off. It reports
// the bytes that left the pipe.
func drainPipe(out syscall.RawConn, p *splicePipe, off, n int64) (done int64, err error) {
	for n > 0 {
		var k int64
		var werr error
		if err := out.Control(func(fd uintptr) {
			if spliceFailHook != nil {
				if werr = spliceFailHook(); werr != nil {
					return
				}
			}
			k, werr = unix.Splice(p.r, nil, int(fd), &off, int(n), unix.SPLICE_F_MOVE)
		}); err != nil {
			return done, err
		}
		switch {
		case errors.Is(werr, syscall.EINTR):
			continue
		case werr != nil:
			return done, werr
		case k == 0:
			return done, wire.Errorf(wire.EIO, "splice into the backend file made no progress")
		}
		n -= k
		done += k
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

// A bulk read of one extent that lies wholly in the backend file, of a file
// with no buffered bytes at all (the common case once it was flushed or
// closed), is sent with sendfile: page cache -> socket in the kernel, no
// copy through the server's memory. Anything else takes the ordinary way
// (the engine's read into the stream's buffer, then a writev).

// bulkSendfile serves read rd by sendfile when it can. ok false: nothing
// was sent, and the caller takes the ordinary way.
func (st *stream) bulkSendfile(r *request) (rep wire.Reply, ok bool) {
	rd := r.desc.(*wire.Read)
	ss := st.ss
	if rd.RingLen > 0 || rd.Flags&wire.IOAtomic != 0 || rd.BulkLen > uint64(ss.srv.cfg.MaxReadBytes) ||
		r.ext.Count() != 1 || r.ext.Total() != int64(rd.BulkLen) {
		return rep, false
	}
	it := r.ext.Iter()
	off, n, _ := it.Next()
	hd, err := st.fileHandle(r, rd.File)
	if err != nil || !hd.rule.Accepts(ss.index, false, off, n) {
		return rep, false
	}
	c, err := st.bulkConn(rd.BulkConn)
	if err != nil {
		return rep, false
	}
	tc, isTCP := c.(*net.TCPConn)
	src, isFD := hd.f.backend().(backend.FDFile) // not closed under the sendfile: reopenWritable retires it
	if !isTCP || !isFD {
		return rep, false
	}
	if spliceTakenHook != nil {
		spliceTakenHook(hd.f)
	}
	size, clean, err := hd.f.cleanBelow(off + n)
	if err != nil || !clean {
		return rep, false
	}
	h := wire.BulkHeader{Kind: wire.BulkRead, Index: rd.BulkConn, Seq: rd.BulkSeq, Len: uint64(n)}
	h.Put(st.bulkHdr[:])
	deadline := time.Now().Add(bulkTimeout + time.Duration(n>>20)*time.Second)
	_ = c.SetWriteDeadline(deadline)
	err = sendfile(tc, st.bulkHdr[:], src, off, n)
	if err != nil {
		// Part of the transfer may be gone: the connection is out of step.
		return st.bulkFailed(err), true
	}
	e := hd.f.eng
	e.stats.backendReads.Add(1)
	e.stats.readFromBackend.Add(n)
	var sizes sizeCounts
	sizes.count(n)
	hd.f.sum.readDone(&sizes, n, 0)
	ss.srv.stats.bulkOut.Add(n)
	ss.srv.stats.bulkSentFile.Add(n)
	ss.srv.stats.bytesOut.Add(n)
	return wire.Reply{N: n, Size: size}, true
}

// cleanBelow reports whether the file has no buffered bytes and its backend
// holds at least end bytes, with the file's size.
func (f *file) cleanBelow(end int64) (size int64, clean bool, err error) {
	bsize, err := f.lockWithSize(f.backend())
	if err != nil {
		return 0, false, err
	}
	defer f.buf.Unlock()
	clean = bsize >= end
	for _, x := range f.layersLocked() {
		clean = clean && x.Len() == 0
	}
	return max(bsize, f.endLocked()), clean, nil
}

// sendfile sends hdr, then n bytes of src at off on c, waiting for the
// socket within c's write deadline. The header goes with MSG_MORE, so that
// it leaves in the data's first segment, not a packet (and a wake-up of
// the receiver) of its own.
func sendfile(c *net.TCPConn, hdr []byte, src backend.FDFile, off, n int64) error {
	out, err := c.SyscallConn()
	if err != nil {
		return err
	}
	in, err := src.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	cerr := in.Control(func(ffd uintptr) {
		err := out.Write(func(sfd uintptr) bool {
			for len(hdr) > 0 {
				k, err := unix.SendmsgN(int(sfd), hdr, nil, nil, unix.MSG_MORE|unix.MSG_NOSIGNAL)
				switch {
				case err == unix.EAGAIN:
					return false
				case err == unix.EINTR:
				case err != nil:
					serr = err
					return true
				default:
					hdr = hdr[k:]
				}
			}
			for n > 0 {
				k, err := unix.Sendfile(int(sfd), int(ffd), &off, int(min(n, 1<<30)))
				if k > 0 {
					n -= int64(k)
				}
				switch {
				case err == unix.EAGAIN:
					return false
				case err == unix.EINTR:
				case err != nil:
					serr = err
					return true
				case k == 0:
					serr = wire.Errorf(wire.EIO, "sendfile: the backend file ended early")
					return true
				}
			}
			return true
		})
		if serr == nil {
			serr = err
		}
	})
	if cerr != nil {
		return cerr
	}
	return serr
}
