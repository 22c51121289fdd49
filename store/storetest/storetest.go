// Package storetest is the conformance suite every store backend must pass,
// so that the handler and the server can rely on the contracts of package
// store (and of fosite's token storage) whatever the backend.
//
// A backend's test file is a few lines:
//
//	func TestStore(t *testing.T) {
//		newStore := func(t *testing.T) storetest.Store { return memory.New() }
//		storetest.RunTests(t, newStore)
//		storetest.RunConcurrencyTests(t, newStore)
//	}
//
// newStore must return an empty store; a backend that needs cleaning up
// registers it with t.Cleanup. Tests that wait for something to expire use
// real, short durations (half a second), so a network store can pass them
// with server-side expiry.
//
// This is not a _test package so that backends in other packages can import
// it; nothing outside tests should.
package storetest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v3"
	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/oauth2"
	"github.com/stretchr/testify/require"

	"github.com/jwtbearer/jwtbearer/store"
)

// Store is everything a backend provides: trust relationships and their
// keys, the replay guard, OAuth 2.0 clients, and fosite's access- and
// refresh-token storage with revocation.
type Store interface {
	store.TrustStore
	store.ReplayGuard
	store.ClientStore
	oauth2.TokenRevocationStorage
}

type subTest struct {
	name string
	run  func(t *testing.T, s Store)
}

func runAll(t *testing.T, newStore func(t *testing.T) Store, tests []subTest) {
	t.Helper()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.run(t, newStore(t))
		})
	}
}

// RunTests runs the conformance suite, each test on a fresh store from
// newStore.
func RunTests(t *testing.T, newStore func(t *testing.T) Store) {
	runAll(t, newStore, []subTest{
		{"TrustCRUD", testTrustCRUD},
		{"TrustListOrder", testTrustListOrder},
		{"TrustInvalid", testTrustInvalid},
		{"TrustNotAliased", testTrustNotAliased},
		{"TrustKeyIDIsThumbprint", testTrustKeyIDIsThumbprint},
		{"TrustUpdate", testTrustUpdate},
		{"TrustUpdateMovesIssuerAndSubject", testTrustUpdateMoves},
		{"TrustUpdateNotFound", testTrustUpdateNotFound},
		{"TrustUpdateInvalid", testTrustUpdateInvalid},
		{"TrustUpdateNotAliased", testTrustUpdateNotAliased},
		{"TrustedKeysByKid", testTrustedKeysByKid},
		{"TrustedKeysWithoutKid", testTrustedKeysWithoutKid},
		{"TrustedKeysAnySubject", testTrustedKeysAnySubject},
		{"TrustedKeysOtherSubject", testTrustedKeysOtherSubject},
		{"TrustedKeysOtherIssuer", testTrustedKeysOtherIssuer},
		{"TrustedKeysGoneOnDelete", testTrustedKeysGoneOnDelete},
		{"TrustedKeysExpiredTrust", testTrustedKeysExpiredTrust},
		{"TrustedKeysSubjectList", testTrustedKeysSubjectList},
		{"TrustedKeysSubjectPatterns", testTrustedKeysSubjectPatterns},
		{"TrustedKeysRemote", testTrustedKeysRemote},
		{"TrustRoundTripsEveryField", testTrustRoundTripsEveryField},
		{"TrustSync", testTrustSync},
		{"ReplayFirstUseWins", testReplayFirstUseWins},
		{"ReplaySeparateIssuers", testReplaySeparateIssuers},
		{"ReplayInspector", testReplayInspector},
		{"ReplayExpiresThenClaimableAgain", testReplayExpiresThenClaimableAgain},
		{"ClientAssertionJTI", testClientAssertionJTI},
		{"ClientAssertionNamespaceSeparate", testClientAssertionNamespaceSeparate},
		{"ClientCRUD", testClientCRUD},
		{"AccessTokenSessionCRUD", testAccessTokenSessionCRUD},
		{"RefreshTokenSessionCRUD", testRefreshTokenSessionCRUD},
		{"RevokeByRequestID", testRevokeByRequestID},
		{"TokenSessionExpires", testTokenSessionExpires},
		{"TokenSessionWithoutExpiryKept", testTokenSessionWithoutExpiryKept},
		{"RotateRefreshToken", testRotateRefreshToken},
		{"RotateRefreshTokenRefused", testRotateRefreshTokenRefused},
	})
}

