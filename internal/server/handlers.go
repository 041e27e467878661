package server

import (
	"errors"

	"github.com/delegate-io/delegate/internal/backend"
	"github.com/delegate-io/delegate/internal/route"
	"github.com/delegate-io/delegate/internal/wire"
)

// fail turns err into a reply. This is the server's edge, where a code is
// attached once (wire.ReplyTo, wire.CodeOf): the backend's errors keep
// their chain up to here, and a path outside the root becomes EPATH.
func fail(err error) (wire.Reply, []byte) {
	if errors.Is(err, backend.ErrPathEscape) {
		err = wire.Errorf(wire.EPATH, "%w", err)
	}
	return wire.ReplyTo(err), nil
}

func (st *stream) open(r *request) (wire.Reply, []byte) {
	o := r.desc.(*wire.Open)
	rule := route.Rule{Key: route.FileKey(o.Path), RegionSize: o.RegionSize, Servers: st.ss.servers}
	if err := rule.Check(); err != nil {
		return fail(wire.Errorf(wire.EINVAL, "open %s: %w", o.Path, err))
	}
	f, err := st.ss.srv.files.open(o)
	if err != nil {
		return fail(err)
	}
	size, err := f.size()
	if err != nil {
		st.ss.srv.files.release(f)
		return fail(err)
	}
	r.sum = f.sum
	hd := &handle{f: f, writable: needsWrite(o.Flags), rule: rule}
	id := st.ss.addHandle(hd)
	return wire.Reply{File: id, Size: size, Slot: hd.slot, Dev: f.dev, Ino: f.ino}, nil
}

// closeFile releases the client's handle. Unless the close is asynchronous
// the file's buffered data is written to the backend first, so readers
// outside delegate see it once close returns, as with ufs:.
func (st *stream) closeFile(r *request) (wire.Reply, []byte) {
	c := r.desc.(*wire.Close)
	hd, err := st.ss.dropHandle(c.File)
	if err != nil {
		return fail(err)
	}
	r.sum = hd.f.sum
	hd.f.sum.leased(c.LeaseWrites, c.LeaseBytes)
	st.ss.forget(hd)
	var ferr error
	if !c.Async {
		ferr = hd.f.flush(causeClose, false)
	}
	rerr := st.ss.srv.files.release(hd.f)
	if ferr != nil {
		return fail(ferr)
	}
	return fail(rerr)
}

// slot returns the ring slot a request names.
func (st *stream) slot(off, n uint64) ([]byte, error) {
	if st.ss.ring == nil {
		return nil, wire.Errorf(wire.EPROTO, "%w", errRingMissing)
	}
	b, ok := st.ss.ring.Slice(off, n)
	if !ok {
		return nil, wire.Errorf(wire.EPROTO, "ring slot %d+%d outside the %d-byte ring", off, n, len(st.ss.ring.Bytes()))
	}
	return b, nil
}

// checkOwned verifies that this server may apply the extents x
// (route.Rule.Accepts: the owner of every byte, or in atomic mode the
// file's atomic owner). x was validated when the request arrived.
func (st *stream) checkOwned(hd *handle, x *wire.Extents, flags uint32) error {
	atomic := flags&wire.IOAtomic != 0
	if atomic {
		if x.Count() > 0 && !hd.rule.Accepts(st.ss.index, true, 0, 0) {
			return wire.Errorf(wire.ENOTOWNER, "%s: atomic requests go to server %d, the owner of the first region, not server %d",
				hd.f.path, hd.rule.Home(), st.ss.index)
		}
		return nil
	}
	// A run at a time: a strided run is checked whole (at once with one
	// server), not extent by extent.
	for _, r := range x.Runs() {
		if !hd.rule.OwnsRun(st.ss.index, r.Off, r.Len, r.Stride, r.Count) {
			return wire.Errorf(wire.ENOTOWNER, "%s: bytes of %d x %d at %d (stride %d) belong to another server (server %d of %d here)",
				hd.f.path, r.Count, r.Len, r.Off, r.Stride, st.ss.index, st.ss.servers)
		}
	}
	return nil
}

