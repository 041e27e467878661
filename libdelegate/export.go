// Command libdelegate is built with -buildmode=c-shared into libdelegate.so:
// the C API of include/delegate.h over internal/client. Only the cgo
// boundary lives here: handles, error codes and messages, conversion of C
// lists into Go slices (without copying the data), and the runtime caps.
package main

/*
#cgo CFLAGS: -I${SRCDIR}/../include -Wall
#include <stdlib.h>
#include <string.h>
#include "delegate.h"
#include "stage.h"
*/
import "C"

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/delegate-io/delegate/internal/client"
	"github.com/delegate-io/delegate/internal/wire"
)

func main() {}

// The caps DESIGN.md asks for: a node may run dozens of ranks, each with
// its own Go runtime.
func init() {
	if os.Getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(min(2, runtime.NumCPU()))
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(512 << 20)
	}
	if s := os.Getenv("DELEGATE_LOG_FD"); s != "" {
		if fd, err := strconv.Atoi(s); err == nil {
			setLogFD(fd)
		}
	}
}

// The extent layout is shared with C: arrays are reinterpreted, not copied.
var _ [16 - unsafe.Sizeof(C.delegate_extent{})]byte
var _ [unsafe.Sizeof(C.delegate_extent{}) - 16]byte
var _ [16 - unsafe.Sizeof(client.Extent{})]byte

var lib struct {
	sync.Mutex
	cl  *client.Client
	log *slog.Logger
}

var logger = slog.New(slog.DiscardHandler)

func setLogFD(fd int) {
	if fd < 0 {
		logger = slog.New(slog.DiscardHandler)
		return
	}
	logger = slog.New(slog.NewTextHandler(os.NewFile(uintptr(fd), "delegate-log"), nil)).With("pid", os.Getpid())
}

// fail records err under handle h and returns its code.
func fail(h int, err error) C.int {
	if err == nil {
		return C.DELEGATE_OK
	}
	setMsg(h, err.Error())
	return C.int(wire.CodeOf(err))
}

// guard turns a panic into DELEGATE_EIO: a panic in a c-shared library
// would kill the whole MPI job.
func guard(h int, rc *C.int) {
	if p := recover(); p != nil {
		logger.Error("panic in libdelegate", "panic", p, "stack", string(debug.Stack()))
		*rc = fail(h, wire.Errorf(wire.EIO, "internal error in libdelegate: %v", p))
	}
}

func theClient() (*client.Client, error) {
	lib.Lock()
	defer lib.Unlock()
	if lib.cl != nil {
		return lib.cl, nil
	}
	cfg, err := client.FromEnv()
	if err != nil {
		return nil, wire.Errorf(wire.ECONFIG, "delegate: %w", err)
	}
	cfg.Logger = logger
	// The fence word lives in C memory: stage.c counts its buffers there,
	// and the patched MPICH reads it before every send (delegate_fence).
	cfg.Pending = (*atomic.Int64)(unsafe.Pointer(C.dlg_fence_word()))
	cfg.Shared = (*atomic.Int64)(unsafe.Pointer(C.dlg_shared_word()))
	ctx, cancel := context.WithTimeout(context.Background(), 2*cfg.Timeout)
	defer cancel()
	cl, err := client.New(ctx, cfg)
	if err != nil {
		return nil, err
	}
	lib.cl = cl
	return cl, nil
}

//export dlgInit
func dlgInit() (rc C.int) {
	defer guard(noHandle, &rc)
	_, err := theClient()
	return fail(noHandle, err)
}

// dlgFence waits until every write of this process is acknowledged
// (client.Client.Fence); stage.c has handed its buffers over first.
//
//export dlgFence
func dlgFence() (rc C.int) {
	defer guard(noHandle, &rc)
	lib.Lock()
	cl := lib.cl
	lib.Unlock()
	if cl == nil {
		return C.DELEGATE_OK
	}
	return fail(noHandle, cl.Fence())
}

// dlgFenceScoped is the fence inside the end of a collective write on
// handle h (client.Client.FenceScoped); with a bad handle, the full fence.
//
//export dlgFenceScoped
func dlgFenceScoped(h C.int) (rc C.int) {
	defer guard(noHandle, &rc)
	return fenceFor(h, (*client.Client).FenceScoped)
}

