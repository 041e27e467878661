package server_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/delegate-io/delegate/internal/client"
	"github.com/delegate-io/delegate/internal/server"
	"github.com/delegate-io/delegate/internal/testutil"
	"github.com/delegate-io/delegate/internal/wire"
)

// TestOpenRace: two first opens of one path race; the one that loses the
// race for the table entry must be checked as any later open is (region
// size, writable), not handed the winner's file as it is.
func TestOpenRace(t *testing.T) {
	tests := []struct {
		name      string
		winFlags  uint32
		winHints  map[string]string
		loseHints map[string]string
		wantErr   error // of the loser's open; nil: it must be able to write
	}{
		{"region size differs", wire.ORdwr, map[string]string{"delegate_region_size": "2m"},
			map[string]string{"delegate_region_size": "1m"}, wire.EBUSY},
		{"winner read-only", wire.ORdonly, nil, nil, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := testutil.Start(t, testutil.Options{})
			path := filepath.Join(c.Dir, "race")
			winner, loser := c.Client(t, nil), c.Client(t, nil)
			var fired atomic.Bool
			var win *client.File
			var winErr error
			restore := server.SetOpenRaceHookForTest(func(string) {
				if fired.Swap(true) {
					return // the winner's own open
				}
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				win, winErr = winner.Open(ctx, path, tc.winFlags, 0, tc.winHints)
			})
			defer restore()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			f, err := loser.Open(ctx, path, wire.ORdwr|wire.OCreat, 0, tc.loseHints)
			if winErr != nil {
				t.Fatalf("the winner's open: %v", winErr)
			}
			if !fired.Load() || win == nil {
				t.Fatal("the race was not staged")
			}
			defer win.Close()
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("loser's open: %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("loser's open: %v", err)
			}
			want := bytes.Repeat([]byte("x"), 8192)
			if _, err := f.Write([][]byte{want}, []client.Extent{{Off: 0, Len: int64(len(want))}}, client.IOOpts{}); err != nil {
				t.Fatal(err)
			}
			if err := f.Close(); err != nil {
				t.Fatalf("close after writing through a descriptor the winner opened read-only: %v", err)
			}
			if got, _ := os.ReadFile(path); !bytes.Equal(got, want) {
				t.Fatalf("file holds %d bytes, want the %d written", len(got), len(want))
			}
		})
	}
}
