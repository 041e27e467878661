package transport

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"strings"
	"time"

	"github.com/delegate-io/delegate/internal/wire"
)

// TLS on TCP connections (Unix sockets never use it: they stay on the host
// and carry the ring's descriptor). The server presents a certificate
// (--tls-cert, --tls-key); the client trusts the certificates signed by
// DELEGATE_TLS_CA and checks the server's host as its list names it (a
// name against the certificate's DNS names, an address against its IP
// addresses). yamux and the hello run inside the TLS connection.

// PEMPrefix marks TLS material given inline instead of as a file path: the
// rest is the PEM file in standard base64, one line that every launcher
// carries in the environment (delegate-run --tls hands it so, because a
// file in its directory is not visible on the other hosts).
const PEMPrefix = "base64:"

// LoadPEM returns the PEM bytes that spec names: a file path, or PEMPrefix
// and the file's base64.
func LoadPEM(spec string) ([]byte, error) {
	if rest, ok := strings.CutPrefix(spec, PEMPrefix); ok {
		b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(rest))
		if err != nil {
			return nil, fmt.Errorf("inline PEM (%s...): %w", PEMPrefix, err)
		}
		return b, nil
	}
	return os.ReadFile(spec)
}

// InlinePEM is the inline form of pem for LoadPEM.
func InlinePEM(pem []byte) string { return PEMPrefix + base64.StdEncoding.EncodeToString(pem) }

// ServerTLS builds a server's TLS configuration from a certificate and its
// key (each a path or inline, LoadPEM).
func ServerTLS(certSpec, keySpec string) (*tls.Config, error) {
	certPEM, err := LoadPEM(certSpec)
	if err != nil {
		return nil, fmt.Errorf("tls certificate: %w", err)
	}
	keyPEM, err := LoadPEM(keySpec)
	if err != nil {
		return nil, fmt.Errorf("tls key: %w", err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("tls certificate and key: %w", err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13}, nil
}

// ClientTLS builds a client's TLS configuration that trusts only the
// certificates in caSpec (a path or inline, LoadPEM).
func ClientTLS(caSpec string) (*tls.Config, error) {
	caPEM, err := LoadPEM(caSpec)
	if err != nil {
		return nil, fmt.Errorf("DELEGATE_TLS_CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, errors.New("DELEGATE_TLS_CA: no PEM certificate in it")
	}
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS13}, nil
}

// dialTLS runs the client's TLS handshake on c for server a, whose host
// (as the list names it) the certificate must name.
func dialTLS(c net.Conn, a Addr, cfg *tls.Config, deadline time.Time) (net.Conn, error) {
	host, _, err := net.SplitHostPort(a.Addr)
	if err != nil {
		return nil, err
	}
	cc := cfg.Clone()
	cc.ServerName = host
	tc := tls.Client(c, cc)
	_ = c.SetDeadline(deadline)
	err = tc.Handshake()
	_ = c.SetDeadline(time.Time{})
	if err != nil {
		c.Close()
		var unk x509.UnknownAuthorityError
		var host x509.HostnameError
		var rec tls.RecordHeaderError
		switch {
		case errors.As(err, &unk):
			return nil, wire.Errorf(wire.EACCES, "delegate server %s: TLS: its certificate is not signed by DELEGATE_TLS_CA (%v)", a, err)
		case errors.As(err, &host):
			return nil, wire.Errorf(wire.EACCES, "delegate server %s: TLS: its certificate does not name %q, the host as DELEGATE_SERVERS gives it (%v)", a, cc.ServerName, err)
		case errors.As(err, &rec):
			return nil, wire.Errorf(wire.EACCES, "delegate server %s: TLS: the server does not speak TLS (started without --tls-cert?)", a)
		}
		return nil, wire.Errorf(wire.EUNREACHABLE, "delegate server %s: TLS handshake: %v", a, err)
	}
	return tc, nil
}

// NetConn returns the connection under a TLS connection, or c itself.
func NetConn(c net.Conn) net.Conn {
	if tc, ok := c.(*tls.Conn); ok {
		return tc.NetConn()
	}
	return c
}

// SelfSigned makes a certificate for a job's servers that is its own CA:
// valid for validity from now, naming each of hosts (addresses as IP
// addresses, names as DNS names), with an ECDSA P-256 key. It returns the
// certificate's and the key's PEM.
func SelfSigned(hosts []string, validity time.Duration) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "delegate job servers"},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), nil
}
