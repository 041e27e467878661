package server

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sync"

	"github.com/delegate-io/delegate/internal/backend"
	"github.com/delegate-io/delegate/internal/wire"
)

// fileTable maps paths to open files. A file stays in the table while any
// client has it open or it still holds dirty data (an asynchronous close
// drains in the background); Delete unlinks the path, so a later create
// gets a fresh entry while holders of the old one keep it.
type fileTable struct {
	eng *engine
	fs  backend.FS
	mu  struct {
		sync.Mutex
		byPath map[string]*file
		all    map[*file]struct{} // including unlinked ones still open
	}
}

func newFileTable(e *engine, fsys backend.FS) *fileTable {
	t := &fileTable{eng: e, fs: fsys}
	t.mu.byPath = map[string]*file{}
	t.mu.all = map[*file]struct{}{}
	return t
}

func needsWrite(flags uint32) bool { return flags&(wire.OWronly|wire.ORdwr) != 0 }

// newFile makes the table's entry for bf; dev, ino and birth name it (0:
// not known).
func (t *fileTable) newFile(path string, regionSize int64, bf backend.File, writable bool, dev, ino, birth uint64) *file {
	f := &file{eng: t.eng, path: path, regionSize: regionSize, sum: t.eng.summaries.attach(path), dev: dev, ino: ino}
	f.birth.Store(birth)
	f.mu.bf, f.mu.writable, f.mu.refs = bf, writable, 1
	f.buf.live = f.newIndex()
	return f
}

// open returns the file for path with one more reference, opening or
// creating the backend file as flags say. The backend is opened read-write
// when the file system allows it, since one descriptor serves every client
// of the file and the flusher.
//
// Every way in goes through join, also when two first opens race (the
// loser's check of the region size and its upgrade to writable are the
// same as for a later open), and a path keeps one entry while its old
// data drains: two files of one path would flush over each other.
func (t *fileTable) open(o *wire.Open) (*file, error) {
	excl := o.Flags&wire.OExcl != 0 && o.Flags&wire.OCreat != 0
	flags := openFlags(o)
	var checked *file // the entry whose identity was checked
	for {
		t.mu.Lock()
		f := t.mu.byPath[o.Path]
		if f != nil && f != checked && f.ino != 0 && f.refs() == 0 {
			// Nobody holds the entry (its data drains, or is kept after a
			// failed flush): the path may name another file by now,
			// removed and created again behind delegate's back. Such an
			// entry leaves the path, as an unlinked one would (it keeps
			// draining, or being kept, into its own inode), and the open
			// gets a fresh one. Checked outside the lock: it is I/O.
			t.mu.Unlock()
			checked = f
			if t.replaced(f) {
				t.mu.Lock()
				if t.mu.byPath[o.Path] == f && f.refs() == 0 {
					delete(t.mu.byPath, o.Path)
					t.eng.log.Info("the path names another file than the one whose data is still buffered; that data goes to the old file",
						"path", o.Path, "bytes", f.dirty())
				}
				t.mu.Unlock()
			}
			continue
		}
		if f != nil && f.regionSize != o.RegionSize && f.refs() <= 0 {
			// Nobody holds the file, but its data still drains under the
			// old region rule. A new rule is safe once that data is on the
			// backend: write it out, retire the entry, and look again (a
			// client may have taken it meanwhile under the old rule). The
			// entry stays in the table until then, so that no second file
			// of the path is opened beside it.
			t.mu.Unlock()
			if err := f.flush(causeClose, false); err != nil {
				return nil, fmt.Errorf("open %s with a new region size: %w", o.Path, err)
			}
			if err := t.finalize(f); err != nil {
				t.eng.log.Warn("closing a retired backend file", "path", o.Path, "err", err)
			}
			continue
		}
		if f != nil {
			return t.join(f, o, excl)
		}
		t.mu.Unlock()

		// Open outside the table lock: it is I/O. A reader gets a read-only
		// descriptor (a running executable cannot be opened for writing); a
		// writer that comes later upgrades it (reopenWritable).
		bf, err := t.fs.OpenFile(o.Path, flags, openPerm(o))
		if err != nil {
			return nil, err
		}
		dev, ino, _ := backend.IdentityOf(bf) // an fstat and a statx: before the lock
		birth := backend.BirthOf(bf)
		if openRaceHook != nil {
			openRaceHook(o.Path)
		}
		t.mu.Lock()
		if t.mu.byPath[o.Path] == nil {
			nf := t.newFile(o.Path, o.RegionSize, bf, needsWrite(o.Flags), dev, ino, birth)
			t.mu.byPath[o.Path] = nf
			t.mu.all[nf] = struct{}{}
			t.mu.Unlock()
			return nf, nil
		}
		// Another client opened it meanwhile: join theirs. Our own open
		// succeeded, so O_EXCL was honoured by the backend (we created the
		// file; theirs opened it after us).
		t.mu.Unlock()
		bf.Close()
		excl = false
		flags &^= os.O_EXCL // the file exists now, created by us: not EEXIST if theirs is gone when we look again
	}
}

