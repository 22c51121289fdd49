package redis

// Tests of the store's internals: interleavings that the public API cannot
// produce on demand, and the reply decoding of the replay claim.

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v3"
	"github.com/ory/fosite"
	goredis "github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/jwtbearer/jwtbearer/store"
	"github.com/jwtbearer/jwtbearer/store/redis/redistest"
)

func internalPrefix() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return "itest:" + hex.EncodeToString(b[:]) + ":"
}

func openInternal(t *testing.T, cfg Config) *Store {
	t.Helper()
	s, err := Open(t.Context(), cfg, nil)
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, s.Close()) })
	return s
}

func rawClient(t *testing.T, addr string) *goredis.Client {
	t.Helper()
	c := goredis.NewClient(&goredis.Options{Addr: addr})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// anyTrust returns a valid any-subject relationship with a fresh key whose
// kid is id+"-key".
func anyTrust(t *testing.T, id string) store.Trust {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tr := store.Trust{
		ID: id, Issuer: "https://issuer.example", AnySubject: true,
		Keys: []jose.JSONWebKey{{Key: &k.PublicKey, KeyID: id + "-key", Algorithm: "ES256", Use: "sig"}},
	}
	require.NoError(t, store.NormalizeTrust(&tr))
	return tr
}

func resolves(t *testing.T, s *Store, id string) bool {
	t.Helper()
	keys, err := s.TrustedKeys(t.Context(), "https://issuer.example", "anyone", id+"-key")
	require.NoError(t, err)
	return len(keys) > 0
}

// TestTrustVersionNeverGoesBack checks the version the trust scripts
// issue: one more than the last, at least Redis's clock in microseconds,
// and so larger after a FLUSHALL than every version before it.
func TestTrustVersionNeverGoesBack(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	s := openInternal(t, Config{Addrs: []string{srv.Addr}, KeyPrefix: internalPrefix()})
	raw := rawClient(t, srv.Addr)
	ctx := t.Context()

	create := func(id string) versions {
		t.Helper()
		body, err := json.Marshal(anyTrust(t, id))
		require.NoError(t, err)
		v, err := s.runTrustScript(ctx, createTrustScript, id, body)
		require.NoError(t, err)
		require.Positive(t, v.cur)
		return v
	}
	v1 := create("t1")
	v2 := create("t2")
	assert.Equal(t, v1.cur, v2.prev, "a write reports the version it replaced")
	assert.Greater(t, v2.cur, v1.cur)
	assert.Greater(t, v1.cur, time.Now().Add(-time.Hour).UnixMicro(), "versions start from Redis's clock")

	require.NoError(t, raw.FlushAll(ctx).Err())
	v3 := create("t3")
	assert.Zero(t, v3.prev, "no version before the first write")
	assert.Greater(t, v3.cur, v2.cur, "the version never goes back, even after a FLUSHALL")

	// A counter of an older release (or one written around the store)
	// goes on from where it is, but never below the clock.
	require.NoError(t, raw.Set(ctx, s.keys.trustVersion, 7, 0).Err())
	v4 := create("t4")
	assert.Equal(t, int64(7), v4.prev)
	assert.Greater(t, v4.cur, v3.cur)
	require.NoError(t, raw.Set(ctx, s.keys.trustVersion, v4.cur+1_000_000_000, 0).Err())
	v5 := create("t5")
	assert.Equal(t, v4.cur+1_000_000_001, v5.cur, "a version ahead of the clock is incremented")

	v, err := s.runTrustScript(ctx, deleteTrustScript, "t5")
	require.NoError(t, err)
	assert.Equal(t, v5.cur+1, v.cur)
	v, err = s.runTrustScript(ctx, deleteTrustScript, "t5")
	require.NoError(t, err)
	assert.Equal(t, int64(-1), v.cur, "nothing deleted, nothing bumped")
	got, err := raw.Get(ctx, s.keys.trustVersion).Int64()
	require.NoError(t, err)
	assert.Equal(t, v5.cur+1, got)

	body, err := json.Marshal(anyTrust(t, "t4"))
	require.NoError(t, err)
	v, err = s.runTrustScript(ctx, updateTrustScript, "t4", body)
	require.NoError(t, err)
	assert.Equal(t, v5.cur+1, v.prev)
	assert.Equal(t, v5.cur+2, v.cur, "an update bumps the version as the other writes do")
	v, err = s.runTrustScript(ctx, updateTrustScript, "t5", body)
	require.NoError(t, err)
	assert.Equal(t, int64(-1), v.cur, "nothing to update, nothing bumped, nothing created")
	exists, err := raw.HExists(ctx, s.keys.trust, "t5").Result()
	require.NoError(t, err)
	assert.False(t, exists)
	got, err = raw.Get(ctx, s.keys.trustVersion).Int64()
	require.NoError(t, err)
	assert.Equal(t, v5.cur+2, got)
}

// TestApplyLocalSkipsNewerCache runs the interleaving of a write on A
// whose local patch comes after A reloaded a later write of B: the patch
// must not undo B's write in A's cache, which nothing would reload since
// its version is current.
func TestApplyLocalSkipsNewerCache(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	cfg := Config{Addrs: []string{srv.Addr}, KeyPrefix: internalPrefix(), TrustRefresh: time.Hour}
	a, b := openInternal(t, cfg), openInternal(t, cfg)
	ctx := t.Context()

	t.Run("create then deleted elsewhere", func(t *testing.T) {
		tr := anyTrust(t, "t1")
		body, err := json.Marshal(&tr)
		require.NoError(t, err)
		// A's CreateTrust, up to its script.
		v, err := a.runTrustScript(ctx, createTrustScript, tr.ID, body)
		require.NoError(t, err)
		// B deletes it, and A reloads before its own patch.
		require.NoError(t, b.DeleteTrust(ctx, tr.ID))
		require.NoError(t, a.reload(ctx, false))
		require.False(t, resolves(t, a, tr.ID))
		before := a.trust.Load().version
		require.Greater(t, before, v.cur)

		a.applyCreate(ctx, v, tr)
		assert.False(t, resolves(t, a, tr.ID), "a deleted relationship is not patched back in")
		assert.Equal(t, before, a.trust.Load().version)
	})

	t.Run("delete then created again elsewhere", func(t *testing.T) {
		tr := anyTrust(t, "t2")
		_, err := a.CreateTrust(ctx, tr)
		require.NoError(t, err)
		v, err := a.runTrustScript(ctx, deleteTrustScript, tr.ID)
		require.NoError(t, err)
		_, err = b.CreateTrust(ctx, tr)
		require.NoError(t, err)
		require.NoError(t, a.reload(ctx, false))
		require.True(t, resolves(t, a, tr.ID))

		a.applyDelete(ctx, v, tr.ID)
		assert.True(t, resolves(t, a, tr.ID), "a relationship created again is not patched out")
	})

	t.Run("update then deleted elsewhere", func(t *testing.T) {
		tr := anyTrust(t, "t4")
		_, err := a.CreateTrust(ctx, tr)
		require.NoError(t, err)
		next := anyTrust(t, "t4")
		next.Keys[0].KeyID = "t4-next"
		body, err := json.Marshal(&next)
		require.NoError(t, err)
		// A's UpdateTrust, up to its script.
		v, err := a.runTrustScript(ctx, updateTrustScript, next.ID, body)
		require.NoError(t, err)
		require.Positive(t, v.cur)
		require.NoError(t, b.DeleteTrust(ctx, tr.ID))
		require.NoError(t, a.reload(ctx, false))
		before := a.trust.Load().version
		require.Greater(t, before, v.cur)

		a.applyUpdate(ctx, v, next)
		assert.False(t, resolves(t, a, tr.ID))
		keys, err := a.TrustedKeys(ctx, "https://issuer.example", "anyone", "t4-next")
		require.NoError(t, err)
		assert.Empty(t, keys, "a deleted relationship is not patched back in by an update")
		assert.Equal(t, before, a.trust.Load().version)
	})

	t.Run("update then updated again elsewhere", func(t *testing.T) {
		tr := anyTrust(t, "t5")
		_, err := a.CreateTrust(ctx, tr)
		require.NoError(t, err)
		mine := anyTrust(t, "t5")
		mine.Keys[0].KeyID = "t5-mine"
		body, err := json.Marshal(&mine)
		require.NoError(t, err)
		v, err := a.runTrustScript(ctx, updateTrustScript, mine.ID, body)
		require.NoError(t, err)
		theirs := anyTrust(t, "t5")
		theirs.Keys[0].KeyID = "t5-theirs"
		_, err = b.UpdateTrust(ctx, theirs)
		require.NoError(t, err)
		require.NoError(t, a.reload(ctx, false))

		a.applyUpdate(ctx, v, mine)
		got, err := a.TrustedKeys(ctx, "https://issuer.example", "anyone", "")
		require.NoError(t, err)
		var kids []string
		for _, k := range got {
			if k.Trust.ID == "t5" {
				kids = append(kids, k.Key.KeyID)
			}
		}
		assert.Equal(t, []string{"t5-theirs"}, kids, "a later update is not overwritten by a stale patch")
	})

	t.Run("update on a stale cache is patched in and reloaded", func(t *testing.T) {
		tr := anyTrust(t, "t6")
		_, err := a.CreateTrust(ctx, tr)
		require.NoError(t, err)
		// A write around the store, which publishes nothing: A's cache
		// misses it until something makes A reload.
		other := anyTrust(t, "t7")
		body, err := json.Marshal(&other)
		require.NoError(t, err)
		require.NoError(t, a.client.HSet(ctx, a.keys.trust, other.ID, body).Err())
		require.NoError(t, a.client.Incr(ctx, a.keys.trustVersion).Err())

		next := anyTrust(t, "t6")
		next.Keys[0].KeyID = "t6-next"
		_, err = a.UpdateTrust(ctx, next)
		require.NoError(t, err)
		keys, err := a.TrustedKeys(ctx, "https://issuer.example", "anyone", "t6-next")
		require.NoError(t, err)
		assert.Len(t, keys, 1, "the writer sees its update at once, even on a stale cache")
		assert.False(t, resolves(t, a, "t6"), "and no longer the old key")
		deadline := time.Now().Add(time.Second)
		for !resolves(t, a, "t7") && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		assert.True(t, resolves(t, a, "t7"), "the stale cache is reloaded within a second")
	})

	t.Run("a write on a current cache is patched in", func(t *testing.T) {
		tr := anyTrust(t, "t3")
		_, err := a.CreateTrust(ctx, tr)
		require.NoError(t, err)
		assert.True(t, resolves(t, a, tr.ID), "the writer sees its write at once")
	})
}

// TestClaimed checks how claim reads the reply of SET NX GET.
func TestClaimed(t *testing.T) {
	ctx := t.Context()
	reply := func(val string, err error) *goredis.StringCmd {
		cmd := goredis.NewStringCmd(ctx)
		cmd.SetVal(val)
		cmd.SetErr(err)
		return cmd
	}
	down := errors.New("connection reset")
	tests := []struct {
		name      string
		cmd       *goredis.StringCmd
		fresh     bool
		wantError bool
	}{
		{"key was absent: this SET stored it", reply("", goredis.Nil), true, false},
		{"our own nonce: a retry of this SET", reply("nonce-1", nil), true, false},
		{"another nonce: claimed before", reply("nonce-2", nil), false, false},
		{"an older release's value", reply("1", nil), false, false},
		{"an empty value", reply("", nil), false, false},
		{"a failure", reply("", down), false, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fresh, err := claimed(tc.cmd, "nonce-1")
			assert.Equal(t, tc.fresh, fresh)
			if tc.wantError {
				assert.ErrorIs(t, err, down)
			} else {
				assert.NoError(t, err)
			}
		})
	}
}

