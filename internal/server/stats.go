package server

import (
	"fmt"
	"os"
	"sync/atomic"
	"time"

	"github.com/delegate-io/delegate/internal/stats"
	"github.com/delegate-io/delegate/internal/wire"
)

// Why a flush happened.
type cause int

const (
	causeSync cause = iota
	causeClose
	causeFlush
	causeHighWater
	causeIdle
	causeShutdown
	causeResize
	causeFull
	numCauses
)

var causeNames = [numCauses]string{"sync", "close", "flush", "highwater", "idle", "shutdown", "resize", "full"}

// counters are the server's live statistics: typed atomics updated on the
// hot path and copied by snapshot.
type counters struct {
	start         time.Time
	sessions      atomic.Int64
	sessionsTotal atomic.Int64
	sessionsTCP   atomic.Int64 // client sessions over TCP
	bulkConns     atomic.Int64 // bulk connections bound (bulk.go)
	bulkIn        atomic.Int64 // write data received on them
	bulkOut       atomic.Int64 // read data sent on them
	bulkSpliced   atomic.Int64 // write data spliced from them into backend files
	bulkSentFile  atomic.Int64 // read data sent on them from backend files (sendfile)
	bulkErrors    atomic.Int64 // transfers that failed
	spliceRefused atomic.Int64 // files whose backend refused a splice (bulksplice.go)
	keptFiles     atomic.Int64 // files nobody held whose failed flush kept their data (flusher.go)
	keptRetries   atomic.Int64 // flushes retried of such files
	keptDropped   atomic.Int64 // such files dropped because writers waited for space
	sessionsUnix  atomic.Int64 // over a Unix socket without a ring
	sessionsRing  atomic.Int64 // over a Unix socket with the shared-memory ring
	rejected      atomic.Int64
	sessRefused   atomic.Int64 // hellos refused: --max-sessions reached
	strmRefused   atomic.Int64 // streams beyond maxStreams, closed
	badFrames     atomic.Int64
	requests      [wire.NumTypes]atomic.Int64
	errors        [wire.NumTypes]atomic.Int64
	answers       [wire.NumTypes]atomic.Int64 // ENOENT, EEXIST: not failures

	queueDepth atomic.Int64
	queuePeak  atomic.Int64
	wait       [stats.WaitBuckets]atomic.Int64

	bytesIn         atomic.Int64
	bytesOut        atomic.Int64
	extentsIn       atomic.Int64
	bytesDirect     atomic.Int64
	readFromBuffer  atomic.Int64
	readFromBackend atomic.Int64
	collWrites      atomic.Int64
	collEnds        atomic.Int64
	collDirect      atomic.Int64
	collHeld        atomic.Int64
	descRaw         atomic.Int64
	descWire        atomic.Int64

	backendWrites     atomic.Int64
	backendWriteBytes atomic.Int64
	backendAligned    atomic.Int64
	backendReads      atomic.Int64
	backendSyncs      atomic.Int64

	dirty       atomic.Int64
	peakOwn     atomic.Int64 // sampled resident minus shared memory
	ringBytes   atomic.Int64 // clients' rings mapped now
	flushes     [numCauses]atomic.Int64
	flushBytes  atomic.Int64
	flushErrors atomic.Int64

	panics          atomic.Int64 // recovered in a session or stream
	acceptRetries   atomic.Int64 // temporary accept errors waited out
	helloOverflow   atomic.Int64 // connections closed: too many in the hello
	helloInProgress atomic.Int64 // connections accepted, hello not done
	atomicBroken    atomic.Int64 // atomic calls not applied as one unit (atomic.go)
}

// enqueued counts a request entering the queue.
func (s *counters) enqueued() {
	d := s.queueDepth.Add(1)
	for {
		p := s.queuePeak.Load()
		if d <= p || s.queuePeak.CompareAndSwap(p, d) {
			return
		}
	}
}

// dequeued counts a request leaving the queue after waiting d.
func (s *counters) dequeued(d time.Duration) {
	s.wait[stats.BucketOf(d)].Add(1)
}

// sampleMemory records the process's own resident memory (resident minus
// shared pages, from /proc/self/statm) if it is a new peak.
func (s *counters) sampleMemory() {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return
	}
	var size, resident, shared int64
	if _, err := fmt.Sscan(string(b), &size, &resident, &shared); err != nil {
		return
	}
	own := (resident - shared) * int64(os.Getpagesize())
	for {
		p := s.peakOwn.Load()
		if own <= p || s.peakOwn.CompareAndSwap(p, own) {
			return
		}
	}
}