// dlgFenceClose is the fence inside a close of handle h that sends end
// markers (client.Client.FenceClose); with a bad handle, the full fence.
//
//export dlgFenceClose
func dlgFenceClose(h C.int) (rc C.int) {
	defer guard(noHandle, &rc)
	return fenceFor(h, (*client.Client).FenceClose)
}

// fenceFor runs fence, a fence scoped to handle h, or the full fence if h
// is not a handle.
func fenceFor(h C.int, fence func(*client.Client, *client.File) error) C.int {
	lib.Lock()
	cl := lib.cl
	lib.Unlock()
	if cl == nil {
		return C.DELEGATE_OK
	}
	f, err := fileOf(h)
	if err != nil {
		return fail(noHandle, cl.Fence())
	}
	return fail(noHandle, fence(cl, f))
}

//export dlgFinalize
func dlgFinalize() (rc C.int) {
	defer guard(noHandle, &rc)
	lib.Lock()
	cl := lib.cl
	lib.cl = nil
	lib.Unlock()
	if cl == nil {
		return C.DELEGATE_OK
	}
	for _, h := range files() {
		remove(h)
	}
	return fail(noHandle, cl.Close())
}

//export dlgErrmsg
func dlgErrmsg(h C.int, buf *C.char, n C.size_t) C.int {
	msg, ok := getMsg(int(h))
	if !ok {
		return C.DELEGATE_EBADF
	}
	return copyOut(msg, buf, n)
}

// copyOut copies s into a C buffer, always NUL-terminated.
func copyOut(s string, buf *C.char, n C.size_t) C.int {
	if n == 0 || buf == nil {
		return C.DELEGATE_ERANGE
	}
	dst := unsafe.Slice((*byte)(unsafe.Pointer(buf)), int(n))
	k := copy(dst[:len(dst)-1], s)
	dst[k] = 0
	if k < len(s) {
		return C.DELEGATE_ERANGE
	}
	return C.DELEGATE_OK
}

var strerrors = func() []*C.char {
	out := make([]*C.char, len(wire.Codes()))
	for i, c := range wire.Codes() {
		out[i] = C.CString(c.Text) // static for the life of the process
	}
	return out
}()

var unknownError = C.CString("unknown delegate error code")

//export dlgStrerror
func dlgStrerror(code C.int) *C.char {
	if code < 0 || int(code) >= len(strerrors) {
		return unknownError
	}
	return strerrors[code]
}

func fileOf(h C.int) (*client.File, error) {
	if e := lookup(int(h)); e != nil && e.f != nil {
		return e.f, nil
	}
	return nil, wire.Errorf(wire.EBADF, "bad file handle %d", int(h))
}

//export dlgOpen
func dlgOpen(path *C.char, flags, perm C.int, hints *C.delegate_hint, nhints C.int, fh *C.int) (rc C.int) {
	defer guard(noHandle, &rc)
	if path == nil || fh == nil || nhints < 0 || (nhints > 0 && hints == nil) {
		return fail(noHandle, wire.Errorf(wire.EINVAL, "delegate_open: NULL path, handle or hints"))
	}
	hs := map[string]string{}
	for _, h := range unsafe.Slice(hints, int(nhints)) {
		if h.key == nil || h.value == nil {
			return fail(noHandle, wire.Errorf(wire.EINVAL, "delegate_open: NULL hint key or value"))
		}
		hs[C.GoString(h.key)] = C.GoString(h.value)
	}
	cl, err := theClient()
	if err != nil {
		return fail(noHandle, err)
	}
	f, err := cl.Open(context.Background(), C.GoString(path), uint32(flags), uint32(perm), hs)
	if err != nil {
		return fail(noHandle, err)
	}
	*fh = C.int(addEntry(&entry{f: f}))
	return C.DELEGATE_OK
}

//export dlgClose
func dlgClose(fh C.int) (rc C.int) {
	defer guard(int(fh), &rc)
	f, err := fileOf(fh)
	if err != nil {
		return fail(noHandle, err)
	}
	err = f.Close()
	if err != nil {
		// The handle is gone: keep the message where errmsg can find it.
		fail(noHandle, err)
	}
	remove(int(fh))
	return fail(int(fh), err)
}

