// Package store holds the contracts that the jwt-bearer handler and the
// server consume, and the domain types they share: trust relationships
// (RFC 7523 §5 out-of-band agreements), their keys, and the replay guard.
//
// Backends live in sub-packages (store/memory is the embedded default) and
// every backend passes the conformance suite in store/storetest. This package
// imports no backend and nothing else of this module.
package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v3"
	"github.com/ory/fosite"
)

var (
	// ErrNotFound is returned when a trust relationship or client does not exist.
	ErrNotFound = errors.New("store: not found")
	// ErrAlreadyExists is returned when creating a record whose ID is taken.
	ErrAlreadyExists = errors.New("store: already exists")
	// ErrUnavailable wraps backend failures that are expected to pass (a
	// network store that cannot be reached). The token endpoint answers them
	// with 503 temporarily_unavailable instead of 500 server_error, and issues
	// nothing.
	ErrUnavailable = errors.New("store: unavailable")
	// ErrInvalid is returned when a record fails validation; the wrapped text
	// says which field.
	ErrInvalid = errors.New("store: invalid record")
)

// Trust is one trust relationship: assertions issued by Issuer about a
// subject its subject rule accepts, carrying RequiredClaims, signed by one
// of its keys, may obtain at most Scopes, until ExpiresAt. It holds the
// items of RFC 7523 §5 that issuer and authorization server agree on out of
// band.
//
// The subject rule is AnySubject alone, or any mix of Subject, Subjects and
// SubjectPatterns (a subject matching one of them is accepted). The keys
// are Keys, or the key set published at JWKSURI, or the one named by the
// issuer's OpenID Provider metadata when OIDCDiscovery is set: exactly one
// of the three.
//
// A Trust handed out by a store is shared and must be treated as read-only.
type Trust struct {
	// ID names the relationship. Stores assign one when it is empty.
	ID string `json:"id"`
	// Issuer is compared with the assertion's "iss" byte for byte
	// (RFC 7521 §5.2, no normalisation).
	Issuer string `json:"issuer"`
	// Subject is an exact "sub" accepted.
	Subject string `json:"subject,omitempty"`
	// Subjects are more exact "sub" values accepted.
	Subjects []string `json:"subjects,omitempty"`
	// SubjectPatterns are globs a "sub" may match (see MatchSubject), such
	// as "system:serviceaccount:prod:*".
	SubjectPatterns []string `json:"subject_patterns,omitempty"`
	// AnySubject accepts every "sub" from Issuer, and excludes the other
	// subject fields.
	AnySubject bool `json:"any_subject,omitempty"`
	// RequiredClaims are claims the assertion must carry with exactly these
	// values: a string claim equal to the value, or a number or boolean
	// claim whose JSON text is the value ("true", "12345").
	RequiredClaims map[string]string `json:"required_claims,omitempty"`
	// Scopes is the ceiling of what an assertion may obtain.
	Scopes []string `json:"scopes,omitempty"`
	// Algorithms restricts the JWS "alg" values accepted with these keys.
	// Empty means the handler's default allow-list.
	Algorithms []string `json:"algorithms,omitempty"`
	// Clients, when not empty, lists the only client IDs that may redeem
	// these assertions, and makes client authentication mandatory for them.
	Clients []string `json:"clients,omitempty"`
	// RequireJTI overrides the handler's jti policy for this relationship
	// when not nil.
	RequireJTI *bool `json:"require_jti,omitempty"`
	// MaxAssertionLifetime, when not zero, replaces the handler's limit on
	// how long an assertion may be valid (exp − now and exp − iat), within
	// MaxAssertionLifetimeLimit.
	MaxAssertionLifetime Duration `json:"max_assertion_lifetime,omitempty"`
	// AccessTokenLifetime, when not zero, replaces the server's access
	// token lifetime for tokens obtained through this relationship. The
	// token still does not outlive the assertion unless the handler says so.
	AccessTokenLifetime Duration `json:"access_token_lifetime,omitempty"`
	// ExpiresAt, when not zero, is the instant after which the relationship
	// grants nothing.
	ExpiresAt time.Time `json:"expires_at,omitempty"`
	// Keys are the issuer's public keys (or, only when listed in Algorithms
	// with an HS* algorithm, shared symmetric keys). Every key has a KeyID:
	// its own "kid", or its RFC 7638 SHA-256 thumbprint when it had none.
	Keys []jose.JSONWebKey `json:"keys,omitempty"`
	// JWKSURI is where the issuer publishes its key set, fetched and cached
	// by the server (https, or http to loopback).
	JWKSURI string `json:"jwks_uri,omitempty"`
	// OIDCDiscovery takes the key set from the jwks_uri of the issuer's
	// OpenID Provider metadata, at Issuer + "/.well-known/openid-configuration".
	OIDCDiscovery bool `json:"oidc_discovery,omitempty"`
}

// Expired reports whether the relationship has expired at now.
func (t *Trust) Expired(now time.Time) bool {
	return !t.ExpiresAt.IsZero() && now.After(t.ExpiresAt)
}

// Remote reports whether the relationship's keys are published by the
// issuer (JWKSURI or OIDCDiscovery) rather than held in Keys.
func (t *Trust) Remote() bool {
	return t.JWKSURI != "" || t.OIDCDiscovery
}

// AllowsSubject reports whether the subject rule accepts sub.
func (t *Trust) AllowsSubject(sub string) bool {
	if t.AnySubject {
		return true
	}
	if sub == "" {
		return false
	}
	if sub == t.Subject {
		return true
	}
	for _, s := range t.Subjects {
		if s == sub {
			return true
		}
	}
	for _, p := range t.SubjectPatterns {
		if MatchSubject(p, sub) {
			return true
		}
	}
	return false
}

