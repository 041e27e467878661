package client

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/delegate-io/delegate/internal/route"
	"github.com/delegate-io/delegate/internal/transport"
	"github.com/delegate-io/delegate/internal/wire"
)

// Client is a connection to every server of a job.
type Client struct {
	cfg      Config
	log      *slog.Logger
	listHash uint64

	mu struct {
		sync.Mutex
		sessions []*session
		files    map[*File]struct{}
		paths    map[string]int // open Files per path
		closed   bool
	}
	pending           *atomic.Int64 // the fence word (fence.go)
	shared            *atomic.Int64 // paths open more than once
	descRaw, descWire atomic.Int64
	// corkGen counts the ring slots corked batches took or grew: a write
	// or read waiting for ring space sends the corked batches again when
	// it changed (shm.Ring.AllocKick), since one corked by another thread
	// after the waiter sent them would hold the space it waits for.
	corkGen       atomic.Int64
	directReads   atomic.Int64 // reads served from the backend file directly
	bulkReadParts atomic.Int64 // Stats.BulkReadParts
	leaseWrites   atomic.Int64 // writes made to the backend file directly (lease.go)
	leaseSyncs    atomic.Int64 // fsyncs of the backend file after lease writes
	// leaseTurns holds a token per nonblocking lease write in its pwrite
	// (lease.go, File.writeLeaseBackground): at most GOMAXPROCS-1 of them.
	leaseTurns chan struct{}
	leases     leaseQueue // nonblocking lease writes posted (lease.go)
}

// New connects to every server in cfg.Servers. It fails, naming the
// address, if any server does not answer within cfg.Timeout.
func New(ctx context.Context, cfg Config) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, wire.Errorf(wire.ECONFIG, "delegate: %w", err)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cl := &Client{cfg: cfg, log: log, listHash: route.ListHash(transport.Strings(cfg.Servers)),
		leaseTurns: make(chan struct{}, max(1, runtime.GOMAXPROCS(0)-1))}
	cl.mu.files = map[*File]struct{}{}
	cl.mu.paths = map[string]int{}
	cl.pending, cl.shared = cfg.Pending, cfg.Shared
	if cl.pending == nil {
		cl.pending = new(atomic.Int64)
	}
	if cl.shared == nil {
		cl.shared = new(atomic.Int64)
	}
	sessions := make([]*session, len(cfg.Servers))
	errs := make([]error, len(cfg.Servers))
	var wg sync.WaitGroup
	for i := range cfg.Servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sessions[i], errs[i] = dial(ctx, cl, i)
		}()
	}
	wg.Wait()
	err := firstError(errs)
	if err == nil {
		err = checkIdentities(cfg.Servers, sessions)
	}
	if err != nil {
		for _, s := range sessions {
			if s != nil {
				s.close()
			}
		}
		return nil, err
	}
	cl.mu.sessions = sessions
	return cl, nil
}

