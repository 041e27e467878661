package server

import (
	"sort"
	"time"
)

// flushLoop is the background flusher. It runs when woken (memory above
// the high-water mark, a file became dirty, a file was released with data
// left) and when the earliest idle deadline passes; it never polls. Under
// memory pressure it flushes the files holding most, full chunks first; it
// flushes files idle for Config.FlushIdle, and finishes files whose last
// client is gone.
func (s *Server) flushLoop() {
	defer close(s.flusherDone)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		select {
		case <-s.flushKick:
		case <-timer.C:
		case <-s.flusherStop:
			return
		}
		for s.budget.overHigh() && (s.flushForMemory() || s.dropKeptForMemory()) {
		}
		s.budget.settleMark(&s.stallMark)
		if s.cfg.FlushFull {
			s.flushFullRuns()
		}
		next := s.flushIdle()
		if d := s.trimSlots(time.Now()); d > 0 && (next == 0 || d < next) {
			next = d
		}
		if next > 0 {
			timer.Reset(next)
		}
	}
}

// trimSlots gives back the pages of the journal's free slots beyond its
// keep (journal.Trim) once there have been such slots for Config.FlushIdle:
// a file written again soon reuses them resident instead. It returns the
// time to wait before it should run again, or 0. Only the flusher calls
// it (trimAt is its own).
func (s *Server) trimSlots(now time.Time) time.Duration {
	j := s.journal
	if j == nil || j.Surplus() == 0 {
		s.trimAt = time.Time{}
		return 0
	}
	if s.trimAt.IsZero() {
		s.trimAt = now.Add(s.cfg.FlushIdle)
	}
	if d := s.trimAt.Sub(now); d > 0 {
		return d
	}
	j.Trim()
	s.trimAt = time.Time{}
	return 0
}

// flushForMemory flushes the dirtiest file, full chunks first, and reports
// whether it freed anything. Kept files wait for their retry time.
func (s *Server) flushForMemory() bool {
	type fd struct {
		f *file
		n int64
	}
	var cands []fd
	now := time.Now()
	for _, f := range s.files.files() {
		if s.keptWaits(f, now) {
			continue
		}
		if n := f.dirty(); n > 0 {
			cands = append(cands, fd{f, n})
		}
	}
	sort.Slice(cands, func(i, j int) bool { return cands[i].n > cands[j].n })
	for _, c := range cands {
		before := c.n
		if err := c.f.flush(causeHighWater, true); err != nil {
			continue
		}
		if c.f.dirty() == before {
			if err := c.f.flush(causeHighWater, false); err != nil {
				continue
			}
		}
		if c.f.dirty() < before {
			return true
		}
	}
	return false
}

// flushFullRuns writes the entirely buffered chunks of every file holding
// at least a run of them (Config.FlushFull). Kept files wait for their
// retry time.
func (s *Server) flushFullRuns() {
	now := time.Now()
	for _, f := range s.files.files() {
		if s.keptWaits(f, now) {
			continue
		}
		if f.fullBytes() >= s.cfg.FlushRunBytes {
			f.flush(causeFull, true) // a failure is kept for sync and close
		}
	}
}

// flushIdle flushes files not written for Config.FlushIdle and finalizes
// files nobody holds. It returns the time to the next idle deadline, or 0
// when nothing is dirty.
func (s *Server) flushIdle() time.Duration {
	idle := s.cfg.FlushIdle
	now := time.Now()
	var next time.Duration
	for _, f := range s.files.files() {
		if f.dirty() == 0 {
			if f.refs() == 0 {
				s.files.finalize(f)
			}
			continue
		}
		f.buf.Lock()
		since := now.Sub(f.buf.lastWrite)
		f.buf.Unlock()
		released := f.refs() == 0
		wasKept := f.keptNow()
		if released && wasKept && now.Before(f.kept.at) {
			if wait := f.kept.at.Sub(now); next == 0 || wait < next {
				next = wait
			}
			continue // kept after a failure: not yet its retry
		}
		if since < idle && !released {
			if wait := idle - since; next == 0 || wait < next {
				next = wait
			}
			continue
		}
		if released && wasKept {
			s.stats.keptRetries.Add(1)
		}
		err := f.flush(causeIdle, false)
		if err == nil && wasKept {
			s.log.Info("buffered data kept after a failed flush is on the backend now", "file", f.path,
				"after", now.Sub(f.kept.since).Round(time.Millisecond))
			f.kept.since = time.Time{}
		}
		if released {
			if err != nil {
				if s.journal != nil {
					wait := s.keepFailed(f, now, err)
					if next == 0 || wait < next {
						next = wait
					}
					if keptRetryHook != nil {
						keptRetryHook(f.path, err)
					}
					continue
				}
				f.discardOnFailure()
			}
			if keptRetryHook != nil && wasKept {
				keptRetryHook(f.path, nil)
			}
			s.files.finalize(f)
		} else if err != nil && (next == 0 || idle < next) {
			next = idle // retry later
		}
	}
	return next
}

