package stats

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// SizeBounds are the upper bounds (inclusive) of the access size classes,
// Darshan's: 0-100, 100-1K, 1K-10K, 10K-100K, 100K-1M, 1M-4M, 4M-10M,
// 10M-100M, 100M-1G, and the last class takes everything larger.
var SizeBounds = [...]int64{100, 1 << 10, 10 << 10, 100 << 10, 1 << 20, 4 << 20, 10 << 20, 100 << 20, 1 << 30}

// SizeClasses is the number of size classes.
const SizeClasses = len(SizeBounds) + 1

// SizeNames label the size classes.
var SizeNames = [SizeClasses]string{"0-100", "100-1K", "1K-10K", "10K-100K", "100K-1M", "1M-4M", "4M-10M", "10M-100M", "100M-1G", "1G+"}

// SizeClass returns the size class of an access of n bytes.
func SizeClass(n int64) int {
	for i, b := range SizeBounds {
		if n <= b {
			return i
		}
	}
	return SizeClasses - 1
}

// OtherFiles names the entry that aggregates the files past the cap on
// files a server keeps.
const OtherFiles = "(other files)"

// Access is one direction of a file's I/O as clients asked for it.
type Access struct {
	Bytes   int64   `codec:"bytes" json:"bytes"`
	Extents int64   `codec:"extents" json:"extents"`
	Sizes   []int64 `codec:"sizes" json:"sizes"` // extents by size class (SizeNames)
}

func (a *Access) add(o *Access) {
	a.Bytes += o.Bytes
	a.Extents += o.Extents
	if len(a.Sizes) < len(o.Sizes) {
		a.Sizes = append(a.Sizes, make([]int64, len(o.Sizes)-len(a.Sizes))...)
	}
	for i, n := range o.Sizes {
		a.Sizes[i] += n
	}
}

// File is the per-file summary a server keeps (the Darshan habit): what
// clients asked of the file and what the server made of it. A server keeps
// it after the file's close, until it stops; past its cap on files, new
// files add into one entry named OtherFiles (Files counts them).
type File struct {
	Path  string `codec:"path" json:"path"`
	Files int64  `codec:"files" json:"files"` // files in this entry: 1, or more for OtherFiles

	// Requests by message type ("write", "read", "sync", ...), and those
	// that failed (a missing file is an answer, not a failure).
	Requests map[string]int64 `codec:"requests" json:"requests"`
	Errors   map[string]int64 `codec:"errors" json:"errors,omitempty"`

	Write Access `codec:"write" json:"write"`
	Read  Access `codec:"read" json:"read"`

	// Written bytes by path: through the write-behind buffer, or straight
	// to the backend (extents of at least --direct).
	BufferedBytes int64 `codec:"buffered_bytes" json:"buffered_bytes"`
	DirectBytes   int64 `codec:"direct_bytes" json:"direct_bytes"`
	// Lease writes: bytes the clients wrote to the backend themselves
	// (README, Semantics), as they said when they closed the file.
	LeaseWrites int64 `codec:"lease_writes,omitempty" json:"lease_writes,omitempty"`
	LeaseBytes  int64 `codec:"lease_bytes,omitempty" json:"lease_bytes,omitempty"`
	// Read bytes served from the buffer rather than the backend.
	ReadFromBuffer int64 `codec:"read_from_buffer" json:"read_from_buffer"`

	// What reached the backend: write calls and bytes (flushes and direct
	// writes), and flushes that wrote something.
	BackendWrites     int64 `codec:"backend_writes" json:"backend_writes"`
	BackendWriteBytes int64 `codec:"backend_write_bytes" json:"backend_write_bytes"`
	Flushes           int64 `codec:"flushes" json:"flushes"`

	// Time the file's requests spent in the queue: total and longest.
	WaitNanos    int64 `codec:"wait_ns" json:"wait_ns"`
	WaitMaxNanos int64 `codec:"wait_max_ns" json:"wait_max_ns"`
}

// Total is the number of requests of every type.
func (f *File) Total() int64 {
	var n int64
	for _, v := range f.Requests {
		n += v
	}
	return n
}

// Coalescing returns written extents per backend write.
func (f *File) Coalescing() float64 {
	if f.BackendWrites == 0 {
		return 0
	}
	return float64(f.Write.Extents) / float64(f.BackendWrites)
}

// WaitMean is the mean time in queue of the file's requests.
func (f *File) WaitMean() time.Duration {
	n := f.Total()
	if n == 0 {
		return 0
	}
	return time.Duration(f.WaitNanos / n)
}

// Add accumulates o into f (the same file on several servers, or files
// aggregated).
func (f *File) Add(o *File) {
	f.Files = max(f.Files, o.Files)
	f.Requests = addMap(f.Requests, o.Requests)
	if len(o.Errors) > 0 {
		f.Errors = addMap(f.Errors, o.Errors)
	}
	f.Write.add(&o.Write)
	f.Read.add(&o.Read)
	for _, p := range [][2]*int64{
		{&f.BufferedBytes, &o.BufferedBytes}, {&f.DirectBytes, &o.DirectBytes},
		{&f.LeaseWrites, &o.LeaseWrites}, {&f.LeaseBytes, &o.LeaseBytes},
		{&f.ReadFromBuffer, &o.ReadFromBuffer}, {&f.BackendWrites, &o.BackendWrites},
		{&f.BackendWriteBytes, &o.BackendWriteBytes}, {&f.Flushes, &o.Flushes}, {&f.WaitNanos, &o.WaitNanos},
	} {
		*p[0] += *p[1]
	}
	f.WaitMaxNanos = max(f.WaitMaxNanos, o.WaitMaxNanos)
}

