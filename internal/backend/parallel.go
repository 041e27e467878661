package backend

import (
	"os"
	"strconv"
	"sync"
)

// Concurrent backend writes, for network file systems (off by default).
//
// On a local file system one thread writes as fast as several (ext4
// serializes the writers of a file: README, Performance). Over a network
// file system one write call is a series of requests (a FUSE file system
// such as sshfs gets at most 128 KiB per request), and ranks writing one
// file through ufs: keep as many in flight as there are ranks; so with
// DELEGATE_BACKEND_WRITERS=N in the server's environment a large write,
// buffered run or direct, is split into pieces of splitBytes written by up
// to N goroutines at once, each started and waited for by the call. On
// this project's sshfs setup it measured no gain (32 MiB in 8 MiB pwrites:
// 127-161 ms with one thread, 110-208 ms with four; README, Performance),
// so it is not the default.

// splitBytes is the piece a large write is split into.
const splitBytes = 1 << 20

// writersFor returns the number of concurrent writes for a file:
// DELEGATE_BACKEND_WRITERS, 1 when unset or invalid, at most 64.
func writersFor() int {
	if v := os.Getenv("DELEGATE_BACKEND_WRITERS"); v != "" {
		if n, err := strconv.Atoi(v); err == nil && n >= 1 {
			return min(n, 64)
		}
	}
	return 1
}

// writeParallel writes bufs, in order, at off: split into pieces of
// splitBytes, written by up to f.writers goroutines. It returns the bytes
// written before the first failure (all of them when err is nil).
func (f *osFile) writeParallel(bufs [][]byte, off int64) (int64, error) {
	type piece struct {
		bufs [][]byte
		off  int64
	}
	var pieces []piece
	cur := piece{off: off}
	var have int64
	for _, b := range bufs {
		for len(b) > 0 {
			n := min(int64(len(b)), splitBytes-have)
			cur.bufs = append(cur.bufs, b[:n])
			b = b[n:]
			have += n
			if have == splitBytes {
				pieces = append(pieces, cur)
				cur = piece{off: cur.off + have}
				have = 0
			}
		}
	}
	if have > 0 {
		pieces = append(pieces, cur)
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		next  int
		first error
		fail  = int64(-1) // the offset of the first failed piece
	)
	work := func() {
		defer wg.Done()
		for {
			mu.Lock()
			if next == len(pieces) || first != nil {
				mu.Unlock()
				return
			}
			p := pieces[next]
			next++
			mu.Unlock()
			if _, err := f.pwritev(p.bufs, p.off); err != nil {
				mu.Lock()
				if first == nil || p.off < fail {
					first, fail = err, p.off
				}
				mu.Unlock()
				return
			}
		}
	}
	n := min(f.writers, len(pieces))
	wg.Add(n)
	for range n {
		go work()
	}
	wg.Wait()
	if first != nil {
		return fail - off, first
	}
	return cur.off + have - off, nil
}
