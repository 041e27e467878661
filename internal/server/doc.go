// Package server is the delegate server: it accepts client sessions,
// serves their requests on yamux streams, and keeps the files they use in
// a write-behind buffer that it flushes to the backend. See
// internal/wire/spec.md for the protocol, DESIGN.md §6 for the engine and
// ARCHITECTURE.md for the whole picture.
//
// # Rooms
//
// The service (what a Server owns: listeners, sessions, shutdown):
//
//	server.go    Server: New, Serve (accept, backoff, hello limit), Shutdown, Close
//	config.go    Config, its defaults, validation and String
//	session.go   one client connection: yamux, handles, the ring
//	hello.go     its handshake: the challenge-response over the job secret,
//	             the routing check, admission (--max-sessions, monitors,
//	             a move to the Unix socket), the reply with the server's identity
//	stream.go    one yamux stream: read loop, queue, worker, replies in order
//	handlers.go  one function per request type; they check ownership (route)
//	             and call into the engine
//	atomic.go    atomic mode: a call's requests applied as one unit under
//	             the file's atomic lock (wire.IOMore), the bound on its gaps
//	coll.go      collectives: the group's arrival, the end marker, the
//	             pieces a stream holds for it; collwrite.go: a complete
//	             collective written from the ranks' rings
//	bulk.go      bulk connections: binding, a write's data read by the worker,
//	             a read's data sent; bulksplice.go: direct writes spliced
//	             from the socket into the backend file, clean reads sent
//	             from it (sendfile)
//	xfermem.go   transfer memory: bulk receive buffers and large inline
//	             read results, in one share of --buffer
//	stats.go     counters and their snapshot (the Monitor client: internal/monitor)
//	filestats.go the per-file summaries (stats.File): counted per request,
//	             kept after close, capped (Config.FileStats)
//
// The engine (what a file's buffered bytes go through; it sees an *engine,
// never the *Server: settings, budget, pool, journal, counters, the
// flusher's wake-up):
//
//	engine.go    engine: the shared environment of every file
//	table.go     fileTable: open, release, finalize, unlink
//	file.go      file: its state, locks, dirty publication, counters
//	write.go     buffering a write (memory reserved in steps), direct writes
//	read.go      buffered bytes over backend bytes; the backend size
//	flush.go     a file's flush to the backend in ordered runs; sync; drop
//	flusher.go   the background flusher: pressure, idle, full runs, drain
//	budget.go    the memory budget (--buffer) and backpressure
//	state.go     the journal: buffers in a state directory, recovery
//
// # Lock order
//
// Take locks only in this order; a lock not listed is a leaf (taken alone,
// nothing called under it takes another):
//
//	file.atomic (atomic mode, atomic.go; held across the requests of one call)
//	  -> file.flushMu (serializes everything that writes the backend)
//	    -> fileTable.mu
//	      -> file.mu (backend descriptor, references, counters)
//	        -> file.buf (the layers)
//	          -> file.pub (the handles watching the dirty state)
//
// Leaves: Server.mu, session.mu, budget.mu, colls.mu, every.mu,
// bulkRegistry.mu, bulkSide.mu, xferMem.mu, admission (Server.adm: session
// places, hello.go), fileStatsTable.mu (taken when
// a file entry is made, under nothing).
// No lock is held across network I/O but file.atomic, by design: an atomic
// call of several requests holds it from its first to its last, every wait
// on the client meanwhile bounded (atomic.go: atomicGap of idle time for the
// next part, atomicBusyGaps gaps in all; bulkTimeout for replies and
// transfers); file.buf is
// never held across backend I/O
// (read.go's lockWithSize stats the backend before taking it); flushMu is,
// by design (a collective written from the rings holds it for its whole
// merge and its pwritev calls, collwrite.go). The budget never calls into a file under its lock: a writer
// releases file.buf before it waits for memory (write.go).
package server
