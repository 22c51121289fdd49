package memory

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/url"
	"runtime"
	"testing"
	"time"

	"github.com/ory/fosite"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/text/language"
)

func request(id string, accessExp time.Time) fosite.Requester {
	r := fosite.NewAccessRequest(&fosite.DefaultSession{ExpiresAt: map[fosite.TokenType]time.Time{fosite.AccessToken: accessExp}})
	r.SetID(id)
	return r
}

// checkTokens verifies the store's invariants: free slots are zero and
// reached from nowhere; every other slot holds a session reached once from
// the chain of its signature's hash, in the table of its kind, and once
// from the list of its request ID's hash; the heap is ordered and holds
// exactly the sessions with an expiry, each knowing its position. It fails
// with t.Fatalf rather than require, which would make the model test slow.
func checkTokens(t *testing.T, ts *tokenStore) {
	t.Helper()
	n := ts.slots.len()
	valid := func(i slot) bool { return i >= 0 && int(i) < n }
	free := make([]bool, n)
	for _, i := range ts.free {
		if !valid(i) || free[i] {
			t.Fatalf("free slot %d out of range or listed twice", i)
		}
		free[i] = true
		if *ts.slots.at(slot(i)) != (session{}) {
			t.Fatalf("free slot %d is not zero: %+v", i, *ts.slots.at(slot(i)))
		}
	}
	live := n - len(ts.free)

	chained := make([]bool, n)
	for _, kind := range []tokenKind{accessToken, refreshToken} {
		sigs := make(map[string]bool)
		for h, i := range ts.table(kind) {
			if i == noSlot {
				t.Fatalf("%s table holds an empty chain", kind)
			}
			for ; i != noSlot; i = ts.slots.at(i).sigNext {
				if !valid(i) || free[i] || chained[i] {
					t.Fatalf("%s chain %#x reaches slot %d: out of range, free or reached twice", kind, h, i)
				}
				chained[i] = true
				s := ts.slots.at(i)
				if s.kind != kind || ts.hash(s.signature()) != h || sigs[s.signature()] {
					t.Fatalf("%s chain %#x holds slot %d (%s %q): wrong kind, hash, or a signature twice", kind, h, i, s.kind, s.signature())
				}
				sigs[s.signature()] = true
			}
		}
	}

	listed := make([]bool, n)
	for h, i := range ts.byRequest {
		if i == noSlot {
			t.Fatalf("request index holds an empty list")
		}
		for prev := noSlot; i != noSlot; prev, i = i, ts.slots.at(i).ridNext {
			if !valid(i) || free[i] || listed[i] {
				t.Fatalf("request list %#x reaches slot %d: out of range, free or reached twice", h, i)
			}
			listed[i] = true
			s := ts.slots.at(i)
			if s.ridPrev != prev || ts.hash(s.requestID()) != h {
				t.Fatalf("request list %#x holds slot %d (request %q) with ridPrev %d after %d", h, i, s.requestID(), s.ridPrev, prev)
			}
		}
	}

	for j, i := range ts.expiry {
		if !valid(i) || free[i] {
			t.Fatalf("heap position %d holds slot %d: out of range or free", j, i)
		}
		s := ts.slots.at(i)
		if int(s.heapIndex) != j || s.expires == 0 {
			t.Fatalf("heap position %d holds slot %d with heapIndex %d, expiry %d", j, i, s.heapIndex, s.expires)
		}
		if j > 0 && ts.slots.at(ts.expiry[(j-1)/2]).expires > s.expires {
			t.Fatalf("heap position %d expires before its parent", j)
		}
	}
	for i := range ts.slots.len() {
		if free[i] {
			continue
		}
		if !chained[i] || !listed[i] {
			t.Fatalf("live slot %d is in no signature chain or no request list", i)
		}
		if s := ts.slots.at(slot(i)); (s.expires == 0) != (s.heapIndex == -1) {
			t.Fatalf("live slot %d has expiry %d and heapIndex %d", i, s.expires, s.heapIndex)
		}
	}
	if queued := len(ts.expiry); queued > live {
		t.Fatalf("%d sessions queued, %d live", queued, live)
	}
}

// liveSessions counts the sessions stored, live or expired.
func liveSessions(ts *tokenStore) int { return ts.slots.len() - len(ts.free) }

