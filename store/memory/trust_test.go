package memory

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"fmt"
	"sync"
	"testing"

	jose "github.com/go-jose/go-jose/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/jwtbearer/jwtbearer/store"
)

var testKeys = sync.OnceValue(func() []*ecdsa.PrivateKey {
	keys := make([]*ecdsa.PrivateKey, 4)
	for i := range keys {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			panic(err)
		}
		keys[i] = k
	}
	return keys
})

func testKey(i int) *ecdsa.PublicKey { return &testKeys()[i%len(testKeys())].PublicKey }

// fill stores n relationships of one issuer, each with its own subject,
// plus one any-subject relationship.
func fill(t testing.TB, s *Store, n int) {
	for i := range n {
		_, err := s.CreateTrust(t.Context(), store.Trust{
			Issuer: "https://issuer.example", Subject: fmt.Sprint("sub-", i),
			Keys: []jose.JSONWebKey{{Key: testKey(i), KeyID: fmt.Sprint("k", i)}},
		})
		require.NoError(t, err)
	}
	_, err := s.CreateTrust(t.Context(), store.Trust{
		Issuer: "https://issuer.example", AnySubject: true,
		Keys: []jose.JSONWebKey{{Key: testKey(0), KeyID: "any"}},
	})
	require.NoError(t, err)
}

func TestTrustedKeysDoesNotAllocate(t *testing.T) {
	s := New()
	fill(t, s, 100)
	ctx := t.Context()
	allocs := testing.AllocsPerRun(100, func() {
		_, _ = s.TrustedKeys(ctx, "https://issuer.example", "sub-7", "")
		_, _ = s.TrustedKeys(ctx, "https://issuer.example", "sub-7", "k7")
		_, _ = s.TrustedKeys(ctx, "https://issuer.example", "nobody", "any")
		_, _ = s.TrustedKeys(ctx, "https://other.example", "sub-7", "")
	})
	assert.Zero(t, allocs)
}

// TestTrustedKeysResultIsClipped checks that a caller appending to the
// shared result gets a new array instead of writing into the index.
func TestTrustedKeysResultIsClipped(t *testing.T) {
	s := New()
	fill(t, s, 3)
	for _, kid := range []string{"", "k1", "any"} {
		keys, err := s.TrustedKeys(t.Context(), "https://issuer.example", "sub-1", kid)
		require.NoError(t, err)
		require.NotEmpty(t, keys)
		assert.Equal(t, len(keys), cap(keys), "kid %q", kid)
	}
	keys, err := s.TrustedKeys(t.Context(), "https://issuer.example", "sub-1", "")
	require.NoError(t, err)
	assert.Equal(t, "k1", keys[0].Key.KeyID, "the named subject's keys come first")
	assert.Equal(t, "any", keys[1].Key.KeyID)
}

// BenchmarkTrustedKeys shows that the lookup cost does not depend on the
// number of relationships (issue 5: flat within 10% from 1 to 100,000).
func BenchmarkTrustedKeys(b *testing.B) {
	for _, n := range []int{1, 1_000, 100_000} {
		b.Run(fmt.Sprint(n, "-relationships"), func(b *testing.B) {
			s := New()
			fill(b, s, n)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				_, _ = s.TrustedKeys(b.Context(), "https://issuer.example", "sub-0", "k0")
			}
		})
	}
}