// lists turns the C memory and extent arrays into Go slices over the same
// memory.
func lists(mem *C.delegate_iov, nmem C.int64_t, ext *C.delegate_extent, next C.int64_t) ([][]byte, []client.Extent, error) {
	if nmem < 0 || next < 0 || (nmem > 0 && mem == nil) || (next > 0 && ext == nil) {
		return nil, nil, wire.Errorf(wire.EINVAL, "bad memory or extent list (%d, %d entries)", int64(nmem), int64(next))
	}
	civ := unsafe.Slice(mem, int(nmem))
	var one [1][]byte
	ms := one[:0]
	if nmem > 1 {
		ms = make([][]byte, 0, int(nmem))
	}
	for _, v := range civ {
		if v.len < 0 || (v.base == nil && v.len > 0) {
			return nil, nil, wire.Errorf(wire.EINVAL, "bad memory piece (%p, %d)", v.base, int64(v.len))
		}
		if v.len > 0 {
			ms = append(ms, unsafe.Slice((*byte)(v.base), int(v.len)))
		}
	}
	es := unsafe.Slice((*client.Extent)(unsafe.Pointer(ext)), int(next))
	return ms, es, nil
}

// ioOpts converts the C options. The collective tag crosses from C's
// delegate_io_opts into Go's only form of it, wire.CollTag, here once.
func ioOpts(o *C.delegate_io_opts) client.IOOpts {
	if o == nil {
		return client.IOOpts{}
	}
	io := client.IOOpts{Ack: o.flags&C.DELEGATE_IO_ACK != 0}
	if o.flags&C.DELEGATE_IO_COLL != 0 {
		io.Coll = &wire.CollTag{
			Seq:   int64(o.coll_seq),
			Rank:  int32(o.coll_rank),
			Size:  int32(o.coll_size),
			Group: int64(o.coll_group),
		}
	}
	return io
}

// dlgStagePolicy tells stage.c whether fh's small writes may be combined
// in C before they reach Go, and whether they have a deadline.
//
//export dlgStagePolicy
func dlgStagePolicy(fh C.int) (policy C.int) {
	defer guard(int(fh), new(C.int))
	f, err := fileOf(fh)
	if err != nil {
		return 0
	}
	ok, corked := f.Combinable()
	if ok {
		policy |= C.DLG_STAGE_ON
	}
	if corked {
		policy |= C.DLG_STAGE_CORKED
	}
	return policy
}

// dlgDirectSetup lets direct.c read fh's backend file itself
// (client.File.ExportDirect): it fills words with pointers to the servers'
// control page words of the file and *fd with the backend file, and
// returns how many words, or -1 when direct reads are impossible.
//
//export dlgDirectSetup
func dlgDirectSetup(fh C.int, mirror *C.int64_t, words **C.uint64_t, max C.int, fd *C.int) (n C.int) {
	defer guard(int(fh), new(C.int))
	f, err := fileOf(fh)
	if err != nil {
		return -1
	}
	d, ws, ok := f.ExportDirect((*atomic.Int64)(unsafe.Pointer(mirror)))
	if !ok || len(ws) > int(max) {
		return -1
	}
	out := unsafe.Slice(words, int(max))
	for i, w := range ws {
		out[i] = (*C.uint64_t)(unsafe.Pointer(w))
	}
	*fd = C.int(d)
	return C.int(len(ws))
}

// dlgLeaseSetup lets direct.c make fh's lease writes itself
// (client.File.ExportLease): it sets *lim to the file's lease threshold,
// *far to that of a far write (0: none) and, when shortest (the shortest
// extent of the write at hand) reaches either, *fd to the backend file
// opened for writing, whose writes direct.c counts
// in counters (C memory, three int64s, kept until after dlgClose). It
// returns client.LeaseReady, LeaseLater (below the threshold: ask again
// for a longer write) or LeaseNever.
//
//export dlgLeaseSetup
func dlgLeaseSetup(fh C.int, shortest C.int64_t, counters *C.int64_t, lim, far *C.int64_t, fd *C.int) (state C.int) {
	state = client.LeaseNever
	defer guard(int(fh), new(C.int))
	f, err := fileOf(fh)
	if err != nil {
		return client.LeaseNever
	}
	d, l, fa, st := f.ExportLease(int64(shortest), (*[3]atomic.Int64)(unsafe.Pointer(counters)))
	*lim, *far, *fd = C.int64_t(l), C.int64_t(fa), C.int(d)
	return C.int(st)
}

