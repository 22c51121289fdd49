package integration_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/jwtbearer/jwtbearer/handler/handlertest"
)

// fakeIssuer is an OpenID Provider on loopback: discovery document and
// JWKS, with a key set and a failure mode that tests switch at will.
type fakeIssuer struct {
	srv *httptest.Server

	mu   sync.Mutex
	keys []jose.JSONWebKey
	mode string // "ok", "down", "slow", "huge", "redirect"

	discoveryHits, jwksHits atomic.Int32
}

func newFakeIssuer(t *testing.T, keys ...*handlertest.Key) *fakeIssuer {
	t.Helper()
	f := &fakeIssuer{mode: "ok"}
	f.setKeys(keys...)
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeIssuer) setKeys(keys ...*handlertest.Key) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.keys = nil
	for _, k := range keys {
		f.keys = append(f.keys, k.Public)
	}
}

func (f *fakeIssuer) setMode(m string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.mode = m
}

func (f *fakeIssuer) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	mode, keys := f.mode, f.keys
	f.mu.Unlock()
	switch r.URL.Path {
	case "/.well-known/openid-configuration":
		f.discoveryHits.Add(1)
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"issuer": f.srv.URL, "jwks_uri": f.srv.URL + "/jwks"})
	case "/jwks":
		f.jwksHits.Add(1)
		switch mode {
		case "down":
			http.Error(w, "maintenance", http.StatusServiceUnavailable)
		case "slow":
			select {
			case <-r.Context().Done():
			case <-time.After(10 * time.Second):
			}
		case "huge":
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"keys":[],"padding":"`))
			chunk := []byte(strings.Repeat("x", 64<<10))
			for range 160 { // 10 MiB
				if _, err := w.Write(chunk); err != nil {
					return
				}
			}
			_, _ = w.Write([]byte(`"}`))
		case "redirect":
			http.Redirect(w, r, "/jwks-elsewhere", http.StatusFound)
		default:
			w.Header().Set("Content-Type", "application/jwk-set+json")
			w.Header().Set("Cache-Control", "max-age=1")
			_ = json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: keys})
		}
	default:
		http.NotFound(w, r)
	}
}

// remoteConfig trusts the fake issuer through OpenID discovery for the
// main branch of every acme repository, GitHub Actions style, with tight
// cache bounds so that the test sees freshness, staleness and failure
// within seconds.
const remoteConfig = `
listen: {{.Listen}}
issuer: {{.Issuer}}
admin:
  listen: 127.0.0.1:0
  token: "{{.V.adminToken}}"
remote_keys:
  timeout: 300ms
  max_bytes: 65536
  default_ttl: 1s
  min_ttl: 1s
  max_ttl: 1s
  refetch_interval: 1s
  max_stale: 2s
trust:
  - id: ci
    issuer: {{.V.iss}}
    oidc_discovery: true
    subject_patterns: ["repo:acme/*:ref:refs/heads/main"]
    required_claims: {repository_owner: acme}
    scopes: [deploy]
  - id: direct
    issuer: {{.V.iss}}/direct
    jwks_uri: {{.V.iss}}/jwks
    subject: deployer
    scopes: [deploy]
`

const remoteAdminToken = "remote-test-admin-token-0123456789abcdef"

func remoteFixture(iss *fakeIssuer) fixture {
	return fixture{Vars: map[string]any{"iss": iss.srv.URL, "adminToken": remoteAdminToken}}
}

func ciClaims(ts *testServer, iss, sub string) map[string]any {
	return with(claims(iss, sub, ts.TokenURL), "repository_owner", "acme")
}

