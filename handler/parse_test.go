package handler

import (
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/jwtbearer/jwtbearer/handler/handlertest"
)

// The "typ" rule is "its lower case is a refused type", as it always was:
// without regard to ASCII case, and beyond ASCII by Unicode's lower case,
// not its case folding (which differ for 'İ' and 'ſ').
func TestTypeRefused(t *testing.T) {
	k := handlertest.NewRSAKey()
	claims := handlertest.Claims("TestClient", "User1", "https://server.example/token", time.Now())
	for typ, refused := range map[string]bool{
		"JWT":                            false,
		"jwt":                            false,
		"":                               false,
		"at+jwt":                         true,
		"AT+JWT":                         true,
		"Application/At+JWT":             true,
		"secevent+jwt":                   true,
		"appl\u0130cation/at+jwt":        true, // İ lowers to i
		"cl\u0130ent-authentication+jwt": true,
		"\u017fecevent+jwt":              false, // ſ folds to s but does not lower to it
		"at+jwt\u00a0":                   false,
		"\u212a":                         false, // KELVIN SIGN lowers to k
	} {
		_, err := parseAssertion(k.SignWith("RS256", map[string]interface{}{"kid": k.Public.KeyID, "typ": typ}, claims), DefaultMaxAssertionSize)
		assert.Equal(t, refused, err != nil, "typ %q: %v", typ, err)
	}
}

// The claims a token request keeps (iss, sub, jti, scope: they go into the
// session, the replay cache and token stores) must not keep the whole
// claims set alive: a 9 KiB claim beside them is not retained.
func TestKeptClaimsDoNotRetainTheClaimsSet(t *testing.T) {
	k := handlertest.NewRSAKey()
	const n = 200
	tokens := make([]string, n)
	for i := range tokens {
		c := handlertest.Claims("TestClient", "User1", "https://server.example/token", time.Now())
		c["scope"] = "read write"
		c["padding"] = strings.Repeat("p", 9<<10)
		tokens[i] = k.Sign(c)
	}
	type keptClaims struct{ iss, sub, jti, scope string }
	kept := make([]keptClaims, 0, n)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for _, tok := range tokens {
		a, err := parseAssertion(tok, DefaultMaxAssertionSize)
		require.NoError(t, err)
		kept = append(kept, keptClaims{a.claims.Issuer, a.claims.Subject, a.claims.ID, *a.claims.Scope})
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	// Retaining the claims sets would be about 200 × 9 KiB = 1.8 MiB.
	retained := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	assert.Less(t, retained, int64(600<<10), "heap retained by 200 parsed claims sets")
	for _, c := range kept {
		assert.Equal(t, "TestClient", c.iss)
		assert.Equal(t, "User1", c.sub)
		assert.NotEmpty(t, c.jti)
		assert.Equal(t, "read write", c.scope)
	}
	runtime.KeepAlive(kept)
	runtime.KeepAlive(tokens)
}
