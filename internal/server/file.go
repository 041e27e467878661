package server

import (
	"errors"
	"io"
	"os"
	"sync"

	"github.com/delegate-io/delegate/internal/backend"
	"github.com/delegate-io/delegate/internal/wire"
)

// fileTable maps paths to open files. A file stays in the table while any
// client has it open; Delete unlinks the path, so a later create gets a
// fresh entry while holders of the old one keep it.
type fileTable struct {
	fs backend.FS
	mu struct {
		sync.Mutex
		byPath map[string]*file
		all    map[*file]struct{} // including unlinked ones still open
	}
}

func newFileTable(fsys backend.FS) *fileTable {
	t := &fileTable{fs: fsys}
	t.mu.byPath = map[string]*file{}
	t.mu.all = map[*file]struct{}{}
	return t
}

// file is one backend file as the server holds it.
type file struct {
	path       string
	regionSize int64

	mu struct {
		sync.Mutex
		bf       backend.File
		writable bool
		refs     int
		counters map[string]int64
	}
	// atomic serializes atomic-mode requests on the file: atomic writes
	// hold it exclusively, atomic reads shared.
	atomic sync.RWMutex
}

func needsWrite(flags uint32) bool { return flags&(wire.OWronly|wire.ORdwr) != 0 }

// open returns the file for path with one more reference, opening or
// creating the backend file as flags say. The backend is always opened
// read-write when the file system allows it, since one descriptor serves
// every client of the file.
func (t *fileTable) open(o *wire.Open) (*file, error) {
	t.mu.Lock()
	f := t.mu.byPath[o.Path]
	if f != nil {
		if o.Flags&wire.OExcl != 0 && o.Flags&wire.OCreat != 0 {
			t.mu.Unlock()
			return nil, &os.PathError{Op: "open", Path: o.Path, Err: os.ErrExist}
		}
		if f.regionSize != o.RegionSize {
			t.mu.Unlock()
			return nil, wire.Errorf(wire.EINVAL, "open %s: region size %d differs from %d used by the file's other clients",
				o.Path, o.RegionSize, f.regionSize)
		}
		f.mu.Lock()
		f.mu.refs++
		writable := f.mu.writable
		f.mu.Unlock()
		t.mu.Unlock()
		if needsWrite(o.Flags) && !writable {
			if err := f.reopenWritable(t.fs); err != nil {
				t.release(f)
				return nil, err
			}
		}
		return f, nil
	}
	t.mu.Unlock()

	// Open outside the table lock: it is I/O.
	flag := os.O_RDWR
	if o.Flags&wire.OCreat != 0 {
		flag |= os.O_CREATE
		if o.Flags&wire.OExcl != 0 {
			flag |= os.O_EXCL
		}
	}
	perm := os.FileMode(o.Perm & 0o7777)
	if perm == 0 {
		perm = 0o644
	}
	bf, err := t.fs.OpenFile(o.Path, flag, perm)
	writable := true
	if err != nil && !needsWrite(o.Flags) && (errors.Is(err, os.ErrPermission) || wire.CodeOf(err) == wire.EROFS) {
		bf, err = t.fs.OpenFile(o.Path, os.O_RDONLY, 0)
		writable = false
	}
	if err != nil {
		return nil, err
	}
	nf := &file{path: o.Path, regionSize: o.RegionSize}
	nf.mu.bf = bf
	nf.mu.writable = writable
	nf.mu.refs = 1
	t.mu.Lock()
	defer t.mu.Unlock()
	if f := t.mu.byPath[o.Path]; f != nil {
		// Another client opened it meanwhile: use theirs.
		bf.Close()
		f.mu.Lock()
		f.mu.refs++
		f.mu.Unlock()
		return f, nil
	}
	t.mu.byPath[o.Path] = nf
	t.mu.all[nf] = struct{}{}
	return nf, nil
}

