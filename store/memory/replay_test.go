package memory

import (
	"fmt"
	"math"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func newCache() *jtiCache {
	c := &jtiCache{}
	c.init()
	return c
}

func (c *jtiCache) size() (live, queued int) {
	for i := range c.shards {
		live += len(c.shards[i].live)
		queued += len(c.shards[i].expiry)
	}
	return live, queued
}

func TestClaimExpiry(t *testing.T) {
	c := newCache()
	k := hashKey(nsAssertion, "iss", "jti")
	const now = int64(1_000_000)

	assert.True(t, c.claim(k, now+100, now))
	assert.False(t, c.claim(k, now+100, now+50))
	assert.False(t, c.claim(k, now+500, now+100), "still valid at its expiry instant")
	assert.True(t, c.claim(k, now+500, now+101), "claimable once the expiry has passed")
	assert.False(t, c.claim(k, now+900, now+300))
}

func TestClaimUntilInThePast(t *testing.T) {
	c := newCache()
	k := hashKey(nsAssertion, "iss", "jti")
	const now = int64(1_000_000)

	assert.True(t, c.claim(k, now-1, now))
	assert.True(t, c.claim(k, now-1, now), "an already expired claim is not remembered (documented)")
	live, queued := c.size()
	assert.Zero(t, live)
	assert.Zero(t, queued)

	// It never overrides a live claim.
	require.True(t, c.claim(k, now+100, now))
	assert.False(t, c.claim(k, now-1, now))
}

func TestClaimFarFuture(t *testing.T) {
	s := New()
	// time.Time.UnixNano wraps after 2262; unclamped, this claim would be
	// forgotten at once.
	until := time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC)
	fresh, err := s.ClaimJTI(t.Context(), "iss", "jti", until)
	require.NoError(t, err)
	assert.True(t, fresh)
	fresh, err = s.ClaimJTI(t.Context(), "iss", "jti", until)
	require.NoError(t, err)
	assert.False(t, fresh)
	assert.Equal(t, int64(math.MaxInt64), unixNano(until))
	assert.Equal(t, int64(math.MinInt64), unixNano(time.Time{}))
}

func TestHashKeyUnambiguous(t *testing.T) {
	assert.NotEqual(t, hashKey(nsAssertion, "a", "bc"), hashKey(nsAssertion, "ab", "c"))
	assert.NotEqual(t, hashKey(nsAssertion, "a\x00", "b"), hashKey(nsAssertion, "a", "\x00b"))
	assert.NotEqual(t, hashKey(nsAssertion, "", "x"), hashKey(nsClient, "", "x"))
	assert.Equal(t, hashKey(nsAssertion, "a", "b"), hashKey(nsAssertion, "a", "b"))
}

// TestSweepIsBoundedAndDrains checks that expired jtis are forgotten by
// later claims, a few at a time, without any call walking the whole cache.
func TestSweepIsBoundedAndDrains(t *testing.T) {
	c := newCache()
	const n = 64 * 200
	for i := range n {
		require.True(t, c.claim(hashKey(nsAssertion, "iss", fmt.Sprint(i)), 100, 0))
	}
	live, queued := c.size()
	require.Equal(t, n, live)
	require.Equal(t, n, queued)

	// One claim after the expiry forgets at most sweepBatch entries of its
	// shard, not the whole cache.
	require.True(t, c.claim(hashKey(nsAssertion, "iss", "late-0"), 1000, 200))
	live, _ = c.size()
	assert.Equal(t, n+1-sweepBatch, live)

	// Enough later claims drain the backlog completely; the unexpired
	// entries stay.
	for i := 1; i < n; i++ {
		c.claim(hashKey(nsAssertion, "iss", fmt.Sprint("late-", i)), 1000, 200)
	}
	live, queued = c.size()
	assert.Equal(t, n, live, "only the late claims remain")
	assert.Equal(t, n, queued)
	for i := range 10 {
		assert.True(t, c.claim(hashKey(nsAssertion, "iss", fmt.Sprint(i)), 1000, 200), "expired jti %d is claimable", i)
	}
}

// sameShard returns n keys that fall in the shard of k.
func sameShard(k jtiKey, n int) []jtiKey {
	var keys []jtiKey
	for i := 0; len(keys) < n; i++ {
		o := hashKey(nsAssertion, "other", fmt.Sprint(i))
		if o[0]%jtiShards == k[0]%jtiShards {
			keys = append(keys, o)
		}
	}
	return keys
}

