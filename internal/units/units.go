// Package units parses the byte counts of configuration: environment
// variables, hints and command-line flags of client and server.
//
// units imports nothing else of this module.
package units

import (
	"fmt"
	"strconv"
	"strings"
)

// ParseSize parses a byte count with an optional K, M, G or T suffix
// (powers of 1024; "KiB" and "k" are accepted too).
func ParseSize(s string) (int64, error) {
	t := strings.TrimSpace(strings.ToUpper(s))
	t = strings.TrimSuffix(strings.TrimSuffix(t, "B"), "I")
	mult := int64(1)
	if n := len(t); n > 0 {
		switch t[n-1] {
		case 'K':
			mult = 1 << 10
		case 'M':
			mult = 1 << 20
		case 'G':
			mult = 1 << 30
		case 'T':
			mult = 1 << 40
		}
		if mult > 1 {
			t = t[:n-1]
		}
	}
	v, err := strconv.ParseInt(strings.TrimSpace(t), 10, 64)
	if err != nil || v < 0 || v > (1<<62)/mult {
		return 0, fmt.Errorf("bad size %q (want a byte count such as 4096, 64K, 1M)", s)
	}
	return v * mult, nil
}
