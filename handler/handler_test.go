package handler_test

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v3"
	"github.com/ory/fosite"
	"github.com/ory/fosite/compose"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/jwtbearer/jwtbearer/handler"
	"github.com/jwtbearer/jwtbearer/handler/handlertest"
	"github.com/jwtbearer/jwtbearer/store"
	"github.com/jwtbearer/jwtbearer/store/memory"
	"github.com/jwtbearer/jwtbearer/store/storetest"
)

const untrusted = "not signed by a key this server trusts"

const (
	issuerID = "https://as.example"
	tokenURL = "https://as.example/token"
)

var (
	rsaKey   = handlertest.NewRSAKey()
	otherKey = handlertest.NewRSAKey()
	ecKey    = handlertest.NewECKey()
	edKey    = handlertest.NewEd25519Key()
)

// env is a fosite provider composed with the handler on a memory store.
type env struct {
	provider fosite.OAuth2Provider
	store    storetest.Store
	settings *handler.Settings
	now      time.Time
	// handler is a handler built as the provider's is, for Check.
	handler *handler.Handler
}

func newEnv(t testing.TB, settings *handler.Settings, trusts ...store.Trust) *env {
	t.Helper()
	return newEnvOn(t, memory.New(), settings, trusts...)
}

// newEnvOn is newEnv on the given store.
func newEnvOn(t testing.TB, st storetest.Store, settings *handler.Settings, trusts ...store.Trust) *env {
	t.Helper()
	e := &env{store: st, settings: settings, now: time.Now().Truncate(time.Second)}
	if settings.Now == nil {
		settings.Now = func() time.Time { return e.now }
	}
	cfg := &fosite.Config{
		AccessTokenLifespan: time.Hour,
		TokenURL:            tokenURL,
		AccessTokenIssuer:   issuerID,
		GlobalSecret:        []byte("0123456789abcdef0123456789abcdef"),
		HashCost:            4,
		ScopeStrategy:       fosite.ExactScopeStrategy,
	}
	e.provider = compose.Compose(cfg, e.store, compose.NewOAuth2HMACStrategy(cfg),
		handler.NewFactory(settings), compose.OAuth2ClientCredentialsGrantFactory)
	e.handler = handler.NewFactory(settings)(cfg, e.store, compose.NewOAuth2HMACStrategy(cfg)).(*handler.Handler)
	ctx := context.Background()
	for _, tr := range trusts {
		_, err := e.store.CreateTrust(ctx, tr)
		require.NoError(t, err)
	}
	hash, err := (&fosite.BCrypt{Config: cfg}).Hash(ctx, []byte("secret"))
	require.NoError(t, err)
	for _, c := range []*fosite.DefaultClient{
		{ID: "svc", Secret: hash, GrantTypes: fosite.Arguments{handler.GrantType}, Scopes: fosite.Arguments{"read"}},
		{ID: "other", Secret: hash, GrantTypes: fosite.Arguments{handler.GrantType}, Scopes: fosite.Arguments{"read", "write"}},
		{ID: "cc-only", Secret: hash, GrantTypes: fosite.Arguments{"client_credentials"}, Scopes: fosite.Arguments{"read"}},
	} {
		require.NoError(t, e.store.CreateClient(ctx, c))
	}
	return e
}

// trust is the seed's relationship: TestClient / User1 with one key.
func trust(keys ...*handlertest.Key) store.Trust {
	t := store.Trust{Issuer: "TestClient", Subject: "User1", Scopes: []string{"read", "write"}}
	for _, k := range keys {
		t.Keys = append(t.Keys, k.Public)
	}
	return t
}

