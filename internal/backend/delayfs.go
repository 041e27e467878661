package backend

import (
	"errors"
	"io/fs"
	"time"
)

// DelayFS wraps an FS and sleeps before every write (WriteAt, and a
// vectored WriteAtv as one call) and, when ReadDelay is set, before every
// read: a slow backend for tests. It widens every window in which data is
// buffered at a server but not yet on the backend, which is where ordering
// bugs of visibility hide (a read served from the backend beneath another
// server's buffer). The server wraps its backend in it only when asked
// (server.Config.BackendDelay, --backend-delay); at zero nothing is wrapped.
//
// A DelayFS file offers no descriptor (FDFile): the server's splice and
// sendfile paths fall back to WriteAt and ReadAt, which are delayed.
type DelayFS struct {
	FS
	WriteDelay time.Duration
	ReadDelay  time.Duration
}

// OpenFile implements FS.
func (d *DelayFS) OpenFile(path string, flag int, perm fs.FileMode) (File, error) {
	f, err := d.FS.OpenFile(path, flag, perm)
	if err != nil {
		return nil, err
	}
	return &delayFile{File: f, fs: d}, nil
}

type delayFile struct {
	File
	fs *DelayFS
}

func (f *delayFile) WriteAt(p []byte, off int64) (int, error) {
	time.Sleep(f.fs.WriteDelay)
	return f.File.WriteAt(p, off)
}

// WriteAtv implements VectorWriter: one delay, then the wrapped file's
// vectored write, or WriteAt per buffer when it has none.
func (f *delayFile) WriteAtv(bufs [][]byte, off int64) (int64, error) {
	time.Sleep(f.fs.WriteDelay)
	if vw, ok := f.File.(VectorWriter); ok {
		return vw.WriteAtv(bufs, off)
	}
	var total int64
	for _, b := range bufs {
		n, err := f.File.WriteAt(b, off)
		total += int64(n)
		if err != nil {
			return total, err
		}
		off += int64(n)
	}
	return total, nil
}

func (f *delayFile) ReadAt(p []byte, off int64) (int, error) {
	if f.fs.ReadDelay > 0 {
		time.Sleep(f.fs.ReadDelay)
	}
	return f.File.ReadAt(p, off)
}

// Identity implements Identifier when the wrapped file does.
func (f *delayFile) Identity() (dev, ino uint64, err error) {
	id, ok := f.File.(Identifier)
	if !ok {
		return 0, 0, errors.ErrUnsupported
	}
	return id.Identity()
}
