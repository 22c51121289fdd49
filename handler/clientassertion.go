package handler

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v3"
	"github.com/ory/fosite"

	"github.com/jwtbearer/jwtbearer/store"
)

// ClientAssertionType is the client_assertion_type value of RFC 7523 §2.2:
// the client authenticates with a JWT it signed (private_key_jwt).
const ClientAssertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

// ClientKeySource supplies the public keys registered for OAuth 2.0
// clients that authenticate with private_key_jwt. Implementations must be
// safe for concurrent use.
type ClientKeySource interface {
	// ClientKeys returns the public keys of the client clientID whose
	// KeyID is kid, or all of them when kid is empty. A known client
	// without a key of that kid is an empty result and a nil error. An
	// error wraps store.ErrNotFound when the client is unknown or has no
	// keys, and store.ErrUnavailable when its keys cannot be had right now
	// (a jwks_uri that cannot be fetched). The result must not be
	// modified.
	ClientKeys(ctx context.Context, clientID, kid string) ([]jose.JSONWebKey, error)
}

// ClientAssertionVerifier authenticates clients by a JWT they signed with
// their private key (RFC 7523 §2.2 and §3, RFC 7521 §4.2): the
// private_key_jwt method of OpenID Connect Core §9. Its zero value, with
// Audiences, Keys and Replay set, applies the grant's default policy. It is
// safe for concurrent use once its fields are set.
//
// Client assertions and grant assertions are kept apart (RFC 8725 §3.12):
// the keys come from the client registry, never from trust relationships,
// and the grant refuses a JWT typed "client-authentication+jwt". Their
// jtis are claimed as the grant's are, under the "iss" (here the
// client_id): a client's jtis are its own, and one JWT cannot be redeemed
// once as a client assertion and once more as a grant assertion of a
// trust relationship whose issuer is that client with the same key.
type ClientAssertionVerifier struct {
	// Audiences are the accepted "aud" values: this server's issuer
	// identifier and its token endpoint URL (draft-ietf-oauth-rfc7523bis
	// has client assertions name the issuer identifier). Every "aud"
	// value must be listed, compared as plain strings (RFC 7521 §5.2): an
	// assertion also made out to another party is refused, so that one
	// that party received cannot be replayed here. Empty refuses every
	// assertion.
	Audiences []string
	// Algorithms is the JWS "alg" allow-list. Empty means
	// DefaultAlgorithms. Only asymmetric algorithms are ever accepted: HS*
	// and "none" are ignored when listed, since a client's registered
	// public key must never serve as a shared secret.
	Algorithms []string
	// Keys supplies the clients' public keys.
	Keys ClientKeySource
	// Replay redeems each client assertion's jti once, under its issuer,
	// the client_id.
	Replay store.ReplayGuard
	// Limiter, when set, is asked (LimitClient, client_id) once the
	// assertion is verified and before its jti is claimed, so that an
	// assertion refused for the rate is not used up.
	Limiter Limiter
	// ClockSkew is the leeway applied to "exp", "nbf" and "iat". Zero
	// means DefaultClockSkew; a negative value means none.
	ClockSkew time.Duration
	// MaxLifetime bounds both exp − now and exp − iat (plus the clock
	// skew). Zero means DefaultMaxAssertionLifetime.
	MaxLifetime time.Duration
	// MaxSize caps the client assertion's length in bytes before any
	// parsing. Zero means DefaultMaxAssertionSize.
	MaxSize int
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// HasClientAssertion reports whether form carries a client_assertion or a
// client_assertion_type parameter, even an empty one: the client means to
// authenticate with an assertion, and Authenticate must decide.
func HasClientAssertion(form url.Values) bool {
	_, assertion := form["client_assertion"]
	_, typ := form["client_assertion_type"]
	return assertion || typ
}

// clientUntrustedHint is the one hint for every failure to find the key
// that signed a client assertion, so that which clients exist and which
// keys they hold is not revealed. The reason goes to the debug field.
const clientUntrustedHint = "The client assertion is not signed by a key registered for its client, with an algorithm this server accepts for that key."

// Authenticate authenticates the client of a token request by its
// client_assertion (RFC 7523 §2.2 and §3, RFC 7521 §4.2) and returns its
// client_id. form holds the request's parameters. The assertion must be
// the only client credential of the form (RFC 6749 §2.3): the caller must
// itself refuse an Authorization header sent with it.
//
// Every refusal is fosite.ErrInvalidClient (RFC 7521 §4.2.1, RFC 6749
// §5.2) with a hint that says what is wrong without quoting the assertion,
// except when the client's keys or the replay guard cannot be reached:
// then the error is fosite.ErrTemporarilyUnavailable and wraps
// store.ErrUnavailable (another store failure is fosite.ErrServerError).
// The jti is claimed last, after every other check, so that a refused
// assertion consumes nothing; a replay is refused as already used.
//
// Authenticate does not look the client up in the client registry: the
// caller does, and checks that the client may use private_key_jwt.
func (v *ClientAssertionVerifier) Authenticate(ctx context.Context, form url.Values) (clientID string, err error) {
	if v.Keys == nil || v.Replay == nil {
		return "", fosite.ErrServerError.WithDebug("The client assertion verifier needs a key source and a replay guard.")
	}
	for _, name := range []string{"client_assertion_type", "client_assertion", "client_id"} {
		if len(form[name]) > 1 {
			return "", fosite.ErrInvalidClient.WithHintf("The %q parameter must not be included more than once (RFC 6749 §3.2).", name)
		}
	}
	if _, ok := form["client_secret"]; ok {
		return "", fosite.ErrInvalidClient.WithHint("A client must not use more than one authentication method: send client_assertion or client_secret, not both (RFC 6749 §2.3).")
	}
	switch typ := form["client_assertion_type"]; {
	case len(typ) == 0:
		return "", fosite.ErrInvalidClient.WithHintf("The \"client_assertion_type\" parameter is required with a client assertion and must be %q.", ClientAssertionType)
	case typ[0] != ClientAssertionType:
		return "", fosite.ErrInvalidClient.WithHintf("The \"client_assertion_type\" must be %q (RFC 7523 §2.2).", ClientAssertionType)
	}
	raw := form.Get("client_assertion")
	if raw == "" {
		return "", fosite.ErrInvalidClient.WithHint("The \"client_assertion\" parameter is required with this client_assertion_type and must hold one JWT.")
	}

	a, err := v.parse(raw)
	if err != nil {
		return "", err
	}
	c := &a.claims
	clientID = c.Issuer
	if ids, ok := form["client_id"]; ok && (len(ids) == 0 || ids[0] != clientID) {
		// RFC 7521 §4.2: a client_id sent with the assertion must
		// identify the same client.
		return "", fosite.ErrInvalidClient.WithHint("The \"client_id\" parameter does not match the client assertion's \"iss\" and \"sub\".")
	}
	if !v.algAllowed(a.alg) {
		return "", fosite.ErrInvalidClient.WithHintf("The client assertion's signing algorithm is not accepted; use one of %s.", strings.Join(v.algorithms(), ", "))
	}
	if err := v.verify(ctx, a); err != nil {
		return "", err
	}
	now := v.now()
	if err := v.checkClaims(a, now); err != nil {
		return "", err
	}

	// Remember the jti while the assertion can pass the "exp" check, and
	// at least replayMargin from now, as the grant does: a copy that
	// passed that check just before it ended, and reached the store late,
	// must still find the first claim there.
	until := c.Expiry.Add(v.clockSkew())
	if floor := now.Add(replayMargin); until.Before(floor) {
		until = floor
	}
	if v.Limiter != nil {
		if ok, retry := v.Limiter.Allow(ctx, LimitClient, clientID); !ok {
			return "", RateLimited(LimitClient, retry)
		}
	}
	fresh, err := v.Replay.ClaimJTI(ctx, clientID, c.ID, until)
	if err != nil {
		return "", storeError(err)
	}
	if !fresh {
		return "", fosite.ErrInvalidClient.WithHint("The client assertion has already been used: its \"jti\" was presented before. Sign a new assertion, with a new jti, for every request.").WithWrap(ErrReplayed)
	}
	return clientID, nil
}

// parse reads the client assertion with the grant's strict compact-JWS
// parser and claims decoder, applying the same header rules as
// parseAssertion (which answers invalid_grant and refuses the
// "client-authentication+jwt" type that client assertions may carry),
// and the "iss" = "sub" rule of RFC 7523 §3 (2B).
func (v *ClientAssertionVerifier) parse(raw string) (*assertion, error) {
	maxSize := v.MaxSize
	if maxSize <= 0 {
		maxSize = DefaultMaxAssertionSize
	}
	a, err := clientAssertion.parse(raw, maxSize)
	if err != nil {
		return nil, err
	}
	c := &a.claims
	switch {
	case c.Issuer == "":
		return nil, fosite.ErrInvalidClient.WithHint("The client assertion must contain an \"iss\" (issuer) claim: the client_id.")
	case c.Subject == "":
		return nil, fosite.ErrInvalidClient.WithHint("The client assertion must contain a \"sub\" (subject) claim: the client_id.")
	case c.Issuer != c.Subject:
		return nil, fosite.ErrInvalidClient.WithHint("The client assertion's \"iss\" and \"sub\" must both be the client_id (RFC 7523 §3).")
	case len(c.Issuer) > maxNameLength:
		return nil, fosite.ErrInvalidClient.WithHintf("The client assertion's \"iss\" is longer than %d bytes.", maxNameLength)
	}
	return a, nil
}

// verify finds the client's key that signed a. Keys come only from Keys,
// never from the assertion's headers (RFC 8725 §3.10); the header's "alg"
// must fit the key's type and, when the key names one, equal its "alg"
// (RFC 8725 §3.1).
func (v *ClientAssertionVerifier) verify(ctx context.Context, a *assertion) error {
	clientID := a.claims.Issuer
	keys, err := v.Keys.ClientKeys(ctx, clientID, a.kid)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return fosite.ErrInvalidClient.WithHint(clientUntrustedHint).
			WithDebugf("No keys are registered for client %q.", truncate(clientID))
	case errors.Is(err, store.ErrUnavailable):
		return fosite.ErrTemporarilyUnavailable.WithHint("The client's keys cannot be fetched right now; try again later.").
			WithWrap(err).WithDebug(err.Error())
	case err != nil:
		return storeError(err)
	}
	var algRefused bool
	for i := range keys {
		k := &keys[i]
		if a.kid != "" && k.KeyID != a.kid {
			// The source answered for another kid: never trust that.
			continue
		}
		if k.Use != "" && k.Use != "sig" {
			continue
		}
		switch verified, fits := verifyWith(a, k); {
		case verified:
			return nil
		case !fits:
			algRefused = true
		}
	}
	var reason string
	switch {
	case len(keys) == 0 && a.kid != "":
		reason = fmt.Sprintf("client %q has no key with kid %q", truncate(clientID), truncate(a.kid))
	case len(keys) == 0:
		reason = fmt.Sprintf("client %q has no usable key", truncate(clientID))
	case algRefused:
		reason = fmt.Sprintf("algorithm %q does not fit the keys of client %q", truncate(a.alg), truncate(clientID))
	default:
		reason = fmt.Sprintf("the signature does not verify with any key of client %q", truncate(clientID))
	}
	return fosite.ErrInvalidClient.WithHint(clientUntrustedHint).WithDebug(reason)
}

