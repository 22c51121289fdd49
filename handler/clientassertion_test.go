package handler_test

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
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
	"github.com/jwtbearer/jwtbearer/store/memory"
)

const (
	caIssuer   = "https://as.example"
	caTokenURL = "https://as.example/token"
	caClient   = "client-1"
	// caPinned is a client whose one key names its "alg" (RS256).
	caPinned = "client-pinned"
)

var (
	caRSA    = handlertest.NewRSAKey()
	caOther  = handlertest.NewRSAKey()
	caEC     = handlertest.NewECKey()
	caEd     = handlertest.NewEd25519Key()
	caSecret = []byte("0123456789abcdef0123456789abcdef")
)

// fakeClientKeys is a handler.ClientKeySource over a map; err, when set,
// is what every lookup returns.
type fakeClientKeys struct {
	keys map[string][]jose.JSONWebKey
	err  error
}

func (f *fakeClientKeys) ClientKeys(_ context.Context, clientID, kid string) ([]jose.JSONWebKey, error) {
	if f.err != nil {
		return nil, f.err
	}
	keys, ok := f.keys[clientID]
	if !ok {
		return nil, fmt.Errorf("%w: client %q", store.ErrNotFound, clientID)
	}
	var out []jose.JSONWebKey
	for _, k := range keys {
		if kid == "" || k.KeyID == kid {
			out = append(out, k)
		}
	}
	return out, nil
}

func newFakeClientKeys() *fakeClientKeys {
	pinned := caRSA.Public
	pinned.Algorithm = "RS256"
	return &fakeClientKeys{keys: map[string][]jose.JSONWebKey{
		caClient: {
			caRSA.Public, caEC.Public, caEd.Public,
			// A shared secret that slipped into the registry must
			// still verify nothing.
			{Key: caSecret, KeyID: "hs", Algorithm: "HS256", Use: "sig"},
		},
		caPinned: {pinned},
	}}
}

// replayCall is one ClaimJTI call.
type replayCall struct {
	issuer, jti string
	until       time.Time
}

// recordingReplay records ClaimJTI calls and passes them to inner, or
// fails them with err when it is set.
type recordingReplay struct {
	inner store.ReplayGuard
	err   error

	mu    sync.Mutex
	calls []replayCall
}

func (r *recordingReplay) ClaimJTI(ctx context.Context, issuer, jti string, until time.Time) (bool, error) {
	r.mu.Lock()
	r.calls = append(r.calls, replayCall{issuer, jti, until})
	r.mu.Unlock()
	if r.err != nil {
		return false, r.err
	}
	return r.inner.ClaimJTI(ctx, issuer, jti, until)
}

func (r *recordingReplay) recorded() []replayCall {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]replayCall(nil), r.calls...)
}

// caNow is the verifier's clock in these tests, on a whole second.
var caNow = time.Now().Truncate(time.Second)

func newVerifier(replay store.ReplayGuard) *handler.ClientAssertionVerifier {
	return &handler.ClientAssertionVerifier{
		Audiences: []string{caIssuer, caTokenURL},
		Keys:      newFakeClientKeys(),
		Replay:    replay,
		Now:       func() time.Time { return caNow },
	}
}

// caClaims are valid client-assertion claims for caClient at caNow.
func caClaims() map[string]interface{} {
	return handlertest.Claims(caClient, caClient, caIssuer, caNow)
}

func caForm(raw string) url.Values {
	return url.Values{
		"grant_type":            {"client_credentials"},
		"client_assertion_type": {handler.ClientAssertionType},
		"client_assertion":      {raw},
	}
}

// caFormWith is caForm of k's assertion of claims after edit.
func caFormWith(k *handlertest.Key, edit func(map[string]interface{})) url.Values {
	c := caClaims()
	if edit != nil {
		edit(c)
	}
	return caForm(k.Sign(c))
}

// unsigned builds a compact JWS with the given header and signature part.
func unsigned(header string, claims map[string]interface{}, sig string) string {
	enc := base64.RawURLEncoding.EncodeToString
	payload := fmt.Sprintf(`{"iss":%q,"sub":%q,"aud":%q,"exp":%d,"jti":%q}`,
		claims["iss"], claims["sub"], claims["aud"], claims["exp"], claims["jti"])
	return enc([]byte(header)) + "." + enc([]byte(payload)) + "." + sig
}