// token runs the token endpoint: NewAccessRequest then NewAccessResponse.
func (e *env) token(form url.Values, header http.Header) (fosite.AccessRequester, fosite.AccessResponder, error) {
	r := httptest.NewRequest(http.MethodPost, tokenURL, strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for k, v := range header {
		r.Header[k] = v
	}
	ctx := context.Background()
	ar, err := e.provider.NewAccessRequest(ctx, r, &fosite.DefaultSession{})
	if err != nil {
		return ar, nil, err
	}
	resp, err := e.provider.NewAccessResponse(ctx, ar)
	return ar, resp, err
}

func grant(assertion string) url.Values {
	return url.Values{"grant_type": {handler.GrantType}, "assertion": {assertion}}
}

func basic(id, secret string) http.Header {
	return http.Header{"Authorization": {"Basic " + base64.StdEncoding.EncodeToString([]byte(id+":"+secret))}}
}

func (e *env) claims() map[string]interface{} {
	return handlertest.Claims("TestClient", "User1", tokenURL, e.now)
}

// wantError asserts err is the RFC 6749 error code with a hint containing hint.
func wantError(t *testing.T, err error, code error, hint string) {
	t.Helper()
	require.Error(t, err)
	require.True(t, errors.Is(err, code), "got %v, want %v", err, code)
	if hint != "" {
		// fosite shows double quotes in descriptions as single quotes.
		assert.Contains(t, fosite.ErrorToRFC6749Error(err).GetDescription(), strings.ReplaceAll(hint, `"`, "'"))
	}
}

func TestAssertionChecks(t *testing.T) {
	type tc struct {
		name     string
		settings handler.Settings
		trust    func() store.Trust
		form     func(e *env) url.Values
		header   http.Header
		wantErr  error
		hint     string
		debug    string // the precise reason, kept from the caller
		check    func(t *testing.T, e *env, ar fosite.AccessRequester, resp fosite.AccessResponder)
	}
	signed := func(mod func(c map[string]interface{})) func(e *env) url.Values {
		return func(e *env) url.Values {
			c := e.claims()
			if mod != nil {
				mod(c)
			}
			return grant(rsaKey.Sign(c))
		}
	}
	tests := []tc{
		{name: "valid RS256", form: signed(nil), check: func(t *testing.T, e *env, ar fosite.AccessRequester, resp fosite.AccessResponder) {
			assert.Equal(t, "User1", ar.GetSession().GetSubject())
			assert.Equal(t, "TestClient", ar.GetClient().GetID(), "unauthenticated tokens are attributed to the issuer")
			assert.Empty(t, ar.GetGrantedAudience(), "the assertion's aud is not copied into the token")
			assert.Equal(t, "bearer", resp.GetTokenType())
			assert.NotEmpty(t, resp.GetAccessToken())
			assert.Nil(t, resp.GetExtra("refresh_token"))
		}},
		{name: "valid ES256", trust: func() store.Trust { return trust(ecKey) }, form: func(e *env) url.Values { return grant(ecKey.Sign(e.claims())) }},
		{name: "valid EdDSA", trust: func() store.Trust { return trust(edKey) }, form: func(e *env) url.Values { return grant(edKey.Sign(e.claims())) }},
		{name: "no kid tries the subject's keys", trust: func() store.Trust { return trust(otherKey, rsaKey) },
			form: func(e *env) url.Values { return grant(rsaKey.SignNoKID(e.claims())) }},
		{name: "missing assertion", form: func(*env) url.Values { return url.Values{"grant_type": {handler.GrantType}} },
			wantErr: fosite.ErrInvalidRequest, hint: `"assertion" parameter is required`},
		{name: "repeated assertion", form: func(e *env) url.Values {
			f := signed(nil)(e)
			f.Add("assertion", f.Get("assertion"))
			return f
		}, wantErr: fosite.ErrInvalidRequest, hint: "more than once"},
		{name: "repeated scope", form: func(e *env) url.Values {
			f := signed(nil)(e)
			f["scope"] = []string{"read", "write"}
			return f
		}, wantErr: fosite.ErrInvalidRequest, hint: "more than once"},
		{name: "repeated grant_type", form: func(e *env) url.Values {
			f := signed(nil)(e)
			f.Add("grant_type", handler.GrantType)
			return f
		}, wantErr: fosite.ErrInvalidRequest, hint: "more than once"},
		{name: "too large", settings: handler.Settings{MaxAssertionSize: 200}, form: signed(nil),
			wantErr: fosite.ErrInvalidGrant, hint: "larger than the 200 bytes"},
		{name: "JSON serialization refused", form: func(e *env) url.Values {
			obj, err := jose.ParseSigned(rsaKey.Sign(e.claims()))
			require.NoError(t, err)
			return grant(obj.FullSerialize())
		}, wantErr: fosite.ErrInvalidGrant, hint: "compact serialization"},
		{name: "four parts refused", form: func(e *env) url.Values { return grant(rsaKey.Sign(e.claims()) + ".AAAA") },
			wantErr: fosite.ErrInvalidGrant, hint: "compact serialization"},
		{name: "padding refused", form: func(e *env) url.Values { return grant(rsaKey.Sign(e.claims()) + "==") },
			wantErr: fosite.ErrInvalidGrant, hint: "compact serialization"},
		{name: "garbage", form: func(*env) url.Values { return grant("aaaa.bbbb.cccc") },
			wantErr: fosite.ErrInvalidGrant, hint: "could not be parsed"},
		{name: "alg none refused", form: func(e *env) url.Values {
			h := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`))
			p := base64.RawURLEncoding.EncodeToString([]byte(fmt.Sprintf(`{"iss":"TestClient","sub":"User1","aud":%q,"exp":%d,"jti":"x"}`, tokenURL, e.now.Add(time.Minute).Unix())))
			return grant(h + "." + p + ".AAAA")
		}, wantErr: fosite.ErrInvalidGrant, hint: "algorithm"},
		{name: "HS256 with the public key as secret refused", form: func(e *env) url.Values {
			pub, err := rsaKey.Public.MarshalJSON()
			require.NoError(t, err)
			return grant(handlertest.SignWithKey(jose.HS256, pub, map[string]interface{}{"kid": rsaKey.Public.KeyID}, e.claims()))
		}, wantErr: fosite.ErrInvalidGrant, hint: untrusted, debug: `algorithm "HS256" is not allowed`},
		{name: "crit header refused", form: func(e *env) url.Values {
			return grant(rsaKey.SignWith("RS256", map[string]interface{}{"kid": rsaKey.Public.KeyID, "crit": []string{"exp"}, "exp": 1}, e.claims()))
		}, wantErr: fosite.ErrInvalidGrant, hint: "critical extensions"},
		{name: "kid too long", form: func(e *env) url.Values {
			return grant(rsaKey.SignWith("RS256", map[string]interface{}{"kid": strings.Repeat("k", 300)}, e.claims()))
		}, wantErr: fosite.ErrInvalidGrant, hint: `"kid" is longer`},
		{name: "jku header is not used to find keys", form: func(e *env) url.Values {
			return grant(otherKey.SignWith("RS256", map[string]interface{}{"jku": "https://attacker.example/jwks"}, e.claims()))
		}, wantErr: fosite.ErrInvalidGrant, hint: untrusted, debug: "does not verify"},
		{name: "key without kid is known by its thumbprint", trust: func() store.Trust {
			tr := trust(rsaKey)
			tr.Keys[0].KeyID = ""
			return tr
		}, form: signed(nil)},
		{name: "embedded jwk header is not used", form: func(e *env) url.Values {
			return grant(otherKey.SignWith("RS256", map[string]interface{}{"jwk": otherKey.Public}, e.claims()))
		}, wantErr: fosite.ErrInvalidGrant, hint: untrusted, debug: "does not verify"},
		{name: "x5u header is not used", form: func(e *env) url.Values {
			return grant(otherKey.SignWith("RS256", map[string]interface{}{"x5u": "https://attacker.example/cert"}, e.claims()))
		}, wantErr: fosite.ErrInvalidGrant, hint: untrusted, debug: "does not verify"},
		{name: "symmetric key held by the relationship", trust: func() store.Trust {
			return store.Trust{Issuer: "TestClient", Subject: "User1", Algorithms: []string{"HS256"},
				Keys: []jose.JSONWebKey{{Key: []byte("0123456789abcdef0123456789abcdef"), KeyID: "shared"}}}
		}, form: func(e *env) url.Values {
			return grant(handlertest.SignWithKey(jose.HS256, []byte("0123456789abcdef0123456789abcdef"), map[string]interface{}{"kid": "shared"}, e.claims()))
		}},
		{name: "key of another relationship of the issuer", trust: func() store.Trust {
			tr := trust(otherKey)
			tr.Subject = "User2"
			return tr
		}, form: func(e *env) url.Values {
			return grant(otherKey.Sign(e.claims()))
		}, wantErr: fosite.ErrInvalidGrant, hint: untrusted, debug: "no key with kid"},
		{name: "missing iss", form: signed(func(c map[string]interface{}) { delete(c, "iss") }),
			wantErr: fosite.ErrInvalidGrant, hint: `"iss"`},
		{name: "missing sub", form: signed(func(c map[string]interface{}) { delete(c, "sub") }),
			wantErr: fosite.ErrInvalidGrant, hint: `"sub"`},
		{name: "exp of the wrong type", form: signed(func(c map[string]interface{}) { c["exp"] = "tomorrow" }),
			wantErr: fosite.ErrInvalidGrant, hint: `"exp" must be a NumericDate`},
		{name: "unknown issuer", form: signed(func(c map[string]interface{}) { c["iss"] = "Stranger" }),
			wantErr: fosite.ErrInvalidGrant, hint: untrusted, debug: `issuer "Stranger" and subject "User1"`},
		{name: "other subject", form: signed(func(c map[string]interface{}) { c["sub"] = "User2" }),
			wantErr: fosite.ErrInvalidGrant, hint: untrusted, debug: `issuer "TestClient" and subject "User2"`},
		{name: "unknown kid", form: func(e *env) url.Values {
			return grant(rsaKey.SignWith("RS256", map[string]interface{}{"kid": "nope"}, e.claims()))
		}, wantErr: fosite.ErrInvalidGrant, hint: untrusted, debug: `kid "nope"`},
		{name: "wrong key under the right kid", form: func(e *env) url.Values {
			return grant(otherKey.SignWith("RS256", map[string]interface{}{"kid": rsaKey.Public.KeyID}, e.claims()))
		}, wantErr: fosite.ErrInvalidGrant, hint: untrusted, debug: "does not verify"},
		{name: "alg pinned to the key's alg", trust: func() store.Trust {
			tr := trust(rsaKey)
			tr.Keys[0].Algorithm = "RS256"
			return tr
		}, form: func(e *env) url.Values {
			return grant(rsaKey.SignWith("PS256", map[string]interface{}{"kid": rsaKey.Public.KeyID}, e.claims()))
		}, wantErr: fosite.ErrInvalidGrant, hint: untrusted, debug: `"PS256" is not allowed`},
		{name: "relationship's algorithm list", trust: func() store.Trust {
			tr := trust(rsaKey)
			tr.Algorithms = []string{"PS256"}
			return tr
		}, form: signed(nil), wantErr: fosite.ErrInvalidGrant, hint: untrusted, debug: `"RS256" is not allowed`},
		{name: "settings' algorithm list", settings: handler.Settings{Algorithms: []string{"ES256"}}, form: signed(nil),
			wantErr: fosite.ErrInvalidGrant, hint: untrusted, debug: `"RS256" is not allowed`},
		{name: "expired relationship", trust: func() store.Trust {
			tr := trust(rsaKey)
			tr.ExpiresAt = time.Now().Add(-time.Minute)
			return tr
		}, form: signed(nil), wantErr: fosite.ErrInvalidGrant, hint: untrusted, debug: "relationship has expired"},
		{name: "expired relationship with kid", trust: func() store.Trust {
			tr := trust(rsaKey)
			tr.ExpiresAt = time.Now().Add(-time.Minute)
			return tr
		}, form: func(e *env) url.Values { return grant(rsaKey.Sign(e.claims())) }, wantErr: fosite.ErrInvalidGrant, hint: untrusted, debug: "relationship has expired"},
		{name: "aud missing", form: signed(func(c map[string]interface{}) { delete(c, "aud") }),
			wantErr: fosite.ErrInvalidGrant, hint: `"aud"`},
		{name: "aud of another server", form: signed(func(c map[string]interface{}) { c["aud"] = "https://other.example/token" }),
			wantErr: fosite.ErrInvalidGrant, hint: tokenURL},
		{name: "aud array containing the token URL", form: signed(func(c map[string]interface{}) { c["aud"] = []string{"x", tokenURL} })},
		{name: "aud is the issuer identifier", form: signed(func(c map[string]interface{}) { c["aud"] = issuerID })},
		{name: "aud compared without normalisation", form: signed(func(c map[string]interface{}) { c["aud"] = issuerID + "/" }),
			wantErr: fosite.ErrInvalidGrant, hint: `"aud"`},
		{name: "configured audience", settings: handler.Settings{Audiences: []string{"https://api.mysite.com"}},
			form: signed(func(c map[string]interface{}) { c["aud"] = "https://api.mysite.com" })},
		{name: "exp missing", form: signed(func(c map[string]interface{}) { delete(c, "exp") }),
			wantErr: fosite.ErrInvalidGrant, hint: `"exp"`},
		{name: "expired beyond the skew", form: func(e *env) url.Values {
			c := e.claims()
			c["exp"] = e.now.Add(-31 * time.Second).Unix()
			c["iat"] = e.now.Add(-time.Minute).Unix()
			return grant(rsaKey.Sign(c))
		}, wantErr: fosite.ErrInvalidGrant, hint: "has expired"},
		{name: "expired within the skew", form: func(e *env) url.Values {
			c := e.claims()
			c["exp"] = e.now.Add(-29 * time.Second).Unix()
			c["iat"] = e.now.Add(-time.Minute).Unix()
			return grant(rsaKey.Sign(c))
		}},
		{name: "no skew configured", settings: handler.Settings{ClockSkew: -1}, form: func(e *env) url.Values {
			c := e.claims()
			c["exp"] = e.now.Add(-1 * time.Second).Unix()
			c["iat"] = e.now.Add(-time.Minute).Unix()
			return grant(rsaKey.Sign(c))
		}, wantErr: fosite.ErrInvalidGrant, hint: "has expired"},
		{name: "nbf in the future", form: func(e *env) url.Values {
			c := e.claims()
			c["nbf"] = e.now.Add(31 * time.Second).Unix()
			return grant(rsaKey.Sign(c))
		}, wantErr: fosite.ErrInvalidGrant, hint: `"nbf"`},
		{name: "nbf within the skew", form: func(e *env) url.Values {
			c := e.claims()
			c["nbf"] = e.now.Add(29 * time.Second).Unix()
			return grant(rsaKey.Sign(c))
		}},
		{name: "iat in the future", form: func(e *env) url.Values {
			c := e.claims()
			c["iat"] = e.now.Add(time.Minute).Unix()
			return grant(rsaKey.Sign(c))
		}, wantErr: fosite.ErrInvalidGrant, hint: `"iat"`},
		{name: "exp too far ahead", form: signed(func(c map[string]interface{}) {
			delete(c, "iat")
			c["exp"] = time.Now().Add(2 * time.Hour).Unix()
		}), wantErr: fosite.ErrInvalidGrant, hint: "too far in the future"},
		{name: "exp minus iat too long", form: func(e *env) url.Values {
			c := e.claims()
			c["iat"] = e.now.Add(-2 * time.Hour).Unix()
			c["exp"] = e.now.Add(time.Minute).Unix()
			return grant(rsaKey.Sign(c))
		}, wantErr: fosite.ErrInvalidGrant, hint: `from "iat" to "exp"`},
		{name: "lifetime setting", settings: handler.Settings{MaxAssertionLifetime: time.Minute}, form: signed(nil),
			wantErr: fosite.ErrInvalidGrant, hint: "at most 1m0s"},
		{name: "jti required by default", form: signed(func(c map[string]interface{}) { delete(c, "jti") }),
			wantErr: fosite.ErrInvalidGrant, hint: `"jti"`},
		{name: "jti optional by setting", settings: handler.Settings{JTIOptional: true}, form: signed(func(c map[string]interface{}) { delete(c, "jti") })},
		{name: "jti optional by relationship", trust: func() store.Trust {
			tr := trust(rsaKey)
			tr.RequireJTI = new(bool)
			return tr
		}, form: signed(func(c map[string]interface{}) { delete(c, "jti") })},
		{name: "jti required by relationship", settings: handler.Settings{JTIOptional: true}, trust: func() store.Trust {
			tr := trust(rsaKey)
			yes := true
			tr.RequireJTI = &yes
			return tr
		}, form: signed(func(c map[string]interface{}) { delete(c, "jti") }), wantErr: fosite.ErrInvalidGrant, hint: `"jti"`},
		{name: "jti too long", form: signed(func(c map[string]interface{}) { c["jti"] = strings.Repeat("j", 300) }),
			wantErr: fosite.ErrInvalidGrant, hint: `"jti" is longer`},
		{name: "scope within the relationship", form: func(e *env) url.Values {
			f := signed(nil)(e)
			f.Set("scope", "read write")
			return f
		}, check: func(t *testing.T, _ *env, ar fosite.AccessRequester, resp fosite.AccessResponder) {
			assert.ElementsMatch(t, []string{"read", "write"}, ar.GetGrantedScopes())
			assert.Equal(t, "read write", resp.GetExtra("scope"))
		}},
		{name: "scope beyond the relationship", form: func(e *env) url.Values {
			f := signed(nil)(e)
			f.Set("scope", "read admin")
			return f
		}, wantErr: fosite.ErrInvalidScope, hint: `"admin"`},
		{name: "scope claim used without scope parameter", form: signed(func(c map[string]interface{}) { c["scope"] = "write" }),
			check: func(t *testing.T, _ *env, ar fosite.AccessRequester, _ fosite.AccessResponder) {
				assert.Equal(t, fosite.Arguments{"write"}, ar.GetGrantedScopes())
			}},
		{name: "scope claim checked too", form: signed(func(c map[string]interface{}) { c["scope"] = "admin" }),
			wantErr: fosite.ErrInvalidScope, hint: `"admin"`},
		{name: "scope parameter narrows the claim", form: func(e *env) url.Values {
			c := e.claims()
			c["scope"] = "read write"
			f := grant(rsaKey.Sign(c))
			f.Set("scope", "read")
			return f
		}, check: func(t *testing.T, _ *env, ar fosite.AccessRequester, _ fosite.AccessResponder) {
			assert.Equal(t, fosite.Arguments{"read"}, ar.GetGrantedScopes())
		}},
		{name: "scope parameter cannot widen the claim", form: func(e *env) url.Values {
			c := e.claims()
			c["scope"] = "read"
			f := grant(rsaKey.Sign(c))
			f.Set("scope", "read write")
			return f
		}, wantErr: fosite.ErrInvalidScope, hint: `"write" is not in the assertion's "scope" claim`},
		{name: "claim names are case-sensitive", form: signed(func(c map[string]interface{}) { c["Scope"] = "write"; c["ISS"] = "Stranger" }),
			check: func(t *testing.T, _ *env, ar fosite.AccessRequester, _ fosite.AccessResponder) {
				assert.Empty(t, ar.GetGrantedScopes(), `"Scope" is not "scope"`)
			}},
		{name: "NumericDate overflow refused", form: signed(func(c map[string]interface{}) { c["nbf"] = 1e19 }),
			wantErr: fosite.ErrInvalidGrant, hint: `"nbf" must be a NumericDate`},
		{name: "negative exp refused", form: signed(func(c map[string]interface{}) { c["exp"] = -1 }),
			wantErr: fosite.ErrInvalidGrant, hint: `"exp" must be a NumericDate`},
		{name: "aud of the wrong type", form: signed(func(c map[string]interface{}) { c["aud"] = map[string]string{"x": "y"} }),
			wantErr: fosite.ErrInvalidGrant, hint: `"aud" must be a string`},
		{name: "claims not an object", form: func(e *env) url.Values {
			return grant(handlertest.SignRaw(rsaKey, []byte(`["iss"]`)))
		}, wantErr: fosite.ErrInvalidGrant, hint: "not a JSON object"},
		{name: "access token typ refused", form: func(e *env) url.Values {
			return grant(rsaKey.SignWith("RS256", map[string]interface{}{"kid": rsaKey.Public.KeyID, "typ": "at+jwt"}, e.claims()))
		}, wantErr: fosite.ErrInvalidGrant, hint: "another kind of JWT"},
		{name: "unknown algorithm refused before lookup", form: func(e *env) url.Values {
			h := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"XS999"}`))
			p := base64.RawURLEncoding.EncodeToString([]byte(`{"iss":"TestClient","sub":"User1"}`))
			return grant(h + "." + p + ".AAAA")
		}, wantErr: fosite.ErrInvalidGrant, hint: `"XS999" is not accepted`},
		{name: "token lifetime capped at the assertion", form: signed(nil), check: func(t *testing.T, _ *env, _ fosite.AccessRequester, resp fosite.AccessResponder) {
			assert.LessOrEqual(t, resp.GetExtra("expires_in"), int64(300))
			assert.Greater(t, resp.GetExtra("expires_in"), int64(250))
		}},
		{name: "token lifetime cap off", settings: handler.Settings{NoTokenLifetimeCap: true}, form: signed(nil),
			check: func(t *testing.T, _ *env, _ fosite.AccessRequester, resp fosite.AccessResponder) {
				assert.Greater(t, resp.GetExtra("expires_in"), int64(3500))
			}},
		{name: "client credentials present and wrong", form: signed(nil), header: basic("svc", "wrong"),
			wantErr: fosite.ErrInvalidClient},
		{name: "client_id of an unknown client", form: func(e *env) url.Values {
			f := signed(nil)(e)
			f.Set("client_id", "nobody")
			return f
		}, wantErr: fosite.ErrInvalidClient},
		{name: "authenticated client", form: signed(nil), header: basic("svc", "secret"),
			check: func(t *testing.T, _ *env, ar fosite.AccessRequester, _ fosite.AccessResponder) {
				assert.Equal(t, "svc", ar.GetClient().GetID())
			}},
		{name: "authenticated client without the grant type", form: signed(nil), header: basic("cc-only", "secret"),
			wantErr: fosite.ErrUnauthorizedClient},
		{name: "client scope ceiling", form: func(e *env) url.Values {
			f := signed(nil)(e)
			f.Set("scope", "write")
			return f
		}, header: basic("svc", "secret"), wantErr: fosite.ErrInvalidScope, hint: "client is not allowed"},
		{name: "client authentication required", settings: handler.Settings{RequireClientAuth: true}, form: signed(nil),
			wantErr: fosite.ErrInvalidRequest},
		{name: "relationship restricted to clients, no client", trust: func() store.Trust {
			tr := trust(rsaKey)
			tr.Clients = []string{"svc"}
			return tr
		}, form: signed(nil), wantErr: fosite.ErrInvalidClient, hint: "Client authentication is required"},
		{name: "relationship restricted to another client", trust: func() store.Trust {
			tr := trust(rsaKey)
			tr.Clients = []string{"svc"}
			return tr
		}, form: signed(nil), header: basic("other", "secret"), wantErr: fosite.ErrUnauthorizedClient},
		{name: "relationship restricted to this client", trust: func() store.Trust {
			tr := trust(rsaKey)
			tr.Clients = []string{"svc"}
			return tr
		}, form: signed(nil), header: basic("svc", "secret")},
		{name: "audience request without a client", form: func(e *env) url.Values {
			f := signed(nil)(e)
			f.Set("audience", "https://api.example")
			return f
		}, wantErr: fosite.ErrInvalidRequest, hint: "audience"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := trust(rsaKey)
			if tt.trust != nil {
				tr = tt.trust()
			}
			settings := tt.settings
			e := newEnv(t, &settings, tr)
			ar, resp, err := e.token(tt.form(e), tt.header)
			if tt.wantErr != nil {
				wantError(t, err, tt.wantErr, tt.hint)
				assert.Contains(t, fosite.ErrorToRFC6749Error(err).DebugField, tt.debug)
				return
			}
			require.NoError(t, err)
			if tt.check != nil {
				tt.check(t, e, ar, resp)
			}
		})
	}
}

func TestReplay(t *testing.T) {
	e := newEnv(t, &handler.Settings{}, trust(rsaKey), store.Trust{Issuer: "Other", Subject: "User1", Keys: []jose.JSONWebKey{rsaKey.Public}})
	c := e.claims()
	a := rsaKey.Sign(c)
	_, _, err := e.token(grant(a), nil)
	require.NoError(t, err)

	_, _, err = e.token(grant(a), nil)
	wantError(t, err, fosite.ErrInvalidGrant, "already been used")

	// A new assertion with the same jti from the same issuer is a replay too.
	c["iat"] = e.now.Unix() - 1
	_, _, err = e.token(grant(rsaKey.Sign(c)), nil)
	wantError(t, err, fosite.ErrInvalidGrant, "already been used")

	// jtis are namespaced by issuer (RFC 7519 §4.1.7).
	c["iss"] = "Other"
	_, _, err = e.token(grant(rsaKey.Sign(c)), nil)
	require.NoError(t, err)
}

func TestRejectedRequestConsumesNothing(t *testing.T) {
	e := newEnv(t, &handler.Settings{}, trust(rsaKey))
	a := rsaKey.Sign(e.claims())
	f := grant(a)
	f.Set("scope", "admin")
	_, _, err := e.token(f, nil)
	wantError(t, err, fosite.ErrInvalidScope, "")
	_, _, err = e.token(grant(a), nil)
	require.NoError(t, err, "the jti of a rejected request stays unused")
}

func TestConcurrentCopiesOneWinner(t *testing.T) {
	e := newEnv(t, &handler.Settings{}, trust(rsaKey))
	a := rsaKey.Sign(e.claims())
	const n = 64
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _, errs[i] = e.token(grant(a), nil)
		}()
	}
	wg.Wait()
	ok := 0
	for _, err := range errs {
		if err == nil {
			ok++
			continue
		}
		require.True(t, errors.Is(err, fosite.ErrInvalidGrant), "got %v", err)
	}
	assert.Equal(t, 1, ok)
}

// failingStore fails the replay claim, as a store outage would.
type failingStore struct {
	*memory.Store
	err error
}

func (f failingStore) ClaimJTI(context.Context, string, string, time.Time) (bool, error) {
	return false, f.err
}

func TestStoreFailureIssuesNothing(t *testing.T) {
	for _, tt := range []struct {
		err  error
		want error
	}{
		{errors.New("disk on fire"), fosite.ErrServerError},
		{fmt.Errorf("redis: dial: %w", store.ErrUnavailable), fosite.ErrTemporarilyUnavailable},
	} {
		t.Run(tt.want.Error(), func(t *testing.T) {
			st := failingStore{memory.New(), tt.err}
			_, err := st.CreateTrust(context.Background(), trust(rsaKey))
			require.NoError(t, err)
			cfg := &fosite.Config{AccessTokenLifespan: time.Hour, TokenURL: tokenURL, GlobalSecret: []byte("0123456789abcdef0123456789abcdef")}
			p := compose.Compose(cfg, st, compose.NewOAuth2HMACStrategy(cfg), handler.Factory)
			r := httptest.NewRequest(http.MethodPost, tokenURL, strings.NewReader(grant(rsaKey.Sign(handlertest.Claims("TestClient", "User1", tokenURL, time.Now()))).Encode()))
			r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			_, err = p.NewAccessRequest(context.Background(), r, &fosite.DefaultSession{})
			wantError(t, err, tt.want, "")
			assert.NotContains(t, fosite.ErrorToRFC6749Error(err).GetDescription(), "fire", "causes stay out of the description")
		})
	}
}

func TestRefreshTokensWhenConfigured(t *testing.T) {
	e := newEnv(t, &handler.Settings{IssueRefreshTokens: true}, trust(rsaKey))
	hash, err := (&fosite.BCrypt{Config: &fosite.Config{HashCost: 4}}).Hash(context.Background(), []byte("secret"))
	require.NoError(t, err)
	require.NoError(t, e.store.CreateClient(context.Background(), &fosite.DefaultClient{
		ID: "refresher", Secret: hash, GrantTypes: fosite.Arguments{handler.GrantType, "refresh_token"},
	}))
	_, resp, err := e.token(grant(rsaKey.Sign(e.claims())), basic("refresher", "secret"))
	require.NoError(t, err)
	assert.NotEmpty(t, resp.GetExtra("refresh_token"))

	// Without client authentication there is nobody to refresh for.
	_, resp, err = e.token(grant(rsaKey.Sign(e.claims())), nil)
	require.NoError(t, err)
	assert.Nil(t, resp.GetExtra("refresh_token"))
}

// A copy that passes the exp check just before exp + skew, and reaches the
// replay guard after it, must still meet the first claim.
func TestReplayAtTheEdgeOfExpiry(t *testing.T) {
	e := newEnv(t, &handler.Settings{}, trust(rsaKey))
	c := e.claims()
	c["iat"] = e.now.Add(-time.Minute).Unix()
	c["exp"] = e.now.Add(-29 * time.Second).Unix() // exp + skew is one second away
	a := rsaKey.Sign(c)
	_, _, err := e.token(grant(a), nil)
	require.NoError(t, err)
	time.Sleep(1100 * time.Millisecond) // the store's clock passes exp + skew; the handler's does not
	_, _, err = e.token(grant(a), nil)
	wantError(t, err, fosite.ErrInvalidGrant, "already been used")
}

func TestPublicClientIsNotAuthenticated(t *testing.T) {
	tr := trust(rsaKey)
	tr.Clients = []string{"pub"}
	e := newEnv(t, &handler.Settings{}, tr)
	require.NoError(t, e.store.CreateClient(context.Background(), &fosite.DefaultClient{
		ID: "pub", Public: true, GrantTypes: fosite.Arguments{handler.GrantType}, Scopes: fosite.Arguments{"read"},
	}))
	f := grant(rsaKey.Sign(e.claims()))
	f.Set("client_id", "pub")
	_, _, err := e.token(f, nil)
	wantError(t, err, fosite.ErrInvalidClient, "Client authentication is required")
}
