package route

import (
	"encoding/binary"
	"testing"
)

func TestFitRegion(t *testing.T) {
	M := int64(1 << 20)
	cases := []struct {
		name string
		f    Fit
		want int64
	}{
		{"nothing: the default", Fit{Default: M, Servers: 3}, M},
		{"explicit wins", Fit{Explicit: 256 << 10, Hint: Stripes{4 * M, 8}, Backend: Stripes{M, 4}, Default: M, Servers: 2}, 256 << 10},
		{"unit alone", Fit{Hint: Stripes{Unit: 4 * M}, Default: M, Servers: 3}, 4 * M},
		{"factor a multiple of servers", Fit{Hint: Stripes{M, 8}, Default: M, Servers: 2}, 4 * M},
		{"factor equal to servers", Fit{Hint: Stripes{M, 4}, Default: M, Servers: 4}, M},
		{"factor not a multiple", Fit{Hint: Stripes{M, 6}, Default: M, Servers: 4}, M},
		{"fewer targets than servers", Fit{Hint: Stripes{2 * M, 2}, Default: M, Servers: 6}, 2 * M},
		{"hint over backend", Fit{Hint: Stripes{2 * M, 1}, Backend: Stripes{M, 4}, Default: M, Servers: 2}, 2 * M},
		{"backend when no hint", Fit{Backend: Stripes{M, 4}, Default: 64 << 10, Servers: 2}, 2 * M},
		{"small unit rounded up", Fit{Hint: Stripes{Unit: 1000}, Default: M, Servers: 1}, 5000},
	}
	for _, c := range cases {
		if got := FitRegion(c.f); got != c.want {
			t.Errorf("%s: FitRegion(%+v) = %d, want %d", c.name, c.f, got, c.want)
		}
	}
}

// TestFitRegionOneServerPerTarget: with Count = k * Servers, every stripe
// of a server's regions lands on one of k targets of its own.
func TestFitRegionOneServerPerTarget(t *testing.T) {
	for _, c := range []struct{ servers, count int }{{2, 8}, {3, 6}, {4, 4}, {1, 3}} {
		unit := int64(1 << 20)
		r := Rule{Key: FileKey("/f"), RegionSize: FitRegion(Fit{Hint: Stripes{unit, c.count}, Servers: c.servers, Default: unit}), Servers: c.servers}
		owner := map[int]int{} // target -> server
		for off := int64(0); off < 64*unit; off += unit {
			target := int(off/unit) % c.count
			s := r.Owner(off)
			if o, ok := owner[target]; ok && o != s {
				t.Fatalf("%d servers, %d targets: target %d written by servers %d and %d", c.servers, c.count, target, o, s)
			}
			owner[target] = s
		}
	}
}

func lov(magic uint32, unit uint32, count uint16, n int) []byte {
	b := make([]byte, n)
	binary.LittleEndian.PutUint32(b[0:], magic)
	binary.LittleEndian.PutUint32(b[24:], unit)
	binary.LittleEndian.PutUint16(b[28:], count)
	return b
}

func TestLustreLOV(t *testing.T) {
	cases := []struct {
		name string
		b    []byte
		want Stripes
		ok   bool
	}{
		{"v1", lov(lovMagicV1, 1<<20, 4, 32+24*4), Stripes{1 << 20, 4}, true},
		{"v3", lov(lovMagicV3, 4<<20, 8, 48), Stripes{4 << 20, 8}, true},
		{"all targets", lov(lovMagicV1, 1<<20, 0xFFFF, 32), Stripes{1 << 20, 0}, true},
		{"default size", lov(lovMagicV1, 0, 2, 32), Stripes{}, false},
		{"composite", lov(0x0BD60BD0, 1<<20, 2, 64), Stripes{}, false},
		{"short", lov(lovMagicV1, 1<<20, 2, 32)[:31], Stripes{}, false},
		{"empty", nil, Stripes{}, false},
	}
	for _, c := range cases {
		got, ok := LustreLOV(c.b)
		if got != c.want || ok != c.ok {
			t.Errorf("%s: %+v %v, want %+v %v", c.name, got, ok, c.want, c.ok)
		}
	}
}

// FuzzLustreLOV: any bytes decode to a usable layout or to none.
func FuzzLustreLOV(f *testing.F) {
	f.Add(lov(lovMagicV1, 1<<20, 4, 32))
	f.Add(lov(lovMagicV3, 65536, 0xFFFF, 48))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		s, ok := LustreLOV(b)
		if ok && (s.Unit <= 0 || s.Count < 0 || s.Count >= 0xFFFF) {
			t.Fatalf("%+v from %x", s, b)
		}
		if ok {
			if r := FitRegion(Fit{Backend: s, Servers: 3, Default: 1 << 20}); r < MinRegionSize || r%s.Unit != 0 {
				t.Fatalf("region %d for %+v", r, s)
			}
		}
	})
}
