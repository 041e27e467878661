package wire

import (
	"bytes"
	"errors"
	"fmt"
)

// The markers around the generated block of include/delegate.h.
const (
	headerBegin = "/* BEGIN GENERATED CODES */\n"
	headerEnd   = "/* END GENERATED CODES */\n"
)

// HeaderCodes returns the C #define lines for every code.
func HeaderCodes() []byte {
	var b bytes.Buffer
	for i, c := range codeTable {
		fmt.Fprintf(&b, "#define DELEGATE_%s %d /* %s */\n", c.Name, i, c.Text)
	}
	return b.Bytes()
}

// RewriteHeaderCodes replaces the generated block of a C header with
// HeaderCodes.
func RewriteHeaderCodes(h []byte) ([]byte, error) {
	i := bytes.Index(h, []byte(headerBegin))
	j := bytes.Index(h, []byte(headerEnd))
	if i < 0 || j < i {
		return nil, errors.New("wire: header has no generated-codes block")
	}
	var out bytes.Buffer
	out.Write(h[:i+len(headerBegin)])
	out.Write(HeaderCodes())
	out.Write(h[j:])
	return out.Bytes(), nil
}
