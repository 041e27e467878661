package transport

import (
	"strings"
	"testing"
)

func TestHostID(t *testing.T) {
	a, b := HostID(), HostID()
	if a == "" {
		t.Skip("no /proc/sys/kernel/random/boot_id or /proc/self/ns/net here")
	}
	if a != b {
		t.Fatalf("HostID changed between calls: %q, %q", a, b)
	}
	if !strings.Contains(a, "/net:") {
		t.Fatalf("HostID %q lacks the network namespace", a)
	}
}
