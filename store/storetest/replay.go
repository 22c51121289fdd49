package storetest

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ory/fosite"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/jwtbearer/jwtbearer/store"
)

func claim(t *testing.T, s Store, issuer, jti string, until time.Time) bool {
	t.Helper()
	fresh, err := s.ClaimJTI(t.Context(), issuer, jti, until)
	require.NoError(t, err)
	return fresh
}

func testReplayFirstUseWins(t *testing.T, s Store) {
	until := time.Now().Add(hour)
	assert.True(t, claim(t, s, "https://issuer.example", "jti-1", until), "first use")
	assert.False(t, claim(t, s, "https://issuer.example", "jti-1", until), "replay")
	assert.False(t, claim(t, s, "https://issuer.example", "jti-1", until.Add(hour)), "replay with a later expiry")
	assert.True(t, claim(t, s, "https://issuer.example", "jti-2", until), "another jti")
}

func testReplaySeparateIssuers(t *testing.T, s Store) {
	until := time.Now().Add(hour)
	assert.True(t, claim(t, s, "https://a.example", "jti-1", until))
	assert.True(t, claim(t, s, "https://b.example", "jti-1", until), "the same jti from another issuer is fresh")
	assert.False(t, claim(t, s, "https://a.example", "jti-1", until))
	assert.False(t, claim(t, s, "https://b.example", "jti-1", until))

	// The pair is kept apart, not concatenated.
	assert.True(t, claim(t, s, "a", "bc", until))
	assert.True(t, claim(t, s, "ab", "c", until))
}

func testReplayExpiresThenClaimableAgain(t *testing.T, s Store) {
	assert.True(t, claim(t, s, "https://issuer.example", "jti-1", time.Now().Add(shortTTL)))
	assert.False(t, claim(t, s, "https://issuer.example", "jti-1", time.Now().Add(shortTTL)), "still remembered")
	assert.True(t, claim(t, s, "https://issuer.example", "jti-long", time.Now().Add(hour)))

	time.Sleep(waitPastTTL)
	assert.True(t, claim(t, s, "https://issuer.example", "jti-1", time.Now().Add(hour)), "claimable again once expired")
	assert.False(t, claim(t, s, "https://issuer.example", "jti-1", time.Now().Add(hour)), "and remembered again")
	assert.False(t, claim(t, s, "https://issuer.example", "jti-long", time.Now().Add(hour)), "an unexpired jti is still remembered")
}

func testClientAssertionJTI(t *testing.T, s Store) {
	ctx := t.Context()
	require.NoError(t, s.ClientAssertionJWTValid(ctx, "jti-1"), "unknown jti is valid")
	require.NoError(t, s.SetClientAssertionJWT(ctx, "jti-1", time.Now().Add(hour)))
	assert.ErrorIs(t, s.ClientAssertionJWTValid(ctx, "jti-1"), fosite.ErrJTIKnown)
	assert.ErrorIs(t, s.SetClientAssertionJWT(ctx, "jti-1", time.Now().Add(hour)), fosite.ErrJTIKnown)
	assert.NoError(t, s.ClientAssertionJWTValid(ctx, "jti-2"))

	require.NoError(t, s.SetClientAssertionJWT(ctx, "jti-short", time.Now().Add(shortTTL)))
	assert.ErrorIs(t, s.ClientAssertionJWTValid(ctx, "jti-short"), fosite.ErrJTIKnown)
	time.Sleep(waitPastTTL)
	assert.NoError(t, s.ClientAssertionJWTValid(ctx, "jti-short"), "expired jtis are forgotten")
	assert.NoError(t, s.SetClientAssertionJWT(ctx, "jti-short", time.Now().Add(hour)))
	assert.ErrorIs(t, s.ClientAssertionJWTValid(ctx, "jti-1"), fosite.ErrJTIKnown)
}

