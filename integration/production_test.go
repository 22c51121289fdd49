package integration_test

import (
	"bufio"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/jwtbearer/jwtbearer/handler/handlertest"
	"github.com/jwtbearer/jwtbearer/server"
)

// TestMetadata: RFC 8414 §3 metadata describes this server.
func TestMetadata(t *testing.T) {
	t.Parallel()
	ts, _ := newTokensServer(t)
	r := ts.do(t, http.MethodGet, "/.well-known/oauth-authorization-server", "")
	require.Equal(t, http.StatusOK, r.Status, "%s", r.Body)
	requireJSONContentType(t, r)
	var m struct {
		Issuer                string   `json:"issuer"`
		TokenEndpoint         string   `json:"token_endpoint"`
		IntrospectionEndpoint string   `json:"introspection_endpoint"`
		RevocationEndpoint    string   `json:"revocation_endpoint"`
		JWKSURI               *string  `json:"jwks_uri"`
		ResponseTypes         []string `json:"response_types_supported"`
		GrantTypes            []string `json:"grant_types_supported"`
		AuthMethods           []string `json:"token_endpoint_auth_methods_supported"`
		AuthAlgs              []string `json:"token_endpoint_auth_signing_alg_values_supported"`
		IntrospectAuthMethods []string `json:"introspection_endpoint_auth_methods_supported"`
		AssertionAlgs         []string `json:"jwt_bearer_signing_alg_values_supported"`
		RevocationAuthMethods []string `json:"revocation_endpoint_auth_methods_supported"`
		IntrospectionAuthAlgs []string `json:"introspection_endpoint_auth_signing_alg_values_supported"`
		RevocationAuthAlgs    []string `json:"revocation_endpoint_auth_signing_alg_values_supported"`
	}
	require.NoError(t, json.Unmarshal(r.Body, &m))
	assert.Equal(t, ts.Issuer, m.Issuer, "§3.3: issuer must equal the identifier the metadata was fetched for")
	assert.Equal(t, ts.TokenURL, m.TokenEndpoint)
	assert.Equal(t, ts.Issuer+"/introspect", m.IntrospectionEndpoint)
	assert.Equal(t, ts.Issuer+"/revoke", m.RevocationEndpoint)
	assert.Nil(t, m.JWKSURI, "opaque tokens: no jwks_uri")
	assert.NotNil(t, m.ResponseTypes, "response_types_supported is required, here empty")
	assert.Empty(t, m.ResponseTypes)
	assert.ElementsMatch(t, []string{"client_credentials", "refresh_token", jwtBearer}, m.GrantTypes)
	assert.Subset(t, m.AuthMethods, []string{"client_secret_basic", "client_secret_post", "private_key_jwt"})
	assert.Subset(t, m.IntrospectAuthMethods, []string{"client_secret_basic", "private_key_jwt"})
	assert.Subset(t, m.RevocationAuthMethods, []string{"client_secret_basic", "private_key_jwt"})
	for _, algs := range [][]string{m.AuthAlgs, m.AssertionAlgs, m.IntrospectionAuthAlgs, m.RevocationAuthAlgs} {
		assert.Contains(t, algs, "RS256")
		for _, alg := range algs {
			assert.NotEqual(t, "none", alg)
			assert.False(t, strings.HasPrefix(alg, "HS"), alg)
		}
	}

	head := ts.do(t, http.MethodHead, "/.well-known/oauth-authorization-server", "")
	assert.Equal(t, http.StatusOK, head.Status)
	assert.Empty(t, head.Body)
	requireError(t, ts.do(t, http.MethodPost, "/.well-known/oauth-authorization-server", "a=b"), http.StatusMethodNotAllowed, "invalid_request")
}

// lines decodes the JSON log lines.
func (b *syncBuffer) lines(t *testing.T) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(b.String()))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var m map[string]any
		require.NoError(t, json.Unmarshal(sc.Bytes(), &m), "log line %s", sc.Text())
		out = append(out, m)
	}
	return out
}

// newLoggedServer is newServer with a JSON logger at debug level whose
// output the test reads.
func newLoggedServer(t *testing.T, tmpl string, fx fixture) (*testServer, *syncBuffer) {
	t.Helper()
	logs := &syncBuffer{}
	logger := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	return newServer(t, tmpl, fx, server.WithLogger(logger)), logs
}

