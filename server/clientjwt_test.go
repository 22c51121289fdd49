package server

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v3"
	"github.com/ory/fosite"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/jwtbearer/jwtbearer/handler"
	"github.com/jwtbearer/jwtbearer/handler/handlertest"
	"github.com/jwtbearer/jwtbearer/store"
	"github.com/jwtbearer/jwtbearer/store/jwks"
	"github.com/jwtbearer/jwtbearer/store/memory"
)

var (
	ckRSA = handlertest.NewRSAKey()
	ckEC  = handlertest.NewECKey()
)

// ckLoopbackOnly refuses every request to a host that is not loopback, so
// that these tests never reach the network.
type ckLoopbackOnly struct{ base http.RoundTripper }

func (l ckLoopbackOnly) RoundTrip(r *http.Request) (*http.Response, error) {
	if !store.IsLoopback(r.URL.Hostname()) {
		return nil, errors.New("test transport: non-loopback request refused")
	}
	return l.base.RoundTrip(r)
}

// ckCache is a jwks.Cache with a loopback-only client and short bounds.
func ckCache(t *testing.T) *jwks.Cache {
	t.Helper()
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.DisableKeepAlives = true
	t.Cleanup(tr.CloseIdleConnections)
	return jwks.New(jwks.Config{
		Timeout:    5 * time.Second,
		HTTPClient: &http.Client{Transport: ckLoopbackOnly{tr}},
	})
}

// ckJWKSServer serves a key set of the public keys given, or status when
// it is not zero, and counts requests.
type ckJWKSServer struct {
	*httptest.Server
	hits   atomic.Int64
	status atomic.Int64
}

func newCKJWKSServer(t *testing.T, keys ...jose.JSONWebKey) *ckJWKSServer {
	t.Helper()
	body, err := json.Marshal(jose.JSONWebKeySet{Keys: keys})
	require.NoError(t, err)
	s := &ckJWKSServer{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		s.hits.Add(1)
		if st := s.status.Load(); st != 0 {
			w.WriteHeader(int(st))
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	}))
	t.Cleanup(s.Close)
	return s
}

func kidsOf(keys []jose.JSONWebKey) []string {
	out := []string{}
	for _, k := range keys {
		out = append(out, k.KeyID)
	}
	return out
}

func TestClientKeysInline(t *testing.T) {
	ctx := t.Context()
	ck := newClientKeys(nil)
	noKID := ckEC.Public
	noKID.KeyID = ""
	require.NoError(t, ck.add("c1", []jose.JSONWebKey{ckRSA.Public, noKID}, ""))

	keys, err := ck.ClientKeys(ctx, "c1", "")
	require.NoError(t, err)
	// A key without a kid gets its thumbprint, which handlertest uses
	// as the kid too.
	assert.Equal(t, []string{ckRSA.Public.KeyID, ckEC.Public.KeyID}, kidsOf(keys))

	keys, err = ck.ClientKeys(ctx, "c1", ckEC.Public.KeyID)
	require.NoError(t, err)
	assert.Equal(t, []string{ckEC.Public.KeyID}, kidsOf(keys))

	keys, err = ck.ClientKeys(ctx, "c1", "unknown-kid")
	require.NoError(t, err)
	assert.Empty(t, keys)

	_, err = ck.ClientKeys(ctx, "c2", "")
	assert.ErrorIs(t, err, store.ErrNotFound)
	_, err = ck.ClientKeys(ctx, "", "")
	assert.ErrorIs(t, err, store.ErrNotFound)

	// The caller's slice is not kept: changing it changes nothing.
	mine := []jose.JSONWebKey{ckRSA.Public}
	require.NoError(t, ck.add("c3", mine, ""))
	mine[0] = ckEC.Public
	keys, err = ck.ClientKeys(ctx, "c3", "")
	require.NoError(t, err)
	assert.Equal(t, []string{ckRSA.Public.KeyID}, kidsOf(keys))

	err = ck.add("c1", []jose.JSONWebKey{ckEC.Public}, "")
	assert.ErrorIs(t, err, store.ErrAlreadyExists)
}

