// Package backend is the file system a server reads from and flushes to.
// FS and File are small interfaces with a stated contract; OS confines every
// path to a root directory, and ErrorFS (in tests) injects failures.
package backend

import (
	"errors"
	"io/fs"
	"syscall"
)

// ErrPathEscape is returned for a path outside the root.
var ErrPathEscape = errors.New("delegate: path outside the server's root")

// FS opens and removes files by absolute path. Safe for concurrent use.
type FS interface {
	// OpenFile opens path with os.O_* flags; perm applies on create.
	OpenFile(path string, flag int, perm fs.FileMode) (File, error)
	// Remove unlinks path.
	Remove(path string) error
}

// File is an open backend file. ReadAt and WriteAt may run concurrently
// with each other and with Size; Truncate, Allocate, Sync and Close are
// called by one goroutine at a time. A short ReadAt at the end of the file
// returns io.EOF; WriteAt writes everything or fails.
type File interface {
	ReadAt(p []byte, off int64) (int, error)
	WriteAt(p []byte, off int64) (int, error)
	Size() (int64, error)
	Truncate(size int64) error
	// Allocate makes sure [0, size) is allocated and the file is at least
	// size bytes, never shrinking it.
	Allocate(size int64) error
	Sync() error
	Close() error
}

// VectorWriter is an optional File capability: one vectored write of bufs,
// in order, at off (pwritev). The flusher uses it to write a run of
// buffered extents in one call; without it, it calls WriteAt per buffer.
type VectorWriter interface {
	WriteAtv(bufs [][]byte, off int64) (int64, error)
}

// FDFile is an optional File capability: the file's descriptor, for a
// transfer the kernel does without a copy through user space (the server
// splices bulk write data from its socket into the file).
type FDFile interface {
	SyscallConn() (syscall.RawConn, error)
}

// Identifier is an optional File capability: the device and inode number
// of the open file (fstat), which a server names in its open reply so that
// a client opening the path itself can tell whether it reached the same
// file (the path may have been replaced since).
type Identifier interface {
	Identity() (dev, ino uint64, err error)
}

// IdentityOf returns f's device and inode number, or ok false when f
// cannot say (no Identifier, or fstat failed).
func IdentityOf(f File) (dev, ino uint64, ok bool) {
	id, is := f.(Identifier)
	if !is {
		return 0, 0, false
	}
	dev, ino, err := id.Identity()
	return dev, ino, err == nil && ino != 0
}

// Birther is an optional File capability: the open file's birth time
// (statx's btime, in nanoseconds; 0 when the file system does not keep
// one). With the inode number it names a file across a removal: a file
// created at a path after another was removed often gets the freed inode
// number (ext4), never the same birth time.
type Birther interface {
	Birth() (uint64, error)
}

// BirthOf returns f's birth time, or 0 when f cannot say.
func BirthOf(f File) uint64 {
	b, is := f.(Birther)
	if !is {
		return 0
	}
	t, err := b.Birth()
	if err != nil {
		return 0
	}
	return t
}

// WriteRun writes bufs at off with one vectored call when f supports it.
// It reports the number of backend calls it made.
func WriteRun(f File, bufs [][]byte, off int64) (calls int, err error) {
	if vw, ok := f.(VectorWriter); ok && len(bufs) > 1 {
		_, err := vw.WriteAtv(bufs, off)
		return 1, err
	}
	for _, b := range bufs {
		if _, err := f.WriteAt(b, off); err != nil {
			return calls + 1, err
		}
		calls++
		off += int64(len(b))
	}
	return calls, nil
}
