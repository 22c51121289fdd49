package redis_test

import (
	"encoding/json"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ory/fosite"
	goredis "github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/jwtbearer/jwtbearer/store"
	"github.com/jwtbearer/jwtbearer/store/redis"
	"github.com/jwtbearer/jwtbearer/store/redis/redistest"
)

// TestTwoInstances runs two stores on one Redis, as two server instances
// behind a load balancer would.
func TestTwoInstances(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	const refresh = 200 * time.Millisecond
	prefix := newPrefix()
	cfg := redis.Config{Addrs: []string{srv.Addr}, KeyPrefix: prefix, TrustRefresh: refresh}
	a, b := openStore(t, cfg), openStore(t, cfg)

	t.Run("jti claimed on one is refused on the other", func(t *testing.T) {
		until := time.Now().Add(time.Hour)
		fresh, err := a.ClaimJTI(t.Context(), "https://issuer.example", "jti-1", until)
		require.NoError(t, err)
		assert.True(t, fresh)
		fresh, err = b.ClaimJTI(t.Context(), "https://issuer.example", "jti-1", until)
		require.NoError(t, err)
		assert.False(t, fresh)

		require.NoError(t, b.SetClientAssertionJWT(t.Context(), "client-jti-1", until))
		assert.ErrorIs(t, a.ClientAssertionJWTValid(t.Context(), "client-jti-1"), fosite.ErrJTIKnown)
		assert.ErrorIs(t, a.SetClientAssertionJWT(t.Context(), "client-jti-1", until), fosite.ErrJTIKnown)
	})

	t.Run("one winner across instances", func(t *testing.T) {
		for round := range 10 {
			jti := "race-" + string(rune('a'+round))
			var wins, failures atomic.Int32
			var start, done sync.WaitGroup
			start.Add(1)
			for i := range 64 {
				s := a
				if i%2 == 1 {
					s = b
				}
				done.Go(func() {
					start.Wait()
					fresh, err := s.ClaimJTI(t.Context(), "https://issuer.example", jti, time.Now().Add(time.Hour))
					if err != nil {
						failures.Add(1)
					}
					if fresh {
						wins.Add(1)
					}
				})
			}
			start.Done()
			done.Wait()
			require.Zero(t, failures.Load())
			require.Equal(t, int32(1), wins.Load(), "round %d: exactly one of 64 claims on two instances wins", round)
		}
	})

	t.Run("tokens are shared", func(t *testing.T) {
		ctx := t.Context()
		exp := time.Now().Add(time.Hour)
		req := newRequest("req-1", "client-1", exp, exp)
		require.NoError(t, a.CreateAccessTokenSession(ctx, "at-1", req))
		require.NoError(t, a.CreateRefreshTokenSession(ctx, "rt-1", "at-1", req))

		got, err := b.GetAccessTokenSession(ctx, "at-1", &fosite.DefaultSession{})
		require.NoError(t, err)
		assert.Equal(t, "req-1", got.GetID())
		assert.Equal(t, "client-1", got.GetClient().GetID())
		assert.Equal(t, "alice", got.GetSession().GetSubject())
		_, err = b.GetRefreshTokenSession(ctx, "rt-1", nil)
		require.NoError(t, err)

		require.NoError(t, b.RevokeAccessToken(ctx, "req-1"))
		require.NoError(t, b.RevokeRefreshToken(ctx, "req-1"))
		_, err = a.GetAccessTokenSession(ctx, "at-1", &fosite.DefaultSession{})
		assert.ErrorIs(t, err, fosite.ErrNotFound)
		got, err = a.GetRefreshTokenSession(ctx, "rt-1", &fosite.DefaultSession{})
		assert.ErrorIs(t, err, fosite.ErrInactiveToken)
		if assert.NotNil(t, got) {
			assert.Equal(t, "req-1", got.GetID())
		}
	})

	t.Run("clients are shared", func(t *testing.T) {
		require.NoError(t, a.CreateClient(t.Context(), &fosite.DefaultClient{ID: "shared-client", Secret: []byte("hash")}))
		c, err := b.GetClient(t.Context(), "shared-client")
		require.NoError(t, err)
		assert.Equal(t, "shared-client", c.GetID())
	})

	t.Run("trust changes reach the other instance within a second", func(t *testing.T) {
		ctx := t.Context()
		issuer := "https://propagation.example"
		_, err := a.CreateTrust(ctx, ecTrust(t, "p1", issuer, "alice"))
		require.NoError(t, err)
		assert.Equal(t, []string{"p1-key"}, kidsOf(t, a, issuer, "alice"), "the writer sees its write at once")
		took := waitFor(3*time.Second, func() bool { return len(kidsOf(t, b, issuer, "alice")) == 1 })
		assert.Less(t, took, time.Second, "created on A, resolves on B")
		got, err := b.GetTrust(ctx, "p1")
		require.NoError(t, err)
		assert.Equal(t, issuer, got.Issuer)

		require.NoError(t, b.DeleteTrust(ctx, "p1"))
		assert.Empty(t, kidsOf(t, b, issuer, "alice"), "the writer sees its delete at once")
		took = waitFor(3*time.Second, func() bool { return len(kidsOf(t, a, issuer, "alice")) == 0 })
		assert.Less(t, took, time.Second, "deleted on B, gone on A")
	})

	t.Run("trust changes without pub/sub reach both by polling", func(t *testing.T) {
		// Write as another program would, bumping the version but
		// publishing nothing: only the version poll can notice.
		ctx := t.Context()
		raw := goredis.NewClient(&goredis.Options{Addr: srv.Addr})
		defer func() { _ = raw.Close() }()
		issuer := "https://silent.example"
		tr := ecTrust(t, "silent-1", issuer, "")
		require.NoError(t, store.NormalizeTrust(&tr))
		body, err := json.Marshal(&tr)
		require.NoError(t, err)
		require.NoError(t, raw.HSet(ctx, prefix+"{trust}", tr.ID, body).Err())
		require.NoError(t, raw.Incr(ctx, prefix+"{trust}:version").Err())

		for name, s := range map[string]*redis.Store{"A": a, "B": b} {
			took := waitFor(3*time.Second, func() bool { return len(kidsOf(t, s, issuer, "anyone")) == 1 })
			assert.Less(t, took, refresh+500*time.Millisecond, "instance %s picks up the change at its next poll", name)
		}

		require.NoError(t, raw.HDel(ctx, prefix+"{trust}", tr.ID).Err())
		require.NoError(t, raw.Incr(ctx, prefix+"{trust}:version").Err())
		for name, s := range map[string]*redis.Store{"A": a, "B": b} {
			took := waitFor(3*time.Second, func() bool { return len(kidsOf(t, s, issuer, "anyone")) == 0 })
			assert.Less(t, took, refresh+500*time.Millisecond, "instance %s drops the deleted relationship at its next poll", name)
		}
	})

	t.Run("an invalid record written around the store is not trusted", func(t *testing.T) {
		ctx := t.Context()
		raw := goredis.NewClient(&goredis.Options{Addr: srv.Addr})
		defer func() { _ = raw.Close() }()
		issuer := "https://tampered.example"
		tr := ecTrust(t, "tampered", issuer, "alice")
		tr.Algorithms = []string{"none"}
		body, err := json.Marshal(&tr)
		require.NoError(t, err)
		require.NoError(t, raw.HSet(ctx, prefix+"{trust}", tr.ID, body, "corrupt", "{not json").Err())
		require.NoError(t, raw.Incr(ctx, prefix+"{trust}:version").Err())

		// A valid relationship written afterwards shows the reload ran.
		_, err = a.CreateTrust(ctx, ecTrust(t, "after-tamper", issuer, "bob"))
		require.NoError(t, err)
		waitFor(3*time.Second, func() bool { return len(kidsOf(t, b, issuer, "bob")) == 1 })
		assert.Equal(t, []string{"after-tamper-key"}, kidsOf(t, b, issuer, "bob"))
		assert.Empty(t, kidsOf(t, b, issuer, "alice"), "a relationship that fails validation is left out")
		require.NoError(t, raw.HDel(ctx, prefix+"{trust}", "tampered", "corrupt").Err())
	})
}

