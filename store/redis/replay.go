package redis

import (
	"context"
	"errors"
	"time"

	"github.com/ory/fosite"
	goredis "github.com/redis/go-redis/v9"
)

// claim records key until the instant until with one SET NX GET PXAT, and
// reports whether this call was the first to do so. Redis forgets the key
// at until, after which it may be claimed again.
//
// The value set is a random nonce of this call, and GET returns the value
// the key held: none when this SET stored it, and this call's own nonce
// when the client sent the command again because the reply to the first
// one was lost (a Cluster client retries on a network error and follows
// MOVED redirects; a client passed to New may retry too). Both are a fresh
// claim; any other value is a claim made by another call. A retried SET NX
// would otherwise turn a first use into "already used".
//
// An until that is not in the future protects nothing, as in the memory
// store: the claim fails if an unexpired claim exists (one EXISTS) and
// otherwise succeeds without recording anything, so a second such call
// succeeds too. The handler never asks for that.
func (s *Store) claim(ctx context.Context, op, key string, until time.Time) (bool, error) {
	if !until.After(time.Now()) {
		n, err := s.client.Exists(ctx, key).Result()
		if err != nil {
			return false, unavailable(op, err)
		}
		return n == 0, nil
	}
	nonce := newID()
	cmd := goredis.NewStringCmd(ctx, "set", key, nonce, "nx", "get", "pxat", expiryMs(until))
	_ = s.client.Process(ctx, cmd)
	fresh, err := claimed(cmd, nonce)
	if err != nil {
		return false, unavailable(op, err)
	}
	return fresh, nil
}

// claimed reads the reply of claim's SET NX GET: no value (goredis.Nil)
// means this command stored the key, the value nonce that an earlier
// sending of this very command did; both are fresh. Any other value is
// another claim's.
func claimed(cmd *goredis.StringCmd, nonce string) (bool, error) {
	old, err := cmd.Result()
	switch {
	case errors.Is(err, goredis.Nil):
		return true, nil
	case err != nil:
		return false, err
	}
	return old == nonce, nil
}

// ClaimJTI implements store.ReplayGuard with one atomic SET NX GET PXAT:
// exactly one of any number of concurrent calls with the same issuer and
// jti wins, in every process sharing the Redis, and a client's retry of
// the winner's command still wins. The key is a hash of (issuer, jti),
// apart from the client-assertion jtis. An until that is not in the future
// is treated as the memory store treats it (see claim).
func (s *Store) ClaimJTI(ctx context.Context, issuer, jti string, until time.Time) (bool, error) {
	return s.claim(ctx, "claim jti", s.keys.jti(issuer, jti), until)
}

// JTIUsed implements store.ReplayInspector with one EXISTS.
func (s *Store) JTIUsed(ctx context.Context, issuer, jti string) (bool, error) {
	n, err := s.client.Exists(ctx, s.keys.jti(issuer, jti)).Result()
	if err != nil {
		return false, unavailable("check jti", err)
	}
	return n > 0, nil
}

// ClientAssertionJWTValid implements fosite.ClientManager with one EXISTS.
// It returns fosite.ErrJTIKnown when the client-assertion jti is known and
// unexpired.
func (s *Store) ClientAssertionJWTValid(ctx context.Context, jti string) error {
	n, err := s.client.Exists(ctx, s.keys.clientJTI(jti)).Result()
	if err != nil {
		return unavailable("check client assertion jti", err)
	}
	if n > 0 {
		return fosite.ErrJTIKnown.WithDebug("The client assertion's jti was already used.")
	}
	return nil
}

// SetClientAssertionJWT implements fosite.ClientManager. fosite checks with
// ClientAssertionJWTValid first and then calls this; the insert itself is
// the same atomic claim as ClaimJTI's (see claim) and returns
// fosite.ErrJTIKnown if another request got there in between, which
// closes fosite's check-then-set window.
func (s *Store) SetClientAssertionJWT(ctx context.Context, jti string, exp time.Time) error {
	fresh, err := s.claim(ctx, "set client assertion jti", s.keys.clientJTI(jti), exp)
	if err != nil {
		return err
	}
	if !fresh {
		return fosite.ErrJTIKnown.WithDebug("The client assertion's jti was already used.")
	}
	return nil
}
