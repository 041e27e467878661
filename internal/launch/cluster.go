package launch

// Servers on many hosts, started through the job's own launcher.
//
// With a host list (--hosts, --hostfile) delegate-run starts K servers per
// host with hydra's mpiexec (-hosts LIST -ppn K), so that they inherit the
// user's HYDRA_* settings (launcher, launcher exec, interface); inside a
// Slurm allocation without a host list, with srun --overlap on the
// allocation's nodes. Every server gets the whole list (host-major: the K
// servers of the first host, then the second host's, ...), which is also
// the order both launchers place ranks in, and finds its own entry from
// its rank (--index rank). It listens there on TCP, and on a private Unix
// socket for the clients of its own host. Nothing goes through a path that
// only this host sees: the job secret reaches servers and ranks in their
// environment (which both launchers carry to every host), readiness and
// final statistics come back as lines on the launcher's stdout, and
// shutdown is a stop request delegate-run sends each server over the
// network (a monitor session with the job secret), after which they drain
// and exit, and the launcher with them. One server that dies does not stop
// the others (hydra -disable-auto-cleanup, srun --kill-on-bad-exit=0). If
// delegate-run dies, the launcher gets SIGTERM (hydra passes it on; under
// srun the servers see the end of their stdin).

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/delegate-io/delegate/internal/monitor"
	"github.com/delegate-io/delegate/internal/stats"
	"github.com/delegate-io/delegate/internal/transport"
)

// Port range a per-run port is drawn from: below Linux's ephemeral range
// (32768-60999), so that outgoing connections do not hold it by chance.
const (
	portLow  = 20000
	portHigh = 32000
)

// stopAskTimeout bounds connecting to a server to ask it to stop.
const stopAskTimeout = 5 * time.Second

// startDrainTimeout bounds the stop after a failed start, when no client
// has written anything yet.
const startDrainTimeout = 10 * time.Second

// stdoutGrace is how long the launcher's stdout may stay open after it
// exited (held by a process it left behind).
const stdoutGrace = 5 * time.Second

// cluster is a set of servers started through a launcher.
type cluster struct {
	o      Options
	token  string      // the job secret
	tls    *tls.Config // trusts the servers' certificate, if they run TLS
	addrs  []string
	index  map[string]int // address -> position
	cmd    *exec.Cmd
	events chan event
	stdin  io.WriteCloser // the servers' stdin under srun (--stop-on-eof)
	exited chan struct{}  // closed when the launcher has exited
	err    error          // the launcher's exit error, valid after exited
	snaps  []*stats.Snapshot
}

type event struct {
	ready  int    // index of a server that listens, or -1
	failed string // a server's start failure
}

// Addresses returns the server list for hosts: perHost servers per host on
// consecutive ports from port, host-major.
func Addresses(hosts []string, perHost, port int) []string {
	var out []string
	for _, h := range hosts {
		for k := 0; k < perHost; k++ {
			out = append(out, "tcp:"+net.JoinHostPort(h, strconv.Itoa(port+k)))
		}
	}
	return out
}