// requestSessions lists the sessions of a request.
func requestSessions(ts *tokenStore, requestID string) []session {
	var l []session
	for i := first(ts.byRequest, ts.hash(requestID)); i != noSlot; i = ts.slots.at(i).ridNext {
		if ts.slots.at(i).requestID() == requestID {
			l = append(l, *ts.slots.at(i))
		}
	}
	return l
}

func TestTokenSweepForgetsExpiredSessions(t *testing.T) {
	var ts tokenStore
	ts.init()
	base := time.Unix(1_000_000, 0)
	const n = 200
	for i := range n {
		require.NoError(t, ts.create(accessToken, fmt.Sprint("old-", i), request(fmt.Sprint("req-", i), base), base.UnixNano()-1))
	}
	require.Equal(t, n, liveSessions(&ts))
	require.Len(t, ts.byRequest, n)

	// Each write after the expiry forgets a bounded batch.
	now := base.Add(time.Second).UnixNano()
	require.NoError(t, ts.create(accessToken, "new-0", request("new", base.Add(time.Hour)), now))
	assert.Equal(t, n+1-sweepBatch, liveSessions(&ts))

	for i := 1; i < n; i++ {
		require.NoError(t, ts.create(accessToken, fmt.Sprint("new-", i), request("new", base.Add(time.Hour)), now))
	}
	assert.Equal(t, n, liveSessions(&ts), "only the new sessions remain")
	assert.Len(t, ts.byRequest, 1, "the request index forgets them too")
	assert.Len(t, requestSessions(&ts, "new"), n)
	assert.Equal(t, n, ts.slots.len(), "the slots of the expired sessions are reused")
	checkTokens(t, &ts)
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
		checkTokens(t, &ts)
	}
	assert.Len(t, ts.expiry, liveSessions(&ts), "every session with an expiry is queued once")
}

// TestTokenIndexStaysConsistent mixes both kinds of tokens, replacements,
// deletions, revocations and rotations, and checks the request lists after
// each.
func TestTokenIndexStaysConsistent(t *testing.T) {
	var ts tokenStore
	ts.init()
	rng := rand.New(rand.NewPCG(3, 4))
	base := time.Unix(1_000_000, 0)
	for i := range 2000 {
		kind := tokenKind(rng.IntN(2))
		exp := base.Add(time.Duration(1+rng.IntN(1000)) * time.Second)
		r := request(fmt.Sprint("req-", rng.IntN(40)), exp)
		r.GetSession().SetExpiresAt(fosite.RefreshToken, exp)
		now := base.Add(time.Duration(i/4) * time.Second).UnixNano()
		require.NoError(t, ts.create(kind, fmt.Sprint("sig-", rng.IntN(200)), r, now))
		switch rng.IntN(8) {
		case 0:
			ts.delete(tokenKind(rng.IntN(2)), fmt.Sprint("sig-", rng.IntN(200)))
		case 1:
			ts.revokeAccess(fmt.Sprint("req-", rng.IntN(40)))
		case 2:
			ts.revokeRefresh(fmt.Sprint("req-", rng.IntN(40)))
		}
		checkTokens(t, &ts)
	}
}

// fullRequest is a requester with every field the store keeps set.
func fullRequest(exp time.Time) *fosite.Request {
	r := fosite.NewRequest()
	r.ID = "req-full"
	r.RequestedAt = time.Date(2025, 3, 4, 5, 6, 7, 890, time.UTC)
	r.Client = &fosite.DefaultClient{
		ID:            "client-1",
		Secret:        []byte("hash"),
		RedirectURIs:  []string{"https://client.example/cb"},
		GrantTypes:    []string{"urn:ietf:params:oauth:grant-type:jwt-bearer", "refresh_token"},
		ResponseTypes: []string{"token"},
		Scopes:        []string{"read", "write", "admin"},
		Audience:      []string{"https://api.example"},
		Public:        false,
	}
	r.RequestedScope = fosite.Arguments{"read", "write"}
	r.GrantedScope = fosite.Arguments{"read"}
	r.RequestedAudience = fosite.Arguments{"https://api.example"}
	r.GrantedAudience = fosite.Arguments{"https://api.example"}
	r.Form = url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:jwt-bearer"}, "scope": {"read write"}, "x": {"1", "2"}}
	r.Lang = language.German
	r.Session = &fosite.DefaultSession{
		ExpiresAt: map[fosite.TokenType]time.Time{fosite.AccessToken: exp, fosite.RefreshToken: exp.Add(time.Hour)},
		Username:  "alice",
		Subject:   "system:serviceaccount:prod:api",
		Extra:     map[string]any{"tenant": "t1", "n": 2.5},
	}
	return r
}

