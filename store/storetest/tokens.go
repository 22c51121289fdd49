package storetest

import (
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ory/fosite"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// getAccess and getRefresh pass a fresh session, as fosite does, for
// backends that decode the stored session into it.
func getAccess(t *testing.T, s Store, signature string) (fosite.Requester, error) {
	t.Helper()
	return s.GetAccessTokenSession(t.Context(), signature, &fosite.DefaultSession{})
}

func getRefresh(t *testing.T, s Store, signature string) (fosite.Requester, error) {
	t.Helper()
	return s.GetRefreshTokenSession(t.Context(), signature, &fosite.DefaultSession{})
}

// assertRequest checks that got is the requester built by newRequest with
// that ID and client.
func assertRequest(t *testing.T, got fosite.Requester, id, clientID string) {
	t.Helper()
	require.NotNil(t, got)
	assert.Equal(t, id, got.GetID())
	require.NotNil(t, got.GetClient())
	assert.Equal(t, clientID, got.GetClient().GetID())
	assert.Equal(t, fosite.Arguments{"read"}, got.GetGrantedScopes())
	require.NotNil(t, got.GetSession())
	assert.Equal(t, "alice", got.GetSession().GetSubject())
}

func testAccessTokenSessionCRUD(t *testing.T, s Store) {
	ctx := t.Context()
	exp := time.Now().Add(hour).UTC().Round(time.Second)
	require.NoError(t, s.CreateAccessTokenSession(ctx, "at-1", newRequest("req-1", "client-1", exp, time.Time{})))
	require.NoError(t, s.CreateAccessTokenSession(ctx, "at-2", newRequest("req-2", "client-2", exp, time.Time{})))

	got, err := getAccess(t, s, "at-1")
	require.NoError(t, err)
	assertRequest(t, got, "req-1", "client-1")
	assert.True(t, exp.Equal(got.GetSession().GetExpiresAt(fosite.AccessToken)))
	got, err = getAccess(t, s, "at-2")
	require.NoError(t, err)
	assertRequest(t, got, "req-2", "client-2")

	_, err = getAccess(t, s, "unknown")
	assert.ErrorIs(t, err, fosite.ErrNotFound)
	_, err = getRefresh(t, s, "at-1")
	assert.ErrorIs(t, err, fosite.ErrNotFound, "access and refresh signatures are apart")

	require.NoError(t, s.DeleteAccessTokenSession(ctx, "at-1"))
	_, err = getAccess(t, s, "at-1")
	assert.ErrorIs(t, err, fosite.ErrNotFound)
	_, err = getAccess(t, s, "at-2")
	assert.NoError(t, err, "other sessions stay")
}

func testRefreshTokenSessionCRUD(t *testing.T, s Store) {
	ctx := t.Context()
	exp := time.Now().Add(hour).UTC().Round(time.Second)
	require.NoError(t, s.CreateRefreshTokenSession(ctx, "rt-1", "at-1", newRequest("req-1", "client-1", exp, exp)))
	require.NoError(t, s.CreateRefreshTokenSession(ctx, "rt-2", "at-2", newRequest("req-2", "client-2", exp, exp)))

	got, err := getRefresh(t, s, "rt-1")
	require.NoError(t, err)
	assertRequest(t, got, "req-1", "client-1")
	assert.True(t, exp.Equal(got.GetSession().GetExpiresAt(fosite.RefreshToken)))

	_, err = getRefresh(t, s, "unknown")
	assert.ErrorIs(t, err, fosite.ErrNotFound)
	_, err = getAccess(t, s, "rt-1")
	assert.ErrorIs(t, err, fosite.ErrNotFound, "access and refresh signatures are apart")

	require.NoError(t, s.DeleteRefreshTokenSession(ctx, "rt-1"))
	_, err = getRefresh(t, s, "rt-1")
	assert.ErrorIs(t, err, fosite.ErrNotFound)
	_, err = getRefresh(t, s, "rt-2")
	assert.NoError(t, err, "other sessions stay")
}

func testRevokeByRequestID(t *testing.T, s Store) {
	ctx := t.Context()
	exp := time.Now().Add(hour)
	for _, id := range []string{"req-1", "req-2"} {
		req := newRequest(id, "client-1", exp, exp)
		require.NoError(t, s.CreateAccessTokenSession(ctx, "at-"+id, req))
		require.NoError(t, s.CreateAccessTokenSession(ctx, "at-b-"+id, req))
		require.NoError(t, s.CreateRefreshTokenSession(ctx, "rt-"+id, "at-"+id, req))
	}

	require.NoError(t, s.RevokeAccessToken(ctx, "req-1"))
	for _, sig := range []string{"at-req-1", "at-b-req-1"} {
		_, err := getAccess(t, s, sig)
		assert.ErrorIs(t, err, fosite.ErrNotFound, sig)
	}
	_, err := getRefresh(t, s, "rt-req-1")
	assert.NoError(t, err, "revoking access tokens leaves the refresh token")

	require.NoError(t, s.RevokeRefreshToken(ctx, "req-1"))
	got, err := getRefresh(t, s, "rt-req-1")
	assert.ErrorIs(t, err, fosite.ErrInactiveToken, "a revoked refresh token is inactive, so that its reuse is detected")
	if assert.NotNil(t, got, "the requester comes with ErrInactiveToken") {
		assert.Equal(t, "req-1", got.GetID())
	}

	for _, sig := range []string{"at-req-2", "at-b-req-2"} {
		_, err = getAccess(t, s, sig)
		assert.NoError(t, err, "another request's tokens stay: %s", sig)
	}
	_, err = getRefresh(t, s, "rt-req-2")
	assert.NoError(t, err)

	assert.NoError(t, s.RevokeAccessToken(ctx, "no-such-request"))
	assert.NoError(t, s.RevokeRefreshToken(ctx, "no-such-request"))
}

func testTokenSessionExpires(t *testing.T, s Store) {
	ctx := t.Context()
	past := time.Now().Add(-time.Minute)
	soon := time.Now().Add(shortTTL)
	later := time.Now().Add(hour)

	// Already expired when stored.
	require.NoError(t, s.CreateAccessTokenSession(ctx, "at-past", newRequest("req-1", "client-1", past, later)))
	require.NoError(t, s.CreateRefreshTokenSession(ctx, "rt-past", "at-past", newRequest("req-1", "client-1", later, past)))
	_, err := getAccess(t, s, "at-past")
	assert.ErrorIs(t, err, fosite.ErrNotFound)
	_, err = getRefresh(t, s, "rt-past")
	assert.ErrorIs(t, err, fosite.ErrNotFound)

	// Each kind of session follows its own token's expiry.
	require.NoError(t, s.CreateAccessTokenSession(ctx, "at-soon", newRequest("req-2", "client-1", soon, later)))
	require.NoError(t, s.CreateRefreshTokenSession(ctx, "rt-soon", "at-soon", newRequest("req-2", "client-1", later, soon)))
	require.NoError(t, s.CreateAccessTokenSession(ctx, "at-later", newRequest("req-3", "client-1", later, soon)))
	require.NoError(t, s.CreateRefreshTokenSession(ctx, "rt-later", "at-later", newRequest("req-3", "client-1", soon, later)))
	for _, sig := range []string{"at-soon", "at-later"} {
		_, err = getAccess(t, s, sig)
		require.NoError(t, err, sig)
	}
	for _, sig := range []string{"rt-soon", "rt-later"} {
		_, err = getRefresh(t, s, sig)
		require.NoError(t, err, sig)
	}

	time.Sleep(waitPastTTL)
	_, err = getAccess(t, s, "at-soon")
	assert.ErrorIs(t, err, fosite.ErrNotFound)
	_, err = getRefresh(t, s, "rt-soon")
	assert.ErrorIs(t, err, fosite.ErrNotFound)
	_, err = getAccess(t, s, "at-later")
	assert.NoError(t, err)
	_, err = getRefresh(t, s, "rt-later")
	assert.NoError(t, err)

	// Writes after the expiry (a backend may forget expired sessions then)
	// do not bring anything back nor lose live sessions.
	require.NoError(t, s.CreateAccessTokenSession(ctx, "at-new", newRequest("req-4", "client-1", later, later)))
	_, err = getAccess(t, s, "at-soon")
	assert.ErrorIs(t, err, fosite.ErrNotFound)
	_, err = getAccess(t, s, "at-later")
	assert.NoError(t, err)
}

func testTokenSessionWithoutExpiryKept(t *testing.T, s Store) {
	ctx := t.Context()
	require.NoError(t, s.CreateAccessTokenSession(ctx, "at-1", newRequest("req-1", "client-1", time.Time{}, time.Time{})))
	require.NoError(t, s.CreateRefreshTokenSession(ctx, "rt-1", "at-1", newRequest("req-1", "client-1", time.Time{}, time.Time{})))

	got, err := getAccess(t, s, "at-1")
	require.NoError(t, err)
	assertRequest(t, got, "req-1", "client-1")
	got, err = getRefresh(t, s, "rt-1")
	require.NoError(t, err)
	assertRequest(t, got, "req-1", "client-1")
}

// testRotateRefreshToken follows fosite's refresh grant: RotateRefreshToken,
// then a new access and refresh token under the same request ID; and then
// the reuse of the old refresh token, which revokes the whole grant.
func testRotateRefreshToken(t *testing.T, s Store) {
	ctx := t.Context()
	exp := time.Now().Add(hour)
	req := newRequest("req-1", "client-1", exp, exp)
	require.NoError(t, s.CreateAccessTokenSession(ctx, "at-1", req))
	require.NoError(t, s.CreateRefreshTokenSession(ctx, "rt-1", "at-1", req))
	other := newRequest("req-2", "client-1", exp, exp)
	require.NoError(t, s.CreateAccessTokenSession(ctx, "at-other", other))
	require.NoError(t, s.CreateRefreshTokenSession(ctx, "rt-other", "at-other", other))

	require.NoError(t, s.RotateRefreshToken(ctx, "req-1", "rt-1"))
	got, err := getRefresh(t, s, "rt-1")
	assert.ErrorIs(t, err, fosite.ErrInactiveToken, "the rotated refresh token is inactive")
	if assert.NotNil(t, got) {
		assert.Equal(t, "req-1", got.GetID())
	}
	_, err = getAccess(t, s, "at-1")
	assert.ErrorIs(t, err, fosite.ErrNotFound, "the access tokens of the request are revoked")

	// fosite then stores the new pair under the same request ID.
	next := newRequest("req-1", "client-1", exp, exp)
	require.NoError(t, s.CreateAccessTokenSession(ctx, "at-2", next))
	require.NoError(t, s.CreateRefreshTokenSession(ctx, "rt-2", "at-2", next))
	_, err = getAccess(t, s, "at-2")
	assert.NoError(t, err)
	_, err = getRefresh(t, s, "rt-2")
	assert.NoError(t, err)

	// Reuse of rt-1: fosite deletes it and revokes the request's tokens.
	require.NoError(t, s.DeleteRefreshTokenSession(ctx, "rt-1"))
	require.NoError(t, s.RevokeRefreshToken(ctx, "req-1"))
	require.NoError(t, s.RevokeAccessToken(ctx, "req-1"))
	_, err = getRefresh(t, s, "rt-1")
	assert.ErrorIs(t, err, fosite.ErrNotFound)
	_, err = getRefresh(t, s, "rt-2")
	assert.ErrorIs(t, err, fosite.ErrInactiveToken)
	_, err = getAccess(t, s, "at-2")
	assert.ErrorIs(t, err, fosite.ErrNotFound)

	// Another grant is untouched throughout.
	_, err = getAccess(t, s, "at-other")
	assert.NoError(t, err)
	_, err = getRefresh(t, s, "rt-other")
	assert.NoError(t, err)
}

func testConcurrentTokenCreateAndRevoke(t *testing.T, s Store) {
	const goroutines, perGoroutine = 32, 20
	exp := time.Now().Add(hour)
	var failures atomic.Int32
	race(goroutines, func(g int) {
		ctx := t.Context()
		for i := range perGoroutine {
			id := fmt.Sprintf("req-%d-%d", g, i)
			req := newRequest(id, "client-1", exp, exp)
			if s.CreateAccessTokenSession(ctx, "at-"+id, req) != nil ||
				s.CreateRefreshTokenSession(ctx, "rt-"+id, "at-"+id, req) != nil {
				failures.Add(1)
			}
			if _, err := s.GetAccessTokenSession(ctx, "at-"+id, &fosite.DefaultSession{}); err != nil {
				failures.Add(1)
			}
			if i%2 == 0 {
				if s.RevokeAccessToken(ctx, id) != nil || s.RevokeRefreshToken(ctx, id) != nil {
					failures.Add(1)
				}
			}
		}
	})
	require.Zero(t, failures.Load())

	for g := range goroutines {
		for i := range perGoroutine {
			id := fmt.Sprintf("req-%d-%d", g, i)
			_, atErr := getAccess(t, s, "at-"+id)
			_, rtErr := getRefresh(t, s, "rt-"+id)
			if i%2 == 0 {
				assert.ErrorIs(t, atErr, fosite.ErrNotFound, id)
				assert.ErrorIs(t, rtErr, fosite.ErrInactiveToken, id)
			} else {
				assert.NoError(t, atErr, id)
				assert.NoError(t, rtErr, id)
			}
		}
	}
}

// testRotateRefreshTokenRefused checks that a rotation changes nothing and
// fails, with an error fosite turns into a 400 rather than a new pair,
// unless it flips the presented refresh token of that request from active
// to inactive.
func testRotateRefreshTokenRefused(t *testing.T, s Store) {
	ctx := t.Context()
	exp := time.Now().Add(hour)
	req := newRequest("req-1", "client-1", exp, exp)
	require.NoError(t, s.CreateAccessTokenSession(ctx, "at-1", req))
	require.NoError(t, s.CreateRefreshTokenSession(ctx, "rt-1", "at-1", req))

	err := s.RotateRefreshToken(ctx, "req-1", "unknown")
	assert.ErrorIs(t, err, fosite.ErrNotFound, "an unknown refresh token is not rotated")
	err = s.RotateRefreshToken(ctx, "req-2", "rt-1")
	assert.ErrorIs(t, err, fosite.ErrNotFound, "a refresh token of another request is not rotated")
	_, err = getRefresh(t, s, "rt-1")
	assert.NoError(t, err, "a refused rotation leaves the refresh token active")
	_, err = getAccess(t, s, "at-1")
	assert.NoError(t, err, "a refused rotation leaves the access token")

	require.NoError(t, s.RotateRefreshToken(ctx, "req-1", "rt-1"))
	err = s.RotateRefreshToken(ctx, "req-1", "rt-1")
	assert.ErrorIs(t, err, fosite.ErrSerializationFailure, "a token is rotated once")
	assert.ErrorIs(t, err, fosite.ErrInactiveToken)

	// A revoked refresh token is not rotated either.
	next := newRequest("req-3", "client-1", exp, exp)
	require.NoError(t, s.CreateAccessTokenSession(ctx, "at-3", next))
	require.NoError(t, s.CreateRefreshTokenSession(ctx, "rt-3", "at-3", next))
	require.NoError(t, s.RevokeRefreshToken(ctx, "req-3"))
	err = s.RotateRefreshToken(ctx, "req-3", "rt-3")
	assert.ErrorIs(t, err, fosite.ErrSerializationFailure)
	_, err = getAccess(t, s, "at-3")
	assert.NoError(t, err, "a refused rotation does not revoke the access tokens")

	// Nor is an expired one.
	short := newRequest("req-4", "client-1", exp, time.Now().Add(shortTTL))
	require.NoError(t, s.CreateRefreshTokenSession(ctx, "rt-4", "at-4", short))
	time.Sleep(waitPastTTL)
	assert.ErrorIs(t, s.RotateRefreshToken(ctx, "req-4", "rt-4"), fosite.ErrNotFound)
}

// testConcurrentRotateRefreshToken sends the same refresh token through
// many refresh grants at once: exactly one rotation succeeds, so that
// fosite issues exactly one new pair; the others get
// fosite.ErrSerializationFailure, which it answers with 400.
func testConcurrentRotateRefreshToken(t *testing.T, s Store) {
	const goroutines, rounds = 32, 10
	exp := time.Now().Add(hour)
	for round := range rounds {
		id := fmt.Sprintf("req-%d", round)
		req := newRequest(id, "client-1", exp, exp)
		require.NoError(t, s.CreateAccessTokenSession(t.Context(), "at-"+id, req))
		require.NoError(t, s.CreateRefreshTokenSession(t.Context(), "rt-"+id, "at-"+id, req))

		var wins, refused, failures atomic.Int32
		race(goroutines, func(int) {
			err := s.RotateRefreshToken(t.Context(), id, "rt-"+id)
			switch {
			case err == nil:
				wins.Add(1)
			case errors.Is(err, fosite.ErrSerializationFailure):
				refused.Add(1)
			default:
				failures.Add(1)
			}
		})
		require.Zero(t, failures.Load(), "round %d: the losers get fosite.ErrSerializationFailure", round)
		require.Equal(t, int32(1), wins.Load(), "round %d: exactly one rotation succeeds", round)
		require.Equal(t, int32(goroutines-1), refused.Load())

		_, err := getRefresh(t, s, "rt-"+id)
		assert.ErrorIs(t, err, fosite.ErrInactiveToken)
		_, err = getAccess(t, s, "at-"+id)
		assert.ErrorIs(t, err, fosite.ErrNotFound)
	}
}
