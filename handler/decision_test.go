package handler_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ory/fosite"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/jwtbearer/jwtbearer/handler"
)

// tokenCtx is env.token with the caller's context.
func (e *env) tokenCtx(ctx context.Context, assertion string, header http.Header) error {
	form := grant(assertion)
	r := httptest.NewRequest(http.MethodPost, tokenURL, strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for k, v := range header {
		r.Header[k] = v
	}
	ar, err := e.provider.NewAccessRequest(ctx, r, &fosite.DefaultSession{})
	if err != nil {
		return err
	}
	_, err = e.provider.NewAccessResponse(ctx, ar)
	return err
}

func TestDecisionRecorded(t *testing.T) {
	tr := trust(rsaKey)
	tr.ID = "partner"
	e := newEnv(t, &handler.Settings{}, tr)
	for _, tc := range []struct {
		name      string
		assertion string
		ok        bool
		want      handler.Decision
	}{
		{"granted", rsaKey.Sign(e.claims()), true,
			handler.Decision{Issuer: "TestClient", Subject: "User1", KeyID: rsaKey.Public.KeyID, TrustID: "partner"}},
		// Parsed but not verified: who it claims to be, under no relationship.
		{"untrusted key", otherKey.Sign(e.claims()), false,
			handler.Decision{Issuer: "TestClient", Subject: "User1", KeyID: otherKey.Public.KeyID}},
		{"verified, then refused by a claim rule", rsaKey.Sign(func() map[string]interface{} { c := e.claims(); c["aud"] = "https://elsewhere"; return c }()), false,
			handler.Decision{Issuer: "TestClient", Subject: "User1", KeyID: rsaKey.Public.KeyID, TrustID: "partner"}},
		{"not a JWT", "a.b.c", false, handler.Decision{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var d handler.Decision
			err := e.tokenCtx(handler.WithDecision(context.Background(), &d), tc.assertion, nil)
			assert.Equal(t, tc.ok, err == nil, "%v", err)
			assert.Equal(t, tc.want, d)
		})
	}
	// Without a Decision in the context the handler works as before.
	require.NoError(t, e.tokenCtx(context.Background(), rsaKey.Sign(e.claims()), nil))
}

// fakeLimiter refuses the keys in deny and records every question.
type fakeLimiter struct {
	mu    sync.Mutex
	deny  map[string]bool
	asked []string
}

func (l *fakeLimiter) Allow(_ context.Context, kind handler.LimitKind, key string) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.asked = append(l.asked, string(kind)+":"+key)
	if l.deny[string(kind)+":"+key] {
		return false, 2500 * time.Millisecond
	}
	return true, 0
}

func (l *fakeLimiter) set(deny ...string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.deny = map[string]bool{}
	for _, k := range deny {
		l.deny[k] = true
	}
	l.asked = nil
}

func TestLimiter(t *testing.T) {
	lim := &fakeLimiter{}
	e := newEnv(t, &handler.Settings{Limiter: lim}, trust(rsaKey))
	wantLimited := func(t *testing.T, err error, kind handler.LimitKind) {
		t.Helper()
		require.Error(t, err)
		rfc := fosite.ErrorToRFC6749Error(err)
		assert.Equal(t, http.StatusTooManyRequests, rfc.CodeField)
		assert.Equal(t, "slow_down", rfc.ErrorField)
		assert.Contains(t, rfc.GetDescription(), "Retry after 3 seconds")
		rl, ok := handler.AsRateLimit(err)
		require.True(t, ok, "%v", err)
		assert.Equal(t, kind, rl.Kind)
		assert.Equal(t, 3, rl.RetryAfterSeconds())
	}

	t.Run("issuer over its limit: refused, and the assertion is not used up", func(t *testing.T) {
		a := rsaKey.Sign(e.claims())
		lim.set("issuer:TestClient")
		wantLimited(t, e.tokenCtx(context.Background(), a, nil), handler.LimitIssuer)
		lim.set()
		require.NoError(t, e.tokenCtx(context.Background(), a, nil))
		// And then it is used up.
		wantError(t, e.tokenCtx(context.Background(), a, nil), fosite.ErrInvalidGrant, "already been used")
	})
	t.Run("an assertion that does not verify never touches the issuer's allowance", func(t *testing.T) {
		lim.set("issuer:TestClient")
		wantError(t, e.tokenCtx(context.Background(), otherKey.Sign(e.claims()), nil), fosite.ErrInvalidGrant, untrusted)
		assert.Empty(t, lim.asked)
	})
	t.Run("clients are not the handler's to count", func(t *testing.T) {
		lim.set("client:svc")
		require.NoError(t, e.tokenCtx(context.Background(), rsaKey.Sign(e.claims()), basic("svc", "secret")))
		assert.Equal(t, []string{"issuer:TestClient"}, lim.asked)
	})
}
