package memory

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/ory/fosite"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func request(id string, accessExp time.Time) fosite.Requester {
	r := fosite.NewAccessRequest(&fosite.DefaultSession{ExpiresAt: map[fosite.TokenType]time.Time{fosite.AccessToken: accessExp}})
	r.SetID(id)
	return r
}

// checkHeap verifies the heap order and that every session knows its index.
func checkHeap(t *testing.T, ts *tokenStore) {
	t.Helper()
	for i, s := range ts.expiry {
		require.Equal(t, i, s.heapIndex)
		if i > 0 {
			require.LessOrEqual(t, ts.expiry[(i-1)/2].expires, s.expires)
		}
		require.Same(t, s, ts.table(s.kind)[s.signature], "a queued session is stored")
	}
}

func TestTokenSweepForgetsExpiredSessions(t *testing.T) {
	var ts tokenStore
	ts.init()
	base := time.Unix(1_000_000, 0)
	const n = 200
	for i := range n {
		require.NoError(t, ts.create(accessToken, fmt.Sprint("old-", i), request(fmt.Sprint("req-", i), base), base.UnixNano()-1))
	}
	require.Len(t, ts.access, n)
	require.Len(t, ts.byRequest, n)

	// Each write after the expiry forgets a bounded batch.
	now := base.Add(time.Second).UnixNano()
	require.NoError(t, ts.create(accessToken, "new-0", request("new", base.Add(time.Hour)), now))
	assert.Len(t, ts.access, n+1-sweepBatch)

	for i := 1; i < n; i++ {
		require.NoError(t, ts.create(accessToken, fmt.Sprint("new-", i), request("new", base.Add(time.Hour)), now))
	}
	assert.Len(t, ts.access, n, "only the new sessions remain")
	assert.Len(t, ts.byRequest, 1, "the request index forgets them too")
	assert.Len(t, ts.byRequest["new"], n)
	checkHeap(t, &ts)
}

func TestTokenHeapStaysConsistent(t *testing.T) {
	var ts tokenStore
	ts.init()
	rng := rand.New(rand.NewPCG(1, 2))
	base := time.Unix(1_000_000, 0)
	for i := range 500 {
		exp := base.Add(time.Duration(rng.IntN(1000)) * time.Second)
		require.NoError(t, ts.create(accessToken, fmt.Sprint("at-", i%300), request(fmt.Sprint("req-", i%50), exp), base.UnixNano()))
		if rng.IntN(4) == 0 {
			ts.delete(accessToken, fmt.Sprint("at-", rng.IntN(300)))
		}
		if rng.IntN(20) == 0 {
			ts.revokeAccess(fmt.Sprint("req-", rng.IntN(50)))
		}
		checkHeap(t, &ts)
	}
	assert.Len(t, ts.expiry, len(ts.access), "every session with an expiry is queued once")
}
