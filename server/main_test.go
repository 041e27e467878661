package main

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The test binary runs the server's main when this variable is set, so the
// tests below start real server processes without building one.
const mainEnv = "DELEGATE_TEST_SERVER_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(mainEnv) == "1" {
		os.Exit(serve(os.Args[1:]))
	}
	os.Exit(m.Run())
}

// startServer returns a command running delegate-server with args and env (on
// top of an environment without DELEGATE_* variables).
func startServer(t *testing.T, env []string, args ...string) (*exec.Cmd, *bytes.Buffer) {
	cmd := exec.Command(os.Args[0], args...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "DELEGATE_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, mainEnv+"=1")
	cmd.Env = append(cmd.Env, env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	return cmd, &stderr
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
}