func (f *file) reopenWritable(fsys backend.FS) error {
	bf, err := fsys.OpenFile(f.path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	f.mu.Lock()
	old := f.mu.bf
	f.mu.bf, f.mu.writable = bf, true
	f.mu.Unlock()
	return old.Close()
}

// release drops a reference; the last one closes the backend file.
func (t *fileTable) release(f *file) error {
	t.mu.Lock()
	f.mu.Lock()
	f.mu.refs--
	last := f.mu.refs == 0
	if last {
		if t.mu.byPath[f.path] == f {
			delete(t.mu.byPath, f.path)
		}
		delete(t.mu.all, f)
	}
	bf := f.mu.bf
	f.mu.Unlock()
	t.mu.Unlock()
	if !last {
		return nil
	}
	return bf.Close()
}

// unlink removes path from the backend and from the table.
func (t *fileTable) unlink(path string) error {
	t.mu.Lock()
	if f := t.mu.byPath[path]; f != nil {
		delete(t.mu.byPath, path)
	}
	t.mu.Unlock()
	return t.fs.Remove(path)
}

// files returns every open file.
func (t *fileTable) files() []*file {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]*file, 0, len(t.mu.all))
	for f := range t.mu.all {
		out = append(out, f)
	}
	return out
}

func (f *file) backend() backend.File {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.mu.bf
}

// write stores data at the extents of it, in order (write-through).
func (f *file) write(it *wire.ExtentIter, data []byte) (int64, error) {
	bf := f.backend()
	var pos int64
	for off, n, ok := it.Next(); ok; off, n, ok = it.Next() {
		if pos+n > int64(len(data)) {
			return pos, wire.Errorf(wire.EPROTO, "write: extents cover more than the %d bytes sent", len(data))
		}
		if _, err := bf.WriteAt(data[pos:pos+n], off); err != nil {
			return pos, err
		}
		pos += n
	}
	if err := it.Err(); err != nil {
		return pos, err
	}
	if pos != int64(len(data)) {
		return pos, wire.Errorf(wire.EPROTO, "write: %d bytes sent for extents of %d", len(data), pos)
	}
	return pos, nil
}

// read fills dst from the extents of it (zeros past the end of file) and
// returns how many bytes from the start of the list lie below the end of
// file, and that end of file.
func (f *file) read(it *wire.ExtentIter, dst []byte) (valid, size int64, err error) {
	bf := f.backend()
	if size, err = bf.Size(); err != nil {
		return 0, 0, err
	}
	var pos int64
	valid = -1
	for off, n, ok := it.Next(); ok; off, n, ok = it.Next() {
		if pos+n > int64(len(dst)) {
			return 0, size, wire.Errorf(wire.EPROTO, "read: extents exceed the %d-byte slot", len(dst))
		}
		if valid < 0 && off+n > size {
			valid = pos + max(0, size-off)
		}
		// Bytes past the end of file are zeros: the client copies what lies
		// below the end of file of the whole job, which may be further.
		seg := dst[pos : pos+n]
		m := 0
		if off < size {
			m, err = bf.ReadAt(seg[:min(n, size-off)], off)
			if err != nil && !errors.Is(err, io.EOF) {
				return 0, size, err
			}
		}
		clear(seg[m:])
		pos += n
	}
	if err := it.Err(); err != nil {
		return 0, size, err
	}
	if valid < 0 {
		valid = pos
	}
	return valid, size, nil
}

func (f *file) size() (int64, error) { return f.backend().Size() }

func (f *file) resize(n int64) error { return f.backend().Truncate(n) }

func (f *file) allocate(n int64) (int64, error) {
	bf := f.backend()
	if err := bf.Allocate(n); err != nil {
		return 0, err
	}
	return bf.Size()
}

func (f *file) sync() error { return f.backend().Sync() }

// flush writes buffered data to the backend (nothing to do write-through).
func (f *file) flush() error { return nil }

// counter applies a counter operation and returns the value before it.
func (f *file) counter(key string, op uint8, v int64) (int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.mu.counters == nil {
		f.mu.counters = map[string]int64{}
	}
	old := f.mu.counters[key]
	switch op {
	case wire.CounterGet:
	case wire.CounterSet:
		f.mu.counters[key] = v
	case wire.CounterFetchAdd:
		f.mu.counters[key] = old + v
	default:
		return 0, wire.Errorf(wire.EINVAL, "counter %q: unknown operation %d", key, op)
	}
	return old, nil
}