// testClientAssertionNamespaceSeparate checks that assertion jtis
// (ClaimJTI) and fosite's client-assertion jtis do not see each other: a
// client's own assertion and a grant assertion may share a jti legitimately.
func testClientAssertionNamespaceSeparate(t *testing.T, s Store) {
	ctx := t.Context()
	until := time.Now().Add(hour)

	require.True(t, claim(t, s, "client-1", "shared-1", until))
	require.True(t, claim(t, s, "", "shared-1", until))
	assert.NoError(t, s.ClientAssertionJWTValid(ctx, "shared-1"), "ClaimJTI must not mark a client-assertion jti")
	assert.NoError(t, s.SetClientAssertionJWT(ctx, "shared-1", until))

	require.NoError(t, s.SetClientAssertionJWT(ctx, "shared-2", until))
	assert.True(t, claim(t, s, "client-1", "shared-2", until), "SetClientAssertionJWT must not claim an assertion jti")
	assert.True(t, claim(t, s, "", "shared-2", until))
	assert.ErrorIs(t, s.ClientAssertionJWTValid(ctx, "shared-2"), fosite.ErrJTIKnown)
}

// race starts n goroutines that run f(i) at the same moment and waits for
// them all.
func race(n int, f func(i int)) {
	var ready, done sync.WaitGroup
	start := make(chan struct{})
	ready.Add(n)
	for i := range n {
		done.Go(func() {
			ready.Done()
			<-start
			f(i)
		})
	}
	ready.Wait()
	close(start)
	done.Wait()
}

func testConcurrentClaimSameKey(t *testing.T, s Store) {
	const goroutines, rounds = 64, 20
	until := time.Now().Add(hour)
	for round := range rounds {
		jti := fmt.Sprintf("jti-%d", round)
		var wins, failures atomic.Int32
		race(goroutines, func(int) {
			fresh, err := s.ClaimJTI(t.Context(), "https://issuer.example", jti, until)
			if err != nil {
				failures.Add(1)
			}
			if fresh {
				wins.Add(1)
			}
		})
		require.Zero(t, failures.Load())
		require.Equal(t, int32(1), wins.Load(), "round %d: exactly one claim wins", round)
	}
}

func testConcurrentClaimDistinctKeys(t *testing.T, s Store) {
	const goroutines, perGoroutine = 64, 50
	until := time.Now().Add(hour)
	var wins, failures atomic.Int32
	race(goroutines, func(g int) {
		for i := range perGoroutine {
			fresh, err := s.ClaimJTI(t.Context(), "https://issuer.example", fmt.Sprintf("jti-%d-%d", g, i), until)
			if err != nil {
				failures.Add(1)
			}
			if fresh {
				wins.Add(1)
			}
		}
	})
	require.Zero(t, failures.Load())
	assert.Equal(t, int32(goroutines*perGoroutine), wins.Load(), "every distinct jti is fresh")
	assert.False(t, claim(t, s, "https://issuer.example", "jti-17-3", until))
}

func testConcurrentClientAssertionSameJTI(t *testing.T, s Store) {
	const goroutines = 64
	var accepted atomic.Int32
	var others atomic.Int32
	race(goroutines, func(int) {
		err := s.SetClientAssertionJWT(t.Context(), "jti-1", time.Now().Add(hour))
		switch {
		case err == nil:
			accepted.Add(1)
		case !errors.Is(err, fosite.ErrJTIKnown):
			others.Add(1)
		}
	})
	assert.Zero(t, others.Load(), "the losers get fosite.ErrJTIKnown")
	assert.Equal(t, int32(1), accepted.Load(), "exactly one request may use a client-assertion jti")
}

func testReplayInspector(t *testing.T, s Store) {
	insp, ok := s.(store.ReplayInspector)
	if !ok {
		t.Skip("the store does not implement store.ReplayInspector")
	}
	ctx := t.Context()
	used, err := insp.JTIUsed(ctx, "https://issuer.example", "j1")
	require.NoError(t, err)
	assert.False(t, used)
	used, err = insp.JTIUsed(ctx, "https://issuer.example", "j1")
	require.NoError(t, err)
	assert.False(t, used, "looking does not claim")
	require.True(t, claim(t, s, "https://issuer.example", "j1", time.Now().Add(time.Minute)))
	used, err = insp.JTIUsed(ctx, "https://issuer.example", "j1")
	require.NoError(t, err)
	assert.True(t, used)
	used, err = insp.JTIUsed(ctx, "https://other.example", "j1")
	require.NoError(t, err)
	assert.False(t, used, "jtis are per issuer")
}
