package server

import "github.com/delegate-io/delegate/internal/wire"

// ParseSize parses a byte count with an optional K, M, G or T suffix.
func ParseSize(s string) (int64, error) { return wire.ParseSize(s) }
