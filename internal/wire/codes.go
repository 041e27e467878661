package wire

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"syscall"
)

//go:generate go run gen_header.go ../../include/delegate.h

// Code is a portable error class carried in replies and returned, as an int,
// by the C API. Its values are part of the protocol and of include/delegate.h:
// append, never renumber.
type Code uint8

// The codes. Their names and messages live once, in codeTable; the C header's
// DELEGATE_E* block is generated from it.
const (
	OK Code = iota
	EINVAL
	EBADF
	ENOMEM
	EACCES
	ENOENT
	EEXIST
	EISDIR
	ENOTDIR
	ENAMETOOLONG
	EROFS
	ENOSPC
	EDQUOT
	EIO
	ENOSYS
	EPATH
	EUNREACHABLE
	ECONNLOST
	EPROTO
	ETIMEDOUT
	EFORK
	ECONFIG
	ENOTOWNER
	EBUSY
	EFBIG
	ESHUTDOWN
	ELOOP
	ERANGE
	EAGAIN
	EHINT
	EHINTKEY
	numCodes
)

// CodeInfo names a code for the C header and for messages.
type CodeInfo struct {
	Name string // C name without the DELEGATE_ prefix
	Text string // short lowercase description
}

var codeTable = [numCodes]CodeInfo{
	OK:           {"OK", "success"},
	EINVAL:       {"EINVAL", "invalid argument"},
	EBADF:        {"EBADF", "bad or closed handle"},
	ENOMEM:       {"ENOMEM", "out of memory"},
	EACCES:       {"EACCES", "permission denied"},
	ENOENT:       {"ENOENT", "no such file or directory"},
	EEXIST:       {"EEXIST", "file exists"},
	EISDIR:       {"EISDIR", "is a directory"},
	ENOTDIR:      {"ENOTDIR", "not a directory"},
	ENAMETOOLONG: {"ENAMETOOLONG", "file name too long"},
	EROFS:        {"EROFS", "read-only file or file system"},
	ENOSPC:       {"ENOSPC", "no space left on device"},
	EDQUOT:       {"EDQUOT", "disk quota exceeded"},
	EIO:          {"EIO", "input/output error"},
	ENOSYS:       {"ENOSYS", "operation not supported"},
	EPATH:        {"EPATH", "path outside the server's root"},
	EUNREACHABLE: {"EUNREACHABLE", "cannot reach a delegate server"},
	ECONNLOST:    {"ECONNLOST", "connection to a delegate server lost"},
	EPROTO:       {"EPROTO", "protocol error"},
	ETIMEDOUT:    {"ETIMEDOUT", "timed out"},
	EFORK:        {"EFORK", "library used in a forked child"},
	ECONFIG:      {"ECONFIG", "invalid configuration"},
	ENOTOWNER:    {"ENOTOWNER", "server does not own the region (server lists differ)"},
	EBUSY:        {"EBUSY", "resource busy"},
	EFBIG:        {"EFBIG", "offset or size out of range"},
	ESHUTDOWN:    {"ESHUTDOWN", "server is shutting down"},
	ELOOP:        {"ELOOP", "too many levels of symbolic links"},
	ERANGE:       {"ERANGE", "result does not fit the buffer"},
	EAGAIN:       {"EAGAIN", "not complete yet"},
	EHINT:        {"EHINT", "invalid hint value"},
	EHINTKEY:     {"EHINTKEY", "unknown hint"},
}

// Codes returns the table of every code, in numeric order.
func Codes() []CodeInfo { return codeTable[:] }

// String returns the code's description.
func (c Code) String() string {
	if c < numCodes {
		return codeTable[c].Text
	}
	return fmt.Sprintf("unknown error %d", uint8(c))
}

// Error makes a Code an errors.Is target: errors.Is(err, wire.ENOENT)
// holds when an *Error in err's chain carries ENOENT. Codes are attached
// once, where an error enters the protocol (Errorf, a reply's Err, CodeOf at
// a boundary); code in between wraps with %w and tests with errors.Is.
func (c Code) Error() string { return c.String() }

// Valid reports whether c is a code this version knows.
func (c Code) Valid() bool { return c < numCodes }

// Error is an error with a portable code. Msg says what failed; it names the
// operation, the file and the server where they are known.
type Error struct {
	Code Code
	Msg  string
	Err  error // the cause, if any; not sent on the wire
}

func (e *Error) Error() string {
	if e.Msg == "" {
		return e.Code.String()
	}
	return e.Msg
}

func (e *Error) Unwrap() error { return e.Err }

// Is reports whether target is e's Code, so that errors.Is(err, wire.EPROTO)
// finds the code however deeply err wraps e.
func (e *Error) Is(target error) bool {
	c, ok := target.(Code)
	return ok && c == e.Code
}

// Errorf returns an *Error with code c and a formatted message. A %w verb
// keeps the cause for errors.Is and errors.As.
func Errorf(c Code, format string, args ...any) *Error {
	err := fmt.Errorf(format, args...)
	return &Error{Code: c, Msg: err.Error(), Err: errors.Unwrap(err)}
}

// CodeOf classifies err: the code of the first *Error in its chain, else the
// class of a system error, else EIO. A nil error is OK. It is called where a
// code leaves a layer: the server's reply (ReplyTo), libdelegate's return
// value (export.go, fail), and for errors from outside the protocol (the
// backend, the network); elsewhere errors.Is(err, code) asks about a code.
func CodeOf(err error) Code {
	if err == nil {
		return OK
	}
	var we *Error
	if errors.As(err, &we) {
		return we.Code
	}
	var c Code
	if errors.As(err, &c) {
		return c
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return codeOfErrno(errno)
	}
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return ENOENT
	case errors.Is(err, fs.ErrExist):
		return EEXIST
	case errors.Is(err, fs.ErrPermission):
		return EACCES
	case errors.Is(err, os.ErrDeadlineExceeded):
		return ETIMEDOUT
	}
	return EIO
}

func codeOfErrno(e syscall.Errno) Code {
	switch e {
	case syscall.EINVAL:
		return EINVAL
	case syscall.EBADF:
		return EBADF
	case syscall.ENOMEM:
		return ENOMEM
	case syscall.EACCES, syscall.EPERM:
		return EACCES
	case syscall.ENOENT:
		return ENOENT
	case syscall.EEXIST:
		return EEXIST
	case syscall.EISDIR:
		return EISDIR
	case syscall.ENOTDIR:
		return ENOTDIR
	case syscall.ENAMETOOLONG:
		return ENAMETOOLONG
	case syscall.EROFS:
		return EROFS
	case syscall.ENOSPC:
		return ENOSPC
	case syscall.EDQUOT:
		return EDQUOT
	case syscall.ENOSYS, syscall.EOPNOTSUPP:
		return ENOSYS
	case syscall.EXDEV:
		return EPATH
	case syscall.ETIMEDOUT:
		return ETIMEDOUT
	case syscall.EBUSY, syscall.ETXTBSY:
		return EBUSY
	case syscall.EFBIG, syscall.EOVERFLOW:
		return EFBIG
	case syscall.ELOOP:
		return ELOOP
	case syscall.ECONNREFUSED, syscall.EHOSTUNREACH, syscall.ENETUNREACH:
		return EUNREACHABLE
	case syscall.EPIPE, syscall.ECONNRESET:
		return ECONNLOST
	}
	return EIO
}
