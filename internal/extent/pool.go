package extent

import "sync"

// Pool recycles chunk-sized buffers between the indexes of a server, so
// that a busy server does not zero and fault in fresh memory for every
// chunk it buffers. It holds at most max buffers; the rest go to the
// garbage collector. A nil *Pool allocates and recycles nothing.
//
// Measured (47,008-byte writes from 2 ranks, 48 MB): the server spent 35%
// of its time in memclr and page faults of fresh chunk memory, and grew
// each chunk's buffer by doubling, five copies per chunk.
type Pool struct {
	mu    sync.Mutex
	chunk int64
	max   int
	free  [][]byte

	poison bool // tests: fill returned buffers with garbage
}

// NewPool returns a pool of at most max buffers of chunk bytes.
func NewPool(chunk int64, max int) *Pool {
	return &Pool{chunk: chunk, max: max}
}

// take returns a buffer of capacity chunk (length 0), or nil when the
// pool is nil or empty. Its bytes are arbitrary: an Index reads only the
// bytes it wrote (holes are never read).
func (p *Pool) take() []byte {
	if p == nil {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	k := len(p.free)
	if k == 0 {
		return nil
	}
	b := p.free[k-1]
	p.free[k-1] = nil
	p.free = p.free[:k-1]
	return b
}

// put takes back b, which nobody may use afterwards, if it is chunk-sized.
func (p *Pool) put(b []byte) {
	if p == nil || int64(cap(b)) != p.chunk {
		return
	}
	if p.poison {
		b = b[:cap(b)]
		for i := range b {
			b[i] = 0xA5
		}
	}
	p.mu.Lock()
	if len(p.free) < p.max {
		p.free = append(p.free, b[:0])
	}
	p.mu.Unlock()
}

// Held returns the bytes of the buffers the pool holds.
func (p *Pool) Held() int64 {
	if p == nil {
		return 0
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return int64(len(p.free)) * p.chunk
}
