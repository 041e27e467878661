package client

import "slices"

// The visibility fence.
//
// Writes return before their servers acknowledge them, so a write that
// returned may still be on its way when the rank tells another process
// (a barrier, a send, any collective) that it wrote. Fence closes that
// window: it sends corked batches and waits until every write request
// queued before the call has been answered, which the servers do only
// after applying it to their buffer (or the backend). A read that another
// process issues afterwards reaches the owning server after the write,
// and sees it. The patched MPICH calls the fence (through libdelegate)
// before any message leaves a process; with nothing unacknowledged it is
// one load of the fence word (Config.Pending) and costs nothing.
//
// The end markers of a collective write are fenced like writes: a server
// answers one only once every rank's marker has arrived, after their
// pieces on the same streams, so a rank whose markers are answered has
// every rank's pieces applied. That lets the collective's own closing
// messages skip the wait for its pieces (FenceScoped).
//
// Why not publish writes in shared memory instead: that works on one host
// only; servers on other hosts see a write when its frame arrives. Why not
// acknowledge every write before it returns: a round trip per write, where
// the fence costs one per communication that follows writes.

// Fence waits until every write this client issued before the call is
// applied by its servers, and every end marker of a collective write it
// sent is answered. It returns nil, or the error of a session that died
// (the failed writes are reported on their files as always). It never
// hangs: a silent server is declared dead by the session's keepalive.
func (cl *Client) Fence() error {
	return cl.fence(nil, false)
}

// FenceScoped is the fence inside the collective write that f's last
// collective was (libdelegate's delegate_fence_scope, for the messages of
// the ROMIO driver's own MPI_Allreduce at the end of it): it does not wait
// for that collective's pieces and end markers, and waits for everything
// else as Fence does. The markers stand in for the fence there: a server
// answers a rank's marker, and serves that rank's later requests, only
// once every rank's pieces are applied; and the next fence of each rank
// (before its next message outside the collective) waits for its markers,
// so a process told by any of them sees every rank's pieces. A session on
// which anything fenced was queued after the marker (another thread, a
// cork or a staged buffer sent by this fence) is fenced in full.
func (cl *Client) FenceScoped(f *File) error {
	return cl.fence(f, false)
}

// FenceClose is the fence inside a close of f that sends end markers
// (libdelegate's delegate_fence_scope_close, for the messages of ROMIO's
// barrier in MPI_File_close, which comes before the driver's close): it
// sends the corked batches and does not wait on f's sessions at all. The
// close stands in for it there: each rank sends every server of f its end
// markers and then its close, and a server answers a marker, and so the
// close behind it, only once every rank's markers came, after everything
// each rank sent it before them; so no rank's close returns before every
// rank's earlier writes on those servers are applied. Sessions that are
// not f's are fenced in full.
func (cl *Client) FenceClose(f *File) error {
	return cl.fence(f, true)
}

// fence is Fence, FenceScoped (scope set) or FenceClose (closing set).
func (cl *Client) fence(scope *File, closing bool) error {
	if cl.pending.Load() == 0 {
		return nil
	}
	cl.sendAllCorked()
	var skip map[*session][2]int64 // session: base, end of the collective
	if scope != nil && !closing {
		skip = scope.collRange()
	}
	cl.mu.Lock()
	seen := make(map[*session]bool, len(cl.mu.sessions))
	var ss []*session
	add := func(s *session) {
		if !seen[s] {
			seen[s] = true
			ss = append(ss, s)
		}
	}
	for _, s := range cl.mu.sessions {
		add(s)
	}
	for f := range cl.mu.files { // a file may still hold a session replaced since
		for _, s := range f.sess {
			add(s)
		}
	}
	cl.mu.Unlock()
	var first error
	for _, s := range ss {
		if closing && slices.Contains(scope.sess, s) {
			continue // the close waits for it (FenceClose)
		}
		r, ok := skip[s]
		if !ok {
			r = [2]int64{-1, -1}
		}
		if err := s.fence(r[0], r[1]); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// collRange returns, per session, the fenced-call counts before and with
// f's last collective write (startCollective, endCollective); nil when
// there is none or its markers were not all sent.
func (f *File) collRange() map[*session][2]int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.mu.collBase == nil || f.mu.collEnd == nil {
		return nil
	}
	m := make(map[*session][2]int64, len(f.sess))
	for i, s := range f.sess {
		m[s] = [2]int64{f.mu.collBase[i], f.mu.collEnd[i]}
	}
	return m
}

// fence waits until the fenced calls queued on s so far are answered; when
// the last one queued is the end marker counted end, only those up to base
// (before the collective's pieces).
func (s *session) fence(base, end int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	target := s.mu.wqueued
	if end >= 0 && target == end {
		target = base
	}
	s.fencers.Add(1)
	defer s.fencers.Add(-1)
	for s.mu.err == nil && s.wdone.Load() < target {
		s.acked.Wait()
	}
	if s.wdone.Load() >= target {
		return nil
	}
	return s.mu.err
}

// fencedQueued returns the number of fenced calls queued on s so far.
func (s *session) fencedQueued() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mu.wqueued
}

// forget removes a closed file from the client.
func (cl *Client) forget(f *File) {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	delete(cl.mu.files, f)
	if cl.mu.paths[f.path]--; cl.mu.paths[f.path] == 1 {
		cl.shared.Add(-1)
	} else if cl.mu.paths[f.path] <= 0 {
		delete(cl.mu.paths, f.path)
	}
}
