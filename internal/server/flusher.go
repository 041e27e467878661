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
		for s.budget.overHigh() && s.flushForMemory() {
		}
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
// whether it freed anything.
func (s *Server) flushForMemory() bool {
	type fd struct {
		f *file
		n int64
	}
	var cands []fd
	for _, f := range s.files.files() {
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
// at least a run of them (Config.FlushFull).
func (s *Server) flushFullRuns() {
	for _, f := range s.files.files() {
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
		if since < idle && !released {
			if wait := idle - since; next == 0 || wait < next {
				next = wait
			}
			continue
		}
		err := f.flush(causeIdle, false)
		if released {
			if err != nil {
				f.discardOnFailure()
			}
			s.files.finalize(f)
		} else if err != nil && (next == 0 || idle < next) {
			next = idle // retry later
		}
	}
	return next
}

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
