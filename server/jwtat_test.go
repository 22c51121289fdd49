package server

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v3"
	"github.com/go-jose/go-jose/v3/jwt"
	"github.com/ory/fosite"
	"github.com/ory/fosite/compose"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"
	"golang.org/x/crypto/bcrypt"

	"github.com/jwtbearer/jwtbearer/store"
	"github.com/jwtbearer/jwtbearer/store/memory"
)

const atTestIssuer = "https://as.example"

// atClock is a clock the tests move by hand.
type atClock struct {
	mu sync.Mutex
	t  time.Time
}

func newATClock() *atClock { return &atClock{t: time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC)} }

func (c *atClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *atClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

func (c *atClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func atBase(t *testing.T) *tokenStrategy {
	t.Helper()
	base, err := newTokenStrategy(&fosite.Config{GlobalSecret: []byte("0123456789abcdef0123456789abcdef"), AccessTokenLifespan: time.Hour})
	require.NoError(t, err)
	return base
}

// newTestJAT builds the strategy with a 10-minute lifetime on clock.
func newTestJAT(t *testing.T, cfg AccessTokensConfig, dir string, clock *atClock) *jwtAccessTokens {
	t.Helper()
	cfg.Format = AccessTokensJWT
	j, err := newJWTAccessTokens(cfg, dir, atTestIssuer, 10*time.Minute, atBase(t), clock.Now)
	require.NoError(t, err)
	return j
}

// atKeyOf makes a private key for alg.
func atKeyOf(t *testing.T, alg jose.SignatureAlgorithm) crypto.Signer {
	t.Helper()
	if alg == jose.EdDSA {
		_, k, err := ed25519.GenerateKey(rand.Reader)
		require.NoError(t, err)
		return k
	}
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	return k
}

// atPKCS8 encodes a private key as a PEM "PRIVATE KEY" block.
func atPKCS8(t *testing.T, key any) string {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	require.NoError(t, err)
	return string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
}

// atJWKMap is a private JWK as the YAML decoder gives it to KeyConfig.JWK.
func atJWKMap(t *testing.T, k jose.JSONWebKey) map[string]any {
	t.Helper()
	data, err := json.Marshal(k)
	require.NoError(t, err)
	var m map[string]any
	require.NoError(t, json.Unmarshal(data, &m))
	return m
}

func atThumbprint(t *testing.T, key crypto.Signer) string {
	t.Helper()
	tp, err := store.Thumbprint(&jose.JSONWebKey{Key: key.Public()})
	require.NoError(t, err)
	return tp
}

// atJWTBearerRequest is a request as the jwt-bearer handler leaves it when
// no client authenticated: the client is the assertion's issuer, the
// subject the assertion's.
func atJWTBearerRequest(now time.Time) *fosite.AccessRequest {
	ar := fosite.NewAccessRequest(&fosite.DefaultSession{Subject: "spiffe://example.org/billing"})
	ar.Client = &fosite.DefaultClient{ID: "https://idp.example"}
	ar.GrantScope("invoices:read")
	ar.GrantScope("invoices:write")
	ar.GrantAudience("https://api.example")
	ar.Session.SetExpiresAt(fosite.AccessToken, now.Add(5*time.Minute))
	return ar
}

// atClientCredentialsRequest is a client_credentials request: no subject.
func atClientCredentialsRequest(now time.Time) *fosite.AccessRequest {
	ar := fosite.NewAccessRequest(&fosite.DefaultSession{})
	ar.Client = &fosite.DefaultClient{ID: "reporting"}
	ar.GrantScope("invoices:read")
	ar.Session.SetExpiresAt(fosite.AccessToken, now.Add(10*time.Minute))
	return ar
}

// atSegment decodes one part of a compact JWS as a JSON object.
func atSegment(t *testing.T, token string, i int) map[string]any {
	t.Helper()
	parts := strings.Split(token, ".")
	require.Len(t, parts, 3)
	data, err := b64.DecodeString(parts[i])
	require.NoError(t, err)
	var m map[string]any
	require.NoError(t, json.Unmarshal(data, &m))
	return m
}

// atSign builds a compact JWS by hand, with any header and payload, signed
// with key (nil: an empty signature).
func atSign(t *testing.T, key crypto.Signer, header map[string]any, payload any) string {
	t.Helper()
	h, err := json.Marshal(header)
	require.NoError(t, err)
	p, ok := payload.([]byte)
	if !ok {
		p, err = json.Marshal(payload)
		require.NoError(t, err)
	}
	input := b64.EncodeToString(h) + "." + b64.EncodeToString(p)
	var sig []byte
	switch k := key.(type) {
	case nil:
	case ed25519.PrivateKey:
		sig = ed25519.Sign(k, []byte(input))
	case *ecdsa.PrivateKey:
		sum := sha256.Sum256([]byte(input))
		r, s, err := ecdsa.Sign(rand.Reader, k, sum[:])
		require.NoError(t, err)
		sig = make([]byte, 64)
		r.FillBytes(sig[:32])
		s.FillBytes(sig[32:])
	default:
		t.Fatalf("atSign: unsupported key %T", key)
	}
	return input + "." + b64.EncodeToString(sig)
}

// An issued token has RFC 9068's header and claims, and verifies with
// go-jose against the published key set.
func TestJWTAccessTokenClaims(t *testing.T) {
	ctx := context.Background()
	for _, alg := range []jose.SignatureAlgorithm{jose.ES256, jose.EdDSA} {
		clock := newATClock()
		now := clock.Now()
		tests := []struct {
			name     string
			audience []string
			req      *fosite.AccessRequest
			want     map[string]any
		}{{
			name: "jwt-bearer",
			req:  atJWTBearerRequest(now),
			want: map[string]any{
				"iss":       atTestIssuer,
				"sub":       "spiffe://example.org/billing",
				"aud":       "https://api.example",
				"client_id": "https://idp.example",
				"scope":     "invoices:read invoices:write",
				"iat":       float64(now.Unix()),
				"exp":       float64(now.Add(5 * time.Minute).Unix()),
			},
		}, {
			name: "client_credentials: the client is the subject, the issuer the audience",
			req:  atClientCredentialsRequest(now),
			want: map[string]any{
				"iss":       atTestIssuer,
				"sub":       "reporting",
				"aud":       atTestIssuer,
				"client_id": "reporting",
				"scope":     "invoices:read",
				"iat":       float64(now.Unix()),
				"exp":       float64(now.Add(10 * time.Minute).Unix()),
			},
		}, {
			name:     "configured audience, no scope, no session expiry",
			audience: []string{"https://api.example", "https://files.example"},
			req: func() *fosite.AccessRequest {
				ar := fosite.NewAccessRequest(&fosite.DefaultSession{Subject: "user-7"})
				ar.Client = &fosite.DefaultClient{ID: "reporting"}
				return ar
			}(),
			want: map[string]any{
				"iss":       atTestIssuer,
				"sub":       "user-7",
				"aud":       []any{"https://api.example", "https://files.example"},
				"client_id": "reporting",
				"iat":       float64(now.Unix()),
				"exp":       float64(now.Add(10 * time.Minute).Unix()), // the lifetime
			},
		}}
		for _, tc := range tests {
			t.Run(string(alg)+"/"+tc.name, func(t *testing.T) {
				j := newTestJAT(t, AccessTokensConfig{Algorithm: string(alg), Audience: tc.audience}, "", clock)
				set := j.JWKS()
				require.Len(t, set.Keys, 1)

				token, sig, err := j.GenerateAccessToken(ctx, tc.req)
				require.NoError(t, err)
				assert.Equal(t, map[string]any{"alg": string(alg), "kid": set.Keys[0].KeyID, "typ": "at+jwt"}, atSegment(t, token, 0))
				claims := atSegment(t, token, 1)
				jti, _ := claims["jti"].(string)
				assert.Len(t, jti, 22, "128 random bits")
				delete(claims, "jti")
				assert.Equal(t, tc.want, claims)

				assert.Equal(t, token[strings.LastIndexByte(token, '.')+1:], sig)
				assert.Equal(t, sig, j.AccessTokenSignature(ctx, token))
				assert.NoError(t, j.ValidateAccessToken(ctx, tc.req, token))

				other, otherSig, err := j.GenerateAccessToken(ctx, tc.req)
				require.NoError(t, err)
				assert.NotEqual(t, jti, atSegment(t, other, 1)["jti"])
				assert.NotEqual(t, sig, otherSig)

				// A resource server's view: go-jose, the published keys.
				parsed, err := jwt.ParseSigned(token)
				require.NoError(t, err)
				var std jwt.Claims
				require.NoError(t, parsed.Claims(set, &std))
				wantAud := jwt.Audience{atTestIssuer}
				if a, ok := tc.want["aud"].(string); ok {
					wantAud = jwt.Audience{a}
				} else if tc.audience != nil {
					wantAud = tc.audience
				}
				assert.NoError(t, std.Validate(jwt.Expected{Issuer: atTestIssuer, Audience: wantAud, Time: now}))
				assert.ErrorIs(t, std.Validate(jwt.Expected{Time: now.Add(time.Hour)}), jwt.ErrExpired)
			})
		}
	}
}

// ValidateAccessToken accepts this server's fresh tokens only, with
// fosite's errors: introspection relies on it after finding a session by
// the token's signature alone.
func TestJWTAccessTokenValidate(t *testing.T) {
	ctx := context.Background()
	for _, alg := range []jose.SignatureAlgorithm{jose.ES256, jose.EdDSA} {
		t.Run(string(alg), func(t *testing.T) {
			clock := newATClock()
			now := clock.Now()
			key := atKeyOf(t, alg)
			j := newTestJAT(t, AccessTokensConfig{Algorithm: string(alg), SigningKeys: []KeyConfig{{PEM: atPKCS8(t, key)}}}, "", clock)
			kid := atThumbprint(t, key)
			good, _, err := j.GenerateAccessToken(ctx, atJWTBearerRequest(now))
			require.NoError(t, err)
			parts := strings.Split(good, ".")
			header := func() map[string]any { return map[string]any{"alg": string(alg), "kid": kid, "typ": "at+jwt"} }
			claims := func() map[string]any { return atSegment(t, good, 1) }
			with := func(m map[string]any, k string, v any) map[string]any {
				if v == nil {
					delete(m, k)
				} else {
					m[k] = v
				}
				return m
			}
			opaque, _, err := j.tokenStrategy.GenerateAccessToken(ctx, nil)
			require.NoError(t, err)
			stranger := atKeyOf(t, alg)
			otherAlg := jose.EdDSA
			if alg == jose.EdDSA {
				otherAlg = jose.ES256
			}
			flip := func(s string, i int) string {
				b := []byte(s)
				if b[i] == 'A' {
					b[i] = 'B'
				} else {
					b[i] = 'A'
				}
				return string(b)
			}
			seg := func(v map[string]any) string {
				data, err := json.Marshal(v)
				require.NoError(t, err)
				return b64.EncodeToString(data)
			}

			tests := []struct {
				name    string
				token   string
				wantErr error
			}{
				{"issued", good, nil},
				{"signed by hand the same way", atSign(t, key, header(), claims()), nil},

				{"empty", "", fosite.ErrInvalidTokenFormat},
				{"opaque token", opaque, fosite.ErrInvalidTokenFormat},
				{"four parts", good + ".x", fosite.ErrInvalidTokenFormat},
				{"JWS JSON serialization", `{"payload":"` + parts[1] + `","protected":"` + parts[0] + `","signature":"` + parts[2] + `"}`, fosite.ErrInvalidTokenFormat},
				{"too long", atSign(t, key, header(), with(claims(), "pad", strings.Repeat("x", 20000))), fosite.ErrInvalidTokenFormat},
				{"header not base64url", "!!." + parts[1] + "." + parts[2], fosite.ErrInvalidTokenFormat},
				{"header not JSON", b64.EncodeToString([]byte("alg")) + "." + parts[1] + "." + parts[2], fosite.ErrInvalidTokenFormat},

				{"header tampered: typ", seg(with(header(), "typ", "JWT")) + "." + parts[1] + "." + parts[2], fosite.ErrInvalidTokenFormat},
				{"header tampered: same members, other bytes", b64.EncodeToString([]byte(`{"typ":"at+jwt","kid":"`+kid+`","alg":"`+string(alg)+`"}`)) + "." + parts[1] + "." + parts[2], fosite.ErrTokenSignatureMismatch},
				{"header tampered: jwk added", seg(with(header(), "jwk", map[string]any{"kty": "oct"})) + "." + parts[1] + "." + parts[2], fosite.ErrInvalidTokenFormat},
				{"payload tampered: sub", parts[0] + "." + seg(with(claims(), "sub", "admin")) + "." + parts[2], fosite.ErrTokenSignatureMismatch},
				{"payload tampered: exp", parts[0] + "." + seg(with(claims(), "exp", now.Add(24*time.Hour).Unix())) + "." + parts[2], fosite.ErrTokenSignatureMismatch},
				{"signature tampered", parts[0] + "." + parts[1] + "." + flip(parts[2], 10), fosite.ErrTokenSignatureMismatch},
				{"signature truncated", parts[0] + "." + parts[1] + "." + parts[2][:40], fosite.ErrTokenSignatureMismatch},
				{"signature empty", parts[0] + "." + parts[1] + ".", fosite.ErrTokenSignatureMismatch},

				{"another key, its own kid", atSign(t, stranger, with(header(), "kid", atThumbprint(t, stranger)), claims()), fosite.ErrTokenSignatureMismatch},
				{"another key, our kid", atSign(t, stranger, header(), claims()), fosite.ErrTokenSignatureMismatch},
				{"alg none", atSign(t, nil, with(header(), "alg", "none"), claims()), fosite.ErrTokenSignatureMismatch},
				{"alg none, no kid", atSign(t, nil, with(with(header(), "alg", "none"), "kid", nil), claims()), fosite.ErrTokenSignatureMismatch},
				{"alg HS256 keyed with the public key", func() string {
					pub, err := json.Marshal(jose.JSONWebKey{Key: key.Public()})
					require.NoError(t, err)
					input := seg(with(header(), "alg", "HS256")) + "." + seg(claims())
					signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: pub}, nil)
					require.NoError(t, err)
					obj, err := signer.Sign([]byte(input))
					require.NoError(t, err)
					return input + "." + b64.EncodeToString(obj.Signatures[0].Signature)
				}(), fosite.ErrTokenSignatureMismatch},
				{"the other algorithm", atSign(t, atKeyOf(t, otherAlg), with(header(), "alg", string(otherAlg)), claims()), fosite.ErrTokenSignatureMismatch},
				{"no kid", atSign(t, key, with(header(), "kid", nil), claims()), fosite.ErrTokenSignatureMismatch},

				// Signed with the real key, yet not an access token of ours.
				{"no typ", atSign(t, key, with(header(), "typ", nil), claims()), fosite.ErrInvalidTokenFormat},
				{"typ JWT", atSign(t, key, with(header(), "typ", "JWT"), claims()), fosite.ErrInvalidTokenFormat},
				{"typ not a string", atSign(t, key, with(header(), "typ", 1), claims()), fosite.ErrInvalidTokenFormat},
				{"unencoded payload (b64, crit)", atSign(t, key, with(with(header(), "b64", false), "crit", []string{"b64"}), claims()), fosite.ErrInvalidTokenFormat},
				{"claims not JSON", atSign(t, key, header(), []byte("not json")), fosite.ErrInvalidTokenFormat},
				{"exp not a number", atSign(t, key, header(), with(claims(), "exp", "tomorrow")), fosite.ErrInvalidTokenFormat},
				{"another issuer", atSign(t, key, header(), with(claims(), "iss", "https://evil.example")), fosite.ErrTokenClaim},
				{"no exp", atSign(t, key, header(), with(claims(), "exp", nil)), fosite.ErrTokenClaim},
				{"expired a second ago", atSign(t, key, header(), with(claims(), "exp", now.Add(-time.Second).Unix())), fosite.ErrTokenExpired},
				{"expiring now", atSign(t, key, header(), with(claims(), "exp", now.Unix())), fosite.ErrTokenExpired},
				{"expiring in a second", atSign(t, key, header(), with(claims(), "exp", now.Add(time.Second).Unix())), nil},
			}
			for _, tc := range tests {
				t.Run(tc.name, func(t *testing.T) {
					err := j.ValidateAccessToken(ctx, nil, tc.token)
					if tc.wantErr == nil {
						assert.NoError(t, err)
						return
					}
					assert.ErrorIs(t, err, tc.wantErr)
					var rfc *fosite.RFC6749Error
					if assert.ErrorAs(t, err, &rfc) {
						assert.NotEmpty(t, rfc.HintField, "a hint says why")
					}
				})
			}

			t.Run("expired by the clock", func(t *testing.T) {
				clock.Set(now.Add(5*time.Minute - time.Second))
				assert.NoError(t, j.ValidateAccessToken(ctx, nil, good))
				clock.Set(now.Add(5 * time.Minute))
				assert.ErrorIs(t, j.ValidateAccessToken(ctx, nil, good), fosite.ErrTokenExpired)
			})
		})
	}
}

