// Command delegate-server runs a delegate server, or queries one.
//
//	delegate-server --listen unix:/tmp/dlg.sock [--root DIR] [flags]
//	delegate-server stats --connect unix:/tmp/dlg.sock [--watch 2s]
//	delegate-server recover STATE-DIR...
//
// Every flag can also be set by an environment variable (DELEGATE_LISTEN,
// DELEGATE_ROOT, ...; see -help). SIGTERM, SIGINT or SIGHUP shut the server
// down gracefully: in-flight requests finish and buffered data reaches the
// backend before it exits; a second SIGTERM or SIGINT stops waiting.
package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/delegate-io/delegate/internal/monitor"
	"github.com/delegate-io/delegate/internal/server"
	"github.com/delegate-io/delegate/internal/stats"
	"github.com/delegate-io/delegate/internal/transport"
	"github.com/delegate-io/delegate/internal/units"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "stats" {
		os.Exit(statsCmd(os.Args[2:], os.Stdout))
	}
	if len(os.Args) > 1 && os.Args[1] == "recover" {
		os.Exit(recoverCmd(os.Args[2:]))
	}
	os.Exit(serve(os.Args[1:]))
}

// env returns the environment's value for a flag, or def.
func env(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func serve(args []string) int {
	fs := flag.NewFlagSet("delegate-server", flag.ContinueOnError)
	def := server.DefaultConfig()
	listen := fs.String("listen", env("DELEGATE_LISTEN", ""), "address to listen on: unix:PATH or tcp:HOST:PORT ($DELEGATE_LISTEN; default with --peers: this server's entry)")
	root := fs.String("root", env("DELEGATE_ROOT", def.Root), "serve only paths under this directory ($DELEGATE_ROOT)")
	name := fs.String("name", env("DELEGATE_NAME", ""), "name in logs and stats (default: the listen address)")
	peers := fs.String("peers", env("DELEGATE_PEERS", ""), "comma-separated server list of the job, in client order (set by delegate-run)")
	index := fs.String("index", "0", "this server's position in --peers, or \"rank\": the launcher's rank variable (PMI_RANK, SLURM_PROCID, PMIX_RANK, OMPI_COMM_WORLD_RANK)")
	unixSock := fs.String("unix", "auto", "with a tcp --listen, also serve this Unix socket for clients on this host (shared memory); auto: a private temporary directory; off: none")
	tokenFile := fs.String("token-file", env("DELEGATE_TOKEN_FILE", ""), "file holding the token clients must present ($DELEGATE_TOKEN also works)")
	tlsCert := fs.String("tls-cert", env("DELEGATE_TLS_CERT", ""), "TLS certificate (PEM file, or base64: and the file's base64) for TCP connections; needs --tls-key ($DELEGATE_TLS_CERT)")
	tlsKey := fs.String("tls-key", env("DELEGATE_TLS_KEY", ""), "the certificate's private key, in the same forms ($DELEGATE_TLS_KEY)")
	// Every fs.Bool here is in delegate-run's boolServerFlags too.
	insecure := fs.Bool("insecure", false, "allow a TCP listener without a token (anyone who reaches the port gets in)")
	handshakeTimeout := fs.Duration("handshake-timeout", def.HandshakeTimeout, "a new connection must finish its hello (and authenticate) within this")
	maxHellos := fs.Int("max-hellos", def.MaxHellos, "connections allowed in the hello at once; new ones beyond it are closed")
	maxSessions := fs.String("max-sessions", env("DELEGATE_MAX_SESSIONS", strconv.Itoa(def.MaxSessions)), "client sessions served at once; a client beyond it gets an error naming the limit (monitors get 4 more) ($DELEGATE_MAX_SESSIONS)")
	logLevel := fs.String("log-level", env("DELEGATE_LOG_LEVEL", "info"), "debug, info, warn or error")
	logFormat := fs.String("log-format", env("DELEGATE_LOG_FORMAT", "text"), "text or json")
	keepalive := fs.Duration("keepalive", def.KeepAlive, "keepalive interval; a silent client is dropped after it plus 10s")
	buffer := fs.String("buffer", env("DELEGATE_BUFFER", sizeString(def.BufferBytes)), "memory for write-behind buffers (K, M, G suffixes); writers wait beyond it ($DELEGATE_BUFFER)")
	highWater := fs.Int("high-water", def.HighWaterPct, "flush the fullest files above this percentage of --buffer")
	flushIdle := fs.Duration("flush-idle", def.FlushIdle, "flush a file not written for this long")
	flushFull := fs.Bool("flush-full", def.FlushFull, "write entirely buffered chunks in the background once they make a --flush-run")
	chunk := fs.String("chunk", sizeString(def.ChunkBytes), "alignment of buffered data and backend writes (the stripe size)")
	flushRun := fs.String("flush-run", sizeString(def.FlushRunBytes), "largest backend write of the flusher")
	direct := fs.String("direct", sizeString(def.DirectBytes), "extents at least this long bypass the buffer")
	collDirect := fs.Bool("coll-direct", def.CollDirect, "write a collective's contiguous runs of at least --direct straight from the ranks' shared-memory rings once every rank's end marker came (false: buffer collectives like other writes)")
	fileStats := fs.Int("file-stats", def.FileStats, "keep a summary of this many files (more add into one entry; 0: none)")
	stateDir := fs.String("state-dir", env("DELEGATE_STATE_DIR", "auto"), "keep buffered data here so that it survives a crash of the server; auto: /dev/shm/delegate-UID-HASH of --listen and --root; none: in memory only ($DELEGATE_STATE_DIR)")
	backendDelay := fs.String("backend-delay", env("DELEGATE_BACKEND_DELAY", "0"), "for tests: a slow file system: a backend write waits this long, unless the file's last write waited less than this long ago (0: none; $DELEGATE_BACKEND_DELAY)")
	backendReadDelay := fs.String("backend-read-delay", env("DELEGATE_BACKEND_READ_DELAY", "0"), "for tests: the same for backend reads (0: none; $DELEGATE_BACKEND_READ_DELAY)")
	metrics := fs.String("metrics", env("DELEGATE_METRICS", ""), "serve Prometheus metrics on this host:port (/metrics)")
	printConfig := fs.Bool("print-config", false, "print the effective configuration and exit")
	readyFD := fs.Int("ready-fd", -1, "write the listen address as a line to this descriptor once listening (used by delegate-run)")
	stopOnEOF := fs.Bool("stop-on-eof", false, "shut down (draining) at the end of stdin, as on SIGTERM (used by delegate-run under srun)")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile (go tool pprof) of the whole run to this file; it is complete once the server has stopped")
	finalStats := fs.String("final-stats", "", "write the final statistics as JSON to this file at shutdown, or to stdout as a line \"delegate-stats JSON\" if -  (used by delegate-run)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	log, err := newLogger(os.Stderr, *logLevel, *logFormat)
	if err != nil {
		fmt.Fprintln(os.Stderr, "delegate-server:", err)
		return 2
	}
	// startFailed reports why the server cannot start, on stderr and on
	// the ready descriptor, so that a launcher waiting there (delegate-run
	// across hosts) learns it at once rather than at its start timeout.
	startFailed := func(code int, msg ...any) int {
		line := fmt.Sprintln(msg...)
		os.Stderr.WriteString(line)
		if *readyFD >= 0 {
			readyFile(*readyFD).WriteString("delegate-failed " + line)
		}
		return code
	}
	cfg := def
	cfg.Root = *root
	cfg.KeepAlive = *keepalive
	cfg.HighWaterPct = *highWater
	cfg.FlushIdle = *flushIdle
	cfg.FlushFull = *flushFull
	cfg.CollDirect = *collDirect
	cfg.FileStats = *fileStats
	for _, sz := range []struct {
		flag string
		val  string
		dst  *int64
	}{{"buffer", *buffer, &cfg.BufferBytes}, {"chunk", *chunk, &cfg.ChunkBytes},
		{"flush-run", *flushRun, &cfg.FlushRunBytes}, {"direct", *direct, &cfg.DirectBytes}} {
		n, err := units.ParseSize(sz.val)
		if err != nil {
			return startFailed(2, fmt.Sprintf("delegate-server: --%s: %v", sz.flag, err))
		}
		*sz.dst = n
	}
	for _, d := range []struct {
		flag string
		val  string
		dst  *time.Duration
	}{{"backend-delay", *backendDelay, &cfg.BackendDelay}, {"backend-read-delay", *backendReadDelay, &cfg.BackendReadDelay}} {
		if *d.dst, err = time.ParseDuration(d.val); err != nil {
			return startFailed(2, fmt.Sprintf("delegate-server: --%s: %v", d.flag, err))
		}
	}
	cfg.Logger = log
	cfg.Insecure = *insecure
	cfg.HandshakeTimeout = *handshakeTimeout
	cfg.MaxHellos = *maxHellos
	if cfg.MaxSessions, err = strconv.Atoi(*maxSessions); err != nil {
		return startFailed(2, fmt.Sprintf("delegate-server: --max-sessions %q: want a number", *maxSessions))
	}
	if cfg.Token, err = readToken(*tokenFile); err != nil {
		return startFailed(2, "delegate-server:", err)
	}
	if (*tlsCert == "") != (*tlsKey == "") {
		return startFailed(2, "delegate-server: --tls-cert and --tls-key go together")
	}
	if *tlsCert != "" {
		if cfg.TLS, err = transport.ServerTLS(*tlsCert, *tlsKey); err != nil {
			return startFailed(2, "delegate-server:", err)
		}
	}
	if *peers != "" {
		if cfg.Peers, err = parsePeers(*peers); err != nil {
			return startFailed(2, "delegate-server: --peers:", err)
		}
		if cfg.Index, err = parseIndex(*index); err != nil {
			return startFailed(2, "delegate-server: --index:", err)
		}
		if *listen == "" && cfg.Index >= 0 && cfg.Index < len(cfg.Peers) {
			*listen = cfg.Peers[cfg.Index]
		}
	}
	if *listen == "" {
		return startFailed(2, "delegate-server: --listen is required (unix:PATH or tcp:HOST:PORT), or --peers with --index")
	}
	listenAddr, err := transport.ParseAddr(*listen)
	if err != nil {
		return startFailed(2, "delegate-server:", err)
	}
	addr := listenAddr.String()
	if strings.HasPrefix(addr, "tcp:") && cfg.Token == "" && !cfg.Insecure {
		return startFailed(2, fmt.Sprintf("delegate-server: %s is a TCP address and no token is set: anyone who can reach it could read and write "+
			"every file under --root. Give a secret with --token-file FILE (or $DELEGATE_TOKEN), or pass --insecure", addr))
	}
	switch *stateDir {
	case "none", "off", "":
	case "auto":
		cfg.StateDir = server.DefaultStateDir(addr, cfg.Root)
	default:
		cfg.StateDir = *stateDir
	}
	cfg.Name = addr
	if *name != "" {
		cfg.Name = *name
	}
	if *printConfig {
		fmt.Print(cfg.String())
		return 0
	}
	if err := cfg.Validate(); err != nil {
		return startFailed(2, "delegate-server:", err)
	}
	// The buffers are Go memory: without a limit the collector lets the heap
	// grow to twice what is live. Keep it near the buffer, its hole bitmaps
	// (an eighth at most) and a fixed allowance.
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(cfg.BufferBytes + cfg.BufferBytes/8 + 32<<20)
	}
	// The Unix socket beside a TCP listener: clients on this host move to
	// it (wire/spec.md). Its directory is private to this server and goes
	// when it exits.
	var local net.Listener
	if strings.HasPrefix(addr, "tcp:") && *unixSock != "off" {
		path := *unixSock
		if path == "auto" {
			dir, err := os.MkdirTemp("", "delegate-server-")
			if err != nil {
				return startFailed(1, "delegate-server: --unix:", err)
			}
			defer os.RemoveAll(dir)
			path = dir + "/s.sock"
		}
		if local, err = transport.Listen(transport.Addr{Net: "unix", Addr: path}); err != nil {
			return startFailed(1, "delegate-server: --unix:", err)
		}
		cfg.LocalSocket = local.Addr().String()
	}
	if *cpuProfile != "" {
		pf, err := os.Create(*cpuProfile)
		if err != nil {
			return startFailed(2, "delegate-server: --cpuprofile:", err)
		}
		if err := pprof.StartCPUProfile(pf); err != nil {
			pf.Close()
			return startFailed(2, "delegate-server: --cpuprofile:", err)
		}
		// Deferred first, so it runs last: the drain at shutdown is in it.
		defer func() {
			pprof.StopCPUProfile()
			pf.Close()
		}()
	}
	srv, err := server.New(cfg)
	if err != nil {
		return startFailed(1, "delegate-server:", err)
	}
	// From here on every exit goes through stop, which drains: whatever a
	// client was told is written reaches the backend before the process
	// ends, whichever way it ends (issue 9).
	// SIGHUP is what delegate-run's servers get when it dies (its
	// parent-death signal); the kernel may send it once per exiting thread
	// of the launcher, so it never counts as the second signal below. A
	// server started under nohup keeps ignoring it.
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	if !signal.Ignored(syscall.SIGHUP) {
		signal.Notify(sigs, syscall.SIGHUP)
	}
	stop := func(code int) int {
		// A second signal (not a hangup) stops waiting for the drain.
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go func() {
			for {
				select {
				case sig := <-sigs:
					if sig == syscall.SIGHUP {
						continue
					}
					log.Warn("second signal: not waiting for the drain")
					cancel()
				case <-ctx.Done():
				}
				return
			}
		}()
		err := srv.Shutdown(ctx)
		snap := srv.Stats()
		log.Info("final stats\n" + snap.String() + stats.FilesSummary(snap.Files, 10))
		if *finalStats != "" {
			if b, err := json.Marshal(snap); err == nil {
				if *finalStats == "-" {
					writeStatsLines(os.Stdout, cfg.Name, b)
				} else {
					os.WriteFile(*finalStats, b, 0o644)
				}
			}
		}
		if err != nil {
			log.Error("shutdown", "err", err)
			return 1
		}
		return code
	}
	l, err := transport.Listen(listenAddr)
	if err != nil {
		return stop(startFailed(1, "delegate-server:", err)) // nothing buffered yet: the state directory goes too
	}
	if *metrics != "" {
		ml, err := net.Listen("tcp", *metrics)
		if err != nil {
			fmt.Fprintln(os.Stderr, "delegate-server: --metrics:", err)
			l.Close()
			return stop(1)
		}
		go http.Serve(ml, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain; version=0.0.4")
			snap := srv.Stats()
			snap.WritePrometheus(w)
		}))
		log.Info("metrics", "addr", ml.Addr().String())
	}
	serveErr := make(chan error, 2)
	go func() { serveErr <- srv.Serve(l) }()
	if local != nil {
		go func() { serveErr <- srv.Serve(local) }()
	}
	if cfg.BackendDelay > 0 || cfg.BackendReadDelay > 0 {
		log.Warn("backend slowed for tests", "write-delay", cfg.BackendDelay, "read-delay", cfg.BackendReadDelay)
	}
	log.Info("delegate server listening", "addr", addr, "unix", cfg.LocalSocket, "root", cfg.Root, "peers", len(cfg.Peers), "index", cfg.Index,
		"state_dir", cfg.StateDir)
	if *readyFD >= 0 {
		f := readyFile(*readyFD)
		fmt.Fprintln(f, addr)
		if f != os.Stdout && f != os.Stderr {
			f.Close()
		}
	}
	// With --stop-on-eof the end of stdin is a SIGTERM: srun turns a
	// SIGTERM into a kill of the step, but passes stdin's end on to every
	// task (--input=all), and it also comes if the launcher dies.
	eof := make(chan struct{})
	if *stopOnEOF {
		go func() {
			io.Copy(io.Discard, os.Stdin)
			close(eof)
		}()
	}
	select {
	case sig := <-sigs:
		log.Info("shutting down", "signal", sig.String())
		return stop(0)
	case <-eof:
		log.Info("shutting down", "signal", "end of stdin")
		return stop(0)
	case <-srv.StopRequested():
		log.Info("shutting down", "signal", "stop request")
		return stop(0)
	case err := <-serveErr:
		// Serve retries what can pass (out of descriptors); what is left
		// is fatal, but the buffered data is not lost with it.
		log.Error("serve failed, draining before exit", "err", err)
		return stop(1)
	}
}

