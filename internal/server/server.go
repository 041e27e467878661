package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"github.com/delegate-io/delegate/internal/stats"
	"log/slog"
	"net"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/delegate-io/delegate/internal/backend"
	"github.com/delegate-io/delegate/internal/extent"
	"github.com/delegate-io/delegate/internal/journal"
	"github.com/delegate-io/delegate/internal/route"
	"github.com/delegate-io/delegate/internal/transport"
)

// Server serves delegate clients. Create it with New, run Serve on one or
// more listeners, stop it with Shutdown (graceful: in-flight requests end,
// buffered data reaches the backend) or Close.
type Server struct {
	cfg      Config
	log      *slog.Logger
	fs       *backend.OS
	files    *fileTable
	listHash uint64
	hostID   string       // transport.HostID, when LocalSocket is set
	id       string       // random per process: the identity a hello reply carries
	*engine               // the per-file engine's shared state (engine.go)
	bulk     bulkRegistry // sessions that may bind bulk connections (bulk.go)

	mu struct {
		sync.Mutex
		listeners map[net.Listener]struct{}
		sessions  map[*session]struct{}
		closed    bool
	}
	adm        admission
	wg         sync.WaitGroup // Serve loops and sessions
	shutdownCh chan struct{}
	closeOnce  sync.Once

	recovery    Recovery // what New recovered from the state directory
	flusherStop chan struct{}
	flusherDone chan struct{}
	trimAt      time.Time // the flusher's: when to trim the journal's free slots (trimSlots)
	stallMark   int64     // the flusher's: budget waits at its last drop decision (dropKeptForMemory)
	stopOnce    sync.Once
	stopReq     chan struct{} // closed when a monitor asks the server to stop
	drainOnce   sync.Once
	drained     chan struct{} // closed once Shutdown has drained every file
	drainErr    error
}

// admission counts the sessions admitted (session.admit): clients (both
// of a pair moving from TCP to the Unix socket, counted once by moving),
// monitors; tcp: admitted TCP client sessions a Unix hello of the same
// client may pair with; log rate-limits the refusal line.
type admission struct {
	sync.Mutex
	clients, monitors, moving int
	tcp                       map[string][]*session
	log                       every
}

// New returns a server for cfg.
func New(cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("server config: %w", err)
	}
	fsys, err := backend.NewOS(cfg.Root)
	if err != nil {
		return nil, fmt.Errorf("server root: %w", err)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg, log: log, fs: fsys, engine: newEngine(&cfg, log), shutdownCh: make(chan struct{}),
		flusherStop: make(chan struct{}), flusherDone: make(chan struct{}), drained: make(chan struct{}),
		stopReq: make(chan struct{})}
	var bfs backend.FS = fsys
	if cfg.Wrap != nil {
		bfs = cfg.Wrap(fsys)
	}
	if cfg.BackendDelay > 0 || cfg.BackendReadDelay > 0 {
		bfs = &backend.DelayFS{FS: bfs, WriteDelay: cfg.BackendDelay, ReadDelay: cfg.BackendReadDelay}
	}
	s.files = newFileTable(s.engine, bfs)
	// A quarter of --buffer keeps chunk buffers for reuse, the rest holds
	// data: a server that allocates fresh chunks for every burst spends
	// half its time in page faults and zeroing (measured with 47,008-byte
	// writes), and together they stay within --buffer.
	// An eighth of it holds transfers (xfermem.go): bulk receive
	// buffers and large inline read results.
	poolChunks := int(cfg.BufferBytes / 4 / cfg.ChunkBytes)
	share := xferShareOf(cfg.BufferBytes)
	limit := cfg.BufferBytes - int64(poolChunks)*cfg.ChunkBytes - share
	if cfg.StateDir != "" {
		// The slots are the buffers, and free ones are kept the same way;
		// a slot's footprint (header page and mark bitmap included) counts
		// where a chunk did. No heap pool: a chunk lands in the heap only
		// when no slot can be had.
		j := journal.Geometry(cfg.ChunkBytes)
		keep := int(cfg.BufferBytes / 4 / j)
		limit = cfg.BufferBytes - int64(keep)*j - share
		if err := s.openJournal(bfs, keep); err != nil {
			fsys.Close()
			return nil, err
		}
	} else {
		s.pool = extent.NewPool(cfg.ChunkBytes, poolChunks)
	}
	s.budget = newBudget(limit, limit*int64(cfg.HighWaterPct)/100, s.kickFlusher)
	s.xferMem = newXferMem(share)
	s.stats.start = time.Now()
	s.budget.sample = s.stats.sampleMemory
	go s.flushLoop()
	if len(cfg.Peers) > 0 {
		s.listHash = route.ListHash(cfg.Peers)
	}
	if cfg.LocalSocket != "" {
		s.hostID = transport.HostID()
	}
	s.id = newServerID()
	s.mu.listeners = map[net.Listener]struct{}{}
	s.mu.sessions = map[*session]struct{}{}
	return s, nil
}

