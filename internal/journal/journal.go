package journal

import (
	"errors"
	"fmt"
	"math/bits"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/delegate-io/delegate/internal/shm"
	"golang.org/x/sys/unix"
)

// ErrLocked is returned by Open when another process holds the state
// directory.
var ErrLocked = errors.New("delegate: state directory in use by another server")

// segmentBytes is about how large a new segment is: large enough that a
// full buffer needs few files and mappings, small enough that a small
// buffer does not reserve much address space (pages are only allocated
// when a slot is taken).
const segmentBytes = 64 << 20

// Journal is a state directory of mmap'd slots. Its methods are safe for
// concurrent use; a Slot is used by one goroutine at a time (the server
// holds the file's buffer lock).
type Journal struct {
	dir   string
	geo   geometry // of the segments it creates
	keep  int      // free slots kept resident for reuse; Trim punches the rest
	seq   atomic.Uint64
	lock  *os.File
	fails atomic.Int64 // Acquire calls that got no slot

	mu struct {
		sync.Mutex
		segs   []*segment
		warm   []*Slot // free, pages resident, marks to be cleared
		cold   []*Slot // free, pages released (or never allocated): marks read 0
		inUse  int
		closed bool
	}
}

type segment struct {
	name string
	f    *os.File
	mem  []byte
	geo  geometry
}

// Slot is one chunk buffer of a segment. It implements extent.Slot.
type Slot struct {
	j     *Journal
	seg   *segment
	pos   int64 // offset of the slot in the segment file
	hdr   []byte
	marks []uint64
	data  []byte
	cold  bool // pages released: reserve them (fallocate) before use
	// mapped: the bitmap's and the data's pages are in this process's
	// page tables (populate), so writes into the slot do not fault.
	mapped bool
	// touched has a bit per 4 KiB page of data whose marks may be set
	// since the slot was last cleared, so that taking it again clears
	// those marks only (a whole 128 KiB bitmap per slot was 8% of the
	// index's time for random 4 KiB writes). In memory only; nil: not
	// known (a slot found by Open), clear every mark.
	touched []uint64
}

// Pending is a committed slot found by Open: acknowledged data that did
// not reach the backend before the previous server stopped.
type Pending struct {
	Path string // the backend path
	ID   FileID // the file the chunk was buffered for (zero: not known)
	Off  int64  // the chunk's offset in the file
	Seq  uint64 // newer slots have higher values (J4)
	s    *Slot
}

// Open opens or creates the state directory dir for chunks of chunk
// bytes, keeping up to keep free slots resident once Trim ran (more stay
// resident between releases and Trim). It returns the committed
// slots a previous server left, sorted by path and then seq (the order to
// write them in); the caller writes each and then calls its Release. Free
// slots of existing segments are reused; segments of another chunk size
// serve only their pending slots and are removed once empty at the next
// Open.
func Open(dir string, chunk int64, keep int) (*Journal, []*Pending, error) {
	if chunk < pageBytes || chunk&(chunk-1) != 0 {
		return nil, nil, fmt.Errorf("journal: chunk %d: want a power of two >= %d", chunk, pageBytes)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("journal: %w", err)
	}
	lock, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, nil, fmt.Errorf("journal: %w", err)
	}
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		lock.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, nil, fmt.Errorf("%w: %s", ErrLocked, dir)
		}
		return nil, nil, fmt.Errorf("journal: lock %s: %w", dir, err)
	}
	n := max(1, int(segmentBytes/newGeometry(chunk, 1).slot))
	j := &Journal{dir: dir, geo: newGeometry(chunk, n), keep: keep, lock: lock}
	pend, err := j.load()
	if err != nil {
		j.Close(false)
		return nil, nil, err
	}
	sort.Slice(pend, func(a, b int) bool {
		if pend[a].Path != pend[b].Path {
			return pend[a].Path < pend[b].Path
		}
		return pend[a].Seq < pend[b].Seq
	})
	return j, pend, nil
}

