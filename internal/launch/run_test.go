package launch

import (
	"bytes"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// fakeHydra stands in for `mpiexec -hosts H -ppn K -n N CMD...` on one
// host: it starts N copies of CMD with PMI_RANK set and passes SIGTERM on.
const fakeHydra = `#!/bin/sh
shift 5
n=$2
shift 2
pids=""
r=0
while [ $r -lt $n ]; do
	PMI_RANK=$r "$@" &
	pids="$pids $!"
	r=$((r + 1))
done
trap 'kill -TERM $pids' TERM
wait
wait
`

// buildServer builds delegate-server for the test.
func buildServer(t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "delegate-server")
	out, err := exec.Command("go", "build", "-o", bin, "../../server").CombinedOutput()
	if err != nil {
		t.Skipf("cannot build delegate-server: %v\n%s", err, out)
	}
	return bin
}

// freePort returns a port with k free ports from it on 127.0.0.1 (free
// when asked).
func freePort(t *testing.T, k int) int {
	t.Helper()
	for tries := 0; tries < 20; tries++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		p := l.Addr().(*net.TCPAddr).Port
		l.Close()
		ok := true
		for i := 1; i < k; i++ {
			if l2, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", itoa(p+i))); err != nil {
				ok = false
			} else {
				l2.Close()
			}
		}
		if ok {
			return p
		}
	}
	t.Fatal("no free ports")
	return 0
}

func itoa(n int) string { return strconv.Itoa(n) }

// TestClusterRun drives runCluster through a fake hydra: servers report
// that they listen, the command sees the list and the secret, the servers
// drain on SIGTERM and their statistics come back on stdout; a taken port
// fails the start at once, naming the server.
func TestClusterRun(t *testing.T) {
	if testing.Short() {
		t.Skip("builds delegate-server")
	}
	dir := t.TempDir()
	t.Setenv("TMPDIR", dir)
	bin := buildServer(t, dir)
	mpiexec := filepath.Join(dir, "mpiexec")
	if err := os.WriteFile(mpiexec, []byte(fakeHydra), 0o755); err != nil {
		t.Fatal(err)
	}
	port := freePort(t, 2)
	seen := filepath.Join(dir, "seen")
	var stderr bytes.Buffer
	o := Options{Hosts: []string{"127.0.0.1"}, ServersPerHost: 2, Port: port, ServerBin: bin, Mpiexec: mpiexec,
		StartTimeout: 20 * time.Second, DrainTimeout: 20 * time.Second, Stderr: &stderr}
	status, err := Run(context.Background(), o, []string{"sh", "-c", `echo "$DELEGATE_SERVERS $DELEGATE_TOKEN $(cat "$DELEGATE_TOKEN_FILE")" >` + seen})
	if status != 0 || err != nil {
		t.Fatalf("status %d, %v\n%s", status, err, stderr.String())
	}
	b, _ := os.ReadFile(seen)
	f := strings.Fields(string(b))
	want := "tcp:127.0.0.1:" + itoa(port) + ",tcp:127.0.0.1:" + itoa(port+1)
	if len(f) != 3 || f[0] != want || len(f[1]) != 64 || f[1] != f[2] {
		t.Errorf("the command saw %q; want %s, a 64-digit secret, the same in the file", b, want)
	}
	if s := stderr.String(); !strings.Contains(s, "2 server(s), final statistics") || !strings.Contains(s, "server tcp:127.0.0.1:"+itoa(port+1)) {
		t.Errorf("no summary of both servers:\n%s", s)
	}

	// A port in the way: the server's failure line ends the start at once.
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", itoa(port+1)))
	if err != nil {
		t.Skipf("port %d taken meanwhile: %v", port+1, err)
	}
	defer l.Close()
	stderr.Reset()
	t0 := time.Now()
	status, err = Run(context.Background(), o, []string{"true"})
	if status == 0 || err == nil || !strings.Contains(err.Error(), "failed to start") || !strings.Contains(err.Error(), itoa(port+1)) {
		t.Errorf("port taken: status %d, %v", status, err)
	}
	if d := time.Since(t0); d > 10*time.Second {
		t.Errorf("the failed start took %s:\n%s", d, stderr.String())
	}
}
