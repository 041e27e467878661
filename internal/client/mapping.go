package client

import (
	"sync/atomic"

	"github.com/delegate-io/delegate/internal/shm"
)

// mapping owns a session's shared-memory region: the server's control page
// and the ring behind it. It is the only thing that unmaps the region.
//
// The rule: the region is unmapped when the last reference is dropped, and
// only then.
//
//   - The session holds one reference from dial until session.close, after
//     its loops have ended.
//   - Every File opened on the session holds one from Open (session.attach)
//     to the end of its Close (session.detach, after the servers answered
//     and every request of the file completed); so does a File whose
//     session died, until it is closed.
//   - Memory of the region is touched only on behalf of a holder: ring slots
//     are filled and copied out by operations of an open File, the control
//     page words are read by directOK (an open File's read), and the word
//     pointers ExportDirect hands to C stay valid until that File is closed.
//     libdelegate's delegate_close drops the C stage right after dlgClose on
//     the same thread, and a handle is not used concurrently with its close
//     (stage.c frees the stage then too).
//
// So a session that dies and is replaced by a reconnect (Client.sessions)
// never unmaps what a File opened on it, or the direct-read path in C of
// such a File, still reads: the old region stays mapped until its last File
// is closed. acquire fails once the count has reached zero, so no reference
// is ever taken on an unmapped region. The region pointer never changes, so
// it is read without a lock. A nil *mapping (a TCP session) has nothing to
// own and its methods do nothing.
type mapping struct {
	r    *shm.Region
	refs atomic.Int64
}

// newMapping owns r with one reference, the session's.
func newMapping(r *shm.Region) *mapping {
	m := &mapping{r: r}
	m.refs.Store(1)
	return m
}

// acquire takes a reference, unless the region is already unmapped.
func (m *mapping) acquire() bool {
	if m == nil {
		return true
	}
	for {
		n := m.refs.Load()
		if n <= 0 {
			return false
		}
		if m.refs.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// release drops a reference; the last one unmaps the region.
func (m *mapping) release() {
	if m == nil {
		return
	}
	switch n := m.refs.Add(-1); {
	case n == 0:
		m.r.Close()
	case n < 0:
		panic("client: shared-memory region released more often than acquired")
	}
}

// word returns control page word i, for atomic access by this process and
// the server. The caller holds a reference.
func (m *mapping) word(i uint32) *atomic.Uint64 {
	return m.r.Word(8 * uint64(i))
}

// slice returns n bytes of the region at off. The caller holds a reference.
func (m *mapping) slice(off, n uint64) []byte {
	b, _ := m.r.Slice(off, n)
	return b
}
