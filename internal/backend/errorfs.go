package backend

import (
	"errors"
	"io/fs"
	"sync/atomic"
)

// ErrInjected is the error ErrorFS injects.
var ErrInjected = errors.New("delegate: injected backend failure")

// ErrorFS wraps an FS and fails writes while Fail is set, or holds them
// until Gate is closed (when set): for tests of flush failures, which must
// be reported and must not lose data, and of work that races a slow flush.
type ErrorFS struct {
	FS
	Fail   atomic.Bool
	Gate   chan struct{}
	Writes atomic.Int64 // write calls that reached the wrapped FS
}

// OpenFile implements FS.
func (e *ErrorFS) OpenFile(path string, flag int, perm fs.FileMode) (File, error) {
	f, err := e.FS.OpenFile(path, flag, perm)
	if err != nil {
		return nil, err
	}
	return &errorFile{File: f, fs: e}, nil
}

type errorFile struct {
	File
	fs *ErrorFS
}

func (f *errorFile) WriteAt(p []byte, off int64) (int, error) {
	if f.fs.Gate != nil {
		<-f.fs.Gate
	}
	if f.fs.Fail.Load() {
		return 0, &fs.PathError{Op: "write", Path: "(injected)", Err: ErrInjected}
	}
	f.fs.Writes.Add(1)
	return f.File.WriteAt(p, off)
}

// Identity implements Identifier when the wrapped file does.
func (f *errorFile) Identity() (dev, ino uint64, err error) {
	id, ok := f.File.(Identifier)
	if !ok {
		return 0, 0, errors.ErrUnsupported
	}
	return id.Identity()
}

// Birth implements Birther when the wrapped file does.
func (f *errorFile) Birth() (uint64, error) {
	b, ok := f.File.(Birther)
	if !ok {
		return 0, errors.ErrUnsupported
	}
	return b.Birth()
}