func TestClientKeysRefused(t *testing.T) {
	rsaPriv, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	ecPriv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	enc := ckRSA.Public
	enc.Use = "enc"
	wrongAlg := ckRSA.Public
	wrongAlg.Algorithm = "ES256"
	sameKID := ckEC.Public
	sameKID.KeyID = ckRSA.Public.KeyID

	tests := []struct {
		name    string
		id      string
		keys    []jose.JSONWebKey
		uri     string
		wantErr error
	}{
		{"RSA private key", "c", []jose.JSONWebKey{{Key: rsaPriv, KeyID: "k"}}, "", store.ErrInvalid},
		{"EC private key", "c", []jose.JSONWebKey{{Key: ecPriv, KeyID: "k"}}, "", store.ErrInvalid},
		{"private signer", "c", []jose.JSONWebKey{{Key: ckRSA.Private, KeyID: "k"}}, "", store.ErrInvalid},
		{"symmetric key", "c", []jose.JSONWebKey{{Key: []byte("0123456789abcdef0123456789abcdef"), KeyID: "k", Algorithm: "HS256"}}, "", store.ErrInvalid},
		{"short symmetric key", "c", []jose.JSONWebKey{{Key: []byte("short"), KeyID: "k"}}, "", store.ErrInvalid},
		{"encryption key", "c", []jose.JSONWebKey{enc}, "", store.ErrInvalid},
		{"alg not fitting the key", "c", []jose.JSONWebKey{wrongAlg}, "", store.ErrInvalid},
		{"no key material", "c", []jose.JSONWebKey{{KeyID: "k"}}, "", store.ErrInvalid},
		{"one kid for two keys", "c", []jose.JSONWebKey{ckRSA.Public, sameKID}, "", store.ErrInvalid},
		{"keys and jwks_uri", "c", []jose.JSONWebKey{ckRSA.Public}, "https://client.example/jwks", store.ErrInvalid},
		{"neither", "c", nil, "", store.ErrInvalid},
		{"empty key list", "c", []jose.JSONWebKey{}, "", store.ErrInvalid},
		{"empty client_id", "", []jose.JSONWebKey{ckRSA.Public}, "", store.ErrInvalid},
		{"plain http jwks_uri", "c", nil, "http://client.example/jwks", store.ErrInvalid},
		{"relative jwks_uri", "c", nil, "/jwks", store.ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ck := newClientKeys(ckCache(t))
			err := ck.add(tt.id, tt.keys, tt.uri)
			require.ErrorIs(t, err, tt.wantErr)
			_, err = ck.ClientKeys(t.Context(), tt.id, "")
			assert.ErrorIs(t, err, store.ErrNotFound, "a refused client must not be registered")
		})
	}

	// The same key twice under one kid is harmless.
	ck := newClientKeys(nil)
	assert.NoError(t, ck.add("c", []jose.JSONWebKey{ckRSA.Public, ckRSA.Public}, ""))
	// A jwks_uri needs a fetcher.
	assert.ErrorIs(t, newClientKeys(nil).add("c", nil, "https://client.example/jwks"), store.ErrInvalid)
}

func TestClientKeysJWKSURI(t *testing.T) {
	ctx := t.Context()
	srv := newCKJWKSServer(t, ckRSA.Public, ckEC.Public)
	ck := newClientKeys(ckCache(t))
	require.NoError(t, ck.add("remote", nil, srv.URL+"/jwks"))

	keys, err := ck.ClientKeys(ctx, "remote", ckEC.Public.KeyID)
	require.NoError(t, err)
	assert.Equal(t, []string{ckEC.Public.KeyID}, kidsOf(keys))
	keys, err = ck.ClientKeys(ctx, "remote", "")
	require.NoError(t, err)
	assert.ElementsMatch(t, []string{ckRSA.Public.KeyID, ckEC.Public.KeyID}, kidsOf(keys))
	assert.Equal(t, int64(1), srv.hits.Load(), "the key set is cached")

	// A key set that cannot be fetched is unavailable, not "not found".
	down := newCKJWKSServer(t)
	down.status.Store(http.StatusInternalServerError)
	require.NoError(t, ck.add("down", nil, down.URL+"/jwks"))
	_, err = ck.ClientKeys(ctx, "down", "")
	require.Error(t, err)
	assert.ErrorIs(t, err, store.ErrUnavailable)
	assert.ErrorIs(t, err, jwks.ErrUnavailable)
	assert.NotErrorIs(t, err, store.ErrNotFound)
	assert.Equal(t, int64(1), down.hits.Load())
}

