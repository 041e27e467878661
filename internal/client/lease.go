package client

import (
	"fmt"
	"math"
	"os"
	"sync"
	"sync/atomic"

	"github.com/delegate-io/delegate/internal/wire"
	"golang.org/x/sys/unix"
)

// Lease writes: a large blocking write goes straight to the backend file,
// written by the client itself, when the servers' control page words say
// that no server holds dirty data of the file and this client has nothing
// of the file in flight: the condition of a direct read (direct.go), which
// is the lease. One copy per byte (the kernel's, into the page cache), as
// ufs: makes, instead of two or three through the ring and a server thread.
//
// Why the clean words are enough (README, Semantics; ARCHITECTURE.md):
//   - Every write that happens-before this one was acknowledged before the
//     message that orders it left (the fence), and its server's word said
//     dirty from before that acknowledgement until its bytes were on the
//     backend and its journal slots released (server file.publishLocked).
//     Clean now: they are all on the backend, and nothing older can be
//     flushed or replayed over these bytes later.
//   - A write ordered after this one goes through a server and is flushed
//     later: it wins. A read ordered after it (through a server, which
//     reads the backend beneath its buffer, or direct) sees these bytes:
//     every server of the file has shared memory with this client, so it
//     is on this host and reads the same page cache.
//   - A concurrent write may land before or after, which MPI allows for
//     overlapping bytes; a server's flush writes only the bytes its buffer
//     holds (extent.Index.Runs: never a read-modify-write of a hole), so it
//     cannot put stale bytes over a concurrent write beside its own.
//
// Only independent, non-atomic writes whose every extent is at least
// Config.LeaseMin bytes (the server's --direct threshold by default:
// writes it would not buffer, so no coalescing is lost), or on a local
// file system Config.LeaseMinLocal (32 KiB: there the page cache gathers
// pieces that long as well as a server, at a third of the copies). A nonblocking
// write (IWrite) may lease too: it runs on its own goroutine, so its
// pwrite overlaps the caller's computation as ROMIO's ufs: aio does, and
// it needs one copy instead of the ring's plus the server's. Its ordering
// is a blocking write's from the moment it is posted: what happened
// before the post is on the backend (the words), what the program orders
// after it waits for its completion, and what is concurrent with it must
// not overlap it (MPI).

// leaseOK reports whether this write may go straight to the backend now.
// When only this client's own writes in flight stand in the way, it waits
// for their acknowledgements first (a round trip per server), so that one
// write through a server does not keep every later one there; not while a
// nonblocking request is in flight (an IWrite counts itself in reqs): then
// it goes through the servers.
func (f *File) leaseOK(ext []Extent, st *opState, o *IOOpts) bool {
	return f.leaseCheck(ext, st, o, true)
}

// leaseCheck is leaseOK; without mayWait it never waits for a round trip
// (it says no where leaseOK would wait).
func (f *File) leaseCheck(ext []Extent, st *opState, o *IOOpts, mayWait bool) bool {
	if o.Coll != nil || st.flags&(wire.IOAtomic|wire.IOColl) != 0 || !f.leaseQuick(ext, o) {
		return false
	}
	f.mu.Lock()
	for _, c := range f.mu.corked {
		if c != nil {
			f.mu.Unlock()
			return false // a corked batch is older: it goes first, through its server
		}
	}
	f.mu.Unlock()
	// The words first: a client without shared memory with every server
	// (another host) never opens the backend file for writing.
	if !f.wordsClean() || !f.leaseFileOK() {
		return false
	}
	// Another handle of a path open twice in this client is not in this
	// file's gate: then nothing of this client may be in flight at all.
	if f.cl.shared.Load() != 0 && f.cl.pending.Load() != 0 {
		return false
	}
	if f.directOK(st.flags) {
		return true
	}
	if !f.wordsClean() {
		return false // buffered data somewhere: it stays the servers' to order
	}
	f.mu.Lock()
	wait := mayWait && f.mu.writes > 0 && f.mu.markers == 0 && f.mu.reqs == 0 && f.directGateLocked()&mirrorBlocked == 0
	f.mu.Unlock()
	if !wait {
		return false
	}
	// The servers answer in order: once they answered this, every earlier
	// write of f is acknowledged (WaitAcked, without settling requests).
	if _, err := f.each(nil, f.fileOp(wire.TStat)); err != nil {
		return false // reported by the write that follows, or the next call
	}
	return f.directOK(st.flags)
}

// wordsClean reports whether every server's word says clean.
func (f *File) wordsClean() bool {
	for i, s := range f.sess {
		if !s.slotClean(f.slots[i]) {
			return false
		}
	}
	return true
}

