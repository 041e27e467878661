package main

import (
	"bufio"
	"bytes"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/delegate-io/delegate/internal/client"
	"github.com/delegate-io/delegate/internal/transport"
	"github.com/delegate-io/delegate/internal/wire"
)

// The test binary runs the server's main when this variable is set, so the
// tests below start real server processes without building one.
const mainEnv = "DELEGATE_TEST_SERVER_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(mainEnv) == "1" {
		if v := os.Getenv("DELEGATE_TEST_NOFILE"); v != "" {
			n, _ := strconv.ParseUint(v, 10, 64)
			if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: n, Max: n}); err != nil {
				panic(err)
			}
		}
		os.Exit(serve(os.Args[1:]))
	}
	os.Exit(m.Run())
}

// startServer returns a command running delegate-server with args and env (on
// top of an environment without DELEGATE_* variables).
func startServer(t *testing.T, env []string, args ...string) (*exec.Cmd, *syncBuffer) {
	cmd := exec.Command(os.Args[0], args...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "DELEGATE_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, mainEnv+"=1")
	cmd.Env = append(cmd.Env, env...)
	stderr := new(syncBuffer)
	cmd.Stderr = stderr
	return cmd, stderr
}

// syncBuffer is a bytes.Buffer that the test reads while the process
// writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func exitCode(t *testing.T, cmd *exec.Cmd) int {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		t.Fatal("server did not exit")
	}
	return cmd.ProcessState.ExitCode()
}

func writeFile(t *testing.T, content string) string {
	p := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestRefusedAtStart: configurations that would turn authentication off
// without saying so are refused with exit status 2 and a clear message.
func TestRefusedAtStart(t *testing.T) {
	sock := "unix:" + filepath.Join(t.TempDir(), "s.sock")
	cases := []struct {
		name string
		env  []string
		args []string
		want string
	}{
		{"empty token file", nil, []string{"--listen", sock, "--token-file", writeFile(t, "")}, "empty or only white space"},
		{"white-space token file", nil, []string{"--listen", sock, "--token-file", writeFile(t, " \n\t\r\n")}, "empty or only white space"},
		{"missing token file", nil, []string{"--listen", sock, "--token-file", "/nonexistent/token"}, "--token-file"},
		{"white-space DELEGATE_TOKEN", []string{"DELEGATE_TOKEN=  "}, []string{"--listen", sock}, "DELEGATE_TOKEN is set but empty"},
		{"empty DELEGATE_TOKEN", []string{"DELEGATE_TOKEN="}, []string{"--listen", sock}, "DELEGATE_TOKEN is set but empty"},
		{"empty DELEGATE_TOKEN_FILE", []string{"DELEGATE_TOKEN_FILE=" + writeFile(t, "\n")}, []string{"--listen", sock}, "empty or only white space"},
		{"TCP without a token", nil, []string{"--listen", "tcp:127.0.0.1:0"}, "--insecure"},
		{"backend delay not a duration", nil, []string{"--listen", sock, "--backend-delay", "2"}, "--backend-delay"},
		{"negative backend delay", []string{"DELEGATE_BACKEND_READ_DELAY=-1ms"}, []string{"--listen", sock}, "must not be negative"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cmd, stderr := startServer(t, c.env, c.args...)
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			if code := exitCode(t, cmd); code != 2 {
				t.Fatalf("exit %d, want 2; stderr:\n%s", code, stderr)
			}
			if !strings.Contains(stderr.String(), c.want) {
				t.Fatalf("stderr does not say %q:\n%s", c.want, stderr)
			}
		})
	}
}

