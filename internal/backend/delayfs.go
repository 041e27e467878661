package backend

import (
	"errors"
	"io/fs"
	"sync/atomic"
	"time"
)

// DelayFS wraps an FS and makes it slow, for tests: a write (WriteAt, or a
// vectored WriteAtv as one call) sleeps WriteDelay first, and so does a
// read when ReadDelay is set. It widens every window in which data is
// buffered at a server but not yet on the backend, where ordering bugs of
// visibility hide (a read served from the backend beneath another
// server's buffer). The server wraps its backend in it only when asked
// (server.Config.BackendDelay, --backend-delay); at zero nothing is wrapped.
//
// The delay is a latency, not a rate: once a file's write slept, the
// file's writes in the next WriteDelay go at once (reads likewise), so a
// busy file waits at most half of the time. A flush of a sparse buffer is
// tens of thousands of small writes, and Go sleeps at least a millisecond;
// delaying each of them would turn a seconds-long test into minutes
// (differential seed 8 timed out at 2 ms). Delaying only the first write
// after a pause keeps the windows too short: with 7dd16b0 reverted,
// differential seed 44 failed 1 run in 3 with that at 20 ms, 7 in 8 with
// this at 100 ms, and with a sleep before every write 3 in 3 (at 20 s a run).
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
	fs        *DelayFS
	nextWrite atomic.Int64 // unix nanoseconds: writes before it are not delayed
	nextRead  atomic.Int64
}

// wait sleeps d unless the file slept less than d ago (next).
func wait(d time.Duration, next *atomic.Int64) {
	if d <= 0 || time.Now().UnixNano() < next.Load() {
		return
	}
	time.Sleep(d)
	next.Store(time.Now().Add(d).UnixNano())
}

func (f *delayFile) WriteAt(p []byte, off int64) (int, error) {
	wait(f.fs.WriteDelay, &f.nextWrite)
	return f.File.WriteAt(p, off)
}

// WriteAtv implements VectorWriter: one delay, then the wrapped file's
// vectored write, or WriteAt per buffer when it has none.
func (f *delayFile) WriteAtv(bufs [][]byte, off int64) (int64, error) {
	wait(f.fs.WriteDelay, &f.nextWrite)
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
	wait(f.fs.ReadDelay, &f.nextRead)
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

// Birth implements Birther when the wrapped file does.
func (f *delayFile) Birth() (uint64, error) {
	b, ok := f.File.(Birther)
	if !ok {
		return 0, errors.ErrUnsupported
	}
	return b.Birth()
}
