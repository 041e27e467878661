package server

import (
	"crypto/tls"
	"time"

	"github.com/delegate-io/delegate/internal/transport"
)

// TLS material for the commands (delegate-server, delegate-run), which reach
// transport only through this package: each is a file path or inline
// ("base64:" and the PEM file's base64; transport.LoadPEM).

// TLSConfig is a server's TLS configuration from its certificate and key.
func TLSConfig(cert, key string) (*tls.Config, error) { return transport.ServerTLS(cert, key) }

// ClientTLSConfig trusts the certificates in ca, for monitor sessions
// (delegate-server stats, delegate-run).
func ClientTLSConfig(ca string) (*tls.Config, error) { return transport.ClientTLS(ca) }

// SelfSignedPEM makes a per-job certificate naming hosts, its own CA
// (transport.SelfSigned), and returns both PEM files.
func SelfSignedPEM(hosts []string, validity time.Duration) (cert, key []byte, err error) {
	return transport.SelfSigned(hosts, validity)
}

// InlinePEM is the inline form of a PEM file, for the environment.
func InlinePEM(pem []byte) string { return transport.InlinePEM(pem) }
