package integration_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/jwtbearer/jwtbearer/handler/handlertest"
)

const clientAssertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

// clientJWTConfig has a client with inline keys (a key file), one whose
// keys are published at a jwks_uri, and a client with a secret.
const clientJWTConfig = `
listen: {{.Listen}}
issuer: {{.Issuer}}
trust:
  - issuer: TestClient
    subject: User1
    scopes: [read, write]
    keys: [{file: id_rsa.pub}]
  # The client is also an issuer of assertions about itself, with its key.
  - issuer: jwt-client
    subject: jwt-client
    scopes: [read]
    keys: [{file: client.pub}]
clients:
  - id: jwt-client
    jwks: [{file: client.pub}]
    grant_types: [client_credentials, "urn:ietf:params:oauth:grant-type:jwt-bearer"]
    scopes: [read]
  - id: remote-client
    jwks_uri: {{.V.jwksURI}}
    grant_types: [client_credentials]
    scopes: [read]
  - id: svc
    secret_hash: "{{hash "s3cret"}}"
    grant_types: [client_credentials]
    scopes: [read]
`

// withClientAssertion adds client authentication by assertion to form.
func withClientAssertion(form url.Values, assertion string) url.Values {
	form.Set("client_assertion_type", clientAssertionType)
	form.Set("client_assertion", assertion)
	return form
}

// TestPrivateKeyJWT: clients authenticate with a signed JWT (RFC 7523
// §2.2) at the token endpoint, for every grant, and at introspection and
// revocation; each client assertion is single-use, for this server only,
// short-lived and signed by the client's own key.
func TestPrivateKeyJWT(t *testing.T) {
	t.Parallel()
	issuerKey, files := rsaKeyFile("id_rsa.pub")
	clientKey := handlertest.NewECKey()
	files["client.pub"] = clientKey.PublicKeyPEM()
	remoteKey := handlertest.NewRSAKey()
	jwksSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{remoteKey.Public}})
	}))
	t.Cleanup(jwksSrv.Close)
	ts := newServer(t, clientJWTConfig, fixture{Files: files, Vars: map[string]any{"jwksURI": jwksSrv.URL + "/jwks.json"}})

	cc := func() url.Values { return url.Values{"grant_type": {"client_credentials"}, "scope": {"read"}} }
	clientClaims := func(id string) map[string]any { return claims(id, id, ts.TokenURL) }

	t.Run("client_credentials with an inline key", func(t *testing.T) {
		tok := requireToken(t, ts.token(t, withClientAssertion(cc(), clientKey.Sign(clientClaims("jwt-client")))))
		assert.Equal(t, "read", tok.Scope)
	})
	t.Run("aud may be the issuer identifier", func(t *testing.T) {
		requireToken(t, ts.token(t, withClientAssertion(cc(), clientKey.Sign(with(clientClaims("jwt-client"), "aud", ts.Issuer)))))
	})
	t.Run("keys from the client's jwks_uri", func(t *testing.T) {
		requireToken(t, ts.token(t, withClientAssertion(cc(), remoteKey.Sign(clientClaims("remote-client")))))
	})
	t.Run("jwt-bearer grant with an authenticated client", func(t *testing.T) {
		form := withClientAssertion(grant(issuerKey.Sign(claims("TestClient", "User1", ts.TokenURL)), "scope", "read"), clientKey.Sign(clientClaims("jwt-client")))
		tok := requireToken(t, ts.token(t, form))
		in := ts.introspect(t, tok.AccessToken, "svc", "s3cret")
		assert.Equal(t, "jwt-client", in["client_id"], "the token belongs to the authenticated client")
	})
	t.Run("replayed client assertion", func(t *testing.T) {
		a := clientKey.Sign(clientClaims("jwt-client"))
		requireToken(t, ts.token(t, withClientAssertion(cc(), a)))
		e := requireError(t, ts.token(t, withClientAssertion(cc(), a)), http.StatusUnauthorized, "invalid_client")
		assert.Contains(t, e.Description, "already been used")
	})
	t.Run("one JWT is not both a client assertion and a grant", func(t *testing.T) {
		// A JWT the client signed about itself fits both roles; its jti is
		// used up by the first, whichever it is.
		a := clientKey.Sign(with(clientClaims("jwt-client"), "aud", ts.Issuer))
		requireToken(t, ts.token(t, withClientAssertion(cc(), a)))
		requireError(t, ts.token(t, grant(a)), http.StatusBadRequest, "invalid_grant")

		b := clientKey.Sign(with(clientClaims("jwt-client"), "aud", ts.Issuer))
		requireToken(t, ts.token(t, grant(b)))
		requireError(t, ts.token(t, withClientAssertion(cc(), b)), http.StatusUnauthorized, "invalid_client")

		c := clientKey.Sign(with(clientClaims("jwt-client"), "aud", ts.Issuer))
		requireError(t, ts.token(t, withClientAssertion(grant(c), c)), http.StatusBadRequest, "invalid_grant")
	})
	t.Run("aud made out to another party too", func(t *testing.T) {
		c := with(clientClaims("jwt-client"), "aud", []string{"https://other.example", ts.TokenURL})
		requireError(t, ts.token(t, withClientAssertion(cc(), clientKey.Sign(c))), http.StatusUnauthorized, "invalid_client")
	})
	t.Run("wrong audience", func(t *testing.T) {
		e := requireError(t, ts.token(t, withClientAssertion(cc(), clientKey.Sign(with(clientClaims("jwt-client"), "aud", "https://other.example/token")))), http.StatusUnauthorized, "invalid_client")
		assert.Contains(t, e.Description, "aud")
	})
	t.Run("wrong key", func(t *testing.T) {
		requireError(t, ts.token(t, withClientAssertion(cc(), handlertest.NewECKey().Sign(clientClaims("jwt-client")))), http.StatusUnauthorized, "invalid_client")
		// Another client's key does not do either.
		requireError(t, ts.token(t, withClientAssertion(cc(), remoteKey.Sign(clientClaims("jwt-client")))), http.StatusUnauthorized, "invalid_client")
	})
	t.Run("expired", func(t *testing.T) {
		c := with(clientClaims("jwt-client"), "exp", unix(-5*time.Minute), "iat", unix(-10*time.Minute))
		e := requireError(t, ts.token(t, withClientAssertion(cc(), clientKey.Sign(c))), http.StatusUnauthorized, "invalid_client")
		assert.Contains(t, e.Description, "exp")
	})
	t.Run("a secret client cannot switch to assertions, nor the reverse", func(t *testing.T) {
		requireError(t, ts.token(t, withClientAssertion(cc(), clientKey.Sign(clientClaims("svc")))), http.StatusUnauthorized, "invalid_client")
		requireError(t, ts.token(t, cc(), basicAuth("jwt-client", "")), http.StatusUnauthorized, "invalid_client")
	})
	t.Run("two methods at once", func(t *testing.T) {
		requireError(t, ts.token(t, withClientAssertion(cc(), clientKey.Sign(clientClaims("jwt-client"))), basicAuth("svc", "s3cret")), http.StatusUnauthorized, "invalid_client")
	})
	t.Run("wrong client_assertion_type", func(t *testing.T) {
		form := withClientAssertion(cc(), clientKey.Sign(clientClaims("jwt-client")))
		form.Set("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:saml2-bearer")
		requireError(t, ts.token(t, form), http.StatusUnauthorized, "invalid_client")
	})
	t.Run("introspection and revocation", func(t *testing.T) {
		tok := requireToken(t, ts.token(t, withClientAssertion(cc(), clientKey.Sign(clientClaims("jwt-client")))))
		r := ts.post(t, "/introspect", withClientAssertion(url.Values{"token": {tok.AccessToken}}, clientKey.Sign(clientClaims("jwt-client"))))
		require.Equal(t, http.StatusOK, r.Status, "%s", r.Body)
		assert.Equal(t, true, r.JSON(t)["active"])
		// A replayed client assertion is refused there too.
		a := clientKey.Sign(clientClaims("jwt-client"))
		require.Equal(t, http.StatusOK, ts.post(t, "/introspect", withClientAssertion(url.Values{"token": {tok.AccessToken}}, a)).Status)
		requireError(t, ts.post(t, "/introspect", withClientAssertion(url.Values{"token": {tok.AccessToken}}, a)), http.StatusUnauthorized, "invalid_client")

		r = ts.post(t, "/revoke", withClientAssertion(url.Values{"token": {tok.AccessToken}}, clientKey.Sign(clientClaims("jwt-client"))))
		require.Equal(t, http.StatusOK, r.Status, "%s", r.Body)
		in := ts.introspect(t, tok.AccessToken, "svc", "s3cret")
		assert.Equal(t, false, in["active"])
	})
}