// RunConcurrencyTests runs the tests that need real contention between
// goroutines. Run them with -race.
func RunConcurrencyTests(t *testing.T, newStore func(t *testing.T) Store) {
	runAll(t, newStore, []subTest{
		{"ClaimJTISameKey", testConcurrentClaimSameKey},
		{"ClaimJTIDistinctKeys", testConcurrentClaimDistinctKeys},
		{"SetClientAssertionJWTSameJTI", testConcurrentClientAssertionSameJTI},
		{"TrustCreateAndLookup", testConcurrentTrustCreateAndLookup},
		{"TrustUpdateAndLookup", testConcurrentTrustUpdateAndLookup},
		{"TrustSyncAndLookup", testConcurrentTrustSyncAndLookup},
		{"TokenCreateAndRevoke", testConcurrentTokenCreateAndRevoke},
		{"RotateRefreshTokenOnce", testConcurrentRotateRefreshToken},
	})
}

// Keys are generated once per test binary: RSA generation is slow, and the
// suite only needs distinct, valid keys.
var (
	rsaKey = sync.OnceValue(func() *rsa.PrivateKey {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		return k
	})
	ecKeys = sync.OnceValue(func() []*ecdsa.PrivateKey {
		keys := make([]*ecdsa.PrivateKey, 8)
		for i := range keys {
			k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			if err != nil {
				panic(err)
			}
			keys[i] = k
		}
		return keys
	})
)

// ecJWK returns the i-th test EC public key (0 <= i < 8) with kid.
func ecJWK(i int, kid string) jose.JSONWebKey {
	return jose.JSONWebKey{Key: &ecKeys()[i].PublicKey, KeyID: kid, Algorithm: string(jose.ES256), Use: "sig"}
}

// trust returns a valid relationship for issuer and subject (any subject
// when subject is empty) with keys.
func trust(id, issuer, subject string, keys ...jose.JSONWebKey) store.Trust {
	return store.Trust{
		ID:         id,
		Issuer:     issuer,
		Subject:    subject,
		AnySubject: subject == "",
		Scopes:     []string{"read", "write"},
		Keys:       keys,
	}
}

func mustCreateTrust(t *testing.T, s Store, tr store.Trust) *store.Trust {
	t.Helper()
	created, err := s.CreateTrust(t.Context(), tr)
	require.NoError(t, err)
	require.NotNil(t, created)
	return created
}

// thumbprint is the RFC 7638 thumbprint of k, to compare key material.
func thumbprint(t *testing.T, k *jose.JSONWebKey) string {
	t.Helper()
	tp, err := store.Thumbprint(k)
	require.NoError(t, err)
	return tp
}

// newRequest builds a requester as fosite stores it: an ID, a client,
// granted scopes and a session carrying the token expiries (zero: none).
func newRequest(id, clientID string, accessExp, refreshExp time.Time) *fosite.AccessRequest {
	sess := &fosite.DefaultSession{Subject: "alice", ExpiresAt: map[fosite.TokenType]time.Time{}}
	if !accessExp.IsZero() {
		sess.ExpiresAt[fosite.AccessToken] = accessExp
	}
	if !refreshExp.IsZero() {
		sess.ExpiresAt[fosite.RefreshToken] = refreshExp
	}
	r := fosite.NewAccessRequest(sess)
	r.SetID(id)
	r.Client = &fosite.DefaultClient{ID: clientID}
	r.GrantedScope = fosite.Arguments{"read"}
	r.GrantTypes = fosite.Arguments{"urn:ietf:params:oauth:grant-type:jwt-bearer"}
	return r
}

// hour is a lifetime that no test outlives.
const hour = time.Hour

// shortTTL and waitPastTTL are the real durations of the expiry tests:
// short enough for a quick suite, long enough for a network store's
// millisecond-precision expiry and for a slow CI machine. What a test
// checks before the expiry (a handful of round trips) must fit in
// shortTTL even when the race detector and parallel tests slow a two-core
// machine down, which 100ms did not always.
const (
	shortTTL    = 500 * time.Millisecond
	waitPastTTL = time.Second
)
