package handler

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v3/jwt"
	"github.com/ory/fosite"
)

// claims are the registered claims of RFC 7523 §3 plus the "scope" claim
// that golang.org/x/oauth2/jwt and Google-style clients send.
type claims struct {
	Issuer    string
	Subject   string
	Audience  []string
	Expiry    *time.Time
	NotBefore *time.Time
	IssuedAt  *time.Time
	ID        string
	Scope     *string
	// raw holds every claim as sent, in order, for a relationship's
	// required claims: see claim. Its values, and Audience's when they
	// needed no unescaping, are substrings of one copy of the claims set;
	// Issuer, Subject, ID and Scope, which outlive the request, are not
	// (see detach).
	raw []rawClaim
	// rawBuf, dates, aud and scope back raw, the NumericDates, a single
	// audience and Scope, so that a usual claims set needs no allocation
	// of its own: one is decoded on every token request.
	rawBuf [8]rawClaim
	dates  [3]time.Time
	aud    [1]string
	scope  string
}

// rawClaim is one claim as sent: its name and its JSON text.
type rawClaim struct {
	name, value string
}

// claim returns the JSON text of the claim name as sent; the last one when
// the name is repeated, as encoding/json reads.
func (c *claims) claim(name string) (string, bool) {
	for i := len(c.raw) - 1; i >= 0; i-- {
		if c.raw[i].name == name {
			return c.raw[i].value, true
		}
	}
	return "", false
}

// maxNumericDate is 9999-12-31T23:59:59Z. Larger NumericDates (and the
// int64 overflow they would cause) are refused rather than wrapped.
const maxNumericDate = 253402300799

var errClaimsNotObject = errors.New("the claims set is not a JSON object")

// decodeClaims decodes the JWT claims set strictly: claim names are
// case-sensitive (RFC 7519 §10.1; encoding/json alone would bind "ISS" or
// "Scope"), each registered claim must have its RFC 7519 JSON type, and
// NumericDates must be finite, non-negative numbers below the year 10000.
//
// It reads as encoding/json would (a repeated claim's last value counts),
// with fast paths for plain strings and numbers: payload is scanned once,
// and raw's values are slices of it.
func decodeClaims(payload []byte, c *claims) error {
	if !json.Valid(payload) {
		return errClaimsNotObject
	}
	c.raw = c.rawBuf[:0]
	isObject, err := jsonMembers(string(payload), stdUnquote, func(name, v string) error {
		c.raw = append(c.raw, rawClaim{name, v})
		return nil
	})
	if err != nil || !isObject {
		return errClaimsNotObject
	}
	str := func(name string, dst *string) error {
		v, ok := c.claim(name)
		if !ok || v == "null" {
			return nil
		}
		if s, ok := plainString(v); ok {
			*dst = s
			return nil
		}
		if err := json.Unmarshal([]byte(v), dst); err != nil {
			return fmt.Errorf("%q must be a string", name)
		}
		return nil
	}
	date := func(name string, dst **time.Time, t *time.Time) error {
		v, ok := c.claim(name)
		if !ok || v == "null" {
			return nil
		}
		f, err := numericDate(v)
		if err != nil || math.IsNaN(f) || f < 0 || f > maxNumericDate {
			return fmt.Errorf("%q must be a NumericDate (seconds since 1970, before year 10000)", name)
		}
		sec, frac := math.Modf(f)
		*t = time.Unix(int64(sec), int64(frac*1e9))
		*dst = t
		return nil
	}
	for _, err := range [...]error{
		str("iss", &c.Issuer),
		str("sub", &c.Subject),
		str("jti", &c.ID),
		date("exp", &c.Expiry, &c.dates[0]),
		date("nbf", &c.NotBefore, &c.dates[1]),
		date("iat", &c.IssuedAt, &c.dates[2]),
	} {
		if err != nil {
			return err
		}
	}
	if v, ok := c.claim("aud"); ok && v != "null" {
		if s, ok := plainString(v); ok {
			c.aud[0] = s
			c.Audience = c.aud[:1:1]
		} else {
			var aud jwt.Audience
			if err := json.Unmarshal([]byte(v), &aud); err != nil {
				return errors.New(`"aud" must be a string or an array of strings`)
			}
			c.Audience = aud
		}
	}
	if v, ok := c.claim("scope"); ok && v != "null" {
		var ok bool
		if c.scope, ok = plainString(v); !ok {
			if err := json.Unmarshal([]byte(v), &c.scope); err != nil {
				return errors.New(`"scope" must be a space-separated string`)
			}
		}
		c.Scope = &c.scope
	}
	detach(&c.Issuer, &c.Subject, &c.ID, &c.scope)
	return nil
}

