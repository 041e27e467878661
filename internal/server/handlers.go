package server

import (
	"errors"

	"github.com/delegate-io/delegate/internal/backend"
	"github.com/delegate-io/delegate/internal/route"
	"github.com/delegate-io/delegate/internal/wire"
)

// fail turns err into a reply. This is the server's edge: backend errors
// get their portable code here.
func fail(err error) (wire.Reply, []byte) {
	if errors.Is(err, backend.ErrPathEscape) {
		err = &wire.Error{Code: wire.EPATH, Msg: err.Error(), Err: err}
	}
	return wire.ReplyTo(err), nil
}

func (st *stream) open(h wire.Header) (wire.Reply, []byte) {
	var o wire.Open
	if err := st.rd.Decode(&o); err != nil {
		return fail(err)
	}
	rule := route.Rule{Key: route.FileKey(o.Path), RegionSize: o.RegionSize, Servers: st.ss.servers}
	if err := rule.Check(); err != nil {
		return fail(wire.Errorf(wire.EINVAL, "open %s: %v", o.Path, err))
	}
	f, err := st.ss.srv.files.open(&o)
	if err != nil {
		return fail(err)
	}
	size, err := f.size()
	if err != nil {
		st.ss.srv.files.release(f)
		return fail(err)
	}
	id := st.ss.addHandle(&handle{f: f, writable: needsWrite(o.Flags), rule: rule})
	return wire.Reply{File: id, Size: size}, nil
}

func (st *stream) closeFile(h wire.Header) (wire.Reply, []byte) {
	var c wire.Close
	if err := st.rd.Decode(&c); err != nil {
		return fail(err)
	}
	hd, err := st.ss.dropHandle(c.File)
	if err != nil {
		return fail(err)
	}
	var ferr error
	if !c.Async {
		ferr = hd.f.flush()
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
		return nil, wire.Errorf(wire.EPROTO, "%v", errRingMissing)
	}
	b, ok := st.ss.ring.Slice(off, n)
	if !ok {
		return nil, wire.Errorf(wire.EPROTO, "ring slot %d+%d outside the %d-byte ring", off, n, len(st.ss.ring.Bytes()))
	}
	return b, nil
}

// checkOwned verifies that this server owns every extent and that they
// cover exactly total bytes.
func (st *stream) checkOwned(hd *handle, ext []byte, total int64) error {
	it := wire.NewExtentIter(ext, total)
	var sum int64
	for off, n, ok := it.Next(); ok; off, n, ok = it.Next() {
		if !hd.rule.Owns(st.ss.index, off, n) {
			return wire.Errorf(wire.ENOTOWNER, "%s: bytes %d+%d belong to another server (server %d of %d here)",
				hd.f.path, off, n, st.ss.index, st.ss.servers)
		}
		sum += n
	}
	if err := it.Err(); err != nil {
		return err
	}
	if sum != total {
		return wire.Errorf(wire.EPROTO, "%s: extents cover %d bytes, %d came with them", hd.f.path, sum, total)
	}
	return nil
}

func (st *stream) write(h wire.Header) (wire.Reply, []byte) {
	var w wire.Write
	if err := st.rd.Decode(&w); err != nil {
		return fail(err)
	}
	hd, err := st.ss.handle(w.File)
	if err != nil {
		return fail(err)
	}
	var data []byte
	if w.RingLen > 0 {
		if h.PayloadLen != 0 {
			return fail(wire.Errorf(wire.EPROTO, "write has both a ring slot and a payload"))
		}
		data, err = st.slot(w.RingOff, w.RingLen)
	} else {
		data, err = st.payload(h.PayloadLen)
	}
	if err != nil {
		return fail(err)
	}
	if !hd.writable {
		return fail(wire.Errorf(wire.EBADF, "write %s: file opened read-only", hd.f.path))
	}
	if err := st.checkOwned(hd, w.Ext, int64(len(data))); err != nil {
		return fail(err)
	}
	if w.Flags&wire.IOAtomic != 0 {
		hd.f.atomic.Lock()
		defer hd.f.atomic.Unlock()
	}
	it := wire.NewExtentIter(w.Ext, int64(len(data)))
	n, err := hd.f.write(&it, data)
	s := st.ss.srv
	s.stats.bytesIn.Add(n)
	s.stats.backendWrites.Add(1)
	if err != nil {
		return fail(err)
	}
	return wire.Reply{N: n}, nil
}