// hint is the error's hint as written (GetDescription, which the client
// sees, turns double quotes into single ones).
func hint(err error) string {
	var rfc *fosite.RFC6749Error
	if errors.As(err, &rfc) {
		return rfc.HintField
	}
	return err.Error()
}

func TestClientAssertionAuthenticate(t *testing.T) {
	at := func(d time.Duration) int64 { return caNow.Add(d).Unix() }
	tests := []struct {
		name string
		form func(t *testing.T) url.Values
		// edit changes the verifier.
		edit     func(v *handler.ClientAssertionVerifier)
		wantErr  error
		wantHint string
	}{
		{name: "RS256 with kid", form: func(*testing.T) url.Values { return caFormWith(caRSA, nil) }},
		{name: "ES256", form: func(*testing.T) url.Values { return caFormWith(caEC, nil) }},
		{name: "EdDSA", form: func(*testing.T) url.Values { return caFormWith(caEd, nil) }},
		{name: "no kid tries every key", form: func(*testing.T) url.Values { return caForm(caEC.SignNoKID(caClaims())) }},
		{name: "matching client_id", form: func(*testing.T) url.Values {
			f := caFormWith(caRSA, nil)
			f.Set("client_id", caClient)
			return f
		}},
		{name: "typ client-authentication+jwt", form: func(*testing.T) url.Values {
			return caForm(caRSA.SignWith("RS256", map[string]interface{}{"kid": caRSA.Public.KeyID, "typ": "client-authentication+jwt"}, caClaims()))
		}},
		{name: "aud is the token URL", form: func(*testing.T) url.Values {
			return caFormWith(caRSA, func(c map[string]interface{}) { c["aud"] = caTokenURL })
		}},
		{name: "aud is an array of the issuer and the token URL", form: func(*testing.T) url.Values {
			return caFormWith(caRSA, func(c map[string]interface{}) { c["aud"] = []string{caTokenURL, caIssuer} })
		}},
		// Made out to another party too: that party could replay it here.
		{name: "aud is an array holding the issuer and another party", form: func(*testing.T) url.Values {
			return caFormWith(caRSA, func(c map[string]interface{}) { c["aud"] = []string{"https://other.example", caIssuer} })
		}, wantErr: fosite.ErrInvalidClient, wantHint: "and nothing else"},
		{name: "expired within the clock skew", form: func(*testing.T) url.Values {
			return caFormWith(caRSA, func(c map[string]interface{}) { c["iat"], c["exp"] = at(-time.Minute), at(-20*time.Second) })
		}},
		{name: "nbf and iat within the clock skew", form: func(*testing.T) url.Values {
			return caFormWith(caRSA, func(c map[string]interface{}) { c["nbf"], c["iat"] = at(20*time.Second), at(20*time.Second) })
		}},
		{name: "no iat", form: func(*testing.T) url.Values {
			return caFormWith(caRSA, func(c map[string]interface{}) { delete(c, "iat") })
		}},

		// Parameters.
		{name: "wrong client_assertion_type", form: func(*testing.T) url.Values {
			f := caFormWith(caRSA, nil)
			f.Set("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:saml2-bearer")
			return f
		}, wantErr: fosite.ErrInvalidClient, wantHint: "client_assertion_type"},
		{name: "missing client_assertion_type", form: func(*testing.T) url.Values {
			f := caFormWith(caRSA, nil)
			f.Del("client_assertion_type")
			return f
		}, wantErr: fosite.ErrInvalidClient, wantHint: "client_assertion_type"},
		{name: "missing client_assertion", form: func(*testing.T) url.Values {
			f := caFormWith(caRSA, nil)
			f.Del("client_assertion")
			return f
		}, wantErr: fosite.ErrInvalidClient, wantHint: "\"client_assertion\" parameter is required"},
		{name: "repeated client_assertion", form: func(*testing.T) url.Values {
			f := caFormWith(caRSA, nil)
			f.Add("client_assertion", f.Get("client_assertion"))
			return f
		}, wantErr: fosite.ErrInvalidClient, wantHint: "more than once"},
		{name: "repeated client_assertion_type", form: func(*testing.T) url.Values {
			f := caFormWith(caRSA, nil)
			f.Add("client_assertion_type", handler.ClientAssertionType)
			return f
		}, wantErr: fosite.ErrInvalidClient, wantHint: "more than once"},
		{name: "repeated client_id", form: func(*testing.T) url.Values {
			f := caFormWith(caRSA, nil)
			f["client_id"] = []string{caClient, caClient}
			return f
		}, wantErr: fosite.ErrInvalidClient, wantHint: "more than once"},
		{name: "client_id mismatch", form: func(*testing.T) url.Values {
			f := caFormWith(caRSA, nil)
			f.Set("client_id", caPinned)
			return f
		}, wantErr: fosite.ErrInvalidClient, wantHint: "\"client_id\" parameter does not match"},
		{name: "empty client_id", form: func(*testing.T) url.Values {
			f := caFormWith(caRSA, nil)
			f.Set("client_id", "")
			return f
		}, wantErr: fosite.ErrInvalidClient, wantHint: "\"client_id\" parameter does not match"},
		{name: "parameters without values", form: func(*testing.T) url.Values {
			f := caFormWith(caRSA, nil)
			f["client_assertion_type"] = []string{}
			return f
		}, wantErr: fosite.ErrInvalidClient, wantHint: "client_assertion_type"},
		{name: "client_id without value", form: func(*testing.T) url.Values {
			f := caFormWith(caRSA, nil)
			f["client_id"] = []string{}
			return f
		}, wantErr: fosite.ErrInvalidClient, wantHint: "\"client_id\" parameter does not match"},
		{name: "client_secret too", form: func(*testing.T) url.Values {
			f := caFormWith(caRSA, nil)
			f.Set("client_secret", "s3cret")
			return f
		}, wantErr: fosite.ErrInvalidClient, wantHint: "more than one authentication method"},

		// Claims.
		{name: "missing iss", form: func(*testing.T) url.Values {
			return caFormWith(caRSA, func(c map[string]interface{}) { delete(c, "iss") })
		}, wantErr: fosite.ErrInvalidClient, wantHint: "\"iss\""},
		{name: "missing sub", form: func(*testing.T) url.Values {
			return caFormWith(caRSA, func(c map[string]interface{}) { delete(c, "sub") })
		}, wantErr: fosite.ErrInvalidClient, wantHint: "\"sub\""},
		{name: "iss differs from sub", form: func(*testing.T) url.Values {
			return caFormWith(caRSA, func(c map[string]interface{}) { c["sub"] = "someone-else" })
		}, wantErr: fosite.ErrInvalidClient, wantHint: "must both be the client_id"},
		{name: "missing jti", form: func(*testing.T) url.Values {
			return caFormWith(caRSA, func(c map[string]interface{}) { delete(c, "jti") })
		}, wantErr: fosite.ErrInvalidClient, wantHint: "\"jti\""},
		{name: "missing exp", form: func(*testing.T) url.Values {
			return caFormWith(caRSA, func(c map[string]interface{}) { delete(c, "exp") })
		}, wantErr: fosite.ErrInvalidClient, wantHint: "\"exp\""},
		{name: "missing aud", form: func(*testing.T) url.Values {
			return caFormWith(caRSA, func(c map[string]interface{}) { delete(c, "aud") })
		}, wantErr: fosite.ErrInvalidClient, wantHint: "\"aud\""},
		{name: "wrong audience", form: func(*testing.T) url.Values {
			return caFormWith(caRSA, func(c map[string]interface{}) { c["aud"] = "https://other.example/token" })
		}, wantErr: fosite.ErrInvalidClient, wantHint: "\"aud\" claim must be this server's issuer identifier"},
		{name: "audience list empty", form: func(*testing.T) url.Values { return caFormWith(caRSA, nil) },
			edit:    func(v *handler.ClientAssertionVerifier) { v.Audiences = nil },
			wantErr: fosite.ErrInvalidClient, wantHint: "no audience is configured"},
		{name: "expired", form: func(*testing.T) url.Values {
			return caFormWith(caRSA, func(c map[string]interface{}) { c["iat"], c["exp"] = at(-5*time.Minute), at(-time.Minute) })
		}, wantErr: fosite.ErrInvalidClient, wantHint: "expired"},
		{name: "not yet valid", form: func(*testing.T) url.Values {
			return caFormWith(caRSA, func(c map[string]interface{}) { c["nbf"] = at(2 * time.Minute) })
		}, wantErr: fosite.ErrInvalidClient, wantHint: "not valid yet"},
		{name: "iat in the future", form: func(*testing.T) url.Values {
			return caFormWith(caRSA, func(c map[string]interface{}) { c["iat"] = at(2 * time.Minute) })
		}, wantErr: fosite.ErrInvalidClient, wantHint: "\"iat\" (issued at) is in the future"},
		{name: "exp too far ahead", form: func(*testing.T) url.Values {
			return caFormWith(caRSA, func(c map[string]interface{}) { c["exp"] = at(2 * time.Hour) })
		}, wantErr: fosite.ErrInvalidClient, wantHint: "too far in the future"},
		{name: "lifetime from iat too long", form: func(*testing.T) url.Values {
			return caFormWith(caRSA, func(c map[string]interface{}) { c["iat"] = at(-2 * time.Hour) })
		}, wantErr: fosite.ErrInvalidClient, wantHint: "lifetime from \"iat\" to \"exp\""},
		{name: "configured max lifetime", form: func(*testing.T) url.Values {
			return caFormWith(caRSA, func(c map[string]interface{}) { c["exp"] = at(15 * time.Minute) })
		}, edit: func(v *handler.ClientAssertionVerifier) { v.MaxLifetime = 10 * time.Minute },
			wantErr: fosite.ErrInvalidClient, wantHint: "at most 10m0s"},
		{name: "no clock skew", form: func(*testing.T) url.Values {
			return caFormWith(caRSA, func(c map[string]interface{}) { c["iat"], c["exp"] = at(-time.Minute), at(-time.Second) })
		}, edit: func(v *handler.ClientAssertionVerifier) { v.ClockSkew = -1 },
			wantErr: fosite.ErrInvalidClient, wantHint: "expired"},
		{name: "claims of the wrong type", form: func(*testing.T) url.Values {
			return caFormWith(caRSA, func(c map[string]interface{}) { c["exp"] = "tomorrow" })
		}, wantErr: fosite.ErrInvalidClient, wantHint: "NumericDate"},

		// Header and form of the JWT.
		{name: "typ at+jwt", form: func(*testing.T) url.Values {
			return caForm(caRSA.SignWith("RS256", map[string]interface{}{"kid": caRSA.Public.KeyID, "typ": "at+jwt"}, caClaims()))
		}, wantErr: fosite.ErrInvalidClient, wantHint: "another kind of JWT"},
		{name: "crit", form: func(*testing.T) url.Values {
			return caForm(caRSA.SignWith("RS256", map[string]interface{}{"kid": caRSA.Public.KeyID, "crit": []string{"exp"}, "exp": 1}, caClaims()))
		}, wantErr: fosite.ErrInvalidClient, wantHint: "critical"},
		{name: "not a JWS", form: func(*testing.T) url.Values { return caForm("not.a-jwt") },
			wantErr: fosite.ErrInvalidClient, wantHint: "compact serialization"},
		{name: "larger than MaxSize", form: func(*testing.T) url.Values { return caFormWith(caRSA, nil) },
			edit:    func(v *handler.ClientAssertionVerifier) { v.MaxSize = 100 },
			wantErr: fosite.ErrInvalidClient, wantHint: "larger than the 100 bytes"},

		// Algorithms and keys.
		{name: "alg none unsigned", form: func(*testing.T) url.Values {
			return caForm(unsigned(`{"alg":"none"}`, caClaims(), ""))
		}, wantErr: fosite.ErrInvalidClient, wantHint: "compact serialization"},
		{name: "alg none with a signature part", form: func(*testing.T) url.Values {
			return caForm(unsigned(`{"alg":"none"}`, caClaims(), "AAAA"))
		}, wantErr: fosite.ErrInvalidClient, wantHint: "signing algorithm is not accepted"},
		{name: "HS256 with a registered secret", form: func(*testing.T) url.Values {
			return caForm(handlertest.SignWithKey("HS256", caSecret, map[string]interface{}{"kid": "hs"}, caClaims()))
		}, wantErr: fosite.ErrInvalidClient, wantHint: "signing algorithm is not accepted"},
		{name: "HS256 even when listed", form: func(*testing.T) url.Values {
			return caForm(handlertest.SignWithKey("HS256", caSecret, map[string]interface{}{"kid": "hs"}, caClaims()))
		}, edit: func(v *handler.ClientAssertionVerifier) { v.Algorithms = []string{"HS256", "RS256"} },
			wantErr: fosite.ErrInvalidClient, wantHint: "one of RS256."},
		{name: "HS256 keyed with the public key", form: func(*testing.T) url.Values {
			pub, err := caRSA.Public.MarshalJSON()
			require.NoError(t, err)
			return caForm(handlertest.SignWithKey("HS256", pub, map[string]interface{}{"kid": caRSA.Public.KeyID}, caClaims()))
		}, wantErr: fosite.ErrInvalidClient, wantHint: "signing algorithm is not accepted"},
		{name: "alg not on the allow-list", form: func(*testing.T) url.Values { return caFormWith(caRSA, nil) },
			edit:    func(v *handler.ClientAssertionVerifier) { v.Algorithms = []string{"ES256"} },
			wantErr: fosite.ErrInvalidClient, wantHint: "one of ES256."},
		{name: "alg not fitting the key type", form: func(*testing.T) url.Values {
			return caForm(caRSA.SignWith("RS256", map[string]interface{}{"kid": caEC.Public.KeyID}, caClaims()))
		}, wantErr: fosite.ErrInvalidClient, wantHint: "not signed by a key registered"},
		{name: "alg not the key's alg", form: func(*testing.T) url.Values {
			c := handlertest.Claims(caPinned, caPinned, caIssuer, caNow)
			return caForm(caRSA.SignWith("PS256", map[string]interface{}{"kid": caRSA.Public.KeyID}, c))
		}, wantErr: fosite.ErrInvalidClient, wantHint: "not signed by a key registered"},
		{name: "key's alg matches", form: func(*testing.T) url.Values {
			return caForm(caRSA.Sign(handlertest.Claims(caPinned, caPinned, caIssuer, caNow)))
		}},
		{name: "wrong key under a registered kid", form: func(*testing.T) url.Values {
			return caForm(caOther.SignWith("RS256", map[string]interface{}{"kid": caRSA.Public.KeyID}, caClaims()))
		}, wantErr: fosite.ErrInvalidClient, wantHint: "not signed by a key registered"},
		{name: "wrong key without kid", form: func(*testing.T) url.Values {
			return caForm(caOther.SignNoKID(caClaims()))
		}, wantErr: fosite.ErrInvalidClient, wantHint: "not signed by a key registered"},
		{name: "unknown kid", form: func(*testing.T) url.Values { return caFormWith(caOther, nil) },
			wantErr: fosite.ErrInvalidClient, wantHint: "not signed by a key registered"},
		{name: "unknown client", form: func(*testing.T) url.Values {
			return caForm(caRSA.Sign(handlertest.Claims("nobody", "nobody", caIssuer, caNow)))
		}, wantErr: fosite.ErrInvalidClient, wantHint: "not signed by a key registered"},
		{name: "client keys unavailable", form: func(*testing.T) url.Values { return caFormWith(caRSA, nil) },
			edit: func(v *handler.ClientAssertionVerifier) {
				v.Keys = &fakeClientKeys{err: fmt.Errorf("%w: jwks_uri down", store.ErrUnavailable)}
			},
			wantErr: store.ErrUnavailable, wantHint: "try again later"},
		{name: "client key lookup fails", form: func(*testing.T) url.Values { return caFormWith(caRSA, nil) },
			edit:    func(v *handler.ClientAssertionVerifier) { v.Keys = &fakeClientKeys{err: errors.New("boom")} },
			wantErr: fosite.ErrServerError},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			replay := &recordingReplay{inner: memory.New()}
			v := newVerifier(replay)
			if tt.edit != nil {
				tt.edit(v)
			}
			form := tt.form(t)
			id, err := v.Authenticate(t.Context(), form)
			if tt.wantErr == nil {
				require.NoError(t, err, "hint: %v", err)
				iss := caClient
				if strings.Contains(tt.name, "key's alg") {
					iss = caPinned
				}
				assert.Equal(t, iss, id)
				require.Len(t, replay.recorded(), 1)
				return
			}
			require.Error(t, err)
			assert.ErrorIs(t, err, tt.wantErr)
			assert.Empty(t, id)
			assert.Contains(t, hint(err), tt.wantHint)
			desc := fosite.ErrorToRFC6749Error(err).GetDescription()
			assert.Empty(t, replay.recorded(), "a refused assertion must not consume its jti")
			// The hint quotes neither the assertion nor any part of it.
			raw := form.Get("client_assertion")
			for _, part := range strings.Split(raw, ".") {
				if len(part) >= 8 {
					assert.NotContains(t, desc, part)
				}
			}
			if errors.Is(err, fosite.ErrInvalidClient) {
				assert.Equal(t, http.StatusUnauthorized, fosite.ErrorToRFC6749Error(err).CodeField)
			}
		})
	}
}