// detach gives the claims that outlive the request one copy of their own.
// They go into the session, the replay cache and the token store, fosite's
// or a library user's, and as substrings of the claims set each would keep
// all of it (up to the 16 KiB size bound) alive for as long as it is
// kept. One allocation holds them all.
func detach(ss ...*string) {
	n := 0
	for _, s := range ss {
		n += len(*s)
	}
	var b strings.Builder
	b.Grow(n)
	for _, s := range ss {
		b.WriteString(*s)
	}
	all := b.String()
	for _, s := range ss {
		*s, all = all[:len(*s)], all[len(*s):]
	}
}

// numericDate reads a JSON number as encoding/json does for a float64.
func numericDate(v string) (float64, error) {
	if c := v[0]; c == '-' || ('0' <= c && c <= '9') {
		return strconv.ParseFloat(v, 64)
	}
	var f float64
	err := json.Unmarshal([]byte(v), &f)
	return f, err
}

// assertion is a parsed, not yet verified, JWT bearer assertion.
type assertion struct {
	alg    string
	kid    string
	claims claims
	// signingInput is the JWS Signing Input, the header and payload parts
	// as sent (canonical base64url) and the dot between them; signature is
	// the decoded JWS Signature. verifyWith checks one against the other.
	signingInput []byte
	signature    []byte
}

// parseAssertion parses raw once, strictly: compact JWS serialization only
// (go-jose v3 would also take the JSON serialization) in canonical
// base64url, bounded size, one signature, a protected header that go-jose
// v3.0.5 would accept (parseJWSHeader), no critical header extensions,
// bounded "kid", claims of the right JSON types with "iss" and "sub"
// present. Nothing it returns is trusted until verify succeeds.
func parseAssertion(raw string, maxSize int) (*assertion, error) {
	a, err := grantAssertion.parse(raw, maxSize)
	if err != nil {
		return nil, err
	}
	if a.claims.Issuer == "" {
		return nil, fosite.ErrInvalidGrant.WithHint("The assertion must contain an \"iss\" (issuer) claim.")
	}
	if a.claims.Subject == "" {
		return nil, fosite.ErrInvalidGrant.WithHint("The assertion must contain a \"sub\" (subject) claim.")
	}
	for _, claim := range [...]struct{ name, v string }{{"iss", a.claims.Issuer}, {"sub", a.claims.Subject}} {
		if len(claim.v) > maxNameLength {
			// Bounds the cost of matching subject patterns, and what the
			// logs and the key index ever hold.
			return nil, fosite.ErrInvalidGrant.WithHintf("The assertion's %q is longer than %d bytes.", claim.name, maxNameLength)
		}
	}
	return a, nil
}

// isCompactJWS reports whether s is three non-empty base64url parts
// (RFC 7515 §7.1, no padding, no white space) separated by two dots.
func isCompactJWS(s string) bool {
	parts, partLen := 1, 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '.':
			if partLen == 0 {
				return false
			}
			parts, partLen = parts+1, 0
		case base64URLChar[c]:
			partLen++
		default:
			return false
		}
	}
	return parts == 3 && partLen > 0
}

// base64URLChar tells the characters of the base64url alphabet (RFC 4648
// §5): A-Z, a-z, 0-9, '-' and '_'.
var base64URLChar = func() (t [256]bool) {
	for _, c := range []byte("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") {
		t[c] = true
	}
	return t
}()

// algFitsKey reports whether the JWS algorithm alg can be used with key, so
// that an RSA key can never verify an HMAC ("HS256 with the public key as the
// secret") and a P-256 key only verifies ES256.
func algFitsKey(alg string, key interface{}) bool {
	switch k := key.(type) {
	case *rsa.PublicKey:
		return strings.HasPrefix(alg, "RS") || strings.HasPrefix(alg, "PS")
	case *ecdsa.PublicKey:
		if k == nil {
			return false
		}
		switch k.Curve {
		case elliptic.P256():
			return alg == "ES256"
		case elliptic.P384():
			return alg == "ES384"
		case elliptic.P521():
			return alg == "ES512"
		}
	case ed25519.PublicKey:
		return alg == "EdDSA"
	case []byte:
		return alg == "HS256" || alg == "HS384" || alg == "HS512"
	}
	return false
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// claimEquals reports whether a claim's JSON value is want: a string equal
// to it, or a number or boolean written exactly as it (RFC 7523 §5 leaves
// such claims to the parties' agreement; comparing the JSON text keeps
// "12345" and 12345.0 apart instead of guessing). Objects, arrays and null
// never match.
func claimEquals(v string, want string) bool {
	if len(v) == 0 {
		return false
	}
	switch c := v[0]; {
	case c == '"':
		var s string
		return json.Unmarshal([]byte(v), &s) == nil && s == want
	case c == 't' || c == 'f' || c == '-' || (c >= '0' && c <= '9'):
		return v == want
	}
	return false
}