// TestRequestIDs: every answer carries an X-Request-Id of the server's
// making, the audit event names it, and a sane one sent by the caller (a
// proxy's) is logged beside it.
func TestRequestIDs(t *testing.T) {
	t.Parallel()
	k, files := rsaKeyFile("id_rsa.pub")
	ts, logs := newLoggedServer(t, tokensConfig, fixture{Files: files})

	a := ts.token(t, grant(k.Sign(claims("TestClient", "User1", ts.TokenURL))))
	b := ts.do(t, http.MethodGet, "/healthz", "")
	idA, idB := a.Header.Get("X-Request-Id"), b.Header.Get("X-Request-Id")
	assert.Regexp(t, `^[0-9a-f]{12}-[0-9a-z]+$`, idA)
	assert.NotEqual(t, idA, idB)

	// A proxy's ID is logged beside ours, never taken as ours: a caller
	// cannot make its requests pass for others (ours, say) in the log.
	setID := func(id string) reqOption { return func(r *http.Request) { r.Header.Set("X-Request-Id", id) } }
	proxied := ts.token(t, grant("not-a-jwt"), setID("proxy-4f2a.17:x_y"))
	spoofed := ts.token(t, grant("not-a-jwt"), setID(idA))
	for _, r := range []*response{proxied, spoofed} {
		assert.Regexp(t, `^[0-9a-f]{12}-[0-9a-z]+$`, r.Header.Get("X-Request-Id"))
		assert.NotEqual(t, idA, r.Header.Get("X-Request-Id"))
	}
	var unsafe []*response
	for _, bad := range []string{"has space", "quote\"", strings.Repeat("a", 129), "new\\line"} {
		unsafe = append(unsafe, ts.token(t, grant("not-a-jwt"), setID(bad)))
	}

	byID := map[string]map[string]any{}
	for _, l := range logs.lines(t) {
		if l["event"] == "token" {
			byID[l["request_id"].(string)] = l
		}
	}
	require.Contains(t, byID, idA, "the granted token's audit event has its request ID")
	assert.Nil(t, byID[idA]["upstream_request_id"])
	assert.Equal(t, "proxy-4f2a.17:x_y", byID[proxied.Header.Get("X-Request-Id")]["upstream_request_id"])
	assert.Equal(t, idA, byID[spoofed.Header.Get("X-Request-Id")]["upstream_request_id"])
	for _, r := range unsafe {
		assert.Nil(t, byID[r.Header.Get("X-Request-Id")]["upstream_request_id"], "not a plain token: not logged")
	}
}