// TestStarts: the accepted configurations start (ready line), warn where
// they should, and exit 0 on SIGTERM.
func TestStarts(t *testing.T) {
	cases := []struct {
		name string
		env  []string
		args []string
		warn bool
	}{
		{"TCP with --insecure", nil, []string{"--listen", "tcp:127.0.0.1:0", "--insecure"}, true},
		{"TCP with a token file", nil, []string{"--listen", "tcp:127.0.0.1:0", "--token-file", writeFile(t, "s3cret\n")}, false},
		{"TCP with DELEGATE_TOKEN", []string{"DELEGATE_TOKEN=s3cret"}, []string{"--listen", "tcp:127.0.0.1:0"}, false},
		{"Unix without a token", nil, []string{"--listen", "unix:" + filepath.Join(t.TempDir(), "s.sock")}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r, w, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			cmd, stderr := startServer(t, c.env, append(c.args, "--ready-fd", "3", "--handshake-timeout", "2s", "--max-hellos", "8")...)
			cmd.ExtraFiles = []*os.File{w}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			w.Close()
			ready := make(chan string, 1)
			go func() {
				line, _ := bufio.NewReader(r).ReadString('\n')
				ready <- line
			}()
			select {
			case line := <-ready:
				if line == "" {
					exitCode(t, cmd)
					t.Fatalf("server exited before it was ready; stderr:\n%s", stderr)
				}
			case <-time.After(20 * time.Second):
				cmd.Process.Kill()
				t.Fatalf("server not ready; stderr:\n%s", stderr)
			}
			cmd.Process.Signal(syscall.SIGTERM)
			if code := exitCode(t, cmd); code != 0 {
				t.Fatalf("exit %d after SIGTERM; stderr:\n%s", code, stderr)
			}
			if warned := strings.Contains(stderr.String(), "without a token"); warned != c.warn {
				t.Fatalf("warning about TCP without a token: %v, want %v; stderr:\n%s", warned, c.warn, stderr)
			}
		})
	}
}

// TestPrintConfig shows the hardening settings.
func TestPrintConfig(t *testing.T) {
	cmd, stderr := startServer(t, nil, "--listen", "tcp:127.0.0.1:7000", "--insecure", "--max-hellos", "9", "--handshake-timeout", "3s", "--print-config")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%v; stderr:\n%s", err, stderr)
	}
	for _, want := range []string{"insecure           true", "max-hellos         9", "handshake-timeout  3s"} {
		if !strings.Contains(string(out), want) {
			t.Fatalf("print-config lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(string(out), "backend-delay") {
		t.Fatalf("print-config shows a backend delay nobody asked for:\n%s", out)
	}
	// the test knob, from the flag and from the environment
	cmd, stderr = startServer(t, []string{"DELEGATE_BACKEND_READ_DELAY=5ms"}, "--listen", "unix:"+filepath.Join(t.TempDir(), "s.sock"),
		"--backend-delay", "20ms", "--print-config")
	if out, err = cmd.Output(); err != nil {
		t.Fatalf("%v; stderr:\n%s", err, stderr)
	}
	for _, want := range []string{"backend-delay      20ms", "backend-read-delay 5ms"} {
		if !strings.Contains(string(out), want) {
			t.Fatalf("print-config lacks %q:\n%s", want, out)
		}
	}
}

// ready starts cmd with a ready pipe on descriptor 3 and waits for its line.
func ready(t *testing.T, cmd *exec.Cmd, stderr *syncBuffer) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	cmd.ExtraFiles = []*os.File{w}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	line := make(chan string, 1)
	go func() {
		l, _ := bufio.NewReader(r).ReadString('\n')
		line <- l
	}()
	select {
	case l := <-line:
		if l == "" {
			exitCode(t, cmd)
			t.Fatalf("server exited before it was ready; stderr:\n%s", stderr)
		}
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("server not ready; stderr:\n%s", stderr)
	}
}