func firstError(errs []error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// sessions returns a live session for every server, reconnecting to those
// whose session died. Files opened before keep their dead session (and its
// shared memory, mapping) and fail with File.lostErr. The dials happen
// outside the lock (they are network I/O, and the dead sessions' loops may
// need the lock); if another caller replaced a session meanwhile, its new
// session wins and this one's is closed. Replaced sessions are closed
// after the lock too.
func (cl *Client) sessions(ctx context.Context) ([]*session, error) {
	cl.mu.Lock()
	if cl.mu.closed {
		cl.mu.Unlock()
		return nil, ErrClosed
	}
	var stale []int
	for i, s := range cl.mu.sessions {
		if s.alive() != nil {
			stale = append(stale, i)
		}
	}
	if len(stale) == 0 {
		out := append([]*session(nil), cl.mu.sessions...)
		cl.mu.Unlock()
		return out, nil
	}
	old := make(map[int]*session, len(stale))
	for _, i := range stale {
		old[i] = cl.mu.sessions[i]
	}
	cl.mu.Unlock()

	fresh := make(map[int]*session, len(stale))
	var dialErr error
	for _, i := range stale {
		ns, err := dial(ctx, cl, i)
		if err != nil {
			dialErr = err
			break
		}
		fresh[i] = ns
	}
	var drop []*session // closed after the lock
	defer func() {
		for _, s := range drop {
			s.close()
		}
	}()
	cl.mu.Lock()
	defer cl.mu.Unlock()
	if dialErr == nil && !cl.mu.closed {
		// The new sessions must agree with the others on who is who
		// (identity.go): a restarted server that now answers at another
		// entry's address is not taken.
		cand := append([]*session(nil), cl.mu.sessions...)
		for i, ns := range fresh {
			if cand[i] == old[i] {
				cand[i] = ns
			}
		}
		if dialErr = checkIdentities(cl.cfg.Servers, cand); dialErr != nil {
			for _, ns := range fresh {
				drop = append(drop, ns)
			}
			fresh = nil
		}
	}
	for i, ns := range fresh {
		if cl.mu.closed || cl.mu.sessions[i] != old[i] {
			drop = append(drop, ns) // closed meanwhile, or replaced by another caller
			continue
		}
		s := old[i]
		s.log.Info("reconnected", "old", s.alive())
		s.replaced.Store(true)
		drop = append(drop, s)
		cl.mu.sessions[i] = ns
	}
	if cl.mu.closed {
		return nil, ErrClosed
	}
	if dialErr != nil {
		return nil, dialErr
	}
	return append([]*session(nil), cl.mu.sessions...), nil
}

// Close closes every open file (each server writes the file's buffered
// data to the backend: a flush) and every session.
func (cl *Client) Close() error {
	cl.mu.Lock()
	if cl.mu.closed {
		cl.mu.Unlock()
		return nil
	}
	files := make([]*File, 0, len(cl.mu.files))
	for f := range cl.mu.files {
		files = append(files, f)
	}
	cl.mu.Unlock()
	var errs []error
	for _, f := range files {
		errs = append(errs, f.Close())
	}
	cl.mu.Lock()
	cl.mu.closed = true
	sessions := cl.mu.sessions
	cl.mu.Unlock()
	cl.leases.wg.Wait() // done: every file settled its requests
	for _, s := range sessions {
		s.close()
	}
	return errors.Join(errs...)
}

// countWire adds an encoder's byte counts to the client's.
func (cl *Client) countWire(enc *wire.Encoder) {
	cl.descRaw.Add(enc.Counts.DescRaw)
	cl.descWire.Add(enc.Counts.DescWire)
	enc.Counts = wire.Counters{}
}

// AbsPath resolves path against the working directory and cleans it, as
// every path the servers see must be.
func AbsPath(path string) (string, error) {
	if path == "" {
		return "", wire.Errorf(wire.EINVAL, "empty path")
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", wire.Errorf(wire.EINVAL, "path %s: %w", path, err)
	}
	return abs, nil
}

// Open opens path on every server. hints are delegate_* keys and values.
func (cl *Client) Open(ctx context.Context, path string, flags, perm uint32, hints map[string]string) (*File, error) {
	abs, err := AbsPath(path)
	if err != nil {
		return nil, err
	}
	switch flags & (wire.ORdonly | wire.OWronly | wire.ORdwr) {
	case wire.ORdonly, wire.OWronly, wire.ORdwr:
	default:
		return nil, wire.Errorf(wire.EINVAL, "open %s: flags %#x need exactly one of read-only, write-only, read-write", abs, flags)
	}
	if flags&^(wire.ORdonly|wire.OWronly|wire.ORdwr|wire.OCreat|wire.OExcl) != 0 {
		return nil, wire.Errorf(wire.EINVAL, "open %s: unknown flags %#x", abs, flags)
	}
	h := cl.cfg.DefaultHints()
	for k, v := range hints {
		if err := h.Set(k, v, true); err != nil {
			return nil, fmt.Errorf("open %s: %w", abs, err)
		}
	}
	h.RegionSize = route.FitRegion(route.Fit{Explicit: h.explicitRegion(), Default: h.RegionSize, Servers: len(cl.cfg.Servers),
		Hint: route.Stripes{Unit: h.StripeUnit, Count: int(h.StripeFactor)}, Backend: backendStripes(filepath.Dir(abs))})
	ss, err := cl.sessions(ctx)
	if err != nil {
		return nil, err
	}
	f := &File{cl: cl, path: abs, flags: flags, sess: ss, ids: make([]uint64, len(ss)), slots: make([]uint32, len(ss)), inodes: make([]fileID, len(ss)),
		rule: route.Rule{Key: route.FileKey(abs), RegionSize: h.RegionSize, Servers: len(ss)}}
	f.mu.hints = h
	f.mu.corked = make([]*call, len(ss))
	f.idle.L = &f.mu
	// Each session keeps its shared memory mapped while f is open on it.
	for _, s := range ss {
		if err := s.attach(f); err != nil {
			f.detach()
			return nil, err
		}
	}
	// The first server creates (and checks EXCL); the others open what it
	// created.
	open := func(i int, fl uint32) (*call, error) {
		c := newCall(wire.TOpen, &wire.Open{Path: abs, Flags: fl, Perm: perm, RegionSize: h.RegionSize})
		err := ss[i].roundTrip(c)
		f.ids[i], f.slots[i], f.inodes[i] = c.rep.File, c.rep.Slot, fileID{dev: c.rep.Dev, ino: c.rep.Ino}
		return c, err
	}
	if _, err := open(0, flags); err != nil {
		f.detach()
		return nil, err
	}
	if len(ss) > 1 {
		errs := make([]error, len(ss))
		var wg sync.WaitGroup
		for i := 1; i < len(ss); i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, errs[i] = open(i, flags&^(wire.OCreat|wire.OExcl))
			}()
		}
		wg.Wait()
		if err := firstError(errs); err != nil {
			f.closeOn(func(i int) bool { return errs[i] == nil }, func(int) bool { return true })
			f.detach()
			return nil, err
		}
	}
	cl.mu.Lock()
	cl.mu.files[f] = struct{}{}
	if cl.mu.paths[abs]++; cl.mu.paths[abs] == 2 {
		cl.shared.Add(1)
	}
	cl.mu.Unlock()
	return f, nil
}

