package server

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/delegate-io/delegate/internal/backend"
)

// TestBackendDelayWraps: --backend-delay (Config.BackendDelay) wraps the
// backend in a DelayFS around Wrap's file system, and at zero nothing is
// wrapped (production pays nothing); a negative delay is refused.
func TestBackendDelayWraps(t *testing.T) {
	errFS := func(fs backend.FS) backend.FS { return &backend.ErrorFS{FS: fs} }
	cases := []struct {
		name        string
		write, read time.Duration
		wrap        func(backend.FS) backend.FS
		wantDelay   bool
		wantInner   string // the type beneath the delay, or at the top without one
	}{
		{"zero", 0, 0, nil, false, "*backend.OS"},
		{"zero, wrapped", 0, 0, errFS, false, "*backend.ErrorFS"},
		{"write delay", 30 * time.Millisecond, 0, nil, true, "*backend.OS"},
		{"read delay only", 0, 5 * time.Millisecond, nil, true, "*backend.OS"},
		{"around Wrap", 30 * time.Millisecond, 5 * time.Millisecond, errFS, true, "*backend.ErrorFS"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.Root = t.TempDir()
			cfg.Logger = slog.New(slog.DiscardHandler)
			cfg.Wrap = c.wrap
			cfg.BackendDelay, cfg.BackendReadDelay = c.write, c.read
			s, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer func() {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				s.Shutdown(ctx)
			}()
			inner := s.files.fs
			d, isDelay := inner.(*backend.DelayFS)
			if isDelay != c.wantDelay {
				t.Fatalf("backend %T: delayed %v, want %v", inner, isDelay, c.wantDelay)
			}
			if isDelay {
				if d.WriteDelay != c.write || d.ReadDelay != c.read {
					t.Errorf("delays %v/%v, want %v/%v", d.WriteDelay, d.ReadDelay, c.write, c.read)
				}
				inner = d.FS
			}
			if got := typeName(inner); got != c.wantInner {
				t.Errorf("beneath: %s, want %s", got, c.wantInner)
			}
		})
	}
	cfg := DefaultConfig()
	cfg.Root = t.TempDir()
	cfg.BackendDelay = -time.Millisecond
	if _, err := New(cfg); err == nil {
		t.Error("a negative backend delay was accepted")
	}
}

func typeName(v any) string {
	switch v.(type) {
	case *backend.OS:
		return "*backend.OS"
	case *backend.ErrorFS:
		return "*backend.ErrorFS"
	case *backend.DelayFS:
		return "*backend.DelayFS"
	}
	return "other"
}
