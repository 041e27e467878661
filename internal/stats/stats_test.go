package stats

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestSizeClass(t *testing.T) {
	for _, c := range []struct {
		n    int64
		want string
	}{
		{0, "0-100"}, {100, "0-100"}, {101, "100-1K"}, {1024, "100-1K"}, {1025, "1K-10K"},
		{4096, "1K-10K"}, {10 << 10, "1K-10K"}, {64 << 10, "10K-100K"}, {1 << 20, "100K-1M"},
		{1<<20 + 1, "1M-4M"}, {4 << 20, "1M-4M"}, {8 << 20, "4M-10M"}, {64 << 20, "10M-100M"},
		{512 << 20, "100M-1G"}, {1 << 30, "100M-1G"}, {3 << 30, "1G+"},
	} {
		if got := SizeNames[SizeClass(c.n)]; got != c.want {
			t.Errorf("SizeClass(%d) = %s, want %s", c.n, got, c.want)
		}
	}
}

func TestMergeFiles(t *testing.T) {
	a := []File{
		{Path: "/a", Files: 1, Requests: map[string]int64{"write": 2, "open": 1}, Write: Access{Bytes: 100, Extents: 4, Sizes: []int64{4}},
			BackendWrites: 1, WaitNanos: 30, WaitMaxNanos: 20},
		{Path: "/small", Files: 1, Requests: map[string]int64{"open": 1}},
	}
	b := []File{
		{Path: "/a", Files: 1, Requests: map[string]int64{"write": 1}, Write: Access{Bytes: 5000, Extents: 1, Sizes: []int64{0, 0, 1}},
			BackendWrites: 1, WaitNanos: 10, WaitMaxNanos: 50, Errors: map[string]int64{"sync": 1}},
		{Path: "/big", Files: 1, Requests: map[string]int64{"read": 1}, Read: Access{Bytes: 1 << 20, Extents: 1}},
	}
	got := MergeFiles(a, b)
	if len(got) != 3 || got[0].Path != "/big" || got[1].Path != "/a" || got[2].Path != "/small" {
		t.Fatalf("order: %+v", got)
	}
	f := got[1]
	if f.Write.Bytes != 5100 || f.Write.Extents != 5 || f.Requests["write"] != 3 || f.Total() != 4 ||
		f.Write.Sizes[0] != 4 || f.Write.Sizes[2] != 1 || f.BackendWrites != 2 || f.Coalescing() != 2.5 ||
		f.WaitMaxNanos != 50 || f.WaitMean() != 10 || f.Errors["sync"] != 1 || f.Files != 1 {
		t.Fatalf("merged /a: %+v", f)
	}
	if a[0].Write.Bytes != 100 || a[0].Requests["write"] != 2 {
		t.Fatal("merging changed its input")
	}
	s := FilesSummary(got, 2)
	for _, want := range []string{"top 2 of 3", "/big", "/a", "write    5.0 KiB (5100 bytes) in 3 requests, 5 extents; sizes 0-100:4 1K-10K:1", "errors sync=1"} {
		if !strings.Contains(s, want) {
			t.Errorf("summary lacks %q:\n%s", want, s)
		}
	}
	if strings.Contains(s, "/small") {
		t.Errorf("summary shows more than the top 2:\n%s", s)
	}
}

func TestFlushLine(t *testing.T) {
	for _, c := range []struct {
		name string
		s    Snapshot
		want string
	}{
		{"nothing", Snapshot{}, "none; 0 failed"},
		{"direct only", Snapshot{BytesDirect: 64 << 20}, "64.0 MiB written direct, straight to the backend: no flush needed; 0 failed"},
		{"buffered", Snapshot{Flushes: map[string]int64{"close": 1}, FlushBytes: 1 << 20}, "close=1; 1.0 MiB flushed from the buffer; 0 failed"},
		{"both", Snapshot{Flushes: map[string]int64{"close": 2}, FlushBytes: 1 << 20, BytesDirect: 2 << 20, FlushErrors: 1},
			"close=2; 1.0 MiB flushed from the buffer, 2.0 MiB written direct; 1 failed"},
	} {
		if got := c.s.flushLine(); got != c.want {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
		if !strings.Contains(c.s.String(), "flushes        "+c.want) {
			t.Errorf("%s: String lacks the line", c.name)
		}
	}
}

func TestSnapshotJSONCarriesFiles(t *testing.T) {
	s := Snapshot{Files: []File{{Path: "/x", Files: 1, Write: Access{Bytes: 7}}}}
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	var back Snapshot
	if err := json.Unmarshal(b, &back); err != nil || len(back.Files) != 1 || back.Files[0].Write.Bytes != 7 {
		t.Fatalf("%v %+v from %s", err, back.Files, b)
	}
	var total Snapshot
	total.Add(&s)
	total.Add(&s)
	if len(total.Files) != 1 || total.Files[0].Write.Bytes != 14 {
		t.Fatalf("Add: %+v", total.Files)
	}
}