func (st *stream) write(r *request) (wire.Reply, []byte) {
	w := r.desc.(*wire.Write)
	if w.Flags&wire.IOAtomic == 0 {
		return st.writeOne(r, nil)
	}
	// The lock before the data, so that a request waiting for it holds no
	// transfer memory (atomic.go); a refusal comes after the data is taken.
	hd, err := st.fileHandle(r, w.File)
	if err != nil {
		return st.writeOne(r, nil) // fails there
	}
	if err := st.atomicEnter(hd.f, w.File, true, w.Flags, w.AG); err != nil {
		return st.writeOne(r, err)
	}
	rep, payload := st.writeOne(r, nil)
	st.atomicLeave(&rep, false)
	return rep, payload
}

// writeOne applies a write, or fails it with refuse once its data is taken.
func (st *stream) writeOne(r *request, refuse error) (wire.Reply, []byte) {
	w := r.desc.(*wire.Write)
	data := r.payload
	if w.BulkLen > 0 {
		// First, whatever else is wrong: the data is on its way and must
		// be taken, or the connection is out of step.
		if rep, ok := st.bulkDirect(r); ok {
			return rep, nil
		}
		b, err := st.bulkRecv(w)
		if err != nil {
			return fail(err)
		}
		defer st.ss.srv.xferMem.put(b) // the handler copies it or writes it out
		if len(r.payload) != 0 || w.RingLen > 0 {
			return fail(wire.Errorf(wire.EPROTO, "write has bulk data and a payload or ring slot"))
		}
		data = b
	}
	if refuse != nil {
		return fail(refuse)
	}
	hd, err := st.fileHandle(r, w.File)
	if err != nil {
		return fail(err)
	}
	if w.BulkLen == 0 && w.RingLen > 0 {
		if len(r.payload) != 0 {
			return fail(wire.Errorf(wire.EPROTO, "write has both a ring slot and a payload"))
		}
		if data, err = st.slot(w.RingOff, w.RingLen); err != nil {
			return fail(err)
		}
	}
	if !hd.writable {
		return fail(wire.Errorf(wire.EBADF, "write %s: file opened read-only", hd.f.path))
	}
	if err := st.checkOwned(hd, &r.ext, w.Flags); err != nil {
		return fail(err)
	}
	s := st.ss.srv
	if w.Flags&wire.IOColl != 0 {
		s.stats.collWrites.Add(1)
	}
	n, err := hd.f.write(&r.ext, data)
	s.stats.bytesIn.Add(n)
	s.stats.extentsIn.Add(r.ext.Count())
	if err != nil {
		return fail(err)
	}
	return wire.Reply{N: n}, nil
}

func (st *stream) read(r *request) (wire.Reply, []byte) {
	rd := r.desc.(*wire.Read)
	hd, err := st.fileHandle(r, rd.File)
	if err != nil {
		return fail(err)
	}
	if rd.Flags&wire.IOAtomic == 0 {
		return st.readOne(r, hd)
	}
	// The lock before the result's buffer (atomic.go). A part that stops
	// at the end of file is the call's last: the client stops there.
	if err := st.atomicEnter(hd.f, rd.File, false, rd.Flags, rd.AG); err != nil {
		return fail(err)
	}
	rep, data := st.readOne(r, hd)
	st.atomicLeave(&rep, rep.N < r.ext.Total())
	return rep, data
}

