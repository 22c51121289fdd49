package handler_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
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
)

func TestRequiredClaims(t *testing.T) {
	tr := trust(rsaKey)
	tr.RequiredClaims = map[string]string{"repository_owner": "acme", "repository_owner_id": "12345", "ref_protected": "true"}
	e := newEnv(t, &handler.Settings{}, tr)
	good := func() map[string]interface{} {
		c := e.claims()
		c["repository_owner"] = "acme"
		c["repository_owner_id"] = "12345"
		c["ref_protected"] = true
		return c
	}
	tests := []struct {
		name string
		edit func(c map[string]interface{})
		hint string
	}{
		{"all present", func(map[string]interface{}) {}, ""},
		{"number written as required", func(c map[string]interface{}) { c["repository_owner_id"] = 12345 }, ""},
		{"missing", func(c map[string]interface{}) { delete(c, "repository_owner") }, `must contain the "repository_owner" claim`},
		{"other value", func(c map[string]interface{}) { c["repository_owner"] = "evil" }, `"repository_owner" claim does not have the value`},
		{"case differs", func(c map[string]interface{}) { c["repository_owner"] = "ACME" }, `"repository_owner" claim does not have the value`},
		{"bool as string", func(c map[string]interface{}) { c["ref_protected"] = "yes" }, `"ref_protected" claim does not have the value`},
		{"false", func(c map[string]interface{}) { c["ref_protected"] = false }, `"ref_protected" claim does not have the value`},
		{"array", func(c map[string]interface{}) { c["repository_owner"] = []string{"acme"} }, `"repository_owner" claim does not have the value`},
		{"object", func(c map[string]interface{}) { c["repository_owner"] = map[string]string{"name": "acme"} }, `"repository_owner" claim does not have the value`},
		{"null", func(c map[string]interface{}) { c["repository_owner"] = nil }, `"repository_owner" claim does not have the value`},
		{"float", func(c map[string]interface{}) { c["repository_owner_id"] = 12345.5 }, `"repository_owner_id" claim does not have the value`},
		{"name case differs", func(c map[string]interface{}) { delete(c, "repository_owner"); c["Repository_Owner"] = "acme" }, `must contain the "repository_owner" claim`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := good()
			tc.edit(c)
			_, _, err := e.token(grant(rsaKey.Sign(c)), nil)
			if tc.hint == "" {
				require.NoError(t, err)
				return
			}
			wantError(t, err, fosite.ErrInvalidGrant, tc.hint)
		})
	}
}

func TestSubjectRules(t *testing.T) {
	k8s := trust(rsaKey)
	k8s.Issuer, k8s.Subject = "https://kubernetes.default.svc", ""
	k8s.SubjectPatterns = []string{"system:serviceaccount:prod:*"}
	list := trust(ecKey)
	list.Subject, list.Subjects = "", []string{"alice", "bob"}
	e := newEnv(t, &handler.Settings{}, k8s, list)

	sign := func(k *handlertest.Key, iss, sub string) string {
		return k.Sign(handlertest.Claims(iss, sub, tokenURL, e.now))
	}
	for _, sub := range []string{"system:serviceaccount:prod:api", "system:serviceaccount:prod:web"} {
		_, _, err := e.token(grant(sign(rsaKey, k8s.Issuer, sub)), nil)
		require.NoError(t, err, sub)
	}
	for _, sub := range []string{"system:serviceaccount:staging:api", "system:serviceaccount:prod:a:b", "system:serviceaccount:prod:"} {
		_, _, err := e.token(grant(sign(rsaKey, k8s.Issuer, sub)), nil)
		wantError(t, err, fosite.ErrInvalidGrant, untrusted)
	}
	for _, sub := range []string{"alice", "bob"} {
		ar, _, err := e.token(grant(sign(ecKey, "TestClient", sub)), nil)
		require.NoError(t, err, sub)
		assert.Equal(t, sub, ar.GetSession().GetSubject())
	}
	_, _, err := e.token(grant(sign(ecKey, "TestClient", "carol")), nil)
	wantError(t, err, fosite.ErrInvalidGrant, untrusted)
}