// readToken returns the token clients must present: the contents of file
// if given, else $DELEGATE_TOKEN, else none. A token that is empty or only
// white space is an error, not a server without authentication.
func readToken(file string) (string, error) {
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("--token-file: %w", err)
		}
		t := strings.TrimSpace(string(b))
		if t == "" {
			return "", fmt.Errorf("--token-file %s is empty or only white space: it would turn authentication off; put a secret in it", file)
		}
		return t, nil
	}
	t, ok := os.LookupEnv("DELEGATE_TOKEN")
	if ok && strings.TrimSpace(t) == "" {
		return "", errors.New("DELEGATE_TOKEN is set but empty or only white space: it would turn authentication off; set a secret or unset it")
	}
	return t, nil
}

// statsLineBytes bounds the JSON carried by one stats line: srun splits
// longer lines when it forwards a task's output.
const statsLineBytes = 512

// writeStatsLines writes the final statistics for delegate-run as lines
// "delegate-stats NAME K/N PART" (K from 1), each written at once, so that
// launchers that forward output a line at a time, interleaving processes,
// keep them whole.
func writeStatsLines(w io.Writer, name string, js []byte) {
	n := (len(js) + statsLineBytes - 1) / statsLineBytes
	for k := 0; k < n; k++ {
		part := js[k*statsLineBytes : min(len(js), (k+1)*statsLineBytes)]
		fmt.Fprintf(w, "delegate-stats %s %d/%d %s\n", name, k+1, n, part)
	}
}

