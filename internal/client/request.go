package client

import "time"

// Request is a nonblocking read or write in progress. It progresses on its
// own goroutine; Test and Wait only look at the outcome.
type Request struct {
	done chan struct{}
	n    int64
	err  error
}

// IWrite starts Write in the background. The memory mem describes belongs
// to the request until it completes; a write request completes once the
// servers acknowledged it.
func (f *File) IWrite(mem [][]byte, ext []Extent, o IOOpts) (*Request, error) {
	o.Ack, o.atomic, o.background = true, f.atomicNow(), true
	if err := f.live(); err != nil {
		return nil, err
	}
	if r, ok := f.iwriteLease(mem, ext, o); ok {
		return r, nil
	}
	return f.start(mem, ext, func(mem [][]byte, ext []Extent) (int64, error) { return f.Write(mem, ext, o) })
}

// atomicNow reports whether f is in atomic mode: a request takes the mode
// it was posted in (its goroutine may run after a SetAtomic(false), and
// must not become a lease write or a direct read then).
func (f *File) atomicNow() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.mu.atomic
}

// IRead starts Read in the background.
func (f *File) IRead(mem [][]byte, ext []Extent, o IOOpts) (*Request, error) {
	o.atomic = f.atomicNow()
	return f.start(mem, ext, func(mem [][]byte, ext []Extent) (int64, error) { return f.Read(mem, ext, o) })
}

// requestStartHook, when set (tests), runs on a nonblocking request's
// goroutine before it starts its operation.
var requestStartHook func()

func (f *File) start(mem [][]byte, ext []Extent, op func([][]byte, []Extent) (int64, error)) (*Request, error) {
	if err := f.live(); err != nil {
		return nil, err
	}
	if _, err := checkLists(f.path, mem, ext); err != nil {
		return nil, err
	}
	// The caller's lists may be reused as soon as we return.
	mem = append([][]byte(nil), mem...)
	ext = append([]Extent(nil), ext...)
	r := &Request{done: make(chan struct{})}
	f.mu.Lock()
	f.mu.reqs++
	f.mu.Unlock()
	go func() {
		if requestStartHook != nil {
			requestStartHook()
		}
		r.n, r.err = op(mem, ext)
		f.requestDone(r)
	}()
	return r, nil
}

// requestDone completes r, one of f's nonblocking requests in progress.
func (f *File) requestDone(r *Request) {
	close(r.done)
	f.mu.Lock()
	if f.mu.reqs--; f.mu.reqs == 0 {
		f.idle.Broadcast()
	}
	f.mu.Unlock()
}

// Test reports whether r is complete and, if so, its outcome.
func (r *Request) Test() (done bool, n int64, err error) {
	select {
	case <-r.done:
		return true, r.n, r.err
	default:
		return false, 0, nil
	}
}

// WaitFor waits up to d for r and reports whether it is complete.
func (r *Request) WaitFor(d time.Duration) (done bool, n int64, err error) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-r.done:
		return true, r.n, r.err
	case <-t.C:
		return false, 0, nil
	}
}

// Wait waits for r. It is bounded by the session's liveness checks.
func (r *Request) Wait() (int64, error) {
	<-r.done
	return r.n, r.err
}
