package handler_test

import (
	"context"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v3"
	"github.com/stretchr/testify/require"

	"github.com/jwtbearer/jwtbearer/handler"
	"github.com/jwtbearer/jwtbearer/handler/handlertest"
	redisstore "github.com/jwtbearer/jwtbearer/store/redis"
	"github.com/jwtbearer/jwtbearer/store/redis/redistest"
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

// BenchmarkParseAssertion is the strict compact-JWS and claims parse that
// runs once per request (stock fosite parses the JWS three times).
func BenchmarkParseAssertion(b *testing.B) {
	a := rsaKey.Sign(handlertest.Claims("TestClient", "User1", tokenURL, time.Now()))
	b.ReportAllocs()
	for b.Loop() {
		if err := handler.ParseForBenchmark(a); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkValidate is the handler's validation path: parse, key
// resolution, signature verification and every claim check, on one
// goroutine. Its distance to BenchmarkVerifyRS256 is the handler's own
// overhead.
func BenchmarkValidate(b *testing.B) {
	e := newEnv(b, &handler.Settings{Now: time.Now}, trust(rsaKey))
	a := rsaKey.Sign(handlertest.Claims("TestClient", "User1", tokenURL, time.Now()))
	b.ReportAllocs()
	for b.Loop() {
		if err := e.handler.ValidateForBenchmark(b.Context(), a); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkKeyResolution is the trusted-key lookup the handler makes for
// an assertion (memory store, by issuer, subject and kid).
func BenchmarkKeyResolution(b *testing.B) {
	e := newEnv(b, &handler.Settings{}, trust(rsaKey))
	b.ReportAllocs()
	for b.Loop() {
		if keys, err := e.store.TrustedKeys(b.Context(), "TestClient", "User1", rsaKey.Public.KeyID); err != nil || len(keys) != 1 {
			b.Fatal(keys, err)
		}
	}
}

// BenchmarkTokenEndpoint runs fosite's whole token endpoint with the
// handler on the memory store: form parsing, key lookup, verification,
// claims, replay claim and token issuance. Assertions (unique jtis) are
// signed before the clock starts.
func BenchmarkTokenEndpoint(b *testing.B) {
	benchmarkTokenEndpoint(b, newEnv(b, &handler.Settings{}, trust(rsaKey)))
}

// BenchmarkTokenEndpointRedis is BenchmarkTokenEndpoint on the Redis store,
// with a redis-server of its own on loopback: the replay claim and the
// token write are one round trip each.
func BenchmarkTokenEndpointRedis(b *testing.B) {
	redistest.Require(b)
	// Redis's default durability (fsync every second), not the tests'
	// fsync on every write.
	rs := redistest.Start(b, redistest.WithArgs("--appendfsync", "everysec"))
	st, err := redisstore.Open(context.Background(), redisstore.Config{Addrs: []string{rs.Addr}, KeyPrefix: "bench:"}, nil)
	require.NoError(b, err)
	b.Cleanup(func() { _ = st.Close() })
	benchmarkTokenEndpoint(b, newEnvOn(b, st, &handler.Settings{}, trust(rsaKey)))
}

// benchmarkTokenEndpoint runs the endpoint from 16 goroutines, as
// concurrent clients would, so that a network store's round trips overlap:
// ns/op is the inverse of throughput.
func benchmarkTokenEndpoint(b *testing.B, e *env) {
	e.now = time.Now()
	e.settings.Now = time.Now
	// Unique-jti assertions, signed before the clock starts.
	assertions := make(chan string, b.N)
	for range b.N {
		assertions <- rsaKey.Sign(e.claims())
	}
	b.SetParallelism(8) // 16 goroutines on this 2-core machine
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			var a string
			select {
			case a = <-assertions:
			default:
				b.Error("more iterations than assertions")
				return
			}
			if _, _, err := e.token(grant(a), nil); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
