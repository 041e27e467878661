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