// NewToken returns a fresh random job secret.
func NewToken() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("job secret: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

// jobCertValidity is how long a per-job certificate (--tls) is valid.
const jobCertValidity = 30 * 24 * time.Hour

// jobTLS makes the per-job certificate of --tls for hosts: the servers'
// environment (certificate and key, inline) and the CA for the clients
// (inline: a file here would not be visible on the other hosts).
func jobTLS(hosts []string) (env []string, ca string, err error) {
	cert, key, err := transport.SelfSigned(hosts, jobCertValidity)
	if err != nil {
		return nil, "", fmt.Errorf("--tls: %w", err)
	}
	ca = transport.InlinePEM(cert)
	return []string{"DELEGATE_TLS_CERT=" + ca, "DELEGATE_TLS_KEY=" + transport.InlinePEM(key)}, ca, nil
}

// launcherArgv is the command that starts the servers.
func launcherArgv(o Options, peers string) []string {
	n, k := len(o.Hosts), o.ServersPerHost
	server := append([]string{o.ServerBin, "--peers", peers, "--index", "rank",
		"--ready-fd", "1", "--final-stats", "-", "--log-level", "warn"}, o.ServerArgs...)
	if o.Slurm {
		// srun kills a step on SIGTERM instead of passing it on; the end of
		// stdin, given to every task, stops the servers instead.
		server = append(server[:1], append([]string{"--stop-on-eof"}, server[1:]...)...)
		return append([]string{o.Srun, "--overlap", "--mpi=none", "--kill-on-bad-exit=0", "--input=all",
			"--nodes", strconv.Itoa(n), "--ntasks", strconv.Itoa(n * k), "--ntasks-per-node", strconv.Itoa(k),
			"--distribution", "block", "--nodelist", strings.Join(o.Hosts, ",")}, server...)
	}
	// One server that dies must not take the others' buffers with it:
	// hydra would kill every process of the job (auto-cleanup), srun the
	// step (kill-on-bad-exit).
	return append([]string{o.Mpiexec, "-disable-auto-cleanup", "-hosts", strings.Join(o.Hosts, ","), "-ppn", strconv.Itoa(k),
		"-n", strconv.Itoa(n * k)}, server...)
}

// runCluster is Run for servers on o.Hosts.
func runCluster(ctx context.Context, o Options, command []string) (int, error) {
	if o.ServersPerHost < 1 {
		return 2, fmt.Errorf("--servers-per-host %d: need at least 1", o.ServersPerHost)
	}
	seen := map[string]bool{}
	for _, h := range o.Hosts {
		if seen[h] {
			return 2, fmt.Errorf("host %s is listed twice (for more servers on a host use --servers-per-host)", h)
		}
		seen[h] = true
	}
	port := o.Port
	if port == 0 {
		port = portLow + mrand.IntN(portHigh-portLow-o.ServersPerHost)
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
	token, err := NewToken()
	if err != nil {
		return 1, err
	}
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		return 1, fmt.Errorf("job secret: %w", err)
	}
	c := &cluster{o: o, token: token, addrs: Addresses(o.Hosts, o.ServersPerHost, port), index: map[string]int{},
		exited: make(chan struct{})}
	// At most one ready and one failure line per server: never full.
	c.events = make(chan event, 2*len(c.addrs))
	for i, a := range c.addrs {
		c.index[a] = i
	}
	peers := strings.Join(c.addrs, ",")
	// The servers' environment carries the secret to every host. Settings
	// meant for a server started by hand must not override the flags.
	env := append(os.Environ(), "DELEGATE_TOKEN="+token, "DELEGATE_TOKEN_FILE=", "DELEGATE_LISTEN=", "DELEGATE_PEERS=")
	cmdEnv := []string{"DELEGATE_SERVERS=" + peers, "DELEGATE_TOKEN=" + token, "DELEGATE_TOKEN_FILE=" + tokenFile}
	if o.TLS {
		tlsEnv, ca, err := jobTLS(o.Hosts)
		if err != nil {
			return 1, err
		}
		env = append(env, tlsEnv...)
		cmdEnv = append(cmdEnv, "DELEGATE_TLS_CA="+ca)
		if c.tls, err = transport.ClientTLS(ca); err != nil {
			return 1, err
		}
	} else if ca := os.Getenv("DELEGATE_TLS_CA"); ca != "" {
		// Servers given a certificate by the user (DELEGATE_TLS_CERT and
		// _KEY in the environment): stop them through TLS too.
		if c.tls, err = transport.ClientTLS(ca); err != nil {
			return 1, err
		}
	}
	if err := c.start(launcherArgv(o, peers), env); err != nil {
		// Nothing is buffered yet: the drain is quick, or never comes.
		c.o.DrainTimeout = min(c.o.DrainTimeout, startDrainTimeout)
		c.stop(ctx)
		return 1, err
	}
	status, cmdErr := runCommand(command, cmdEnv)
	snaps, stopErr := c.stop(ctx)
	return finish(o, status, cmdErr, snaps, stopErr)
}

// start runs the launcher and waits until every server listens, one fails,
// the launcher exits or the start timeout passes.
func (c *cluster) start(argv, env []string) error {
	c.cmd = exec.Command(argv[0], argv[1:]...)
	c.cmd.Env = env
	c.cmd.Stderr = c.o.Stderr
	// Its own process group: a ^C at the terminal reaches the command, and
	// we stop the servers after it, so they drain. If delegate-run dies the
	// launcher gets SIGTERM and passes it on.
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM, Setpgid: true}
	// Our own pipe rather than StdoutPipe: a process the launcher leaves
	// behind (a launch helper of a host that went away) may hold its write
	// end, and then Wait must not wait for it.
	out, w, err := os.Pipe()
	if err != nil {
		return err
	}
	c.cmd.Stdout = w
	if c.o.Slurm {
		// Closed by stop (or by our death): the servers' end of stdin.
		if c.stdin, err = c.cmd.StdinPipe(); err != nil {
			return err
		}
	}
	c.snaps = make([]*stats.Snapshot, len(c.addrs))
	err = c.cmd.Start()
	w.Close()
	if err != nil {
		out.Close()
		close(c.exited)
		return fmt.Errorf("start the servers with %s: %w", argv[0], err)
	}
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		c.read(out)
	}()
	go func() {
		err := c.cmd.Wait()
		// The servers' last lines follow the launcher's exit closely;
		// past a grace period the pipe is closed under the reader.
		select {
		case <-readDone:
		case <-time.After(stdoutGrace):
			out.Close()
			<-readDone
		}
		out.Close()
		c.err = err
		close(c.exited)
	}()
	deadline := time.NewTimer(c.o.StartTimeout)
	defer deadline.Stop()
	ready := make([]bool, len(c.addrs))
	// After a failure, wait for the others' word too (each prints one line,
	// ready or failed): a SIGTERM that reaches a host before its server
	// runs is lost, and that server would keep the launcher alive.
	var failed []string
	for n := 0; n < len(c.addrs); {
		select {
		case ev := <-c.events:
			if ev.failed != "" {
				failed = append(failed, ev.failed)
				n++
			} else if !ready[ev.ready] {
				ready[ev.ready] = true
				n++
			}
		case <-c.exited:
			return fmt.Errorf("the servers' launcher (%s) exited at start: %v", argv[0], c.err)
		case <-deadline.C:
			var missing []string
			for i, r := range ready {
				if !r {
					missing = append(missing, c.addrs[i])
				}
			}
			return fmt.Errorf("servers %s did not start listening within %s", strings.Join(missing, ","), c.o.StartTimeout)
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("a server failed to start: %s", strings.Join(failed, "; "))
	}
	return nil
}