// replaced reports whether f's path names another file than f (or none):
// a read-only open and an fstat. An error other than ENOENT says nothing.
func (t *fileTable) replaced(f *file) bool {
	bf, err := t.fs.OpenFile(f.path, os.O_RDONLY, 0)
	if err != nil {
		return errors.Is(err, fs.ErrNotExist)
	}
	defer bf.Close()
	dev, ino, ok := backend.IdentityOf(bf)
	return ok && (dev != f.dev || ino != f.ino)
}

// openRaceHook, when set (tests), runs between a first open's backend open
// and its entry in the table: the window where another open may win.
var openRaceHook func(path string)

// join takes a reference to f, the table's entry for o.Path, for o; the
// caller holds t.mu, which join releases.
func (t *fileTable) join(f *file, o *wire.Open, excl bool) (*file, error) {
	if excl {
		t.mu.Unlock()
		return nil, &os.PathError{Op: "open", Path: o.Path, Err: os.ErrExist}
	}
	if f.regionSize != o.RegionSize {
		t.mu.Unlock()
		return nil, wire.Errorf(wire.EBUSY, "open %s: region size %d differs from %d used by the file's other clients",
			o.Path, o.RegionSize, f.regionSize)
	}
	f.mu.Lock()
	f.mu.refs++
	held := f.mu.refs == 1 // held again: nobody did
	writable := f.mu.writable
	f.mu.Unlock()
	t.mu.Unlock()
	if held {
		// The new holder starts clean: a failed flush before (its data
		// kept, or draining) is not its error; the data still flushes,
		// and a flush that fails again sets the error again.
		f.holds.Add(1)
		f.buf.Lock()
		f.buf.err = nil
		f.buf.Unlock()
	}
	if needsWrite(o.Flags) && !writable {
		if err := f.reopenWritable(t.fs); err != nil {
			t.release(f)
			return nil, err
		}
	}
	return f, nil
}

func openFlags(o *wire.Open) int {
	flag := os.O_RDONLY
	if needsWrite(o.Flags) {
		flag = os.O_RDWR
	}
	if o.Flags&wire.OCreat != 0 {
		flag |= os.O_CREATE
		if o.Flags&wire.OExcl != 0 {
			flag |= os.O_EXCL
		}
	}
	return flag
}

func openPerm(o *wire.Open) os.FileMode {
	if perm := os.FileMode(o.Perm & 0o7777); perm != 0 {
		return perm
	}
	return 0o644
}

