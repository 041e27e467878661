// Command delegate-run runs a command beside delegate servers:
//
//	delegate-run [--servers N] [launcher options] [server options] -- COMMAND...
//	delegate-run --hosts H1,H2,... [--servers-per-host K] [options] -- COMMAND...
//
// It starts N delegate-server processes on Unix sockets in a private
// temporary directory (or, with --hosts, --hostfile or inside a Slurm
// allocation, K servers on each host, over TCP, through hydra's mpiexec or
// srun), exports DELEGATE_SERVERS (and the job secret), runs COMMAND
// (normally mpiexec ...), shuts the servers down cleanly (they write every
// buffered byte to the backend), prints their statistics and exits with
// COMMAND's status. Options it does not know are passed to every server.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/delegate-io/delegate/internal/launch"
)

func main() {
	args := os.Args[1:]
	sep := -1
	for i, a := range args {
		if a == "--" {
			sep = i
			break
		}
	}
	if sep < 0 {
		fmt.Fprintln(os.Stderr, "usage: delegate-run [--servers N] [options] -- COMMAND...")
		os.Exit(2)
	}
	own, serverArgs := splitArgs(args[:sep])
	fs := flag.NewFlagSet("delegate-run", flag.ContinueOnError)
	o := launch.Options{Stderr: os.Stderr}
	fs.IntVar(&o.Servers, "servers", 1, "number of delegate servers")
	fs.StringVar(&o.ServerBin, "server-bin", "", "delegate-server binary (default: next to delegate-run, else $PATH)")
	fs.StringVar(&o.Dir, "dir", "", "directory for the sockets (default: a new temporary directory)")
	fs.DurationVar(&o.StartTimeout, "start-timeout", 0, "how long servers may take to start (default 10s on this host, 60s across hosts)")
	hosts := fs.String("hosts", "", "run servers on these hosts (comma-separated, hydra's -hosts format), started by mpiexec")
	hostfile := fs.String("hostfile", "", "run servers on the hosts of this file (hydra's format)")
	fs.IntVar(&o.ServersPerHost, "servers-per-host", 1, "servers on each host (with --hosts, --hostfile or Slurm)")
	fs.IntVar(&o.Port, "port", 0, "first TCP port of the servers on each host (default: drawn per run)")
	fs.StringVar(&o.Mpiexec, "mpiexec", "mpiexec", "hydra's mpiexec, used to start the servers on --hosts")
	fs.BoolVar(&o.TLS, "tls", false, "across hosts: make a per-job self-signed certificate for the servers' hosts and run TCP over TLS (the certificate travels in the environment)")
	local := fs.Bool("local", false, "servers on this host only, even inside a Slurm allocation")
	fs.DurationVar(&o.DrainTimeout, "drain-timeout", 10*time.Minute, "how long servers may take to drain at the end")
	fs.BoolVar(&o.Quiet, "quiet", false, "do not print the servers' statistics")
	if err := fs.Parse(own); err != nil {
		os.Exit(2)
	}
	o.ServerArgs = serverArgs
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var err error
	switch {
	case *hosts != "" && *hostfile != "":
		fmt.Fprintln(os.Stderr, "delegate-run: --hosts and --hostfile exclude each other")
		os.Exit(2)
	case *hosts != "":
		o.Hosts, err = launch.ParseHosts(*hosts)
	case *hostfile != "":
		var f *os.File
		if f, err = os.Open(*hostfile); err == nil {
			o.Hosts, err = launch.ParseHostfile(f)
			f.Close()
		}
	case os.Getenv("SLURM_JOB_NODELIST") != "" && !*local && !set["servers"]:
		// Inside an allocation: one (or K) server per node of the job.
		o.Hosts, err = launch.ExpandNodelist(os.Getenv("SLURM_JOB_NODELIST"))
		o.Slurm = true
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "delegate-run:", err)
		os.Exit(2)
	}
	if o.StartTimeout == 0 {
		o.StartTimeout = 10 * time.Second
		if len(o.Hosts) > 0 {
			o.StartTimeout = time.Minute
		}
	}
	if o.ServerBin == "" {
		o.ServerBin = findServer()
	}
	status, err := launch.Run(context.Background(), o, args[sep+1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "delegate-run:", err)
	}
	os.Exit(status)
}

// launcherFlags are the options delegate-run keeps; the rest go to servers.
var launcherFlags = map[string]bool{"servers": true, "server-bin": true, "dir": true,
	"start-timeout": true, "drain-timeout": true, "quiet": true, "hosts": true, "hostfile": true,
	"servers-per-host": true, "port": true, "mpiexec": true, "local": true, "tls": true}

// splitArgs separates launcher options from server options. Options take
// their value as --name=value or as the next argument (except --quiet).
func splitArgs(args []string) (own, rest []string) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		name := a
		for len(name) > 0 && name[0] == '-' {
			name = name[1:]
		}
		key, _, hasValue := cut(name)
		takesNext := !hasValue && key != "quiet" && key != "local" && key != "tls" && i+1 < len(args)
		dst := &rest
		if launcherFlags[key] {
			dst = &own
		}
		*dst = append(*dst, a)
		if takesNext && !isBoolServerFlag(key) {
			i++
			*dst = append(*dst, args[i])
		}
	}
	return own, rest
}

func cut(s string) (string, string, bool) {
	for i := 0; i < len(s); i++ {
		if s[i] == '=' {
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}

// boolServerFlags are delegate-server's options that take no value
// (server/main.go's fs.Bool): the argument after one is not its value.
// --coll-direct followed by --quiet sent --quiet to the servers, which
// refused to start.
var boolServerFlags = map[string]bool{"insecure": true, "flush-full": true, "coll-direct": true,
	"print-config": true, "stop-on-eof": true}

func isBoolServerFlag(key string) bool { return boolServerFlags[key] }

func findServer() string {
	if exe, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(exe), "delegate-server")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath("delegate-server"); err == nil {
		return p
	}
	return "delegate-server"
}