// The store key of a JWT is its signature; an opaque token keeps the
// opaque strategy's, so that one issued before a switch can be revoked.
func TestJWTAccessTokenSignature(t *testing.T) {
	ctx := context.Background()
	j := newTestJAT(t, AccessTokensConfig{}, "", newATClock())
	assert.Equal(t, "c2ln", j.AccessTokenSignature(ctx, "aGVhZA.Ym9keQ.c2ln"))
	opaque, sig, err := j.tokenStrategy.GenerateAccessToken(ctx, nil)
	require.NoError(t, err)
	assert.Equal(t, sig, j.AccessTokenSignature(ctx, opaque))
	// Refresh tokens stay opaque.
	rt, rtSig, err := j.GenerateRefreshToken(ctx, nil)
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(rt, "ory_rt_"), rt)
	assert.Equal(t, rtSig, j.RefreshTokenSignature(ctx, rt))
}

// Configured keys: the first signs, the others are published and accepted;
// nothing rotates, however long the server runs.
func TestJWTAccessTokenConfiguredKeys(t *testing.T) {
	ctx := context.Background()
	for _, alg := range []jose.SignatureAlgorithm{jose.ES256, jose.EdDSA} {
		t.Run(string(alg), func(t *testing.T) {
			dir := t.TempDir()
			newKey, oldKey, olderKey := atKeyOf(t, alg), atKeyOf(t, alg), atKeyOf(t, alg)
			require.NoError(t, os.MkdirAll(filepath.Join(dir, "keys"), 0o700))
			require.NoError(t, os.WriteFile(filepath.Join(dir, "keys", "at-new.pem"), []byte(atPKCS8(t, newKey)), 0o600))
			// A JWK Set file with two keys, one with its own kid.
			set, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: oldKey, KeyID: "2025-old"}, {Key: olderKey}}})
			require.NoError(t, err)
			require.NoError(t, os.WriteFile(filepath.Join(dir, "keys", "old.jwks"), set, 0o600))

			clock := newATClock()
			j := newTestJAT(t, AccessTokensConfig{Algorithm: string(alg), SigningKeys: []KeyConfig{{File: "keys/at-new.pem"}, {File: "keys/old.jwks"}}}, dir, clock)
			wantKIDs := []string{atThumbprint(t, newKey), "2025-old", atThumbprint(t, olderKey)}
			assert.Equal(t, wantKIDs, atKIDs(j.JWKS()))

			token, _, err := j.GenerateAccessToken(ctx, atJWTBearerRequest(clock.Now()))
			require.NoError(t, err)
			assert.Equal(t, wantKIDs[0], atSegment(t, token, 0)["kid"])

			// A token the old key signed (before the rotation) still passes.
			old := atSign(t, oldKey, map[string]any{"alg": string(alg), "kid": "2025-old", "typ": "at+jwt"}, atSegment(t, token, 1))
			assert.NoError(t, j.ValidateAccessToken(ctx, nil, old))

			clock.Add(365 * 24 * time.Hour)
			assert.Equal(t, wantKIDs, atKIDs(j.JWKS()))
			token, _, err = j.GenerateAccessToken(ctx, atJWTBearerRequest(clock.Now()))
			require.NoError(t, err)
			assert.Equal(t, wantKIDs[0], atSegment(t, token, 0)["kid"])
		})
	}
}