// TestAuditEvents: one audit event per token decision, with who asked, the
// key and the relationship, the outcome and the reason; and nothing secret
// in any log line: no assertion (nor any of its parts), token, client
// secret, Authorization header or key.
func TestAuditEvents(t *testing.T) {
	t.Parallel()
	k, files := rsaKeyFile("id_rsa.pub")
	other := handlertest.NewRSAKey()
	ts, logs := newLoggedServer(t, tokensConfig, fixture{Files: files})

	good := k.Sign(claims("TestClient", "User1", ts.TokenURL))
	granted := requireToken(t, ts.token(t, grant(good, "scope", "read")))
	replayed := ts.token(t, grant(good))
	forged := other.SignNoKID(claims("TestClient", "User1", ts.TokenURL))
	untrusted := ts.token(t, grant(forged))
	cc := requireToken(t, ts.token(t, url.Values{"grant_type": {"client_credentials"}, "scope": {"read"}}, basicAuth("svc", "s3cret")))
	wrongSecret := ts.token(t, url.Values{"grant_type": {"client_credentials"}}, basicAuth("svc", "wrong-s3cret-guess"))
	// A client that swaps its ID and secret, and a malformed secret.
	swapped := ts.token(t, url.Values{"grant_type": {"client_credentials"}}, basicAuth("s3cret-sw4pped-for-the-id", "svc"))
	malformed := &http.Request{Header: http.Header{}}
	malformed.SetBasicAuth("svc", "M4LF0RMED%zzTAIL")
	badEscape := ts.token(t, url.Values{"grant_type": {"client_credentials"}}, func(r *http.Request) { r.Header.Set("Authorization", malformed.Header.Get("Authorization")) })
	unsupported := ts.token(t, url.Values{"grant_type": {"password"}, "password": {"hunter2-password"}})
	ts.introspect(t, granted.AccessToken, "svc", "s3cret")
	require.Equal(t, http.StatusOK, ts.post(t, "/revoke", url.Values{"token": {cc.AccessToken}}, basicAuth("svc", "s3cret")).Status)

	var events []map[string]any
	for _, l := range logs.lines(t) {
		if l["event"] == "token" {
			events = append(events, l)
		}
	}
	byID := map[string]map[string]any{}
	for _, e := range events {
		byID[e["request_id"].(string)] = e
	}
	require.Len(t, events, 8, "one per token request: %v", events)
	event := func(r *response) map[string]any {
		e := byID[r.Header.Get("X-Request-Id")]
		require.NotNil(t, e, "no audit event for request %s", r.Header.Get("X-Request-Id"))
		return e
	}

	// The first token request: its response was read by requireToken, so
	// find it through the only granted jwt-bearer event.
	var grantedEvent map[string]any
	for _, e := range events {
		if e["grant_type"] == jwtBearer && e["outcome"] == "granted" {
			grantedEvent = e
		}
	}
	require.NotNil(t, grantedEvent)
	assert.Equal(t, "INFO", grantedEvent["level"])
	assert.Equal(t, "token granted", grantedEvent["msg"])
	assert.Equal(t, "TestClient", grantedEvent["issuer"])
	assert.Equal(t, "User1", grantedEvent["subject"])
	assert.Equal(t, k.Public.KeyID, grantedEvent["kid"])
	assert.NotEmpty(t, grantedEvent["trust_id"])
	assert.Equal(t, "TestClient", grantedEvent["client_id"], "attributed to the issuer without client authentication")
	assert.Equal(t, "read", grantedEvent["scope"])
	assert.Contains(t, grantedEvent, "expires_in")
	assert.Contains(t, grantedEvent, "duration_ms")

	e := event(replayed)
	assert.Equal(t, "refused", e["outcome"])
	assert.Equal(t, "invalid_grant", e["error"])
	assert.Contains(t, e["hint"], "already been used")
	assert.Equal(t, grantedEvent["trust_id"], e["trust_id"])

	e = event(untrusted)
	assert.Equal(t, "invalid_grant", e["error"])
	assert.Equal(t, "TestClient", e["issuer"], "who it claimed to be")
	assert.Nil(t, e["trust_id"], "no relationship verified it")
	assert.Contains(t, e["reason"], "signature does not verify", "the precise reason the caller is not told")

	e = event(wrongSecret)
	assert.Equal(t, "client_credentials", e["grant_type"])
	assert.Equal(t, "invalid_client", e["error"])

	for _, r := range []*response{swapped, badEscape} {
		e = event(r)
		assert.Equal(t, "invalid_client", e["error"])
		assert.NotEmpty(t, e["reason"])
	}

	e = event(unsupported)
	assert.Equal(t, "unsupported_grant_type", e["error"])

	var ccEvent map[string]any
	for _, e := range events {
		if e["grant_type"] == "client_credentials" && e["outcome"] == "granted" {
			ccEvent = e
		}
	}
	require.NotNil(t, ccEvent)
	assert.Equal(t, "svc", ccEvent["client_id"])

	// Introspection and revocation have their events too.
	var introspection, revocation map[string]any
	for _, l := range logs.lines(t) {
		switch l["event"] {
		case "introspection":
			introspection = l
		case "revocation":
			revocation = l
		}
	}
	require.NotNil(t, introspection)
	assert.Equal(t, "active", introspection["outcome"])
	assert.Equal(t, "svc", introspection["client_id"])
	assert.NotEmpty(t, introspection["request_id"])
	require.NotNil(t, revocation)
	assert.Equal(t, "revoked", revocation["outcome"])

	// Nothing secret anywhere in the log.
	all := logs.String()
	parts := strings.Split(good, ".")
	n := base64.RawURLEncoding.EncodeToString(k.Public.Key.(*rsa.PublicKey).N.Bytes())
	for name, secret := range map[string]string{
		"assertion": good, "assertion header": parts[0], "assertion payload": parts[1], "assertion signature": parts[2],
		"forged assertion's signature": strings.Split(forged, ".")[2],
		"access token":                 granted.AccessToken,
		"access token's signature":     strings.Split(granted.AccessToken, ".")[1],
		"client_credentials token":     cc.AccessToken,
		"client secret":                "s3cret",
		"wrong secret":                 "wrong-s3cret-guess",
		"secret sent as the client ID": "s3cret-sw4pped",
		"malformed secret":             "M4LF0RMED",
		"malformed secret's tail":      "%zz",
		"password parameter":           "hunter2-password",
		"Basic credentials":            base64.StdEncoding.EncodeToString([]byte("svc:s3cret")),
		"public key (JWK n)":           n,
		"public key (PEM)":             strings.Split(string(k.PublicKeyPEM()), "\n")[1],
	} {
		assert.NotContains(t, all, secret, "the log holds the %s", name)
	}
}