func TestRelationshipLifetimes(t *testing.T) {
	long := trust(rsaKey)
	long.MaxAssertionLifetime = store.Duration(3 * time.Hour)
	long.AccessTokenLifetime = store.Duration(5 * time.Minute)
	short := trust(ecKey)
	short.Issuer = "short-lived"
	short.MaxAssertionLifetime = store.Duration(2 * time.Minute)
	e := newEnv(t, &handler.Settings{}, long, short)

	c := e.claims()
	c["exp"] = e.now.Add(150 * time.Minute).Unix()
	_, resp, err := e.token(grant(rsaKey.Sign(c)), nil)
	require.NoError(t, err, "the relationship allows three hours, above the one-hour default")
	assert.InDelta(t, 300, resp.ToMap()["expires_in"], 1, "the relationship's access-token lifetime applies")

	c = e.claims()
	c["exp"] = e.now.Add(4 * time.Hour).Unix()
	_, _, err = e.token(grant(rsaKey.Sign(c)), nil)
	wantError(t, err, fosite.ErrInvalidGrant, "valid for at most 3h0m0s")

	c = handlertest.Claims("short-lived", "User1", tokenURL, e.now) // five minutes
	_, _, err = e.token(grant(ecKey.Sign(c)), nil)
	wantError(t, err, fosite.ErrInvalidGrant, "valid for at most 2m0s")
	c["exp"] = e.now.Add(90 * time.Second).Unix()
	_, resp, err = e.token(grant(ecKey.Sign(c)), nil)
	require.NoError(t, err)
	assert.InDelta(t, 90, resp.ToMap()["expires_in"], 1, "still capped at the assertion's remaining validity")
}

// fakeRemote serves keys as a jwks_uri would, counting calls.
type fakeRemote struct {
	keys  []jose.JSONWebKey
	err   error
	calls atomic.Int32
}

func (f *fakeRemote) RemoteKeys(_ context.Context, _ *store.Trust, kid string) ([]jose.JSONWebKey, error) {
	f.calls.Add(1)
	if f.err != nil {
		return nil, f.err
	}
	var out []jose.JSONWebKey
	for _, k := range f.keys {
		if kid == "" || k.KeyID == kid {
			out = append(out, k)
		}
	}
	return out, nil
}

func TestRemoteKeys(t *testing.T) {
	remote := &fakeRemote{keys: []jose.JSONWebKey{ecKey.Public, rsaKey.Public}}
	tr := trust()
	tr.JWKSURI = "https://issuer.example/jwks"
	expired := trust()
	expired.Issuer, expired.JWKSURI, expired.ExpiresAt = "expired", "https://expired.example/jwks", time.Now().Add(-time.Hour)
	e := newEnv(t, &handler.Settings{RemoteKeys: remote}, tr, expired)

	_, _, err := e.token(grant(ecKey.Sign(e.claims())), nil)
	require.NoError(t, err, "a key of the published set verifies")
	_, _, err = e.token(grant(rsaKey.SignNoKID(e.claims())), nil)
	require.NoError(t, err, "without kid, every published key is tried")
	_, _, err = e.token(grant(otherKey.Sign(e.claims())), nil)
	wantError(t, err, fosite.ErrInvalidGrant, untrusted)

	// An ES256 header on an RSA key's signature: the alg must fit the key.
	_, _, err = e.token(grant(rsaKey.SignWith("RS256", map[string]interface{}{"kid": ecKey.Public.KeyID}, e.claims())), nil)
	wantError(t, err, fosite.ErrInvalidGrant, untrusted)

	before := remote.calls.Load()
	_, _, err = e.token(grant(ecKey.Sign(handlertest.Claims("expired", "User1", tokenURL, e.now))), nil)
	wantError(t, err, fosite.ErrInvalidGrant, untrusted)
	assert.Equal(t, before, remote.calls.Load(), "an expired relationship's keys are not even fetched")

	// The issuer's keys cannot be fetched: the caller gets the one hint
	// every unverified assertion gets (which mentions this case), so that
	// it learns nothing about which issuers are trusted; the cause is in
	// the debug field, for the log.
	remote.err = errors.New("jwks: key set unavailable: 503")
	_, _, err = e.token(grant(ecKey.Sign(e.claims())), nil)
	wantError(t, err, fosite.ErrInvalidGrant, untrusted)
	assert.Contains(t, fosite.ErrorToRFC6749Error(err).GetDescription(), "cannot be fetched right now")
	assert.Contains(t, fosite.ErrorToRFC6749Error(err).DebugField, "published keys are unavailable: jwks: key set unavailable: 503")
	_, _, strangerErr := e.token(grant(ecKey.Sign(handlertest.Claims("stranger", "User1", tokenURL, e.now))), nil)
	assert.Equal(t, fosite.ErrorToRFC6749Error(strangerErr).GetDescription(), fosite.ErrorToRFC6749Error(err).GetDescription(),
		"an unknown issuer and a trusted one whose keys are down are told the same")

	noSource := newEnv(t, &handler.Settings{}, tr)
	_, _, err = noSource.token(grant(ecKey.Sign(noSource.claims())), nil)
	wantError(t, err, fosite.ErrInvalidGrant, untrusted)
	assert.Contains(t, fosite.ErrorToRFC6749Error(err).DebugField, "no remote key source")
}