// read takes the launcher's stdout: a server's address when it listens, a
// failure line, and its final statistics; anything else goes to stderr.
func (c *cluster) read(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	parts := map[int][]string{} // statistics lines so far, by server
	for sc.Scan() {
		line := unlabel(sc.Text())
		if i, ok := c.index[line]; ok {
			c.send(event{ready: i})
			continue
		}
		if msg, ok := strings.CutPrefix(line, "delegate-failed "); ok {
			c.send(event{ready: -1, failed: msg})
			continue
		}
		if rest, ok := strings.CutPrefix(line, "delegate-stats "); ok && c.statsLine(parts, rest) {
			continue
		}
		fmt.Fprintln(c.o.Stderr, line)
	}
	io.Copy(io.Discard, r) // after an overlong line: keep the launcher from blocking
}

// statsLine takes one line "NAME K/N PART" of a server's final statistics
// (delegate-server --final-stats -) and decodes them once all N came.
func (c *cluster) statsLine(parts map[int][]string, line string) bool {
	f := strings.SplitN(line, " ", 3)
	if len(f) != 3 {
		return false
	}
	i, ok := c.index[f[0]]
	ks, ns, _ := strings.Cut(f[1], "/")
	k, err1 := strconv.Atoi(ks)
	n, err2 := strconv.Atoi(ns)
	if !ok || err1 != nil || err2 != nil || k != len(parts[i])+1 || k > n {
		return false
	}
	parts[i] = append(parts[i], f[2])
	if k == n {
		var s stats.Snapshot
		if json.Unmarshal([]byte(strings.Join(parts[i], "")), &s) == nil {
			c.snaps[i] = &s
		}
		delete(parts, i)
	}
	return true
}

// unlabel drops the rank label a launcher may put before each line
// (hydra -prepend-rank: "[3] ", srun --label: "3: ").
func unlabel(line string) string {
	if rest, ok := strings.CutPrefix(line, "["); ok {
		if n, tail, ok := strings.Cut(rest, "] "); ok && isDigits(n) {
			return tail
		}
	}
	if n, tail, ok := strings.Cut(line, ": "); ok && isDigits(strings.TrimSpace(n)) {
		return tail
	}
	return line
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

// send passes an event to start, which stops listening once it returns.
func (c *cluster) send(ev event) {
	select {
	case c.events <- ev:
	default:
	}
}

// stop asks every server to stop (askStop); they drain and report, and
// the launcher exits. A launcher that does not end within the drain timeout
// is interrupted twice (hydra then kills the servers) and then killed.
func (c *cluster) stop(ctx context.Context) ([]stats.Snapshot, error) {
	if c.cmd == nil || c.cmd.Process == nil {
		return nil, nil
	}
	var errs []error
	select {
	case <-c.exited:
	default:
		// Each server is asked over the network, with the job secret: the
		// launchers' own signal paths are fragile (hydra aborts the whole
		// job if it cannot pass a signal to a host whose server died;
		// srun kills a step on SIGTERM). Under srun the end of stdin comes
		// too; hydra gets SIGTERM only if no server could be asked.
		asked := c.askStop(ctx)
		if c.stdin != nil {
			c.stdin.Close()
		} else if asked == 0 {
			c.cmd.Process.Signal(syscall.SIGTERM)
		}
	}
	deadline := time.NewTimer(c.o.DrainTimeout)
	defer deadline.Stop()
	select {
	case <-c.exited:
	case <-deadline.C:
		errs = append(errs, fmt.Errorf("the servers did not drain within %s and were killed", c.o.DrainTimeout))
		c.cmd.Process.Signal(syscall.SIGTERM) // srun: kill the step
		c.cmd.Process.Signal(syscall.SIGINT)
		c.cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-c.exited:
		case <-time.After(5 * time.Second):
			syscall.Kill(-c.cmd.Process.Pid, syscall.SIGKILL)
			<-c.exited
		}
	}
	if c.err != nil {
		errs = append(errs, fmt.Errorf("the servers' launcher: %w", c.err))
	}
	var snaps []stats.Snapshot
	for i, s := range c.snaps {
		if s == nil {
			errs = append(errs, fmt.Errorf("server %s sent no final statistics (it did not drain, or never started)", c.addrs[i]))
			continue
		}
		snaps = append(snaps, *s)
	}
	return snaps, errors.Join(errs...)
}