func (st *stream) read(h wire.Header) (wire.Reply, []byte) {
	var r wire.Read
	if err := st.rd.Decode(&r); err != nil {
		return fail(err)
	}
	hd, err := st.ss.handle(r.File)
	if err != nil {
		return fail(err)
	}
	limit := st.ss.srv.cfg.MaxReadBytes
	total, err := wire.ExtentsTotal(r.Ext, limit)
	if err != nil {
		return fail(wire.Errorf(wire.CodeOf(err), "read %s: %v (at most %d bytes per request)", hd.f.path, err, limit))
	}
	var dst []byte
	if r.RingLen > 0 {
		if r.RingLen != uint64(total) {
			return fail(wire.Errorf(wire.EPROTO, "read slot of %d bytes for extents of %d", r.RingLen, total))
		}
		if dst, err = st.slot(r.RingOff, r.RingLen); err != nil {
			return fail(err)
		}
	} else {
		dst = st.buffer(int(total))
	}
	if err := st.checkOwned(hd, r.Ext, total); err != nil {
		return fail(err)
	}
	if r.Flags&wire.IOAtomic != 0 {
		hd.f.atomic.RLock()
		defer hd.f.atomic.RUnlock()
	}
	it := wire.NewExtentIter(r.Ext, total)
	valid, size, err := hd.f.read(&it, dst)
	s := st.ss.srv
	s.stats.backendReads.Add(1)
	if err != nil {
		return fail(err)
	}
	s.stats.bytesOut.Add(valid)
	rep := wire.Reply{N: valid, Size: size}
	if r.RingLen > 0 {
		return rep, nil
	}
	return rep, dst
}

// fileOp decodes a FileOp and returns its handle.
func (st *stream) fileOp() (*handle, error) {
	var op wire.FileOp
	if err := st.rd.Decode(&op); err != nil {
		return nil, err
	}
	return st.ss.handle(op.File)
}

func (st *stream) stat(h wire.Header) (wire.Reply, []byte) {
	hd, err := st.fileOp()
	if err != nil {
		return fail(err)
	}
	size, err := hd.f.size()
	if err != nil {
		return fail(err)
	}
	return wire.Reply{Size: size}, nil
}

func (st *stream) sync(h wire.Header) (wire.Reply, []byte) {
	hd, err := st.fileOp()
	if err != nil {
		return fail(err)
	}
	if err := hd.f.flush(); err != nil {
		return fail(err)
	}
	return fail(hd.f.sync())
}

func (st *stream) flushFile(h wire.Header) (wire.Reply, []byte) {
	hd, err := st.fileOp()
	if err != nil {
		return fail(err)
	}
	return fail(hd.f.flush())
}

func (st *stream) resize(h wire.Header) (wire.Reply, []byte) {
	var r wire.Resize
	if err := st.rd.Decode(&r); err != nil {
		return fail(err)
	}
	hd, err := st.ss.handle(r.File)
	if err != nil {
		return fail(err)
	}
	if !hd.writable {
		return fail(wire.Errorf(wire.EBADF, "resize %s: file opened read-only", hd.f.path))
	}
	if !wire.CheckExtent(r.Size, 0) {
		return fail(wire.Errorf(wire.EINVAL, "resize %s: size %d", hd.f.path, r.Size))
	}
	return fail(hd.f.resize(r.Size))
}

func (st *stream) alloc(h wire.Header) (wire.Reply, []byte) {
	var r wire.Resize
	if err := st.rd.Decode(&r); err != nil {
		return fail(err)
	}
	hd, err := st.ss.handle(r.File)
	if err != nil {
		return fail(err)
	}
	if !hd.writable {
		return fail(wire.Errorf(wire.EBADF, "preallocate %s: file opened read-only", hd.f.path))
	}
	if !wire.CheckExtent(r.Size, 0) {
		return fail(wire.Errorf(wire.EINVAL, "preallocate %s: size %d", hd.f.path, r.Size))
	}
	size, err := hd.f.allocate(r.Size)
	if err != nil {
		return fail(err)
	}
	return wire.Reply{Size: size}, nil
}

func (st *stream) delete(h wire.Header) (wire.Reply, []byte) {
	var d wire.Delete
	if err := st.rd.Decode(&d); err != nil {
		return fail(err)
	}
	return fail(st.ss.srv.files.unlink(d.Path))
}

func (st *stream) counter(h wire.Header) (wire.Reply, []byte) {
	var c wire.Counter
	if err := st.rd.Decode(&c); err != nil {
		return fail(err)
	}
	hd, err := st.ss.handle(c.File)
	if err != nil {
		return fail(err)
	}
	old, err := hd.f.counter(c.Key, c.Op, c.Value)
	if err != nil {
		return fail(err)
	}
	return wire.Reply{Value: old}, nil
}

func (st *stream) statsReq(h wire.Header) (wire.Reply, []byte) {
	var q wire.Stats
	if err := st.rd.Decode(&q); err != nil {
		return fail(err)
	}
	snap := st.ss.srv.Stats()
	b, err := wire.Marshal(&snap)
	if err != nil {
		return fail(err)
	}
	return wire.Reply{}, b
}