func atKIDs(set jose.JSONWebKeySet) []string {
	var out []string
	for _, k := range set.Keys {
		out = append(out, k.KeyID)
	}
	return out
}

// Generated keys belong to one process: another instance neither publishes
// nor accepts them.
func TestJWTAccessTokenGeneratedKeys(t *testing.T) {
	ctx := context.Background()
	clock := newATClock()
	a := newTestJAT(t, AccessTokensConfig{}, "", clock)
	b := newTestJAT(t, AccessTokensConfig{}, "", clock)
	require.Len(t, a.JWKS().Keys, 1)
	assert.NotEqual(t, atKIDs(a.JWKS()), atKIDs(b.JWKS()))

	token, _, err := a.GenerateAccessToken(ctx, atJWTBearerRequest(clock.Now()))
	require.NoError(t, err)
	assert.Equal(t, a.JWKS().Keys[0].KeyID, atSegment(t, token, 0)["kid"])
	assert.NoError(t, a.ValidateAccessToken(ctx, nil, token))
	assert.ErrorIs(t, b.ValidateAccessToken(ctx, nil, token), fosite.ErrTokenSignatureMismatch)

	// Without a rotation interval the key is the process's.
	kids := atKIDs(a.JWKS())
	clock.Add(30 * 24 * time.Hour)
	assert.Equal(t, kids, atKIDs(a.JWKS()))
}