func TestCheck(t *testing.T) {
	tr := trust(rsaKey)
	tr.ID = "partner"
	tr.Scopes = []string{"read"}
	restricted := trust(ecKey)
	restricted.ID, restricted.Issuer, restricted.Clients = "restricted", "restricted-issuer", []string{"svc"}
	e := newEnv(t, &handler.Settings{}, tr, restricted)
	ctx := context.Background()

	c := e.claims()
	c["scope"] = "read"
	a := rsaKey.Sign(c)
	res := e.handler.Check(ctx, handler.CheckRequest{Assertion: a})
	require.Nil(t, res.Err)
	assert.Equal(t, "partner", res.TrustID)
	assert.Equal(t, []string{"partner"}, res.Candidates)
	assert.Equal(t, []string{"read"}, res.Scopes)
	require.NotNil(t, res.JTIUsed)
	assert.False(t, *res.JTIUsed)
	assert.Equal(t, "TestClient", res.Issuer)
	assert.Equal(t, rsaKey.Public.KeyID, res.KeyID)

	// The dry run consumed nothing: the assertion is still redeemable once.
	_, _, err := e.token(grant(a), nil)
	require.NoError(t, err)
	res = e.handler.Check(ctx, handler.CheckRequest{Assertion: a})
	require.NotNil(t, res.Err)
	assert.Equal(t, "invalid_grant", res.Err.ErrorField)
	assert.Contains(t, res.Err.HintField, "already been used")
	require.NotNil(t, res.JTIUsed)
	assert.True(t, *res.JTIUsed)

	// A signature from another key: the candidates are named, the reason
	// is precise (in the debug field, for the operator).
	res = e.handler.Check(ctx, handler.CheckRequest{Assertion: otherKey.Sign(e.claims())})
	require.NotNil(t, res.Err)
	assert.Equal(t, []string{"partner"}, res.Candidates)
	assert.Empty(t, res.TrustID)
	assert.Contains(t, res.Err.DebugField, "no key with kid")

	res = e.handler.Check(ctx, handler.CheckRequest{Assertion: rsaKey.SignNoKID(e.claims()), Scope: []string{"write"}, ScopeSent: true})
	require.NotNil(t, res.Err)
	assert.Equal(t, "invalid_scope", res.Err.ErrorField)
	assert.Equal(t, "partner", res.TrustID, "the relationship matched; the scope is what fails")

	rc := handlertest.Claims("restricted-issuer", "User1", tokenURL, e.now)
	res = e.handler.Check(ctx, handler.CheckRequest{Assertion: ecKey.Sign(rc)})
	require.NotNil(t, res.Err)
	assert.Equal(t, "invalid_client", res.Err.ErrorField)
	assert.Contains(t, res.Err.DebugField, "svc")
	res = e.handler.Check(ctx, handler.CheckRequest{Assertion: ecKey.Sign(rc), ClientID: "svc"})
	assert.Nil(t, res.Err)

	res = e.handler.Check(ctx, handler.CheckRequest{Assertion: "not-a-jwt"})
	require.NotNil(t, res.Err)
	assert.Equal(t, "invalid_grant", res.Err.ErrorField)
	assert.Empty(t, res.Candidates)
	res = e.handler.Check(ctx, handler.CheckRequest{})
	require.NotNil(t, res.Err)
	assert.Equal(t, "invalid_request", res.Err.ErrorField)
}