// leaseFileOK opens the backend file for lease writes, once (outside f.mu:
// an open is I/O), and reports whether it is open. A descriptor of another
// file than the servers' (the path was replaced: sameFile) is closed, and
// the file's writes go through the servers from then on.
func (f *File) leaseFileOK() bool {
	f.mu.Lock()
	ok, tried := f.mu.lease != nil, f.mu.noLease || f.mu.closed
	f.mu.Unlock()
	if ok || tried {
		return ok
	}
	d, err := os.OpenFile(f.path, os.O_WRONLY, 0)
	if err == nil && !f.sameFile(d) {
		d.Close()
		d, err = nil, errReplaced
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case err != nil || f.mu.closed:
		f.mu.noLease = true
	case f.mu.lease == nil:
		f.mu.lease, d = d, nil
	}
	if d != nil {
		d.Close()
	}
	return f.mu.lease != nil
}

// writeLease writes mem to ext in the backend file. Its errors (ENOSPC,
// EIO) are this write's: nothing is deferred.
func (f *File) writeLease(mem [][]byte, ext []Extent) (int64, error) {
	f.mu.Lock()
	d := f.mu.lease
	f.mu.Unlock()
	if d == nil {
		return 0, ErrClosed
	}
	// After the bytes (also partial ones): a Sync racing this write must
	// not clear the mark before they are there.
	defer func() {
		f.mu.Lock()
		f.mu.leased = true // Sync fsyncs d
		f.mu.Unlock()
	}()
	cur := memCursor{mem: mem}
	var done int64
	for _, e := range ext {
		off, n := e.Off, e.Len
		for n > 0 {
			seg := cur.next(n)
			m, err := d.WriteAt(seg, off) // the byte's one copy, into the page cache
			done += int64(m)
			if err != nil {
				return done, fmt.Errorf("write %s: %w", f.path, err)
			}
			off, n = off+int64(m), n-int64(m)
		}
	}
	f.cl.leaseWrites.Add(1)
	f.leaseWrites.Add(1)
	f.leaseBytes.Add(done)
	return done, nil
}

// writeLeaseBackground is writeLease for a nonblocking request's
// goroutine: it waits for a turn first (Client.leaseTurns), so that at most
// GOMAXPROCS-1 of the process's nonblocking lease writes are in pwrite at
// once. A goroutine in a long pwrite keeps its P (the Go runtime's
// processor) until the runtime's monitor takes it away, 20 us to 10 ms
// later, and then starts another thread for the next goroutine: with 16
// requests posted at once, every P of the rank was held by a pwrite, the
// caller's next call into Go (the next post, a wait) had to wait for the
// monitor, and a dozen threads wrote the one file at once, which the
// kernel serializes (the inode's lock, whose waiters spin while its
// holder runs) on cores the computing ranks need. ROMIO's ufs: has one
// aio thread per descriptor, which writes its requests in turn; so does
// this, per process. The turn is taken after leaseOK: what the lease
// rests on was checked then, and waiting for a turn is no different from
// the goroutine being scheduled late (the request's ordering is fixed
// when it is posted, lease.go's header).
func (f *File) writeLeaseBackground(mem [][]byte, ext []Extent) (int64, error) {
	if leaseTurnHook != nil {
		leaseTurnHook(false)
	}
	f.cl.leaseTurns <- struct{}{}
	defer func() { <-f.cl.leaseTurns }()
	if leaseTurnHook != nil {
		leaseTurnHook(true)
	}
	return f.writeLease(mem, ext)
}

// A nonblocking write that may lease when it is posted does not get a
// goroutine of its own: it joins the process's lease queue, which one
// goroutine works through in order (leaseQueue.run), as ROMIO's ufs: aio
// thread does with its descriptor's requests. A goroutine per request cost
// the caller a thread wake-up per post (the new goroutine's P is handed to
// another thread when the C caller returns), and each woken thread could
// preempt the posting rank on the cores it shares with the computing ranks
// and their pwrites: the checkpoint's 16 posts took from 0.5 to 5 ms, and
// up to 20 ms, on one rank in two. Now the first post starts the worker
// and the others append to its queue while it writes.
type leaseQueue struct {
	mu      sync.Mutex
	jobs    []leaseJob
	running bool           // a worker goroutine is working through jobs
	wg      sync.WaitGroup // the worker: Client.Close waits for it
}

type leaseJob struct {
	f   *File
	mem [][]byte
	ext []Extent
	r   *Request
}

