package server

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha512"
	"encoding/base64"
	"errors"
	"hash"
	"sync"

	"github.com/ory/fosite"
	"github.com/ory/fosite/compose"
	"github.com/ory/fosite/handler/oauth2"
)

// tokenStrategy is fosite's HMAC-SHA512/256 strategy for opaque tokens
// with the generation of access and refresh tokens replaced.
//
// fosite's generator takes one mutex for every token issued, by every
// goroutine, and keys a new HMAC each time (two more hash blocks for the
// key pads, and five allocations). This one takes no lock and keeps keyed
// HMACs in a pool. The tokens have the same form and the same key, so that
// fosite's own strategy, which validates them, cannot tell them apart:
// "ory_at_" (or "ory_rt_"), the base64url of token_entropy random bytes
// (at least 32), ".", the base64url of their HMAC-SHA512/256 under the
// first 32 bytes of the global secret. The signature stored is the part
// after the dot, as fosite's.
type tokenStrategy struct {
	*oauth2.HMACSHAStrategy
	entropy int
	// macs holds *tokenScratch.
	macs sync.Pool
}

// tokenScratch is a keyed HMAC and the buffers a token is made in, reused
// so that a token costs one allocation: its string.
type tokenScratch struct {
	mac hash.Hash
	raw [64 + sha512.Size256]byte
	out [256]byte
}

var b64 = base64.RawURLEncoding

func newTokenStrategy(config *fosite.Config) (*tokenStrategy, error) {
	ctx := context.Background()
	secret, err := config.GetGlobalSecret(ctx)
	if err != nil {
		return nil, err
	}
	if len(secret) < 32 {
		return nil, errors.New("the token secret must be at least 32 bytes")
	}
	if config.GetHMACHasher(ctx) != nil {
		return nil, errors.New("the token strategy supports HMAC-SHA512/256 only")
	}
	key := make([]byte, 32)
	copy(key, secret)
	s := &tokenStrategy{
		HMACSHAStrategy: compose.NewOAuth2HMACStrategy(config),
		entropy:         max(config.GetTokenEntropy(ctx), 32),
	}
	s.macs.New = func() any { return &tokenScratch{mac: hmac.New(sha512.New512_256, key)} }
	return s, nil
}

// GenerateAccessToken returns a new access token and its signature.
func (s *tokenStrategy) GenerateAccessToken(context.Context, fosite.Requester) (string, string, error) {
	return s.generate("ory_at_")
}

// GenerateRefreshToken returns a new refresh token and its signature.
func (s *tokenStrategy) GenerateRefreshToken(context.Context, fosite.Requester) (string, string, error) {
	return s.generate("ory_rt_")
}

func (s *tokenStrategy) generate(prefix string) (token, signature string, err error) {
	// The random bytes and their HMAC, then the token is written once:
	// prefix, base64url(random), ".", base64url(mac).
	sc := s.macs.Get().(*tokenScratch)
	defer s.macs.Put(sc)
	var random []byte
	if s.entropy <= 64 {
		random = sc.raw[:s.entropy:s.entropy]
	} else {
		random = make([]byte, s.entropy)
	}
	if _, err := rand.Read(random); err != nil {
		return "", "", err
	}
	sc.mac.Reset()
	_, _ = sc.mac.Write(random)
	sum := sc.mac.Sum(sc.raw[64:64:len(sc.raw)])

	var out []byte
	if size := len(prefix) + b64.EncodedLen(len(random)) + 1 + b64.EncodedLen(len(sum)); size <= len(sc.out) {
		out = sc.out[:size]
	} else {
		out = make([]byte, size)
	}
	n := copy(out, prefix)
	b64.Encode(out[n:], random)
	n += b64.EncodedLen(len(random))
	out[n] = '.'
	b64.Encode(out[n+1:], sum)
	token = string(out)
	return token, token[n+1:], nil
}
