// Package launch is delegate-run: start delegate servers, run a command
// (normally mpiexec) with DELEGATE_SERVERS pointing at them, shut the
// servers down cleanly (they drain their buffers), print their statistics,
// and return the command's exit status. The servers run on this host, on
// Unix sockets in a private directory, or on many hosts, started through
// the job's own launcher (cluster.go).
package launch

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/delegate-io/delegate/internal/stats"
)

// Options configure a run.
type Options struct {
	Servers      int           // number of servers
	ServerBin    string        // path of delegate-server
	ServerArgs   []string      // extra arguments for every server
	Dir          string        // where sockets go (default: a new temporary directory)
	StartTimeout time.Duration // how long servers may take to listen
	DrainTimeout time.Duration // how long servers may take to drain at the end
	Quiet        bool          // no statistics summary
	Stderr       io.Writer     // where the summary and launcher messages go

	// Hosts, if set, run the servers there, on TCP, started by hydra's
	// mpiexec (or by srun when Slurm is set), ServersPerHost on each, on
	// consecutive ports from Port (0: drawn per run).
	Hosts          []string
	ServersPerHost int
	Port           int
	Slurm          bool
	Mpiexec        string // hydra's mpiexec (default "mpiexec")
	Srun           string // Slurm's srun (default "srun")
	// TLS makes a per-job self-signed certificate naming Hosts, hands it
	// (and its key) to the servers and the CA to COMMAND in the
	// environment, inline (never a path: other hosts do not see ours),
	// and runs every TCP connection over TLS. Ignored on one host (Unix
	// sockets).
	TLS bool
}

type proc struct {
	cmd   *exec.Cmd
	addr  string
	stats string // final statistics file
	done  chan error
}

// Run runs command under servers and returns its exit status (128+signal
// if a signal ended it), or 1 with an error if the servers failed. ctx
// bounds the requests delegate-run sends servers on other hosts.
func Run(ctx context.Context, o Options, command []string) (int, error) {
	if len(command) == 0 {
		return 2, errors.New("no command given (delegate-run [options] -- COMMAND...)")
	}
	// Servers, launchers and our own goroutines all write to it; a file
	// takes concurrent writes as they are (and passes to children as is).
	if _, isFile := o.Stderr.(*os.File); !isFile {
		o.Stderr = &syncWriter{w: o.Stderr}
	}
	if o.Mpiexec == "" {
		o.Mpiexec = "mpiexec"
	}
	if o.Srun == "" {
		o.Srun = "srun"
	}
	if len(o.Hosts) > 0 {
		return runCluster(ctx, o, command)
	}
	if o.Servers < 1 {
		return 2, fmt.Errorf("--servers %d: need at least 1", o.Servers)
	}
	dir := o.Dir
	if dir == "" {
		d, err := os.MkdirTemp("", "delegate-run-")
		if err != nil {
			return 1, err
		}
		defer os.RemoveAll(d)
		dir = d
	}
	if abs, err := filepath.Abs(dir); err == nil {
		dir = abs // the servers report canonical (absolute) addresses
	}
	addrs := make([]string, o.Servers)
	for i := range addrs {
		addrs[i] = "unix:" + filepath.Join(dir, fmt.Sprintf("s%d.sock", i))
	}
	procs, err := startServers(o, dir, addrs)
	if err != nil {
		stopServers(o, procs)
		return 1, err
	}
	status, cmdErr := runCommand(command, []string{"DELEGATE_SERVERS=" + strings.Join(addrs, ",")})
	snaps, stopErr := stopServers(o, procs)
	return finish(o, status, cmdErr, snaps, stopErr)
}

// finish prints the servers' summary and returns the launcher's status:
// the command's, or 1 when the servers did not drain after a command that
// succeeded (its data may not have reached the backend: a failure even so).
func finish(o Options, status int, cmdErr error, snaps []stats.Snapshot, stopErr error) (int, error) {
	if !o.Quiet && len(snaps) > 0 {
		fmt.Fprint(o.Stderr, Summary(snaps))
	}
	if cmdErr != nil {
		return status, cmdErr
	}
	if stopErr != nil {
		if status == 0 {
			status = 1
		}
		return status, stopErr
	}
	return status, nil
}