// load maps the existing segments and collects their committed slots.
func (j *Journal) load() ([]*Pending, error) {
	names, err := filepath.Glob(filepath.Join(j.dir, "seg-*"))
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	var pend []*Pending
	var maxSeq uint64
	for _, name := range names {
		seg, err := openSegment(name)
		if err != nil {
			return nil, err
		}
		if seg == nil {
			os.Remove(name) // creation was interrupted: never used
			continue
		}
		ours := seg.geo.chunk == j.geo.chunk
		var found int
		for i := 0; i < seg.geo.n; i++ {
			s := seg.slot(j, i)
			h, ok := readHeader(s.hdr, seg.geo.chunk)
			if !ok {
				if ours {
					s.punch() // free: give its pages back
					j.mu.cold = append(j.mu.cold, s)
				}
				continue
			}
			maxSeq = max(maxSeq, h.seq)
			pend = append(pend, &Pending{Path: h.path, ID: h.id, Off: h.off, Seq: h.seq, s: s})
			j.mu.inUse++
			found++
		}
		if !ours && found == 0 {
			seg.unmap()
			os.Remove(name)
			continue
		}
		j.mu.segs = append(j.mu.segs, seg)
	}
	j.seq.Store(maxSeq)
	return pend, nil
}

// openSegment maps an existing segment; nil if its header is not valid.
func openSegment(name string) (*segment, error) {
	f, err := os.OpenFile(name, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("journal: %w", err)
	}
	page := make([]byte, pageBytes)
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("journal: %w", err)
	}
	if _, err := f.ReadAt(page, 0); err != nil {
		f.Close()
		return nil, nil
	}
	g, ok := decodeSegHeader(page)
	if !ok || fi.Size() != g.size() {
		f.Close()
		return nil, nil
	}
	mem, err := unix.Mmap(int(f.Fd()), 0, int(g.size()), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("journal: mmap %s: %w", name, err)
	}
	return &segment{name: name, f: f, mem: mem, geo: g}, nil
}

// newSegment creates, sizes and maps a segment (sparse: no page is
// allocated until a slot is taken) and returns its slots, all cold.
func (j *Journal) newSegment() ([]*Slot, error) {
	name := filepath.Join(j.dir, fmt.Sprintf("seg-%06d", len(j.mu.segs)))
	for k := len(j.mu.segs); ; k++ {
		name = filepath.Join(j.dir, fmt.Sprintf("seg-%06d", k))
		if _, err := os.Lstat(name); errors.Is(err, os.ErrNotExist) {
			break
		}
	}
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("journal: %w", err)
	}
	fail := func(err error) ([]*Slot, error) {
		f.Close()
		os.Remove(name)
		return nil, fmt.Errorf("journal: new segment %s: %w", name, err)
	}
	g := j.geo
	if err := f.Truncate(g.size()); err != nil {
		return fail(err)
	}
	// The header page is written through the file, so it is on the file
	// before any slot is handed out.
	page := make([]byte, pageBytes)
	encodeSegHeader(page, g)
	if _, err := f.WriteAt(page, 0); err != nil {
		return fail(err)
	}
	mem, err := unix.Mmap(int(f.Fd()), 0, int(g.size()), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return fail(err)
	}
	seg := &segment{name: name, f: f, mem: mem, geo: g}
	j.mu.segs = append(j.mu.segs, seg)
	out := make([]*Slot, g.n)
	for i := range out {
		out[i] = seg.slot(j, i)
		out[i].cold = true
	}
	return out, nil
}

func (seg *segment) slot(j *Journal, i int) *Slot {
	g := seg.geo
	pos := pageBytes + int64(i)*g.slot
	bm := seg.mem[pos+hdrBytes : pos+hdrBytes+g.bitmap]
	return &Slot{
		j: j, seg: seg, pos: pos,
		hdr:   seg.mem[pos : pos+hdrBytes : pos+hdrBytes],
		marks: unsafe.Slice((*uint64)(unsafe.Pointer(&bm[0])), g.bitmap/8),
		// Capacity ends with the slot: callers grow slices up to cap.
		data: seg.mem[pos+hdrBytes+g.bitmap : pos+g.slot : pos+g.slot],
	}
}

