package client

import (
	"errors"
	"fmt"

	"github.com/delegate-io/delegate/internal/wire"
)

// each sends the request made by mk to every server (or those which says)
// and waits for all replies; it returns the calls and their first error.
func (f *File) each(which func(i int) bool, mk func(i int) *call) ([]*call, error) {
	calls := make([]*call, len(f.sess))
	for i, s := range f.sess {
		if which != nil && !which(i) {
			continue
		}
		calls[i] = mk(i)
		s.sendNow(calls[i])
	}
	var first error
	for _, c := range calls {
		if c == nil {
			continue
		}
		if err := c.wait(); err != nil && first == nil {
			first = err
		}
	}
	return calls, first
}

func (f *File) fileOp(t wire.Type) func(i int) *call {
	return func(i int) *call { return newCall(t, &wire.FileOp{File: f.ids[i]}) }
}

// Sync makes every byte written through f durable: corked batches go out,
// then every server writes the file's buffered data and fsyncs it. It
// returns an earlier write's failure if one was not yet reported.
func (f *File) Sync() error {
	if err := f.settle(); err != nil {
		return err
	}
	ferr := f.sendCorked()
	_, err := f.each(nil, f.fileOp(wire.TSync))
	if e := f.enter("sync"); e != nil {
		return e // acknowledged before the sync reply: the root cause
	}
	if err != nil {
		return fmt.Errorf("sync %s: %w", f.path, err)
	}
	if err := f.syncLease(); err != nil {
		return err
	}
	return ferr
}

// WaitAcked returns once the servers acknowledged every write issued on f:
// a round trip on each session, which the servers answer in order, after
// sending what is corked. Nothing is written to the backend (that is a
// server's flush) nor fsynced (Sync). The C API calls it delegate_flush.
func (f *File) WaitAcked() error {
	if err := f.settle(); err != nil {
		return err
	}
	ferr := f.sendCorked()
	_, err := f.each(nil, f.fileOp(wire.TStat))
	if e := f.enter("flush"); e != nil { // delegate_flush, as the C caller knows it
		return e
	}
	if err != nil {
		return fmt.Errorf("flush %s: %w", f.path, err)
	}
	return ferr
}

func (f *File) live() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.mu.closed {
		return ErrClosed
	}
	return nil
}

// settleWaitHook, when set (tests), runs when settle finds a request in
// progress, before it waits (under f.mu: it must not call into f).
var settleWaitHook func()

// settle waits until no nonblocking request of f is in progress, so that
// flush, sync and close cover every write issued before them. The requests
// progress on their own; each wait is bounded by the sessions' liveness.
func (f *File) settle() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.mu.reqs > 0 && settleWaitHook != nil {
		settleWaitHook()
	}
	for f.mu.reqs > 0 {
		f.idle.Wait()
	}
	if f.mu.closed {
		return ErrClosed
	}
	return nil
}

// Close waits for nonblocking requests, sends corked batches, and closes
// the file on every server, which writes its buffered data to the backend
// first unless the delegate_async_close hint is set. The handle is released
// even on error.
func (f *File) Close() error {
	f.mu.Lock()
	if f.mu.mirror != nil {
		f.mu.mirror.Store(mirrorBlocked)
		f.mu.mirror = nil // its owner frees it after Close
	}
	f.mu.Unlock()
	if err := f.settle(); err != nil {
		return err
	}
	ferr := f.sendCorked()
	f.mu.Lock()
	f.mu.closed = true
	async, atomic := f.mu.hints.AsyncClose, f.mu.atomic
	f.mu.Unlock()
	f.closeDirect()
	f.closeLease()
	// In atomic mode every write went to the home server, also into
	// regions it does not own. The next open of the file (not atomic)
	// reads those regions from their owners, which read the backend
	// beneath their own buffers: so the home writes its buffer out before
	// an asynchronous close returns, as SetAtomic(false) does; the others
	// got nothing since SetAtomic(true) flushed them.
	home := f.rule.Home()
	err := f.closeOn(nil, func(i int) bool { return !async || (atomic && len(f.sess) > 1 && i == home) })
	if lerr := f.lostErr("close"); lerr != nil {
		err, ferr = lerr, nil // says why better than the dead session's error
	}
	f.cl.forget(f)
	f.detach()
	f.mu.Lock()
	werr := f.mu.err
	f.mu.err = nil
	f.mu.Unlock()
	return errors.Join(werr, err, ferr)
}

// detach lets go of the sessions (and their shared memory, mapping) once
// nothing of f uses them: closed, or its open failed.
func (f *File) detach() {
	for _, s := range f.sess {
		s.detach(f)
	}
}

// closeOn sends close to the servers which selects; those flush selects
// write their buffered data of the file to the backend first.
func (f *File) closeOn(which, flush func(i int) bool) error {
	_, err := f.each(which, func(i int) *call {
		c := &wire.Close{File: f.ids[i], Async: !flush(i)}
		if i == f.rule.Home() {
			c.LeaseWrites, c.LeaseBytes = f.leaseWrites.Load(), f.leaseBytes.Load()
		}
		return newCall(wire.TClose, c)
	})
	if err != nil {
		return fmt.Errorf("close %s: %w", f.path, err)
	}
	return nil
}

