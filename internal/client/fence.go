package client

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
// Why not publish writes in shared memory instead: that works on one host
// only; servers on other hosts see a write when its frame arrives. Why not
// acknowledge every write before it returns: a round trip per write, where
// the fence costs one per communication that follows writes.

// Fence waits until every write this client issued before the call is
// applied by its servers. It returns nil, or the error of a session that
// died (the failed writes are reported on their files as always). It never
// hangs: a silent server is declared dead by the session's keepalive.
func (cl *Client) Fence() error {
	if cl.pending.Load() == 0 {
		return nil
	}
	cl.sendAllCorked()
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
		if err := s.fence(); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// fence waits until the write requests queued on s so far are answered.
func (s *session) fence() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	target := s.mu.wqueued
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