// replyDropper dials connections that, once armed with a string, lose the
// reply to the first command written that contains it: the command
// reaches Redis and runs, then the connection breaks before the client
// reads the answer, and the client sends the command again.
type replyDropper struct {
	mu      sync.Mutex
	armed   []byte
	dropped int
}

func (d *replyDropper) arm(s string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.armed = []byte(s)
}

func (d *replyDropper) count() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.dropped
}

func (d *replyDropper) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return &dropConn{Conn: c, d: d}, nil
}

type dropConn struct {
	net.Conn
	d    *replyDropper
	drop atomic.Bool
}

func (c *dropConn) Write(p []byte) (int, error) {
	c.d.mu.Lock()
	if len(c.d.armed) > 0 && bytes.Contains(p, c.d.armed) {
		c.d.armed = nil
		c.d.dropped++
		c.drop.Store(true)
	}
	c.d.mu.Unlock()
	return c.Conn.Write(p)
}

func (c *dropConn) Read(p []byte) (int, error) {
	if c.drop.Load() {
		// The reply's arrival shows that Redis ran the command.
		_, _ = c.Conn.Read(make([]byte, 512))
		_ = c.Close()
		return 0, io.EOF
	}
	return c.Conn.Read(p)
}

// TestClaimSurvivesLostReply loses the reply to a first claim, which the
// client then sends again: the claim is still fresh, on a single node
// (whose client retries) and on a Cluster (whose client retries a node
// before giving up), and the next claim is refused.
func TestClaimSurvivesLostReply(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	cluster := redistest.StartCluster(t, 3)
	off := &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
	clients := map[string]func(d *replyDropper) goredis.UniversalClient{
		"single node": func(d *replyDropper) goredis.UniversalClient {
			return goredis.NewClient(&goredis.Options{Addr: srv.Addr, Dialer: d.dial, MaxRetries: 2, MaintNotificationsConfig: off})
		},
		"cluster": func(d *replyDropper) goredis.UniversalClient {
			return goredis.NewClusterClient(&goredis.ClusterOptions{Addrs: cluster.Addrs, Dialer: d.dial, MaintNotificationsConfig: off})
		},
	}
	for name, newClient := range clients {
		t.Run(name, func(t *testing.T) {
			d := &replyDropper{}
			client := newClient(d)
			t.Cleanup(func() { _ = client.Close() })
			s, err := New(t.Context(), client, Config{KeyPrefix: internalPrefix()}, nil)
			require.NoError(t, err)
			t.Cleanup(func() { assert.NoError(t, s.Close()) })
			ctx := t.Context()
			until := time.Now().Add(time.Hour)

			for i := range 3 {
				jti := fmt.Sprint("jti-", i)
				d.arm(s.keys.jti("https://issuer.example", jti))
				fresh, err := s.ClaimJTI(ctx, "https://issuer.example", jti, until)
				require.NoError(t, err)
				require.Equal(t, i+1, d.count(), "the first reply was lost")
				assert.True(t, fresh, "a first claim whose reply was lost is still the first")
				fresh, err = s.ClaimJTI(ctx, "https://issuer.example", jti, until)
				require.NoError(t, err)
				assert.False(t, fresh, "a second claim is refused")
			}

			d.arm(s.keys.clientJTI("client-jti"))
			require.NoError(t, s.SetClientAssertionJWT(ctx, "client-jti", until), "a lost reply is not a used jti")
			require.Equal(t, 4, d.count())
			assert.ErrorIs(t, s.SetClientAssertionJWT(ctx, "client-jti", until), fosite.ErrJTIKnown)
		})
	}
}