// wantRequest is what a store gives back for fullRequest: the client's
// identity without its secret.
func wantRequest(exp time.Time) *fosite.Request {
	r := fullRequest(exp)
	c := *r.Client.(*fosite.DefaultClient)
	c.Secret = nil
	r.Client = &c
	return r
}

func TestTokenSessionRoundTrip(t *testing.T) {
	ctx := t.Context()
	s := New()
	exp := time.Now().Add(time.Hour).UTC().Truncate(time.Second)
	require.NoError(t, s.CreateAccessTokenSession(ctx, "at", fullRequest(exp)))
	require.NoError(t, s.CreateRefreshTokenSession(ctx, "rt", "at", fullRequest(exp)))

	prototype := &fosite.DefaultSession{}
	got, err := s.GetAccessTokenSession(ctx, "at", prototype)
	require.NoError(t, err)
	assert.Equal(t, wantRequest(exp), got)
	assert.Same(t, prototype, got.GetSession(), "the session is decoded into the prototype")

	got, err = s.GetRefreshTokenSession(ctx, "rt", nil)
	require.NoError(t, err)
	assert.Equal(t, wantRequest(exp), got, "a nil prototype gets a fosite.DefaultSession")
	assert.True(t, exp.Add(time.Hour).Equal(got.GetSession().GetExpiresAt(fosite.RefreshToken)))

	// Each Get decodes anew: what one caller does to its requester is not
	// seen by the next.
	got.GetSession().SetExpiresAt(fosite.AccessToken, time.Time{})
	got.(*fosite.Request).GrantedScope[0] = "changed"
	got, err = s.GetRefreshTokenSession(ctx, "rt", nil)
	require.NoError(t, err)
	assert.Equal(t, wantRequest(exp), got)
}

// TestTokenSessionExpiryAsSetByHandler stores a session the way the
// handler builds it, with SetExpiresAt, and checks that both expiries
// survive, the store's own and the session's.
func TestTokenSessionExpiryAsSetByHandler(t *testing.T) {
	ctx := t.Context()
	s := New()
	now := time.Now()
	sess := &fosite.DefaultSession{}
	sess.SetSubject("alice")
	sess.SetExpiresAt(fosite.AccessToken, now.UTC().Add(time.Hour).Truncate(time.Second))
	sess.SetExpiresAt(fosite.RefreshToken, now.UTC().Add(24*time.Hour).Truncate(time.Second))
	req := fosite.NewAccessRequest(sess)
	req.SetID("req-1")
	require.NoError(t, s.CreateAccessTokenSession(ctx, "at", req.Sanitize(nil)))
	require.NoError(t, s.CreateRefreshTokenSession(ctx, "rt", "at", req.Sanitize(nil)))

	for _, get := range []func() (fosite.Requester, error){
		func() (fosite.Requester, error) { return s.GetAccessTokenSession(ctx, "at", &fosite.DefaultSession{}) },
		func() (fosite.Requester, error) { return s.GetRefreshTokenSession(ctx, "rt", &fosite.DefaultSession{}) },
	} {
		got, err := get()
		require.NoError(t, err)
		assert.Equal(t, sess.ExpiresAt, got.GetSession().(*fosite.DefaultSession).ExpiresAt)
		assert.Equal(t, "alice", got.GetSession().GetSubject())
	}
	sessions := requestSessions(&s.tokens, "req-1")
	require.Len(t, sessions, 2)
	for _, ss := range sessions {
		tt := fosite.AccessToken
		if ss.kind == refreshToken {
			tt = fosite.RefreshToken
		}
		assert.Equal(t, sess.ExpiresAt[tt].UnixNano(), ss.expires, "the store expires %s with its token", tt)
	}
}

