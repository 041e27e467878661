package server

import (
	"fmt"
	"sync"

	"github.com/delegate-io/delegate/internal/backend"
	"github.com/delegate-io/delegate/internal/stats"
	"github.com/delegate-io/delegate/internal/wire"
)

// A collective written from the ranks' rings (issue 13). The pieces of a
// collective write that a client lets the server hold (wire.IOHold) stay
// in the rank's ring, unanswered, until the rank's end marker
// (stream.hold, coll.go). When the last rank's marker arrives the server
// knows the whole collective: writeColl merges every rank's pieces in
// offset order, writes each contiguous run of at least --direct bytes to
// the backend straight from the ring slices (vectored, IOV_MAX iovecs a
// call: the kernel's copy into the page cache is the server's only one, as
// for a direct write), and buffers the requests that have bytes outside
// such runs as any write. View-all's two ranks' 64-byte pieces interleave
// into one run, and so do ior's and view-4k-all's 4 KiB blocks: each byte
// is copied once by the client into the ring and once by the kernel,
// instead of ring -> slot -> page cache, and the index never sees it.
//
// The threshold is --direct, the size from which an independent extent
// skips the buffer (write.go): a run that long is a write the backend
// handles well alone, and buffering it would only add a copy; a shorter
// run keeps the buffer's coalescing with neighbouring writes.

// collPiece is one held write request of a collective: its validated
// extents, its data (a ring slice) and, once applied, its result.
type collPiece struct {
	ext      *wire.Extents
	data     []byte
	n        int64
	err      error
	buffered bool // bytes outside the direct runs: applied by file.write
}

// collSeg is a contiguous part of a piece: one extent, or a run of
// extents that touch (stride == length).
type collSeg struct {
	off int64
	b   []byte
	p   *collPiece
}

// collCursor walks one rank's held pieces, in order, a segment at a time.
// A segment that starts before the end of the rank's earlier ones (an
// overlapping or backwards list) is not merged: its piece is buffered,
// after the direct runs, so the rank's later bytes still win.
type collCursor struct {
	pieces  []*collPiece
	pi, ri  int   // piece, run of the piece
	k       int64 // extent of the run
	pos     int64 // data of the piece consumed
	prevEnd int64
	head    collSeg
	ok      bool
}

// advance loads the next segment into head; ok is false at the end.
func (c *collCursor) advance() {
	c.ok = false
	for c.pi < len(c.pieces) {
		p := c.pieces[c.pi]
		runs := p.ext.Runs()
		if c.ri >= len(runs) {
			c.pi, c.ri, c.k, c.pos = c.pi+1, 0, 0, 0
			continue
		}
		r := runs[c.ri]
		if c.k >= r.Count {
			c.ri, c.k = c.ri+1, 0
			continue
		}
		off := r.Off + c.k*r.Stride
		n, k := r.Len, int64(1)
		if r.Stride == r.Len && r.Len > 0 {
			k = r.Count - c.k // touching extents: one segment
			n = k * r.Len
		}
		b := p.data[c.pos : c.pos+n]
		c.k += k
		c.pos += n
		if n == 0 {
			continue
		}
		if off < c.prevEnd {
			p.buffered = true
			continue
		}
		c.prevEnd = off + n
		c.head, c.ok = collSeg{off: off, b: b, p: p}, true
		return
	}
}

// writeColl applies a complete collective: every rank's held pieces,
// ranks[i] in the rank's order. Each piece gets its result.
func (f *file) writeColl(ranks [][]*collPiece) {
	err := f.flushErr()
	if err == nil {
		err = f.writeCollDirect(ranks)
	}
	for _, rk := range ranks {
		for _, p := range rk {
			switch {
			case err != nil:
				p.err = err
			case p.buffered:
				p.n, p.err = f.write(p.ext, p.data)
			default:
				var sizes sizeCounts
				for _, r := range p.ext.Runs() {
					sizes[stats.SizeClass(r.Len)] += r.Count
				}
				p.n = p.ext.Total()
				f.sum.wrote(&sizes, p.n, p.n)
			}
		}
	}
}

// gatherMax: pieces shorter than this are copied into a gather buffer
// (one memmove) instead of getting an iovec each. The kernel's cost per
// iovec (~50 ns here) is a 64-byte piece's whole copy several times over:
// view-all's 131,072 64-byte pieces as iovecs cost more server CPU than
// the buffer's copy and index work they replace. From a few hundred bytes
// the iovec is cheaper than a copy; ior's and view-4k-all's 4 KiB blocks
// go from the rings untouched.
const gatherMax = 512

// gatherBytes is the gather buffer of one collective being written: a
// full one is written out (a backend write of at least this much).
const gatherBytes = 1 << 20

var gatherPool = sync.Pool{New: func() any { b := make([]byte, 0, gatherBytes); return &b }}

// collScratch is what writing one collective needs besides the rings,
// kept between collectives.
type collScratch struct {
	segs []collSeg
	bufs [][]byte
}

var collScratchPool = sync.Pool{New: func() any { return new(collScratch) }}