// checkClaims applies RFC 7523 §3 to the verified claims.
func (v *ClientAssertionVerifier) checkClaims(a *assertion, now time.Time) error {
	c := &a.claims
	if len(c.Audience) == 0 {
		return fosite.ErrInvalidClient.WithHint("The client assertion must contain an \"aud\" (audience) claim.")
	}
	if len(v.Audiences) == 0 {
		return fosite.ErrInvalidClient.WithHint("This server accepts no client assertions: no audience is configured for them.")
	}
	if !v.audienceAccepted(c.Audience) {
		return fosite.ErrInvalidClient.WithHintf("The client assertion's \"aud\" claim must be this server's issuer identifier or token endpoint URL, and nothing else: %s.", strings.Join(v.Audiences, ", "))
	}
	if err := clientAssertion.checkTimes(c, now, v.clockSkew(), v.maxLifetime()); err != nil {
		return err
	}
	if c.ID == "" {
		return fosite.ErrInvalidClient.WithHint("The client assertion must contain a \"jti\" (JWT ID) claim: this server accepts every client assertion once (RFC 7523 §3).")
	}
	if len(c.ID) > maxIDLength {
		return fosite.ErrInvalidClient.WithHintf("The client assertion's \"jti\" is longer than %d bytes.", maxIDLength)
	}
	return nil
}