// readOne applies a read of the file hd.
func (st *stream) readOne(r *request, hd *handle) (wire.Reply, []byte) {
	rd := r.desc.(*wire.Read)
	total := r.ext.Total()
	var err error
	var dst []byte
	if rd.RingLen > 0 {
		if rd.RingLen != uint64(total) {
			return fail(wire.Errorf(wire.EPROTO, "read slot of %d bytes for extents of %d", rd.RingLen, total))
		}
		if dst, err = st.slot(rd.RingOff, rd.RingLen); err != nil {
			return fail(err)
		}
	} else if dst, err = st.readBuffer(r, total); err != nil {
		return fail(err)
	}
	if err := st.checkOwned(hd, &r.ext, rd.Flags); err != nil {
		return fail(err)
	}
	it := r.ext.Iter()
	valid, size, err := hd.f.read(&it, dst)
	if err != nil {
		return fail(err)
	}
	st.ss.srv.stats.bytesOut.Add(valid)
	rep := wire.Reply{N: valid, Size: size}
	if rd.RingLen > 0 {
		return rep, nil
	}
	return rep, dst
}

// fileOp returns the handle of a Stat, Sync or Flush request.
func (st *stream) fileOp(r *request) (*handle, error) {
	return st.fileHandle(r, r.desc.(*wire.FileOp).File)
}

func (st *stream) stat(r *request) (wire.Reply, []byte) {
	hd, err := st.fileOp(r)
	if err != nil {
		return fail(err)
	}
	size, err := hd.f.size()
	if err != nil {
		return fail(err)
	}
	return wire.Reply{Size: size}, nil
}

func (st *stream) sync(r *request) (wire.Reply, []byte) {
	hd, err := st.fileOp(r)
	if err != nil {
		return fail(err)
	}
	return fail(hd.f.sync())
}

func (st *stream) flushFile(r *request) (wire.Reply, []byte) {
	hd, err := st.fileOp(r)
	if err != nil {
		return fail(err)
	}
	return fail(hd.f.flush(causeFlush, false))
}

// sized decodes a Resize or Alloc request and checks it.
func (st *stream) sized(r *request, what string) (*handle, int64, error) {
	rz := r.desc.(*wire.Resize)
	hd, err := st.fileHandle(r, rz.File)
	if err != nil {
		return nil, 0, err
	}
	if !hd.writable {
		return nil, 0, wire.Errorf(wire.EBADF, "%s %s: file opened read-only", what, hd.f.path)
	}
	if !wire.CheckExtent(rz.Size, 0) {
		return nil, 0, wire.Errorf(wire.EINVAL, "%s %s: size %d", what, hd.f.path, rz.Size)
	}
	return hd, rz.Size, nil
}

func (st *stream) resize(r *request) (wire.Reply, []byte) {
	hd, size, err := st.sized(r, "resize")
	if err != nil {
		return fail(err)
	}
	return fail(hd.f.resize(size))
}

func (st *stream) alloc(r *request) (wire.Reply, []byte) {
	hd, size, err := st.sized(r, "preallocate")
	if err != nil {
		return fail(err)
	}
	n, err := hd.f.allocate(size)
	if err != nil {
		return fail(err)
	}
	return wire.Reply{Size: n}, nil
}

func (st *stream) delete(r *request) (wire.Reply, []byte) {
	path := r.desc.(*wire.Delete).Path
	r.sum = st.ss.srv.summaries.lookup(path) // counts on the file it removes, if it has a summary
	return fail(st.ss.srv.files.unlink(path))
}

func (st *stream) counter(r *request) (wire.Reply, []byte) {
	c := r.desc.(*wire.Counter)
	hd, err := st.fileHandle(r, c.File)
	if err != nil {
		return fail(err)
	}
	old, err := hd.f.counter(c.Key, c.Op, c.Value)
	if err != nil {
		return fail(err)
	}
	return wire.Reply{Value: old}, nil
}

func (st *stream) statsReq(r *request) (wire.Reply, []byte) {
	if r.desc.(*wire.Stats).Stop {
		if !st.ss.monitor {
			return fail(wire.Errorf(wire.EACCES, "only a monitor session may stop the server"))
		}
		st.stopAfterReply = true
	}
	snap := st.ss.srv.Stats()
	b, err := wire.Marshal(&snap)
	if err != nil {
		return fail(err)
	}
	return wire.Reply{}, b
}
