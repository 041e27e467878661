package client

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/delegate-io/delegate/internal/route"
	"github.com/delegate-io/delegate/internal/transport"
	"github.com/delegate-io/delegate/internal/units"
	"github.com/delegate-io/delegate/internal/wire"
)

// Config configures a Client. Start from DefaultConfig or FromEnv.
type Config struct {
	// Servers is the ordered server list; every client of a job must use
	// the same list in the same order (the servers check).
	Servers []transport.Addr
	// Token is the job secret: the client proves to servers that require
	// it that it holds it, and accepts only servers that prove the same
	// (transport.ClientHello); it is never sent.
	Token string
	// TLS, if set, runs TCP connections over TLS, trusting the servers'
	// certificates it names (DELEGATE_TLS_CA).
	TLS *tls.Config
	// RegionSize is the default region size of files opened without a
	// delegate_region_size hint.
	RegionSize int64
	// Timeout bounds connecting and the hello, and is the keepalive
	// interval that detects a silent server.
	Timeout time.Duration
	// RingBytes is the shared-memory ring per Unix-socket server; 0 sends
	// data inline on the control stream.
	RingBytes int
	// MaxInflightBytes bounds the data queued or unacknowledged per server
	// when data travels inline; writers wait beyond it.
	MaxInflightBytes int64
	// MaxRequestBytes bounds the data of one request; larger writes and
	// reads are split.
	MaxRequestBytes int64
	// MergeBytes is the largest write that joins the previous, not yet
	// sent write of the same file instead of starting a request.
	MergeBytes int64
	// Compression is the lz4 policy for descriptions sent over TCP (across
	// hosts it pays for large descriptions it at least halves, DESIGN.md
	// §4). On a Unix socket descriptions always go raw: on one host lz4
	// costs more than it saves.
	Compression wire.Compression
	// BulkConns is the number of bulk connections per TCP server (wire
	// spec.md, "Bulk connections"): raw TCP connections beside the yamux
	// session that carry the data of requests of at least BulkMin bytes.
	// 0: every request's data travels inline on the session.
	BulkConns int
	BulkMin   int64
	// BulkReadParts is the most bulk connections one read of a server's
	// data is cut over (parts of at least 1 MiB, received at once).
	BulkReadParts int
	// PreferLocal moves the session to a server on this host, named in the
	// list by its TCP address, onto the Unix socket its hello reply names
	// (shared-memory ring, direct reads). DELEGATE_PREFER_LOCAL=0 keeps
	// every TCP server on TCP.
	PreferLocal bool
	// LeaseMin is the smallest extent of a lease write: a blocking write
	// whose every extent is at least this long goes straight to the
	// backend file when no server holds dirty data of it (lease.go). 0: never.
	// Not below the servers' --direct (DirectBytes): smaller writes would
	// lose the servers' coalescing. DELEGATE_LEASE_MIN.
	LeaseMin int64
	// LeaseMinLocal replaces LeaseMin and the servers' --direct for a file
	// on a local file system (ext2/3/4, XFS, Btrfs, F2FS, tmpfs: localFS),
	// where the page cache gathers a rank's writes into large ones as a
	// server would: a piece this long costs one copy written by the rank
	// against three through a server (ring, slot, page cache), and the
	// servers' coalescing buys the backend nothing. Below it they still
	// pay (small pieces: one system call for thousands). 0: LeaseMin
	// applies on every file system. Leases stay off with LeaseMin 0.
	// DELEGATE_LEASE_MIN_LOCAL.
	LeaseMinLocal int64
	// LeaseMinFar is the lease threshold, on a local file system (with
	// LeaseMinLocal on), of a blocking one-extent write far from the
	// previous write of the same handle in this process (more than 1 MiB
	// from where it ended, or the first): a random piece that no server
	// would gather with its neighbours soon, so buffering it buys three
	// copies and a close-time flush of scattered runs for nothing. Pieces
	// near the previous one (sequential or interleaved with other ranks')
	// stay with the servers, which gather them. Decided in C
	// (libdelegate/direct.c, ExportLease); 0: off. DELEGATE_LEASE_MIN_FAR.
	LeaseMinFar int64
	// Name identifies the client in server logs (default host:pid).
	Name string
	// Logger receives the library's log; nil discards it.
	Logger *slog.Logger
	// Pending, when set, is the fence word (Client.Fence): the client adds
	// its unacknowledged write requests to it, and the caller may add what
	// it holds itself (libdelegate's C stage does). nil: a word of its own.
	Pending *atomic.Int64
	// Shared, when set, is kept nonzero while some path is open more than
	// once in this client (libdelegate then fences reads). nil: its own.
	Shared *atomic.Int64
}