// iovWriter writes contiguous bytes at off as they are added: ring slices
// as iovecs, short pieces gathered, IOV_MAX iovecs (or a full gather
// buffer) a call, each call followed by the punch of the older buffered
// bytes under it (writeDirect's order: the new bytes first).
type iovWriter struct {
	f         *file
	bf        backend.File
	off, n    int64 // the bytes in bufs
	bufs      [][]byte
	gather    *[]byte // nil until a short piece comes
	lastStart int     // where bufs' last entry starts in the gather buffer, if staged
	staged    bool    // bufs' last entry is gathered
}

const maxIOV = 1024 // IOV_MAX: backend.WriteRun's batch

func (w *iovWriter) add(off int64, p []byte) error {
	if w.n > 0 && off != w.off+w.n {
		if err := w.flush(); err != nil {
			return err
		}
	}
	if len(p) < gatherMax {
		if w.gather == nil {
			w.gather = gatherPool.Get().(*[]byte)
		}
		g := *w.gather
		if len(g)+len(p) > cap(g) || (!w.staged && len(w.bufs) == maxIOV) {
			if err := w.flush(); err != nil {
				return err
			}
			g = *w.gather
		}
		if !w.staged {
			w.lastStart = len(g)
			w.bufs = append(w.bufs, nil)
			w.staged = true
		}
		g = append(g, p...)
		*w.gather = g
		w.bufs[len(w.bufs)-1] = g[w.lastStart:]
	} else {
		if len(w.bufs) == maxIOV {
			if err := w.flush(); err != nil {
				return err
			}
		}
		w.bufs = append(w.bufs, p)
		w.staged = false
	}
	if w.n == 0 {
		w.off = off
	}
	w.n += int64(len(p))
	return nil
}

func (w *iovWriter) flush() error {
	if w.n == 0 {
		return nil
	}
	f, e := w.f, w.f.eng
	off, n := w.off, w.n
	calls, err := backend.WriteRun(w.bf, w.bufs, off)
	clear(w.bufs) // no reference to the rings stays behind
	w.bufs, w.n, w.staged = w.bufs[:0], 0, false
	if w.gather != nil {
		*w.gather = (*w.gather)[:0]
	}
	if err != nil {
		return fmt.Errorf("collective write %s: %w", f.path, err)
	}
	f.punch(off, n) // the older buffered bytes, now that the newer are on the backend
	e.stats.backendWrite(off, n, e.set.ChunkBytes, calls)
	e.stats.bytesDirect.Add(n)
	e.stats.collDirect.Add(n)
	f.sum.backendWrite(calls, n)
	return nil
}

// writeCollDirect merges the ranks' pieces in offset order and writes the
// contiguous runs of at least DirectBytes to the backend from the ring
// slices (iovWriter), all under flushMu. The pieces of shorter runs, and
// pieces that overlap bytes merged before them, are marked buffered. An
// error means the collective failed; bytes of runs written before it stay
// written.
func (f *file) writeCollDirect(ranks [][]*collPiece) error {
	e := f.eng
	curs := make([]collCursor, len(ranks))
	for i := range ranks {
		curs[i].pieces = ranks[i]
		curs[i].advance()
	}
	sc := collScratchPool.Get().(*collScratch)
	w := iovWriter{f: f, bufs: sc.bufs[:0]}
	segs := sc.segs[:0] // of the current run until it reaches DirectBytes
	defer func() {
		clear(segs)
		sc.segs, sc.bufs = segs[:0], w.bufs[:0]
		collScratchPool.Put(sc)
		if w.gather != nil {
			*w.gather = (*w.gather)[:0]
			gatherPool.Put(w.gather)
		}
	}()
	f.flushMu.Lock()
	defer f.flushMu.Unlock()
	w.bf = f.backend()
	var (
		runOff, runEnd int64 // the current run; runEnd is also the end of everything merged
		direct         bool  // the current run reached DirectBytes: its bytes go to w
		anyMerged      bool
	)
	closeRun := func() error {
		if direct {
			return w.flush()
		}
		for _, s := range segs {
			s.p.buffered = true
		}
		clear(segs)
		segs = segs[:0]
		return nil
	}
	for {
		var c *collCursor
		for i := range curs {
			if curs[i].ok && (c == nil || curs[i].head.off < c.head.off) {
				c = &curs[i]
			}
		}
		if c == nil {
			break
		}
		s := c.head
		c.advance()
		if anyMerged && s.off < runEnd {
			s.p.buffered = true // overlaps another rank's bytes: undefined in MPI, applied after
			continue
		}
		if !anyMerged || s.off != runEnd {
			if err := closeRun(); err != nil {
				return err
			}
			runOff, direct = s.off, false
		}
		anyMerged = true
		runEnd = s.off + int64(len(s.b))
		if direct {
			if err := w.add(s.off, s.b); err != nil {
				return err
			}
			continue
		}
		segs = append(segs, s)
		if runEnd-runOff >= e.set.DirectBytes {
			direct = true
			for _, p := range segs {
				if err := w.add(p.off, p.b); err != nil {
					return err
				}
			}
			clear(segs)
			segs = segs[:0]
		}
	}
	return closeRun()
}
