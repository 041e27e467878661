// Package stats is the server's statistics snapshot: what the server fills,
// the stats request carries (msgpack), `delegate-server stats` and
// delegate-run print, and the metrics listener serves (Prometheus text).
package stats

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"time"
)

// WaitBuckets is the number of time-in-queue histogram buckets. Bucket 0
// counts waits under 1 us; bucket i (i >= 1) counts waits in
// [2^(i-1), 2^i) us; the last bucket also takes everything longer.
const WaitBuckets = 26

// BucketOf returns the histogram bucket of a wait.
func BucketOf(d time.Duration) int {
	us := d.Microseconds()
	b := 0
	for us > 0 && b < WaitBuckets-1 {
		us >>= 1
		b++
	}
	return b
}

// BucketUpper returns the upper bound of bucket i.
func BucketUpper(i int) time.Duration { return time.Duration(1<<i) * time.Microsecond }

// Snapshot is a copy of one server's statistics, safe to keep and encode.
type Snapshot struct {
	Name   string  `codec:"name" json:"name"`
	Uptime float64 `codec:"uptime_s" json:"uptime_s"`

	Sessions      int64 `codec:"sessions" json:"sessions"`
	SessionsTotal int64 `codec:"sessions_total" json:"sessions_total"`
	// Client sessions that sent requests, by transport, since start: over
	// TCP, over a Unix socket with the shared-memory ring, and without.
	SessionsTCP  int64 `codec:"sessions_tcp" json:"sessions_tcp"`
	SessionsRing int64 `codec:"sessions_ring" json:"sessions_ring"`
	SessionsUnix int64 `codec:"sessions_unix" json:"sessions_unix"`
	Rejected     int64 `codec:"rejected" json:"rejected"`
	// SessionsRefused: hellos refused because the server served its
	// --max-sessions (also in Rejected); StreamsRefused: second streams of
	// a session, which closed the session.
	SessionsRefused int64 `codec:"sessions_refused" json:"sessions_refused"`
	StreamsRefused  int64 `codec:"streams_refused" json:"streams_refused"`
	// Bulk connections bound (wire spec.md), the data that came and went
	// on them, and the transfers that failed (each closed its session).
	BulkConns int64 `codec:"bulk_conns" json:"bulk_conns"`
	BulkIn    int64 `codec:"bulk_in" json:"bulk_in"`
	BulkOut   int64 `codec:"bulk_out" json:"bulk_out"`
	// BulkSpliced: of BulkIn, what went from the socket into the backend
	// file without passing through the server's memory (splice); a
	// transfer whose splice the backend refused counts whole, also the
	// bytes then written from the pipe with pwrite (SpliceRefused).
	BulkSpliced int64 `codec:"bulk_spliced" json:"bulk_spliced"`
	// BulkSentFile: of BulkOut, what went from the backend file to the
	// socket without passing through the server's memory (sendfile).
	BulkSentFile int64 `codec:"bulk_sendfile" json:"bulk_sendfile"`
	BulkErrors   int64 `codec:"bulk_errors" json:"bulk_errors"`
	// SpliceRefused: files whose backend refused a splice (EINVAL,
	// EOPNOTSUPP: a file system or an O_DIRECT file without splice); their
	// bytes were written with pwrite, and their bulk writes are not
	// spliced any more.
	SpliceRefused int64 `codec:"splice_refused" json:"splice_refused"`
	// Kept data (with a state directory): files nobody held whose flush
	// failed and whose data was kept for a retry instead of dropped, the
	// retries of their flushes, and those dropped because writers waited
	// for buffer space.
	KeptFiles   int64 `codec:"kept_files" json:"kept_files"`
	KeptRetries int64 `codec:"kept_retries" json:"kept_retries"`
	KeptDropped int64 `codec:"kept_dropped" json:"kept_dropped"`
	BadFrames   int64 `codec:"bad_frames" json:"bad_frames"`
	// Faults survived (issue 9): panics recovered in a session or stream
	// (each closed it), accept errors retried after a pause, and new
	// connections closed at once because too many were still in the hello.
	Panics          int64 `codec:"panics" json:"panics"`
	AcceptRetries   int64 `codec:"accept_retries" json:"accept_retries"`
	HelloOverflow   int64 `codec:"hello_overflow" json:"hello_overflow"`
	HelloInProgress int64 `codec:"hello_in_progress" json:"hello_in_progress"`
	OpenFiles       int64 `codec:"open_files" json:"open_files"`
	// AtomicBroken: atomic calls of several requests whose lock went
	// before their last part (a part later than the server's bound, a
	// collective's end marker or a request refused on arrival between two
	// parts): their remaining parts failed.
	AtomicBroken int64 `codec:"atomic_broken" json:"atomic_broken"`

	// Requests and errors by message type ("write", "read", ...). A file
	// that does not exist (an open without create, a stat, a delete the
	// other servers already did) or exists (an exclusive create) is an
	// answer, not a failure: those count under Answers.
	Requests map[string]int64 `codec:"requests" json:"requests"`
	Errors   map[string]int64 `codec:"errors" json:"errors"`
	Answers  map[string]int64 `codec:"answers" json:"answers"`

	// The request queue: requests read from clients and not yet answered.
	QueueDepth int64   `codec:"queue_depth" json:"queue_depth"`
	QueuePeak  int64   `codec:"queue_peak" json:"queue_peak"`
	Wait       []int64 `codec:"wait_hist" json:"wait_hist"` // time in queue, WaitBuckets buckets

	// Data in and out, and what came with it.
	BytesIn         int64 `codec:"bytes_in" json:"bytes_in"`     // write data received
	BytesOut        int64 `codec:"bytes_out" json:"bytes_out"`   // read data sent
	ExtentsIn       int64 `codec:"extents_in" json:"extents_in"` // extents of write requests
	BytesDirect     int64 `codec:"bytes_direct" json:"bytes_direct"`
	ReadFromBuffer  int64 `codec:"read_from_buffer" json:"read_from_buffer"`
	ReadFromBackend int64 `codec:"read_from_backend" json:"read_from_backend"`
	CollWrites      int64 `codec:"coll_writes" json:"coll_writes"`
	CollEnds        int64 `codec:"coll_ends" json:"coll_ends"` // ranks' collective end markers answered
	// CollDirect: bytes of collective writes written straight from the
	// ranks' ring slots once the collective was complete (in BytesDirect
	// too); CollHeld: collective write requests held for it.
	CollDirect int64 `codec:"coll_direct" json:"coll_direct"`
	CollHeld   int64 `codec:"coll_held" json:"coll_held"`
	DescRaw    int64 `codec:"desc_raw" json:"desc_raw"`   // description bytes before decompression
	DescWire   int64 `codec:"desc_wire" json:"desc_wire"` // as they came on the wire

	// The backend.
	BackendWrites     int64 `codec:"backend_writes" json:"backend_writes"`
	BackendWriteBytes int64 `codec:"backend_write_bytes" json:"backend_write_bytes"`
	BackendAligned    int64 `codec:"backend_aligned" json:"backend_aligned"` // writes starting on a chunk boundary
	BackendReads      int64 `codec:"backend_reads" json:"backend_reads"`
	BackendSyncs      int64 `codec:"backend_syncs" json:"backend_syncs"`
	ChunkBytes        int64 `codec:"chunk_bytes" json:"chunk_bytes"`

	// The write-behind buffer.
	BufferBytes int64 `codec:"buffer_bytes" json:"buffer_bytes"` // memory held now
	BufferPeak  int64 `codec:"buffer_peak" json:"buffer_peak"`
	BufferLimit int64 `codec:"buffer_limit" json:"buffer_limit"`
	// BufferPooled is chunk memory kept for reuse: at most --buffer minus
	// BufferLimit once the buffers have been idle for --flush-idle; after a
	// flush freed more, the rest stays resident until then (a file written
	// again soon reuses it).
	BufferPooled int64 `codec:"buffer_pooled" json:"buffer_pooled"`
	// Transfer memory (bulk receive buffers, inline read results over 64
	// KiB until their reply): its share of --buffer (an eighth; the
	// write-behind buffer's limit is what is left of --buffer after the
	// pool and this share), what it holds now (in use and kept), the most
	// it held, and the requests that waited for room.
	TransferBytes int64 `codec:"transfer_bytes" json:"transfer_bytes"`
	TransferPeak  int64 `codec:"transfer_peak" json:"transfer_peak"`
	TransferLimit int64 `codec:"transfer_limit" json:"transfer_limit"`
	TransferWaits int64 `codec:"transfer_waits" json:"transfer_waits"`
	Dirty         int64 `codec:"dirty" json:"dirty"` // bytes not yet on the backend
	Stalls        int64 `codec:"stalls" json:"stalls"`
	StallNanos    int64 `codec:"stall_ns" json:"stall_ns"`

	// Flushes by cause ("sync", "close", "flush", "highwater", "idle",
	// "shutdown", "resize"), bytes flushed, and failures.
	Flushes     map[string]int64 `codec:"flushes" json:"flushes"`
	FlushBytes  int64            `codec:"flush_bytes" json:"flush_bytes"`
	FlushErrors int64            `codec:"flush_errors" json:"flush_errors"`

	// PeakRSS is the server process's peak resident memory, in bytes,
	// including the clients' shared-memory rings it maps (RingBytes now).
	// PeakOwn is its own memory (resident minus shared pages), sampled at
	// every flush and stall, when the buffers are fullest.
	PeakRSS   int64 `codec:"peak_rss" json:"peak_rss"`
	PeakOwn   int64 `codec:"peak_own" json:"peak_own"`
	RingBytes int64 `codec:"ring_bytes" json:"ring_bytes"`

	// The state directory (--state-dir): slots holding buffered chunks
	// now, chunks buffered in the heap because no slot could be had (not
	// crash-safe), and what the server wrote at start from what a killed
	// predecessor left: files, chunks, bytes, and chunks of files that no
	// longer existed.
	StateSlots      int64 `codec:"state_slots" json:"state_slots"`
	StateFallbacks  int64 `codec:"state_fallbacks" json:"state_fallbacks"`
	RecoveredFiles  int64 `codec:"recovered_files" json:"recovered_files"`
	RecoveredChunks int64 `codec:"recovered_chunks" json:"recovered_chunks"`
	RecoveredBytes  int64 `codec:"recovered_bytes" json:"recovered_bytes"`
	RecoveryDropped int64 `codec:"recovery_dropped" json:"recovery_dropped"`
	StateDir        bool  `codec:"state_dir" json:"state_dir"`

	// Files is the per-file summary, heaviest first (files.go): every file
	// clients opened since the server started, closed ones included, up to
	// the server's cap; the rest add into one entry named OtherFiles.
	Files []File `codec:"files" json:"files"`
}

