package server

import (
	"sync/atomic"

	"github.com/delegate-io/delegate/internal/stats"
	"github.com/delegate-io/delegate/internal/wire"
)

// counters are the server's live counters, typed atomics updated on the hot
// path and read by Snapshot.
type counters struct {
	sessions      atomic.Int64
	sessionsTotal atomic.Int64
	rejected      atomic.Int64 // refused handshakes
	badFrames     atomic.Int64
	requests      [wire.NumTypes]atomic.Int64
	errors        [wire.NumTypes]atomic.Int64
	bytesIn       atomic.Int64 // write data received
	bytesOut      atomic.Int64 // read data sent
	backendWrites atomic.Int64
	backendReads  atomic.Int64
	descRaw       atomic.Int64
	descWire      atomic.Int64
}

func (s *counters) snapshot() stats.Snapshot {
	out := stats.Snapshot{
		Sessions:      s.sessions.Load(),
		SessionsTotal: s.sessionsTotal.Load(),
		Rejected:      s.rejected.Load(),
		BadFrames:     s.badFrames.Load(),
		Requests:      map[string]int64{},
		Errors:        map[string]int64{},
		BytesIn:       s.bytesIn.Load(),
		BytesOut:      s.bytesOut.Load(),
		BackendWrites: s.backendWrites.Load(),
		BackendReads:  s.backendReads.Load(),
		DescRaw:       s.descRaw.Load(),
		DescWire:      s.descWire.Load(),
	}
	for t := 1; t < wire.NumTypes; t++ {
		if n := s.requests[t].Load(); n > 0 {
			out.Requests[wire.Type(t).String()] = n
		}
		if n := s.errors[t].Load(); n > 0 {
			out.Errors[wire.Type(t).String()] = n
		}
	}
	return out
}
