package server

import (
	"fmt"
	"net"
	"strings"

	"github.com/delegate-io/delegate/internal/transport"
	"github.com/delegate-io/delegate/internal/wire"
)

// ParseAddr returns the canonical form of a listen address.
func ParseAddr(s string) (string, error) {
	a, err := transport.ParseAddr(s)
	if err != nil {
		return "", err
	}
	return a.String(), nil
}

// ParsePeers parses a comma-separated server list into canonical forms.
func ParsePeers(s string) ([]string, error) {
	l, err := transport.ParseList(s)
	if err != nil {
		return nil, err
	}
	return transport.Strings(l), nil
}

// Listen listens on a canonical address.
func Listen(addr string) (net.Listener, error) {
	a, err := transport.ParseAddr(addr)
	if err != nil {
		return nil, err
	}
	return transport.Listen(a)
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
	return b.String()
}

// ParseSize parses a byte count with an optional K, M, G or T suffix.
func ParseSize(s string) (int64, error) { return wire.ParseSize(s) }