// TestOneClientAuthenticationMethod: RFC 6749 §2.3, "The client MUST NOT
// use more than one authentication method in each request". fosite would
// read the Authorization header and ignore the rest.
func TestOneClientAuthenticationMethod(t *testing.T) {
	t.Parallel()
	ts, _ := newTokensServer(t)
	cc := func(kv ...string) url.Values {
		f := url.Values{"grant_type": {"client_credentials"}}
		for i := 0; i+1 < len(kv); i += 2 {
			f.Set(kv[i], kv[i+1])
		}
		return f
	}
	requireToken(t, ts.token(t, cc(), basicAuth("svc", "s3cret")))
	requireToken(t, ts.token(t, cc("client_id", "svc"), basicAuth("svc", "s3cret"))) // the same client named twice is one method
	requireToken(t, ts.token(t, cc("client_id", "svc", "client_secret", "s3cret")))  // client_secret_post alone
	for name, form := range map[string]url.Values{
		"Basic and client_secret":        cc("client_secret", "s3cret"),
		"Basic and another client_id":    cc("client_id", "TestClient"),
		"Basic and a secret for another": cc("client_id", "TestClient", "client_secret", "test-client-s3cret"),
	} {
		e := requireError(t, ts.token(t, form, basicAuth("svc", "s3cret")), http.StatusUnauthorized, "invalid_client")
		assert.Contains(t, e.Description, "client", name)
	}
}