//export dlgIO
func dlgIO(fh C.int, write C.int, mem *C.delegate_iov, nmem C.int64_t, ext *C.delegate_extent, next C.int64_t,
	opts *C.delegate_io_opts, nbytes *C.int64_t) (rc C.int) {
	defer guard(int(fh), &rc)
	f, err := fileOf(fh)
	if err != nil {
		return fail(noHandle, err)
	}
	ms, es, err := lists(mem, nmem, ext, next)
	if err != nil {
		return fail(int(fh), err)
	}
	var n int64
	if write != 0 {
		n, err = f.Write(ms, es, ioOpts(opts))
	} else {
		n, err = f.Read(ms, es, ioOpts(opts))
	}
	if nbytes != nil {
		*nbytes = C.int64_t(n)
	}
	return fail(int(fh), err)
}

//export dlgIIO
func dlgIIO(fh C.int, write C.int, mem *C.delegate_iov, nmem C.int64_t, ext *C.delegate_extent, next C.int64_t,
	opts *C.delegate_io_opts, req *C.int) (rc C.int) {
	defer guard(int(fh), &rc)
	f, err := fileOf(fh)
	if err != nil {
		return fail(noHandle, err)
	}
	if req == nil {
		return fail(int(fh), wire.Errorf(wire.EINVAL, "NULL request pointer"))
	}
	ms, es, err := lists(mem, nmem, ext, next)
	if err != nil {
		return fail(int(fh), err)
	}
	var r *client.Request
	if write != 0 {
		r, err = f.IWrite(ms, es, ioOpts(opts))
	} else {
		r, err = f.IRead(ms, es, ioOpts(opts))
	}
	if err != nil {
		return fail(int(fh), err)
	}
	*req = C.int(addEntry(&entry{r: r}))
	return C.DELEGATE_OK
}

func requestOf(h C.int) (*client.Request, error) {
	if e := lookup(int(h)); e != nil && e.r != nil {
		return e.r, nil
	}
	return nil, wire.Errorf(wire.EBADF, "bad request handle %d", int(h))
}

//export dlgTest
func dlgTest(req C.int, done *C.int, nbytes *C.int64_t) (rc C.int) {
	defer guard(int(req), &rc)
	r, err := requestOf(req)
	if err != nil {
		return fail(noHandle, err)
	}
	d, n, err := r.Test()
	if done != nil {
		*done = 0
		if d {
			*done = 1
		}
	}
	if nbytes != nil {
		*nbytes = C.int64_t(n)
	}
	return fail(int(req), err)
}

//export dlgWait
func dlgWait(req C.int, nbytes *C.int64_t) (rc C.int) {
	defer guard(int(req), &rc)
	r, err := requestOf(req)
	if err != nil {
		return fail(noHandle, err)
	}
	n, err := r.Wait()
	if nbytes != nil {
		*nbytes = C.int64_t(n)
	}
	return fail(int(req), err)
}

//export dlgWaitFor
func dlgWaitFor(req C.int, us C.int64_t, done *C.int, nbytes *C.int64_t) (rc C.int) {
	defer guard(int(req), &rc)
	r, err := requestOf(req)
	if err != nil {
		return fail(noHandle, err)
	}
	d, n, err := r.WaitFor(time.Duration(max(0, int64(us))) * time.Microsecond)
	if done != nil {
		*done = 0
		if d {
			*done = 1
		}
	}
	if nbytes != nil {
		*nbytes = C.int64_t(n)
	}
	return fail(int(req), err)
}

//export dlgRequestFree
func dlgRequestFree(req C.int) (rc C.int) {
	defer guard(noHandle, &rc)
	r, err := requestOf(req)
	if err != nil {
		return fail(noHandle, err)
	}
	r.Wait()
	remove(int(req))
	return C.DELEGATE_OK
}

//export dlgSync
func dlgSync(fh C.int) (rc C.int) {
	defer guard(int(fh), &rc)
	f, err := fileOf(fh)
	if err != nil {
		return fail(noHandle, err)
	}
	return fail(int(fh), f.Sync())
}

// dlgFlush is delegate_flush, named by the C API (and MPI's habit): it
// waits for the servers' acknowledgements (client.File.WaitAcked); nothing
// is flushed to the backend.
//
//export dlgFlush
func dlgFlush(fh C.int) (rc C.int) {
	defer guard(int(fh), &rc)
	f, err := fileOf(fh)
	if err != nil {
		return fail(noHandle, err)
	}
	return fail(int(fh), f.WaitAcked())
}