// Rotation, with the clock in hand: the next key is published an interval
// before it signs; a key that stopped signing stays published until its
// tokens have expired, at least one lifetime (10 minutes here), then goes.
func TestJWTAccessTokenRotation(t *testing.T) {
	ctx := context.Background()
	kidOf := func(t *testing.T, token string) string { return atSegment(t, token, 0)["kid"].(string) }
	issue := func(t *testing.T, j *jwtAccessTokens, now time.Time, lifetime time.Duration) string {
		t.Helper()
		req := atJWTBearerRequest(now)
		req.Session.SetExpiresAt(fosite.AccessToken, now.Add(lifetime))
		token, _, err := j.GenerateAccessToken(ctx, req)
		require.NoError(t, err)
		return token
	}

	for _, alg := range []jose.SignatureAlgorithm{jose.ES256, jose.EdDSA} {
		t.Run(string(alg), func(t *testing.T) {
			clock := newATClock()
			t0 := clock.Now()
			j := newTestJAT(t, AccessTokensConfig{Algorithm: string(alg), RotationInterval: time.Hour}, "", clock)
			keys := atKIDs(j.JWKS())
			require.Len(t, keys, 2, "the signing key and the next one")
			k0, k1 := keys[0], keys[1]
			assert.Equal(t, k0, kidOf(t, issue(t, j, t0, 10*time.Minute)))

			clock.Set(t0.Add(59 * time.Minute))
			late := issue(t, j, clock.Now(), 10*time.Minute) // expires at t0+69m
			assert.Equal(t, k0, kidOf(t, late))

			clock.Set(t0.Add(time.Hour))
			assert.Equal(t, k1, kidOf(t, issue(t, j, clock.Now(), 10*time.Minute)), "the pre-published key signs")
			keys = atKIDs(j.JWKS())
			require.Len(t, keys, 3)
			assert.Equal(t, []string{k1, k0}, []string{keys[0], keys[2]}, "signing, next, retired")
			k2 := keys[1]
			assert.NotContains(t, []string{k0, k1}, k2)

			clock.Set(t0.Add(65 * time.Minute))
			assert.NoError(t, j.ValidateAccessToken(ctx, nil, late), "the old key still verifies")
			clock.Set(t0.Add(70*time.Minute - time.Second))
			assert.Contains(t, atKIDs(j.JWKS()), k0)
			assert.ErrorIs(t, j.ValidateAccessToken(ctx, nil, late), fosite.ErrTokenExpired)
			clock.Set(t0.Add(70 * time.Minute)) // one lifetime after it stopped signing
			assert.Equal(t, []string{k1, k2}, atKIDs(j.JWKS()))
			assert.ErrorIs(t, j.ValidateAccessToken(ctx, nil, late), fosite.ErrTokenSignatureMismatch)

			clock.Set(t0.Add(2 * time.Hour))
			assert.Equal(t, k2, kidOf(t, issue(t, j, clock.Now(), 10*time.Minute)))

			// Idle for hours: one rotation on the next use, the interval
			// counted from then; keys retired long ago are gone.
			clock.Set(t0.Add(10 * time.Hour))
			keys = atKIDs(j.JWKS())
			require.Len(t, keys, 3)
			assert.Equal(t, k2, keys[2])
			k3 := keys[0]
			assert.NotContains(t, []string{k0, k1, k2}, k3)
			clock.Set(t0.Add(11*time.Hour - time.Second))
			assert.Equal(t, k3, kidOf(t, issue(t, j, clock.Now(), 10*time.Minute)))
			clock.Set(t0.Add(11 * time.Hour))
			assert.Equal(t, keys[1], kidOf(t, issue(t, j, clock.Now(), 10*time.Minute)))
		})
	}

	t.Run("a token outliving the default lifetime keeps its key", func(t *testing.T) {
		clock := newATClock()
		t0 := clock.Now()
		j := newTestJAT(t, AccessTokensConfig{RotationInterval: time.Hour}, "", clock)
		k0 := atKIDs(j.JWKS())[0]
		clock.Set(t0.Add(59 * time.Minute))
		// A trust relationship's access_token_lifetime of 2h.
		long := issue(t, j, clock.Now(), 2*time.Hour) // expires at t0+2h59m
		clock.Set(t0.Add(time.Hour))
		require.NotEqual(t, k0, atKIDs(j.JWKS())[0], "rotated")
		clock.Set(t0.Add(2*time.Hour + 58*time.Minute))
		assert.Contains(t, atKIDs(j.JWKS()), k0)
		assert.NoError(t, j.ValidateAccessToken(ctx, nil, long))
		clock.Set(t0.Add(2*time.Hour + 59*time.Minute))
		assert.NotContains(t, atKIDs(j.JWKS()), k0)
	})
}

