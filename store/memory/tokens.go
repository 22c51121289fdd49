package memory

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"math"
	"sync"
	"time"

	"github.com/ory/fosite"
)

// tokenKind tells access-token sessions from refresh-token sessions.
type tokenKind uint8

const (
	accessToken tokenKind = iota
	refreshToken
)

func (k tokenKind) String() string {
	if k == refreshToken {
		return "refresh"
	}
	return "access"
}

// slot is the index of a session in tokenStore.slots. The indexes refer to
// sessions by slot rather than by pointer, so that they hold nothing the
// garbage collector has to follow.
type slot int32

// noSlot ends a chain or list of sessions, and marks their absence.
const noSlot slot = -1

// slab holds sessions by value in chunks of slabChunk, so that growing it
// never copies the sessions already stored (with a million tokens, one
// append of a single slice would copy 56 MB with the store locked).
type slab struct {
	chunks []*[slabChunk]session
	n      int
}

const (
	slabShift = 10
	slabChunk = 1 << slabShift
)

// at returns the session in slot i < len(). Chunks never move, so the
// pointer stays valid; the session it points to is reused once freed.
func (sl *slab) at(i slot) *session {
	return &sl.chunks[i>>slabShift][i&(slabChunk-1)]
}

func (sl *slab) len() int { return sl.n }

// grow adds a zero session and returns its slot.
func (sl *slab) grow() slot {
	if sl.n == len(sl.chunks)*slabChunk {
		sl.chunks = append(sl.chunks, new([slabChunk]session))
	}
	sl.n++
	return slot(sl.n - 1)
}

// session is one stored token session, held by value in tokenStore.slots.
// The requester is kept encoded (see codec.go) in one string that also
// holds the signature and request ID; the indexes link sessions by slot
// and key them by hashes of those strings. A session thus has one pointer,
// to an object without any, whatever the requester, and nothing of the
// caller's. Every garbage collection cycle scans the whole store: with a
// hundred thousand live tokens, one pointer each instead of ten (three in
// a heap-allocated session, the key and value of each of three maps, one
// in the expiry heap) is what keeps that scan cheap.
type session struct {
	// enc is the signature, the request ID, then the encoded requester.
	enc string
	// expires is the token's expiry in unix nanoseconds; 0 means none.
	expires int64
	// heapIndex is the session's position in tokenStore.expiry, or -1.
	heapIndex int32
	// sigNext links the sessions whose signatures hash alike in the table
	// of their kind, the first of which that table holds.
	sigNext slot
	// ridPrev and ridNext link the sessions whose request IDs hash alike,
	// the first of which tokenStore.byRequest holds.
	ridPrev, ridNext slot
	sigLen, idLen    uint32
	kind             tokenKind
	// inactive marks a refresh token that was rotated or revoked. It is
	// kept, not deleted, so that fosite can detect its reuse (RFC 6819
	// §5.2.2.3) and revoke the whole grant.
	inactive bool
}

// newSession encodes req into a session; it needs no lock.
func newSession(kind tokenKind, signature string, req fosite.Requester) (session, error) {
	if req == nil {
		return session{}, errors.New("memory: token session: requester is nil")
	}
	id := req.GetID()
	if uint64(len(signature)) > math.MaxUint32 || uint64(len(id)) > math.MaxUint32 {
		return session{}, errors.New("memory: token session: signature or request ID too long")
	}
	enc, err := encodeSession(signature, id, req)
	if err != nil {
		return session{}, fmt.Errorf("memory: %s token session: %w", kind, err)
	}
	s := session{enc: enc, sigLen: uint32(len(signature)), idLen: uint32(len(id)), kind: kind,
		heapIndex: -1, sigNext: noSlot, ridPrev: noSlot, ridNext: noSlot}
	// After encoding, as store/redis does: DefaultSession.GetExpiresAt
	// makes a nil ExpiresAt map empty.
	if sess := req.GetSession(); sess != nil {
		tokenType := fosite.AccessToken
		if kind == refreshToken {
			tokenType = fosite.RefreshToken
		}
		if exp := sess.GetExpiresAt(tokenType); !exp.IsZero() {
			s.expires = unixNano(exp)
		}
	}
	return s, nil
}

