//go:build ignore

// gen_header rewrites the generated block of include/delegate.h from the code
// table in codes.go. Run it with `go generate ./internal/wire`.
package main

import (
	"fmt"
	"os"

	"github.com/delegate-io/delegate/internal/wire"
)

func main() {
	path := os.Args[1]
	b, err := os.ReadFile(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	out, err := wire.RewriteHeaderCodes(b)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if err := os.WriteFile(path, out, 0o644); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