// Tokens are issued and validated while the keys rotate; the race detector
// watches the key set's replacement.
func TestJWTAccessTokenConcurrentRotation(t *testing.T) {
	ctx := context.Background()
	clock := newATClock()
	// Retired keys stay three (clock) hours, far longer than a goroutine
	// can stall between choosing a key and signing with it.
	j, err := newJWTAccessTokens(AccessTokensConfig{Format: AccessTokensJWT, RotationInterval: time.Hour}, "", atTestIssuer, 3*time.Hour, atBase(t), clock.Now)
	require.NoError(t, err)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 100 {
				now := clock.Now()
				exp := now.Add(3 * time.Hour)
				req := atJWTBearerRequest(now)
				req.Session.SetExpiresAt(fosite.AccessToken, exp)
				token, _, err := j.GenerateAccessToken(ctx, req)
				if !assert.NoError(t, err) {
					return
				}
				err = j.ValidateAccessToken(ctx, nil, token)
				// A goroutine that stalled while the clock raced three
				// hours ahead holds an expired token, whose key may be
				// gone already (then it is refused for its signature,
				// which is checked first).
				if err != nil && clock.Now().Before(exp) {
					assert.NoError(t, err, "a token signed during a rotation must verify until it expires")
					return
				}
				_ = j.JWKS()
			}
		})
	}
	wg.Go(func() {
		for range 300 {
			clock.Add(2 * time.Minute)
			time.Sleep(20 * time.Microsecond)
		}
	})
	wg.Wait()
	// Ten hours: the signing and the next key, and the retired keys of the
	// last three hours; never the whole history.
	assert.LessOrEqual(t, len(j.JWKS().Keys), 6)
}