func TestClientAssertionReplay(t *testing.T) {
	replay := &recordingReplay{inner: memory.New()}
	v := newVerifier(replay)
	c := caClaims()
	form := caForm(caRSA.Sign(c))

	id, err := v.Authenticate(t.Context(), form)
	require.NoError(t, err)
	assert.Equal(t, caClient, id)

	_, err = v.Authenticate(t.Context(), form)
	require.ErrorIs(t, err, fosite.ErrInvalidClient)
	assert.Contains(t, hint(err), "client assertion has already been used")

	// The same jti in another assertion of the same client is a replay
	// too; the jti is remembered until exp plus the clock skew.
	c2 := caClaims()
	c2["jti"] = c["jti"]
	_, err = v.Authenticate(t.Context(), caForm(caEC.Sign(c2)))
	require.ErrorIs(t, err, fosite.ErrInvalidClient)

	calls := replay.recorded()
	require.Len(t, calls, 3)
	assert.Equal(t, caClient, calls[0].issuer, "claimed under its issuer, the client_id")
	assert.Equal(t, c["jti"], calls[0].jti)
	exp := time.Unix(c["exp"].(int64), 0)
	assert.True(t, calls[0].until.Equal(exp.Add(handler.DefaultClockSkew)), "until = %v; want exp + skew = %v", calls[0].until, exp.Add(handler.DefaultClockSkew))
}

