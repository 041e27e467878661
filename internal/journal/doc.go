// Package journal keeps a server's write-behind buffer in files that
// outlive the server process (DESIGN.md §8): chunk buffers are slots of
// mmap'd segment files in a state directory (by default on /dev/shm), so
// the buffer itself is the journal and no byte is copied twice. A server
// that was killed is started again with the same command line; Open finds
// the committed slots, the server writes them to the backend (oldest
// first), and releases them before it serves anyone.
//
// # Layout
//
// The state directory holds a lock file (flock: one server at a time) and
// segment files seg-NNNNNN. A segment is a 4 KiB header page (magic
// "DLGJNL01", chunk size, slot count, sizes, CRC-32C) followed by slots.
// A slot is
//
//	[header 4 KiB][mark bitmap: chunk/8 bytes, rounded up to 4 KiB][data: chunk bytes]
//
// and its header is
//
//	0   commit  uint32  CRC-32C of bytes 4..64+pathLen (never 0); 0: free
//	4   pathLen uint32  at most 4032
//	8   seq     uint64  when the slot was taken (journal-wide, increasing)
//	16  off     int64   the chunk's offset in the file
//	24  dev     uint64  the backend file's device (0: not known)
//	32  ino     uint64  its inode number (0: not known)
//	40  birth   uint64  its birth time, ns (statx btime; 0: not known):
//	                    recovery writes a chunk only to that file, not to
//	                    another one created at the path since
//	48  reserved, zero, up to 64
//	64  path    the backend path, as the server opened it
//
// Bit i of the bitmap says byte i of the data was written and must reach
// the backend. All integers are little-endian.
//
// # Rules
//
//	J1. A slot is committed (header written, commit word stored last, with
//	    an atomic store so no earlier store moves past it) before any byte
//	    is written into it; a torn header has commit 0 or a wrong CRC and
//	    the slot is ignored: nothing in it was acknowledged.
//	J2. Bytes are copied into the data, then marked; the server
//	    acknowledges a write only after both (extent.Slot).
//	J3. A slot is released (commit word cleared) only after its marked
//	    bytes are on the backend, or when they were dropped on purpose (a
//	    newer direct write or truncation unmarked them, or the file was
//	    deleted). Its bitmap is zeroed before it is committed again, so
//	    stale marks are never replayed (the words of the pages it marked
//	    since it was last zeroed, which the Slot remembers in memory; the
//	    whole bitmap for a slot a previous server left).
//	J4. Two committed slots may hold the same bytes of a file: an older
//	    slot being flushed and the newer one writes landed in meanwhile.
//	    The higher seq is newer. Recovery writes a file's slots in seq
//	    order, so the newest bytes land last.
//
// What survives: a process crash (SIGKILL, OOM kill, a panic) loses
// nothing acknowledged, since the pages belong to the file, not the
// process. A node crash loses what a tmpfs holds; a state directory on a
// local disk survives it only if the pages reach the disk, which this
// package does not force (see the README for what an msync per
// acknowledged batch costs).
package journal
