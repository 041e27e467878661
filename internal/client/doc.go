// Package client is the Go side of libdelegate: sessions to the delegate
// servers, routing of extents to their owners, batching of writes (and
// cork), reads that assemble what every owner returns, and the rest of the
// file operations. The C API in libdelegate is a thin layer over it.
//
// Concurrency: a Client and its Files are safe for concurrent use. Each
// session has one control stream; a sender goroutine writes queued requests
// in batches and a receiver goroutine applies replies, so a write returns as
// soon as its data is in the shared-memory ring (or the request buffer) and
// small writes that arrive while a batch is being sent join the next one.
//
// # Lock order
//
// Client.mu, File.mu and session.mu are leaves: code takes one, copies
// what it needs and lets go before it takes another (sendAllCorked, Fence,
// complete then writeDone), and never holds one across network I/O or a
// dial (Client.sessions dials outside Client.mu) or a call into C. The
// shared mapping of a session is reference-counted (mapping.go) and
// unmapped by its last holder, never under a lock. One lock is held across
// network I/O, by design: session.atomicMu, by an atomic-mode call while
// it sends its requests (a read: until its last reply), so that two calls'
// parts never interleave on the stream (File.atomicCall); an end marker
// takes it for its submission (session.lockAtomic), after a stat that
// makes the server let go of ring space this rank's pieces hold for that
// marker. A call takes it before anything else (ring space, bulk
// connections), so no holder of those waits for it.
package client