//export dlgGetSize
func dlgGetSize(fh C.int, size *C.int64_t) (rc C.int) {
	defer guard(int(fh), &rc)
	f, err := fileOf(fh)
	if err != nil {
		return fail(noHandle, err)
	}
	if size == nil {
		return fail(int(fh), wire.Errorf(wire.EINVAL, "NULL size pointer"))
	}
	n, err := f.Size()
	*size = C.int64_t(n)
	return fail(int(fh), err)
}

//export dlgSetSize
func dlgSetSize(fh C.int, size C.int64_t, alloc C.int) (rc C.int) {
	defer guard(int(fh), &rc)
	f, err := fileOf(fh)
	if err != nil {
		return fail(noHandle, err)
	}
	if alloc != 0 {
		return fail(int(fh), f.Preallocate(int64(size)))
	}
	return fail(int(fh), f.SetSize(int64(size)))
}

//export dlgDelete
func dlgDelete(path *C.char) (rc C.int) {
	defer guard(noHandle, &rc)
	if path == nil {
		return fail(noHandle, wire.Errorf(wire.EINVAL, "delegate_delete: NULL path"))
	}
	cl, err := theClient()
	if err != nil {
		return fail(noHandle, err)
	}
	return fail(noHandle, cl.Delete(context.Background(), C.GoString(path)))
}

//export dlgSetHint
func dlgSetHint(fh C.int, key, value *C.char) (rc C.int) {
	defer guard(int(fh), &rc)
	f, err := fileOf(fh)
	if err != nil {
		return fail(noHandle, err)
	}
	if key == nil || value == nil {
		return fail(int(fh), wire.Errorf(wire.EINVAL, "NULL hint key or value"))
	}
	return fail(int(fh), f.SetHint(C.GoString(key), C.GoString(value)))
}

//export dlgGetHint
func dlgGetHint(fh C.int, key *C.char, buf *C.char, n C.size_t) (rc C.int) {
	h := int(fh)
	defer guard(h, &rc)
	if key == nil {
		return fail(h, wire.Errorf(wire.EINVAL, "NULL hint key"))
	}
	var v string
	var err error
	if h == noHandle {
		cfg := client.DefaultConfig()
		if c, e := client.FromEnv(); e == nil {
			cfg = c
		}
		hs := cfg.DefaultHints()
		v, err = hs.Get(C.GoString(key))
	} else {
		var f *client.File
		if f, err = fileOf(fh); err != nil {
			return fail(noHandle, err)
		}
		v, err = f.Hint(C.GoString(key))
	}
	if err != nil {
		return fail(h, asInval(err))
	}
	return copyOut(v, buf, n)
}

func asInval(err error) error {
	var we *wire.Error
	if errors.As(err, &we) {
		return err
	}
	return wire.Errorf(wire.EINVAL, "%w", err)
}

//export dlgHintName
func dlgHintName(i C.int, buf *C.char, n C.size_t) C.int {
	name, ok := client.HintName(int(i))
	if !ok {
		return C.DELEGATE_ENOENT
	}
	return copyOut(name, buf, n)
}

//export dlgSetAtomic
func dlgSetAtomic(fh C.int, on C.int) (rc C.int) {
	defer guard(int(fh), &rc)
	f, err := fileOf(fh)
	if err != nil {
		return fail(noHandle, err)
	}
	return fail(int(fh), f.SetAtomic(on != 0))
}

//export dlgCounter
func dlgCounter(fh C.int, key *C.char, op C.int, value C.int64_t, old *C.int64_t) (rc C.int) {
	defer guard(int(fh), &rc)
	f, err := fileOf(fh)
	if err != nil {
		return fail(noHandle, err)
	}
	if key == nil || op < 0 || op > 2 {
		return fail(int(fh), wire.Errorf(wire.EINVAL, "counter: NULL key or operation %d", int(op)))
	}
	v, err := f.Counter(C.GoString(key), uint8(op), int64(value))
	if old != nil {
		*old = C.int64_t(v)
	}
	return fail(int(fh), err)
}

//export dlgSetLogFD
func dlgSetLogFD(fd C.int) C.int {
	setLogFD(int(fd))
	return C.DELEGATE_OK
}
