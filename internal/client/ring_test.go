package client_test

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/delegate-io/delegate/internal/client"
	"github.com/delegate-io/delegate/internal/testutil"
	"github.com/delegate-io/delegate/internal/wire"
)

// TestRingCycle (found in review): a reader allocated its window's ring
// slots server by server and waited for the next ring's space holding the
// earlier slots, unsent; a writer of a multi-server write held its
// current, unsent request of one server while it waited for another
// server's ring. Rings reuse space in order only, so each waited for space
// the other held, for ever. Now a reader takes its slots all or none
// (reader.ringSlots) and a writer sends its other servers' requests before
// it waits (writer.handOverOthers). Two
// goroutines of one process (nonblocking calls, threads) on a file of two
// servers, 16 MiB rings: ring 0's head at 6.5 MiB, ring 1's at 4.5 MiB;
// the writer puts 7 MiB for server 1 (slowly: its memory is 4-byte
// pieces), then 7 MiB for server 0; meanwhile the reader's window takes
// 3 MiB of ring 0 and waits for 4.75 MiB of ring 1 (free 9 MiB, 4.5 of
// them padding), and the writer waits for 7 MiB of ring 0 (free 13 MiB,
// 6.5 of them padding).
func TestRingCycle(t *testing.T) {
	c := testutil.Start(t, testutil.Options{Servers: 2})
	// The reader must come while the writer gathers its first 7 MiB: a
	// new client (rings from 0) per try, later each time (the pauses move
	// the reader across that window; they synchronize nothing).
	for i, d := range []int{2, 5, 10, 15, 20, 30, 40, 60} {
		ringCycle(t, c, filepath.Join(c.Dir, string(rune('a'+i))), time.Duration(d)*time.Millisecond)
	}
}

func ringCycle(t *testing.T, c *testutil.Cluster, path string, delay time.Duration) {
	const region = 256 << 10
	const mib = 1 << 20
	cl := c.Client(t, func(cfg *client.Config) { cfg.RegionSize = region; cfg.LeaseMin = 0 })
	f := open(t, cl, path, wire.ORdwr|wire.OCreat, nil)
	defer cl.Close()
	in1 := c.Servers[1].Stats().BytesIn
	buf := make([]byte, 8*mib)
	// Who owns region 0? (The route's key comes from the path.)
	if _, err := f.Write([][]byte{buf[:1]}, []client.Extent{{Off: 0, Len: 1}}, client.IOOpts{Ack: true}); err != nil {
		t.Fatal(err)
	}
	key := 0
	if c.Servers[1].Stats().BytesIn > in1 {
		key = 1
	}
	// regions returns n regions of server s, from region base on.
	regions := func(s, n, base int) []client.Extent {
		var e []client.Extent
		for k := base; len(e) < n; k++ {
			if (k+key)%2 == s {
				e = append(e, client.Extent{Off: int64(k) * region, Len: region})
			}
		}
		return e
	}
	// Ring heads: 1 byte + 6.5 MiB on ring 0 (the byte's slot is padded
	// to nothing: check below), 4.5 MiB on ring 1.
	for s, n := range []int{26, 18} {
		if _, err := f.Write([][]byte{buf[:n*region]}, regions(s, n, 1000), client.IOOpts{Ack: true}); err != nil {
			t.Fatal(err)
		}
	}
	mem := make([][]byte, 0, 7*mib/4+1)
	for i := 0; i < 7*mib; i += 4 {
		mem = append(mem, buf[i:i+4])
	}
	mem = append(mem, buf[:7*mib])
	wext := append(regions(1, 28, 0), regions(0, 28, 0)...)
	rext := append(regions(0, 12, 200), regions(1, 19, 200)...)
	done := make(chan string, 2)
	go func() {
		_, err := f.Write(mem, wext, client.IOOpts{})
		done <- "write: " + errString(err)
	}()
	time.Sleep(delay)
	go func() {
		_, err := f.Read([][]byte{make([]byte, 31*region)}, rext, client.IOOpts{})
		done <- "read: " + errString(err)
	}()
	for k := 0; k < 2; k++ {
		select {
		case s := <-done:
			t.Log(s)
		case <-time.After(15 * time.Second):
			t.Fatalf("after %v: a write and a read of one process waited 15 s for each other's ring space", delay)
		}
	}
}

func errString(err error) string {
	if err == nil {
		return "ok"
	}
	return err.Error()
}
