package integration_test

import (
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/jwtbearer/jwtbearer/handler/handlertest"
)

// tokensConfig trusts TestClient/User1 and has client svc plus a client
// whose ID is the assertion issuer TestClient: the client that tokens
// redeemed without client authentication are attributed to.
const tokensConfig = `
listen: {{.Listen}}
issuer: {{.Issuer}}
trust:
  - issuer: TestClient
    subject: User1
    scopes: [read, write]
    keys: [{file: id_rsa.pub}]
clients:
  - id: svc
    secret_hash: "{{hash "s3cret"}}"
    grant_types: [client_credentials, "urn:ietf:params:oauth:grant-type:jwt-bearer"]
    scopes: [read]
  - id: TestClient
    secret_hash: "{{hash "test-client-s3cret"}}"
    grant_types: [client_credentials]
    scopes: [read]
`

func newTokensServer(t *testing.T) (*testServer, *handlertest.Key) {
	t.Helper()
	k, files := rsaKeyFile("id_rsa.pub")
	return newServer(t, tokensConfig, fixture{Files: files}), k
}

// redeem gets a jwt-bearer token for TestClient/User1 with scope.
func redeem(t *testing.T, ts *testServer, k *handlertest.Key, scope string, opts ...reqOption) tokenResponse {
	t.Helper()
	return requireToken(t, ts.token(t, grant(k.Sign(claims("TestClient", "User1", ts.TokenURL)), "scope", scope), opts...))
}

// TestIntrospectJWTBearerToken: RFC 7662 introspection of a token from an
// assertion shows the subject, the scope, the client and an exp no later
// than the assertion's.
func TestIntrospectJWTBearerToken(t *testing.T) {
	t.Parallel()
	ts, k := newTokensServer(t)

	t.Run("redeemed without client authentication", func(t *testing.T) {
		before := time.Now().Add(-time.Second).Unix()
		tok := redeem(t, ts, k, "read write")
		in := ts.introspect(t, tok.AccessToken, "svc", "s3cret")
		assert.Equal(t, true, in["active"])
		assert.Equal(t, "User1", in["sub"])
		assert.Equal(t, "read write", in["scope"])
		assert.Equal(t, "TestClient", in["client_id"], "attributed to the assertion's issuer")
		require.Contains(t, in, "exp")
		assert.LessOrEqual(t, in["exp"], float64(unix(5*time.Minute)+1), "no later than the assertion's exp")
		require.Contains(t, in, "iat")
		assert.GreaterOrEqual(t, in["iat"], float64(before))
	})
	t.Run("redeemed by an authenticated client", func(t *testing.T) {
		tok := redeem(t, ts, k, "read", basicAuth("svc", "s3cret"))
		in := ts.introspect(t, tok.AccessToken, "svc", "s3cret")
		assert.Equal(t, true, in["active"])
		assert.Equal(t, "User1", in["sub"])
		assert.Equal(t, "read", in["scope"])
		assert.Equal(t, "svc", in["client_id"])
	})
	t.Run("unknown token", func(t *testing.T) {
		in := ts.introspect(t, "ory_at_not-a-token.not-a-signature", "svc", "s3cret")
		assert.Equal(t, map[string]any{"active": false}, in)
	})
	t.Run("token_type_hint access_token", func(t *testing.T) {
		tok := redeem(t, ts, k, "read")
		r := ts.post(t, "/introspect", url.Values{"token": {tok.AccessToken}, "token_type_hint": {"access_token"}}, basicAuth("svc", "s3cret"))
		require.Equal(t, 200, r.Status)
		assert.Equal(t, true, r.JSON(t)["active"])
	})
}

// TestIntrospectRequiresClientAuthentication: no credentials or wrong
// ones get 401 with a challenge, and reveal nothing about the token.
func TestIntrospectRequiresClientAuthentication(t *testing.T) {
	t.Parallel()
	ts, k := newTokensServer(t)
	tok := redeem(t, ts, k, "read")
	form := url.Values{"token": {tok.AccessToken}}

	for _, tc := range []struct {
		name string
		form url.Values
		opts []reqOption
	}{
		{"no credentials", form, nil},
		{"wrong secret", form, []reqOption{basicAuth("svc", "wrong")}},
		{"unknown client", form, []reqOption{basicAuth("nobody", "s3cret")}},
		// RFC 7662 leaves the method to the server; this one takes HTTP
		// Basic (or a bearer token) only.
		{"credentials in the form", url.Values{"token": {tok.AccessToken}, "client_id": {"svc"}, "client_secret": {"s3cret"}}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := ts.post(t, "/introspect", tc.form, tc.opts...)
			require.Equalf(t, http.StatusUnauthorized, r.Status, "body: %s", r.Body)
			requireJSONContentType(t, r)
			assert.NotEmpty(t, r.Header.Get("WWW-Authenticate"))
			assert.NotContains(t, string(r.Body), "User1")
			assert.NotContains(t, string(r.Body), `"active":true`)
			assertNoLeak(t, r.Body)
		})
	}
	t.Run("bearer token of the token itself", func(t *testing.T) {
		r := ts.post(t, "/introspect", form, func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+tok.AccessToken) })
		require.Equalf(t, http.StatusUnauthorized, r.Status, "body: %s", r.Body)
	})
	t.Run("wrong content type", func(t *testing.T) {
		requireError(t, ts.post(t, "/introspect", form, basicAuth("svc", "s3cret"), contentType("application/json")), 400, "invalid_request")
	})
}

// TestIntrospectUnauthenticatedErrorCode: RFC 7662 §2.3 answers bad client
// credentials "with an HTTP 401 (Unauthorized) as described in Section 5.2
// of OAuth 2.0", whose error code for that is invalid_client; DESIGN.md
// lists the RFC 6749 §5.2 codes as the only ones this server answers with.
func TestIntrospectUnauthenticatedErrorCode(t *testing.T) {
	t.Parallel()
	ts, k := newTokensServer(t)
	tok := redeem(t, ts, k, "read")
	requireError(t, ts.post(t, "/introspect", url.Values{"token": {tok.AccessToken}}), 401, "invalid_client")
	requireError(t, ts.post(t, "/introspect", url.Values{"token": {tok.AccessToken}}, basicAuth("svc", "wrong")), 401, "invalid_client")
}

// TestIntrospectBearerTokenIsNotClientAuthentication: /introspect is for
// authenticated clients (HTTP Basic). An access token is not a client
// credential: one obtained from an assertion, with no client at all, must
// not read other tokens' subject, scope and client (RFC 7662 §4).
func TestIntrospectBearerTokenIsNotClientAuthentication(t *testing.T) {
	t.Parallel()
	ts, k := newTokensServer(t)
	mine := redeem(t, ts, k, "read")
	theirs := redeem(t, ts, k, "read", basicAuth("svc", "s3cret"))
	require.Equal(t, true, ts.introspect(t, theirs.AccessToken, "svc", "s3cret")["active"])
	r := ts.post(t, "/introspect", url.Values{"token": {theirs.AccessToken}},
		func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+mine.AccessToken) })
	assert.Equalf(t, http.StatusUnauthorized, r.Status, "body: %s", r.Body)
	assert.NotContains(t, string(r.Body), `"active":true`)
}
