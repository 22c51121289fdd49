package integration_test

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

// TestClientCredentials: the standard client_credentials grant is served
// on the same /token as the jwt-bearer grant.
func TestClientCredentials(t *testing.T) {
	t.Parallel()
	_, files := rsaKeyFile("id_rsa.pub")
	ts := newServer(t, `
listen: {{.Listen}}
issuer: {{.Issuer}}
trust:
  - issuer: TestClient
    subject: User1
    keys: [{file: id_rsa.pub}]
clients:
  - id: svc
    secret: s3cret
    grant_types: [client_credentials, "urn:ietf:params:oauth:grant-type:jwt-bearer"]
    scopes: [read]
  - id: assertion-only
    secret_hash: "{{hash "s3cret"}}"
    grant_types: ["urn:ietf:params:oauth:grant-type:jwt-bearer"]
    scopes: [read]
`, fixture{Files: files})
	conf := func(id, secret string, style oauth2.AuthStyle, scopes ...string) *clientcredentials.Config {
		return &clientcredentials.Config{ClientID: id, ClientSecret: secret, TokenURL: ts.TokenURL, Scopes: scopes, AuthStyle: style}
	}

	for name, style := range map[string]oauth2.AuthStyle{
		"client_secret_basic": oauth2.AuthStyleInHeader,
		"client_secret_post":  oauth2.AuthStyleInParams,
	} {
		t.Run(name, func(t *testing.T) {
			tok, err := conf("svc", "s3cret", style, "read").Token(oauth2Context(t, ts))
			require.NoError(t, err)
			require.NotEmpty(t, tok.AccessToken)
			assert.Equal(t, "bearer", tok.TokenType)
			assert.False(t, tok.Expiry.IsZero())
			assert.Equal(t, "read", tok.Extra("scope"))
			assert.Nil(t, tok.Extra("refresh_token"))

			in := ts.introspect(t, tok.AccessToken, "svc", "s3cret")
			assert.Equal(t, true, in["active"])
			assert.Equal(t, "svc", in["client_id"])
			assert.Equal(t, "read", in["scope"])
		})
	}

	failures := []struct {
		name   string
		conf   *clientcredentials.Config
		status int
		code   string
	}{
		{"wrong secret (Basic)", conf("svc", "wrong", oauth2.AuthStyleInHeader), 401, "invalid_client"},
		{"wrong secret (form)", conf("svc", "wrong", oauth2.AuthStyleInParams), 401, "invalid_client"},
		{"unknown client", conf("nobody", "s3cret", oauth2.AuthStyleInHeader), 401, "invalid_client"},
		{"scope beyond the client", conf("svc", "s3cret", oauth2.AuthStyleInHeader, "write"), 400, "invalid_scope"},
		{"client without the grant type", conf("assertion-only", "s3cret", oauth2.AuthStyleInHeader), 400, "unauthorized_client"},
	}
	for _, tc := range failures {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.conf.Token(oauth2Context(t, ts))
			var re *oauth2.RetrieveError
			require.True(t, errors.As(err, &re), "want *oauth2.RetrieveError, got %T: %v", err, err)
			require.Equal(t, tc.status, re.Response.StatusCode, "body: %s", re.Body)
			assert.Equal(t, tc.code, re.ErrorCode)
			if tc.status == 401 {
				assert.NotEmpty(t, re.Response.Header.Get("WWW-Authenticate"))
			}
			assertNoLeak(t, re.Body)
		})
	}
}