// TestDescriptorExhaustion (issue 9 item 2): a server out of descriptors
// (authenticated connections hold them all, accept fails with EMFILE) keeps
// running, serves again once descriptors free up, and loses no
// acknowledged byte: it used to return from Serve and exit without writing
// its buffer.
func TestDescriptorExhaustion(t *testing.T) {
	dir, err := os.MkdirTemp("", "dlg-nofile-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	addr := transport.Addr{Net: "unix", Addr: filepath.Join(dir, "s.sock")}
	cmd, stderr := startServer(t, []string{"DELEGATE_TEST_NOFILE=40"}, "--listen", addr.String(), "--root", dir,
		"--flush-idle", "1h", "--max-hellos", "8", "--handshake-timeout", "2s", "--log-level", "warn", "--ready-fd", "3")
	ready(t, cmd, stderr)
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	defer func() {
		select {
		case <-exited:
		default:
			cmd.Process.Kill()
			<-exited
		}
	}()

	// Acknowledged, buffered, not on disk yet.
	ctx := context.Background()
	cfg := client.DefaultConfig()
	cfg.Servers = []transport.Addr{addr}
	cfg.RingBytes = 0
	cfg.Timeout = 2 * time.Second
	path := filepath.Join(dir, "data")
	data := bytes.Repeat([]byte("acknowledged "), 40<<10)
	cl, err := client.New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	f, err := cl.Open(ctx, path, wire.ORdwr|wire.OCreat, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([][]byte{data}, []client.Extent{{Off: 0, Len: int64(len(data))}}, client.IOOpts{Ack: true}); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(path); bytes.Equal(b, data) {
		t.Fatal("the data is on disk already: the test would prove nothing")
	}

	// Use up the server's descriptors with authenticated client
	// connections until a hello goes unanswered: accept fails. (Not
	// monitors: a server admits only a few of those at once.)
	var held []net.Conn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	exhausted := false
	for i := 0; i < 60 && !exhausted; i++ {
		c, err := net.Dial(addr.Net, addr.Addr)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
		_, err = transport.ClientHello(c, &wire.Hello{Client: "hog", Servers: 1}, -1, 3*time.Second, "") // unanswered: accept failed (a slow answer under load is not)
		exhausted = err != nil
	}
	if !exhausted {
		t.Fatal("60 connections did not exhaust 40 descriptors")
	}
	// Several accept retries logged, and the server still running: waited
	// for, not slept for (a fixed 2 s could pass on a loaded machine before
	// the first retry).
	retries := time.NewTicker(20 * time.Millisecond)
	defer retries.Stop()
	giveUp := time.After(30 * time.Second)
	for strings.Count(stderr.String(), "accept failed, retrying") < 3 {
		select {
		case <-exited:
			t.Fatalf("server exited when out of descriptors; stderr:\n%s", stderr)
		case <-giveUp:
			t.Fatalf("fewer than 3 accept retries logged in 30 s; stderr:\n%s", stderr)
		case <-retries.C:
		}
	}
	select {
	case <-exited:
		t.Fatalf("server exited when out of descriptors; stderr:\n%s", stderr)
	default:
	}
	// The existing session still works while the server is out of
	// descriptors: read back what it wrote.
	got := make([]byte, len(data))
	if _, err := f.Read([][]byte{got}, []client.Extent{{Off: 0, Len: int64(len(got))}}, client.IOOpts{}); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read while out of descriptors: %v, equal %v", err, bytes.Equal(got, data))
	}
	for _, c := range held {
		c.Close()
	}
	held = nil

	// Descriptors free again: a new client gets in.
	deadline := time.Now().Add(15 * time.Second)
	for {
		cl2, err := client.New(ctx, cfg)
		if err == nil {
			cl2.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no client after the descriptors came back: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	f.Close()
	cl.Close()
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(30 * time.Second):
		t.Fatal("no exit after SIGTERM")
	}
	if code := cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("exit %d; stderr:\n%s", code, stderr)
	}
	if b, err := os.ReadFile(path); err != nil || !bytes.Equal(b, data) {
		t.Fatalf("on disk after the drain: %v, %d bytes of %d, equal %v", err, len(b), len(data), bytes.Equal(b, data))
	}
}
