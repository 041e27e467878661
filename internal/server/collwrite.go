package server

import (
	"fmt"

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

// writeCollDirect merges the ranks' pieces in offset order and writes the
// contiguous runs of at least DirectBytes to the backend from the ring
// slices, each batch followed by a punch of the older buffered bytes under
// it (writeDirect's order), all under flushMu. The pieces of shorter runs,
// and pieces that overlap bytes merged before them, are marked buffered.
// An error means the collective failed; bytes of runs written before it
// stay written.
func (f *file) writeCollDirect(ranks [][]*collPiece) error {
	e := f.eng
	curs := make([]collCursor, len(ranks))
	for i := range ranks {
		curs[i].pieces = ranks[i]
		curs[i].advance()
	}
	f.flushMu.Lock()
	defer f.flushMu.Unlock()
	bf := f.backend()
	var (
		segs      []collSeg // of the current run, not yet written
		bufs      [][]byte
		runOff    int64 // where the current run starts
		runEnd    int64 // and ends (also the end of everything merged)
		direct    bool  // the current run reached DirectBytes
		anyMerged bool
	)
	write := func() error {
		if len(segs) == 0 {
			return nil
		}
		bufs = bufs[:0]
		for _, s := range segs {
			bufs = append(bufs, s.b)
		}
		off := segs[0].off
		n := segs[len(segs)-1].off + int64(len(segs[len(segs)-1].b)) - off
		calls, err := backend.WriteRun(bf, bufs, off)
		clear(bufs) // no reference to the rings stays behind
		segs = segs[:0]
		if err != nil {
			return fmt.Errorf("collective write %s: %w", f.path, err)
		}
		f.punch(off, n) // the older buffered bytes, after the newer are on the backend
		e.stats.backendWrite(off, n, e.set.ChunkBytes, calls)
		e.stats.bytesDirect.Add(n)
		e.stats.collDirect.Add(n)
		f.sum.backendWrite(calls, n)
		return nil
	}
	closeRun := func() error {
		if direct {
			return write()
		}
		for _, s := range segs {
			s.p.buffered = true
		}
		segs = segs[:0]
		return nil
	}
	const maxIOV = 1024 // backend.WriteRun's batch: a full batch is one pwritev
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
		segs = append(segs, s)
		runEnd = s.off + int64(len(s.b))
		if !direct && runEnd-runOff >= e.set.DirectBytes {
			direct = true
		}
		if direct && len(segs) >= maxIOV {
			if err := write(); err != nil {
				return err
			}
		}
	}
	return closeRun()
}