// A refused assertion consumes nothing: the same assertion, sent right,
// is then accepted.
func TestClientAssertionRefusalConsumesNothing(t *testing.T) {
	v := newVerifier(memory.New())
	form := caFormWith(caRSA, nil)
	form.Set("client_id", "someone-else")
	_, err := v.Authenticate(t.Context(), form)
	require.ErrorIs(t, err, fosite.ErrInvalidClient)
	form.Del("client_id")
	id, err := v.Authenticate(t.Context(), form)
	require.NoError(t, err)
	assert.Equal(t, caClient, id)
}

func TestClientAssertionReplayStoreOutage(t *testing.T) {
	t.Run("unavailable", func(t *testing.T) {
		replay := &recordingReplay{err: fmt.Errorf("redis: claim: %w", store.ErrUnavailable)}
		_, err := newVerifier(replay).Authenticate(t.Context(), caFormWith(caRSA, nil))
		require.Error(t, err)
		assert.ErrorIs(t, err, store.ErrUnavailable)
		assert.ErrorIs(t, err, fosite.ErrTemporarilyUnavailable)
		assert.NotErrorIs(t, err, fosite.ErrInvalidClient)
		assert.Equal(t, http.StatusServiceUnavailable, fosite.ErrorToRFC6749Error(err).CodeField)
		assert.Len(t, replay.recorded(), 1)
	})
	t.Run("other failure", func(t *testing.T) {
		replay := &recordingReplay{err: errors.New("disk on fire")}
		_, err := newVerifier(replay).Authenticate(t.Context(), caFormWith(caRSA, nil))
		assert.ErrorIs(t, err, fosite.ErrServerError)
		assert.NotErrorIs(t, err, store.ErrUnavailable)
	})
}