// readyFile returns the descriptor of --ready-fd as a file. Stdout and
// stderr are the process's own: a second *os.File on them would close the
// descriptor when the collector finalizes it.
func readyFile(fd int) *os.File {
	switch fd {
	case 1:
		return os.Stdout
	case 2:
		return os.Stderr
	}
	return os.NewFile(uintptr(fd), "ready")
}

// rankVars are where launchers put a process's rank: hydra (PMI-1/2),
// Slurm, PMIx, Open MPI.
var rankVars = []string{"PMI_RANK", "SLURM_PROCID", "PMIX_RANK", "OMPI_COMM_WORLD_RANK"}

// parseIndex reads --index: a number, or "rank" for the first rank
// variable the launcher set.
func parseIndex(s string) (int, error) {
	if s == "rank" {
		for _, v := range rankVars {
			if r := os.Getenv(v); r != "" {
				n, err := strconv.Atoi(r)
				if err != nil {
					return 0, fmt.Errorf("%s=%q is not a number", v, r)
				}
				return n, nil
			}
		}
		return 0, fmt.Errorf("\"rank\": none of %s is set (start the servers with mpiexec or srun)", strings.Join(rankVars, ", "))
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0, fmt.Errorf("%q: want a number or \"rank\"", s)
	}
	return n, nil
}