func TestTokenDoesNotOutliveRelationship(t *testing.T) {
	tr := trust(rsaKey)
	tr.ExpiresAt = time.Now().Add(90 * time.Second)
	tr.AccessTokenLifetime = store.Duration(24 * time.Hour)
	e := newEnv(t, &handler.Settings{}, tr)
	c := e.claims()
	_, resp, err := e.token(grant(rsaKey.Sign(c)), nil)
	require.NoError(t, err)
	assert.LessOrEqual(t, resp.ToMap()["expires_in"], int64(91), "capped at the relationship's expires_at")
}

func TestLongSubjectRefused(t *testing.T) {
	e := newEnv(t, &handler.Settings{}, trust(rsaKey))
	for _, name := range []string{"iss", "sub"} {
		c := e.claims()
		c[name] = strings.Repeat("a", 1025)
		_, _, err := e.token(grant(rsaKey.Sign(c)), nil)
		wantError(t, err, fosite.ErrInvalidGrant, fmt.Sprintf("The assertion's %q is longer than 1024 bytes", name))
	}
}

func TestRelationshipAlgorithmsNarrowTheServerList(t *testing.T) {
	tr := trust(rsaKey)
	tr.Algorithms = []string{"PS512", "RS256"}
	e := newEnv(t, &handler.Settings{Algorithms: []string{"RS256", "ES256"}}, tr)
	_, _, err := e.token(grant(rsaKey.SignWith("PS512", map[string]interface{}{"kid": rsaKey.Public.KeyID}, e.claims())), nil)
	wantError(t, err, fosite.ErrInvalidGrant, untrusted)
	assert.Contains(t, fosite.ErrorToRFC6749Error(err).DebugField, `algorithm "PS512" is not allowed`)
	_, _, err = e.token(grant(rsaKey.Sign(e.claims())), nil)
	require.NoError(t, err, "RS256 is on both lists")
}

func TestCheckHonoursRequireClientAuth(t *testing.T) {
	e := newEnv(t, &handler.Settings{RequireClientAuth: true}, trust(rsaKey))
	res := e.handler.Check(context.Background(), handler.CheckRequest{Assertion: rsaKey.Sign(e.claims())})
	require.NotNil(t, res.Err)
	assert.Equal(t, "invalid_client", res.Err.ErrorField)
	res = e.handler.Check(context.Background(), handler.CheckRequest{Assertion: rsaKey.Sign(e.claims()), ClientID: "svc"})
	assert.Nil(t, res.Err)
}

func TestHugeHeaderRefusedBeforeDecoding(t *testing.T) {
	e := newEnv(t, &handler.Settings{MaxAssertionSize: 1 << 20}, trust(rsaKey))
	header := map[string]interface{}{"kid": rsaKey.Public.KeyID, "pad": strings.Repeat("x", 9<<10)}
	_, _, err := e.token(grant(rsaKey.SignWith("RS256", header, e.claims())), nil)
	wantError(t, err, fosite.ErrInvalidGrant, "could not be parsed as a signed JWT")
	assert.Contains(t, fosite.ErrorToRFC6749Error(err).DebugField, "header is longer than")

	header["pad"] = strings.Repeat("x", 6<<10)
	_, _, err = e.token(grant(rsaKey.SignWith("RS256", header, e.claims())), nil)
	require.NoError(t, err, "a large but plausible header (an x5c chain, say) passes")
}
