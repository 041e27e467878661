package transport

import (
	"encoding/binary"
	"net"
	"sync"
)

// yamux's frame header (github.com/hashicorp/yamux, const.go): version,
// type, flags, stream id, length; a data frame (type 0) of length n is
// followed by n bytes of body.
const (
	yamuxHeaderSize = 12
	yamuxTypeData   = 0
	// A body up to this is copied behind its header (one TLS record under
	// TLS, which has no writev); a larger one leaves with writev.
	joinCopyMax = 4 << 10
)

// JoinFrames wraps the connection a yamux session writes to so that each
// data frame leaves in one system call. yamux's send loop writes a frame's
// header and its body with two Write calls: two system calls, and a
// receiver that often wakes for the 12-byte header alone and again for
// the body. JoinFrames holds a data frame's header until its body comes
// and writes them together; any other frame (window update, ping, go
// away, an empty data frame) passes at once. A 64-byte round trip between
// two processes over yamux on a Unix socket: median 95-105 us before,
// 82-85 after (README, Performance, twelfth session). Only the session's
// writes may go through it, in frame order (yamux's send loop is their
// only writer); reads and everything else are c's.
func JoinFrames(c net.Conn) net.Conn { return &frameJoiner{Conn: c} }

type frameJoiner struct {
	net.Conn
	mu   sync.Mutex // one writer in practice (yamux's send loop); kept for safety
	hdr  [yamuxHeaderSize]byte
	held bool      // hdr is a data frame's header whose body comes next
	buf  []byte    // header and body of a small frame, reused
	two  [2][]byte // header and body of a larger one, for writev
}

func (j *frameJoiner) Write(p []byte) (int, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.held {
		j.held = false
		var n int64
		var err error
		if len(p) <= joinCopyMax {
			j.buf = append(append(j.buf[:0], j.hdr[:]...), p...)
			var m int
			m, err = j.Conn.Write(j.buf)
			n = int64(m)
		} else {
			j.two = [2][]byte{j.hdr[:], p}
			bufs := net.Buffers(j.two[:])
			n, err = bufs.WriteTo(j.Conn)
			j.two = [2][]byte{} // p is the caller's again
		}
		return int(max(n-yamuxHeaderSize, 0)), err
	}
	if len(p) == yamuxHeaderSize && p[1] == yamuxTypeData && binary.BigEndian.Uint32(p[8:]) > 0 {
		copy(j.hdr[:], p)
		j.held = true
		return len(p), nil
	}
	return j.Conn.Write(p)
}
