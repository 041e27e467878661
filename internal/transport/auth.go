package transport

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"hash"
	"net"

	"github.com/delegate-io/delegate/internal/wire"
)

// The handshake's challenge-response (wire/spec.md, "Authentication"): the
// job secret never crosses the wire, only HMAC-SHA256 proofs over both
// sides' nonces and the hello as sent. The labels keep a client's proof
// from ever serving as a server's and the other way round.
const (
	clientLabel = "delegate-auth-v1 client\x00"
	serverLabel = "delegate-auth-v1 server\x00"
)

// newNonce returns wire.AuthNonceSize random bytes.
func newNonce() ([]byte, error) {
	b := make([]byte, wire.AuthNonceSize)
	if _, err := rand.Read(b); err != nil {
		return nil, wire.Errorf(wire.EIO, "random nonce: %v", err)
	}
	return b, nil
}

// mac starts an HMAC-SHA256 over secret with label, the two nonces and the
// SHA-256 of the hello frame (header and description, as sent).
func mac(secret []byte, label string, first, second, hello []byte) hash.Hash {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(label))
	m.Write(first)
	m.Write(second)
	hh := sha256.Sum256(hello)
	m.Write(hh[:])
	return m
}

// ClientProof is the client's answer: HMAC-SHA256(secret, client label ||
// server nonce || client nonce || SHA-256(hello frame)).
func ClientProof(secret, serverNonce, clientNonce, hello []byte) []byte {
	return mac(secret, clientLabel, serverNonce, clientNonce, hello).Sum(nil)
}

// ServerProof is the server's proof in its hello reply: HMAC-SHA256(secret,
// server label || client nonce || server nonce || SHA-256(hello frame) ||
// the reply's identity fields), so a client knows it reached a server that
// holds the secret and that nobody changed what the reply tells it (where
// its Unix socket is, which server it is).
func ServerProof(secret, clientNonce, serverNonce, hello []byte, rep *wire.Reply) []byte {
	m := mac(secret, serverLabel, clientNonce, serverNonce, hello)
	var n [8]byte
	for _, s := range []string{rep.Name, rep.Local, rep.Host, rep.ID} {
		binary.LittleEndian.PutUint64(n[:], uint64(len(s)))
		m.Write(n[:])
		m.Write([]byte(s))
	}
	binary.LittleEndian.PutUint64(n[:], rep.Peers)
	m.Write(n[:])
	binary.LittleEndian.PutUint64(n[:], uint64(rep.Index))
	m.Write(n[:])
	return m.Sum(nil)
}

// proofOK compares a received proof with the expected one in constant time
// (lengths are public: a proof has wire.AuthProofSize bytes).
func proofOK(got, want []byte) bool {
	return len(got) == wire.AuthProofSize && hmac.Equal(got, want)
}

// ServerAuth is a server's side of one authenticated handshake: what it
// needs to check the client's answer and to sign its reply.
type ServerAuth struct {
	secret, clientNonce, serverNonce, hello []byte
}

// Challenge sends the server's nonce for hello h (received as the bytes
// frame) and checks the client's answer, all before deadline. A client
// without a secret, or with another, fails with EACCES "wrong or missing
// token"; the caller answers with the refusal and closes.
func Challenge(c net.Conn, secret []byte, h *wire.Hello, frame []byte) (*ServerAuth, error) {
	sn, err := newNonce()
	if err != nil {
		return nil, err
	}
	enc := wire.NewEncoder(wire.Compression{})
	if err := enc.Append(wire.TAuth|wire.ReplyBit, 0, &wire.Auth{Nonce: sn}); err != nil {
		return nil, err
	}
	if _, err := c.Write(enc.Bytes()); err != nil {
		return nil, err
	}
	var ans wire.Auth
	hd, _, err := readOne(c, nil, &ans)
	if err != nil {
		return nil, err
	}
	if hd.Type != wire.TAuth {
		return nil, wire.Errorf(wire.EPROTO, "expected auth, got %v", hd.Type)
	}
	a := &ServerAuth{secret: secret, clientNonce: h.Nonce, serverNonce: sn, hello: frame}
	if len(h.Nonce) != wire.AuthNonceSize || !proofOK(ans.Proof, ClientProof(secret, sn, h.Nonce, frame)) {
		return nil, wire.Errorf(wire.EACCES, "wrong or missing token")
	}
	return a, nil
}

// Sign sets rep.Proof; a nil ServerAuth (no secret) leaves it empty.
func (a *ServerAuth) Sign(rep *wire.Reply) {
	if a == nil || rep.Code != wire.OK {
		return
	}
	rep.Proof = ServerProof(a.secret, a.clientNonce, a.serverNonce, a.hello, rep)
}
