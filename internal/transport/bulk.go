package transport

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
)

// BulkKey is the key that binds bulk connections to their session: derived
// from the job secret, never the secret itself, so that nothing on a bulk
// connection reveals it. When the hello becomes a challenge-response
// (issue 11), the session key it agrees on replaces the secret here, and
// BulkTag stays as it is.
func BulkKey(secret string) []byte {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte("delegate bulk key v1"))
	return m.Sum(nil)
}

// BulkTag is what a client sends on a new bulk connection to bind it to its
// session: an HMAC-SHA256, under the session's bulk key, of the session's
// bulk id, the nonce the server chose for it in the hello reply, and the
// connection's index. A server that recomputes it knows the connection
// comes from the client that completed that hello (it knows the key), for
// that session and that index; a tag seen on the wire binds nothing else.
func BulkTag(key []byte, id uint64, nonce []byte, index uint32) [sha256.Size]byte {
	m := hmac.New(sha256.New, key)
	var b [12]byte
	binary.LittleEndian.PutUint64(b[:], id)
	binary.LittleEndian.PutUint32(b[8:], index)
	m.Write([]byte("delegate bulk bind v1"))
	m.Write(b[:])
	m.Write(nonce)
	var tag [sha256.Size]byte
	m.Sum(tag[:0])
	return tag
}

// BulkTagOK compares a received tag with the expected one in constant time.
func BulkTagOK(got []byte, want [sha256.Size]byte) bool {
	return hmac.Equal(got, want[:])
}
