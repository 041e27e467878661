package server

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/delegate-io/delegate/internal/stats"
	"github.com/delegate-io/delegate/internal/wire"
)

// DefaultFileStats is how many files a server keeps a summary of
// (Config.FileStats) before it adds new ones into one aggregate entry.
const DefaultFileStats = 256

// fileStats is the summary of one path (stats.File), from its first open
// until the server stops: it outlives the file's close, so the summary at
// the end of a job names every file. Typed atomics, added to once per
// request (counts gathered per request are added at its end), so nothing
// takes a lock for it on the data path.
type fileStats struct {
	path  string
	files atomic.Int64 // file entries counted here (more than 1 for the aggregate)

	requests [wire.NumTypes]atomic.Int64
	errors   [wire.NumTypes]atomic.Int64 // failures; a missing file is an answer
	waitNs   atomic.Int64
	waitMax  atomic.Int64

	write, read access

	bufferedBytes     atomic.Int64
	directBytes       atomic.Int64
	leaseWrites       atomic.Int64 // the clients' own writes, said at close
	leaseBytes        atomic.Int64
	readFromBuffer    atomic.Int64
	backendWrites     atomic.Int64
	backendWriteBytes atomic.Int64
	flushes           atomic.Int64
}

// access counts one direction of a file's I/O.
type access struct {
	bytes   atomic.Int64
	extents atomic.Int64
	sizes   [stats.SizeClasses]atomic.Int64
}

// sizeCounts gathers the extents of one request by size class, on the
// stack of the code that walks them; add adds them to the file's counters.
type sizeCounts [stats.SizeClasses]int64

func (c *sizeCounts) count(n int64) { c[stats.SizeClass(n)]++ }

// add counts a request's extents (by size class) and bytes.
func (a *access) add(c *sizeCounts, bytes int64) {
	var n int64
	for i, k := range c {
		if k != 0 {
			a.sizes[i].Add(k)
			n += k
		}
	}
	a.extents.Add(n)
	a.bytes.Add(bytes)
}

// request counts a request of type t on the file that waited w in the
// queue and was answered code.
func (fs *fileStats) request(t wire.Type, w time.Duration, code wire.Code) {
	if fs == nil || int(t) >= wire.NumTypes {
		return
	}
	fs.requests[t].Add(1)
	switch code {
	case wire.OK, wire.ENOENT, wire.EEXIST: // answers, not failures
	default:
		fs.errors[t].Add(1)
	}
	ns := int64(w)
	fs.waitNs.Add(ns)
	for {
		m := fs.waitMax.Load()
		if ns <= m || fs.waitMax.CompareAndSwap(m, ns) {
			return
		}
	}
}

// wrote counts a write request's extents, bytes, and how many of the bytes
// went straight to the backend.
func (fs *fileStats) wrote(c *sizeCounts, bytes, direct int64) {
	if fs == nil {
		return
	}
	fs.write.add(c, bytes)
	fs.directBytes.Add(direct)
	fs.bufferedBytes.Add(bytes - direct)
}

// leased counts the lease writes a client made itself (wire.Close).
func (fs *fileStats) leased(writes, bytes int64) {
	if fs == nil || writes <= 0 || bytes < 0 {
		return
	}
	fs.leaseWrites.Add(writes)
	fs.leaseBytes.Add(bytes)
}

// readDone counts a read request's extents and bytes, and the bytes the
// buffer served.
func (fs *fileStats) readDone(c *sizeCounts, bytes, fromBuffer int64) {
	if fs == nil {
		return
	}
	fs.read.add(c, bytes)
	fs.readFromBuffer.Add(fromBuffer)
}

// backendWrite counts backend write calls and their bytes.
func (fs *fileStats) backendWrite(calls int, n int64) {
	if fs == nil {
		return
	}
	fs.backendWrites.Add(int64(calls))
	fs.backendWriteBytes.Add(n)
}

// flushed counts a flush that wrote something.
func (fs *fileStats) flushed() {
	if fs != nil {
		fs.flushes.Add(1)
	}
}

