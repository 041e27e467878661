package server

import "github.com/delegate-io/delegate/internal/wire"

// PanicOn makes requests of type t panic in the stream's worker (where ==
// "worker": the handler) or its reader (where == "reader": decoding), until
// the returned function restores the tables. Tests only; not concurrent
// with running servers of other tests.
func PanicOn(t wire.Type, where string) (restore func()) {
	h, d := handlers[t], descs[t]
	switch where {
	case "worker":
		handlers[t] = func(*stream, *request) (wire.Reply, []byte) { panic("test: handler panics") }
	case "reader":
		descs[t] = func() any { panic("test: reader panics") }
	default:
		panic("PanicOn: where is worker or reader")
	}
	return func() { handlers[t], descs[t] = h, d }
}
