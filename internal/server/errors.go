package server

import "errors"

// ErrServerClosed is returned by Serve after Shutdown or Close.
var ErrServerClosed = errors.New("delegate: server closed")

// ErrNoToken is returned by Serve for a TCP listener when the server has no
// token and Config.Insecure is not set.
var ErrNoToken = errors.New("delegate: refusing to serve TCP without a token (set a token, or Insecure to let anyone in)")