// TestTrustAfterDataLoss empties Redis under two instances (FLUSHALL, as
// a failover to an empty replica or a restart without persistence would)
// and writes new relationships through one of them: both must serve what
// Redis holds within a second, although the new writes bring the count of
// writes back to where it was before the loss.
func TestTrustAfterDataLoss(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	prefix := newPrefix()
	// A long poll: only the invalidation messages can bring the news.
	cfg := redis.Config{Addrs: []string{srv.Addr}, KeyPrefix: prefix, TrustRefresh: time.Hour}
	a, b := openStore(t, cfg), openStore(t, cfg)
	raw := goredis.NewClient(&goredis.Options{Addr: srv.Addr})
	t.Cleanup(func() { _ = raw.Close() })
	ctx := t.Context()
	const issuer = "https://issuer.example"

	for _, id := range []string{"t1", "t2"} {
		_, err := a.CreateTrust(ctx, ecTrust(t, id, issuer, ""))
		require.NoError(t, err)
	}
	waitFor(3*time.Second, func() bool { return len(kidsOf(t, b, issuer, "alice")) == 2 })
	require.ElementsMatch(t, []string{"t1-key", "t2-key"}, kidsOf(t, b, issuer, "alice"))

	require.NoError(t, raw.FlushAll(ctx).Err())
	_, err := a.CreateTrust(ctx, ecTrust(t, "t3", issuer, ""))
	require.NoError(t, err)
	_, err = a.CreateTrust(ctx, ecTrust(t, "t4", issuer, ""))
	require.NoError(t, err)

	want := []string{"t3-key", "t4-key"}
	for name, s := range map[string]*redis.Store{"A": a, "B": b} {
		took := waitFor(3*time.Second, func() bool {
			kids := kidsOf(t, s, issuer, "alice")
			return len(kids) == 2 && kids[0] == want[0] && kids[1] == want[1]
		})
		assert.Equal(t, want, kidsOf(t, s, issuer, "alice"), "instance %s serves what Redis holds", name)
		assert.Less(t, took, time.Second, "instance %s", name)
	}
}