// DefaultLeaseMin is LeaseMin's default: the servers' default --direct
// (server.DefaultConfig().DirectBytes; TestLeaseMinDefault keeps them equal).
const DefaultLeaseMin = 1 << 20

// DefaultLeaseMinLocal is LeaseMinLocal's default, measured (README,
// Performance, twelfth session): two ranks writing interleaved pieces of a
// shared file on ext4, 32 MiB each, buffered by a server against leased:
// 8 KiB pieces 30-99 ms against 46-54, 16 KiB 25-160 against 33-37, 32
// KiB 34-44 against 23-30 (ufs: 19-26); 4 KiB pieces gain 1.4-3x from
// the servers.
const DefaultLeaseMinLocal = 32 << 10

// DefaultLeaseMinFar is LeaseMinFar's default, measured (README,
// Performance, thirteenth session): random 4 KiB writes, 2 ranks on ext4,
// 0.34 of ufs:'s speed through a server against 0.78-0.88 leased; 4 KiB
// pieces interleaved by 2 ranks 2.0-3.0 through a server against 1.0
// leased, hence near pieces stay with the servers. Smaller writes are
// combined in C (stage.c) before any lease is considered.
const DefaultLeaseMinFar = 4 << 10

// DefaultConfig returns the defaults, with no servers.
func DefaultConfig() Config {
	host, _ := os.Hostname()
	return Config{
		RegionSize:       route.DefaultRegionSize,
		Timeout:          5 * time.Second,
		RingBytes:        16 << 20,
		MaxInflightBytes: 64 << 20,
		MaxRequestBytes:  16 << 20,
		MergeBytes:       64 << 10,
		BulkConns:        4,
		BulkMin:          64 << 10,
		BulkReadParts:    2,
		Compression:      wire.Compression{MinBytes: 16 << 10, MinSavingsPct: 50},
		PreferLocal:      true,
		LeaseMin:         DefaultLeaseMin,
		LeaseMinLocal:    DefaultLeaseMinLocal,
		LeaseMinFar:      DefaultLeaseMinFar,
		Name:             fmt.Sprintf("%s:%d", host, os.Getpid()),
	}
}

// FromEnv returns DefaultConfig overridden by the DELEGATE_* environment
// variables documented in include/delegate.h.
func FromEnv() (Config, error) {
	c := DefaultConfig()
	var errs []error
	if s := os.Getenv("DELEGATE_SERVERS"); s == "" {
		errs = append(errs, errors.New("DELEGATE_SERVERS is not set (start servers with delegate-run, or set it to unix:/path/to/socket,...)"))
	} else if l, err := transport.ParseList(s); err != nil {
		errs = append(errs, fmt.Errorf("DELEGATE_SERVERS: %w", err))
	} else {
		c.Servers = l
	}
	c.Token = os.Getenv("DELEGATE_TOKEN")
	if p := os.Getenv("DELEGATE_TOKEN_FILE"); c.Token == "" && p != "" {
		b, err := os.ReadFile(p)
		if err != nil {
			errs = append(errs, fmt.Errorf("DELEGATE_TOKEN_FILE: %w", err))
		}
		c.Token = strings.TrimSpace(string(b))
	}
	if ca := os.Getenv("DELEGATE_TLS_CA"); ca != "" {
		t, err := transport.ClientTLS(ca)
		if err != nil {
			errs = append(errs, err)
		}
		c.TLS = t
	}
	switch os.Getenv("DELEGATE_PREFER_LOCAL") {
	case "", "1", "true":
	case "0", "false":
		c.PreferLocal = false
	default:
		errs = append(errs, fmt.Errorf("DELEGATE_PREFER_LOCAL=%q: want 0 or 1", os.Getenv("DELEGATE_PREFER_LOCAL")))
	}
	if s := os.Getenv("DELEGATE_REGION_SIZE"); s != "" {
		n, err := units.ParseSize(s)
		if err != nil {
			errs = append(errs, fmt.Errorf("DELEGATE_REGION_SIZE: %w", err))
		}
		c.RegionSize = n
	}
	if s := os.Getenv("DELEGATE_TIMEOUT"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			errs = append(errs, fmt.Errorf("DELEGATE_TIMEOUT: %w", err))
		}
		c.Timeout = d
	}
	if s := os.Getenv("DELEGATE_SHM_SIZE"); s != "" {
		n, err := units.ParseSize(s)
		if err != nil {
			errs = append(errs, fmt.Errorf("DELEGATE_SHM_SIZE: %w", err))
		}
		c.RingBytes = int(n)
	}
	if s := os.Getenv("DELEGATE_BULK_CONNS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			errs = append(errs, fmt.Errorf("DELEGATE_BULK_CONNS: %w", err))
		}
		c.BulkConns = n
	}
	if s := os.Getenv("DELEGATE_BULK_READ_PARTS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			errs = append(errs, fmt.Errorf("DELEGATE_BULK_READ_PARTS: %w", err))
		}
		c.BulkReadParts = n
	}
	if s := os.Getenv("DELEGATE_BULK_MIN"); s != "" {
		n, err := units.ParseSize(s)
		if err != nil {
			errs = append(errs, fmt.Errorf("DELEGATE_BULK_MIN: %w", err))
		}
		c.BulkMin = n
	}
	if s := os.Getenv("DELEGATE_LEASE_MIN"); s != "" {
		n, err := units.ParseSize(s)
		if err != nil {
			errs = append(errs, fmt.Errorf("DELEGATE_LEASE_MIN: %w", err))
		}
		c.LeaseMin = n
	}
	if s := os.Getenv("DELEGATE_LEASE_MIN_LOCAL"); s != "" {
		n, err := units.ParseSize(s)
		if err != nil {
			errs = append(errs, fmt.Errorf("DELEGATE_LEASE_MIN_LOCAL: %w", err))
		}
		c.LeaseMinLocal = n
	}
	if s := os.Getenv("DELEGATE_LEASE_MIN_FAR"); s != "" {
		n, err := units.ParseSize(s)
		if err != nil {
			errs = append(errs, fmt.Errorf("DELEGATE_LEASE_MIN_FAR: %w", err))
		}
		c.LeaseMinFar = n
	}
	if err := errors.Join(errs...); err != nil {
		return c, err
	}
	return c, c.Validate()
}