// statAll returns the logical size: the largest any server knows.
func (f *File) statAll() (int64, error) {
	calls, err := f.each(nil, f.fileOp(wire.TStat))
	if err != nil {
		return 0, fmt.Errorf("size of %s: %w", f.path, err)
	}
	var size int64
	for _, c := range calls {
		size = max(size, c.rep.Size)
	}
	return size, nil
}

// Size returns the file's logical size, buffered data included.
func (f *File) Size() (int64, error) {
	if err := f.enter("size of"); err != nil {
		return 0, err
	}
	if err := f.sendCorked(); err != nil {
		return 0, err
	}
	return f.statAll()
}

// SetSize truncates or extends the file on every server.
func (f *File) SetSize(size int64) error {
	if err := f.enter("set size of"); err != nil {
		return err
	}
	if !wire.CheckExtent(size, 0) {
		return wire.Errorf(wire.EINVAL, "set size of %s to %d", f.path, size)
	}
	if err := f.sendCorked(); err != nil {
		return err
	}
	_, err := f.each(nil, func(i int) *call {
		return newCall(wire.TResize, &wire.Resize{File: f.ids[i], Size: size})
	})
	if err != nil {
		return fmt.Errorf("set size of %s to %d: %w", f.path, size, err)
	}
	return nil
}

// Preallocate makes the file at least size bytes, with blocks allocated.
func (f *File) Preallocate(size int64) error {
	if err := f.enter("preallocate"); err != nil {
		return err
	}
	if !wire.CheckExtent(size, 0) {
		return wire.Errorf(wire.EINVAL, "preallocate %s to %d", f.path, size)
	}
	owner := f.rule.Home()
	_, err := f.each(func(i int) bool { return i == owner }, func(i int) *call {
		return newCall(wire.TAlloc, &wire.Resize{File: f.ids[i], Size: size})
	})
	if err != nil {
		return fmt.Errorf("preallocate %s to %d: %w", f.path, size, err)
	}
	return nil
}

// Counter applies op to the named counter kept by the owner of the file's
// first region and returns the value before it.
func (f *File) Counter(key string, op uint8, v int64) (int64, error) {
	if err := f.enter("counter of"); err != nil {
		return 0, err
	}
	owner := f.rule.Home()
	c := newCall(wire.TCounter, &wire.Counter{File: f.ids[owner], Key: key, Op: op, Value: v})
	if err := f.sess[owner].roundTrip(c); err != nil {
		return 0, fmt.Errorf("counter %s of %s: %w", key, f.path, err)
	}
	return c.rep.Value, nil
}

// SetAtomic turns atomic mode on or off. In atomic mode each request is
// applied as one unit with respect to every other atomic request on the
// same bytes: with several servers every request of the file goes to the
// owner of its first region, which orders them all (no request then spans
// servers, and no lock is needed). Since that moves data between servers,
// changing the mode first writes what the servers buffer for the file to
// the backend.
func (f *File) SetAtomic(on bool) error {
	f.mu.Lock()
	if f.mu.closed {
		f.mu.Unlock()
		return ErrClosed
	}
	changed := f.mu.atomic != on
	f.mu.Unlock()
	if changed && on {
		// Atomic writes are not corked: batches corked before go first,
		// or they would land over the atomic writes after them (found in
		// review).
		if err := f.sendCorked(); err != nil {
			return err
		}
	}
	if changed && len(f.sess) > 1 {
		// Routing changes (route.Rule.Route): what went to the home in
		// atomic mode must be on the backend before the owners serve its
		// regions, and what the owners hold before the home serves them
		// all. A nonblocking request posted in the old mode still goes the
		// old way: it completes first, so that the flush covers it.
		if err := f.settle(); err != nil {
			return err
		}
		if err := f.sendCorked(); err != nil {
			return err
		}
		if _, err := f.each(nil, f.fileOp(wire.TFlush)); err != nil {
			return fmt.Errorf("atomic mode of %s: %w", f.path, err)
		}
	}
	f.mu.Lock()
	f.mu.atomic = on
	f.mirrorLocked()
	f.mu.Unlock()
	return nil
}

// Cork starts batching writes; Uncork sends the batch and stops.
func (f *File) Cork() error { return f.SetHint("delegate_cork", "true") }

// Uncork sends the corked batch and stops batching.
func (f *File) Uncork() error { return f.SetHint("delegate_cork", "false") }

// SetHint changes a hint of the open file.
func (f *File) SetHint(name, value string) error {
	f.mu.Lock()
	if f.mu.closed {
		f.mu.Unlock()
		return ErrClosed
	}
	err := f.mu.hints.Set(name, value, false)
	corked := f.mu.hints.Cork
	f.mu.Unlock()
	if err != nil {
		if errors.Is(err, errOpenOnly) {
			return wire.Errorf(wire.ENOSYS, "%s: hint %s can only be set at open", f.path, name)
		}
		return fmt.Errorf("%s: %w", f.path, err)
	}
	if !corked {
		return f.sendCorked()
	}
	return nil
}

// Hint returns the effective value of a hint.
func (f *File) Hint(name string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	v, err := f.mu.hints.Get(name)
	if err != nil {
		return "", wire.Errorf(wire.EINVAL, "%w", err)
	}
	return v, nil
}