// A client assertion's jti is claimed as a grant assertion's is, under its
// "iss": one JWT cannot serve once as a client assertion and once more as
// the grant assertion of a relationship whose issuer is that client (a
// service account signing for itself), in either order. Other issuers'
// jtis, and other clients', are their own.
func TestClientAssertionJTINamespace(t *testing.T) {
	ctx := t.Context()
	st := memory.New()
	v := newVerifier(st)
	until := caNow.Add(time.Hour)

	// The grant redeemed (client_id, jti) first: the client assertion is a
	// replay.
	c := caClaims()
	fresh, err := st.ClaimJTI(ctx, caClient, c["jti"].(string), until)
	require.NoError(t, err)
	require.True(t, fresh)
	_, err = v.Authenticate(ctx, caForm(caRSA.Sign(c)))
	require.ErrorIs(t, err, fosite.ErrInvalidClient)
	assert.ErrorIs(t, err, handler.ErrReplayed)

	// The other way round: a client assertion first, then the grant.
	c = caClaims()
	_, err = v.Authenticate(ctx, caForm(caRSA.Sign(c)))
	require.NoError(t, err)
	fresh, err = st.ClaimJTI(ctx, caClient, c["jti"].(string), until)
	require.NoError(t, err)
	assert.False(t, fresh, "the grant must find the client assertion's claim")

	// Another issuer's jti, or another client's, is no replay.
	c = caClaims()
	for _, other := range []string{caIssuer, ""} {
		fresh, err := st.ClaimJTI(ctx, other, c["jti"].(string), until)
		require.NoError(t, err)
		require.True(t, fresh)
	}
	_, err = v.Authenticate(ctx, caForm(caRSA.Sign(c)))
	require.NoError(t, err)
	c2 := handlertest.Claims(caPinned, caPinned, caIssuer, caNow)
	c2["jti"] = c["jti"]
	_, err = v.Authenticate(ctx, caForm(caRSA.Sign(c2)))
	assert.NoError(t, err)
}

