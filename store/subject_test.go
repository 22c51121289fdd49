package store_test

import (
	"crypto/rsa"
	"encoding/json"
	"math/big"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/jwtbearer/jwtbearer/store"
)

func TestMatchSubject(t *testing.T) {
	tests := []struct {
		pattern, sub string
		want         bool
	}{
		{"system:serviceaccount:prod:*", "system:serviceaccount:prod:builder", true},
		{"system:serviceaccount:prod:*", "system:serviceaccount:prod:", false},
		{"system:serviceaccount:prod:*", "system:serviceaccount:prod:a:b", false},
		{"system:serviceaccount:prod:*", "system:serviceaccount:staging:builder", false},
		{"system:serviceaccount:prod:*", "system:serviceaccount:prod:builderx", true},
		{"system:serviceaccount:*:deployer", "system:serviceaccount:prod:deployer", true},
		{"system:serviceaccount:*:deployer", "system:serviceaccount:prod:x:deployer", false},
		{"repo:acme/*:ref:refs/heads/main", "repo:acme/app:ref:refs/heads/main", true},
		{"repo:acme/*:ref:refs/heads/main", "repo:acme/app:ref:refs/heads/main2", false},
		{"repo:acme/*:ref:refs/heads/main", "repo:acme/a/b:ref:refs/heads/main", false},
		{"repo:acme/*:ref:refs/heads/main", "repo:evil/app:ref:refs/heads/main", false},
		{"repo:acme/*:ref:refs/heads/main", "repo:acme/:ref:refs/heads/main", false},
		{"repo:acme/app:ref:refs/heads/**", "repo:acme/app:ref:refs/heads/feature/x", true},
		{"repo:acme/app:ref:refs/heads/**", "repo:acme/app:ref:refs/heads/", false},
		{"repo:acme/app:ref:refs/heads/**", "repo:acme/app:ref:refs/tags/v1", false},
		{"**:deploy", "a:b/c:deploy", true},
		{"**:deploy", ":deploy", false},
		{"a*b*c", "aXbYc", true},
		{"a*b*c", "abc", false},
		{"a*b", "aXbXb", true},
		{"*", "", false},
		{"exact", "exact", true},
		{"exact", "exactly", false},
		{"ünï*", "ünïcode", true},
		{"**a**a**a**a**a**b", strings.Repeat("a", 5000), false},
	}
	for _, tc := range tests {
		assert.Equal(t, tc.want, store.MatchSubject(tc.pattern, tc.sub), "%q ~ %q", tc.pattern, tc.sub)
	}
}

func TestTrustAllowsSubject(t *testing.T) {
	tr := store.Trust{Subject: "one", Subjects: []string{"two", "three"}, SubjectPatterns: []string{"ns:*"}}
	for sub, want := range map[string]bool{"one": true, "two": true, "three": true, "ns:x": true, "ns:x:y": false, "four": false, "": false} {
		assert.Equal(t, want, tr.AllowsSubject(sub), sub)
	}
	anyTrust := store.Trust{AnySubject: true}
	assert.True(t, anyTrust.AllowsSubject("whatever"))
}

func TestDurationJSON(t *testing.T) {
	var v struct {
		D store.Duration `json:"d,omitempty"`
	}
	for in, want := range map[string]time.Duration{`{"d":"90s"}`: 90 * time.Second, `{"d":"1h30m"}`: 90 * time.Minute, `{"d":300}`: 5 * time.Minute, `{"d":null}`: 0, `{}`: 0} {
		v.D = 0
		require.NoError(t, json.Unmarshal([]byte(in), &v), in)
		assert.Equal(t, want, time.Duration(v.D), in)
	}
	for _, in := range []string{`{"d":"ninety"}`, `{"d":1.5}`, `{"d":true}`, `{"d":1e30}`} {
		assert.Error(t, json.Unmarshal([]byte(in), &v), in)
	}
	v.D = store.Duration(time.Minute)
	out, err := json.Marshal(v)
	require.NoError(t, err)
	assert.JSONEq(t, `{"d":"1m0s"}`, string(out))
	v.D = 0
	out, err = json.Marshal(v)
	require.NoError(t, err)
	assert.JSONEq(t, `{}`, string(out))
}