// /jwks.json serves the public keys only, cacheable for less than a key
// is published before it signs.
func TestJWTAccessTokenServeJWKS(t *testing.T) {
	require.Less(t, atJWKSMaxAge, MinKeyRotationInterval)
	for _, alg := range []jose.SignatureAlgorithm{jose.ES256, jose.EdDSA} {
		t.Run(string(alg), func(t *testing.T) {
			key := atKeyOf(t, alg)
			j := newTestJAT(t, AccessTokensConfig{Algorithm: string(alg), SigningKeys: []KeyConfig{
				{PEM: atPKCS8(t, key)},
				{JWK: atJWKMap(t, jose.JSONWebKey{Key: atKeyOf(t, alg), KeyID: "published-only"})},
			}}, "", newATClock())

			rec := httptest.NewRecorder()
			j.ServeJWKS(rec, httptest.NewRequest(http.MethodGet, "/jwks.json", nil))
			assert.Equal(t, http.StatusOK, rec.Code)
			assert.Equal(t, "application/json", rec.Header().Get("Content-Type"))
			assert.Equal(t, "public, max-age=300", rec.Header().Get("Cache-Control"))

			var raw struct {
				Keys []map[string]any `json:"keys"`
			}
			require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &raw))
			require.Len(t, raw.Keys, 2)
			for _, k := range raw.Keys {
				for _, private := range []string{"d", "p", "q", "dp", "dq", "qi", "k"} {
					assert.NotContains(t, k, private)
				}
				assert.Equal(t, string(alg), k["alg"])
				assert.Equal(t, "sig", k["use"])
				assert.NotEmpty(t, k["kid"])
			}
			var set jose.JSONWebKeySet
			require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &set))
			assert.Equal(t, []string{atThumbprint(t, key), "published-only"}, atKIDs(set))
			for _, k := range set.Keys {
				assert.True(t, k.IsPublic())
			}
			assert.Equal(t, atKIDs(j.JWKS()), atKIDs(set))
			for _, k := range j.JWKS().Keys {
				assert.True(t, k.IsPublic())
			}

			rec = httptest.NewRecorder()
			j.ServeJWKS(rec, httptest.NewRequest(http.MethodHead, "/jwks.json", nil))
			assert.Equal(t, http.StatusOK, rec.Code)

			rec = httptest.NewRecorder()
			j.ServeJWKS(rec, httptest.NewRequest(http.MethodPost, "/jwks.json", nil))
			assert.Equal(t, http.StatusMethodNotAllowed, rec.Code)
			assert.Equal(t, "GET, HEAD", rec.Header().Get("Allow"))
		})
	}
}

// The strategy in fosite's own flows: a client_credentials token is found
// and accepted by introspection, a copy with a changed payload but the same
// signature (the store key) is not, and revocation ends it.
func TestJWTAccessTokenFositeFlows(t *testing.T) {
	ctx := context.Background()
	fc := &fosite.Config{
		GlobalSecret:        []byte("0123456789abcdef0123456789abcdef"),
		AccessTokenLifespan: time.Hour,
		AccessTokenIssuer:   atTestIssuer,
		ScopeStrategy:       fosite.ExactScopeStrategy,
	}
	base, err := newTokenStrategy(fc)
	require.NoError(t, err)
	j, err := newJWTAccessTokens(AccessTokensConfig{Format: AccessTokensJWT}, "", atTestIssuer, time.Hour, base, nil)
	require.NoError(t, err)
	st := memory.New()
	hash, err := bcrypt.GenerateFromPassword([]byte("reporting-secret"), bcrypt.MinCost)
	require.NoError(t, err)
	require.NoError(t, st.CreateClient(ctx, &fosite.DefaultClient{
		ID: "reporting", Secret: hash, GrantTypes: fosite.Arguments{"client_credentials"}, Scopes: fosite.Arguments{"invoices:read"},
	}))
	provider := compose.Compose(fc, st, j, compose.OAuth2ClientCredentialsGrantFactory, introspectionFactory, compose.OAuth2TokenRevocationFactory)

	form := func(v url.Values) *http.Request {
		r := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(v.Encode()))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		r.SetBasicAuth("reporting", "reporting-secret")
		return r
	}
	ar, err := provider.NewAccessRequest(ctx, form(url.Values{"grant_type": {"client_credentials"}, "scope": {"invoices:read"}}), &fosite.DefaultSession{})
	require.NoError(t, err)
	// As the token endpoint does: fosite leaves granting to the application.
	for _, scope := range ar.GetRequestedScopes() {
		ar.GrantScope(scope)
	}
	resp, err := provider.NewAccessResponse(ctx, ar)
	require.NoError(t, err)
	token := resp.GetAccessToken()
	claims := atSegment(t, token, 1)
	assert.Equal(t, "reporting", claims["sub"])
	assert.Equal(t, "reporting", claims["client_id"])
	assert.Equal(t, "invoices:read", claims["scope"])
	assert.InDelta(t, float64(time.Now().Add(time.Hour).Unix()), claims["exp"], 5)

	use, ir, err := provider.IntrospectToken(ctx, token, fosite.AccessToken, &fosite.DefaultSession{})
	require.NoError(t, err)
	assert.Equal(t, fosite.AccessToken, use)
	assert.Equal(t, "reporting", ir.GetClient().GetID())

	parts := strings.Split(token, ".")
	claims["scope"] = "invoices:read invoices:write"
	forged, err := json.Marshal(claims)
	require.NoError(t, err)
	_, _, err = provider.IntrospectToken(ctx, parts[0]+"."+b64.EncodeToString(forged)+"."+parts[2], fosite.AccessToken, &fosite.DefaultSession{})
	assert.ErrorIs(t, err, fosite.ErrTokenSignatureMismatch)

	require.NoError(t, provider.NewRevocationRequest(ctx, form(url.Values{"token": {token}})))
	_, _, err = provider.IntrospectToken(ctx, token, fosite.AccessToken, &fosite.DefaultSession{})
	assert.Error(t, err, "revoked")
}