// TestTokenSessionNotAliased checks that the store keeps nothing of the
// caller's requester: changing it after Create changes nothing stored.
func TestTokenSessionNotAliased(t *testing.T) {
	ctx := t.Context()
	s := New()
	exp := time.Now().Add(time.Hour).UTC().Truncate(time.Second)
	req := fullRequest(exp)
	require.NoError(t, s.CreateAccessTokenSession(ctx, "at", req))

	req.ID = "other"
	req.GrantedScope[0] = "admin"
	req.RequestedScope = append(req.RequestedScope, "more")
	req.Form.Set("scope", "admin")
	c := req.Client.(*fosite.DefaultClient)
	c.ID = "client-2"
	c.Scopes[0] = "changed"
	sess := req.Session.(*fosite.DefaultSession)
	sess.SetExpiresAt(fosite.AccessToken, exp.Add(time.Hour))
	sess.Subject = "mallory"
	sess.Extra["tenant"] = "t2"

	got, err := s.GetAccessTokenSession(ctx, "at", nil)
	require.NoError(t, err)
	assert.Equal(t, wantRequest(exp), got)
}

// customSession is a session type other than fosite.DefaultSession, which
// the store keeps as JSON.
type customSession struct {
	fosite.DefaultSession
	Tenant string `json:"tenant"`
}

func TestTokenSessionOtherSessionTypes(t *testing.T) {
	ctx := t.Context()
	s := New()
	exp := time.Now().Add(time.Hour).UTC().Truncate(time.Second)

	custom := &customSession{Tenant: "t1"}
	custom.Subject = "alice"
	custom.SetExpiresAt(fosite.AccessToken, exp)
	req := fosite.NewRequest()
	req.ID = "req-1"
	req.Session = custom
	require.NoError(t, s.CreateAccessTokenSession(ctx, "custom", req))
	got, err := s.GetAccessTokenSession(ctx, "custom", &customSession{})
	require.NoError(t, err)
	assert.Equal(t, custom, got.GetSession())

	// A DefaultSession into another type of prototype: as JSON would.
	require.NoError(t, s.CreateAccessTokenSession(ctx, "default", request("req-2", exp)))
	got, err = s.GetAccessTokenSession(ctx, "default", &customSession{Tenant: "kept"})
	require.NoError(t, err)
	want := &customSession{Tenant: "kept"}
	want.ExpiresAt = map[fosite.TokenType]time.Time{fosite.AccessToken: exp}
	assert.Equal(t, want, got.GetSession())

	// No session at all: the prototype comes back as it was.
	req = fosite.NewRequest()
	req.ID = "req-3"
	req.Session = nil
	require.NoError(t, s.CreateAccessTokenSession(ctx, "none", req))
	prototype := &fosite.DefaultSession{Subject: "kept"}
	got, err = s.GetAccessTokenSession(ctx, "none", prototype)
	require.NoError(t, err)
	assert.Same(t, prototype, got.GetSession())
	assert.Equal(t, &fosite.DefaultSession{Subject: "kept"}, prototype)
}

// BenchmarkCreateAccessTokenSession is the store's side of issuing an
// access token: the requester of a jwt-bearer grant (benchRequest) stored
// under a fresh signature. A ring of 4096 tokens is reused, so that the
// store holds that many and each create replaces the oldest one.
func BenchmarkCreateAccessTokenSession(b *testing.B) {
	const ring = 4096
	sigs := make([]string, ring)
	reqs := make([]fosite.Requester, ring)
	for i := range ring {
		sigs[i] = fmt.Sprintf("0f6c5a1e8c9b4b1e9d3a0f6c5a1e8c9b4b1e9d3a%03d", i)
		reqs[i] = benchRequest(i)
	}
	s := New()
	ctx := context.Background()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if err := s.CreateAccessTokenSession(ctx, sigs[i%ring], reqs[i%ring]); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkTokenGC reports what a full garbage collection costs with
// 100,000 live access tokens in the store (the requesters of
// benchRequest), the work every GC cycle of a busy server repeats.
func BenchmarkTokenGC(b *testing.B) {
	const n = 100_000
	s := New()
	ctx := context.Background()
	for i := range n {
		if err := s.CreateAccessTokenSession(ctx, fmt.Sprintf("0f6c5a1e8c9b4b1e9d3a0f6c5a1e8c9b4b1e9d3a%06d", i), benchRequest(i)); err != nil {
			b.Fatal(err)
		}
	}
	runtime.GC()
	for b.Loop() {
		runtime.GC()
	}
	runtime.KeepAlive(s)
}
