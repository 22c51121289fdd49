package memory

import (
	"cmp"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ory/fosite"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// modelToken is what the reference model knows of a stored session.
type modelToken struct {
	requestID string
	// subject tells one create from another: each gets its own.
	subject  string
	expires  int64
	inactive bool
}

// tokenModel is the reference the token store is compared with: a plain
// map per kind, by signature, and scans where the store has indexes.
type tokenModel struct {
	tokens [2]map[string]*modelToken
}

func newTokenModel() *tokenModel {
	return &tokenModel{tokens: [2]map[string]*modelToken{{}, {}}}
}

// sweep forgets the sweepBatch sessions that expired before now and expire
// first. The test gives every session its own expiry, so which ones is
// determined.
func (m *tokenModel) sweep(now int64) {
	type expired struct {
		kind      tokenKind
		signature string
		expires   int64
	}
	var l []expired
	for kind, tokens := range m.tokens {
		for sig, tok := range tokens {
			if tok.expires != 0 && tok.expires < now {
				l = append(l, expired{tokenKind(kind), sig, tok.expires})
			}
		}
	}
	slices.SortFunc(l, func(a, b expired) int { return cmp.Compare(a.expires, b.expires) })
	for _, e := range l[:min(len(l), sweepBatch)] {
		delete(m.tokens[e.kind], e.signature)
	}
}

func (m *tokenModel) create(kind tokenKind, signature string, tok modelToken, now int64) {
	m.sweep(now)
	m.tokens[kind][signature] = &tok
}

func (m *tokenModel) get(kind tokenKind, signature string, now int64) (*modelToken, bool) {
	tok, ok := m.tokens[kind][signature]
	if !ok || (tok.expires != 0 && tok.expires < now) {
		return nil, false
	}
	return tok, true
}

func (m *tokenModel) delete(kind tokenKind, signature string, now int64) {
	m.sweep(now)
	delete(m.tokens[kind], signature)
}

func (m *tokenModel) revokeAccess(requestID string) {
	for sig, tok := range m.tokens[accessToken] {
		if tok.requestID == requestID {
			delete(m.tokens[accessToken], sig)
		}
	}
}

func (m *tokenModel) revokeRefresh(requestID string) {
	for _, tok := range m.tokens[refreshToken] {
		if tok.requestID == requestID {
			tok.inactive = true
		}
	}
}

// rotate returns what RotateRefreshToken should: errNotFound, errInactive,
// or nil once it has rotated.
func (m *tokenModel) rotate(requestID, signature string, now int64) error {
	tok, ok := m.get(refreshToken, signature, now)
	switch {
	case !ok || tok.requestID != requestID:
		return fosite.ErrNotFound
	case tok.inactive:
		return fosite.ErrInactiveToken
	}
	m.revokeRefresh(requestID)
	m.revokeAccess(requestID)
	return nil
}

func (m *tokenModel) live() int { return len(m.tokens[accessToken]) + len(m.tokens[refreshToken]) }

// modelClockStart is where the test's clock starts, far after any real
// now. The store's methods that read the real clock (Store's Create, Get,
// Delete and RotateRefreshToken) then find every session unexpired and
// sweep nothing, whatever instant they read, while create, get and sweep
// with the test's clock find some sessions expired: the model answers the
// same in both cases, so every step is determined by the seed alone.
var modelClockStart = time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano()

// runTokenModel drives a Store through random steps, compares every
// result with the model's, then the whole content of the store and its
// invariants. A nil hash keeps the store's own.
func runTokenModel(t *testing.T, seed uint64, steps int, hash func(string) uint64) {
	s := New()
	ts := &s.tokens
	if hash != nil {
		ts.hash = hash
	}
	m := newTokenModel()
	rng := rand.New(rand.NewPCG(seed, 0x70c))
	ctx := t.Context()

	// Small pools: signatures are replaced often, and each request has
	// many tokens. Their lengths vary, for hashes that go by length.
	sigs := make([]string, 24)
	for i := range sigs {
		sigs[i] = strings.Repeat("s", 1+i%5) + strconv.Itoa(i)
	}
	sigs[0] = ""
	rids := make([]string, 6)
	for i := range rids {
		rids[i] = strings.Repeat("r", 1+i%4) + strconv.Itoa(i)
	}
	kinds := [...]tokenKind{accessToken, refreshToken}

	clock := modelClockStart
	creates := 0 // makes every expiry and subject unique
	peak := 0    // the most sessions stored after any step
	realNow := func() int64 { return time.Now().UnixNano() }

	for step := range steps {
		kind := kinds[rng.IntN(2)]
		sig := sigs[rng.IntN(len(sigs))]
		rid := rids[rng.IntN(len(rids))]
		where := fmt.Sprintf("seed %d step %d", seed, step)

		switch op := rng.IntN(100); {
		case op < 35: // create
			creates++
			tok := modelToken{requestID: rid, subject: "subject-" + strconv.Itoa(creates)}
			switch rng.IntN(4) {
			case 0: // no expiry
			case 1: // in the past
				tok.expires = clock - int64(1+rng.IntN(3600))*int64(time.Second) + int64(creates)
			default:
				tok.expires = clock + int64(1+rng.IntN(3600))*int64(time.Second) + int64(creates)
			}
			req := modelRequest(kind, tok)
			if rng.IntN(2) == 0 {
				ts.mu.Lock()
				err := ts.create(kind, sig, req, clock)
				ts.mu.Unlock()
				require.NoError(t, err, where)
				m.create(kind, sig, tok, clock)
			} else {
				if kind == accessToken {
					require.NoError(t, s.CreateAccessTokenSession(ctx, sig, req), where)
				} else {
					require.NoError(t, s.CreateRefreshTokenSession(ctx, sig, "", req), where)
				}
				m.create(kind, sig, tok, realNow())
			}

		case op < 55: // get
			if rng.IntN(2) == 0 {
				ts.mu.RLock()
				got, _, ok := ts.get(kind, sig, clock)
				ts.mu.RUnlock()
				want, wantOK := m.get(kind, sig, clock)
				require.Equal(t, wantOK, ok, where)
				if ok {
					req, err := got.requester(nil)
					require.NoError(t, err, where)
					checkModelRequester(t, where, want, req)
					require.Equal(t, want.inactive, got.inactive, where)
				}
				break
			}
			var req fosite.Requester
			var err error
			if kind == accessToken {
				req, err = s.GetAccessTokenSession(ctx, sig, nil)
			} else {
				req, err = s.GetRefreshTokenSession(ctx, sig, nil)
			}
			want, ok := m.get(kind, sig, realNow())
			switch {
			case !ok:
				require.ErrorIs(t, err, fosite.ErrNotFound, where)
				require.Nil(t, req, where)
			case want.inactive:
				require.ErrorIs(t, err, fosite.ErrInactiveToken, where)
				checkModelRequester(t, where, want, req)
			default:
				require.NoError(t, err, where)
				checkModelRequester(t, where, want, req)
			}

		case op < 65: // delete
			if kind == accessToken {
				require.NoError(t, s.DeleteAccessTokenSession(ctx, sig), where)
			} else {
				require.NoError(t, s.DeleteRefreshTokenSession(ctx, sig), where)
			}
			m.delete(kind, sig, realNow())

		case op < 72:
			require.NoError(t, s.RevokeAccessToken(ctx, rid), where)
			m.revokeAccess(rid)

		case op < 79:
			require.NoError(t, s.RevokeRefreshToken(ctx, rid), where)
			m.revokeRefresh(rid)

		case op < 90: // rotate, mostly with the token's own request ID
			if tok, ok := m.tokens[refreshToken][sig]; ok && rng.IntN(4) != 0 {
				rid = tok.requestID
			}
			err := s.RotateRefreshToken(ctx, rid, sig)
			switch want := m.rotate(rid, sig, realNow()); want {
			case nil:
				require.NoError(t, err, where)
			case fosite.ErrNotFound:
				require.ErrorIs(t, err, fosite.ErrNotFound, where)
			default:
				require.ErrorIs(t, err, fosite.ErrSerializationFailure, where)
				require.ErrorIs(t, err, fosite.ErrInactiveToken, where)
			}

		default: // time passes, then a sweep
			clock += int64(rng.IntN(900)) * int64(time.Second)
			ts.mu.Lock()
			ts.sweep(clock)
			ts.mu.Unlock()
			m.sweep(clock)
		}

		checkTokens(t, ts)
		checkModelContent(t, where, ts, m, sigs)
		peak = max(peak, m.live())
		if ts.slots.len() != peak {
			t.Fatalf("%s: %d slots for at most %d sessions: freed slots are not reused", where, ts.slots.len(), peak)
		}
	}
}

// modelRequest builds the requester of tok. The expiry of the other kind
// of token is set too, an hour later, for the store to ignore.
func modelRequest(kind tokenKind, tok modelToken) fosite.Requester {
	sess := &fosite.DefaultSession{Subject: tok.subject}
	if tok.expires != 0 {
		own, other := fosite.AccessToken, fosite.RefreshToken
		if kind == refreshToken {
			own, other = other, own
		}
		sess.ExpiresAt = map[fosite.TokenType]time.Time{
			own:   time.Unix(0, tok.expires),
			other: time.Unix(0, tok.expires).Add(time.Hour),
		}
	}
	req := fosite.NewAccessRequest(sess)
	req.SetID(tok.requestID)
	return req
}

func checkModelRequester(t *testing.T, where string, want *modelToken, got fosite.Requester) {
	t.Helper()
	require.NotNil(t, got, where)
	require.Equal(t, want.requestID, got.GetID(), where)
	require.Equal(t, want.subject, got.GetSession().GetSubject(), where)
}

// checkModelContent compares every session the store holds, expired or
// not, with the model's.
func checkModelContent(t *testing.T, where string, ts *tokenStore, m *tokenModel, sigs []string) {
	t.Helper()
	if live := liveSessions(ts); live != m.live() {
		t.Fatalf("%s: the store holds %d sessions, the model %d", where, live, m.live())
	}
	for kind, tokens := range m.tokens {
		for _, sig := range sigs {
			got, _, ok := ts.get(tokenKind(kind), sig, math.MinInt64)
			want, wantOK := tokens[sig]
			if ok != wantOK {
				t.Fatalf("%s: %s %q: stored %v, in the model %v", where, tokenKind(kind), sig, ok, wantOK)
			}
			if ok && (got.kind != tokenKind(kind) || got.signature() != sig || got.requestID() != want.requestID ||
				got.expires != want.expires || got.inactive != want.inactive) {
				t.Fatalf("%s: %s %q: stored %s %q request %q expiry %d inactive %v, in the model %+v", where, tokenKind(kind), sig,
					got.kind, got.signature(), got.requestID(), got.expires, got.inactive, *want)
			}
		}
	}
}

// TestTokenModel compares the store with the model over random steps.
func TestTokenModel(t *testing.T) {
	for seed := range uint64(4) {
		runTokenModel(t, seed, 1500, nil)
	}
}

// TestTokenModelCollisions runs the model test with hashes that collide,
// so that signature chains and request lists hold sessions of different
// signatures and requests, which lookups, revocations and removals must
// tell apart.
func TestTokenModelCollisions(t *testing.T) {
	for name, hash := range map[string]func(string) uint64{
		"constant": func(string) uint64 { return 7 },
		"length":   func(s string) uint64 { return uint64(len(s) % 3) },
	} {
		t.Run(name, func(t *testing.T) {
			for seed := range uint64(3) {
				runTokenModel(t, seed, 1500, hash)
			}
		})
	}
}

// TestTokenStoreFull checks that a store holding maxSlots sessions refuses
// another with an error, yet still replaces one, and takes new ones again
// once some are gone.
func TestTokenStoreFull(t *testing.T) {
	ctx := t.Context()
	s := New()
	s.tokens.maxSlots = 2
	exp := time.Now().Add(time.Hour)
	require.NoError(t, s.CreateAccessTokenSession(ctx, "at-1", request("req-1", exp)))
	require.NoError(t, s.CreateRefreshTokenSession(ctx, "rt-1", "at-1", request("req-1", exp)))

	err := s.CreateAccessTokenSession(ctx, "at-2", request("req-2", exp))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "full")
	_, err = s.GetAccessTokenSession(ctx, "at-2", nil)
	assert.ErrorIs(t, err, fosite.ErrNotFound)

	require.NoError(t, s.CreateAccessTokenSession(ctx, "at-1", request("req-3", exp)), "a replacement needs no new slot")
	got, err := s.GetAccessTokenSession(ctx, "at-1", nil)
	require.NoError(t, err)
	assert.Equal(t, "req-3", got.GetID())

	require.NoError(t, s.RevokeAccessToken(ctx, "req-3"))
	require.NoError(t, s.CreateAccessTokenSession(ctx, "at-2", request("req-2", exp)))
	assert.Equal(t, 2, s.tokens.slots.len())
	checkTokens(t, &s.tokens)
}