// check reports every problem of the access_tokens section, as decoded
// from YAML.
func TestJWTAccessTokensConfigCheck(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600))
	}
	ec256, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	ec384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	require.NoError(t, err)
	_, ed, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	write("ec256.pem", atPKCS8(t, ec256))
	sec1, err := x509.MarshalECPrivateKey(ec256)
	require.NoError(t, err)
	write("ec256-sec1.pem", string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1})))
	// What openssl ecparam -name prime256v1 -genkey writes: the curve's
	// parameters first, then the key.
	write("ec256-openssl.pem", string(pem.EncodeToMemory(&pem.Block{Type: "EC PARAMETERS", Bytes: []byte{0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07}}))+
		string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1})))
	write("ec384.pem", atPKCS8(t, ec384))
	write("ed.pem", atPKCS8(t, ed))
	write("rsa.pem", atPKCS8(t, rsaKey))
	spki, err := x509.MarshalPKIXPublicKey(ec256.Public())
	require.NoError(t, err)
	write("ec256-public.pem", string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: spki})))
	write("encrypted.pem", string(pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: []byte{1}})))
	write("garbage.pem", "not a key")
	jwkJSON := func(k jose.JSONWebKey) string {
		data, err := json.Marshal(k)
		require.NoError(t, err)
		return string(data)
	}
	write("ec256.jwk", jwkJSON(jose.JSONWebKey{Key: ec256, KeyID: "k1", Use: "sig", Algorithm: "ES256"}))
	write("ec256-public.jwk", jwkJSON(jose.JSONWebKey{Key: ec256.Public()}))
	write("ec256-es384.jwk", jwkJSON(jose.JSONWebKey{Key: ec256, Algorithm: "ES384"}))
	write("ec256-enc.jwk", jwkJSON(jose.JSONWebKey{Key: ec256, Use: "enc"}))
	write("oct.jwk", `{"kty":"oct","kid":"s","k":"`+b64.EncodeToString(make([]byte, 32))+`"}`)
	other, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	write("other-k1.jwk", jwkJSON(jose.JSONWebKey{Key: other, KeyID: "k1"}))

	tests := []struct {
		name string
		yaml string
		want []string // substrings, one per error
	}{
		{"absent", ``, nil},
		{"opaque", `{format: opaque}`, nil},
		{"opaque with jwt settings", `{format: opaque, algorithm: ES256, signing_keys: [{file: ec256.pem}], rotation_interval: 24h, audience: [a]}`, []string{
			"access_tokens.algorithm: has no effect unless format is jwt",
			"access_tokens.signing_keys: has no effect",
			"access_tokens.rotation_interval: has no effect",
			"access_tokens.audience: has no effect",
		}},
		{"unknown format", `{format: JWT}`, []string{`access_tokens.format: "JWT" is not a known format (opaque, jwt)`}},
		{"jwt, generated ES256 keys", `{format: jwt}`, nil},
		{"jwt, generated EdDSA keys rotated daily", `{format: jwt, algorithm: EdDSA, rotation_interval: 24h, audience: [https://api.example]}`, nil},
		{"jwt, PKCS #8 PEM file", `{format: jwt, signing_keys: [{file: ec256.pem}]}`, nil},
		{"jwt, SEC 1 PEM file", `{format: jwt, signing_keys: [{file: ec256-sec1.pem}]}`, nil},
		{"jwt, openssl ecparam output", `{format: jwt, signing_keys: [{file: ec256-openssl.pem}]}`, nil},
		{"jwt, private JWK file", `{format: jwt, signing_keys: [{file: ec256.jwk}]}`, nil},
		{"one key in three forms", `{format: jwt, signing_keys: [{file: ec256.pem}, {file: ec256-sec1.pem}, {file: ec256.jwk}]}`, []string{"signing_keys[1]: the same key as access_tokens.signing_keys[0]", "signing_keys[2]: the same key as access_tokens.signing_keys[0]"}},
		{"jwt, PEM inline and an inline JWK", "{format: jwt, signing_keys: [{pem: " + jsonString(t, atPKCS8(t, ec256)) + "}, {jwk: " + jwkJSON(jose.JSONWebKey{Key: other}) + "}]}", nil},
		{"jwt, Ed25519 key", `{format: jwt, algorithm: EdDSA, signing_keys: [{file: ed.pem}]}`, nil},
		{"unsupported algorithm", `{format: jwt, algorithm: RS256, signing_keys: [{file: rsa.pem}]}`, []string{`access_tokens.algorithm: "RS256" is not supported (ES256, EdDSA)`}},
		{"RSA key for ES256", `{format: jwt, signing_keys: [{file: rsa.pem}]}`, []string{"access_tokens.signing_keys[0]: ES256 needs an EC P-256 private key; this is an RSA key"}},
		{"P-384 key for ES256", `{format: jwt, signing_keys: [{file: ec384.pem}]}`, []string{"this is an EC P-384 key"}},
		{"Ed25519 key for ES256", `{format: jwt, signing_keys: [{file: ed.pem}]}`, []string{"ES256 needs an EC P-256 private key; this is an Ed25519 key"}},
		{"P-256 key for EdDSA", `{format: jwt, algorithm: EdDSA, signing_keys: [{file: ec256.pem}]}`, []string{"EdDSA needs an Ed25519 private key; this is an EC P-256 key"}},
		{"symmetric JWK", `{format: jwt, signing_keys: [{file: oct.jwk}]}`, []string{"this is a symmetric key"}},
		{"public PEM", `{format: jwt, signing_keys: [{file: ec256-public.pem}]}`, []string{`signing_keys[0]: PEM block 0: "PUBLIC KEY" is a public key; signing needs the private key`}},
		{"public JWK", `{format: jwt, signing_keys: [{file: ec256-public.jwk}]}`, []string{"signing_keys[0]: this is a public key; signing needs the private key"}},
		{"JWK alg of another algorithm", `{format: jwt, signing_keys: [{file: ec256-es384.jwk}]}`, []string{`the JWK's "alg" is "ES384", but access_tokens.algorithm is ES256`}},
		{"JWK for encryption", `{format: jwt, signing_keys: [{file: ec256-enc.jwk}]}`, []string{`the JWK's "use" is "enc"`}},
		{"encrypted PEM", `{format: jwt, signing_keys: [{file: encrypted.pem}]}`, []string{"signing_keys[0]: PEM block 0: encrypted private keys are not supported"}},
		{"not a key", `{format: jwt, signing_keys: [{file: garbage.pem}]}`, []string{"neither PEM nor a JSON Web Key"}},
		{"missing file", `{format: jwt, signing_keys: [{file: nowhere.pem}]}`, []string{"access_tokens.signing_keys[0]: file:"}},
		{"two sources", `{format: jwt, signing_keys: [{file: ec256.pem, pem: x}, {}]}`, []string{"signing_keys[0]: give exactly one of file, pem or jwk", "signing_keys[1]: give exactly one"}},
		{"one kid for two keys", `{format: jwt, signing_keys: [{file: ec256.jwk}, {file: other-k1.jwk}]}`, []string{`access_tokens.signing_keys[1]: kid "k1" is also used by access_tokens.signing_keys[0]`}},
		{"rotation with configured keys", `{format: jwt, signing_keys: [{file: ec256.pem}], rotation_interval: 24h}`, []string{"access_tokens.rotation_interval: applies to generated keys only"}},
		{"negative rotation", `{format: jwt, rotation_interval: -1h}`, []string{"access_tokens.rotation_interval: must not be negative"}},
		{"rotation too often", `{format: jwt, rotation_interval: 10m}`, []string{"access_tokens.rotation_interval: must be at least 1h0m0s"}},
		{"empty audience", `{format: jwt, audience: [https://api.example, ""]}`, []string{"access_tokens.audience[1]: must not be empty"}},
		{"everything at once", `{format: jwt, algorithm: EdDSA, signing_keys: [{file: ec256.pem}, {file: ed.pem}], rotation_interval: -1s, audience: [""]}`, []string{
			"rotation_interval: must not be negative",
			"rotation_interval: applies to generated keys only",
			"audience[0]",
			"signing_keys[0]: EdDSA needs an Ed25519 private key",
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var doc struct {
				AccessTokens AccessTokensConfig `yaml:"access_tokens"`
			}
			dec := yaml.NewDecoder(strings.NewReader("access_tokens: " + tc.yaml + "\n"))
			dec.KnownFields(true)
			require.NoError(t, dec.Decode(&doc))
			errs := doc.AccessTokens.check(dir)
			var got []string
			for _, err := range errs {
				got = append(got, err.Error())
			}
			require.Len(t, got, len(tc.want), "errors: %q", got)
			for i, want := range tc.want {
				assert.Contains(t, got[i], want)
			}
			if len(tc.want) == 0 && doc.AccessTokens.UsesJWT() {
				_, err := newJWTAccessTokens(doc.AccessTokens, dir, atTestIssuer, time.Hour, atBase(t), nil)
				assert.NoError(t, err)
			}
		})
	}
}

