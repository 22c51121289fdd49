package redis_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v3"
	"github.com/ory/fosite"
	"github.com/redis/go-redis/v9/logging"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/jwtbearer/jwtbearer/store"
	"github.com/jwtbearer/jwtbearer/store/redis"
)

// TestMain fails the package if any goroutine outlives the tests: every
// Store is closed by its test's cleanup, and Close must stop what it
// started.
//
// go-redis logs dial failures to stderr through a global logger; the
// outage tests cause many, so the test binary silences it.
func TestMain(m *testing.M) {
	logging.Disable()
	goleak.VerifyTestMain(m)
}

// newPrefix returns a key prefix of its own, so that tests sharing a
// server (or the one REDIS_ADDR names) do not see each other's data.
func newPrefix() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return "test:" + hex.EncodeToString(b[:]) + ":"
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// openStore opens a store that the test's cleanup closes.
func openStore(t *testing.T, cfg redis.Config) *redis.Store {
	t.Helper()
	s, err := redis.Open(t.Context(), cfg, testLogger(t))
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, s.Close()) })
	return s
}

// ecTrust returns a valid relationship for issuer and subject (any subject
// when empty) with a fresh P-256 key whose kid is id+"-key".
func ecTrust(t *testing.T, id, issuer, subject string) store.Trust {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	return store.Trust{
		ID:         id,
		Issuer:     issuer,
		Subject:    subject,
		AnySubject: subject == "",
		Scopes:     []string{"read"},
		Keys:       []jose.JSONWebKey{{Key: &k.PublicKey, KeyID: id + "-key", Algorithm: "ES256", Use: "sig"}},
	}
}

// newRequest builds a requester as fosite stores it.
func newRequest(id, clientID string, accessExp, refreshExp time.Time) *fosite.Request {
	sess := &fosite.DefaultSession{Subject: "alice", ExpiresAt: map[fosite.TokenType]time.Time{}}
	if !accessExp.IsZero() {
		sess.ExpiresAt[fosite.AccessToken] = accessExp
	}
	if !refreshExp.IsZero() {
		sess.ExpiresAt[fosite.RefreshToken] = refreshExp
	}
	r := fosite.NewRequest()
	r.SetID(id)
	r.Client = &fosite.DefaultClient{ID: clientID}
	r.GrantedScope = fosite.Arguments{"read"}
	r.Session = sess
	return r
}

// waitFor polls cond every few milliseconds until it holds or limit
// passes, and returns how long it took (limit when it never held).
func waitFor(limit time.Duration, cond func() bool) time.Duration {
	start := time.Now()
	for {
		if cond() {
			return time.Since(start)
		}
		if time.Since(start) >= limit {
			return limit
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// kidsOf lists the key IDs TrustedKeys returns.
func kidsOf(t *testing.T, s store.KeyResolver, issuer, subject string) []string {
	t.Helper()
	keys, err := s.TrustedKeys(t.Context(), issuer, subject, "")
	require.NoError(t, err)
	var kids []string
	for _, k := range keys {
		kids = append(kids, k.Key.KeyID)
	}
	return kids
}