func TestRemoteKeysRotation(t *testing.T) {
	keyA, keyB := handlertest.NewECKey(), handlertest.NewRSAKey()
	iss := newFakeIssuer(t, keyA)
	ts := newServer(t, remoteConfig, remoteFixture(iss))
	const sub = "repo:acme/app:ref:refs/heads/main"

	requireToken(t, ts.token(t, grant(keyA.Sign(ciClaims(ts, iss.srv.URL, sub)))))
	requireToken(t, ts.token(t, grant(keyA.SignNoKID(ciClaims(ts, iss.srv.URL, sub)))))
	assert.Equal(t, int32(1), iss.discoveryHits.Load())
	assert.Equal(t, int32(1), iss.jwksHits.Load(), "the key set is fetched once and cached")

	// The subject rule and the required claim still apply to remote keys.
	requireError(t, ts.token(t, grant(keyA.Sign(ciClaims(ts, iss.srv.URL, "repo:evil/app:ref:refs/heads/main")))), http.StatusBadRequest, "invalid_grant")
	requireError(t, ts.token(t, grant(keyA.Sign(with(ciClaims(ts, iss.srv.URL, sub), "repository_owner", "evil")))), http.StatusBadRequest, "invalid_grant")

	// Rotation: the issuer publishes B instead of A. B's unknown kid makes
	// the server refetch at once; A is gone with the refreshed set.
	iss.setKeys(keyB)
	time.Sleep(1050 * time.Millisecond) // past refetch_interval since the last fetch
	requireToken(t, ts.token(t, grant(keyB.Sign(ciClaims(ts, iss.srv.URL, sub)))))
	e := requireError(t, ts.token(t, grant(keyA.Sign(ciClaims(ts, iss.srv.URL, sub)))), http.StatusBadRequest, "invalid_grant")
	assert.Contains(t, e.Description, "not signed by a key this server trusts")

	// Removal without a new kid to trigger a refetch: A keeps working from
	// the cache until the set's freshness ends (max-age=1), then the
	// refreshed set no longer has it.
	iss.setKeys(keyA)
	time.Sleep(1100 * time.Millisecond)
	requireToken(t, ts.token(t, grant(keyA.Sign(ciClaims(ts, iss.srv.URL, sub)))))
	iss.setKeys(keyB)
	requireToken(t, ts.token(t, grant(keyA.Sign(ciClaims(ts, iss.srv.URL, sub))))) // still within the cached set's freshness
	deadline := time.Now().Add(3 * time.Second)
	for {
		r := ts.token(t, grant(keyA.Sign(ciClaims(ts, iss.srv.URL, sub))))
		if r.Status == http.StatusBadRequest {
			requireError(t, r, http.StatusBadRequest, "invalid_grant")
			break
		}
		require.Equal(t, http.StatusOK, r.Status, "body: %s", r.Body)
		require.True(t, time.Now().Before(deadline), "a removed key still accepted 3 s after the cache bound of 1 s")
		time.Sleep(100 * time.Millisecond)
	}

	// A relationship with a jwks_uri (no discovery) reads the same set.
	requireToken(t, ts.token(t, grant(keyB.Sign(claims(iss.srv.URL+"/direct", "deployer", ts.TokenURL)))))
}

func TestRemoteKeysIssuerDown(t *testing.T) {
	key := handlertest.NewECKey()
	iss := newFakeIssuer(t, key)
	ts := newServer(t, remoteConfig, remoteFixture(iss))
	const sub = "repo:acme/app:ref:refs/heads/main"
	assertion := func() string { return key.Sign(ciClaims(ts, iss.srv.URL, sub)) }

	requireToken(t, ts.token(t, grant(assertion())))
	fetchedAt := time.Now()
	iss.setMode("down")

	// The cached set keeps working through the outage, until its
	// freshness (≤ 1 s) plus max_stale (2 s) has passed.
	sawStale := false
	for time.Since(fetchedAt) < 2700*time.Millisecond {
		requireToken(t, ts.token(t, grant(assertion())))
		if h := health(t, ts); h.state(iss.srv.URL+"/jwks") == "stale" {
			sawStale = true
			assert.Equal(t, "ok", h.Status, "an issuer's outage does not make the instance unready")
			assert.True(t, h.Degraded)
		}
		time.Sleep(100 * time.Millisecond)
	}
	assert.True(t, sawStale, "/healthz reports the key set as stale while the last good copy is in use")
	hits := iss.jwksHits.Load()

	time.Sleep(time.Until(fetchedAt.Add(3100 * time.Millisecond)))
	e := requireError(t, ts.token(t, grant(assertion())), http.StatusBadRequest, "invalid_grant")
	assert.Contains(t, e.Description, "cannot be fetched right now")
	h := health(t, ts)
	assert.Equal(t, "failing", h.state(iss.srv.URL+"/jwks"))
	assert.True(t, h.Degraded)
	assert.Equal(t, http.StatusOK, h.code)
	assert.Less(t, iss.jwksHits.Load()-hits, int32(10), "a failing issuer is retried at most once per refetch_interval")

	iss.setMode("ok")
	time.Sleep(1050 * time.Millisecond) // past refetch_interval since the last attempt
	requireToken(t, ts.token(t, grant(assertion())))
	assert.Equal(t, "ok", health(t, ts).state(iss.srv.URL+"/jwks"))
}