// rateLimitConfig allows each client and each issuer bursts of 2 and then
// one request every 100 s.
const rateLimitConfig = `
listen: {{.Listen}}
issuer: {{.Issuer}}
rate_limits:
  client: {rate: 0.01, burst: 2}
  issuer: {rate: 0.01, burst: 2}
trust:
  - issuer: TestClient
    subject: User1
    scopes: [read]
    keys: [{file: id_rsa.pub}]
  - issuer: Partner
    any_subject: true
    scopes: [read]
    keys: [{file: partner.pub}]
clients:
  - id: svc
    secret_hash: "{{hash "s3cret"}}"
    grant_types: [client_credentials, "urn:ietf:params:oauth:grant-type:jwt-bearer"]
    scopes: [read]
  - id: other
    secret_hash: "{{hash "0ther-s3cret"}}"
    grant_types: [client_credentials]
    scopes: [read]
  - id: jwt-client
    jwks: [{file: client.pub}]
    grant_types: [client_credentials]
    scopes: [read]
`

// requireRateLimited checks a 429: RFC 6749 JSON body (slow_down) and a
// Retry-After in whole seconds.
func requireRateLimited(t *testing.T, r *response, minRetry int) {
	t.Helper()
	requireError(t, r, http.StatusTooManyRequests, "slow_down")
	retry, err := strconv.Atoi(r.Header.Get("Retry-After"))
	require.NoError(t, err, "Retry-After %q", r.Header.Get("Retry-After"))
	assert.GreaterOrEqual(t, retry, minRetry)
}

// TestRateLimits: per issuer and per client, 429 with Retry-After and an
// RFC 6749 body once the burst is spent; other issuers and clients are not
// affected, and failed authentications spend nothing.
func TestRateLimits(t *testing.T) {
	t.Parallel()
	k, files := rsaKeyFile("id_rsa.pub")
	partner := handlertest.NewRSAKey()
	files["partner.pub"] = partner.PublicKeyPEM()
	clientKey := handlertest.NewECKey()
	files["client.pub"] = clientKey.PublicKeyPEM()
	ts := newServer(t, rateLimitConfig, fixture{Files: files})

	t.Run("issuer", func(t *testing.T) {
		// Forged assertions claiming the issuer spend none of its allowance.
		for range 5 {
			requireError(t, ts.token(t, grant(handlertest.NewRSAKey().SignNoKID(claims("TestClient", "User1", ts.TokenURL)))), http.StatusBadRequest, "invalid_grant")
		}
		for range 2 {
			requireToken(t, ts.token(t, grant(k.Sign(claims("TestClient", "User1", ts.TokenURL)))))
		}
		limited := k.Sign(claims("TestClient", "User1", ts.TokenURL))
		requireRateLimited(t, ts.token(t, grant(limited)), 50)
		// Another issuer still gets tokens.
		requireToken(t, ts.token(t, grant(partner.Sign(claims("Partner", "anyone", ts.TokenURL)))))
	})
	t.Run("client", func(t *testing.T) {
		cc := url.Values{"grant_type": {"client_credentials"}}
		// Wrong secrets spend nothing.
		for range 3 {
			requireError(t, ts.token(t, cc, basicAuth("svc", "wrong")), http.StatusUnauthorized, "invalid_client")
		}
		tok := requireToken(t, ts.token(t, cc, basicAuth("svc", "s3cret")))
		// Introspection counts against the same client.
		require.Equal(t, http.StatusOK, ts.post(t, "/introspect", url.Values{"token": {tok.AccessToken}}, basicAuth("svc", "s3cret")).Status)
		requireRateLimited(t, ts.token(t, cc, basicAuth("svc", "s3cret")), 50)
		requireRateLimited(t, ts.post(t, "/introspect", url.Values{"token": {tok.AccessToken}}, basicAuth("svc", "s3cret")), 50)
		requireRateLimited(t, ts.post(t, "/revoke", url.Values{"token": {tok.AccessToken}}, basicAuth("svc", "s3cret")), 50)
		// The jwt-bearer grant with this client too, whatever the issuer.
		requireRateLimited(t, ts.token(t, grant(partner.Sign(claims("Partner", "x", ts.TokenURL))), basicAuth("svc", "s3cret")), 50)
		// Another client is not affected.
		requireToken(t, ts.token(t, cc, basicAuth("other", "0ther-s3cret")))
	})
	t.Run("client assertions", func(t *testing.T) {
		cc := func(a string) url.Values {
			return withClientAssertion(url.Values{"grant_type": {"client_credentials"}}, a)
		}
		// Forged assertions spend nothing.
		for range 3 {
			requireError(t, ts.token(t, cc(handlertest.NewECKey().Sign(claims("jwt-client", "jwt-client", ts.TokenURL)))), http.StatusUnauthorized, "invalid_client")
		}
		for range 2 {
			requireToken(t, ts.token(t, cc(clientKey.Sign(claims("jwt-client", "jwt-client", ts.TokenURL)))))
		}
		a := clientKey.Sign(claims("jwt-client", "jwt-client", ts.TokenURL))
		requireRateLimited(t, ts.token(t, cc(a)), 50)
		// Refused for the rate, the assertion was not used up: a replay
		// would say so, and it does not.
		e := requireError(t, ts.token(t, cc(a)), http.StatusTooManyRequests, "slow_down")
		assert.NotContains(t, e.Description, "already been used")
	})
}

