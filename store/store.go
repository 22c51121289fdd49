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

// Trust is one trust relationship: assertions issued by Issuer about Subject
// (or about any subject when AnySubject is set), signed by one of Keys, may
// obtain at most Scopes, until ExpiresAt. It holds the items of RFC 7523 §5
// that issuer and authorization server agree on out of band.
//
// A Trust handed out by a store is shared and must be treated as read-only.
type Trust struct {
	// ID names the relationship. Stores assign one when it is empty.
	ID string `json:"id"`
	// Issuer is compared with the assertion's "iss" byte for byte
	// (RFC 7521 §5.2, no normalisation).
	Issuer string `json:"issuer"`
	// Subject is the only "sub" accepted, unless AnySubject is set.
	Subject string `json:"subject,omitempty"`
	// AnySubject accepts every "sub" from Issuer. Subject must then be empty.
	AnySubject bool `json:"any_subject,omitempty"`
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
	// ExpiresAt, when not zero, is the instant after which the relationship
	// grants nothing.
	ExpiresAt time.Time `json:"expires_at,omitempty"`
	// Keys are the issuer's public keys (or, only when listed in Algorithms
	// with an HS* algorithm, shared symmetric keys). Every key has a KeyID:
	// its own "kid", or its RFC 7638 SHA-256 thumbprint when it had none.
	Keys []jose.JSONWebKey `json:"keys"`
}

// Expired reports whether the relationship has expired at now.
func (t *Trust) Expired(now time.Time) bool {
	return !t.ExpiresAt.IsZero() && now.After(t.ExpiresAt)
}

// TrustedKey is a key that may verify an assertion, with the relationship
// that trusts it.
type TrustedKey struct {
	Key   *jose.JSONWebKey
	Trust *Trust
}

// KeyResolver finds the keys trusted for an assertion.
type KeyResolver interface {
	// TrustedKeys returns the keys trusted for assertions whose "iss" is
	// issuer and whose "sub" is subject: those of relationships naming that
	// exact subject and those accepting any subject. When kid is not empty,
	// only keys whose KeyID equals kid are returned. No match is an empty
	// result and a nil error. Lookup cost must not grow with the number of
	// relationships stored. The result is shared: callers must not modify it.
	// Expired relationships may be returned; callers check Trust.Expired.
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
