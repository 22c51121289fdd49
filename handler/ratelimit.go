package handler

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"time"

	"github.com/ory/fosite"
)

// LimitKind names what a rate limit counts.
type LimitKind string

const (
	// LimitClient counts the requests of an authenticated client.
	LimitClient LimitKind = "client"
	// LimitIssuer counts the assertions of a trusted issuer whose
	// signature verified.
	LimitIssuer LimitKind = "issuer"
)

// Limiter bounds how often a client or an assertion issuer may obtain
// tokens. The handler (for issuers) and ClientAssertionVerifier (for
// clients) ask it only about identities proven by a verified signature,
// so that a stranger cannot spend someone else's allowance and the keys it
// sees are bounded by the configuration; and they ask before the jti is
// claimed, so that a refused assertion can be sent again later.
type Limiter interface {
	// Allow reports whether one more request of key may proceed now and,
	// when it may not, how long until it may.
	Allow(ctx context.Context, kind LimitKind, key string) (ok bool, retryAfter time.Duration)
}

// RateLimitError is the cause of an ErrRateLimited answer: which limit
// refused the request and when to try again.
type RateLimitError struct {
	Kind       LimitKind
	RetryAfter time.Duration
}

func (e *RateLimitError) Error() string {
	return fmt.Sprintf("the %s's rate limit is exceeded; retry after %s", e.Kind, e.RetryAfter)
}

// RetryAfterSeconds is the Retry-After header value: whole seconds, at
// least 1.
func (e *RateLimitError) RetryAfterSeconds() int {
	s := math.Ceil(e.RetryAfter.Seconds())
	if s < 1 || math.IsNaN(s) {
		return 1
	}
	if s > 3600 {
		return 3600
	}
	return int(s)
}

// ErrRateLimited is the answer to a rate-limited request: HTTP 429 with
// the error code "slow_down". RFC 6749 defines no code for it; slow_down
// is the one the OAuth error registry holds for a token endpoint client
// that asks too often (RFC 8628 §3.5). The caller adds Retry-After.
var ErrRateLimited = &fosite.RFC6749Error{
	ErrorField:       "slow_down",
	DescriptionField: "Too many token requests.",
	CodeField:        http.StatusTooManyRequests,
}

// RateLimited returns ErrRateLimited for kind with a hint and the cause
// (a *RateLimitError, for errors.As) that tells when to retry.
func RateLimited(kind LimitKind, retryAfter time.Duration) *fosite.RFC6749Error {
	cause := &RateLimitError{Kind: kind, RetryAfter: retryAfter}
	hint := "This client has exceeded its request rate; retry later."
	if kind == LimitIssuer {
		hint = "The assertion's issuer has exceeded its request rate; retry later."
	}
	return ErrRateLimited.WithHintf("%s Retry after %d seconds.", hint, cause.RetryAfterSeconds()).WithWrap(cause)
}

// AsRateLimit returns the rate-limit cause of err, if it has one.
func AsRateLimit(err error) (*RateLimitError, bool) {
	var rl *RateLimitError
	ok := errors.As(err, &rl)
	return rl, ok
}