// Quantile returns the upper bound of the histogram bucket holding the q-th
// quantile of the time in queue (0 if no request was queued).
func (s *Snapshot) Quantile(q float64) time.Duration {
	var total int64
	for _, n := range s.Wait {
		total += n
	}
	if total == 0 {
		return 0
	}
	want := int64(q*float64(total)) + 1
	var cum int64
	for i, n := range s.Wait {
		cum += n
		if cum >= want {
			return BucketUpper(i)
		}
	}
	return BucketUpper(len(s.Wait) - 1)
}

// Coalescing returns client extents written per backend write.
func (s *Snapshot) Coalescing() float64 {
	if s.BackendWrites == 0 {
		return 0
	}
	return float64(s.ExtentsIn) / float64(s.BackendWrites)
}

// Add accumulates o into s (for a job-wide total over servers).
func (s *Snapshot) Add(o *Snapshot) {
	s.Sessions += o.Sessions
	s.SessionsTotal += o.SessionsTotal
	s.SessionsTCP += o.SessionsTCP
	s.SessionsRing += o.SessionsRing
	s.SessionsUnix += o.SessionsUnix
	s.Rejected += o.Rejected
	s.SessionsRefused += o.SessionsRefused
	s.StreamsRefused += o.StreamsRefused
	s.BulkConns += o.BulkConns
	s.BulkIn += o.BulkIn
	s.BulkOut += o.BulkOut
	s.BulkSpliced += o.BulkSpliced
	s.BulkSentFile += o.BulkSentFile
	s.BulkErrors += o.BulkErrors
	s.SpliceRefused += o.SpliceRefused
	s.KeptFiles += o.KeptFiles
	s.KeptRetries += o.KeptRetries
	s.KeptDropped += o.KeptDropped
	s.BadFrames += o.BadFrames
	s.Panics += o.Panics
	s.AcceptRetries += o.AcceptRetries
	s.HelloOverflow += o.HelloOverflow
	s.HelloInProgress += o.HelloInProgress
	s.AtomicBroken += o.AtomicBroken
	s.OpenFiles += o.OpenFiles
	s.Requests = addMap(s.Requests, o.Requests)
	s.Errors = addMap(s.Errors, o.Errors)
	s.Answers = addMap(s.Answers, o.Answers)
	s.Flushes = addMap(s.Flushes, o.Flushes)
	s.QueueDepth += o.QueueDepth
	s.QueuePeak = max(s.QueuePeak, o.QueuePeak)
	if len(s.Wait) < len(o.Wait) {
		s.Wait = append(s.Wait, make([]int64, len(o.Wait)-len(s.Wait))...)
	}
	for i, n := range o.Wait {
		s.Wait[i] += n
	}
	for _, p := range [][2]*int64{
		{&s.BytesIn, &o.BytesIn}, {&s.BytesOut, &o.BytesOut}, {&s.ExtentsIn, &o.ExtentsIn},
		{&s.BytesDirect, &o.BytesDirect}, {&s.ReadFromBuffer, &o.ReadFromBuffer}, {&s.CollEnds, &o.CollEnds},
		{&s.ReadFromBackend, &o.ReadFromBackend}, {&s.CollWrites, &o.CollWrites},
		{&s.CollDirect, &o.CollDirect}, {&s.CollHeld, &o.CollHeld},
		{&s.DescRaw, &o.DescRaw}, {&s.DescWire, &o.DescWire},
		{&s.BackendWrites, &o.BackendWrites}, {&s.BackendWriteBytes, &o.BackendWriteBytes},
		{&s.BackendAligned, &o.BackendAligned}, {&s.BackendReads, &o.BackendReads},
		{&s.BackendSyncs, &o.BackendSyncs}, {&s.BufferBytes, &o.BufferBytes},
		{&s.BufferPeak, &o.BufferPeak}, {&s.BufferLimit, &o.BufferLimit}, {&s.Dirty, &o.Dirty},
		{&s.BufferPooled, &o.BufferPooled},
		{&s.TransferBytes, &o.TransferBytes}, {&s.TransferPeak, &o.TransferPeak},
		{&s.TransferLimit, &o.TransferLimit}, {&s.TransferWaits, &o.TransferWaits},
		{&s.Stalls, &o.Stalls}, {&s.StallNanos, &o.StallNanos}, {&s.FlushBytes, &o.FlushBytes},
		{&s.FlushErrors, &o.FlushErrors},
		{&s.StateSlots, &o.StateSlots}, {&s.StateFallbacks, &o.StateFallbacks},
		{&s.RecoveredFiles, &o.RecoveredFiles}, {&s.RecoveredChunks, &o.RecoveredChunks},
		{&s.RecoveredBytes, &o.RecoveredBytes}, {&s.RecoveryDropped, &o.RecoveryDropped},
	} {
		*p[0] += *p[1]
	}
	s.ChunkBytes = max(s.ChunkBytes, o.ChunkBytes)
	s.StateDir = s.StateDir || o.StateDir
	if len(o.Files) > 0 {
		s.Files = MergeFiles(s.Files, o.Files)
	}
}