func (s *session) signature() string { return s.enc[:s.sigLen] }

func (s *session) requestID() string { return s.enc[s.sigLen : s.sigLen+s.idLen] }

// requester decodes the stored requester, with its session decoded into
// the prototype fosite passes.
func (s *session) requester(prototype fosite.Session) (fosite.Requester, error) {
	req, err := decodeRequest(s.enc[s.sigLen+s.idLen:], s.requestID(), prototype)
	if err != nil {
		return nil, fmt.Errorf("memory: %s token session: %w", s.kind, err)
	}
	return req, nil
}

func (s *session) expired(now int64) bool {
	return s.expires != 0 && s.expires < now
}

// tokenStore holds fosite's access- and refresh-token sessions. One lock
// covers them all: a token request writes once or twice, and revocation
// must see the access and refresh sides of a request together.
type tokenStore struct {
	mu sync.RWMutex
	// slots holds the sessions by value, so that they cost the garbage
	// collector their enc alone. A slot in free is unused and zero, and is
	// reused before slots grows.
	slots slab
	free  []slot
	// access and refresh hold, by hash of the signature, the first of the
	// chain of sessions whose signatures hash alike; a lookup walks the
	// chain for the signature itself. Neither keys nor values are
	// pointers.
	access, refresh map[uint64]slot
	// byRequest holds, by hash of the request ID, the first of the list of
	// sessions whose request IDs hash alike, so that revoking a grant
	// costs O(its tokens) instead of a scan. Revocation skips the sessions
	// of other requests that the list may hold.
	byRequest map[uint64]slot
	// expiry is a binary min-heap of the sessions that have an expiry, by
	// expiry.
	expiry []slot
	// hash hashes signatures and request IDs with a seed of the store's
	// own. Tests replace it before storing anything, to force collisions.
	hash func(string) uint64
	// maxSlots bounds len(slots) so that every index fits in a slot
	// (math.MaxInt32); tests lower it.
	maxSlots int
}

func (ts *tokenStore) init() {
	ts.access = make(map[uint64]slot)
	ts.refresh = make(map[uint64]slot)
	ts.byRequest = make(map[uint64]slot)
	seed := maphash.MakeSeed()
	ts.hash = func(s string) uint64 { return maphash.String(seed, s) }
	ts.maxSlots = math.MaxInt32
}

func (ts *tokenStore) table(kind tokenKind) map[uint64]slot {
	if kind == refreshToken {
		return ts.refresh
	}
	return ts.access
}

// first returns the slot m holds under h, or noSlot: the zero value a
// missing key gives is a slot like any other.
func first(m map[uint64]slot, h uint64) slot {
	if i, ok := m[h]; ok {
		return i
	}
	return noSlot
}

// find returns the slot of the session stored under signature, whose hash
// is h, or noSlot. The caller holds mu.
func (ts *tokenStore) find(kind tokenKind, h uint64, signature string) slot {
	i := first(ts.table(kind), h)
	for i != noSlot && ts.slots.at(i).signature() != signature {
		i = ts.slots.at(i).sigNext
	}
	return i
}

// create stores req under signature, replacing any session stored there.
// The caller holds mu for writing.
func (ts *tokenStore) create(kind tokenKind, signature string, req fosite.Requester, now int64) error {
	s, err := newSession(kind, signature, req)
	if err != nil {
		return err
	}
	return ts.insert(s, now)
}

// insert stores s, replacing any session stored under its signature. It
// fails only when the store holds maxSlots sessions already. The caller
// holds mu for writing.
func (ts *tokenStore) insert(s session, now int64) error {
	ts.sweep(now)
	table := ts.table(s.kind)
	h := ts.hash(s.signature())
	if old := ts.find(s.kind, h, s.signature()); old != noSlot {
		// This frees a slot for s.
		ts.remove(old)
	}
	var i slot
	switch n := len(ts.free); {
	case n > 0:
		i = ts.free[n-1]
		ts.free = ts.free[:n-1]
	case ts.slots.len() < ts.maxSlots:
		i = ts.slots.grow()
	default:
		return fmt.Errorf("memory: %s token session: the store is full (%d sessions)", s.kind, ts.slots.len())
	}

	// s goes first in its chain and in its list: no walk is needed.
	s.sigNext = first(table, h)
	table[h] = i
	rh := ts.hash(s.requestID())
	s.ridPrev, s.ridNext = noSlot, first(ts.byRequest, rh)
	if s.ridNext != noSlot {
		ts.slots.at(s.ridNext).ridPrev = i
	}
	ts.byRequest[rh] = i
	s.heapIndex = -1
	*ts.slots.at(i) = s
	if s.expires != 0 {
		ts.heapPush(i)
	}
	return nil
}