func (seg *segment) unmap() {
	unix.Munmap(seg.mem)
	seg.f.Close()
}

// punch gives the pages of s's bitmap and data back to the file system;
// they read as zeros afterwards.
func (s *Slot) punch() {
	g := s.seg.geo
	err := unix.Fallocate(int(s.seg.f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, s.pos+hdrBytes, g.bitmap+g.chunk)
	s.cold = err == nil
	s.mapped = s.mapped && !s.cold
}

// reserve allocates the pages of a cold slot, so that a full file system
// shows as an error here and not as SIGBUS on a write into the mapping.
func (s *Slot) reserve() error {
	g := s.seg.geo
	if err := unix.Fallocate(int(s.seg.f.Fd()), unix.FALLOC_FL_KEEP_SIZE, s.pos+hdrBytes, g.bitmap+g.chunk); err != nil {
		return err
	}
	s.cold = false
	// punched or never used: every mark reads 0
	if s.touched == nil {
		s.touched = make([]uint64, (int64(len(s.marks))/marksPerPage+63)/64)
	} else {
		clear(s.touched)
	}
	return nil
}

// Footprint is the memory one slot holds: header page, bitmap and data.
func (j *Journal) Footprint() int64 { return j.geo.slot }

// Dir returns the state directory.
func (j *Journal) Dir() string { return j.dir }

// FileID names a backend file: device, inode number and birth time (each
// 0 when not known). The birth time tells a file from a later one that
// got the freed inode number of a removed one.
type FileID struct{ Dev, Ino, Birth uint64 }

// Acquire takes a free slot for the chunk at off of path, the file id
// names, and commits its header. It returns nil, and counts a failure,
// when the path is too long or no slot can be had (the file system is
// full): the caller then buffers in the heap.
func (j *Journal) Acquire(path string, id FileID, off int64) *Slot {
	if len(path) == 0 || len(path) > PathMax {
		j.fails.Add(1)
		return nil
	}
	s, err := j.take()
	if err != nil {
		j.fails.Add(1)
		return nil
	}
	writeHeader(s.hdr, header{seq: j.seq.Add(1), off: off, id: id, path: path})
	return s
}

// take returns a free slot with a zeroed bitmap, creating a segment if
// none is free.
func (j *Journal) take() (*Slot, error) {
	j.mu.Lock()
	if j.mu.closed {
		j.mu.Unlock()
		return nil, errors.New("journal closed")
	}
	if k := len(j.mu.warm); k > 0 {
		s := j.mu.warm[k-1]
		j.mu.warm = j.mu.warm[:k-1]
		j.mu.inUse++
		j.mu.Unlock()
		s.clearMarks() // J3
		if !s.mapped {
			s.populate()
		}
		return s, nil
	}
	if len(j.mu.cold) == 0 {
		slots, err := j.newSegment()
		if err != nil {
			j.mu.Unlock()
			return nil, err
		}
		// Take from the front first: reverse, since we pop the end.
		for a, b := 0, len(slots)-1; a < b; a, b = a+1, b-1 {
			slots[a], slots[b] = slots[b], slots[a]
		}
		j.mu.cold = append(j.mu.cold, slots...)
	}
	k := len(j.mu.cold)
	s := j.mu.cold[k-1]
	j.mu.cold = j.mu.cold[:k-1]
	j.mu.inUse++
	j.mu.Unlock()
	if s.cold {
		if err := s.reserve(); err != nil {
			j.mu.Lock()
			j.mu.cold = append(j.mu.cold, s)
			j.mu.inUse--
			j.mu.Unlock()
			return nil, err
		}
	} else {
		s.clearMarks() // a punch that failed left it resident
	}
	if !s.mapped {
		s.populate()
	}
	return s, nil
}

// populate maps the pages of s's bitmap and data into the page tables in
// one call (they are allocated: reserve), instead of a page fault at the
// first write into each page: for random 4 KiB writes a fault per piece
// was most of the cost of the server's copy into the slot. The pages stay
// mapped while the slot is kept resident. A kernel without
// MADV_POPULATE_WRITE (before 5.14) faults them in one by one, as before.
func (s *Slot) populate() {
	g := s.seg.geo
	mem := s.seg.mem[s.pos+hdrBytes : s.pos+g.slot]
	err := unix.Madvise(mem, unix.MADV_POPULATE_WRITE)
	// And a write to each page (shm.Prefault: under a hypervisor that
	// shadows page tables, a populated page's first write still traps).
	// All of them: a slot is reused for other chunks, whose pieces fall on
	// other pages, so the pages a file's writes touch would be new ones on
	// every reuse (random 4 KiB writes, server profile: the copy into the
	// slots took 44 ms a run, 11 with this).
	shm.Prefault(mem, true)
	s.mapped = err == nil
}

// marksPerPage is the number of bitmap words that mark one page of data.
const marksPerPage = pageBytes / 64

// clearMarks zeroes the marks that may be set: those of the touched
// pages, or all of them when that is not known.
func (s *Slot) clearMarks() {
	if s.touched == nil {
		clear(s.marks)
		s.touched = make([]uint64, (int64(len(s.marks))/marksPerPage+63)/64)
		return
	}
	for w, v := range s.touched {
		for v != 0 {
			p := int64(w*64 + bits.TrailingZeros64(v))
			v &= v - 1
			clear(s.marks[p*marksPerPage : min((p+1)*marksPerPage, int64(len(s.marks)))])
		}
		s.touched[w] = 0
	}
}

// Data returns the slot's chunk bytes.
func (s *Slot) Data() []byte { return s.data }

// Mark records that bytes [i, i+n) of the chunk were written.
func (s *Slot) Mark(i, n int64) { s.MarkCount(i, n) }

// MarkCount is Mark, and returns how many of the bytes were not marked
// (extent.Index keeps no hole bitmap of its own for an item in a slot: its
// holes are the slot's unmarked bytes).
func (s *Slot) MarkCount(i, n int64) int64 {
	if n <= 0 {
		return 0
	}
	if s.touched != nil {
		p, last := i/pageBytes, (i+n-1)/pageBytes
		s.touched[p/64] |= 1 << (p % 64)
		for p++; p <= last; p++ {
			s.touched[p/64] |= 1 << (p % 64)
		}
	}
	return setBits(s.marks, i, n)
}

// MarkRunCount is MarkCount for count pieces of n bytes at i, i+stride,
// ... (stride >= n), in one pass: a strided run's pieces (a 64-byte file
// view's 65,536 a rank) took a call chain and their page's touched bit
// each, 40% of the index's time for them (issue 13).
func (s *Slot) MarkRunCount(i, n, stride, count int64) (changed int64) {
	if n <= 0 || count <= 0 {
		return 0
	}
	if s.touched != nil {
		if stride <= pageBytes {
			// every page of the run's span holds a byte of some piece
			for p, last := i/pageBytes, (i+(count-1)*stride+n-1)/pageBytes; p <= last; p++ {
				s.touched[p/64] |= 1 << (p % 64)
			}
		} else {
			for k := int64(0); k < count; k++ {
				o := i + k*stride
				for p, last := o/pageBytes, (o+n-1)/pageBytes; p <= last; p++ {
					s.touched[p/64] |= 1 << (p % 64)
				}
			}
		}
	}
	if n == 64 && i%64 == 0 && stride%64 == 0 {
		// a word a piece
		m := s.marks
		for w, step, e := i/64, stride/64, i/64+count*(stride/64); w < e; w += step {
			changed += int64(64 - bits.OnesCount64(m[w]))
			m[w] = ^uint64(0)
		}
		return changed
	}
	for k := int64(0); k < count; k++ {
		changed += setBits(s.marks, i+k*stride, n)
	}
	return changed
}

// Unmark records that bytes [i, i+n) need not be written.
func (s *Slot) Unmark(i, n int64) { clearBits(s.marks, i, n) }

// UnmarkCount is Unmark, and returns how many of the bytes were marked.
func (s *Slot) UnmarkCount(i, n int64) int64 {
	if n <= 0 {
		return 0
	}
	return clearBits(s.marks, i, n)
}

// MarkWords returns the mark bitmap: bit i%64 of word i/64 is set when
// byte i of the chunk is marked. The caller only reads it, between its
// own Mark and Unmark calls.
func (s *Slot) MarkWords() []uint64 { return s.marks }

// Marked reports whether byte i is marked.
func (s *Slot) Marked(i int64) bool { return s.marks[i/64]&(1<<(i%64)) != 0 }

// Release frees the slot (J3): its marked bytes are on the backend or
// were dropped. It stays resident (its pages allocated and mapped), so a
// file written again soon takes it back without a fallocate and a page
// table fill: for random 4 KiB writes the punch and the reserve of the
// slots beyond keep were a fifth of the server's time per run. Trim
// gives the pages of the free slots beyond keep back once they have been
// free a while.
func (s *Slot) Release() {
	clearHeader(s.hdr)
	j := s.j
	j.mu.Lock()
	defer j.mu.Unlock()
	j.mu.inUse--
	if s.seg.geo.chunk != j.geo.chunk {
		return // a segment of another chunk size: never reused
	}
	j.mu.warm = append(j.mu.warm, s)
}

// Surplus returns the number of free slots kept resident beyond keep.
func (j *Journal) Surplus() int {
	j.mu.Lock()
	defer j.mu.Unlock()
	return max(0, len(j.mu.warm)-j.keep)
}

// Trim gives the pages of the free resident slots beyond keep back to the
// file system (the ones released first: take reuses the last), and returns
// how many. The resident slots, in use or free, never take more memory
// than the most that were in use at once: a slot is reserved only when no
// free one is resident.
func (j *Journal) Trim() int {
	j.mu.Lock()
	k := len(j.mu.warm) - j.keep
	if k <= 0 || j.mu.closed {
		j.mu.Unlock()
		return 0
	}
	out := append([]*Slot(nil), j.mu.warm[:k]...)
	j.mu.warm = append(j.mu.warm[:0], j.mu.warm[k:]...)
	j.mu.Unlock()
	for _, s := range out {
		s.punch()
	}
	j.mu.Lock()
	j.mu.cold = append(j.mu.cold, out...)
	j.mu.Unlock()
	return len(out)
}

// Runs calls fn with each run of marked bytes of the pending slot, in
// offset order: off is the run's offset in the file.
func (p *Pending) Runs(fn func(off int64, b []byte) error) error {
	s := p.s
	chunk := int64(len(s.data))
	for i := int64(0); i < chunk; {
		i = nextChange(s.marks, i, chunk, false)
		if i >= chunk {
			break
		}
		e := nextChange(s.marks, i, chunk, true)
		if err := fn(p.Off+i, s.data[i:e]); err != nil {
			return err
		}
		i = e
	}
	return nil
}

// Bytes returns the number of marked bytes.
func (p *Pending) Bytes() int64 {
	var n int
	for _, w := range p.s.marks {
		n += bits.OnesCount64(w)
	}
	return int64(n)
}

// Release frees the pending slot once its bytes are on the backend.
func (p *Pending) Release() { p.s.Release() }

// Stats are the journal's counters.
type Stats struct {
	InUse    int   // slots holding buffered data
	Resident int   // free slots kept resident for reuse
	Fails    int64 // chunks buffered in the heap because no slot could be had
}

// Stats returns the journal's counters.
func (j *Journal) Stats() Stats {
	j.mu.Lock()
	defer j.mu.Unlock()
	return Stats{InUse: j.mu.inUse, Resident: len(j.mu.warm), Fails: j.fails.Load()}
}

// Close releases the directory. With remove, and no slot in use, it unmaps
// the segments and removes the directory: everything reached the backend.
// Otherwise the segments stay mapped (a slot may still be referenced) and
// on disk, for the next Open to recover. Close returns whether it removed
// the directory.
func (j *Journal) Close(remove bool) (bool, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.mu.closed {
		return false, nil
	}
	j.mu.closed = true
	removed := false
	var err error
	if remove && j.mu.inUse == 0 {
		for _, seg := range j.mu.segs {
			seg.unmap()
		}
		j.mu.segs = nil
		// The lock goes last, just before the directory: a server killed
		// in between leaves a directory that still has its lock (a test's
		// sweep, tests/statedirs.sh, and a restart both know it) or an
		// empty one, never segments without a lock.
		entries, _ := os.ReadDir(j.dir)
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), "seg-") || e.Name() == "root" {
				if rerr := os.Remove(filepath.Join(j.dir, e.Name())); rerr != nil && err == nil {
					err = rerr
				}
			}
		}
		for _, p := range []string{filepath.Join(j.dir, "lock"), j.dir} {
			if rerr := os.Remove(p); rerr != nil && err == nil {
				err = rerr
			}
		}
		removed = err == nil
	}
	j.lock.Close() // drops the flock
	return removed, err
}

