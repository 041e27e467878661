package client

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync/atomic"
	"syscall"
	"unsafe"

	"github.com/delegate-io/delegate/internal/wire"
)

// Reads straight from the backend. When no server holds dirty data of the
// file (their control page slots say so, wire/ctrl.go) and this client has
// no write of the file in flight, the backend file holds every acknowledged
// write, and the client reads it itself: no round trip, no copy through the
// ring. The servers set a slot dirty before acknowledging a write and clean
// only after the data is on the backend, so this never misses a write.
// Only on the same host (Unix sockets), and never in atomic mode.

// errReplaced: the path names another file than the servers' (sameFile).
var errReplaced = errors.New("the path names another file than the servers'")

// directOK reports whether a read may go straight to the backend now.
func (f *File) directOK(flags uint32) bool {
	if flags&wire.IOAtomic != 0 {
		return false
	}
	f.mu.Lock()
	ok := f.directGateLocked() == 0
	f.mu.Unlock()
	if !ok {
		return false
	}
	for i, s := range f.sess {
		if !s.slotClean(f.slots[i]) {
			return false
		}
	}
	return true
}

// fileID names a file: its device and inode number.
type fileID struct{ dev, ino uint64 }

// sameFile reports whether d, opened by f's path, is the file every server
// of f holds (their open replies named it): the path may have been
// replaced since the servers opened it (unlinked and re-created, renamed
// over), and a direct read or lease write through d would then reach
// another file than the one this handle reads and writes through its
// servers. A server that named no file (0) fails the check.
func (f *File) sameFile(d *os.File) bool {
	st, err := d.Stat()
	if err != nil {
		return false
	}
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		return false
	}
	for _, id := range f.inodes {
		if id.ino == 0 || id != (fileID{dev: uint64(sys.Dev), ino: sys.Ino}) {
			return false
		}
	}
	return true
}

// backendFile opens the backend file for direct reads, once, if it is the
// servers' file (sameFile). The open is I/O: it happens outside f.mu, and
// a racing caller's descriptor is closed.
func (f *File) backendFile() *os.File {
	f.mu.Lock()
	d, tried := f.mu.direct, f.mu.noDirect
	f.mu.Unlock()
	if d != nil || tried {
		return d
	}
	nd, err := os.Open(f.path)
	if err == nil && !f.sameFile(nd) {
		nd.Close()
		nd, err = nil, errReplaced
	}
	f.mu.Lock()
	switch {
	case err != nil || f.mu.noDirect: // cannot open, or closed meanwhile
		f.mu.noDirect = true
		f.mirrorLocked()
	case f.mu.direct == nil:
		f.mu.direct, nd = nd, nil
	}
	d = f.mu.direct
	f.mu.Unlock()
	if nd != nil {
		nd.Close()
	}
	return d
}

// readDirect reads ext (of total bytes) into mem from the backend file and
// returns the bytes before the end of file.
func (f *File) readDirect(mem [][]byte, ext []Extent, total int64) (int64, error) {
	d := f.backendFile()
	if d == nil {
		r := reader{f: f}
		return r.run(mem, ext, total)
	}
	cur := memCursor{mem: mem}
	var got int64
	for _, e := range ext {
		off, n := e.Off, e.Len
		for n > 0 {
			seg := cur.next(n)
			m, err := d.ReadAt(seg, off)
			got += int64(m)
			if err != nil {
				if errors.Is(err, io.EOF) {
					f.cl.directReads.Add(1)
					return got, nil
				}
				return got, fmt.Errorf("read %s: %w", f.path, err)
			}
			off, n = off+int64(m), n-int64(m)
		}
	}
	f.cl.directReads.Add(1)
	return got, nil
}

// closeDirect closes the backend file of direct reads.
func (f *File) closeDirect() {
	f.mu.Lock()
	d := f.mu.direct
	f.mu.direct, f.mu.noDirect = nil, true
	f.mirrorLocked()
	f.mu.Unlock()
	if d != nil {
		d.Close()
	}
}

// mirrorBlocked in the exported word says: no direct read now, whatever
// the counts (an error to report, atomic mode, closed, no backend file).
const mirrorBlocked = 1 << 62

// ExportDirect lets the caller read the backend file itself, without
// calling into Go (libdelegate's C path), under directOK's conditions:
// from now on *mirror is kept, atomically, at the number of this file's
// writes and collective markers in flight, plus mirrorBlocked when a
// direct read must not happen, and words are the servers' control page
// words of the file, which say wire.SlotClean when a server holds no
// dirty data of it. A read may go to the backend when *mirror and every
// word are zero, read in that order. It returns the backend file's
// descriptor, valid until Close, or ok false when direct reads are
// impossible. The caller keeps mirror valid until Close returns.
//
// The words stay mapped until Close returns, also when a session dies
// meanwhile (mapping has the rule); a session that dies sets mirrorBlocked
// for good (File.lose), since its words are then no longer kept.
func (f *File) ExportDirect(mirror *atomic.Int64) (fd int, words []*uint64, ok bool) {
	for i, s := range f.sess {
		if s.shmem == nil || f.slots[i] == 0 || f.slots[i] >= wire.CtrlSlots {
			return -1, nil, false
		}
		words = append(words, (*uint64)(unsafe.Pointer(s.shmem.word(f.slots[i]))))
	}
	d := f.backendFile()
	if d == nil {
		return -1, nil, false
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.mu.closed || f.mu.direct == nil || f.lost.Load() != nil {
		return -1, nil, false
	}
	f.mu.mirror = mirror
	f.mirrorLocked()
	return int(f.mu.direct.Fd()), words, true
}

// directGateLocked is what keeps this client's reads off the backend file,
// zero when nothing does: its writes and collective markers in flight,
// plus mirrorBlocked for an error to report, atomic mode, a closed or lost
// file or no backend file. directOK and the exported word (ExportDirect)
// both use it, so the rule lives here once. The caller holds f.mu.
func (f *File) directGateLocked() int64 {
	v := int64(f.mu.writes + f.mu.markers)
	if f.mu.err != nil || f.mu.closed || f.lost.Load() != nil || f.mu.atomic || f.mu.noDirect {
		v |= mirrorBlocked
	}
	return v
}

// mirrorLocked updates the exported word (ExportDirect); the caller holds
// f.mu and has just changed what directGateLocked looks at.
func (f *File) mirrorLocked() {
	if f.mu.mirror != nil {
		f.mu.mirror.Store(f.directGateLocked())
	}
}