func TestCheckRemoteURL(t *testing.T) {
	ok := []string{"https://issuer.example/jwks", "http://127.0.0.1:8080/jwks", "http://localhost/x", "http://[::1]:9/k"}
	bad := []string{"http://issuer.example/jwks", "ftp://issuer.example/", "issuer.example/jwks", "https:///x",
		"https://u@issuer.example/", "https://issuer.example/#f", "http://127.0.0.1.nip.io/", "http://10.0.0.1/"}
	for _, u := range ok {
		assert.NoError(t, store.CheckRemoteURL(u), u)
	}
	for _, u := range bad {
		assert.Error(t, store.CheckRemoteURL(u), u)
	}
}

func TestNormalizeKey(t *testing.T) {
	k := jose.JSONWebKey{Key: &p256b().PublicKey}
	require.NoError(t, store.NormalizeKey(&k))
	assert.Equal(t, thumb(t, k.Key), k.KeyID, "a key without kid gets its thumbprint")

	bad := map[string]jose.JSONWebKey{
		"private":   {Key: p256b(), KeyID: "p"},
		"symmetric": {Key: make([]byte, 32), KeyID: "s"},
		"small RSA": {Key: &rsa1k().PublicKey, KeyID: "r"},
		"use enc":   {Key: &p256b().PublicKey, KeyID: "e", Use: "enc"},
		"alg HS256": {Key: &p256b().PublicKey, KeyID: "h", Algorithm: "HS256"},
		"alg RS256": {Key: &p256b().PublicKey, KeyID: "r", Algorithm: "RS256"},
		"alg XYZ":   {Key: &p256b().PublicKey, KeyID: "x", Algorithm: "XYZ"},
		"huge RSA":  {Key: &rsa.PublicKey{N: new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 8200), big.NewInt(1)), E: 65537}, KeyID: "h"},
	}
	for name, k := range bad {
		assert.ErrorIs(t, store.NormalizeKey(&k), store.ErrInvalid, name)
	}
}

func TestNormalizeTrustAcceptsNewRules(t *testing.T) {
	tr := validTrust()
	tr.Subjects = []string{"b", "c"}
	tr.SubjectPatterns = []string{"ns:*", "repo:acme/**"}
	tr.RequiredClaims = map[string]string{"repository_owner": "acme"}
	tr.MaxAssertionLifetime = store.Duration(2 * time.Hour)
	tr.AccessTokenLifetime = store.Duration(10 * time.Minute)
	claims := tr.RequiredClaims
	require.NoError(t, store.NormalizeTrust(&tr))
	claims["repository_owner"] = "evil"
	assert.Equal(t, "acme", tr.RequiredClaims["repository_owner"], "the stored map is a copy")

	remote := validTrust()
	remote.Keys, remote.JWKSURI = nil, "https://issuer.example/jwks"
	require.NoError(t, store.NormalizeTrust(&remote))
	assert.True(t, remote.Remote())

	disc := validTrust()
	disc.Keys, disc.Issuer, disc.OIDCDiscovery = nil, "https://token.actions.githubusercontent.com", true
	require.NoError(t, store.NormalizeTrust(&disc))
	assert.True(t, disc.Remote())
}

// BenchmarkMatchSubjectWorst is a subject of the largest size the handler
// lets through against an adversarial pattern: it must stay in the
// microseconds, since it runs before any signature is checked.
func BenchmarkMatchSubjectWorst(b *testing.B) {
	pattern := "x" + strings.Repeat("**a", 7) + "**b"
	if err := store.CheckSubjectPattern(pattern); err != nil {
		b.Fatal(err)
	}
	sub := "x" + strings.Repeat("a", 1023) + "b"
	for b.Loop() {
		store.MatchSubject(pattern, sub)
	}
}