// askStop sends every server a stop request and returns how many took it.
func (c *cluster) askStop(ctx context.Context) int {
	took := make(chan bool, len(c.addrs))
	for _, a := range c.addrs {
		go func() {
			ctx, cancel := context.WithTimeout(ctx, stopAskTimeout)
			defer cancel()
			m, err := monitor.Connect(ctx, a, c.token, c.tls, stopAskTimeout)
			if err == nil {
				_, err = m.Stop()
				m.Close()
			}
			if err != nil {
				fmt.Fprintf(c.o.Stderr, "delegate-run: could not ask server %s to stop: %v\n", a, err)
			}
			took <- err == nil
		}()
	}
	n := 0
	for range c.addrs {
		if <-took {
			n++
		}
	}
	return n
}

// ParseHostfile reads hydra's host file format: one host per line,
// optionally host:slots and further key=value settings, # comments. Slots
// are ignored: --servers-per-host says how many servers a host runs.
func ParseHostfile(r io.Reader) ([]string, error) {
	var hosts []string
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line, _, _ := strings.Cut(sc.Text(), "#")
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		hosts = append(hosts, hostOf(f[0]))
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(hosts) == 0 {
		return nil, errors.New("no hosts in the host file")
	}
	return hosts, nil
}

// ParseHosts splits a --hosts list (host or host:slots, comma-separated).
func ParseHosts(s string) ([]string, error) {
	var hosts []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			hosts = append(hosts, hostOf(f))
		}
	}
	if len(hosts) == 0 {
		return nil, fmt.Errorf("empty host list %q", s)
	}
	return hosts, nil
}

// hostOf drops a :slots suffix (and the brackets of an IPv6 address).
func hostOf(s string) string {
	if strings.HasPrefix(s, "[") {
		if i := strings.Index(s, "]"); i > 0 {
			return s[1:i]
		}
	}
	if strings.Count(s, ":") == 1 {
		s, _, _ = strings.Cut(s, ":")
	}
	return s
}

// ExpandNodelist expands a Slurm node list such as "n[1-3,05],gpu7" into
// node names, in Slurm's order.
func ExpandNodelist(s string) ([]string, error) {
	var out []string
	for s != "" {
		// One entry: up to a comma outside brackets.
		depth, end := 0, len(s)
		for i, r := range s {
			if r == '[' {
				depth++
			} else if r == ']' {
				depth--
			} else if r == ',' && depth == 0 {
				end = i
				break
			}
		}
		entry := s[:end]
		s = strings.TrimPrefix(s[end:], ",")
		names, err := expandEntry(entry)
		if err != nil {
			return nil, fmt.Errorf("node list %q: %w", entry, err)
		}
		out = append(out, names...)
	}
	if len(out) == 0 {
		return nil, errors.New("empty node list")
	}
	return out, nil
}

// expandEntry expands prefix[ranges]suffix, recursively for the suffix.
func expandEntry(e string) ([]string, error) {
	open := strings.Index(e, "[")
	if open < 0 {
		if strings.Contains(e, "]") {
			return nil, errors.New("unbalanced ]")
		}
		return []string{e}, nil
	}
	close := strings.Index(e, "]")
	if close < open {
		return nil, errors.New("unbalanced [")
	}
	prefix, ranges, rest := e[:open], e[open+1:close], e[close+1:]
	tails, err := expandEntry(rest)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, r := range strings.Split(ranges, ",") {
		lo, hi, isRange := strings.Cut(r, "-")
		if !isRange {
			hi = lo
		}
		a, err1 := strconv.Atoi(lo)
		b, err2 := strconv.Atoi(hi)
		if err1 != nil || err2 != nil || b < a || b-a > 100000 {
			return nil, fmt.Errorf("bad range %q", r)
		}
		for n := a; n <= b; n++ {
			num := fmt.Sprintf("%0*d", len(lo), n) // keeps leading zeros
			for _, t := range tails {
				out = append(out, prefix+num+t)
			}
		}
	}
	return out, nil
}
