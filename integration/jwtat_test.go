package integration_test

import (
	"crypto/ecdsa"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v3"
	"github.com/go-jose/go-jose/v3/jwt"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/jwtbearer/jwtbearer/handler/handlertest"
)

const jwtATConfig = `
listen: {{.Listen}}
issuer: {{.Issuer}}
access_token_lifetime: 10m
access_tokens:
  format: jwt
{{- if .V.keyFile}}
  signing_keys: [{file: {{.V.keyFile}}}]
{{- end}}
trust:
  - issuer: TestClient
    subject: User1
    scopes: [read, write]
    keys: [{file: id_rsa.pub}]
clients:
  - id: svc
    secret_hash: "{{hash "s3cret"}}"
    grant_types: [client_credentials]
    scopes: [read]
`

// TestJWTAccessTokens: with access_tokens.format jwt, tokens are RFC 9068
// JWTs that a resource server verifies with the keys at /jwks.json, and
// introspection and revocation work on them as on opaque ones.
func TestJWTAccessTokens(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		keyFile string
	}{
		{"configured ES256 key", "at.pem"},
		{"generated key", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			issuerKey, files := rsaKeyFile("id_rsa.pub")
			atKey := handlertest.NewECKey()
			files["at.pem"] = atKey.PrivateKeyPEM()
			ts := newServer(t, jwtATConfig, fixture{Files: files, Vars: map[string]any{"keyFile": tc.keyFile}})

			md := ts.do(t, http.MethodGet, "/.well-known/oauth-authorization-server", "").JSON(t)
			assert.Equal(t, ts.Issuer+"/jwks.json", md["jwks_uri"])

			r := ts.do(t, http.MethodGet, "/jwks.json", "")
			require.Equal(t, http.StatusOK, r.Status)
			assert.NotContains(t, string(r.Body), `"d"`, "no private key material")
			var set jose.JSONWebKeySet
			require.NoError(t, json.Unmarshal(r.Body, &set))
			require.NotEmpty(t, set.Keys)
			if tc.keyFile != "" {
				require.Len(t, set.Keys, 1)
				pub, ok := set.Keys[0].Key.(*ecdsa.PublicKey)
				require.True(t, ok, "%T", set.Keys[0].Key)
				assert.True(t, pub.Equal(atKey.Public.Key), "the configured key is the one published")
			}

			verify := func(token string) (jwt.Claims, map[string]any) {
				t.Helper()
				parsed, err := jwt.ParseSigned(token)
				require.NoError(t, err, "an access token is a JWT")
				require.Len(t, parsed.Headers, 1)
				h := parsed.Headers[0]
				assert.Equal(t, "ES256", h.Algorithm)
				assert.Equal(t, "at+jwt", h.ExtraHeaders[jose.HeaderType])
				keys := set.Key(h.KeyID)
				require.Len(t, keys, 1, "kid %q is published", h.KeyID)
				var std jwt.Claims
				var all map[string]any
				require.NoError(t, parsed.Claims(keys[0].Key, &std, &all))
				require.NoError(t, std.ValidateWithLeeway(jwt.Expected{Issuer: ts.Issuer, Audience: jwt.Audience{ts.Issuer}, Time: time.Now()}, 0))
				for _, claim := range []string{"iss", "sub", "aud", "client_id", "jti", "iat", "exp"} {
					assert.Contains(t, all, claim)
				}
				return std, all
			}

			tok := requireToken(t, ts.token(t, grant(issuerKey.Sign(claims("TestClient", "User1", ts.TokenURL)), "scope", "read write")))
			std, all := verify(tok.AccessToken)
			assert.Equal(t, "User1", std.Subject)
			assert.Equal(t, "TestClient", all["client_id"])
			assert.Equal(t, "read write", all["scope"])
			// The assertion lived 5 minutes: the token does not outlive it.
			assert.LessOrEqual(t, std.Expiry.Time().Sub(std.IssuedAt.Time()), 5*time.Minute+time.Second)

			cc := requireToken(t, ts.token(t, url.Values{"grant_type": {"client_credentials"}, "scope": {"read"}}, basicAuth("svc", "s3cret")))
			ccStd, ccAll := verify(cc.AccessToken)
			assert.Equal(t, "svc", ccStd.Subject, "RFC 9068 §2.2: no resource owner, so sub is the client")
			assert.Equal(t, "svc", ccAll["client_id"])
			assert.NotEqual(t, std.ID, ccStd.ID)

			in := ts.introspect(t, tok.AccessToken, "svc", "s3cret")
			assert.Equal(t, true, in["active"])
			assert.Equal(t, "User1", in["sub"])

			// A forged token (payload changed) is not active.
			parts := strings.Split(tok.AccessToken, ".")
			forged := parts[0] + "." + parts[1][:len(parts[1])-2] + "AA." + parts[2]
			assert.Equal(t, false, ts.introspect(t, forged, "svc", "s3cret")["active"])

			require.Equal(t, http.StatusOK, ts.post(t, "/revoke", url.Values{"token": {cc.AccessToken}}, basicAuth("svc", "s3cret")).Status)
			assert.Equal(t, false, ts.introspect(t, cc.AccessToken, "svc", "s3cret")["active"])
		})
	}
}