// MergeFiles merges the per-file summaries of several servers by path (a
// file whose regions several servers own appears on each), heaviest first:
// by bytes written and read, then by path.
func MergeFiles(lists ...[]File) []File {
	byPath := map[string]*File{}
	var order []string
	for _, l := range lists {
		for i := range l {
			f := byPath[l[i].Path]
			if f == nil {
				f = &File{Path: l[i].Path}
				byPath[l[i].Path] = f
				order = append(order, l[i].Path)
			}
			f.Add(&l[i])
		}
	}
	out := make([]File, 0, len(order))
	for _, p := range order {
		out = append(out, *byPath[p])
	}
	SortFiles(out)
	return out
}

// SortFiles orders files heaviest first (bytes written and read), then by
// path.
func SortFiles(fs []File) {
	sort.SliceStable(fs, func(i, j int) bool {
		a, b := fs[i].Write.Bytes+fs[i].LeaseBytes+fs[i].Read.Bytes, fs[j].Write.Bytes+fs[j].LeaseBytes+fs[j].Read.Bytes
		if a != b {
			return a > b
		}
		return fs[i].Path < fs[j].Path
	})
}

// sizes renders the non-empty size classes of an access, "1K-10K:12 1M-4M:3".
func sizes(a *Access) string {
	var parts []string
	for i, n := range a.Sizes {
		if n != 0 && i < SizeClasses {
			parts = append(parts, fmt.Sprintf("%s:%d", SizeNames[i], n))
		}
	}
	if len(parts) == 0 {
		return ""
	}
	return "; sizes " + strings.Join(parts, " ")
}

// String renders a file's summary in a few lines.
func (f *File) String() string {
	var b strings.Builder
	name := f.Path
	if f.Files > 1 {
		name = fmt.Sprintf("%s (%d files)", f.Path, f.Files)
	}
	fmt.Fprintf(&b, "  %s\n", name)
	req := func(t string) int64 { return f.Requests[t] }
	if f.Write.Bytes > 0 || req("write") > 0 {
		fmt.Fprintf(&b, "    write    %s in %d requests, %d extents%s\n",
			exact(f.Write.Bytes), req("write"), f.Write.Extents, sizes(&f.Write))
		fmt.Fprintf(&b, "    backend  %s in %d writes (%.1f extents per write); %s buffered, %s direct; %d flushes\n",
			Bytes(f.BackendWriteBytes), f.BackendWrites, f.Coalescing(), Bytes(f.BufferedBytes), Bytes(f.DirectBytes), f.Flushes)
	}
	if f.LeaseWrites > 0 {
		fmt.Fprintf(&b, "    lease    %s in %d writes by the ranks themselves, straight to the backend\n",
			exact(f.LeaseBytes), f.LeaseWrites)
	}
	if f.Read.Bytes > 0 || req("read") > 0 {
		fmt.Fprintf(&b, "    read     %s in %d requests, %d extents (%s from the buffer)%s\n",
			exact(f.Read.Bytes), req("read"), f.Read.Extents, Bytes(f.ReadFromBuffer), sizes(&f.Read))
	}
	other := map[string]int64{}
	for k, v := range f.Requests {
		if k != "write" && k != "read" {
			other[k] = v
		}
	}
	errs := "no errors"
	if len(f.Errors) > 0 {
		errs = "errors " + kv(f.Errors)
	}
	fmt.Fprintf(&b, "    other    %s; queue wait mean %s, max %s; %s\n", kv(other),
		f.WaitMean().Round(time.Microsecond), time.Duration(f.WaitMaxNanos).Round(time.Microsecond), errs)
	return b.String()
}

// FilesSummary renders the top n files (all if n <= 0), heaviest first, with
// a header saying how many there are.
func FilesSummary(fs []File, n int) string {
	if len(fs) == 0 {
		return ""
	}
	fs = append([]File(nil), fs...)
	SortFiles(fs)
	var b strings.Builder
	if n <= 0 || n >= len(fs) {
		fmt.Fprintf(&b, "files (%d, by bytes moved)\n", len(fs))
		n = len(fs)
	} else {
		fmt.Fprintf(&b, "files (top %d of %d by bytes moved; all of them in `delegate-server stats --json`)\n", n, len(fs))
	}
	for i := range fs[:n] {
		b.WriteString(fs[i].String())
	}
	return b.String()
}

// exact formats a byte count with a binary unit and, past 1 KiB, exactly.
func exact(n int64) string {
	if n < 1<<10 {
		return Bytes(n)
	}
	return fmt.Sprintf("%s (%d bytes)", Bytes(n), n)
}

// Bytes formats a byte count with a binary unit.
func Bytes(n int64) string {
	switch {
	case n < 1<<10:
		return fmt.Sprintf("%d B", n)
	case n < 1<<20:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	case n < 1<<30:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	default:
		return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
	}
}
