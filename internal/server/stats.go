package server

import (
	"fmt"
	"strings"
	"sync/atomic"

	"github.com/delegate-io/delegate/internal/wire"
)

// stats are the server's live counters, typed atomics updated on the hot
// path and read by Snapshot.
type stats struct {
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

// Snapshot is a copy of the server's statistics, safe to keep and encode.
type Snapshot struct {
	Name          string           `codec:"name"`
	Sessions      int64            `codec:"sessions"`
	SessionsTotal int64            `codec:"sessions_total"`
	Rejected      int64            `codec:"rejected"`
	BadFrames     int64            `codec:"bad_frames"`
	Requests      map[string]int64 `codec:"requests"`
	Errors        map[string]int64 `codec:"errors"`
	BytesIn       int64            `codec:"bytes_in"`
	BytesOut      int64            `codec:"bytes_out"`
	BackendWrites int64            `codec:"backend_writes"`
	BackendReads  int64            `codec:"backend_reads"`
	DescRaw       int64            `codec:"desc_raw"`
	DescWire      int64            `codec:"desc_wire"`
	OpenFiles     int64            `codec:"open_files"`
}

func (s *stats) snapshot() Snapshot {
	out := Snapshot{
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

// String renders the snapshot for people, one fact per line.
func (s Snapshot) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "server %s\n", s.Name)
	fmt.Fprintf(&b, "  sessions        %d now, %d total, %d refused\n", s.Sessions, s.SessionsTotal, s.Rejected)
	fmt.Fprintf(&b, "  requests       ")
	for t := 1; t < wire.NumTypes; t++ {
		name := wire.Type(t).String()
		if n := s.Requests[name]; n > 0 {
			fmt.Fprintf(&b, " %s=%d", name, n)
		}
	}
	fmt.Fprintf(&b, "\n  errors         ")
	for t := 1; t < wire.NumTypes; t++ {
		name := wire.Type(t).String()
		if n := s.Errors[name]; n > 0 {
			fmt.Fprintf(&b, " %s=%d", name, n)
		}
	}
	fmt.Fprintf(&b, " bad_frames=%d\n", s.BadFrames)
	fmt.Fprintf(&b, "  data            %d bytes in, %d bytes out\n", s.BytesIn, s.BytesOut)
	fmt.Fprintf(&b, "  backend         %d writes, %d reads\n", s.BackendWrites, s.BackendReads)
	fmt.Fprintf(&b, "  descriptions    %d bytes raw, %d bytes on the wire\n", s.DescRaw, s.DescWire)
	fmt.Fprintf(&b, "  open files      %d\n", s.OpenFiles)
	return b.String()
}
