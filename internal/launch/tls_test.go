package launch

import (
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"net"
	"strings"
	"testing"

	"github.com/delegate-io/delegate/internal/transport"
)

// TestJobTLS: --tls hands the servers a certificate and key and the
// clients a CA, all inline (no path another host could not see), and the
// certificate names every host as the list gives it.
func TestJobTLS(t *testing.T) {
	hosts := []string{"n1", "10.77.0.2", "io-3.example"}
	env, ca, err := jobTLS(hosts)
	if err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		vars[k] = v
	}
	for _, v := range []string{vars["DELEGATE_TLS_CERT"], vars["DELEGATE_TLS_KEY"], ca} {
		if !strings.HasPrefix(v, "base64:") || strings.Contains(v, "\n") {
			t.Fatalf("not inline: %.40q", v)
		}
	}
	if _, err := transport.ServerTLS(vars["DELEGATE_TLS_CERT"], vars["DELEGATE_TLS_KEY"]); err != nil {
		t.Fatalf("servers cannot use it: %v", err)
	}
	if _, err := transport.ClientTLS(ca); err != nil {
		t.Fatalf("clients cannot use it: %v", err)
	}
	pemBytes, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(ca, "base64:"))
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(pemBytes)
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range hosts {
		if err := cert.VerifyHostname(h); err != nil {
			t.Errorf("certificate does not name %s: %v", h, err)
		}
	}
	if err := cert.VerifyHostname("n4"); err == nil {
		t.Error("certificate names a host not in the list")
	}
	if ip := net.ParseIP("10.77.0.2"); len(cert.IPAddresses) != 1 || !cert.IPAddresses[0].Equal(ip) {
		t.Errorf("IP addresses %v", cert.IPAddresses)
	}
}
