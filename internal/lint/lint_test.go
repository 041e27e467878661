// Package lint holds repository-wide checks that run with the unit tests:
// the dependency direction between packages, and habits STYLE.md asks for.
package lint

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

const module = "github.com/delegate-io/delegate/"

// imports maps each package of the module to the module packages it imports
// (non-test files only).
func imports(t *testing.T) map[string][]string {
	out, err := exec.Command("go", "list", "-f", `{{.ImportPath}} {{join .Imports " "}}`, "../../...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	m := map[string][]string{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		pkg := strings.TrimPrefix(f[0], module)
		for _, imp := range f[1:] {
			if strings.HasPrefix(imp, module) {
				m[pkg] = append(m[pkg], strings.TrimPrefix(imp, module))
			}
		}
		if _, ok := m[pkg]; !ok {
			m[pkg] = nil
		}
	}
	return m
}

func TestDependencyDirection(t *testing.T) {
	allowed := map[string][]string{
		"internal/wire":      {},
		"internal/extent":    {},
		"internal/route":     {},
		"internal/units":     {},
		"internal/shm":       {},
		"internal/journal":   {"internal/shm"}, // shm.Prefault for its slots
		"internal/stats":     {"internal/wire"},
		"internal/backend":   {},
		"internal/transport": {"internal/wire"},
		"internal/client":    {"internal/wire", "internal/route", "internal/shm", "internal/transport", "internal/units"},
		"internal/server": {"internal/wire", "internal/route", "internal/shm", "internal/transport",
			"internal/extent", "internal/backend", "internal/stats", "internal/journal"},
		"internal/launch":     {"internal/stats", "internal/monitor", "internal/transport"},
		"internal/monitor":    {"internal/stats", "internal/transport", "internal/wire"},
		"libdelegate":         {"internal/client", "internal/wire"},
		"server":              {"internal/server", "internal/monitor", "internal/stats", "internal/transport", "internal/units"},
		"server/delegate-run": {"internal/launch"},
		"internal/testutil":   {"internal/client", "internal/server", "internal/transport"},
		"internal/lint":       {},
	}
	for pkg, imps := range imports(t) {
		ok, known := allowed[pkg]
		if !known {
			t.Errorf("package %s is not in the dependency table of lint_test.go", pkg)
			continue
		}
		for _, imp := range imps {
			found := false
			for _, a := range ok {
				found = found || a == imp
			}
			if !found {
				t.Errorf("%s imports %s, which the layering forbids", pkg, imp)
			}
		}
	}
}

// goFiles returns the module's non-test Go files.
func goFiles(t *testing.T) []string {
	var files []string
	filepath.WalkDir("../..", func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "build" || strings.HasPrefix(d.Name(), ".")) && p != "../.." {
			return filepath.SkipDir
		}
		if strings.HasSuffix(p, ".go") && !strings.HasSuffix(p, "_test.go") {
			files = append(files, p)
		}
		return nil
	})
	return files
}

func TestHabits(t *testing.T) {
	rules := []struct {
		re    *regexp.Regexp
		why   string
		allow func(path string) bool
	}{
		{regexp.MustCompile(`atomic\.(Add|Load|Store|CompareAndSwap)(Int|Uint)(32|64)\(`),
			"use typed atomics (atomic.Int64), not raw atomic functions", nil},
		{regexp.MustCompile(`context\.(Background|TODO)\(\)`),
			"contexts come from callers; only mains and the C boundary make them",
			func(p string) bool {
				return strings.HasSuffix(p, "main.go") || strings.Contains(p, "libdelegate/") ||
					strings.Contains(p, "internal/testutil/")
			}},
		// backend.DelayFS sleeps on purpose: the delay is the fault it
		// injects (--backend-delay, for tests), not flow control.
		{regexp.MustCompile(`time\.Sleep\(`), "no sleep loops as flow control",
			func(p string) bool { return strings.HasSuffix(p, "internal/backend/delayfs.go") }},
		{regexp.MustCompile(`strings\.Contains\(err\.Error\(\)`), "classify errors with errors.Is/As, not their text", nil},
		// A code is attached once, where an error enters the protocol
		// (ARCHITECTURE.md, Errors); the client's dial is where network
		// errors do.
		{regexp.MustCompile(`wire\.Errorf\(wire\.CodeOf\(|&wire\.Error\{`),
			"do not re-derive a code: wrap with fmt.Errorf's %w (or wire.Errorf with a new code and %w)",
			func(p string) bool { return strings.HasSuffix(p, "internal/client/session.go") }},
		{regexp.MustCompile(`wire\.CodeOf\([^()]*\) [!=]= wire\.`),
			"ask about a code with errors.Is(err, wire.ECODE)",
			func(p string) bool { return strings.HasSuffix(p, "internal/client/session.go") }},
		// Ownership is route's: Route, Accepts, Home.
		{regexp.MustCompile(`\.Owner\(0\)`), "the owner of the first region is route.Rule.Home",
			func(p string) bool { return strings.Contains(p, "internal/route/") }},
		{regexp.MustCompile(`MinRegionSize|< 4096 \{[^}]*[Rr]egion`), "check a region size with route.CheckRegionSize",
			func(p string) bool { return strings.Contains(p, "internal/route/") }},
	}
	for _, p := range goFiles(t) {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rules {
			if r.re.Match(b) && (r.allow == nil || !r.allow(p)) {
				t.Errorf("%s: %s", p, r.why)
			}
		}
	}
}

// TestEngineRooms keeps the server's per-file engine to its own small
// environment (internal/server/engine.go): those files must not reach back
// to the whole *Server (sessions, listeners, configuration they do not use).
func TestEngineRooms(t *testing.T) {
	rooms := []string{"engine.go", "table.go", "file.go", "write.go", "read.go", "flush.go", "budget.go"}
	forbidden := regexp.MustCompile(`\*Server\b|\bsrv\b|\.cfg\.`)
	for _, name := range rooms {
		src, err := os.ReadFile(filepath.Join("..", "server", name))
		if err != nil {
			t.Fatalf("engine room: %v", err)
		}
		for i, line := range strings.Split(string(src), "\n") {
			if code, _, _ := strings.Cut(line, "//"); forbidden.MatchString(code) {
				t.Errorf("internal/server/%s:%d reaches the whole server: %s", name, i+1, strings.TrimSpace(line))
			}
		}
	}
}
