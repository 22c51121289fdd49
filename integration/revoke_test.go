package integration_test

import (
	"net/http"
	"net/url"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// revoke posts an RFC 7009 revocation of token.
func (ts *testServer) revoke(t *testing.T, token string, opts ...reqOption) *response {
	t.Helper()
	return ts.post(t, "/revoke", url.Values{"token": {token}}, opts...)
}

// TestRevoke: a client revokes the tokens issued to it, after which
// introspection reports them inactive (RFC 7009 §2, RFC 7662 §2.2).
func TestRevoke(t *testing.T) {
	t.Parallel()
	ts, k := newTokensServer(t)

	t.Run("by the issuer's client, token redeemed without client authentication", func(t *testing.T) {
		tok := redeem(t, ts, k, "read")
		other := redeem(t, ts, k, "read")
		require.Equal(t, true, ts.introspect(t, tok.AccessToken, "svc", "s3cret")["active"])
		r := ts.revoke(t, tok.AccessToken, basicAuth("TestClient", "test-client-s3cret"))
		require.Equalf(t, http.StatusOK, r.Status, "body: %s", r.Body)
		assert.Equal(t, false, ts.introspect(t, tok.AccessToken, "svc", "s3cret")["active"])
		assert.Equal(t, true, ts.introspect(t, other.AccessToken, "svc", "s3cret")["active"], "only the revoked token")
	})
	t.Run("by the client that redeemed it", func(t *testing.T) {
		tok := redeem(t, ts, k, "read", basicAuth("svc", "s3cret"))
		r := ts.revoke(t, tok.AccessToken, basicAuth("svc", "s3cret"))
		require.Equalf(t, http.StatusOK, r.Status, "body: %s", r.Body)
		assert.Equal(t, false, ts.introspect(t, tok.AccessToken, "svc", "s3cret")["active"])
	})
	t.Run("with client_secret_post", func(t *testing.T) {
		tok := redeem(t, ts, k, "read", basicAuth("svc", "s3cret"))
		r := ts.post(t, "/revoke", url.Values{"token": {tok.AccessToken}, "client_id": {"svc"}, "client_secret": {"s3cret"}})
		require.Equalf(t, http.StatusOK, r.Status, "body: %s", r.Body)
		assert.Equal(t, false, ts.introspect(t, tok.AccessToken, "svc", "s3cret")["active"])
	})
	t.Run("revoking twice, or an unknown token, is 200", func(t *testing.T) {
		tok := redeem(t, ts, k, "read", basicAuth("svc", "s3cret"))
		require.Equal(t, http.StatusOK, ts.revoke(t, tok.AccessToken, basicAuth("svc", "s3cret")).Status)
		assert.Equal(t, http.StatusOK, ts.revoke(t, tok.AccessToken, basicAuth("svc", "s3cret")).Status)
		assert.Equal(t, http.StatusOK, ts.revoke(t, "ory_at_unknown.token", basicAuth("svc", "s3cret")).Status)
	})
}

// TestRevokeRefused: without valid client authentication, or by a client
// the token was not issued to, the token stays active.
func TestRevokeRefused(t *testing.T) {
	t.Parallel()
	ts, k := newTokensServer(t)
	tok := redeem(t, ts, k, "read")

	t.Run("without client authentication", func(t *testing.T) {
		requireError(t, ts.revoke(t, tok.AccessToken), 401, "invalid_client")
	})
	t.Run("malformed Basic header", func(t *testing.T) {
		requireError(t, ts.revoke(t, tok.AccessToken, func(r *http.Request) { r.Header.Set("Authorization", "Basic !!!") }), 401, "invalid_client")
	})
	t.Run("wrong secret", func(t *testing.T) {
		requireError(t, ts.revoke(t, tok.AccessToken, basicAuth("TestClient", "wrong")), 401, "invalid_client")
	})
	t.Run("wrong content type", func(t *testing.T) {
		requireError(t, ts.revoke(t, tok.AccessToken, basicAuth("TestClient", "test-client-s3cret"), contentType("text/plain")), 400, "invalid_request")
	})
	t.Run("by another client", func(t *testing.T) {
		// RFC 7009 §2.1: the request is refused (fosite alone answers 200).
		requireError(t, ts.revoke(t, tok.AccessToken, basicAuth("svc", "s3cret")), 400, "unauthorized_client")
	})
	assert.Equal(t, true, ts.introspect(t, tok.AccessToken, "svc", "s3cret")["active"], "a refused revocation revoked the token")
}
