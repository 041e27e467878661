package server

import (
	"log/slog"
	"sync/atomic"

	"github.com/delegate-io/delegate/internal/extent"
	"github.com/delegate-io/delegate/internal/journal"
)

// engineSettings are the parts of Config the per-file engine follows.
type engineSettings struct {
	ChunkBytes    int64 // a buffer chunk (and a journal slot)
	GapBytes      int64 // holes a flush run may bridge
	DirectBytes   int64 // extents this large skip the buffer
	FlushRunBytes int64 // the largest backend write
	BufferBytes   int64 // --buffer
	FlushFull     bool  // flush full runs in the background
	StateDir      string
}

// engine is what the per-file write-behind buffers share: the settings
// they follow, the memory budget, the chunk pool and journal their buffers
// come from, the counters they feed and the flusher they wake. Files and
// the file table get this, never the whole *Server: the engine sees no
// session, listener or setting it does not use. Server embeds it.
type engine struct {
	set     engineSettings
	log     *slog.Logger
	budget  *budget
	xferMem *xferMem         // transfer memory (xfermem.go)
	pool    *extent.Pool     // chunk buffers recycled between flushes (heap mode)
	journal *journal.Journal // Config.StateDir: where the buffers live; nil: the heap
	stats   counters
	// summaries are the per-file summaries (filestats.go), kept from a
	// file's first open until the server stops.
	summaries *fileStatsTable

	flushKick chan struct{} // wakes the flusher (flusher.go)
	// fallbackWarned: the heap-fallback warning was logged.
	fallbackWarned atomic.Bool
}

func newEngine(cfg *Config, log *slog.Logger) *engine {
	return &engine{
		set: engineSettings{ChunkBytes: cfg.ChunkBytes, GapBytes: cfg.GapBytes, DirectBytes: cfg.DirectBytes,
			FlushRunBytes: cfg.FlushRunBytes, BufferBytes: cfg.BufferBytes, FlushFull: cfg.FlushFull, StateDir: cfg.StateDir},
		log:       log,
		flushKick: make(chan struct{}, 1),
		summaries: newFileStatsTable(cfg.FileStats),
	}
}

// kickForTrim wakes the flusher when released slots left free resident
// slots beyond the journal's keep, for it to give their pages back later
// (Server.trimSlots).
func (e *engine) kickForTrim() {
	if j := e.journal; j != nil && j.Surplus() > 0 {
		e.kickFlusher()
	}
}

// kickFlusher wakes the flusher; it never blocks.
func (e *engine) kickFlusher() {
	select {
	case e.flushKick <- struct{}{}:
	default:
	}
}

// newIndex returns an empty write-behind buffer in the heap.
func (e *engine) newIndex() *extent.Index {
	return extent.NewPooled(e.set.ChunkBytes, e.set.GapBytes, e.pool)
}

// allocBound is the most memory buffering n bytes at off can take: n in
// the heap (where a chunk's buffer grows in place or doubles, which the
// settling covers), and with a state directory a new slot and hole bitmap
// for every chunk touched, so that slots never take the buffer past its
// limit.
func (e *engine) allocBound(off, n int64) int64 {
	if e.journal == nil {
		return n
	}
	c := e.set.ChunkBytes
	chunks := (off+n-1)/c - off/c + 1
	return chunks * (e.journal.Footprint() + c/8)
}

// warnFallback logs, once per server, that a chunk is buffered in the heap.
func (e *engine) warnFallback() {
	if e.fallbackWarned.CompareAndSwap(false, true) {
		e.log.Warn("no slot in the state directory (file system full, or a path too long): buffering in memory, which a crash would lose; state_fallbacks counts such chunks",
			"state_dir", e.set.StateDir)
	}
}