// reopenWritable replaces f's read-only descriptor by a writable one of
// the same file. The path may name another file by now (replaced behind
// delegate's back): then the open fails with EBUSY, since switching would
// move every holder of f, and the clients' direct reads and lease writes
// checked against f.dev and f.ino, to another file.
func (f *file) reopenWritable(fsys backend.FS) error {
	bf, err := fsys.OpenFile(f.path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	if f.ino != 0 {
		if dev, ino, ok := backend.IdentityOf(bf); !ok || dev != f.dev || ino != f.ino {
			bf.Close()
			return wire.Errorf(wire.EBUSY, "open %s for writing: the path names another file than the one open read-only here (replaced since); close every handle of it first", f.path)
		}
	}
	// The flusher may be writing through the old descriptor: flushMu
	// waits for it. Others use it without flushMu (reads, a sendfile, a
	// splice's descriptor taken before this): the old descriptor stays
	// open until the file is finalized, so none of them finds it closed.
	// One upgrade per file at most leaves it (writable never goes back),
	// except for two writers racing here: then the later one's descriptor
	// is retired too.
	birth := backend.BirthOf(bf) // a statx: before the locks
	f.flushMu.Lock()
	defer f.flushMu.Unlock()
	f.mu.Lock()
	f.mu.retired = append(f.mu.retired, f.mu.bf)
	f.mu.bf, f.mu.writable = bf, true
	f.mu.Unlock()
	if birth != 0 {
		f.birth.Store(birth)
	}
	return nil
}

// release drops a reference. The last one closes the backend file, unless
// the file still holds dirty data: then the flusher drains it first.
func (t *fileTable) release(f *file) error {
	f.mu.Lock()
	f.mu.refs--
	last := f.mu.refs == 0
	if last {
		// Counters (shared file pointers) live while a client holds the
		// file; ROMIO reuses their names for opens within one second.
		f.mu.counters = nil
	}
	f.mu.Unlock()
	if !last {
		return nil
	}
	if f.dirty() > 0 {
		t.eng.kickFlusher()
		return nil
	}
	return t.finalize(f)
}

// finalize closes a file nobody holds and that has nothing left to flush.
// It does nothing if a client reopened it meanwhile.
func (t *fileTable) finalize(f *file) error {
	t.mu.Lock()
	f.mu.Lock()
	if f.mu.refs != 0 || f.dirty() > 0 { // held again, or finalized already (-1)
		f.mu.Unlock()
		t.mu.Unlock()
		return nil
	}
	f.mu.refs = -1 // closed: nobody may take it
	if t.mu.byPath[f.path] == f {
		delete(t.mu.byPath, f.path)
	}
	f.mu.Unlock()
	t.mu.Unlock()
	return t.closeClaimed(f)
}

// claim takes f, which nobody holds, out of the table's paths for good
// (refs -1, as finalize leaves it), so that no open joins it, before its
// data is dropped (dropKeptForMemory): checked and taken under both locks,
// since an open that joined between a check and the drop would have its
// acknowledged writes dropped. f stays in files() until closeClaimed. It
// reports false, and does nothing, if a client holds f or it is closed.
func (t *fileTable) claim(f *file) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.mu.refs != 0 {
		return false
	}
	f.mu.refs = -1
	if t.mu.byPath[f.path] == f {
		delete(t.mu.byPath, f.path)
	}
	return true
}

// closeClaimed closes the backend descriptors of f, finalized or claimed,
// and takes it out of the table.
func (t *fileTable) closeClaimed(f *file) error {
	t.mu.Lock()
	delete(t.mu.all, f)
	f.mu.Lock()
	bf, retired := f.mu.bf, f.mu.retired
	f.mu.retired = nil
	f.mu.Unlock()
	t.mu.Unlock()
	for _, r := range retired {
		r.Close() // read-only, or unused: nothing to report
	}
	return bf.Close()
}

// unlink removes path from the backend and from the table; whatever is
// buffered for it is dropped.
func (t *fileTable) unlink(path string) error {
	t.mu.Lock()
	f := t.mu.byPath[path]
	if f != nil {
		delete(t.mu.byPath, path)
	}
	t.mu.Unlock()
	if f != nil {
		f.unlinked.Store(true)
		f.drop()
	}
	return t.fs.Remove(path)
}

// files returns every file the table holds.
func (t *fileTable) files() []*file {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]*file, 0, len(t.mu.all))
	for f := range t.mu.all {
		out = append(out, f)
	}
	return out
}
