package launch

import (
	"reflect"
	"strings"
	"testing"
)

func TestExpandNodelist(t *testing.T) {
	for _, c := range []struct {
		in   string
		want []string
		bad  bool
	}{
		{in: "n1", want: []string{"n1"}},
		{in: "n[1-3]", want: []string{"n1", "n2", "n3"}},
		{in: "n[08-10,12],gpu7", want: []string{"n08", "n09", "n10", "n12", "gpu7"}},
		{in: "r[1-2]n[1-2]", want: []string{"r1n1", "r1n2", "r2n1", "r2n2"}},
		{in: "n[3-1]", bad: true},
		{in: "n[1-2", bad: true},
		{in: "", bad: true},
	} {
		got, err := ExpandNodelist(c.in)
		if c.bad != (err != nil) || !c.bad && !reflect.DeepEqual(got, c.want) {
			t.Errorf("ExpandNodelist(%q) = %q, %v; want %q (error %v)", c.in, got, err, c.want, c.bad)
		}
	}
}

func TestHosts(t *testing.T) {
	got, err := ParseHosts("a:4, b,10.0.0.3:2,[fe80::1]:2")
	if want := []string{"a", "b", "10.0.0.3", "fe80::1"}; err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("ParseHosts = %q, %v; want %q", got, err, want)
	}
	got, err = ParseHostfile(strings.NewReader("# nodes\nn1:8\n\n  n2 binding=core # second\nn3\n"))
	if want := []string{"n1", "n2", "n3"}; err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("ParseHostfile = %q, %v; want %q", got, err, want)
	}
	if _, err := ParseHostfile(strings.NewReader("# none\n")); err == nil {
		t.Error("an empty host file was accepted")
	}
}

// TestLauncherArgv: servers are host-major, as hydra's -ppn and srun's
// block distribution place ranks, and each finds its entry by rank.
func TestLauncherArgv(t *testing.T) {
	o := Options{Hosts: []string{"n1", "n2"}, ServersPerHost: 2, ServerBin: "/opt/bin/delegate-server",
		Mpiexec: "mpiexec", Srun: "srun", ServerArgs: []string{"--buffer", "64M"}}
	addrs := Addresses(o.Hosts, o.ServersPerHost, 20000)
	if want := []string{"tcp:n1:20000", "tcp:n1:20001", "tcp:n2:20000", "tcp:n2:20001"}; !reflect.DeepEqual(addrs, want) {
		t.Fatalf("Addresses = %q, want %q", addrs, want)
	}
	peers := strings.Join(addrs, ",")
	got := strings.Join(launcherArgv(o, peers), " ")
	want := "mpiexec -disable-auto-cleanup -hosts n1,n2 -ppn 2 -n 4 /opt/bin/delegate-server --peers " + peers +
		" --index rank --ready-fd 1 --final-stats - --log-level warn --buffer 64M"
	if got != want {
		t.Errorf("hydra argv\n got %s\nwant %s", got, want)
	}
	o.Slurm = true
	got = strings.Join(launcherArgv(o, peers), " ")
	if !strings.HasPrefix(got, "srun --overlap ") || !strings.Contains(got, "--ntasks-per-node 2") ||
		!strings.Contains(got, "--distribution block") || !strings.Contains(got, "--index rank") {
		t.Errorf("srun argv: %s", got)
	}
}

func TestUnlabel(t *testing.T) {
	for in, want := range map[string]string{
		"tcp:n1:20000":             "tcp:n1:20000",
		"[3] tcp:n1:20000":         "tcp:n1:20000",
		" 3: delegate-stats {}":    "delegate-stats {}",
		"12: delegate-failed x: y": "delegate-failed x: y",
		"delegate-failed x: y":     "delegate-failed x: y",
		"[a] b":                    "[a] b",
	} {
		if got := unlabel(in); got != want {
			t.Errorf("unlabel(%q) = %q, want %q", in, got, want)
		}
	}
}
