package server

import (
	"crypto/tls"
	"errors"
	"fmt"
	"strings"

	"github.com/delegate-io/delegate/internal/backend"
	"log/slog"
	"time"
)

// Config configures a Server. The zero value is not valid; start from
// DefaultConfig. Thresholds live here, never inline.
type Config struct {
	// Name identifies the server in logs and replies (default: its address).
	Name string
	// Root confines every path clients name; "/" reaches what the server's
	// user can.
	Root string
	// Peers is the ordered server list of the job (canonical addresses),
	// and Index this server's position in it. When Peers is set a client
	// must present the same list and index; when it is empty the server
	// trusts the client's count and index (a server started by hand).
	Peers []string
	Index int
	// Token, if set, must be presented by every client (TCP across hosts).
	// It is compared in constant time.
	Token string
	// LocalSocket, if set, is the path of a Unix socket this server also
	// serves (the caller runs Serve on it). The reply to a hello that came
	// over TCP names it together with the host identity, so that clients
	// on this host move to it and get the shared-memory ring and direct
	// reads while the job's server list names every server once, by its
	// TCP address (wire/spec.md, "Connection setup").
	LocalSocket string
	// TLS, if set, runs every TCP listener's connections over TLS (Serve
	// wraps it); Unix sockets stay plain. The hello, its challenge-response
	// and yamux then run inside TLS.
	TLS *tls.Config
	// Insecure lets Serve accept TCP connections without a Token. Without
	// it Serve refuses a TCP listener when Token is empty: anyone who can
	// reach the port could read and write every file under Root.
	Insecure bool
	// HandshakeTimeout bounds the hello exchange of a new connection: a
	// connection that has not authenticated within it is closed.
	HandshakeTimeout time.Duration
	// MaxHellos bounds the connections still in the hello (accepted, not
	// yet authenticated); a connection beyond it is closed at once, so
	// idle connections cannot use up the server's descriptors.
	MaxHellos int
	// MaxSessions bounds the client sessions served at once: a hello
	// beyond it is refused with an error that names the limit, so that
	// the memory sessions hold in transit stays bounded (README, Memory).
	// Monitor sessions (stats) get MonitorReserve more, so an operator can
	// see a full server.
	MaxSessions int
	// KeepAlive is the yamux keepalive interval; a silent client is
	// dropped about 10 s after a missed keepalive.
	KeepAlive time.Duration
	// MaxReadBytes bounds one read request; clients split larger reads.
	MaxReadBytes int64
	// BufferBytes bounds the memory of all write-behind buffers together.
	// Above HighWaterPct percent of it the flusher writes the fullest
	// files; at the limit writers wait (backpressure).
	BufferBytes  int64
	HighWaterPct int
	// FlushIdle flushes a file not written for this long.
	FlushIdle time.Duration
	// ChunkBytes is the alignment of buffered extents and of backend
	// writes inside a run (the stripe size of a parallel file system).
	ChunkBytes int64
	// FlushRunBytes is where the flusher cuts a run into backend writes
	// (at the next chunk boundary past it).
	FlushRunBytes int64
	// FlushFull writes a file's entirely buffered chunks as soon as they
	// make a run of FlushRunBytes, in the background: they are final for
	// their stripe (a later write there is rare), so holding them only
	// postpones the copy to the backend to the close, where the ranks wait
	// for it. Partial chunks stay buffered to coalesce.
	FlushFull bool
	// GapBytes: a write at most this far from buffered data joins its
	// buffer, the bytes between being holes until someone writes them (as
	// ranks writing interleaved records do). It bounds the memory a sparse
	// pattern can waste per write.
	GapBytes int64
	// DirectBytes: a written extent at least this long goes straight to the
	// backend instead of the buffer.
	DirectBytes int64
	// CollDirect: collective writes in the ring whose client allows it
	// (wire.IOHold) are held until the collective's end markers, and its
	// contiguous runs of at least DirectBytes are written straight from
	// the ranks' ring slots (collwrite.go). Off by default: that backend
	// write then lies between the last rank's marker and every rank's
	// answer, where buffering the pieces (one copy into resident slots)
	// lets the flusher write them while the ranks go on (README,
	// Performance, eleventh session: ior 59 against 43 ms).
	CollDirect bool
	// CollTimeout bounds how long a rank's collective end marker waits for
	// the other ranks' (coll.go); past it the rank's next call fails.
	CollTimeout time.Duration
	// StateDir, if set, keeps the write-behind buffer in mmap'd files there
	// (internal/journal), so that acknowledged data survives the process: a
	// server started with the same StateDir writes what a killed one left
	// before it serves anyone. Empty: buffers in the heap, lost in a crash.
	StateDir string
	// FileStats is how many files the server keeps a summary of
	// (stats.File: requests, sizes, backend writes, time in queue), from
	// their first open until it stops; files past it add into one
	// aggregate entry. 0 keeps none.
	FileStats int
	// Logger receives the server's log; nil discards it.
	Logger *slog.Logger
	// Wrap, if set, wraps the backend file system (tests inject faults).
	Wrap func(backend.FS) backend.FS
	// BackendDelay and BackendReadDelay, for tests: a backend write (and
	// read) of a file sleeps this long first, unless the file's last one
	// slept less than this long ago (backend.DelayFS, around Wrap's file
	// system: a latency, not a rate). A slow backend widens every window
	// in which data is buffered but not yet on the backend, where ordering
	// bugs of visibility hide. Zero (the default): nothing is wrapped.
	BackendDelay     time.Duration
	BackendReadDelay time.Duration
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		Root:             "/",
		HandshakeTimeout: 5 * time.Second,
		MaxHellos:        64,
		MaxSessions:      8192,
		KeepAlive:        5 * time.Second,
		MaxReadBytes:     64 << 20,
		BufferBytes:      1 << 30,
		HighWaterPct:     75,
		FlushIdle:        2 * time.Second,
		ChunkBytes:       1 << 20,
		FlushRunBytes:    8 << 20,
		FlushFull:        true,
		GapBytes:         512,
		CollTimeout:      time.Minute,
		DirectBytes:      1 << 20,
		CollDirect:       false,
		FileStats:        DefaultFileStats,
	}
}