func addMap(a, b map[string]int64) map[string]int64 {
	if a == nil {
		a = map[string]int64{}
	}
	for k, v := range b {
		a[k] += v
	}
	return a
}

func sortedKeys(m map[string]int64) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func kv(m map[string]int64) string {
	var parts []string
	for _, k := range sortedKeys(m) {
		if m[k] != 0 {
			parts = append(parts, fmt.Sprintf("%s=%d", k, m[k]))
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, " ")
}

// MiB formats a byte count.
func MiB(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// String renders the snapshot for people, one topic per line.
func (s Snapshot) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "server %s (up %.0fs)\n", s.Name, s.Uptime)
	fmt.Fprintf(&b, "  sessions       %d now, %d total, %d refused (%d over --max-sessions); %d files open\n",
		s.Sessions, s.SessionsTotal, s.Rejected, s.SessionsRefused, s.OpenFiles)
	if s.StreamsRefused > 0 {
		fmt.Fprintf(&b, "  streams        %d refused (a session's second: the session closed)\n", s.StreamsRefused)
	}
	fmt.Fprintf(&b, "  transports     %d shared memory, %d unix, %d tcp\n", s.SessionsRing, s.SessionsUnix, s.SessionsTCP)
	if s.BulkConns > 0 {
		fmt.Fprintf(&b, "  bulk           %d connections, %s in (%s spliced to files), %s out (%s sent from files), %d failed transfers\n",
			s.BulkConns, MiB(s.BulkIn), MiB(s.BulkSpliced), MiB(s.BulkOut), MiB(s.BulkSentFile), s.BulkErrors)
	}
	fmt.Fprintf(&b, "  transfers      %s held now, %s peak, %s limit; %d waits for room\n",
		MiB(s.TransferBytes), MiB(s.TransferPeak), MiB(s.TransferLimit), s.TransferWaits)
	if s.SpliceRefused > 0 {
		fmt.Fprintf(&b, "  splice         refused by the backend for %d files (written with pwrite)\n", s.SpliceRefused)
	}
	fmt.Fprintf(&b, "  requests       %s\n", kv(s.Requests))
	fmt.Fprintf(&b, "  errors         %s; bad frames %d\n", kv(s.Errors), s.BadFrames)
	if len(s.Answers) > 0 {
		fmt.Fprintf(&b, "  no such file   %s (or exists, for an exclusive create): answers, not failures\n", kv(s.Answers))
	}
	if s.Panics+s.AcceptRetries+s.HelloOverflow+s.AtomicBroken > 0 {
		fmt.Fprintf(&b, "  faults         %d panics recovered, %d accept errors retried, %d connections over the hello limit, %d atomic calls not applied as one unit\n",
			s.Panics, s.AcceptRetries, s.HelloOverflow, s.AtomicBroken)
	}
	fmt.Fprintf(&b, "  queue          depth %d now, %d peak; time in queue p50 %s, p99 %s\n",
		s.QueueDepth, s.QueuePeak, s.Quantile(0.50), s.Quantile(0.99))
	fmt.Fprintf(&b, "  data           %s written in %d extents (%s straight to the backend), %s read (%s from the buffer)\n",
		MiB(s.BytesIn), s.ExtentsIn, MiB(s.BytesDirect), MiB(s.BytesOut), MiB(s.ReadFromBuffer))
	aligned := 0.0
	if s.BackendWrites > 0 {
		aligned = 100 * float64(s.BackendAligned) / float64(s.BackendWrites)
	}
	avg := int64(0)
	if s.BackendWrites > 0 {
		avg = s.BackendWriteBytes / s.BackendWrites
	}
	fmt.Fprintf(&b, "  backend        %d writes (%s, avg %d bytes, %.0f%% chunk-aligned), %d reads, %d syncs\n",
		s.BackendWrites, MiB(s.BackendWriteBytes), avg, aligned, s.BackendReads, s.BackendSyncs)
	fmt.Fprintf(&b, "  coalescing     %.1f client extents per backend write\n", s.Coalescing())
	fmt.Fprintf(&b, "  buffer         %s held now, %s peak, %s limit; %s dirty; %d stalls (%s); %s kept for reuse\n",
		MiB(s.BufferBytes), MiB(s.BufferPeak), MiB(s.BufferLimit), MiB(s.Dirty), s.Stalls,
		time.Duration(s.StallNanos).Round(time.Microsecond), MiB(s.BufferPooled))
	fmt.Fprintf(&b, "  flushes        %s\n", s.flushLine())
	if s.KeptFiles > 0 {
		fmt.Fprintf(&b, "  kept data      %d files' data kept after a failed flush, %d retries, %d dropped for space\n",
			s.KeptFiles, s.KeptRetries, s.KeptDropped)
	}
	fmt.Fprintf(&b, "  descriptions   %d bytes raw, %d on the wire; %d collective writes (%d held for the end markers, %s from the rings straight to the backend), %d collective ends\n",
		s.DescRaw, s.DescWire, s.CollWrites, s.CollHeld, MiB(s.CollDirect), s.CollEnds)
	if s.StateDir || s.RecoveredChunks > 0 || s.RecoveryDropped > 0 {
		fmt.Fprintf(&b, "  state dir      %d chunks in slots now, %d in the heap (no slot); recovered at start: %d files, %d chunks, %s; %d chunks of missing files dropped\n",
			s.StateSlots, s.StateFallbacks, s.RecoveredFiles, s.RecoveredChunks, MiB(s.RecoveredBytes), s.RecoveryDropped)
	}
	if s.PeakRSS > 0 {
		fmt.Fprintf(&b, "  memory         peak RSS %s (own memory %s; clients' rings mapped now %s)\n",
			MiB(s.PeakRSS), MiB(s.PeakOwn), MiB(s.RingBytes))
	}
	return b.String()
}