// setBits sets bits [i, i+n) and returns how many were clear; whole
// words take one store each.
func setBits(b []uint64, i, n int64) (changed int64) {
	for n > 0 && (i%64 != 0 || n < 64) {
		w, s := i/64, i%64
		k := min(64-s, n)
		mask := ^uint64(0) >> (64 - k) << s
		changed += int64(bits.OnesCount64(mask &^ b[w]))
		b[w] |= mask
		i, n = i+k, n-k
	}
	if n == 0 {
		return changed
	}
	w, e := i/64, (i+n)/64
	for k := w; k < e; k++ {
		changed += int64(64 - bits.OnesCount64(b[k]))
		b[k] = ^uint64(0)
	}
	if t := (i + n) % 64; t > 0 {
		mask := ^uint64(0) >> (64 - t)
		changed += int64(bits.OnesCount64(mask &^ b[e]))
		b[e] |= mask
	}
	return changed
}

// clearBits clears bits [i, i+n) and returns how many were set; whole
// words take one store each.
func clearBits(b []uint64, i, n int64) (changed int64) {
	for n > 0 && (i%64 != 0 || n < 64) {
		w, s := i/64, i%64
		k := min(64-s, n)
		mask := ^uint64(0) >> (64 - k) << s
		changed += int64(bits.OnesCount64(mask & b[w]))
		b[w] &^= mask
		i, n = i+k, n-k
	}
	if n == 0 {
		return changed
	}
	w, e := i/64, (i+n)/64
	for k := w; k < e; k++ {
		changed += int64(bits.OnesCount64(b[k]))
		b[k] = 0
	}
	if t := (i + n) % 64; t > 0 {
		mask := ^uint64(0) >> (64 - t)
		changed += int64(bits.OnesCount64(mask & b[e]))
		b[e] &^= mask
	}
	return changed
}

// nextChange returns the first bit index in [i, hi) whose value is not v,
// or hi.
func nextChange(b []uint64, i, hi int64, v bool) int64 {
	for i < hi {
		w := i / 64
		word := b[w]
		if v {
			word = ^word
		}
		if word >>= uint(i % 64); word != 0 {
			return min(i+int64(bits.TrailingZeros64(word)), hi)
		}
		i = (w + 1) * 64
	}
	return hi
}