// Validate reports every problem of c in one error.
func (c *Config) Validate() error {
	var errs []error
	if c.Root == "" {
		errs = append(errs, errors.New("root is empty"))
	}
	if len(c.Peers) > 0 && (c.Index < 0 || c.Index >= len(c.Peers)) {
		errs = append(errs, fmt.Errorf("index %d is outside the %d peers", c.Index, len(c.Peers)))
	}
	if c.HandshakeTimeout <= 0 {
		errs = append(errs, errors.New("handshake timeout must be positive"))
	}
	if c.MaxHellos < 1 {
		errs = append(errs, fmt.Errorf("max hellos %d: want at least 1", c.MaxHellos))
	}
	if c.MaxSessions < 1 || c.MaxSessions > 1<<20 {
		errs = append(errs, fmt.Errorf("max sessions %d: want 1 to %d", c.MaxSessions, 1<<20))
	}
	if c.Token != "" && strings.TrimSpace(c.Token) == "" {
		errs = append(errs, errors.New("token is only white space"))
	}
	if c.KeepAlive < 0 {
		errs = append(errs, errors.New("keepalive must not be negative"))
	}
	if c.MaxReadBytes < 4096 || c.MaxReadBytes > 1<<30 {
		errs = append(errs, fmt.Errorf("max read bytes %d outside [4096, 1 GiB]", c.MaxReadBytes))
	}
	if c.ChunkBytes < 4096 || c.ChunkBytes&(c.ChunkBytes-1) != 0 {
		errs = append(errs, fmt.Errorf("chunk bytes %d: want a power of two >= 4096", c.ChunkBytes))
	}
	if c.BufferBytes < 4*c.ChunkBytes {
		errs = append(errs, fmt.Errorf("buffer of %d bytes: want at least 4 chunks (%d)", c.BufferBytes, 4*c.ChunkBytes))
	}
	if c.HighWaterPct < 10 || c.HighWaterPct > 100 {
		errs = append(errs, fmt.Errorf("high-water mark %d%%: want 10-100", c.HighWaterPct))
	}
	if c.FlushIdle <= 0 {
		errs = append(errs, errors.New("flush idle time must be positive"))
	}
	if c.FlushRunBytes < c.ChunkBytes {
		errs = append(errs, errors.New("flush run bytes must be at least one chunk"))
	}
	if c.GapBytes < 0 || c.GapBytes >= c.ChunkBytes {
		errs = append(errs, fmt.Errorf("gap bytes %d: want 0 to less than a chunk", c.GapBytes))
	}
	if c.CollTimeout <= 0 {
		errs = append(errs, errors.New("collective timeout must be positive"))
	}
	if c.DirectBytes < 4096 {
		errs = append(errs, fmt.Errorf("direct bytes %d: want >= 4096", c.DirectBytes))
	}
	if c.BackendDelay < 0 || c.BackendReadDelay < 0 {
		errs = append(errs, errors.New("backend delays must not be negative"))
	}
	if c.FileStats < 0 {
		errs = append(errs, fmt.Errorf("file stats %d: want 0 or more", c.FileStats))
	}
	return errors.Join(errs...)
}

// String prints the effective configuration, one setting per line.
func (c Config) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "name               %s\n", c.Name)
	fmt.Fprintf(&b, "root               %s\n", c.Root)
	fmt.Fprintf(&b, "peers              %s\n", strings.Join(c.Peers, ","))
	fmt.Fprintf(&b, "index              %d\n", c.Index)
	fmt.Fprintf(&b, "token              %v\n", c.Token != "")
	fmt.Fprintf(&b, "insecure           %v\n", c.Insecure)
	fmt.Fprintf(&b, "handshake-timeout  %s\n", c.HandshakeTimeout)
	fmt.Fprintf(&b, "max-hellos         %d\n", c.MaxHellos)
	fmt.Fprintf(&b, "max-sessions       %d\n", c.MaxSessions)
	fmt.Fprintf(&b, "keepalive          %s\n", c.KeepAlive)
	fmt.Fprintf(&b, "max-read-bytes     %d\n", c.MaxReadBytes)
	fmt.Fprintf(&b, "buffer             %d\n", c.BufferBytes)
	fmt.Fprintf(&b, "high-water         %d%%\n", c.HighWaterPct)
	fmt.Fprintf(&b, "flush-idle         %s\n", c.FlushIdle)
	fmt.Fprintf(&b, "chunk              %d\n", c.ChunkBytes)
	fmt.Fprintf(&b, "flush-run          %d\n", c.FlushRunBytes)
	fmt.Fprintf(&b, "flush-full         %v\n", c.FlushFull)
	fmt.Fprintf(&b, "gap                %d\n", c.GapBytes)
	fmt.Fprintf(&b, "direct             %d\n", c.DirectBytes)
	fmt.Fprintf(&b, "coll-direct        %v\n", c.CollDirect)
	fmt.Fprintf(&b, "state-dir          %s\n", c.StateDir)
	if c.BackendDelay > 0 || c.BackendReadDelay > 0 {
		fmt.Fprintf(&b, "backend-delay      %s\n", c.BackendDelay)
		fmt.Fprintf(&b, "backend-read-delay %s\n", c.BackendReadDelay)
	}
	return b.String()
}