// audienceAccepted reports whether aud has values and every one is in
// v.Audiences, compared as plain strings (RFC 7521 §5.2). Empty values
// never match.
func (v *ClientAssertionVerifier) audienceAccepted(aud []string) bool {
	for _, s := range aud {
		if s == "" || !contains(v.Audiences, s) {
			return false
		}
	}
	return len(aud) > 0
}

// algorithms is the effective allow-list: Algorithms (or
// DefaultAlgorithms) without HS*, "none" and unknown values.
func (v *ClientAssertionVerifier) algorithms() []string {
	list := v.Algorithms
	if len(list) == 0 {
		list = DefaultAlgorithms
	}
	out := make([]string, 0, len(list))
	for _, alg := range list {
		if isAsymmetricAlg(alg) && !contains(out, alg) {
			out = append(out, alg)
		}
	}
	return out
}

func (v *ClientAssertionVerifier) algAllowed(alg string) bool {
	if !isAsymmetricAlg(alg) {
		return false
	}
	if len(v.Algorithms) == 0 {
		return contains(DefaultAlgorithms, alg)
	}
	return contains(v.Algorithms, alg)
}

// isAsymmetricAlg reports whether alg is a known JWS algorithm other than
// HMAC: a signature only the holder of a private key can make.
func isAsymmetricAlg(alg string) bool {
	return contains(knownAlgorithms, alg) && !strings.HasPrefix(alg, "HS")
}

func (v *ClientAssertionVerifier) clockSkew() time.Duration { return effectiveClockSkew(v.ClockSkew) }

func (v *ClientAssertionVerifier) maxLifetime() time.Duration {
	return effectiveMaxLifetime(v.MaxLifetime)
}

func (v *ClientAssertionVerifier) now() time.Time {
	if v.Now == nil {
		return time.Now()
	}
	return v.Now()
}
