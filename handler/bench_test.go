package handler_test

import (
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v3"
	"github.com/stretchr/testify/require"

	"github.com/jwtbearer/jwtbearer/handler"
	"github.com/jwtbearer/jwtbearer/handler/handlertest"
)

// BenchmarkVerifyRS256 is the floor: one go-jose RS256 verification of an
// assertion, which every token request needs. Compare the others with it.
func BenchmarkVerifyRS256(b *testing.B) {
	a := rsaKey.Sign(handlertest.Claims("TestClient", "User1", tokenURL, time.Now()))
	obj, err := jose.ParseSigned(a)
	require.NoError(b, err)
	for b.Loop() {
		if _, err := obj.Verify(&rsaKey.Public); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkTokenEndpoint runs fosite's whole token endpoint with the
// handler on the memory store: form parsing, key lookup, verification,
// claims, replay claim and token issuance. Assertions (unique jtis) are
// signed before the clock starts.
func BenchmarkTokenEndpoint(b *testing.B) {
	e := newEnv(b, &handler.Settings{}, trust(rsaKey))
	e.now = time.Now()
	e.settings.Now = time.Now
	const pool = 4096
	assertions := make([]string, pool)
	for i := range assertions {
		assertions[i] = rsaKey.Sign(e.claims())
	}
	i := 0
	for b.Loop() {
		if i == pool {
			b.StopTimer()
			for j := range assertions {
				assertions[j] = rsaKey.Sign(e.claims())
			}
			i = 0
			b.StartTimer()
		}
		if _, _, err := e.token(grant(assertions[i]), nil); err != nil {
			b.Fatal(err)
		}
		i++
	}
}