func jsonString(t *testing.T, s string) string {
	t.Helper()
	data, err := json.Marshal(s)
	require.NoError(t, err)
	return string(data)
}

func TestNewJWTAccessTokensErrors(t *testing.T) {
	base := atBase(t)
	jwtCfg := AccessTokensConfig{Format: AccessTokensJWT}
	tests := []struct {
		name     string
		cfg      AccessTokensConfig
		issuer   string
		lifetime time.Duration
		base     *tokenStrategy
		want     string
	}{
		{"opaque", AccessTokensConfig{}, atTestIssuer, time.Hour, base, `access_tokens.format: "" is not "jwt"`},
		{"bad configuration", AccessTokensConfig{Format: AccessTokensJWT, Algorithm: "HS256", RotationInterval: -1}, atTestIssuer, time.Hour, base, "algorithm: \"HS256\" is not supported (ES256, EdDSA)\naccess_tokens.rotation_interval: must not be negative"},
		{"unreadable key", AccessTokensConfig{Format: AccessTokensJWT, SigningKeys: []KeyConfig{{File: "/nonexistent/at.pem"}}}, atTestIssuer, time.Hour, base, "access_tokens.signing_keys[0]: file:"},
		{"no base", jwtCfg, atTestIssuer, time.Hour, nil, "no base token strategy"},
		{"no issuer", jwtCfg, "", time.Hour, base, "no issuer"},
		{"no lifetime", jwtCfg, atTestIssuer, 0, base, "lifetime must be positive"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			j, err := newJWTAccessTokens(tc.cfg, "", tc.issuer, tc.lifetime, tc.base, nil)
			assert.Nil(t, j)
			if assert.Error(t, err) {
				assert.Contains(t, err.Error(), tc.want)
			}
		})
	}
}

// The request must say whom the token is for.
func TestJWTAccessTokenNeedsSubject(t *testing.T) {
	j := newTestJAT(t, AccessTokensConfig{}, "", newATClock())
	_, _, err := j.GenerateAccessToken(context.Background(), fosite.NewAccessRequest(&fosite.DefaultSession{}))
	assert.ErrorContains(t, err, "neither a subject nor a client")
	_, _, err = j.GenerateAccessToken(context.Background(), nil)
	assert.Error(t, err)
}

// The cost of a token on the hot path: claims, one signature with the
// key's cached signer, the compact serialization.
func BenchmarkJWTAccessTokenGenerate(b *testing.B) {
	for _, alg := range []jose.SignatureAlgorithm{jose.ES256, jose.EdDSA} {
		b.Run(string(alg), func(b *testing.B) {
			base, err := newTokenStrategy(&fosite.Config{GlobalSecret: []byte("0123456789abcdef0123456789abcdef")})
			require.NoError(b, err)
			j, err := newJWTAccessTokens(AccessTokensConfig{Format: AccessTokensJWT, Algorithm: string(alg), RotationInterval: time.Hour}, "", atTestIssuer, time.Hour, base, nil)
			require.NoError(b, err)
			req := atJWTBearerRequest(time.Now())
			ctx := context.Background()
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, _, err := j.GenerateAccessToken(ctx, req); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}
