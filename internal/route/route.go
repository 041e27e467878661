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
// splits into pieces smaller than a page. CheckRegionSize applies it, for
// the client's configuration and hints and the server's open alike.
const MinRegionSize = 4096

// CheckRegionSize reports whether n bytes may be a region size.
func CheckRegionSize(n int64) error {
	if n < MinRegionSize {
		return fmt.Errorf("region size %d is below %d", n, MinRegionSize)
	}
	return nil
}

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
	if err := CheckRegionSize(r.RegionSize); err != nil {
		return fmt.Errorf("route: %w", err)
	}
	return nil
}

// A file's home is the owner of its first region. It applies every request
// of the file in atomic mode (MPI_File_set_atomicity), whatever its extents,
// as one unit under the file's atomic lock, and so orders all atomic
// requests of the file by itself; it also keeps the file's counters (shared
// file pointers) and preallocates. The client routes with Route and Home,
// the server verifies with Accepts; both take the mode, so the rule is
// written here only.

// Home returns the file's home server.
func (r Rule) Home() int { return r.Owner(0) }

// Route calls fn for each piece of [off, off+n) with the server it goes to:
// in atomic mode the whole range to Home, else Split's pieces.
func (r Rule) Route(atomic bool, off, n int64, fn func(server int, off, n int64)) {
	if atomic && r.Servers > 1 {
		if n > 0 {
			fn(r.Home(), off, n)
		}
		return
	}
	r.Split(off, n, fn)
}

// Accepts reports whether server may apply a request on [off, off+n): in
// atomic mode when it is the Home, else when it Owns the range.
func (r Rule) Accepts(server int, atomic bool, off, n int64) bool {
	if atomic {
		return server == r.Home()
	}
	return r.Owns(server, off, n)
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

// OwnsRun reports whether server owns every byte of count pieces of n
// bytes at off, off+stride, ...: with one server at once, else piece by
// piece.
func (r Rule) OwnsRun(server int, off, n, stride, count int64) bool {
	if r.Servers == 1 {
		return server == 0
	}
	for k := int64(0); k < count; k++ {
		if !r.Owns(server, off+k*stride, n) {
			return false
		}
	}
	return true
}
