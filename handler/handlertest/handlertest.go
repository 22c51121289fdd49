// Package handlertest holds test fixtures for the jwt-bearer grant: signing
// keys and assertions. It is for tests only: its functions panic on error.
package handlertest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"time"

	jose "github.com/go-jose/go-jose/v3"
)

// Key is a signing key and its public JWK.
type Key struct {
	Private crypto.Signer
	Alg     string
	// Public is the public JWK, with KeyID set to its RFC 7638 thumbprint.
	Public jose.JSONWebKey
}

// NewRSAKey returns a fresh RSA-2048 key for RS256.
func NewRSAKey() *Key {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	must(err)
	return newKey(k, "RS256")
}

// NewECKey returns a fresh P-256 key for ES256.
func NewECKey() *Key {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(err)
	return newKey(k, "ES256")
}

// NewEd25519Key returns a fresh Ed25519 key for EdDSA.
func NewEd25519Key() *Key {
	_, k, err := ed25519.GenerateKey(rand.Reader)
	must(err)
	return newKey(k, "EdDSA")
}

func newKey(k crypto.Signer, alg string) *Key {
	pub := jose.JSONWebKey{Key: k.Public(), Use: "sig"}
	tp, err := pub.Thumbprint(crypto.SHA256)
	must(err)
	pub.KeyID = base64.RawURLEncoding.EncodeToString(tp)
	return &Key{Private: k, Alg: alg, Public: pub}
}

// Claims returns valid claims for an assertion from iss about sub for aud,
// issued at now, valid for five minutes, with a random jti.
func Claims(iss, sub, aud string, now time.Time) map[string]interface{} {
	return map[string]interface{}{
		"iss": iss,
		"sub": sub,
		"aud": aud,
		"iat": now.Unix(),
		"exp": now.Add(5 * time.Minute).Unix(),
		"jti": RandomID(),
	}
}

// RandomID returns 16 random bytes in hex.
func RandomID() string {
	b := make([]byte, 16)
	_, err := rand.Read(b)
	must(err)
	return hex.EncodeToString(b)
}

// Sign signs claims as a compact JWS with the key's algorithm and its kid.
func (k *Key) Sign(claims map[string]interface{}) string {
	return k.SignWith(k.Alg, map[string]interface{}{"kid": k.Public.KeyID, "typ": "JWT"}, claims)
}

// SignNoKID signs claims without a "kid" header, as the seed's PHP
// generateJWT does.
func (k *Key) SignNoKID(claims map[string]interface{}) string {
	return k.SignWith(k.Alg, map[string]interface{}{"typ": "JWT"}, claims)
}

// SignWith signs claims with alg and the given header parameters.
func (k *Key) SignWith(alg string, header map[string]interface{}, claims map[string]interface{}) string {
	return SignWithKey(jose.SignatureAlgorithm(alg), k.Private, header, claims)
}

// SignWithKey signs claims with any go-jose signing key (for example a
// []byte for HS256).
func SignWithKey(alg jose.SignatureAlgorithm, key interface{}, header map[string]interface{}, claims map[string]interface{}) string {
	opts := &jose.SignerOptions{}
	for name, v := range header {
		opts.WithHeader(jose.HeaderKey(name), v)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, opts)
	must(err)
	payload, err := json.Marshal(claims)
	must(err)
	obj, err := signer.Sign(payload)
	must(err)
	s, err := obj.CompactSerialize()
	must(err)
	return s
}

func must(err error) {
	if err != nil {
		panic(err)
	}
}

// SignRaw signs payload as it is, for claims sets that are not JSON objects.
func SignRaw(k *Key, payload []byte) string {
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.SignatureAlgorithm(k.Alg), Key: k.Private}, nil)
	must(err)
	obj, err := signer.Sign(payload)
	must(err)
	s, err := obj.CompactSerialize()
	must(err)
	return s
}
