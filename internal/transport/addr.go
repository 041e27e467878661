// Package transport is how client and server reach each other: server
// addresses, dialing and listening, the hello handshake on the raw
// connection (with the shared-memory ring's descriptor passed alongside on
// Unix sockets), and the yamux configuration both sides use.
package transport

import (
	"fmt"
	"net"
	"path/filepath"
	"strings"
)

// Addr is a server address: unix:/abs/path or tcp:host:port.
type Addr struct {
	Net  string // "unix" or "tcp"
	Addr string // path or host:port
}

// ParseAddr accepts unix:PATH, tcp:HOST:PORT, a bare path (anything with a
// slash) or a bare HOST:PORT. Unix paths are made absolute.
func ParseAddr(s string) (Addr, error) {
	s = strings.TrimSpace(s)
	var a Addr
	switch {
	case strings.HasPrefix(s, "unix:"):
		a = Addr{"unix", s[len("unix:"):]}
	case strings.HasPrefix(s, "tcp:"):
		a = Addr{"tcp", s[len("tcp:"):]}
	case strings.Contains(s, "/"):
		a = Addr{"unix", s}
	default:
		a = Addr{"tcp", s}
	}
	switch a.Net {
	case "unix":
		if a.Addr == "" {
			return a, fmt.Errorf("address %q: empty socket path", s)
		}
		abs, err := filepath.Abs(a.Addr)
		if err != nil {
			return a, fmt.Errorf("address %q: %w", s, err)
		}
		a.Addr = abs
	case "tcp":
		host, port, err := net.SplitHostPort(a.Addr)
		if err != nil || port == "" {
			return a, fmt.Errorf("address %q: want unix:PATH or tcp:HOST:PORT", s)
		}
		a.Addr = net.JoinHostPort(host, port)
	}
	return a, nil
}

// String returns the canonical form, which is also what route.ListHash hashes.
func (a Addr) String() string { return a.Net + ":" + a.Addr }

// ParseList parses a comma-separated list of addresses.
func ParseList(s string) ([]Addr, error) {
	var out []Addr
	for _, f := range strings.Split(s, ",") {
		if strings.TrimSpace(f) == "" {
			continue
		}
		a, err := ParseAddr(f)
		if err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("empty server list %q", s)
	}
	return out, nil
}

// Strings returns the canonical forms of addrs.
func Strings(addrs []Addr) []string {
	out := make([]string, len(addrs))
	for i, a := range addrs {
		out[i] = a.String()
	}
	return out
}
