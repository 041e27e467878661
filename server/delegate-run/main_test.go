package main

import (
	"slices"
	"testing"
)

// splitArgs keeps the launcher's options and passes the rest to the
// servers, with their values: as --name=value or as the next argument,
// except after a server option that takes none.
func TestSplitArgs(t *testing.T) {
	for _, tc := range []struct {
		args      []string
		own, rest []string
	}{
		{[]string{"--servers", "2", "--buffer", "64M"}, []string{"--servers", "2"}, []string{"--buffer", "64M"}},
		{[]string{"--quiet", "--chunk=64K", "--servers=3"}, []string{"--quiet", "--servers=3"}, []string{"--chunk=64K"}},
		{[]string{"--coll-direct", "--quiet"}, []string{"--quiet"}, []string{"--coll-direct"}},
		{[]string{"--servers", "2", "--coll-direct", "--servers-per-host", "1"}, []string{"--servers", "2", "--servers-per-host", "1"}, []string{"--coll-direct"}},
		{[]string{"--flush-full=false", "--insecure", "--local"}, []string{"--local"}, []string{"--flush-full=false", "--insecure"}},
		{[]string{"--stop-on-eof", "--tls", "--direct", "4k"}, []string{"--tls"}, []string{"--stop-on-eof", "--direct", "4k"}},
		{[]string{"--print-config", "--dir", "/tmp/x"}, []string{"--dir", "/tmp/x"}, []string{"--print-config"}},
	} {
		own, rest := splitArgs(tc.args)
		if !slices.Equal(own, tc.own) || !slices.Equal(rest, tc.rest) {
			t.Errorf("splitArgs(%q) = %q, %q; want %q, %q", tc.args, own, rest, tc.own, tc.rest)
		}
	}
}