// TestTrustUpdateAcrossInstances updates a relationship on A, back and
// forth between two key sets: A serves the new version when UpdateTrust
// returns, and B serves it within a second, serving the old one until
// then and never nothing.
func TestTrustUpdateAcrossInstances(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	cfg := redis.Config{Addrs: []string{srv.Addr}, KeyPrefix: newPrefix(), TrustRefresh: 200 * time.Millisecond}
	a, b := openStore(t, cfg), openStore(t, cfg)
	ctx := t.Context()
	const issuer = "https://update.example"

	v1 := ecTrust(t, "u1", issuer, "alice")
	v1.Keys[0].KeyID = "v1-key"
	v2 := ecTrust(t, "u1", issuer, "alice")
	v2.Keys[0].KeyID = "v2-key"
	v2.Scopes = []string{"read", "write"}
	_, err := a.CreateTrust(ctx, v1)
	require.NoError(t, err)
	waitFor(3*time.Second, func() bool { return len(kidsOf(t, b, issuer, "alice")) == 1 })
	require.Equal(t, []string{"v1-key"}, kidsOf(t, b, issuer, "alice"))

	for round, next := range []store.Trust{v2, v1, v2, v1} {
		prev := []string{"v1-key"}
		if next.Keys[0].KeyID == "v1-key" {
			prev = []string{"v2-key"}
		}
		want := []string{next.Keys[0].KeyID}

		_, err := a.UpdateTrust(ctx, next)
		require.NoError(t, err, "round %d", round)
		assert.Equal(t, want, kidsOf(t, a, issuer, "alice"), "round %d: the writer serves its update at once", round)

		start := time.Now()
		served := false
		for !served && time.Since(start) < 3*time.Second {
			got := kidsOf(t, b, issuer, "alice")
			if served = assert.ObjectsAreEqual(want, got); !served {
				require.Equal(t, prev, got, "round %d: B serves the old version until the new one, never nothing", round)
				time.Sleep(2 * time.Millisecond)
			}
		}
		took := time.Since(start)
		require.True(t, served, "round %d: B never served the update", round)
		assert.Less(t, took, time.Second, "round %d: updated on A, served by B", round)

		got, err := b.GetTrust(ctx, "u1")
		require.NoError(t, err)
		assert.Equal(t, want[0], got.Keys[0].KeyID)
	}
	keys, err := b.TrustedKeys(ctx, issuer, "alice", "")
	require.NoError(t, err)
	require.Len(t, keys, 1)
	assert.Equal(t, []string{"read"}, keys[0].Trust.Scopes, "B serves the whole new version")
}