// iwriteLease posts a nonblocking write as a lease write if it may lease
// now without waiting (leaseCheck), and reports whether it did. An earlier
// write's failure (begin) goes to the request, as its goroutine would
// report it.
func (f *File) iwriteLease(mem [][]byte, ext []Extent, o IOOpts) (*Request, bool) {
	if o.Coll != nil || f.flags&(wire.OWronly|wire.ORdwr) == 0 {
		return nil, false
	}
	total, err := checkLists(f.path, mem, ext)
	if err != nil || total == 0 {
		return nil, false
	}
	if !f.leaseQuick(ext, &o) {
		return nil, false
	}
	st, err := f.begin("write", &o)
	r := &Request{done: make(chan struct{})}
	if err != nil {
		r.err = err
		close(r.done)
		return r, true
	}
	if !f.leaseCheck(ext, &st, &o, false) {
		return nil, false // begin reported nothing (it returned no error): nothing lost
	}
	f.mu.Lock()
	f.mu.reqs++
	f.mu.Unlock()
	q := &f.cl.leases
	q.mu.Lock()
	// The caller's lists may be reused as soon as we return.
	q.jobs = append(q.jobs, leaseJob{f: f, mem: append([][]byte(nil), mem...), ext: append([]Extent(nil), ext...), r: r})
	start := !q.running
	q.running = true
	if start {
		q.wg.Add(1)
	}
	q.mu.Unlock()
	if start {
		go q.run()
	}
	return r, true
}

// leaseQuick is the part of leaseCheck that needs no lock: every extent
// long enough, lease writes on.
func (f *File) leaseQuick(ext []Extent, o *IOOpts) bool {
	if f.cl.cfg.LeaseMin <= 0 || o.atomic {
		return false
	}
	short := int64(math.MaxInt64)
	for _, e := range ext {
		short = min(short, e.Len)
	}
	// No file system lookup for pieces too short for any threshold
	// (small records never cost one).
	if loc := f.cl.cfg.LeaseMinLocal; short < f.cl.cfg.LeaseMin && (loc <= 0 || short < loc) {
		return false
	}
	return short >= f.leaseMin()
}

// run writes the queued jobs in order, each as a nonblocking lease write
// (with its turn), completes their requests, and returns once the queue
// is empty.
func (q *leaseQueue) run() {
	defer q.wg.Done()
	for {
		q.mu.Lock()
		if len(q.jobs) == 0 {
			q.running = false
			q.mu.Unlock()
			return
		}
		j := q.jobs[0]
		q.jobs[0] = leaseJob{}
		q.jobs = q.jobs[1:]
		q.mu.Unlock()
		j.r.n, j.r.err = j.f.writeLeaseBackground(j.mem, j.ext)
		j.f.requestDone(j.r)
	}
}

// leaseTurnHook, when set (tests), runs on a nonblocking lease write's
// goroutine before it waits for its turn (false) and once it has it (true).
var leaseTurnHook func(turn bool)

// syncLease fsyncs the backend file if a lease write happened since the
// last sync: the servers' fsync covers their own writes, and this one the
// client's (on a local file system either covers both; on others an fsync
// may cover only what went through its descriptor).
func (f *File) syncLease() error {
	f.mu.Lock()
	d := f.mu.lease
	leased := f.mu.leased
	if c := f.mu.cLease; c != nil && c[0].Swap(0) != 0 {
		leased = true // the C library wrote through d (ExportLease)
	}
	if !leased || d == nil {
		f.mu.Unlock()
		return nil
	}
	f.mu.leased = false
	f.mu.Unlock()
	f.cl.leaseSyncs.Add(1)
	if err := d.Sync(); err != nil {
		f.mu.Lock()
		f.mu.leased = true
		f.mu.Unlock()
		return fmt.Errorf("sync %s: %w", f.path, err)
	}
	return nil
}

// closeLease closes the backend file of lease writes, after counting the
// C library's (they are in the close's summary and the client's Stats
// from then on; the C memory is freed after Close).
func (f *File) closeLease() {
	f.mu.Lock()
	d := f.mu.lease
	f.mu.lease, f.mu.noLease = nil, true
	if c := f.mu.cLease; c != nil {
		n := c[1].Swap(0)
		f.leaseWrites.Add(n)
		f.leaseBytes.Add(c[2].Swap(0))
		f.cl.leaseWrites.Add(n)
		f.mu.cLease = nil
	}
	f.mu.Unlock()
	if d != nil {
		d.Close()
	}
}