// TrustedKey is a key that may verify an assertion, with the relationship
// that trusts it. Key is nil for a relationship whose keys are remote
// (Trust.Remote): the caller fetches them.
type TrustedKey struct {
	Key   *jose.JSONWebKey
	Trust *Trust
}

// KeyResolver finds the keys trusted for an assertion.
type KeyResolver interface {
	// TrustedKeys returns the keys trusted for assertions whose "iss" is
	// issuer and whose "sub" is subject: those of the issuer's
	// relationships whose subject rule accepts subject, most specific
	// first (exact subjects, then patterns, then any subject; by ID within
	// each group). When kid is not empty, only keys whose KeyID equals kid
	// are returned. A relationship with remote keys appears once, with a nil
	// Key, whatever the kid. No match is an empty result and a nil error.
	// Lookup cost must not grow with the number of relationships stored
	// (only with the issuer's subject patterns). The result is shared:
	// callers must not modify it. Expired relationships may be returned;
	// callers check Trust.Expired.
	TrustedKeys(ctx context.Context, issuer, subject, kid string) ([]TrustedKey, error)
}

// ReplayGuard remembers assertion IDs so that an assertion is redeemed once.
type ReplayGuard interface {
	// ClaimJTI atomically records (issuer, jti) as used until the instant
	// until, and reports whether this call was the first to do so. Exactly
	// one of any number of concurrent calls with the same issuer and jti
	// returns true, across every process sharing the store. Once until has
	// passed the pair may be claimed again. The namespace is separate from
	// the one fosite uses for client-assertion jtis.
	ClaimJTI(ctx context.Context, issuer, jti string, until time.Time) (fresh bool, err error)
}

// ReplayInspector looks at the replay guard without changing it: the
// admin API's dry run says whether an assertion was redeemed already
// without redeeming it. Stores implement it optionally.
type ReplayInspector interface {
	// JTIUsed reports whether (issuer, jti) is claimed and not expired.
	JTIUsed(ctx context.Context, issuer, jti string) (bool, error)
}

// TrustStore manages trust relationships. Create, Update and Delete take
// effect for TrustedKeys at once.
type TrustStore interface {
	KeyResolver
	// CreateTrust validates and stores t, normalising its keys (see
	// NormalizeTrust). It returns the stored copy, with its ID assigned.
	// ErrAlreadyExists when the ID is taken; ErrInvalid when t is not valid.
	CreateTrust(ctx context.Context, t Trust) (*Trust, error)
	// UpdateTrust replaces the relationship whose ID is t.ID, validating
	// and normalising t as CreateTrust does, and returns the stored copy.
	// ErrNotFound when there is none; ErrInvalid when t is not valid.
	UpdateTrust(ctx context.Context, t Trust) (*Trust, error)
	// GetTrust returns the relationship with that ID, or ErrNotFound.
	GetTrust(ctx context.Context, id string) (*Trust, error)
	// ListTrust returns every relationship, ordered by ID.
	ListTrust(ctx context.Context) ([]*Trust, error)
	// DeleteTrust removes the relationship, or returns ErrNotFound.
	DeleteTrust(ctx context.Context, id string) error
	// SyncTrust makes the relationships whose IDs start with prefix be
	// exactly ts, whose IDs must all start with prefix: missing ones are
	// created, present ones replaced, the others with that prefix deleted.
	// It is how a declarative trust file is applied. Every relationship is
	// validated first (see PrepareSync) and, when any is invalid, nothing
	// changes. The change is one atomic step: TrustedKeys, on every
	// instance sharing the store, sees the whole old set or the whole new
	// one, never a mix.
	SyncTrust(ctx context.Context, prefix string, ts []Trust) error
}

// PrepareSync validates and normalises the relationships for SyncTrust and
// returns them by ID. It reports every problem at once, as NormalizeTrust.
func PrepareSync(prefix string, ts []Trust) (map[string]*Trust, error) {
	var errs []error
	if prefix == "" {
		errs = append(errs, fmt.Errorf("%w: sync: the prefix must not be empty", ErrInvalid))
	}
	out := make(map[string]*Trust, len(ts))
	for i := range ts {
		t := ts[i]
		switch _, dup := out[t.ID]; {
		case !strings.HasPrefix(t.ID, prefix) || t.ID == prefix:
			errs = append(errs, fmt.Errorf("%w: trust[%d]: id %q must start with %q", ErrInvalid, i, t.ID, prefix))
			continue
		case dup:
			errs = append(errs, fmt.Errorf("%w: trust[%d]: id %q is used twice", ErrInvalid, i, t.ID))
			continue
		}
		if err := NormalizeTrust(&t); err != nil {
			errs = append(errs, fmt.Errorf("trust[%d] (%s): %w", i, t.ID, err))
			continue
		}
		out[t.ID] = &t
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return out, nil
}

// ClientStore manages the OAuth 2.0 clients that fosite authenticates.
// Client secrets are stored hashed (DefaultClient.Secret holds the hash).
type ClientStore interface {
	fosite.ClientManager
	// CreateClient stores c. ErrAlreadyExists when its ID is taken.
	CreateClient(ctx context.Context, c *fosite.DefaultClient) error
	// DeleteClient removes the client, or returns ErrNotFound.
	DeleteClient(ctx context.Context, id string) error
}
