// Package stats is the server's statistics snapshot: what the server
// fills, the stats request carries (msgpack), delegate-server stats and
// delegate-run print, and the metrics listener serves.
package stats

import (
	"fmt"
	"strings"

	"github.com/delegate-io/delegate/internal/wire"
)

// Snapshot is a copy of the server's statistics, safe to keep and encode.
type Snapshot struct {
	Name          string           `codec:"name" json:"name"`
	Sessions      int64            `codec:"sessions" json:"sessions"`
	SessionsTotal int64            `codec:"sessions_total" json:"sessions_total"`
	Rejected      int64            `codec:"rejected" json:"rejected"`
	BadFrames     int64            `codec:"bad_frames" json:"bad_frames"`
	Requests      map[string]int64 `codec:"requests" json:"requests"`
	Errors        map[string]int64 `codec:"errors" json:"errors"`
	BytesIn       int64            `codec:"bytes_in" json:"bytes_in"`
	BytesOut      int64            `codec:"bytes_out" json:"bytes_out"`
	BackendWrites int64            `codec:"backend_writes" json:"backend_writes"`
	BackendReads  int64            `codec:"backend_reads" json:"backend_reads"`
	DescRaw       int64            `codec:"desc_raw" json:"desc_raw"`
	DescWire      int64            `codec:"desc_wire" json:"desc_wire"`
	OpenFiles     int64            `codec:"open_files" json:"open_files"`
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