// The client's rate limit is asked once the assertion verified and before
// its jti is claimed: a refused assertion is not used up, and a forged one
// spends nothing.
func TestClientAssertionLimiter(t *testing.T) {
	lim := &fakeLimiter{}
	v := newVerifier(memory.New())
	v.Limiter = lim
	form := caForm(caRSA.Sign(caClaims()))

	lim.set("client:" + caClient)
	_, err := v.Authenticate(t.Context(), form)
	require.Error(t, err)
	assert.Equal(t, http.StatusTooManyRequests, fosite.ErrorToRFC6749Error(err).CodeField)
	rl, ok := handler.AsRateLimit(err)
	require.True(t, ok)
	assert.Equal(t, handler.LimitClient, rl.Kind)

	lim.set()
	id, err := v.Authenticate(t.Context(), form)
	require.NoError(t, err, "not used up by the refusal")
	assert.Equal(t, caClient, id)
	assert.Equal(t, []string{"client:" + caClient}, lim.asked)

	lim.set("client:" + caClient)
	_, err = v.Authenticate(t.Context(), caForm(handlertest.NewRSAKey().Sign(caClaims())))
	require.ErrorIs(t, err, fosite.ErrInvalidClient)
	assert.Empty(t, lim.asked, "a forged assertion spends nothing")
}

