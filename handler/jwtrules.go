package handler

import (
	"strings"
	"time"

	"github.com/ory/fosite"
)

// jwtKind words the rules that grant assertions (RFC 7523 §2.1) and client
// assertions (§2.2) share, so that both are held to one implementation of
// them: each kind answers with its own error and names itself in the hints.
type jwtKind struct {
	// err is the error every refusal answers with.
	err *fosite.RFC6749Error
	// noun names the JWT in hints: "assertion", "client assertion".
	noun string
	// purpose is what it is for, in the hint refusing another kind.
	purpose string
	// refusedTypes are "typ" values of other kinds of JWT (RFC 8725
	// §3.11), compared in lower case.
	refusedTypes []string
}

var (
	grantAssertion = jwtKind{
		err: fosite.ErrInvalidGrant, noun: "assertion", purpose: "an authorization grant",
		refusedTypes: []string{"at+jwt", "application/at+jwt", "client-authentication+jwt", "application/client-authentication+jwt", "logout+jwt", "secevent+jwt"},
	}
	// A client assertion may be typed "client-authentication+jwt".
	clientAssertion = jwtKind{
		err: fosite.ErrInvalidClient, noun: "client assertion", purpose: "a client assertion",
		refusedTypes: []string{"at+jwt", "application/at+jwt", "logout+jwt", "application/logout+jwt", "secevent+jwt", "application/secevent+jwt"},
	}
)

// parse reads raw with the strict compact-JWS parser and applies the
// header rules: at most maxSize bytes, no critical extensions (RFC 7515
// §4.1.11: we implement none, b64 included, RFC 7797), an "alg", a
// bounded "kid", a "typ" that is not another kind of JWT. It decodes the
// claims but checks none of them.
func (k jwtKind) parse(raw string, maxSize int) (*assertion, error) {
	if len(raw) > maxSize {
		return nil, k.err.WithHintf("The %s is larger than the %d bytes this server accepts.", k.noun, maxSize)
	}
	if !isCompactJWS(raw) {
		return nil, k.err.WithHintf("The %s must be a signed JWT in JWS compact serialization: three base64url parts separated by two dots.", k.noun)
	}
	jws, err := parseCompactJWS(raw)
	if err != nil {
		return nil, k.err.WithHintf("The %s could not be parsed as a signed JWT.", k.noun).WithWrap(err).WithDebug(err.Error())
	}
	// The compact serialization carries exactly one signature and no
	// unprotected header.
	h := jws.header
	switch {
	case h.crit:
		return nil, k.err.WithHintf("The %s's header lists critical extensions (\"crit\") that this server does not support.", k.noun)
	case h.b64:
		return nil, k.err.WithHintf("The %s's header must not use the \"b64\" parameter.", k.noun)
	case h.alg == "":
		return nil, k.err.WithHintf("The %s's header has no \"alg\".", k.noun)
	case len(h.kid) > maxIDLength:
		return nil, k.err.WithHintf("The %s's \"kid\" is longer than %d bytes.", k.noun, maxIDLength)
	case contains(k.refusedTypes, strings.ToLower(h.typ)):
		return nil, k.err.WithHintf("The %s's \"typ\" %q is another kind of JWT, not %s.", k.noun, truncate(h.typ), k.purpose)
	}
	a := &assertion{alg: h.alg, kid: h.kid, signingInput: jws.signingInput, signature: jws.signature}
	if err := decodeClaims(jws.payload, &a.claims); err != nil {
		return nil, k.err.WithHintf("The %s's claims are invalid: %s.", k.noun, err.Error()).WithWrap(err)
	}
	return a, nil
}

// checkTimes applies RFC 7523 §3's time rules: an "exp" (item 4) not passed,
// "nbf" and "iat" (items 5 and 6) not in the future, each with the clock
// skew; and a lifetime, from now and from "iat", of at most limit (plus the
// skew), so that a leaked JWT is useful only briefly.
func (k jwtKind) checkTimes(c *claims, now time.Time, skew, limit time.Duration) error {
	if c.Expiry == nil {
		return k.err.WithHintf("The %s must contain an \"exp\" (expiration time) claim.", k.noun)
	}
	exp := *c.Expiry
	if now.After(exp.Add(skew)) {
		return k.err.WithHintf("The %s has expired.", k.noun)
	}
	if c.NotBefore != nil && now.Add(skew).Before(*c.NotBefore) {
		return k.err.WithHintf("The %s is not valid yet: its \"nbf\" (not before) is in the future.", k.noun)
	}
	if c.IssuedAt != nil && now.Add(skew).Before(*c.IssuedAt) {
		return k.err.WithHintf("The %s's \"iat\" (issued at) is in the future.", k.noun)
	}
	maxLife := limit + skew
	if exp.Sub(now) > maxLife {
		return k.err.WithHintf("The %s's \"exp\" is too far in the future: this server accepts %ss valid for at most %s.", k.noun, k.noun, limit)
	}
	if c.IssuedAt != nil && exp.Sub(*c.IssuedAt) > maxLife {
		return k.err.WithHintf("The %s's lifetime from \"iat\" to \"exp\" exceeds the %s this server accepts.", k.noun, limit)
	}
	return nil
}
