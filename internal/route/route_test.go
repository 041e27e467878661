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