// Delete removes path. Every server drops what it buffers for the file;
// one of them unlinks it.
func (cl *Client) Delete(ctx context.Context, path string) error {
	abs, err := AbsPath(path)
	if err != nil {
		return err
	}
	ss, err := cl.sessions(ctx)
	if err != nil {
		return err
	}
	calls := make([]*call, len(ss))
	for i, s := range ss {
		calls[i] = newCall(wire.TDelete, &wire.Delete{Path: abs})
		s.submit(calls[i])
	}
	var errNoEnt, other error
	ok := false
	for _, c := range calls {
		switch err := c.wait(); {
		case err == nil:
			ok = true
		case errors.Is(err, wire.ENOENT):
			errNoEnt = err
		default:
			other = err
		}
	}
	switch {
	case other != nil:
		return other
	case ok:
		return nil
	}
	return errNoEnt
}

// Stats is what the client counted.
type Stats struct {
	DescRaw, DescWire int64
	DirectReads       int64
	LeaseWrites       int64 // writes the client made to the backend itself
	LeaseSyncs        int64 // fsyncs of its own after them (Sync)
	// BulkReadParts: parts of reads beyond the first, each on a bulk
	// connection of its own (a read cut over k connections counts k-1).
	BulkReadParts int64
	Pending       int64 // the fence word: what Fence would wait for
}

// Stats returns the client's counters.
func (cl *Client) Stats() Stats {
	return Stats{DescRaw: cl.descRaw.Load(), DescWire: cl.descWire.Load(), DirectReads: cl.directReads.Load(),
		LeaseWrites: cl.leaseWrites.Load(), LeaseSyncs: cl.leaseSyncs.Load(), BulkReadParts: cl.bulkReadParts.Load(),
		Pending: cl.pending.Load()}
}

// ServerStats asks server i for its statistics snapshot (msgpack).
func (cl *Client) ServerStats(ctx context.Context, i int) ([]byte, error) {
	ss, err := cl.sessions(ctx)
	if err != nil {
		return nil, err
	}
	if i < 0 || i >= len(ss) {
		return nil, fmt.Errorf("no server %d", i)
	}
	c := newCall(wire.TStats, &wire.Stats{})
	if err := ss[i].roundTrip(c); err != nil {
		return nil, err
	}
	return c.data, nil
}