// Validate reports every problem of c in one error.
func (c *Config) Validate() error {
	var errs []error
	if len(c.Servers) == 0 {
		errs = append(errs, errors.New("no servers"))
	}
	if err := route.CheckRegionSize(c.RegionSize); err != nil {
		errs = append(errs, err)
	}
	if c.Timeout <= 0 {
		errs = append(errs, errors.New("timeout must be positive"))
	}
	if c.RingBytes != 0 && (c.RingBytes < 1<<20 || c.RingBytes > 1<<30) {
		errs = append(errs, fmt.Errorf("shared-memory ring of %d bytes: want 0 or 1 MiB to 1 GiB", c.RingBytes))
	}
	if c.MaxRequestBytes < 64<<10 || c.MaxRequestBytes > wire.MaxPayload {
		errs = append(errs, fmt.Errorf("max request bytes %d outside [64 KiB, %d]", c.MaxRequestBytes, wire.MaxPayload))
	}
	if c.BulkConns < 0 || c.BulkConns > wire.MaxBulkConns {
		errs = append(errs, fmt.Errorf("bulk connections %d: want 0 to %d", c.BulkConns, wire.MaxBulkConns))
	}
	if c.BulkReadParts < 0 || c.BulkReadParts > wire.MaxBulkConns {
		errs = append(errs, fmt.Errorf("bulk read parts %d: want 0 to %d", c.BulkReadParts, wire.MaxBulkConns))
	}
	if c.BulkConns > 0 && c.BulkMin < 4<<10 {
		errs = append(errs, fmt.Errorf("bulk minimum %d: want at least 4 KiB", c.BulkMin))
	}
	if c.LeaseMinLocal < 0 {
		errs = append(errs, fmt.Errorf("local lease minimum %d: want 0 (LeaseMin applies) or more", c.LeaseMinLocal))
	}
	if c.LeaseMinFar != 0 && c.LeaseMinFar < 4<<10 {
		errs = append(errs, fmt.Errorf("far lease minimum %d: want 0 (off) or at least 4 KiB (smaller writes are combined first)", c.LeaseMinFar))
	}
	if c.LeaseMin < 0 {
		errs = append(errs, fmt.Errorf("lease minimum %d: want 0 (off) or more", c.LeaseMin))
	}
	if c.MaxInflightBytes < c.MaxRequestBytes {
		errs = append(errs, errors.New("max inflight bytes must be at least max request bytes"))
	}
	return errors.Join(errs...)
}
