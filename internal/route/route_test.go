package route

import (
	"math/rand/v2"
	"testing"
)

func TestSplitCoversAndOwns(t *testing.T) {
	for _, servers := range []int{1, 2, 3, 7} {
		r := Rule{Key: FileKey("/tmp/f"), RegionSize: 4096, Servers: servers}
		if err := r.Check(); err != nil {
			t.Fatal(err)
		}
		rnd := rand.New(rand.NewPCG(uint64(servers), 1))
		for i := 0; i < 500; i++ {
			off, n := rnd.Int64N(1<<20), rnd.Int64N(40000)
			next := off
			r.Split(off, n, func(s int, o, k int64) {
				if o != next || k <= 0 {
					t.Fatalf("piece %d+%d does not continue at %d", o, k, next)
				}
				if !r.Owns(s, o, k) {
					t.Fatalf("server %d does not own %d+%d", s, o, k)
				}
				next = o + k
			})
			if next != off+n {
				t.Fatalf("split of %d+%d ended at %d", off, n, next)
			}
		}
	}
}

func TestOwnerRoundRobin(t *testing.T) {
	r := Rule{Key: 5, RegionSize: 1 << 20, Servers: 3}
	seen := map[int]bool{}
	for reg := int64(0); reg < 3; reg++ {
		seen[r.Owner(reg<<20)] = true
	}
	if len(seen) != 3 {
		t.Fatalf("three consecutive regions hit %d servers", len(seen))
	}
	if r.Owner(0) != r.Owner(1<<20-1) {
		t.Fatal("one region has two owners")
	}
}

func TestCheck(t *testing.T) {
	for _, r := range []Rule{{Servers: 0, RegionSize: 1 << 20}, {Servers: 1, RegionSize: 100}} {
		if r.Check() == nil {
			t.Errorf("%+v accepted", r)
		}
	}
}

func TestListHashOrder(t *testing.T) {
	a := ListHash([]string{"unix:/a", "unix:/b"})
	b := ListHash([]string{"unix:/b", "unix:/a"})
	if a == b {
		t.Fatal("list hash ignores order")
	}
}

// Route and Accepts agree in both modes: every piece the client routes is
// accepted by its server and refused by every other (atomic mode), and an
// atomic request goes whole to Home.
func TestRouteAccepts(t *testing.T) {
	for _, c := range []struct {
		servers int
		atomic  bool
	}{{1, false}, {1, true}, {3, false}, {3, true}, {4, true}} {
		r := Rule{Key: FileKey("/tmp/a"), RegionSize: 4096, Servers: c.servers}
		rnd := rand.New(rand.NewPCG(uint64(c.servers), 2))
		for i := 0; i < 200; i++ {
			off, n := rnd.Int64N(1<<20), 1+rnd.Int64N(40000)
			var pieces int
			r.Route(c.atomic, off, n, func(s int, o, k int64) {
				pieces++
				if !r.Accepts(s, c.atomic, o, k) {
					t.Fatalf("%+v: server %d refuses %d+%d", c, s, o, k)
				}
				if c.atomic && (s != r.Home() || o != off || k != n) {
					t.Fatalf("%+v: atomic %d+%d routed as %d+%d to %d, want whole to %d", c, off, n, o, k, s, r.Home())
				}
				for other := 0; c.atomic && other < c.servers; other++ {
					if other != s && r.Accepts(other, true, o, k) {
						t.Fatalf("%+v: server %d accepts an atomic request of server %d", c, other, s)
					}
				}
			})
			if pieces == 0 {
				t.Fatalf("%+v: %d+%d routed nowhere", c, off, n)
			}
		}
	}
}

func TestCheckRegionSize(t *testing.T) {
	for _, c := range []struct {
		n  int64
		ok bool
	}{{MinRegionSize, true}, {1 << 20, true}, {MinRegionSize - 1, false}, {0, false}, {-4096, false}} {
		if err := CheckRegionSize(c.n); (err == nil) != c.ok {
			t.Errorf("CheckRegionSize(%d) = %v, want ok %v", c.n, err, c.ok)
		}
		if err := (Rule{RegionSize: c.n, Servers: 1}).Check(); (err == nil) != c.ok {
			t.Errorf("Rule.Check with region size %d = %v, want ok %v", c.n, err, c.ok)
		}
	}
}

func TestOwnsRun(t *testing.T) {
	two := Rule{Key: 1, RegionSize: 100, Servers: 2}
	first := two.Owner(0)
	for _, c := range []struct {
		name                  string
		r                     Rule
		server                int
		off, n, stride, count int64
		want                  bool
	}{
		{"one server", Rule{Key: 1, RegionSize: 100, Servers: 1}, 0, 5, 10, 1000, 50, true},
		{"one server, not it", Rule{Key: 1, RegionSize: 100, Servers: 1}, 1, 5, 10, 1000, 50, false},
		{"inside one region", two, first, 0, 10, 20, 5, true},
		{"into the next region", two, first, 0, 10, 20, 6, two.Owns(first, 100, 10)},
		{"every other region", two, first, 0, 100, 200, 4, two.Owner(200) == first && two.Owner(400) == first && two.Owner(600) == first},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := c.r.OwnsRun(c.server, c.off, c.n, c.stride, c.count); got != c.want {
				t.Fatalf("OwnsRun = %v, want %v", got, c.want)
			}
			each := true
			for k := int64(0); k < c.count; k++ {
				each = each && c.r.Owns(c.server, c.off+k*c.stride, c.n)
			}
			if each != c.want {
				t.Fatalf("piece by piece: %v, want %v", each, c.want)
			}
		})
	}
}
