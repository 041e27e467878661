package server

import (
	"errors"
	"fmt"
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
	Token string
	// HandshakeTimeout bounds the hello exchange of a new connection.
	HandshakeTimeout time.Duration
	// KeepAlive is the yamux keepalive interval; a silent client is
	// dropped about 10 s after a missed keepalive.
	KeepAlive time.Duration
	// MaxReadBytes bounds one read request; clients split larger reads.
	MaxReadBytes int64
	// Logger receives the server's log; nil discards it.
	Logger *slog.Logger
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		Root:             "/",
		HandshakeTimeout: 5 * time.Second,
		KeepAlive:        5 * time.Second,
		MaxReadBytes:     64 << 20,
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
	if c.KeepAlive < 0 {
		errs = append(errs, errors.New("keepalive must not be negative"))
	}
	if c.MaxReadBytes < 4096 || c.MaxReadBytes > 1<<30 {
		errs = append(errs, fmt.Errorf("max read bytes %d outside [4096, 1 GiB]", c.MaxReadBytes))
	}
	return errors.Join(errs...)
}