// Accept errors that can pass (EMFILE, ENFILE, ENOBUFS, ...) are retried
// after a pause that doubles from acceptRetryMin up to acceptRetryMax, as
// net/http's Server.Serve does: a server out of descriptors waits for
// connections to end instead of exiting with its buffers unwritten.
const (
	acceptRetryMin = 5 * time.Millisecond
	acceptRetryMax = time.Second
)

// Serve accepts connections on l until Shutdown or Close, and then returns
// ErrServerClosed. It always returns a non-nil error. Temporary accept
// errors are retried; a connection beyond Config.MaxHellos still in the
// hello is closed at once. On a TCP listener Serve refuses to start
// (ErrNoToken) unless Config.Token is set or Config.Insecure is true.
func (s *Server) Serve(l net.Listener) error {
	if isTCP(l) && s.cfg.Token == "" {
		if !s.cfg.Insecure {
			return fmt.Errorf("serve %s: %w", l.Addr(), ErrNoToken)
		}
		s.log.Warn("listening on TCP without a token: anyone who can reach the port can read and write every file under the root",
			"addr", l.Addr().String(), "root", s.cfg.Root)
	}
	if isTCP(l) && s.cfg.TLS != nil {
		l = tls.NewListener(l, s.cfg.TLS)
	}
	s.mu.Lock()
	if s.mu.closed {
		s.mu.Unlock()
		return ErrServerClosed
	}
	s.mu.listeners[l] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	defer s.wg.Done()
	var delay time.Duration
	var overflowLog every
	for {
		c, err := l.Accept()
		if err != nil {
			select {
			case <-s.shutdownCh:
				return ErrServerClosed
			default:
			}
			if !temporary(err) {
				return fmt.Errorf("accept: %w", err)
			}
			delay = min(max(2*delay, acceptRetryMin), acceptRetryMax)
			s.stats.acceptRetries.Add(1)
			s.log.Warn("accept failed, retrying", "err", err, "retry_in", delay, "hello_in_progress", s.stats.helloInProgress.Load())
			t := time.NewTimer(delay)
			select {
			case <-t.C:
			case <-s.shutdownCh:
				t.Stop()
				return ErrServerClosed
			}
			continue
		}
		delay = 0
		if n := s.stats.helloInProgress.Add(1); n > int64(s.cfg.MaxHellos) {
			s.stats.helloInProgress.Add(-1)
			s.stats.helloOverflow.Add(1)
			c.Close()
			if ok, dropped := overflowLog.allow(time.Second); ok {
				s.log.Warn("too many connections in the hello, closing new ones", "max_hellos", s.cfg.MaxHellos,
					"remote", c.RemoteAddr().String(), "closed_since_last_line", dropped)
			}
			continue
		}
		s.mu.Lock()
		if s.mu.closed {
			s.mu.Unlock()
			s.stats.helloInProgress.Add(-1)
			c.Close()
			return ErrServerClosed
		}
		ss := newSession(s, c)
		s.mu.sessions[ss] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.wg.Done()
			ss.run()
			s.mu.Lock()
			delete(s.mu.sessions, ss)
			s.mu.Unlock()
		}()
	}
}

// isTCP reports whether l accepts TCP connections.
func isTCP(l net.Listener) bool {
	return strings.HasPrefix(l.Addr().Network(), "tcp")
}