// remove forgets the session in slot i entirely and frees the slot. The
// caller holds mu for writing.
func (ts *tokenStore) remove(i slot) {
	s := ts.slots.at(i)

	// Out of its signature chain, which is walked for the predecessor:
	// chains are one session long unless hashes collide.
	table := ts.table(s.kind)
	h := ts.hash(s.signature())
	if p := table[h]; p == i {
		if s.sigNext == noSlot {
			delete(table, h)
		} else {
			table[h] = s.sigNext
		}
	} else {
		for ts.slots.at(p).sigNext != i {
			p = ts.slots.at(p).sigNext
		}
		ts.slots.at(p).sigNext = s.sigNext
	}

	// Out of its request list, in O(1).
	switch {
	case s.ridPrev != noSlot:
		ts.slots.at(s.ridPrev).ridNext = s.ridNext
	case s.ridNext != noSlot:
		ts.byRequest[ts.hash(s.requestID())] = s.ridNext
	default:
		delete(ts.byRequest, ts.hash(s.requestID()))
	}
	if s.ridNext != noSlot {
		ts.slots.at(s.ridNext).ridPrev = s.ridPrev
	}

	if s.heapIndex >= 0 {
		ts.heapRemove(int(s.heapIndex))
	}
	// Zeroed, so that the slab does not keep enc alive.
	*s = session{}
	ts.free = append(ts.free, i)
}

// sweep forgets at most sweepBatch sessions that expired before now. Every
// write sweeps more than it adds, so expired sessions do not pile up, and
// none is ever returned in the meantime since reads check the expiry.
func (ts *tokenStore) sweep(now int64) {
	for n := 0; n < sweepBatch && len(ts.expiry) > 0 && ts.slots.at(ts.expiry[0]).expires < now; n++ {
		ts.remove(ts.expiry[0])
	}
}

// get returns a copy of the live session under signature, and its slot for
// a caller that changes it. A copy, since a freed slot is reused: unlike a
// pointer into the slab, it can still be read once mu is released. The
// caller holds mu.
func (ts *tokenStore) get(kind tokenKind, signature string, now int64) (session, slot, bool) {
	i := ts.find(kind, ts.hash(signature), signature)
	if i == noSlot || ts.slots.at(i).expired(now) {
		return session{}, noSlot, false
	}
	return *ts.slots.at(i), i, true
}

// store encodes req, then stores it under signature with the lock held.
func (ts *tokenStore) store(kind tokenKind, signature string, req fosite.Requester) error {
	s, err := newSession(kind, signature, req)
	if err != nil {
		return err
	}
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return ts.insert(s, time.Now().UnixNano())
}

func (ts *tokenStore) delete(kind tokenKind, signature string) {
	ts.mu.Lock()
	defer ts.mu.Unlock()

	ts.sweep(time.Now().UnixNano())
	if i := ts.find(kind, ts.hash(signature), signature); i != noSlot {
		ts.remove(i)
	}
}

// revokeAccess deletes the access tokens of a request. The caller holds mu
// for writing.
func (ts *tokenStore) revokeAccess(requestID string) {
	for i := first(ts.byRequest, ts.hash(requestID)); i != noSlot; {
		s := ts.slots.at(i)
		next := s.ridNext
		if s.kind == accessToken && s.requestID() == requestID {
			ts.remove(i)
		}
		i = next
	}
}