// Of many concurrent requests with one assertion, exactly one succeeds.
func TestClientAssertionConcurrentReplay(t *testing.T) {
	v := newVerifier(memory.New())
	form := caFormWith(caEC, nil)
	var ok atomic.Int32
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			if _, err := v.Authenticate(t.Context(), form); err == nil {
				ok.Add(1)
			} else if !errors.Is(err, fosite.ErrInvalidClient) {
				t.Errorf("Authenticate: %v", err)
			}
		})
	}
	wg.Wait()
	assert.Equal(t, int32(1), ok.Load())
}

func TestClientAssertionMisconfigured(t *testing.T) {
	_, err := (&handler.ClientAssertionVerifier{}).Authenticate(t.Context(), caFormWith(caRSA, nil))
	assert.ErrorIs(t, err, fosite.ErrServerError)
}

func TestHasClientAssertion(t *testing.T) {
	for _, tt := range []struct {
		form url.Values
		want bool
	}{
		{url.Values{}, false},
		{url.Values{"client_id": {"a"}, "client_secret": {"b"}}, false},
		{url.Values{"client_assertion": {""}}, true},
		{url.Values{"client_assertion_type": {handler.ClientAssertionType}}, true},
		{caForm("x.y.z"), true},
	} {
		assert.Equal(t, tt.want, handler.HasClientAssertion(tt.form), "%v", tt.form)
	}
}