// flushLine says what the flushes did, and what went to the backend
// without them: large writes that go straight to the backend need no flush,
// and "none" alone would read as if nothing was written.
func (s *Snapshot) flushLine() string {
	causes := kv(s.Flushes)
	switch {
	case causes == "none" && s.BytesDirect == 0:
		return fmt.Sprintf("none; %d failed", s.FlushErrors)
	case causes == "none":
		return fmt.Sprintf("%s written direct, straight to the backend: no flush needed; %d failed", MiB(s.BytesDirect), s.FlushErrors)
	case s.BytesDirect == 0:
		return fmt.Sprintf("%s; %s flushed from the buffer; %d failed", causes, MiB(s.FlushBytes), s.FlushErrors)
	}
	return fmt.Sprintf("%s; %s flushed from the buffer, %s written direct; %d failed", causes, MiB(s.FlushBytes), MiB(s.BytesDirect), s.FlushErrors)
}

// WritePrometheus writes the snapshot in the Prometheus text format.
func (s *Snapshot) WritePrometheus(w io.Writer) {
	l := fmt.Sprintf("server=%q", s.Name)
	metric := func(name, typ, help string) {
		fmt.Fprintf(w, "# HELP delegate_%s %s\n# TYPE delegate_%s %s\n", name, help, name, typ)
	}
	one := func(name, typ, help string, v any) {
		metric(name, typ, help)
		fmt.Fprintf(w, "delegate_%s{%s} %v\n", name, l, v)
	}
	byKey := func(name, key, help string, m map[string]int64) {
		metric(name, "counter", help)
		for _, k := range sortedKeys(m) {
			fmt.Fprintf(w, "delegate_%s{%s,%s=%q} %d\n", name, l, key, k, m[k])
		}
	}
	one("sessions", "gauge", "Client sessions now.", s.Sessions)
	one("open_files", "gauge", "Files open on the server.", s.OpenFiles)
	one("bulk_connections_total", "counter", "Bulk connections bound to sessions.", s.BulkConns)
	one("bulk_in_bytes_total", "counter", "Write data received on bulk connections.", s.BulkIn)
	one("bulk_out_bytes_total", "counter", "Read data sent on bulk connections.", s.BulkOut)
	one("bulk_errors_total", "counter", "Bulk transfers that failed (each closed its session).", s.BulkErrors)
	one("splice_refused_total", "counter", "Files whose backend refused a splice (written with pwrite since).", s.SpliceRefused)
	byKey("sessions_total", "transport", "Client sessions since start by transport.",
		map[string]int64{"shm": s.SessionsRing, "unix": s.SessionsUnix, "tcp": s.SessionsTCP})
	byKey("requests_total", "type", "Requests by message type.", s.Requests)
	byKey("errors_total", "type", "Failed requests by message type.", s.Errors)
	byKey("answers_total", "type", "Requests answered no such file (or exists): not failures.", s.Answers)
	one("bad_frames_total", "counter", "Malformed frames received.", s.BadFrames)
	one("panics_total", "counter", "Panics recovered in a session or stream (each closed it).", s.Panics)
	one("accept_retries_total", "counter", "Accept errors (such as EMFILE) retried after a pause.", s.AcceptRetries)
	one("sessions_refused_total", "counter", "Hellos refused: the server served its --max-sessions.", s.SessionsRefused)
	one("streams_refused_total", "counter", "Second streams of a session, which closed it.", s.StreamsRefused)
	one("hello_overflow_total", "counter", "Connections closed at once: too many still in the hello.", s.HelloOverflow)
	one("atomic_broken_total", "counter", "Atomic calls not applied as one unit: a part came too late, or an end marker or a refused request between two parts.", s.AtomicBroken)
	one("hello_in_progress", "gauge", "Connections that have not finished the hello.", s.HelloInProgress)
	one("queue_depth", "gauge", "Requests read and not yet answered.", s.QueueDepth)
	one("queue_depth_peak", "gauge", "Largest queue depth seen.", s.QueuePeak)
	metric("queue_wait_seconds", "histogram", "Time requests spent in the queue.")
	var cum int64
	for i, n := range s.Wait {
		cum += n
		fmt.Fprintf(w, "delegate_queue_wait_seconds_bucket{%s,le=\"%g\"} %d\n", l, BucketUpper(i).Seconds(), cum)
	}
	fmt.Fprintf(w, "delegate_queue_wait_seconds_bucket{%s,le=\"+Inf\"} %d\ndelegate_queue_wait_seconds_count{%s} %d\n", l, cum, l, cum)
	one("write_bytes_total", "counter", "Bytes clients wrote.", s.BytesIn)
	one("read_bytes_total", "counter", "Bytes clients read.", s.BytesOut)
	one("write_extents_total", "counter", "Extents in client writes.", s.ExtentsIn)
	one("backend_writes_total", "counter", "Write calls to the backend.", s.BackendWrites)
	one("backend_write_bytes_total", "counter", "Bytes written to the backend.", s.BackendWriteBytes)
	one("backend_reads_total", "counter", "Read calls to the backend.", s.BackendReads)
	one("backend_syncs_total", "counter", "fsync calls to the backend.", s.BackendSyncs)
	one("buffer_bytes", "gauge", "Memory the write-behind buffer holds.", s.BufferBytes)
	one("buffer_bytes_peak", "gauge", "Most memory the buffer held.", s.BufferPeak)
	one("buffer_bytes_limit", "gauge", "The buffer's limit (--buffer less what is kept for reuse).", s.BufferLimit)
	one("buffer_bytes_pooled", "gauge", "Chunk memory kept for reuse.", s.BufferPooled)
	one("dirty_bytes", "gauge", "Buffered bytes not yet on the backend.", s.Dirty)
	one("stalls_total", "counter", "Writes that waited for buffer space.", s.Stalls)
	one("stall_seconds_total", "counter", "Time writes waited for buffer space.", float64(s.StallNanos)/1e9)
	byKey("flushes_total", "cause", "Flushes by cause.", s.Flushes)
	one("flush_errors_total", "counter", "Flushes that failed.", s.FlushErrors)
	one("peak_rss_bytes", "gauge", "Peak resident memory of the server, mapped client rings included.", s.PeakRSS)
	one("peak_own_bytes", "gauge", "Peak own (not shared) resident memory, sampled at flushes.", s.PeakOwn)
	one("state_slots", "gauge", "Buffered chunks held in state-directory slots.", s.StateSlots)
	one("state_fallbacks_total", "counter", "Chunks buffered in the heap because no slot could be had.", s.StateFallbacks)
	one("recovered_files", "gauge", "Files written at start from the state directory.", s.RecoveredFiles)
	one("recovered_chunks", "gauge", "Chunks written at start from the state directory.", s.RecoveredChunks)
	one("recovered_bytes", "gauge", "Bytes written at start from the state directory.", s.RecoveredBytes)
	one("description_bytes_raw_total", "counter", "Description bytes before decompression.", s.DescRaw)
	one("description_bytes_wire_total", "counter", "Description bytes on the wire.", s.DescWire)
}
