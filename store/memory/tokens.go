package memory

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
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

// session is one stored token session. The requester is kept encoded
// (see codec.go) in one string that also holds the signature and request
// ID the indexes are keyed by: a session is two allocations with three
// pointers for the garbage collector to follow, whatever the requester,
// and nothing of the caller's.
type session struct {
	// enc is the signature, the request ID, then the encoded requester.
	enc string
	// prev and next link the sessions of one request ID, the first of
	// which tokenStore.byRequest holds.
	prev, next *session
	// expires is the token's expiry in unix nanoseconds; 0 means none.
	expires int64
	// heapIndex is the session's position in tokenStore.expiry, or -1.
	heapIndex     int
	sigLen, idLen uint32
	kind          tokenKind
	// inactive marks a refresh token that was rotated or revoked. It is
	// kept, not deleted, so that fosite can detect its reuse (RFC 6819
	// §5.2.2.3) and revoke the whole grant.
	inactive bool
}

// newSession encodes req into a session; it needs no lock.
func newSession(kind tokenKind, signature string, req fosite.Requester) (*session, error) {
	if req == nil {
		return nil, errors.New("memory: token session: requester is nil")
	}
	id := req.GetID()
	if uint64(len(signature)) > math.MaxUint32 || uint64(len(id)) > math.MaxUint32 {
		return nil, errors.New("memory: token session: signature or request ID too long")
	}
	enc, err := encodeSession(signature, id, req)
	if err != nil {
		return nil, fmt.Errorf("memory: %s token session: %w", kind, err)
	}
	s := &session{enc: enc, sigLen: uint32(len(signature)), idLen: uint32(len(id)), kind: kind, heapIndex: -1}
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
	mu      sync.RWMutex
	access  map[string]*session
	refresh map[string]*session
	// byRequest indexes sessions by request ID, the first of a list linked
	// through the sessions, so that revoking a grant costs O(its tokens)
	// instead of a scan. Its keys, like those of access and refresh, are
	// substrings of the sessions' enc.
	byRequest map[string]*session
	// expiry orders the sessions that have an expiry, soonest first.
	expiry sessionHeap
}

func (ts *tokenStore) init() {
	ts.access = make(map[string]*session)
	ts.refresh = make(map[string]*session)
	ts.byRequest = make(map[string]*session)
}

func (ts *tokenStore) table(kind tokenKind) map[string]*session {
	if kind == refreshToken {
		return ts.refresh
	}
	return ts.access
}

// create stores req under signature, replacing any session stored there.
// The caller holds mu for writing.
func (ts *tokenStore) create(kind tokenKind, signature string, req fosite.Requester, now int64) error {
	s, err := newSession(kind, signature, req)
	if err != nil {
		return err
	}
	ts.insert(s, now)
	return nil
}

// insert stores s, replacing any session stored under its signature. The
// caller holds mu for writing.
func (ts *tokenStore) insert(s *session, now int64) {
	ts.sweep(now)
	table := ts.table(s.kind)
	if old, ok := table[s.signature()]; ok {
		ts.remove(old)
	}
	table[s.signature()] = s
	// s goes second in its request's list, so that the first, whose
	// request ID the map key is, stays.
	if first := ts.byRequest[s.requestID()]; first != nil {
		s.prev, s.next = first, first.next
		if first.next != nil {
			first.next.prev = s
		}
		first.next = s
	} else {
		ts.byRequest[s.requestID()] = s
	}
	if s.expires != 0 {
		heap.Push(&ts.expiry, s)
	}
}

// remove forgets s entirely. The caller holds mu for writing.
func (ts *tokenStore) remove(s *session) {
	delete(ts.table(s.kind), s.signature())
	switch {
	case s.prev != nil:
		s.prev.next = s.next
	case s.next != nil:
		// Assigning replaces the key too, so the map does not keep s's
		// enc alive.
		ts.byRequest[s.next.requestID()] = s.next
	default:
		delete(ts.byRequest, s.requestID())
	}
	if s.next != nil {
		s.next.prev = s.prev
	}
	s.prev, s.next = nil, nil
	if s.heapIndex >= 0 {
		heap.Remove(&ts.expiry, s.heapIndex)
	}
}