// sizeString prints a byte count the way ParseSize reads it.
func sizeString(n int64) string {
	for _, u := range []struct {
		s string
		v int64
	}{{"G", 1 << 30}, {"M", 1 << 20}, {"K", 1 << 10}} {
		if n >= u.v && n%u.v == 0 {
			return fmt.Sprintf("%d%s", n/u.v, u.s)
		}
	}
	return fmt.Sprint(n)
}

func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", format)
}

func statsCmd(args []string, out io.Writer) int {
	fs := flag.NewFlagSet("delegate-server stats", flag.ContinueOnError)
	connect := fs.String("connect", env("DELEGATE_SERVERS", ""), "server address (default: the first of $DELEGATE_SERVERS)")
	watch := fs.Duration("watch", 0, "refresh at this interval until interrupted")
	timeout := fs.Duration("timeout", 5*time.Second, "connect timeout")
	asJSON := fs.Bool("json", false, "print the snapshot as JSON")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	addr, _, _ := strings.Cut(*connect, ",")
	if addr == "" {
		fmt.Fprintln(os.Stderr, "delegate-server stats: --connect ADDR is required")
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	var tc *tls.Config
	if ca := os.Getenv("DELEGATE_TLS_CA"); ca != "" {
		var err error
		if tc, err = transport.ClientTLS(ca); err != nil {
			fmt.Fprintln(os.Stderr, "delegate-server stats:", err)
			return 2
		}
	}
	m, err := monitor.Connect(ctx, addr, os.Getenv("DELEGATE_TOKEN"), tc, *timeout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "delegate-server stats:", err)
		return 1
	}
	defer m.Close()
	for {
		snap, err := m.Stats()
		if err != nil {
			fmt.Fprintln(os.Stderr, "delegate-server stats:", err)
			return 1
		}
		if *watch > 0 && !*asJSON {
			fmt.Fprint(out, "\033[H\033[2J")
		}
		if *asJSON {
			b, _ := json.Marshal(snap)
			fmt.Fprintln(out, string(b))
		} else {
			fmt.Fprint(out, snap.String())
			fmt.Fprint(out, stats.FilesSummary(snap.Files, 10))
		}
		if *watch <= 0 {
			return 0
		}
		select {
		case <-ctx.Done():
			return 0
		case <-time.After(*watch):
		}
	}
}

// recoverCmd writes what state directories hold to the backend and removes
// them: for state a killed server left that no server started with the same
// command line will pick up (a launcher's private socket directory, say).
func recoverCmd(args []string) int {
	fs := flag.NewFlagSet("delegate-server recover", flag.ContinueOnError)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "usage: delegate-server recover STATE-DIR...")
		return 2
	}
	log, _ := newLogger(os.Stderr, "info", "text")
	status := 0
	for _, dir := range fs.Args() {
		rec, err := server.RecoverDir(dir, log)
		if err != nil {
			fmt.Fprintf(os.Stderr, "delegate-server recover %s: %v\n", dir, err)
			status = 1
			continue
		}
		fmt.Printf("%s: recovered %d files, %d chunks, %d bytes; %d chunks of missing files dropped\n",
			dir, rec.Files, rec.Chunks, rec.Bytes, rec.Dropped)
	}
	return status
}

// parsePeers parses a comma-separated server list into canonical forms.
func parsePeers(s string) ([]string, error) {
	l, err := transport.ParseList(s)
	if err != nil {
		return nil, err
	}
	return transport.Strings(l), nil
}