func TestSweepSkipsReclaimedKeys(t *testing.T) {
	c := newCache()
	k := hashKey(nsAssertion, "iss", "jti")
	// sweepBatch entries of k's shard expire before k, so that the claim
	// below cannot sweep k's old entry first.
	for i, o := range sameShard(k, sweepBatch) {
		require.True(t, c.claim(o, int64(10+i), 0))
	}
	require.True(t, c.claim(k, 100, 0))

	// k expired and is claimed again while its old heap entry is still
	// queued; popping that entry later must not forget the new claim.
	require.True(t, c.claim(k, 10_000, 200))
	require.Len(t, c.shards[k[0]%jtiShards].expiry, 2, "the old entry is still queued")
	require.True(t, c.claim(hashKey(nsAssertion, "iss", "other"), 10_000, 300))
	for _, o := range sameShard(k, 3) {
		c.claim(o, 10_000, 300)
	}
	assert.False(t, c.claim(k, 10_000, 400), "the new claim is remembered")
}

func TestCompactAfterBurst(t *testing.T) {
	c := newCache()
	sh := &c.shards[0]
	// Fill one shard well past compactMin, let it all expire, then drain.
	var keys []jtiKey
	for i := 0; len(keys) < 4*compactMin; i++ {
		k := hashKey(nsAssertion, "iss", fmt.Sprint(i))
		if k[0]%jtiShards == 0 {
			keys = append(keys, k)
		}
	}
	for _, k := range keys {
		require.True(t, c.claim(k, 100, 0))
	}
	peakCap := cap(sh.expiry)
	for i := 0; len(sh.live) > 0 && i < len(keys); i++ {
		sh.mu.Lock()
		sh.sweep(200)
		sh.mu.Unlock()
	}
	assert.Empty(t, sh.live)
	assert.Less(t, cap(sh.expiry), peakCap/4, "the heap gives memory back")
	assert.LessOrEqual(t, sh.peak, compactMin, "the map was rebuilt")
}

func TestHeapOrder(t *testing.T) {
	var sh jtiShard
	sh.live = map[jtiKey]int64{}
	for _, until := range []int64{50, 10, 40, 30, 20, 60, 0, 70} {
		sh.push(jtiEntry{until: until})
	}
	var got []int64
	for len(sh.expiry) > 0 {
		got = append(got, sh.pop().until)
	}
	assert.Equal(t, []int64{0, 10, 20, 30, 40, 50, 60, 70}, got)
}

// BenchmarkClaimJTI claims fresh jtis from 16 goroutines with 0, 100,000
// and 1,000,000 unexpired jtis already remembered: the cost must not grow
// with them (no scan, no global lock). The jti strings are made before the
// clock starts.
func BenchmarkClaimJTI(b *testing.B) {
	for _, preload := range []int{0, 100_000, 1_000_000} {
		b.Run(fmt.Sprint("preloaded-", preload), func(b *testing.B) {
			s := New()
			until := time.Now().Add(time.Hour)
			for i := range preload {
				_, _ = s.ClaimJTI(b.Context(), "https://preload.example", strconv.Itoa(i), until)
			}
			jtis := make([]string, b.N)
			for i := range jtis {
				jtis[i] = "bench-" + strconv.Itoa(i)
			}
			var next atomic.Int64
			b.SetParallelism(8)
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					i := next.Add(1) - 1
					if fresh, _ := s.ClaimJTI(b.Context(), "https://issuer.example", jtis[i], until); !fresh {
						b.Error("claim refused")
						return
					}
				}
			})
		})
	}
}

// TestClaimJTIReplayDoesNotAllocate checks the key derivation and a
// rejected claim stay off the heap; a fresh claim only allocates when a
// shard's map or heap grows.
func TestClaimJTIReplayDoesNotAllocate(t *testing.T) {
	s := New()
	until := time.Now().Add(time.Hour)
	ctx := t.Context()
	fresh, err := s.ClaimJTI(ctx, "https://issuer.example", "jti-1", until)
	require.NoError(t, err)
	require.True(t, fresh)
	allocs := testing.AllocsPerRun(100, func() {
		_, _ = s.ClaimJTI(ctx, "https://issuer.example", "jti-1", until)
		_ = s.ClientAssertionJWTValid(ctx, "jti-2")
	})
	assert.Zero(t, allocs)
}
