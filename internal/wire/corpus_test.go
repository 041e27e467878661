package wire

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestCorpusVersion (found in review): the committed seeds of FuzzReader
// and FuzzParseHeader carried protocol version 1 in their first byte long
// after version 2, so every one stopped at the version check and none
// reached the decoder path it was written for (desc over limit, lz4
// lengths, lying 64 MiB lengths). A version bump rewrites them too.
func TestCorpusVersion(t *testing.T) {
	for _, dir := range []string{"FuzzReader", "FuzzParseHeader"} {
		files, _ := filepath.Glob(filepath.Join("testdata", "fuzz", dir, "*"))
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			line := strings.TrimSpace(strings.Split(string(b), "\n")[1])
			s, err := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(line, "[]byte("), ")"))
			if err != nil {
				t.Fatal(f, err)
			}
			_, err = ParseHeader([]byte(s))
			if errors.Is(err, ErrVersion) {
				t.Errorf("%s: stops at the version check: %v", f, err)
			}
		}
	}
}
