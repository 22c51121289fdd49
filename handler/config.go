package handler

import (
	"context"
	"time"
)

// Policy defaults. They follow RFC 7523 §3 and RFC 8725: short-lived,
// single-use assertions, a small clock-skew allowance, asymmetric algorithms
// only.
const (
	DefaultClockSkew            = 30 * time.Second
	DefaultMaxAssertionLifetime = time.Hour
	DefaultMaxAssertionSize     = 16 << 10
	// maxIDLength bounds "kid" and "jti" so that a caller cannot make the
	// replay cache or the key index hold arbitrarily large strings.
	maxIDLength = 256
	// maxNameLength bounds "iss" and "sub".
	maxNameLength = 1024
	// replayMargin is the shortest time a claimed jti is remembered, however
	// close to its "exp" the assertion arrived.
	replayMargin = time.Minute
)

// DefaultAlgorithms is the JWS "alg" allow-list used when a trust
// relationship does not name its own: asymmetric algorithms only, so "none"
// and HMAC (which would let a public key act as a shared secret) are refused.
var DefaultAlgorithms = []string{
	"RS256", "RS384", "RS512",
	"PS256", "PS384", "PS512",
	"ES256", "ES384", "ES512",
	"EdDSA",
}

// Settings is the jwt-bearer policy. The zero value is the default policy
// described on each field.
type Settings struct {
	// Audiences are accepted as the assertion's "aud" besides fosite's token
	// URL(s) (GetTokenURLs) and the access-token issuer (GetAccessTokenIssuer),
	// which identify this authorization server (RFC 7523 §3, item 3).
	Audiences []string
	// ClockSkew is the leeway applied to "exp", "nbf" and "iat".
	// Zero means DefaultClockSkew; a negative value means none.
	ClockSkew time.Duration
	// MaxAssertionLifetime bounds both exp − now and exp − iat (plus the
	// clock skew), so that a leaked assertion is useful only briefly.
	// Zero means DefaultMaxAssertionLifetime.
	MaxAssertionLifetime time.Duration
	// MaxAssertionSize caps the assertion's length in bytes before any
	// parsing. Zero means DefaultMaxAssertionSize.
	MaxAssertionSize int
	// Algorithms is the JWS "alg" allow-list for relationships that do not
	// name their own. Empty means DefaultAlgorithms.
	Algorithms []string
	// JTIOptional accepts assertions without a "jti". By default a jti is
	// required so that every assertion is single-use. A trust relationship
	// may override this either way.
	JTIOptional bool
	// RequireClientAuth makes client authentication mandatory for this grant.
	// By default it is optional (RFC 7521 §4.1): the signed assertion is the
	// credential. Credentials that are sent are always validated.
	RequireClientAuth bool
	// NoTokenLifetimeCap lets the access token outlive the assertion. By
	// default its lifetime is capped at the assertion's remaining validity,
	// as RFC 7521 §4.1 advises.
	NoTokenLifetimeCap bool
	// IssueRefreshTokens issues a refresh token with the access token when
	// an authenticated client that may use the refresh_token grant redeems
	// the assertion. Off by default: the client presents a new assertion.
	IssueRefreshTokens bool
	// RemoteKeys fetches the key sets of relationships with a jwks_uri or
	// OpenID discovery, when the Handler has none of its own. Nil: such
	// relationships verify nothing.
	RemoteKeys RemoteKeySource
	// Limiter, when set, rate-limits the issuers of verified assertions
	// (LimitIssuer, see Limiter); clients are limited where they are
	// authenticated. Nil: no limits.
	Limiter Limiter
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// SettingsProvider supplies the policy per request, so that it may differ
// per tenant. A fosite configuration that does not implement it gets the
// default Settings.
type SettingsProvider interface {
	GetJWTBearerSettings(ctx context.Context) *Settings
}

func (s *Settings) clockSkew() time.Duration { return effectiveClockSkew(s.ClockSkew) }

func (s *Settings) maxLifetime() time.Duration { return effectiveMaxLifetime(s.MaxAssertionLifetime) }

// effectiveClockSkew reads a configured skew: zero means the default,
// a negative value none.
func effectiveClockSkew(d time.Duration) time.Duration {
	switch {
	case d == 0:
		return DefaultClockSkew
	case d < 0:
		return 0
	}
	return d
}

// effectiveMaxLifetime reads a configured assertion lifetime bound: zero
// (or less) means the default.
func effectiveMaxLifetime(d time.Duration) time.Duration {
	if d <= 0 {
		return DefaultMaxAssertionLifetime
	}
	return d
}

func (s *Settings) maxSize() int {
	if s.MaxAssertionSize <= 0 {
		return DefaultMaxAssertionSize
	}
	return s.MaxAssertionSize
}

func (s *Settings) algorithms() []string {
	if len(s.Algorithms) == 0 {
		return DefaultAlgorithms
	}
	return s.Algorithms
}

func (s *Settings) now() time.Time {
	if s.Now == nil {
		return time.Now()
	}
	return s.Now()
}
