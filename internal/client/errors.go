package client

import (
	"errors"

	"github.com/delegate-io/delegate/internal/wire"
)

var (
	// ErrClosed is returned for a file or client used after Close.
	ErrClosed = wire.Errorf(wire.EBADF, "delegate: file or client is closed")
	// errOpenOnly marks a hint that can only be set at open.
	errOpenOnly = wire.Errorf(wire.ENOSYS, "hint can only be set when the file is opened")
)

// asCode wraps err as a *wire.Error with code c unless it already has a code.
func asCode(c wire.Code, err error) error {
	var we *wire.Error
	if err == nil || errors.As(err, &we) {
		return err
	}
	return &wire.Error{Code: c, Msg: err.Error(), Err: err}
}