// TestRequestIndexStaysSmall rotates one grant's refresh token many times,
// as a long-lived client does: the request's set keeps the live pair
// only, instead of a member for every token ever issued (which every
// rotation would send a script for).
func TestRequestIndexStaysSmall(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	s := openInternal(t, Config{Addrs: []string{srv.Addr}, KeyPrefix: internalPrefix()})
	raw := rawClient(t, srv.Addr)
	ctx := t.Context()
	exp := time.Now().Add(time.Hour)
	newReq := func() *fosite.Request {
		r := fosite.NewRequest()
		r.SetID("req-1")
		r.Client = &fosite.DefaultClient{ID: "client-1"}
		r.Session = &fosite.DefaultSession{ExpiresAt: map[fosite.TokenType]time.Time{
			fosite.AccessToken: exp, fosite.RefreshToken: exp,
		}}
		return r
	}
	setKey := s.keys.request("req-1")

	require.NoError(t, s.CreateAccessTokenSession(ctx, "at-0", newReq()))
	require.NoError(t, s.CreateRefreshTokenSession(ctx, "rt-0", "at-0", newReq()))
	const rotations = 300
	maxSize := int64(0)
	for i := 1; i <= rotations; i++ {
		require.NoError(t, s.RotateRefreshToken(ctx, "req-1", fmt.Sprint("rt-", i-1)), "rotation %d", i)
		require.NoError(t, s.CreateAccessTokenSession(ctx, fmt.Sprint("at-", i), newReq()))
		require.NoError(t, s.CreateRefreshTokenSession(ctx, fmt.Sprint("rt-", i), fmt.Sprint("at-", i), newReq()))
		n, err := raw.SCard(ctx, setKey).Result()
		require.NoError(t, err)
		maxSize = max(maxSize, n)
	}
	assert.LessOrEqual(t, maxSize, int64(2), "the set holds the live pair only")

	// Rotation still did its job throughout.
	_, err := s.GetRefreshTokenSession(ctx, fmt.Sprint("rt-", rotations), nil)
	require.NoError(t, err)
	for _, i := range []int{0, rotations / 2, rotations - 1} {
		_, err = s.GetRefreshTokenSession(ctx, fmt.Sprint("rt-", i), nil)
		assert.ErrorIs(t, err, fosite.ErrInactiveToken, "rt-%d", i)
		_, err = s.GetAccessTokenSession(ctx, fmt.Sprint("at-", i), nil)
		assert.ErrorIs(t, err, fosite.ErrNotFound, "at-%d", i)
	}

	// Members whose sessions are gone (deleted, or of another request
	// since) are pruned by the next revocation.
	other := newReq()
	other.SetID("req-2")
	require.NoError(t, s.CreateRefreshTokenSession(ctx, "rt-moved", "", newReq()))
	require.NoError(t, s.CreateRefreshTokenSession(ctx, "rt-moved", "", other))
	require.NoError(t, s.CreateRefreshTokenSession(ctx, "rt-deleted", "", newReq()))
	require.NoError(t, s.DeleteRefreshTokenSession(ctx, "rt-deleted"))
	require.NoError(t, s.CreateAccessTokenSession(ctx, "at-deleted", newReq()))
	require.NoError(t, s.DeleteAccessTokenSession(ctx, "at-deleted"))
	require.NoError(t, s.RevokeRefreshToken(ctx, "req-1"))
	require.NoError(t, s.RevokeAccessToken(ctx, "req-1"))
	n, err := raw.SCard(ctx, setKey).Result()
	require.NoError(t, err)
	assert.Zero(t, n, "a revoked request's set is empty")
	_, err = s.GetRefreshTokenSession(ctx, "rt-moved", nil)
	assert.NoError(t, err, "another request's session is left alone")
	_, err = s.GetRefreshTokenSession(ctx, fmt.Sprint("rt-", rotations), nil)
	assert.ErrorIs(t, err, fosite.ErrInactiveToken, "the live refresh token is revoked")
}