func TestRemoteKeysBounded(t *testing.T) {
	for _, mode := range []string{"slow", "huge", "redirect", "down"} {
		t.Run(mode, func(t *testing.T) {
			key := handlertest.NewECKey()
			iss := newFakeIssuer(t, key)
			iss.setMode(mode)
			ts := newServer(t, remoteConfig, remoteFixture(iss))
			start := time.Now()
			e := requireError(t, ts.token(t, grant(key.Sign(ciClaims(ts, iss.srv.URL, "repo:acme/app:ref:refs/heads/main")))), http.StatusBadRequest, "invalid_grant")
			assert.Contains(t, e.Description, "cannot be fetched right now")
			assert.Less(t, time.Since(start), 2*time.Second, "the fetch is bounded by remote_keys.timeout and max_bytes")
			assert.Equal(t, "failing", health(t, ts).state(iss.srv.URL+"/jwks"))
		})
	}
}

// TestRemoteKeysNeverFromToken: keys named by the assertion's own "jku"
// or "jwk" headers are never fetched nor used.
func TestRemoteKeysNeverFromToken(t *testing.T) {
	trusted, attacker := handlertest.NewECKey(), handlertest.NewECKey()
	iss := newFakeIssuer(t, trusted)
	evil := newFakeIssuer(t, attacker)
	ts := newServer(t, remoteConfig, remoteFixture(iss))
	c := ciClaims(ts, iss.srv.URL, "repo:acme/app:ref:refs/heads/main")
	for _, header := range []map[string]interface{}{
		{"kid": attacker.Public.KeyID, "jku": evil.srv.URL + "/jwks"},
		{"kid": attacker.Public.KeyID, "jwk": attacker.Public},
		{"kid": attacker.Public.KeyID, "x5u": evil.srv.URL + "/jwks"},
	} {
		requireError(t, ts.token(t, grant(attacker.SignWith("ES256", header, c))), http.StatusBadRequest, "invalid_grant")
	}
	assert.Zero(t, evil.jwksHits.Load()+evil.discoveryHits.Load(), "a URL from the token is never fetched")
}

type healthReport struct {
	code       int
	Status     string `json:"status"`
	Degraded   bool   `json:"degraded"`
	RemoteKeys []struct {
		URL       string `json:"url"`
		Kind      string `json:"kind"`
		State     string `json:"state"`
		LastError string `json:"last_error"`
	} `json:"remote_keys"`
}

func (h healthReport) state(url string) string {
	for _, k := range h.RemoteKeys {
		if k.URL == url && k.Kind == "jwks" {
			return k.State
		}
	}
	return ""
}

// health reads the public /healthz, which must not name any issuer, and
// the admin API's detailed report of the remote key sets.
func health(t *testing.T, ts *testServer) healthReport {
	t.Helper()
	r := ts.do(t, http.MethodGet, "/healthz", "")
	var h healthReport
	require.NoError(t, json.Unmarshal(r.Body, &h), "body: %s", r.Body)
	assert.NotContains(t, string(r.Body), "127.0.0.1", "the public health check names no issuer")
	h.code = r.Status

	req := httptest.NewRequestWithContext(t.Context(), http.MethodGet, "/admin/remote-keys", nil)
	req.Header.Set("Authorization", "Bearer "+remoteAdminToken)
	w := httptest.NewRecorder()
	ts.Admin.ServeHTTP(w, req)
	require.Equal(t, http.StatusOK, w.Code, "body: %s", w.Body)
	require.NoError(t, json.Unmarshal(w.Body.Bytes(), &h), "body: %s", w.Body)
	return h
}