// sweep forgets at most sweepBatch sessions that expired before now. Every
// write sweeps more than it adds, so expired sessions do not pile up, and
// none is ever returned in the meantime since reads check the expiry.
func (ts *tokenStore) sweep(now int64) {
	for n := 0; n < sweepBatch && len(ts.expiry) > 0 && ts.expiry[0].expires < now; n++ {
		ts.remove(ts.expiry[0])
	}
}

// get returns the live session under signature. The caller holds mu.
func (ts *tokenStore) get(kind tokenKind, signature string, now int64) (*session, bool) {
	s, ok := ts.table(kind)[signature]
	if !ok || s.expired(now) {
		return nil, false
	}
	return s, true
}

// store encodes req, then stores it under signature with the lock held.
func (ts *tokenStore) store(kind tokenKind, signature string, req fosite.Requester) error {
	s, err := newSession(kind, signature, req)
	if err != nil {
		return err
	}
	ts.mu.Lock()
	defer ts.mu.Unlock()
	ts.insert(s, time.Now().UnixNano())
	return nil
}

func (ts *tokenStore) delete(kind tokenKind, signature string) {
	ts.mu.Lock()
	defer ts.mu.Unlock()

	ts.sweep(time.Now().UnixNano())
	if s, ok := ts.table(kind)[signature]; ok {
		ts.remove(s)
	}
}

// revokeAccess deletes the access tokens of a request. The caller holds mu
// for writing.
func (ts *tokenStore) revokeAccess(requestID string) {
	for s := ts.byRequest[requestID]; s != nil; {
		next := s.next
		if s.kind == accessToken {
			ts.remove(s)
		}
		s = next
	}
}

// revokeRefresh marks the refresh tokens of a request inactive. The caller
// holds mu for writing.
func (ts *tokenStore) revokeRefresh(requestID string) {
	for s := ts.byRequest[requestID]; s != nil; s = s.next {
		if s.kind == refreshToken {
			s.inactive = true
		}
	}
}

// sessionHeap is a container/heap of sessions by expiry that keeps each
// session's index up to date, so that deleting a session is O(log n)
// instead of leaving a stale element behind.
type sessionHeap []*session

func (h sessionHeap) Len() int           { return len(h) }
func (h sessionHeap) Less(i, j int) bool { return h[i].expires < h[j].expires }
func (h sessionHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].heapIndex = i
	h[j].heapIndex = j
}

func (h *sessionHeap) Push(x any) {
	s := x.(*session)
	s.heapIndex = len(*h)
	*h = append(*h, s)
}

func (h *sessionHeap) Pop() any {
	old := *h
	s := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	s.heapIndex = -1
	return s
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
	sess, ok := s.tokens.get(accessToken, signature, time.Now().UnixNano())
	s.tokens.mu.RUnlock()
	if !ok {
		return nil, notFound("access")
	}
	// sess stays as it is once stored but for inactive, so that it is
	// decoded outside the lock.
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
	sess, ok := s.tokens.get(refreshToken, signature, time.Now().UnixNano())
	inactive := ok && sess.inactive
	s.tokens.mu.RUnlock()
	if !ok {
		return nil, notFound("refresh")
	}
	req, err := sess.requester(session)
	if err != nil {
		return nil, err
	}
	if inactive {
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

	sess, ok := s.tokens.get(refreshToken, refreshTokenSignature, time.Now().UnixNano())
	if !ok || sess.requestID() != requestID {
		return notFound("refresh")
	}
	if sess.inactive {
		return fmt.Errorf("memory: refresh token session: rotated or revoked meanwhile: %w: %w",
			fosite.ErrSerializationFailure, fosite.ErrInactiveToken)
	}
	sess.inactive = true
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