func startServers(o Options, dir string, addrs []string) ([]*proc, error) {
	peers := strings.Join(addrs, ",")
	var procs []*proc
	ready := make(chan int, len(addrs))
	exited := make(chan *proc, len(addrs))
	for i, a := range addrs {
		r, w, err := os.Pipe()
		if err != nil {
			return procs, err
		}
		p := &proc{addr: a, stats: filepath.Join(dir, fmt.Sprintf("s%d.stats.json", i)), done: make(chan error, 1)}
		args := append([]string{"--listen", a, "--peers", peers, "--index", fmt.Sprint(i),
			"--log-level", "warn", "--ready-fd", "3", "--final-stats", p.stats}, o.ServerArgs...)
		p.cmd = exec.Command(o.ServerBin, args...)
		p.cmd.Stdout, p.cmd.Stderr = o.Stderr, o.Stderr
		p.cmd.ExtraFiles = []*os.File{w}
		// Servers get SIGHUP if the launcher dies, and drain: not SIGTERM,
		// since the kernel sends the parent-death signal once per exiting
		// thread of the launcher, and a second SIGTERM would stop a
		// server's drain (it ignores repeated SIGHUPs). They are not in the
		// terminal's process group: a ^C reaches the command, and the
		// servers are stopped by us, after it, so they drain.
		p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGHUP, Setpgid: true}
		if err := p.cmd.Start(); err != nil {
			w.Close()
			r.Close()
			return procs, fmt.Errorf("start %s: %w", o.ServerBin, err)
		}
		w.Close()
		procs = append(procs, p)
		go func() {
			err := p.cmd.Wait()
			p.done <- err
			exited <- p
		}()
		go func() {
			defer r.Close()
			line, err := bufio.NewReader(r).ReadString('\n')
			if err == nil && strings.TrimSpace(line) == a {
				ready <- i
			}
		}()
	}
	deadline := time.After(o.StartTimeout)
	for n := 0; n < len(procs); {
		select {
		case <-ready:
			n++
		case p := <-exited:
			err := <-p.done
			p.done <- err // stopServers collects it again
			return procs, fmt.Errorf("server %s exited at start: %w", p.addr, err)
		case <-deadline:
			return procs, fmt.Errorf("servers did not start listening within %s", o.StartTimeout)
		}
	}
	return procs, nil
}

// runCommand runs the command with env added to ours (DELEGATE_SERVERS,
// ...), forwarding SIGINT and SIGTERM to it.
func runCommand(command []string, env []string) (int, error) {
	cmd := exec.Command(command[0], command[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(), env...)
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	if err := cmd.Start(); err != nil {
		return 127, fmt.Errorf("start %s: %w", command[0], err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	for {
		select {
		case sig := <-sigs:
			cmd.Process.Signal(sig)
		case err := <-done:
			return exitStatus(cmd, err), nil
		}
	}
}

func exitStatus(cmd *exec.Cmd, err error) int {
	if cmd.ProcessState == nil {
		return 1
	}
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return cmd.ProcessState.ExitCode()
}

// stopServers sends SIGTERM, waits for the drain, and collects the final
// statistics. A server that does not finish in time is killed, and that
// is an error: its buffered data did not reach the backend.
func stopServers(o Options, procs []*proc) ([]stats.Snapshot, error) {
	for _, p := range procs {
		p.cmd.Process.Signal(syscall.SIGTERM)
	}
	var errs []error
	var snaps []stats.Snapshot
	deadline := time.NewTimer(o.DrainTimeout)
	defer deadline.Stop()
	for _, p := range procs {
		var err error
		select {
		case err = <-p.done:
		case <-deadline.C:
			p.cmd.Process.Kill()
			err = fmt.Errorf("did not drain within %s and was killed", o.DrainTimeout)
			<-p.done
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("server %s: %w", p.addr, err))
		}
		if b, rerr := os.ReadFile(p.stats); rerr == nil {
			var s stats.Snapshot
			if json.Unmarshal(b, &s) == nil {
				snaps = append(snaps, s)
			}
		}
	}
	return snaps, errors.Join(errs...)
}

// Summary renders the servers' final statistics.
func Summary(snaps []stats.Snapshot) string {
	var b strings.Builder
	fmt.Fprintf(&b, "delegate-run: %d server(s), final statistics\n", len(snaps))
	for _, s := range snaps {
		b.WriteString(s.String())
	}
	if len(snaps) > 1 {
		var total stats.Snapshot
		for i := range snaps {
			total.Add(&snaps[i])
		}
		total.Name = "(all servers)"
		total.Uptime = snaps[0].Uptime
		b.WriteString(total.String())
	}
	lists := make([][]stats.File, len(snaps))
	for i := range snaps {
		lists[i] = snaps[i].Files
	}
	b.WriteString(stats.FilesSummary(stats.MergeFiles(lists...), TopFiles))
	return b.String()
}

// TopFiles is how many files the summary shows (the heaviest).
const TopFiles = 5

// syncWriter serializes writes to w.
type syncWriter struct {
	mu sync.Mutex // covers w
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}
