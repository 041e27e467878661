package main

import (
	"sync"

	"github.com/delegate-io/delegate/internal/client"
)

// handleBase numbers handles from a large value so that a stray small
// integer is never a valid handle (libtailscale does the same).
const handleBase = 42<<16 + 1

// noHandle is DELEGATE_NOHANDLE: where calls without a handle keep their
// last error message.
const noHandle = 0

type entry struct {
	f   *client.File    // a file handle
	r   *client.Request // or a request handle
	msg string          // last error message
}

// table holds every live handle. Entries are looked up under the lock and
// used outside it: File and Request are safe for concurrent use.
var table = struct {
	sync.Mutex
	next    int
	m       map[int]*entry
	noMsg   string
	noValid bool
}{next: handleBase, m: map[int]*entry{}}

func addEntry(e *entry) int {
	table.Lock()
	defer table.Unlock()
	h := table.next
	table.next++
	table.m[h] = e
	return h
}

func lookup(h int) *entry {
	table.Lock()
	defer table.Unlock()
	return table.m[h]
}

func remove(h int) {
	table.Lock()
	defer table.Unlock()
	delete(table.m, h)
}

// setMsg records the message of a failure on handle h.
func setMsg(h int, msg string) {
	table.Lock()
	defer table.Unlock()
	if h == noHandle {
		table.noMsg = msg
		return
	}
	if e := table.m[h]; e != nil {
		e.msg = msg
	}
}

func getMsg(h int) (string, bool) {
	table.Lock()
	defer table.Unlock()
	if h == noHandle {
		return table.noMsg, true
	}
	if e := table.m[h]; e != nil {
		return e.msg, true
	}
	return "", false
}

// files returns every open file handle.
func files() []int {
	table.Lock()
	defer table.Unlock()
	var out []int
	for h, e := range table.m {
		if e.f != nil {
			out = append(out, h)
		}
	}
	return out
}