// clientKeys serves the verifier end to end: inline keys and a jwks_uri,
// with a replay guard shared with the grant.
func TestClientKeysWithVerifier(t *testing.T) {
	ctx := t.Context()
	srv := newCKJWKSServer(t, ckEC.Public)
	ck := newClientKeys(ckCache(t))
	require.NoError(t, ck.add("inline", []jose.JSONWebKey{ckRSA.Public}, ""))
	require.NoError(t, ck.add("remote", nil, srv.URL+"/jwks"))
	down := newCKJWKSServer(t)
	down.status.Store(http.StatusServiceUnavailable)
	require.NoError(t, ck.add("down", nil, down.URL+"/jwks"))

	const issuer = "https://as.example"
	now := time.Now()
	v := &handler.ClientAssertionVerifier{
		Audiences: []string{issuer, issuer + "/token"},
		Keys:      ck,
		Replay:    memory.New(),
		Now:       func() time.Time { return now },
	}
	form := func(raw string) url.Values {
		return url.Values{"client_assertion_type": {handler.ClientAssertionType}, "client_assertion": {raw}}
	}

	id, err := v.Authenticate(ctx, form(ckRSA.Sign(handlertest.Claims("inline", "inline", issuer, now))))
	require.NoError(t, err)
	assert.Equal(t, "inline", id)
	id, err = v.Authenticate(ctx, form(ckEC.Sign(handlertest.Claims("remote", "remote", issuer, now))))
	require.NoError(t, err)
	assert.Equal(t, "remote", id)

	// Each client's own keys only.
	_, err = v.Authenticate(ctx, form(ckEC.Sign(handlertest.Claims("inline", "inline", issuer, now))))
	assert.ErrorIs(t, err, fosite.ErrInvalidClient)
	_, err = v.Authenticate(ctx, form(ckRSA.Sign(handlertest.Claims("remote", "remote", issuer, now))))
	assert.ErrorIs(t, err, fosite.ErrInvalidClient)
	_, err = v.Authenticate(ctx, form(ckRSA.Sign(handlertest.Claims("nobody", "nobody", issuer, now))))
	assert.ErrorIs(t, err, fosite.ErrInvalidClient)

	// A client whose key set is down gets 503, not invalid_client.
	_, err = v.Authenticate(ctx, form(ckEC.Sign(handlertest.Claims("down", "down", issuer, now))))
	assert.ErrorIs(t, err, store.ErrUnavailable)
	assert.ErrorIs(t, err, fosite.ErrTemporarilyUnavailable)
}

// Lookups are safe while other goroutines look up and register clients.
func TestClientKeysConcurrent(t *testing.T) {
	ctx := t.Context()
	ck := newClientKeys(nil)
	require.NoError(t, ck.add("c", []jose.JSONWebKey{ckRSA.Public}, ""))
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for range 100 {
				keys, err := ck.ClientKeys(ctx, "c", ckRSA.Public.KeyID)
				if err != nil || len(keys) != 1 {
					t.Errorf("ClientKeys = %v, %v", keys, err)
					return
				}
			}
		})
		wg.Go(func() {
			if err := ck.add(string(rune('d'+i)), []jose.JSONWebKey{ckEC.Public}, ""); err != nil {
				t.Errorf("add: %v", err)
			}
		})
	}
	wg.Wait()
}