// revokeRefresh marks the refresh tokens of a request inactive. The caller
// holds mu for writing.
func (ts *tokenStore) revokeRefresh(requestID string) {
	for i := first(ts.byRequest, ts.hash(requestID)); i != noSlot; i = ts.slots.at(i).ridNext {
		if s := ts.slots.at(i); s.kind == refreshToken && s.requestID() == requestID {
			s.inactive = true
		}
	}
}

// heapPush, heapRemove, heapUp and heapDown keep expiry a binary min-heap
// by the sessions' expiries, and each session's heapIndex up to date, so
// that deleting a session is O(log n) instead of leaving a stale element
// behind. They are written out rather than going through container/heap,
// whose interface{} arguments would allocate for every slot.
func (ts *tokenStore) heapPush(i slot) {
	ts.expiry = append(ts.expiry, i)
	ts.heapUp(len(ts.expiry) - 1)
}

// heapRemove takes the element at position j out of the heap.
func (ts *tokenStore) heapRemove(j int) {
	last := len(ts.expiry) - 1
	moved := ts.expiry[last]
	ts.slots.at(ts.expiry[j]).heapIndex = -1
	ts.expiry = ts.expiry[:last]
	if j != last {
		ts.heapSet(j, moved)
		if !ts.heapDown(j) {
			ts.heapUp(j)
		}
	}
}

// heapSet puts slot i at position j of the heap.
func (ts *tokenStore) heapSet(j int, i slot) {
	ts.expiry[j] = i
	ts.slots.at(i).heapIndex = int32(j)
}

// heapUp moves the element at position j towards the root until its
// parent expires no later.
func (ts *tokenStore) heapUp(j int) {
	i := ts.expiry[j]
	exp := ts.slots.at(i).expires
	for j > 0 {
		parent := (j - 1) / 2
		p := ts.expiry[parent]
		if ts.slots.at(p).expires <= exp {
			break
		}
		ts.heapSet(j, p)
		j = parent
	}
	ts.heapSet(j, i)
}

// heapDown moves the element at position j towards the leaves until its
// children expire no earlier, and reports whether it moved.
func (ts *tokenStore) heapDown(j int) bool {
	i := ts.expiry[j]
	exp := ts.slots.at(i).expires
	start, n := j, len(ts.expiry)
	for {
		c := 2*j + 1
		if c >= n {
			break
		}
		if r := c + 1; r < n && ts.slots.at(ts.expiry[r]).expires < ts.slots.at(ts.expiry[c]).expires {
			c = r
		}
		if exp <= ts.slots.at(ts.expiry[c]).expires {
			break
		}
		ts.heapSet(j, ts.expiry[c])
		j = c
	}
	ts.heapSet(j, i)
	return j != start
}

// notFound names the kind of token but not its signature, which is as good
// as the token to whoever reads the logs.
func notFound(kind string) error {
	return fmt.Errorf("memory: %s token session: %w", kind, fosite.ErrNotFound)
}

// CreateAccessTokenSession implements oauth2.AccessTokenStorage. The
// session is kept until its access-token expiry
// (GetSession().GetExpiresAt(fosite.AccessToken)); a session without one
// is kept until deleted or revoked.
func (s *Store) CreateAccessTokenSession(_ context.Context, signature string, req fosite.Requester) error {
	return s.tokens.store(accessToken, signature, req)
}

// GetAccessTokenSession implements oauth2.AccessTokenStorage. It returns
// a copy of the requester stored, with its session decoded into session (a
// fosite.DefaultSession when nil), or fosite.ErrNotFound when there is
// none or it has expired.
func (s *Store) GetAccessTokenSession(_ context.Context, signature string, session fosite.Session) (fosite.Requester, error) {
	s.tokens.mu.RLock()
	sess, _, ok := s.tokens.get(accessToken, signature, time.Now().UnixNano())
	s.tokens.mu.RUnlock()
	if !ok {
		return nil, notFound("access")
	}
	// sess is a copy, and its enc never changes: it is decoded outside
	// the lock.
	return sess.requester(session)
}

// DeleteAccessTokenSession implements oauth2.AccessTokenStorage. Deleting
// an unknown signature is not an error.
func (s *Store) DeleteAccessTokenSession(_ context.Context, signature string) error {
	s.tokens.delete(accessToken, signature)
	return nil
}

