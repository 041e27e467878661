package client

import (
	"testing"

	"github.com/delegate-io/delegate/internal/shm"
)

// TestMappingRefs: the region stays mapped until the last reference goes,
// and no reference is taken after that.
func TestMappingRefs(t *testing.T) {
	r, err := shm.Create("test", 1<<16)
	if err != nil {
		t.Fatal(err)
	}
	m := newMapping(r) // the session's
	if !m.acquire() || !m.acquire() {
		t.Fatal("acquire failed on a live mapping")
	}
	m.word(1).Store(7)
	m.release() // the session closes
	m.release() // one file closes
	if r.Bytes() == nil || m.word(1).Load() != 7 {
		t.Fatal("unmapped while a file still holds it")
	}
	m.release() // the last file closes
	if r.Bytes() != nil {
		t.Fatal("still mapped after the last release")
	}
	if m.acquire() {
		t.Fatal("acquire succeeded on an unmapped region")
	}
	defer func() {
		if recover() == nil {
			t.Fatal("a release too many did not panic")
		}
	}()
	m.release()
}