// Kept data: with a state directory, a file nobody holds whose flush
// failed keeps its buffered data (in the buffer and the journal) instead
// of dropping it: the flusher retries it with a backoff, keptRetryMin
// doubling up to keptRetryMax, and a shutdown leaves it in the journal for
// the next start (drainAll). If writers wait for buffer space while such
// data holds it, the oldest kept file is dropped (dropKeptForMemory).
// Without a state directory the data is dropped at once, as before: a
// retry would hold memory that no restart could recover.
var (
	keptRetryMin = time.Second
	keptRetryMax = 4 * time.Second
	// keptRetryHook, when set (tests), runs after each idle flush of a
	// file nobody holds that failed and was kept, or that was kept and
	// succeeded (err nil), before the file is finalized.
	keptRetryHook func(path string, err error)
)

// keepFailed records f's failed flush (the first one is logged and
// counted) and returns the time to its retry.
func (s *Server) keepFailed(f *file, now time.Time, err error) time.Duration {
	if !f.keptNow() {
		f.kept.since, f.kept.wait, f.kept.hold = now, keptRetryMin, f.holds.Load()
		s.stats.keptFiles.Add(1)
		s.log.Error("flush of a file nobody holds failed; its data stays buffered and in the state directory, retried every few seconds",
			"file", f.path, "bytes", f.dirty(), "err", err)
	}
	wait := f.kept.wait
	f.kept.at = now.Add(wait)
	f.kept.wait = min(2*wait, keptRetryMax)
	return wait
}

// keptWaits reports whether f is kept, nobody holds it, and its next
// retry is after now: no flush tries it before (flushIdle does then).
func (s *Server) keptWaits(f *file, now time.Time) bool {
	return f.keptNow() && f.refs() == 0 && now.Before(f.kept.at)
}

// keptNow reports whether f is kept, and forgets a record from before the
// file was held again (file.holds): a failure after that hold is a new
// one, counted, logged and backed off afresh. Only the flusher calls it.
func (f *file) keptNow() bool {
	if !f.kept.since.IsZero() && f.kept.hold != f.holds.Load() {
		f.kept.since, f.kept.at, f.kept.wait = time.Time{}, time.Time{}, 0
	}
	return !f.kept.since.IsZero()
}

// dropKeptForMemory drops the data of the oldest kept file when a writer
// stalled for buffer space since its last decision or waits now, and
// reports whether it dropped any.
func (s *Server) dropKeptForMemory() bool {
	if s.journal == nil || !s.budget.stalledSince(&s.stallMark) {
		return false
	}
	var oldest *file
	for _, f := range s.files.files() {
		if !f.keptNow() || f.refs() != 0 || f.dirty() == 0 {
			continue
		}
		if oldest == nil || f.kept.since.Before(oldest.kept.since) {
			oldest = f
		}
	}
	if oldest == nil {
		return false
	}
	if keptDropHook != nil {
		keptDropHook(oldest.path)
	}
	// Claimed first: an open that joined the file after the check above
	// may have written and been acknowledged; once claimed, no open can.
	if !s.files.claim(oldest) {
		return false // held again: its holder syncs or closes it
	}
	s.stats.keptDropped.Add(1)
	oldest.discardOnFailure() // logs the file and the bytes
	oldest.kept.since = time.Time{}
	if err := s.files.closeClaimed(oldest); err != nil {
		s.log.Warn("closing a file whose kept data was dropped", "file", oldest.path, "err", err)
	}
	return true
}

// keptDropHook, when set (tests), runs when dropKeptForMemory chose a file
// to drop, before it claims it.
var keptDropHook func(path string)

// drainAll flushes and closes every file (shutdown).
func (s *Server) drainAll() error {
	var first error
	for _, f := range s.files.files() {
		if err := f.flush(causeShutdown, false); err != nil {
			if first == nil {
				first = err
			}
			if s.journal == nil {
				f.discardOnFailure() // with a journal it stays for the next start
			}
		}
		f.mu.Lock()
		f.mu.refs = 0
		f.mu.Unlock()
		s.files.finalize(f)
	}
	return first
}