// Results of ExportLease.
const (
	LeaseNever = -1 // f never lease-writes
	LeaseLater = 0  // not for this write: its shortest extent is below the threshold
	LeaseReady = 1  // the descriptor is open and exported
)

// ExportLease lets the C library (libdelegate/direct.c) make f's lease
// writes itself, without the call into Go (the C->Go call, the Go
// runtime's system call bookkeeping, these locks: 2-4 us more than ufs:'s
// pwrite for a 47,008-byte write, measured): it reports f's lease
// threshold (leaseMin), the threshold of a far write (leaseFar: 0, none)
// and, when a write whose shortest extent (shortest) reaches either,
// opens the backend file for writing and returns its descriptor. counters
// (C memory, freed after Close) take the C writes: [0] is set after each
// one (the next Sync fsyncs the descriptor), [1] and [2] count them and
// their bytes (folded into f's counts by Close). The C side writes only
// when the direct-read conditions hold (ExportDirect's word and the
// servers' words, in that order), no path is open twice with a write in
// flight (Config.Shared and Pending), the call is an independent one and
// every extent is at least lim, or it is one extent of at least far that
// lies far from the handle's previous write (C keeps where that ended;
// nothing staged or unacknowledged in the process): leaseCheck's rule for
// a blocking write, without its wait for acknowledgements (such a write
// comes to Go, which may wait), and with the far rule, which only C
// applies.
func (f *File) ExportLease(shortest int64, counters *[3]atomic.Int64) (fd int, lim, far int64, state int) {
	lim = f.leaseMin()
	if lim <= 0 || f.flags&(wire.OWronly|wire.ORdwr) == 0 {
		return -1, lim, 0, LeaseNever
	}
	far = f.leaseFar(lim)
	if shortest < lim && (far == 0 || shortest < far) {
		return -1, lim, far, LeaseLater
	}
	if !f.leaseFileOK() {
		return -1, lim, far, LeaseNever
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.mu.closed || f.mu.lease == nil {
		return -1, lim, far, LeaseNever
	}
	f.mu.cLease = counters
	return int(f.mu.lease.Fd()), lim, far, LeaseReady
}

// leaseFar is the smallest extent of a far lease write on f
// (Config.LeaseMinFar) below its threshold lim, 0 when there is none:
// only on a local file system with LeaseMinLocal on.
func (f *File) leaseFar(lim int64) int64 {
	far := f.cl.cfg.LeaseMinFar
	if far <= 0 || far >= lim || f.cl.cfg.LeaseMinLocal <= 0 || !f.onLocalFS() {
		return 0
	}
	return far
}

// leaseMin is the smallest extent of a lease write on f: the client's
// LeaseMin, raised to the largest direct threshold its servers said in
// their hello (a write a server would buffer keeps its coalescing), or
// on a local file system LeaseMinLocal (Config). 0: no lease writes.
func (f *File) leaseMin() int64 {
	lim := f.cl.cfg.LeaseMin
	if lim <= 0 {
		return 0
	}
	for _, s := range f.sess {
		lim = max(lim, s.direct)
	}
	if loc := f.cl.cfg.LeaseMinLocal; loc > 0 && loc < lim && f.onLocalFS() {
		return loc
	}
	return lim
}

// File system kinds of File.fsKind.
const (
	fsUnknown int32 = iota // not looked up yet
	fsLocal                // localFS
	fsOther                // any other, or the lookup failed
)

// onLocalFS reports whether f's backend file is on a local file system,
// looked up once (a statfs of the path: the same file the lease writes
// open; a client on another host never lease-writes, whatever it finds).
func (f *File) onLocalFS() bool {
	switch f.fsKind.Load() {
	case fsLocal:
		return true
	case fsOther:
		return false
	}
	k := fsOther
	var st unix.Statfs_t
	if unix.Statfs(f.path, &st) == nil && localFS(st.Type) {
		k = fsLocal
	}
	f.fsKind.Store(k)
	return k == fsLocal
}

// localFS reports whether a statfs f_type is a file system whose data
// lives in this host's page cache and on its own devices: every writer of
// a file is on this host, so nothing is gained by gathering pieces before
// the kernel does. Network and parallel file systems (NFS, Lustre, GPFS,
// FUSE mounts such as sshfs) and overlays are not: there the servers'
// large ordered runs are the point.
func localFS(t int64) bool {
	switch t {
	case unix.EXT4_SUPER_MAGIC, unix.XFS_SUPER_MAGIC, unix.BTRFS_SUPER_MAGIC, unix.F2FS_SUPER_MAGIC, unix.TMPFS_MAGIC:
		return true
	}
	return false
}