// TestMetrics: GET /metrics exposes request counts by grant type and
// outcome, latency, replays and rate limits, with no identities in it.
func TestMetrics(t *testing.T) {
	t.Parallel()
	k, files := rsaKeyFile("id_rsa.pub")
	ts := newServer(t, tokensConfig, fixture{Files: files})
	a := k.Sign(claims("TestClient", "User1", ts.TokenURL))
	requireToken(t, ts.token(t, grant(a)))
	requireError(t, ts.token(t, grant(a)), http.StatusBadRequest, "invalid_grant")
	requireError(t, ts.token(t, url.Values{"grant_type": {"made-up-grant-type-12345"}}), http.StatusBadRequest, "unsupported_grant_type")
	ts.introspect(t, "nope", "svc", "s3cret")

	r := ts.do(t, http.MethodGet, "/metrics", "")
	require.Equal(t, http.StatusOK, r.Status)
	body := string(r.Body)
	for _, want := range []string{
		`jwtbearer_token_requests_total{grant_type="urn:ietf:params:oauth:grant-type:jwt-bearer",outcome="ok"} 1`,
		`jwtbearer_token_requests_total{grant_type="urn:ietf:params:oauth:grant-type:jwt-bearer",outcome="invalid_grant"} 1`,
		`jwtbearer_token_requests_total{grant_type="other",outcome="unsupported_grant_type"} 1`,
		`jwtbearer_replay_rejections_total{kind="assertion"} 1`,
		`jwtbearer_token_request_duration_seconds_count{grant_type="urn:ietf:params:oauth:grant-type:jwt-bearer"} 2`,
		`jwtbearer_endpoint_requests_total{endpoint="introspect",status_class="2xx"} 1`,
		`go_goroutines`,
	} {
		assert.Contains(t, body, want)
	}
	for _, secret := range []string{"TestClient", "User1", "made-up-grant-type", "svc", k.Public.KeyID} {
		assert.NotContains(t, body, secret)
	}
}

// TestMetricsListener: metrics.listener moves /metrics behind the admin
// listener and its token, or removes it.
func TestMetricsListener(t *testing.T) {
	t.Parallel()
	_, files := rsaKeyFile("id_rsa.pub")
	const tmpl = `
listen: {{.Listen}}
issuer: {{.Issuer}}
metrics: {listener: {{.V.listener}}}
admin:
  listen: 127.0.0.1:1
  token: ` + adminToken + `
trust:
  - issuer: TestClient
    subject: User1
    keys: [{file: id_rsa.pub}]
`
	for _, tc := range []struct {
		listener           string
		public, adminAuthd int
	}{
		{"public", http.StatusOK, http.StatusNotFound},
		{"admin", http.StatusNotFound, http.StatusOK},
		{"off", http.StatusNotFound, http.StatusNotFound},
	} {
		t.Run(tc.listener, func(t *testing.T) {
			ts := newServer(t, tmpl, fixture{Files: files, Vars: map[string]any{"listener": tc.listener}})
			assert.Equal(t, tc.public, ts.do(t, http.MethodGet, "/metrics", "").Status)

			get := func(token string) *httptest.ResponseRecorder {
				req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
				if token != "" {
					req.Header.Set("Authorization", "Bearer "+token)
				}
				rec := httptest.NewRecorder()
				ts.Admin.ServeHTTP(rec, req)
				return rec
			}
			assert.Equal(t, http.StatusUnauthorized, get("").Code, "the admin listener always wants its token")
			rec := get(adminToken)
			assert.Equal(t, tc.adminAuthd, rec.Code)
			if tc.adminAuthd == http.StatusOK {
				assert.Contains(t, rec.Body.String(), "jwtbearer_token_requests_total")
			}
		})
	}
}
