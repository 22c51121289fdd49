package integration_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/jwt"

	"github.com/jwtbearer/jwtbearer/handler/handlertest"
)

// oauth2JWTConfig trusts a Google-style service account "sa@example" for
// subject User1. golang.org/x/oauth2/jwt sends no jti, so the relationship
// does not require one.
const oauth2JWTConfig = `
listen: {{.Listen}}
issuer: {{.Issuer}}
trust:
  - id: service-account
    issuer: sa@example
    subject: User1
    scopes: [read, write]
    require_jti: false
    keys:
      - file: sa.pub
clients:
  - id: svc
    secret_hash: "{{hash "s3cret"}}"
    grant_types: [client_credentials]
    scopes: [read]
`

// oauth2Context makes golang.org/x/oauth2 use the test's HTTP client.
func oauth2Context(t *testing.T, ts *testServer) context.Context {
	return context.WithValue(t.Context(), oauth2.HTTPClient, ts.HTTP)
}

// TestOAuth2JWTClient: golang.org/x/oauth2/jwt, the client Google service
// accounts use, gets a token; its scope claim is what the token gets.
func TestOAuth2JWTClient(t *testing.T) {
	t.Parallel()
	k := handlertest.NewRSAKey()
	ts := newServer(t, oauth2JWTConfig, fixture{Files: map[string][]byte{"sa.pub": k.PublicKeyPEM()}})
	conf := func(aud string, kid string, scopes ...string) *jwt.Config {
		return &jwt.Config{
			Email:        "sa@example",
			Subject:      "User1",
			PrivateKey:   k.PrivateKeyPEM(),
			PrivateKeyID: kid,
			Scopes:       scopes,
			TokenURL:     ts.TokenURL,
			Audience:     aud,
		}
	}

	for name, c := range map[string]*jwt.Config{
		"aud is the token URL (the default)": conf("", k.Public.KeyID, "read"),
		"aud is the issuer identifier":       conf(ts.Issuer, k.Public.KeyID, "read"),
		"no kid":                             conf(ts.TokenURL, "", "read"),
		"PKCS#1 private key": func() *jwt.Config {
			c := conf("", k.Public.KeyID, "read")
			c.PrivateKey = k.RSAPrivateKeyPEM()
			return c
		}(),
	} {
		t.Run(name, func(t *testing.T) {
			tok, err := c.TokenSource(oauth2Context(t, ts)).Token()
			require.NoError(t, err)
			require.NotEmpty(t, tok.AccessToken)
			assert.Equal(t, "bearer", tok.TokenType)
			assert.False(t, tok.Expiry.IsZero(), "expires_in was sent")
			assert.Equal(t, "read", tok.Extra("scope"), "the scope claim is honoured")

			in := ts.introspect(t, tok.AccessToken, "svc", "s3cret")
			assert.Equal(t, true, in["active"])
			assert.Equal(t, "read", in["scope"])
			assert.Equal(t, "User1", in["sub"])
			assert.Equal(t, "sa@example", in["client_id"], "attributed to the assertion's issuer")
		})
	}

	t.Run("two scopes", func(t *testing.T) {
		tok, err := conf("", k.Public.KeyID, "read", "write").TokenSource(oauth2Context(t, ts)).Token()
		require.NoError(t, err)
		assert.Equal(t, "read write", ts.introspect(t, tok.AccessToken, "svc", "s3cret")["scope"])
	})

	failures := []struct {
		name   string
		conf   *jwt.Config
		status int
		code   string
	}{
		{"scope outside the relationship", conf("", k.Public.KeyID, "read", "admin"), 400, "invalid_scope"},
		{"unknown kid", conf("", "not-the-kid", "read"), 400, "invalid_grant"},
		{"wrong audience", conf("https://accounts.google.com/o/oauth2/token", k.Public.KeyID, "read"), 400, "invalid_grant"},
		{"wrong subject", func() *jwt.Config { c := conf("", k.Public.KeyID, "read"); c.Subject = "User2"; return c }(), 400, "invalid_grant"},
	}
	for _, tc := range failures {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.conf.TokenSource(oauth2Context(t, ts)).Token()
			var re *oauth2.RetrieveError
			require.True(t, errors.As(err, &re), "want *oauth2.RetrieveError, got %T: %v", err, err)
			require.Equal(t, tc.status, re.Response.StatusCode, "body: %s", re.Body)
			var e oauthError
			require.NoError(t, json.Unmarshal(re.Body, &e), "body: %s", re.Body)
			assert.Equal(t, tc.code, e.Error)
			assertNoLeak(t, re.Body)
		})
	}
}
