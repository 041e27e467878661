package server

// CrashForTest stops s as a SIGKILL would, as far as its files are
// concerned: sessions end, the flusher stops, and nothing is flushed; the
// state directory is left as it is (its lock released, so that a new server
// in the same process can open it). A later Shutdown returns at once.
func (s *Server) CrashForTest() {
	s.drainOnce.Do(func() {
		// The flusher first: it would drain the files the closing sessions
		// release.
		close(s.flusherStop)
		<-s.flusherDone
		s.beginClose()
		s.wg.Wait()
		if s.journal != nil {
			s.journal.Close(false)
		}
		close(s.drained)
	})
}

// AbandonStateForTest releases s's state directory as a killed process
// would, leaving s otherwise running: for a crash at a moment the test
// holds s in (a flush under way), where CrashForTest would wait for it.
// s takes no new slots afterwards.
func (s *Server) AbandonStateForTest() {
	if s.journal != nil {
		s.journal.Close(false)
	}
}
