package server

import (
	"time"

	"github.com/delegate-io/delegate/internal/wire"
)

// PanicOn makes requests of type t panic in the stream's worker (where ==
// "worker": the handler; "after": once the handler returned) or its
// reader (where == "reader": decoding), until
// the returned function restores the tables. Tests only; not concurrent
// with running servers of other tests.
func PanicOn(t wire.Type, where string) (restore func()) {
	h, d := handlers[t], descs[t]
	switch where {
	case "worker":
		handlers[t] = func(*stream, *request) (wire.Reply, []byte) { panic("test: handler panics") }
	case "after": // the handler runs, then panics (what it took is held)
		handlers[t] = func(st *stream, r *request) (wire.Reply, []byte) {
			h(st, r)
			panic("test: handler panics after its work")
		}
	case "reader":
		descs[t] = func() any { panic("test: reader panics") }
	default:
		panic("PanicOn: where is worker or reader")
	}
	return func() { handlers[t], descs[t] = h, d }
}

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

// SetBulkTimeoutForTest shortens the wait for a bulk transfer's bytes until
// the returned function restores it. Not concurrent with other servers.
func SetBulkTimeoutForTest(d time.Duration) (restore func()) {
	old := bulkTimeout
	bulkTimeout = d
	return func() { bulkTimeout = old }
}

// SetPipeBytesForTest sets the capacity asked for the splice pipes of
// sessions that splice for the first time from now on, until restore.
func SetPipeBytesForTest(n int) (restore func()) {
	old := pipeBytes
	pipeBytes = n
	return func() { pipeBytes = old }
}

// SetOpenRaceHookForTest runs fn in a first open between its backend open
// and its entry in the file table, until the returned function restores
// the hook. Not concurrent with other servers.
func SetOpenRaceHookForTest(fn func(path string)) (restore func()) {
	old := openRaceHook
	openRaceHook = fn
	return func() { openRaceHook = old }
}

// SetBulkHooksForTest runs acked in each bulk bind after its
// acknowledgement, and wait in each read of a bulk transfer once its
// deadline is set, until restore. Not concurrent with other servers.
func SetBulkHooksForTest(acked, wait func()) (restore func()) {
	oldA, oldW := bindAckedHook, bulkWaitHook
	bindAckedHook, bulkWaitHook = acked, wait
	return func() { bindAckedHook, bulkWaitHook = oldA, oldW }
}

// SetSpliceTakenHookForTest runs fn in a spliced write or a sendfile after
// its check of the backend descriptor, before the transfer, with a
// function that upgrades the file to a writable descriptor as a racing
// writer's open does (reopenWritable), until restore. Not concurrent with
// other servers.
func (s *Server) SetSpliceTakenHookForTest(fn func(path string, upgrade func() error)) (restore func()) {
	old := spliceTakenHook
	spliceTakenHook = func(f *file) {
		fn(f.path, func() error { return f.reopenWritable(s.files.fs) })
	}
	return func() { spliceTakenHook = old }
}

// SetSpliceFailForTest asks fail before each splice into a backend file;
// an error it returns is the splice's. Until restore; not concurrent with
// other servers.
func SetSpliceFailForTest(fail func() error) (restore func()) {
	old := spliceFailHook
	spliceFailHook = fail
	return func() { spliceFailHook = old }
}

// SetXferMemWaitHookForTest runs fn whenever a request starts waiting
// for transfer memory (a bulk write's receive buffer, a read's result),
// until restore. Not concurrent with other servers.
func SetXferMemWaitHookForTest(fn func()) (restore func()) {
	old := xferWaitHook
	xferWaitHook = fn
	return func() { xferWaitHook = old }
}

// SetXferMemWaitForTest bounds a request's wait for transfer memory,
// until restore. Not concurrent with other servers.
func SetXferMemWaitForTest(d time.Duration) (restore func()) {
	old := xferWait
	xferWait = d
	return func() { xferWait = old }
}

// SetOwnWaitHookForTest runs fn when a stream's reader waits for its
// worker because the stream's queued inline payloads reached their
// bound, with those bytes; until restore. Not concurrent with other
// servers.
func SetOwnWaitHookForTest(fn func(queued int64)) (restore func()) {
	old := ownWaitHook
	ownWaitHook = fn
	return func() { ownWaitHook = old }
}

// SetKeptRetryForTest sets the backoff of retries of kept data (flusher.go)
// and runs hook after each idle flush of a kept file, until restore. Not
// concurrent with other servers.
func SetKeptRetryForTest(minWait, maxWait time.Duration, hook func(path string, err error)) (restore func()) {
	oldMin, oldMax, oldHook := keptRetryMin, keptRetryMax, keptRetryHook
	keptRetryMin, keptRetryMax, keptRetryHook = minWait, maxWait, hook
	return func() { keptRetryMin, keptRetryMax, keptRetryHook = oldMin, oldMax, oldHook }
}

// SetHeldBoundForTest sets the most requests a stream holds for one
// collective and a hook told the count each time one is held, until
// restore. Not concurrent with other servers.
func SetHeldBoundForTest(n int, hook func(held int)) (restore func()) {
	oldN, oldH := maxHeldReqs, heldHook
	maxHeldReqs, heldHook = n, hook
	return func() { maxHeldReqs, heldHook = oldN, oldH }
}

// SetKeptDropHookForTest runs hook when the flusher chose a kept file to
// drop for space, before it claims it, until restore. Not concurrent with
// other servers.
func SetKeptDropHookForTest(hook func(path string)) (restore func()) {
	old := keptDropHook
	keptDropHook = hook
	return func() { keptDropHook = old }
}

// TransitPerStream is transitPerStream: the most a stream holds of
// requests in transit outside --buffer.
const TransitPerStream = transitPerStream

// MaxStreams and MonitorReserve are the session limits' constants.
const (
	MaxStreams     = maxStreams
	MonitorReserve = monitorReserve
)

// SetReplyBatchHookForTest runs fn with the size of each batch of replies
// a stream writes, until restore. Not concurrent with other tests' servers.
func SetReplyBatchHookForTest(fn func(n int)) (restore func()) {
	old := replyBatchHook
	replyBatchHook = fn
	return func() { replyBatchHook = old }
}

// ReplyBatchBytes and BigPayload: the batch of replies goes out at
// ReplyBatchBytes; replies up to BigPayload join it.
const (
	ReplyBatchBytes = replyBatchBytes
	BigPayload      = bigPayload
)

// SetAtomicForTest sets the bound on an atomic call's gap between parts
// and a hook run when an atomic request finds its file's lock taken, until
// restore.
func SetAtomicForTest(gap time.Duration, waitHook func()) (restore func()) {
	oldGap, oldHook := atomicGap, atomicWaitHook
	atomicGap, atomicWaitHook = gap, waitHook
	return func() { atomicGap, atomicWaitHook = oldGap, oldHook }
}
