module github.com/delegate-io/delegate

go 1.26.0

require (
	github.com/google/btree v1.1.3
	github.com/hashicorp/go-msgpack/v2 v2.1.5
	github.com/hashicorp/yamux v0.1.2
	github.com/pierrec/lz4/v4 v4.1.33
	golang.org/x/sys v0.50.0
)
