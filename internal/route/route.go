// Package route is the region rule: which server owns which byte of which
// file. The client uses it to send each extent to its owner and the server
// uses it to verify what it receives; nothing else decides ownership.
//
// A file's offset space is cut into regions of RegionSize bytes. Region r of
// the file whose key is k belongs to server (k + r) mod n: consecutive
// regions go round-robin over the servers, starting at a server that depends
// on the file, like Lustre striping with a per-file start. One server is the
// case n == 1, not a separate path.
//
// The region size of a file is chosen once, at open, by FitRegion
// (stripe.go): an explicit size, else one that lines up with the backend's
// stripes (ROMIO's striping hints, or the layout read from the backend),
// else the configured default.
package route

import (
	"fmt"
	"hash/fnv"
	"strings"
)

// DefaultRegionSize is the region size when neither configuration nor a
// hint sets one: a common Lustre stripe size.
const DefaultRegionSize = 1 << 20

// MinRegionSize bounds the region size from below, so that no extent list
// splits into pieces smaller than a page.
const MinRegionSize = 4096

// FileKey is the routing key of a file: FNV-1a of its absolute, clean path.
func FileKey(path string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(path))
	return h.Sum64()
}

// ListHash identifies an ordered server list; client and server compare it
// at connect time so that both apply the rule to the same list.
func ListHash(servers []string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(strings.Join(servers, "\n")))
	return h.Sum64()
}

// Rule applies the region rule for one file.
type Rule struct {
	Key        uint64 // FileKey of the file
	RegionSize int64  // bytes per region, >= MinRegionSize
	Servers    int    // number of servers, >= 1
}

// Check reports whether the rule's parameters are usable.
func (r Rule) Check() error {
	if r.Servers < 1 {
		return fmt.Errorf("route: %d servers", r.Servers)
	}
	if r.RegionSize < MinRegionSize {
		return fmt.Errorf("route: region size %d is below %d", r.RegionSize, MinRegionSize)
	}
	return nil
}

// Owner returns the server that owns the byte at off.
func (r Rule) Owner(off int64) int {
	if r.Servers == 1 {
		return 0
	}
	return int((r.Key + uint64(off/r.RegionSize)) % uint64(r.Servers))
}

// Split calls fn for each piece of [off, off+n) cut at region boundaries
// where the owner changes, in offset order.
func (r Rule) Split(off, n int64, fn func(server int, off, n int64)) {
	if r.Servers == 1 {
		if n > 0 {
			fn(0, off, n)
		}
		return
	}
	for n > 0 {
		end := (off/r.RegionSize + 1) * r.RegionSize
		k := min(n, end-off)
		fn(r.Owner(off), off, k)
		off, n = off+k, n-k
	}
}

// Owns reports whether server owns every byte of [off, off+n).
func (r Rule) Owns(server int, off, n int64) bool {
	if r.Servers == 1 {
		return server == 0
	}
	for n > 0 {
		if r.Owner(off) != server {
			return false
		}
		end := (off/r.RegionSize + 1) * r.RegionSize
		k := min(n, end-off)
		off, n = off+k, n-k
	}
	return true
}
