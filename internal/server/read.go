package server

import (
	"errors"
	"github.com/delegate-io/delegate/internal/backend"
	"io"

	"github.com/delegate-io/delegate/internal/extent"
	"github.com/delegate-io/delegate/internal/wire"
)

type gap struct {
	off int64
	b   []byte
}

// read fills dst from the extents of it: buffered bytes over backend
// bytes, zeros past the end of file. It returns how many bytes from the
// start of the list lie below the end of file, and that end of file (the
// backend size or the end of buffered data, whichever is larger).
func (f *file) read(it *wire.ExtentIter, dst []byte) (valid, size int64, err error) {
	e := f.eng
	bf := f.backend()
	var gaps []gap
	bsize, err := f.lockWithSize(bf)
	if err != nil {
		return 0, 0, err
	}
	size = max(bsize, f.endLocked())
	layers := f.layersLocked()
	var pos int64
	var sizes sizeCounts // for the file's summary
	valid = -1
	for off, n, ok := it.Next(); ok; off, n, ok = it.Next() {
		sizes.count(n)
		if pos+n > int64(len(dst)) {
			f.buf.Unlock()
			return 0, size, wire.Errorf(wire.EPROTO, "read: extents exceed the %d-byte slot", len(dst))
		}
		if valid < 0 && off+n > size {
			valid = pos + max(0, size-off)
		}
		overlay(layers, off, dst[pos:pos+n], func(goff int64, g []byte) { gaps = append(gaps, gap{goff, g}) })
		pos += n
	}
	f.buf.Unlock()
	if err := it.Err(); err != nil {
		return 0, size, err
	}
	if valid < 0 {
		valid = pos
	}
	var fromBackend int64
	for _, g := range gaps {
		m := 0
		if g.off < bsize {
			m, err = bf.ReadAt(g.b[:min(int64(len(g.b)), bsize-g.off)], g.off)
			if err != nil && !errors.Is(err, io.EOF) {
				return 0, size, err
			}
			e.stats.backendReads.Add(1)
			fromBackend += int64(m)
		}
		clear(g.b[m:])
	}
	e.stats.readFromBackend.Add(fromBackend)
	e.stats.readFromBuffer.Add(pos - fromBackend)
	f.sum.readDone(&sizes, valid, pos-fromBackend)
	return valid, size, nil
}

// overlay copies the newest buffered bytes of [off, off+len(dst)) into dst
// and reports the pieces no buffer holds.
func overlay(layers []*extent.Index, off int64, dst []byte, gap func(int64, []byte)) {
	if len(layers) == 0 {
		gap(off, dst)
		return
	}
	layers[0].Overlay(off, dst, func(goff int64, g []byte) { overlay(layers[1:], goff, g, gap) })
}

// size is the logical size: the backend's or the end of the buffered data.
func (f *file) size() (int64, error) {
	n, err := f.lockWithSize(f.backend())
	if err != nil {
		return 0, err
	}
	defer f.buf.Unlock()
	return max(n, f.endLocked()), nil
}

// lockWithSize takes buf and returns the backend size, without holding
// buf across the fstat (it is I/O, and writers wait on buf). The size must
// be consistent with the layers seen under buf: a flush removes a layer
// only after its bytes are on the backend, so if one finished between the
// fstat and the lock (buf.gen moved), those bytes could be in neither;
// then it stats again. Under a stream of flushes it stats once under the
// lock, which is always consistent. On error buf is not held.
func (f *file) lockWithSize(bf backend.File) (int64, error) {
	for try := 0; ; try++ {
		f.buf.Lock()
		if try == 2 {
			n, err := bf.Size()
			if err != nil {
				f.buf.Unlock()
			}
			return n, err
		}
		gen := f.buf.gen
		f.buf.Unlock()
		n, err := bf.Size()
		if err != nil {
			return 0, err
		}
		f.buf.Lock()
		if f.buf.gen == gen {
			return n, nil
		}
		f.buf.Unlock()
	}
}
