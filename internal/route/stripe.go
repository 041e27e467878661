package route

import "encoding/binary"

// Stripes is how the backend stripes a file: Unit bytes per stripe,
// round-robin over Count storage targets. A zero Unit means unknown; a zero
// Count means the number of targets is unknown.
type Stripes struct {
	Unit  int64
	Count int
}

// Fit are the inputs of the region size rule (FitRegion), most binding
// first.
type Fit struct {
	Explicit int64   // delegate_region_size hint; 0: not given
	Hint     Stripes // ROMIO's striping_unit and striping_factor hints
	Backend  Stripes // the backend's layout where it can be read (Lustre: LustreLOV)
	Default  int64   // DELEGATE_REGION_SIZE, or DefaultRegionSize
	Servers  int
}

// FitRegion is the region size rule. An explicit delegate_region_size wins.
// Otherwise, from the striping hints, or else from the backend's layout,
// regions follow the stripes: a region is one stripe unit, or, when the
// stripes go over more targets than there are servers and the servers
// divide them evenly (Count = k * Servers), k units; then region r of a
// file covers stripes r*k to r*k+k-1, and since regions go round-robin
// over the servers as stripes go over the targets, each server writes to
// its own k targets and no target is written by two servers. A unit below
// MinRegionSize is rounded up to a multiple of it. Without stripes the
// region size is Default.
func FitRegion(f Fit) int64 {
	if f.Explicit > 0 {
		return f.Explicit
	}
	s := f.Hint
	if s.Unit <= 0 {
		s = f.Backend
	}
	if s.Unit <= 0 {
		return f.Default
	}
	region := s.Unit
	if f.Servers > 0 && s.Count > f.Servers && s.Count%f.Servers == 0 {
		region *= int64(s.Count / f.Servers)
	}
	if region < MinRegionSize {
		region = (MinRegionSize + s.Unit - 1) / s.Unit * s.Unit
	}
	return region
}

// Lustre layout magics (lustre_user.h): plain layouts, v1 and v3 (v3 adds
// a pool name after the same header). Composite (PFL) layouts are not read.
const (
	lovMagicV1 = 0x0BD10BD0
	lovMagicV3 = 0x0BD30BD0
	lovHeader  = 32
)

// LustreLOV decodes the stripe unit and count from a Lustre "lustre.lov"
// extended attribute (struct lov_user_md_v1/v3, little-endian: magic,
// pattern, 16-byte object id, u32 stripe size at byte 24, u16 stripe count
// at byte 28). It reports false for anything else: another magic, a
// composite layout, a short value, a zero size (the file system's
// default). A count of 0 (default) or 0xFFFF (every target) is returned as
// 0, unknown.
func LustreLOV(b []byte) (Stripes, bool) {
	if len(b) < lovHeader {
		return Stripes{}, false
	}
	switch binary.LittleEndian.Uint32(b[0:]) {
	case lovMagicV1, lovMagicV3:
	default:
		return Stripes{}, false
	}
	unit := int64(binary.LittleEndian.Uint32(b[24:]))
	count := int(binary.LittleEndian.Uint16(b[28:]))
	if unit == 0 {
		return Stripes{}, false
	}
	if count == 0xFFFF {
		count = 0
	}
	return Stripes{Unit: unit, Count: count}, true
}
