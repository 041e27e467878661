package client

import (
	"github.com/delegate-io/delegate/internal/route"
	"golang.org/x/sys/unix"
)

// explicitRegion is the delegate_region_size hint, 0 if not given.
func (h *Hints) explicitRegion() int64 {
	if h.regionSet {
		return h.RegionSize
	}
	return 0
}

// backendStripes reads the default layout of dir from the backend where it
// can be read without a library: Lustre's "lustre.lov" extended attribute
// of the directory (the layout a file created there gets; route.LustreLOV).
// The directory and not the file: every rank reads the same value,
// whether or not another rank's open already created the file. Anything
// else (another file system, no default layout, a composite layout) gives
// none.
func backendStripes(dir string) route.Stripes {
	var buf [4096]byte
	n, err := unix.Getxattr(dir, "lustre.lov", buf[:])
	if err != nil || n <= 0 {
		return route.Stripes{}
	}
	s, _ := route.LustreLOV(buf[:n])
	return s
}
