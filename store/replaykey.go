package store

import (
	"crypto/sha256"
	"encoding/binary"
)

// Namespaces of ReplayKey: an assertion's jti and a client assertion's jti
// that happen to be equal never collide.
const (
	// ReplayAssertion is the namespace of jwt-bearer grant assertions,
	// keyed by (issuer, jti).
	ReplayAssertion byte = 'a'
	// ReplayClientAssertion is the namespace of client assertions
	// (RFC 7523 §2.2), keyed by jti alone, as fosite passes them.
	ReplayClientAssertion byte = 'c'
)

// ReplayKey is the SHA-256 of an unambiguous encoding of (ns, issuer, jti):
// the issuer's length comes first, so "a"+"bc" and "ab"+"c" differ. Backends
// key their replay caches by it (or a prefix of it), which bounds the size
// of an entry whatever the sender put in its jti, and keeps jtis out of
// the store.
func ReplayKey(ns byte, issuer, jti string) [sha256.Size]byte {
	// The buffer stays on the stack unless the input is unusually long.
	buf := make([]byte, 0, 256)
	buf = append(buf, ns)
	buf = binary.AppendUvarint(buf, uint64(len(issuer)))
	buf = append(buf, issuer...)
	buf = append(buf, jti...)
	return sha256.Sum256(buf)
}