func (a *access) snapshot() stats.Access {
	out := stats.Access{Bytes: a.bytes.Load(), Extents: a.extents.Load(), Sizes: make([]int64, stats.SizeClasses)}
	for i := range a.sizes {
		out.Sizes[i] = a.sizes[i].Load()
	}
	return out
}

func (fs *fileStats) snapshot() stats.File {
	out := stats.File{
		Path:              fs.path,
		Files:             fs.files.Load(),
		Requests:          map[string]int64{},
		Write:             fs.write.snapshot(),
		Read:              fs.read.snapshot(),
		BufferedBytes:     fs.bufferedBytes.Load(),
		DirectBytes:       fs.directBytes.Load(),
		LeaseWrites:       fs.leaseWrites.Load(),
		LeaseBytes:        fs.leaseBytes.Load(),
		ReadFromBuffer:    fs.readFromBuffer.Load(),
		BackendWrites:     fs.backendWrites.Load(),
		BackendWriteBytes: fs.backendWriteBytes.Load(),
		Flushes:           fs.flushes.Load(),
		WaitNanos:         fs.waitNs.Load(),
		WaitMaxNanos:      fs.waitMax.Load(),
	}
	for t := 1; t < wire.NumTypes; t++ {
		if n := fs.requests[t].Load(); n > 0 {
			out.Requests[wire.Type(t).String()] = n
		}
		if n := fs.errors[t].Load(); n > 0 {
			if out.Errors == nil {
				out.Errors = map[string]int64{}
			}
			out.Errors[wire.Type(t).String()] = n
		}
	}
	return out
}

// fileStatsTable holds the summaries by path. Its lock is taken when a
// file entry is made (an open that finds no entry) and for a snapshot,
// never per request. Memory is bounded: past max paths, new files share
// one aggregate entry (stats.OtherFiles).
type fileStatsTable struct {
	max int
	mu  struct {
		sync.Mutex
		byPath map[string]*fileStats
		other  *fileStats
	}
}

func newFileStatsTable(max int) *fileStatsTable {
	t := &fileStatsTable{max: max}
	t.mu.byPath = map[string]*fileStats{}
	return t
}

// attach returns the summary a new file entry of path counts into; nil if
// the server keeps no summaries. The aggregate counts every entry it takes
// (a file finalized and opened again counts twice there).
func (t *fileStatsTable) attach(path string) *fileStats {
	if t == nil || t.max <= 0 {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if fs := t.mu.byPath[path]; fs != nil {
		return fs
	}
	if len(t.mu.byPath) < t.max {
		fs := &fileStats{path: path}
		fs.files.Store(1)
		t.mu.byPath[path] = fs
		return fs
	}
	if t.mu.other == nil {
		t.mu.other = &fileStats{path: stats.OtherFiles}
	}
	t.mu.other.files.Add(1)
	return t.mu.other
}

// lookup returns the summary of path if there is one (a delete counts on
// the file it removes, and makes no entry of its own).
func (t *fileStatsTable) lookup(path string) *fileStats {
	if t == nil {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if fs := t.mu.byPath[path]; fs != nil {
		return fs
	}
	return nil
}

// snapshot copies every summary, heaviest first, the aggregate last.
func (t *fileStatsTable) snapshot() []stats.File {
	if t == nil {
		return nil
	}
	t.mu.Lock()
	all := make([]*fileStats, 0, len(t.mu.byPath)+1)
	for _, fs := range t.mu.byPath {
		all = append(all, fs)
	}
	other := t.mu.other
	t.mu.Unlock()
	out := make([]stats.File, 0, len(all)+1)
	for _, fs := range all {
		out = append(out, fs.snapshot())
	}
	stats.SortFiles(out)
	if other != nil {
		out = append(out, other.snapshot())
	}
	return out
}

// fileHandle returns the handle of a file request, and notes the file's
// summary in r so that the request is counted there (stream.handle).
func (st *stream) fileHandle(r *request, id uint64) (*handle, error) {
	hd, err := st.ss.handle(id)
	if err == nil {
		r.sum = hd.f.sum
	}
	return hd, err
}
