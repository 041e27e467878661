package client

import (
	"github.com/delegate-io/delegate/internal/wire"
)

// Errors. A server's error arrives as the *wire.Error of its reply
// (wire.Reply.Err); the client adds what it knows (operation, path,
// server) with fmt.Errorf's %w, never a new code, so errors.Is(err,
// wire.ENOENT) and wire.CodeOf see the server's code, and libdelegate
// turns it into the C return value once (export.go, fail). Codes are made
// here only for what the client decides itself.
var (
	// ErrClosed is returned for a file or client used after Close.
	ErrClosed = wire.Errorf(wire.EBADF, "delegate: file or client is closed")
	// errOpenOnly marks a hint that can only be set at open.
	errOpenOnly = wire.Errorf(wire.ENOSYS, "hint can only be set when the file is opened")
)