// backendWrite counts one backend write of n bytes at off.
func (s *counters) backendWrite(off, n, chunk int64, calls int) {
	s.backendWrites.Add(int64(calls))
	s.backendWriteBytes.Add(n)
	if off%chunk == 0 {
		s.backendAligned.Add(1)
	}
}

func (s *counters) snapshot() stats.Snapshot {
	out := stats.Snapshot{
		Uptime:            time.Since(s.start).Seconds(),
		Sessions:          s.sessions.Load(),
		SessionsTotal:     s.sessionsTotal.Load(),
		SessionsTCP:       s.sessionsTCP.Load(),
		BulkConns:         s.bulkConns.Load(),
		BulkIn:            s.bulkIn.Load(),
		BulkOut:           s.bulkOut.Load(),
		BulkSpliced:       s.bulkSpliced.Load(),
		BulkSentFile:      s.bulkSentFile.Load(),
		BulkErrors:        s.bulkErrors.Load(),
		SpliceRefused:     s.spliceRefused.Load(),
		KeptFiles:         s.keptFiles.Load(),
		KeptRetries:       s.keptRetries.Load(),
		KeptDropped:       s.keptDropped.Load(),
		SessionsUnix:      s.sessionsUnix.Load(),
		SessionsRing:      s.sessionsRing.Load(),
		Rejected:          s.rejected.Load(),
		SessionsRefused:   s.sessRefused.Load(),
		StreamsRefused:    s.strmRefused.Load(),
		BadFrames:         s.badFrames.Load(),
		Requests:          map[string]int64{},
		Errors:            map[string]int64{},
		QueueDepth:        s.queueDepth.Load(),
		QueuePeak:         s.queuePeak.Load(),
		Wait:              make([]int64, stats.WaitBuckets),
		BytesIn:           s.bytesIn.Load(),
		BytesOut:          s.bytesOut.Load(),
		ExtentsIn:         s.extentsIn.Load(),
		BytesDirect:       s.bytesDirect.Load(),
		ReadFromBuffer:    s.readFromBuffer.Load(),
		ReadFromBackend:   s.readFromBackend.Load(),
		CollWrites:        s.collWrites.Load(),
		CollEnds:          s.collEnds.Load(),
		CollDirect:        s.collDirect.Load(),
		CollHeld:          s.collHeld.Load(),
		DescRaw:           s.descRaw.Load(),
		DescWire:          s.descWire.Load(),
		BackendWrites:     s.backendWrites.Load(),
		BackendWriteBytes: s.backendWriteBytes.Load(),
		BackendAligned:    s.backendAligned.Load(),
		BackendReads:      s.backendReads.Load(),
		BackendSyncs:      s.backendSyncs.Load(),
		Dirty:             s.dirty.Load(),
		Flushes:           map[string]int64{},
		FlushBytes:        s.flushBytes.Load(),
		FlushErrors:       s.flushErrors.Load(),
		PeakOwn:           s.peakOwn.Load(),
		RingBytes:         s.ringBytes.Load(),
	}
	out.Panics = s.panics.Load()
	out.AcceptRetries = s.acceptRetries.Load()
	out.HelloOverflow = s.helloOverflow.Load()
	out.HelloInProgress = s.helloInProgress.Load()
	out.AtomicBroken = s.atomicBroken.Load()
	for t := 1; t < wire.NumTypes; t++ {
		if n := s.requests[t].Load(); n > 0 {
			out.Requests[wire.Type(t).String()] = n
		}
		if n := s.errors[t].Load(); n > 0 {
			out.Errors[wire.Type(t).String()] = n
		}
		if n := s.answers[t].Load(); n > 0 {
			if out.Answers == nil {
				out.Answers = map[string]int64{}
			}
			out.Answers[wire.Type(t).String()] = n
		}
	}
	for i := range s.wait {
		out.Wait[i] = s.wait[i].Load()
	}
	for c := cause(0); c < numCauses; c++ {
		if n := s.flushes[c].Load(); n > 0 {
			out.Flushes[causeNames[c]] = n
		}
	}
	return out
}