// CreateRefreshTokenSession implements oauth2.RefreshTokenStorage. The
// session is kept until its refresh-token expiry
// (GetSession().GetExpiresAt(fosite.RefreshToken)), even once rotated or
// revoked, so that reuse is detected; a session without an expiry is kept
// until deleted. The access signature is not needed: revocation goes by
// request ID.
func (s *Store) CreateRefreshTokenSession(_ context.Context, signature, _ string, req fosite.Requester) error {
	return s.tokens.store(refreshToken, signature, req)
}

// GetRefreshTokenSession implements oauth2.RefreshTokenStorage, returning
// the requester as GetAccessTokenSession does. For a rotated or revoked
// token it returns the requester together with fosite.ErrInactiveToken,
// which is how fosite's refresh handler detects reuse; for an unknown or
// expired one, fosite.ErrNotFound.
func (s *Store) GetRefreshTokenSession(_ context.Context, signature string, session fosite.Session) (fosite.Requester, error) {
	s.tokens.mu.RLock()
	sess, _, ok := s.tokens.get(refreshToken, signature, time.Now().UnixNano())
	s.tokens.mu.RUnlock()
	if !ok {
		return nil, notFound("refresh")
	}
	req, err := sess.requester(session)
	if err != nil {
		return nil, err
	}
	if sess.inactive {
		return req, fmt.Errorf("memory: refresh token session: %w", fosite.ErrInactiveToken)
	}
	return req, nil
}

// DeleteRefreshTokenSession implements oauth2.RefreshTokenStorage.
// Deleting an unknown signature is not an error.
func (s *Store) DeleteRefreshTokenSession(_ context.Context, signature string) error {
	s.tokens.delete(refreshToken, signature)
	return nil
}

// RotateRefreshToken implements oauth2.RefreshTokenStorage. fosite calls it
// before storing the new pair of a refresh grant: it marks the presented
// refresh token and every other refresh token of the request inactive and
// deletes the request's access tokens, so that only the pair about to be
// issued is valid.
//
// It is a compare-and-set on the presented token, under the store's lock:
// only the call that finds it active and belonging to requestID rotates.
// Any other, such as a second refresh grant racing with the same token,
// changes nothing and gets an error fosite answers with 400
// invalid_request instead of issuing a second pair: one that wraps
// fosite.ErrSerializationFailure (and fosite.ErrInactiveToken) when the
// token was rotated or revoked meanwhile, fosite.ErrNotFound when it is
// unknown, expired or of another request.
func (s *Store) RotateRefreshToken(_ context.Context, requestID, refreshTokenSignature string) error {
	s.tokens.mu.Lock()
	defer s.tokens.mu.Unlock()

	sess, i, ok := s.tokens.get(refreshToken, refreshTokenSignature, time.Now().UnixNano())
	if !ok || sess.requestID() != requestID {
		return notFound("refresh")
	}
	if sess.inactive {
		return fmt.Errorf("memory: refresh token session: rotated or revoked meanwhile: %w: %w",
			fosite.ErrSerializationFailure, fosite.ErrInactiveToken)
	}
	s.tokens.slots.at(i).inactive = true
	s.tokens.revokeRefresh(requestID)
	s.tokens.revokeAccess(requestID)
	return nil
}

// RevokeRefreshToken implements oauth2.TokenRevocationStorage (RFC 7009
// §2.1): the refresh tokens of the request become inactive. An unknown
// request ID is not an error: the outcome, no valid token, is the same.
func (s *Store) RevokeRefreshToken(_ context.Context, requestID string) error {
	s.tokens.mu.Lock()
	defer s.tokens.mu.Unlock()
	s.tokens.revokeRefresh(requestID)
	return nil
}

// RevokeAccessToken implements oauth2.TokenRevocationStorage (RFC 7009
// §2.1): the access tokens of the request are deleted. An unknown request
// ID is not an error.
func (s *Store) RevokeAccessToken(_ context.Context, requestID string) error {
	s.tokens.mu.Lock()
	defer s.tokens.mu.Unlock()
	s.tokens.revokeAccess(requestID)
	return nil
}