// temporary reports whether an accept error may pass by itself: out of
// descriptors or buffers, a connection aborted before it was accepted, a
// timeout, or any error that says it is temporary.
func temporary(err error) bool {
	for _, e := range []error{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM,
		syscall.ECONNABORTED, syscall.ECONNRESET, syscall.EAGAIN, syscall.EINTR, syscall.EPROTO} {
		if errors.Is(err, e) {
			return true
		}
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	var te interface{ Temporary() bool }
	return errors.As(err, &te) && te.Temporary()
}

// every lets one log line through per interval and counts the rest.
type every struct {
	mu      sync.Mutex
	last    time.Time
	dropped int
}

// allow reports whether to log now, and how many lines were held back
// since the last one.
func (e *every) allow(d time.Duration) (bool, int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if now := time.Now(); now.Sub(e.last) >= d {
		n := e.dropped
		e.last, e.dropped = now, 0
		return true, n
	}
	e.dropped++
	return false, 0
}

// Shutdown stops accepting connections, ends every session once its
// current request is done, writes every file's buffered data to the backend
// and closes the files. If ctx ends first it returns ctx.Err() and the
// remaining work goes on in the background.
func (s *Server) Shutdown(ctx context.Context) error {
	s.beginClose()
	s.drainOnce.Do(func() {
		go func() {
			s.wg.Wait()
			close(s.flusherStop)
			<-s.flusherDone
			s.drainErr = s.drainAll()
			s.closeJournal(s.drainErr)
			s.fs.Close()
			close(s.drained)
		}()
	})
	select {
	case <-s.drained:
		return s.drainErr
	case <-ctx.Done():
		return ctx.Err()
	}
}

// StopRequested is closed when a monitor session asked the server to stop
// (wire.Stats.Stop). The owner of the server (delegate-server's main) then
// calls Shutdown, as it does on SIGTERM.
func (s *Server) StopRequested() <-chan struct{} { return s.stopReq }

func (s *Server) requestStop(by string) {
	s.stopOnce.Do(func() {
		s.log.Info("stop requested", "client", by)
		close(s.stopReq)
	})
}

// Close is Shutdown without waiting.
func (s *Server) Close() error {
	s.beginClose()
	return nil
}

func (s *Server) beginClose() {
	s.closeOnce.Do(func() {
		close(s.shutdownCh)
		s.mu.Lock()
		s.mu.closed = true
		for l := range s.mu.listeners {
			l.Close()
		}
		for ss := range s.mu.sessions {
			ss.close()
		}
		s.mu.Unlock()
		s.budget.wakeAll(true) // writers waiting for space end their requests
	})
}

// Stats returns a snapshot of the server's statistics.
func (s *Server) Stats() stats.Snapshot {
	snap := s.stats.snapshot()
	snap.Name = s.cfg.Name
	snap.OpenFiles = int64(len(s.files.files()))
	b := s.budget.stats()
	snap.BufferBytes, snap.BufferPeak, snap.BufferLimit = b.used, b.peak, b.limit
	snap.BufferPooled = s.pool.Held()
	if j := s.journal; j != nil {
		js := j.Stats()
		snap.StateDir = true
		snap.StateSlots, snap.StateFallbacks = int64(js.InUse), js.Fails
		snap.BufferPooled = int64(js.Resident) * j.Footprint()
	}
	r := s.recovery
	snap.RecoveredFiles, snap.RecoveredChunks, snap.RecoveredBytes, snap.RecoveryDropped = r.Files, r.Chunks, r.Bytes, r.Dropped
	snap.Stalls, snap.StallNanos = b.stalls, b.stallNanos
	bm := s.xferMem.stats()
	snap.TransferBytes, snap.TransferPeak, snap.TransferLimit, snap.TransferWaits = bm.used, bm.peak, bm.limit, bm.waits
	snap.ChunkBytes = s.cfg.ChunkBytes
	snap.Files = s.summaries.snapshot()
	s.stats.sampleMemory()
	snap.PeakOwn = s.stats.peakOwn.Load()
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		snap.PeakRSS = ru.Maxrss * 1024 // kilobytes on Linux
	}
	return snap
}
