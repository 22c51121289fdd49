package handler

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"math"
	"math/big"
	"regexp"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v3"
	"github.com/go-jose/go-jose/v3/jwt"
	"github.com/ory/fosite"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/jwtbearer/jwtbearer/handler/handlertest"
)

// The tests in this file compare the handler's own JWS parse and signature
// verification (parseAssertion, verifyWith) with what the handler did with
// go-jose v3.0.5 before (legacyParseAssertion, legacyVerifyWith below, the
// former code verbatim) and with go-jose's plain ParseSigned and Verify.
//
// The only assertions the new code refuses and the former code accepted,
// by design:
//
//   - a part that is not canonical base64url: the unused low bits of its
//     last character are not zero (go-jose decoded leniently and verified
//     the canonical re-encoding, so the token verified as its canonical
//     twin);
//   - a header nested deeper than encoding/json's 10000 levels (go-jose's
//     JSON package, a fork of Go 1.6's, has no such limit);
//   - an HS* key that is the empty secret.
//
// Plain go-jose also accepts what the handler always refused (isCompactJWS,
// "crit", "b64", refused "typ" values, claims rules): the JSON
// serialization, padding, white space, critical headers and so on.

// legacyAssertion is what the former parseAssertion returned.
type legacyAssertion struct {
	jws    *jose.JSONWebSignature
	alg    string
	kid    string
	claims claims
}

// legacyParseAssertion is parseAssertion as it was with go-jose.
func legacyParseAssertion(raw string, maxSize int) (*legacyAssertion, error) {
	if len(raw) > maxSize {
		return nil, fosite.ErrInvalidGrant.WithHintf("The assertion is larger than the %d bytes this server accepts.", maxSize)
	}
	if !isCompactJWS(raw) {
		return nil, fosite.ErrInvalidGrant.WithHint("The assertion must be a signed JWT in JWS compact serialization: three base64url parts separated by two dots.")
	}
	jws, err := jose.ParseSigned(raw)
	if err != nil {
		return nil, fosite.ErrInvalidGrant.WithHint("The assertion could not be parsed as a signed JWT.").WithWrap(err).WithDebug(err.Error())
	}
	if len(jws.Signatures) != 1 {
		return nil, fosite.ErrInvalidGrant.WithHint("The assertion must carry exactly one signature.")
	}
	h := jws.Signatures[0].Protected
	if _, ok := h.ExtraHeaders["crit"]; ok {
		return nil, fosite.ErrInvalidGrant.WithHint("The assertion's header lists critical extensions (\"crit\") that this server does not support.")
	}
	if _, ok := h.ExtraHeaders["b64"]; ok {
		return nil, fosite.ErrInvalidGrant.WithHint("The assertion's header must not use the \"b64\" parameter.")
	}
	if h.Algorithm == "" {
		return nil, fosite.ErrInvalidGrant.WithHint("The assertion's header has no \"alg\".")
	}
	if len(h.KeyID) > maxIDLength {
		return nil, fosite.ErrInvalidGrant.WithHintf("The assertion's \"kid\" is longer than %d bytes.", maxIDLength)
	}
	a := &legacyAssertion{jws: jws, alg: h.Algorithm, kid: h.KeyID}
	if typ, ok := h.ExtraHeaders[jose.HeaderType].(string); ok && contains(grantAssertion.refusedTypes, strings.ToLower(typ)) {
		return nil, fosite.ErrInvalidGrant.WithHintf("The assertion's \"typ\" %q is another kind of JWT, not an authorization grant.", truncate(typ))
	}
	if err := legacyDecodeClaims(jws.UnsafePayloadWithoutVerification(), &a.claims); err != nil {
		return nil, fosite.ErrInvalidGrant.WithHintf("The assertion's claims are invalid: %s.", err.Error()).WithWrap(err)
	}
	if a.claims.Issuer == "" {
		return nil, fosite.ErrInvalidGrant.WithHint("The assertion must contain an \"iss\" (issuer) claim.")
	}
	if a.claims.Subject == "" {
		return nil, fosite.ErrInvalidGrant.WithHint("The assertion must contain a \"sub\" (subject) claim.")
	}
	// In a fixed order, as parseAssertion checks them: with a map here, an
	// assertion whose iss and sub were both too long got either hint at
	// random, and the differential fuzz target failed now and then
	// without a reproducer.
	for _, c := range [...]struct{ name, v string }{{"iss", a.claims.Issuer}, {"sub", a.claims.Subject}} {
		if len(c.v) > maxNameLength {
			return nil, fosite.ErrInvalidGrant.WithHintf("The assertion's %q is longer than %d bytes.", c.name, maxNameLength)
		}
	}
	return a, nil
}

// legacyDecodeClaims is decodeClaims as it was.
func legacyDecodeClaims(payload []byte, c *claims) error {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(payload, &raw); err != nil || raw == nil {
		return errors.New("the claims set is not a JSON object")
	}
	for name, v := range raw {
		c.raw = append(c.raw, rawClaim{name, string(v)})
	}
	str := func(name string, dst *string) error {
		v, ok := raw[name]
		if !ok || string(v) == "null" {
			return nil
		}
		if err := json.Unmarshal(v, dst); err != nil {
			return fmt.Errorf("%q must be a string", name)
		}
		return nil
	}
	date := func(name string, dst **time.Time) error {
		v, ok := raw[name]
		if !ok || string(v) == "null" {
			return nil
		}
		var f float64
		if err := json.Unmarshal(v, &f); err != nil || math.IsNaN(f) || f < 0 || f > maxNumericDate {
			return fmt.Errorf("%q must be a NumericDate (seconds since 1970, before year 10000)", name)
		}
		sec, frac := math.Modf(f)
		t := time.Unix(int64(sec), int64(frac*1e9))
		*dst = &t
		return nil
	}
	for _, err := range []error{
		str("iss", &c.Issuer),
		str("sub", &c.Subject),
		str("jti", &c.ID),
		date("exp", &c.Expiry),
		date("nbf", &c.NotBefore),
		date("iat", &c.IssuedAt),
	} {
		if err != nil {
			return err
		}
	}
	if v, ok := raw["aud"]; ok && string(v) != "null" {
		var aud jwt.Audience
		if err := json.Unmarshal(v, &aud); err != nil {
			return errors.New(`"aud" must be a string or an array of strings`)
		}
		c.Audience = aud
	}
	if v, ok := raw["scope"]; ok && string(v) != "null" {
		var scope string
		if err := json.Unmarshal(v, &scope); err != nil {
			return errors.New(`"scope" must be a space-separated string`)
		}
		c.Scope = &scope
	}
	return nil
}

// legacyVerifyWith is verifyWith as it was.
func legacyVerifyWith(a *legacyAssertion, k *jose.JSONWebKey) (verified, fits bool) {
	if (k.Algorithm != "" && k.Algorithm != a.alg) || !algFitsKey(a.alg, k.Key) {
		return false, false
	}
	return a.jws.DetachedVerify(a.jws.UnsafePayloadWithoutVerification(), k) == nil, true
}

// outcome is what the handler learns from an assertion and a key.
type outcome struct {
	hint           string // the parse error's hint; "" when it parsed
	alg, kid       string
	claims         claims
	verified, fits bool
}

func (o outcome) String() string {
	if o.hint != "" {
		return "refused: " + o.hint
	}
	return fmt.Sprintf("alg=%q kid=%q fits=%v verified=%v", o.alg, o.kid, o.fits, o.verified)
}

func hintOf(err error) string {
	if h := fosite.ErrorToRFC6749Error(err).HintField; h != "" {
		return h
	}
	return err.Error()
}

func newOutcome(raw string, k *jose.JSONWebKey) outcome {
	a, err := parseAssertion(raw, DefaultMaxAssertionSize)
	if err != nil {
		return outcome{hint: hintOf(err)}
	}
	o := outcome{alg: a.alg, kid: a.kid, claims: a.claims}
	if k != nil {
		o.verified, o.fits = verifyWith(a, k)
	}
	return o
}

func legacyOutcome(raw string, k *jose.JSONWebKey) outcome {
	a, err := legacyParseAssertion(raw, DefaultMaxAssertionSize)
	if err != nil {
		return outcome{hint: hintOf(err)}
	}
	o := outcome{alg: a.alg, kid: a.kid, claims: a.claims}
	if k != nil {
		o.verified, o.fits = legacyVerifyWith(a, k)
	}
	return o
}

// joseVerifies is go-jose's plain ParseSigned and Verify, without the
// handler's rules.
func joseVerifies(raw string, k *jose.JSONWebKey) bool {
	obj, err := jose.ParseSigned(raw)
	if err != nil {
		return false
	}
	_, err = obj.Verify(k)
	return err == nil
}

// sameClaims reports how two decoded claims sets differ, or "".
func sameClaims(a, b claims) string {
	timeEq := func(x, y *time.Time) bool {
		return (x == nil) == (y == nil) && (x == nil || x.Equal(*y))
	}
	switch {
	case a.Issuer != b.Issuer, a.Subject != b.Subject, a.ID != b.ID:
		return "iss, sub or jti"
	case (len(a.Audience) != 0 || len(b.Audience) != 0) && !assert.ObjectsAreEqual(a.Audience, b.Audience):
		return "aud"
	case (a.Audience == nil) != (b.Audience == nil):
		return "aud presence"
	case !timeEq(a.Expiry, b.Expiry), !timeEq(a.NotBefore, b.NotBefore), !timeEq(a.IssuedAt, b.IssuedAt):
		return "exp, nbf or iat"
	case (a.Scope == nil) != (b.Scope == nil), a.Scope != nil && *a.Scope != *b.Scope:
		return "scope"
	}
	// Each claim's value is its last one's, as encoding/json reads.
	ra, rb := rawClaims(&a), rawClaims(&b)
	if len(ra) != len(rb) {
		return "raw claims"
	}
	for name, v := range ra {
		if w, ok := rb[name]; !ok || !bytes.Equal(v, w) {
			return fmt.Sprintf("raw claim %q", name)
		}
	}
	return ""
}

// rawClaims is c.raw by name, as c.claim reads it.
func rawClaims(c *claims) map[string]json.RawMessage {
	m := make(map[string]json.RawMessage)
	for _, rc := range c.raw {
		v, _ := c.claim(rc.name)
		m[rc.name] = json.RawMessage(v)
	}
	return m
}

// stricterReason names the deliberate tightening that makes the new code
// refuse raw, or "".
func stricterReason(raw string) string {
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		return ""
	}
	for _, p := range parts {
		d, err := base64.RawURLEncoding.DecodeString(p)
		if err == nil && base64.RawURLEncoding.EncodeToString(d) != p {
			return "non-canonical base64url"
		}
	}
	if h, err := base64.RawURLEncoding.DecodeString(parts[0]); err == nil && !json.Valid(h) && jsonDepth(h) > 10000 {
		return "header nested deeper than 10000"
	}
	return ""
}

// jsonDepth is the deepest nesting of arrays and objects in data.
func jsonDepth(data []byte) int {
	depth, deepest, inString := 0, 0, false
	for i := 0; i < len(data); i++ {
		c := data[i]
		switch {
		case inString && c == '\\':
			i++
		case c == '"':
			inString = !inString
		case inString:
		case c == '{' || c == '[':
			depth++
			deepest = max(deepest, depth)
		case c == '}' || c == ']':
			depth--
		}
	}
	return deepest
}

// compactJWSPattern is what isCompactJWS accepts.
var compactJWSPattern = regexp.MustCompile(`^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$`)

// compareWithLegacy checks the new code against the former one on raw and
// k: same parse result (hint, alg, kid, claims), same verification, except
// where stricterReason allows the new code to refuse. It returns both.
func compareWithLegacy(t testing.TB, raw string, k *jose.JSONWebKey) (ours, legacy outcome) {
	t.Helper()
	if isCompactJWS(raw) != compactJWSPattern.MatchString(raw) {
		// The former and the new parse share isCompactJWS: check it alone.
		t.Fatalf("isCompactJWS(%q) = %v", raw, isCompactJWS(raw))
	}
	ours, legacy = newOutcome(raw, k), legacyOutcome(raw, k)
	if ours.verified && !legacy.verified {
		t.Fatalf("verified by the new code only: %q\nnew: %v\nlegacy: %v", raw, ours, legacy)
	}
	if ours.verified && !joseVerifies(raw, k) {
		t.Fatalf("verified by the new code, not by go-jose: %q", raw)
	}
	if ours.hint != legacy.hint || ours.verified != legacy.verified {
		if ours.hint == "The assertion could not be parsed as a signed JWT." && stricterReason(raw) != "" {
			return ours, legacy
		}
		t.Fatalf("outcomes differ for %q\nnew:    %v\nlegacy: %v", raw, ours, legacy)
	}
	if ours.hint != "" {
		return ours, legacy
	}
	if ours.alg != legacy.alg || ours.kid != legacy.kid || ours.fits != legacy.fits {
		t.Fatalf("header read differently for %q\nnew:    %v\nlegacy: %v", raw, ours, legacy)
	}
	if d := sameClaims(ours.claims, legacy.claims); d != "" {
		t.Fatalf("claims read differently for %q: %s", raw, d)
	}
	return ours, legacy
}

// testKey is a signing key of one JWS algorithm.
type testKey struct {
	alg     string
	private interface{} // crypto.Signer, or []byte for HS*
	public  jose.JSONWebKey
	// pss are the PSS options to sign with (nil: a salt as long as the
	// hash, as RFC 7518 §3.5 and go-jose have it).
	pss *rsa.PSSOptions
}

func newTestKeys(t testing.TB, rsaBits int) []*testKey {
	t.Helper()
	rsaKey, err := rsa.GenerateKey(rand.Reader, rsaBits)
	require.NoError(t, err)
	var keys []*testKey
	for _, alg := range []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"} {
		keys = append(keys, &testKey{alg: alg, private: rsaKey, public: jose.JSONWebKey{Key: &rsaKey.PublicKey}})
	}
	for alg, curve := range map[string]elliptic.Curve{"ES256": elliptic.P256(), "ES384": elliptic.P384(), "ES512": elliptic.P521()} {
		k, err := ecdsa.GenerateKey(curve, rand.Reader)
		require.NoError(t, err)
		keys = append(keys, &testKey{alg: alg, private: k, public: jose.JSONWebKey{Key: &k.PublicKey}})
	}
	_, ed, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	keys = append(keys, &testKey{alg: "EdDSA", private: ed, public: jose.JSONWebKey{Key: ed.Public()}})
	for alg, n := range map[string]int{"HS256": 32, "HS384": 48, "HS512": 64} {
		secret := make([]byte, n)
		_, _ = rand.Read(secret)
		keys = append(keys, &testKey{alg: alg, private: secret, public: jose.JSONWebKey{Key: secret}})
	}
	// Map iteration: sort for stable fuzz selectors.
	for i := range keys {
		for j := i + 1; j < len(keys); j++ {
			if keys[j].alg < keys[i].alg {
				keys[i], keys[j] = keys[j], keys[i]
			}
		}
	}
	return keys
}

func hashFor(alg string) (crypto.Hash, func() hash.Hash) {
	switch alg[len(alg)-3:] {
	case "384":
		return crypto.SHA384, sha512.New384
	case "512":
		return crypto.SHA512, sha512.New
	}
	return crypto.SHA256, sha256.New
}

// sign signs input with k, independently of go-jose and of the code under
// test, whatever the header says.
func (k *testKey) sign(t testing.TB, input []byte) []byte {
	t.Helper()
	if k.alg == "EdDSA" {
		return ed25519.Sign(k.private.(ed25519.PrivateKey), input)
	}
	h, newHash := hashFor(k.alg)
	if k.alg[0] == 'H' {
		mac := hmac.New(newHash, k.private.([]byte))
		mac.Write(input)
		return mac.Sum(nil)
	}
	d := newHash()
	d.Write(input)
	digest := d.Sum(nil)
	switch k.alg[0] {
	case 'R':
		sig, err := rsa.SignPKCS1v15(nil, k.private.(*rsa.PrivateKey), h, digest)
		require.NoError(t, err)
		return sig
	case 'P':
		opts := k.pss
		if opts == nil {
			opts = &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash}
		}
		sig, err := rsa.SignPSS(rand.Reader, k.private.(*rsa.PrivateKey), h, digest, opts)
		require.NoError(t, err)
		return sig
	}
	priv := k.private.(*ecdsa.PrivateKey)
	r, s, err := ecdsa.Sign(rand.Reader, priv, digest)
	require.NoError(t, err)
	size := (priv.Curve.Params().BitSize + 7) / 8
	sig := make([]byte, 2*size)
	r.FillBytes(sig[:size])
	s.FillBytes(sig[size:])
	return sig
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// token is a compact JWS of header and payload as given, signed by k.
func (k *testKey) token(t testing.TB, header, payload string) string {
	input := b64([]byte(header)) + "." + b64([]byte(payload))
	return input + "." + b64(k.sign(t, []byte(input)))
}

const testClaims = `{"iss":"TestClient","sub":"User1","aud":"https://as.example/token","exp":4102444800,"iat":4102441200,"jti":"x","scope":"read"}`

func testClaimsMap() map[string]interface{} {
	var m map[string]interface{}
	if err := json.Unmarshal([]byte(testClaims), &m); err != nil {
		panic(err)
	}
	return m
}

// withPart replaces part i of a compact JWS.
func withPart(raw string, i int, part string) string {
	parts := strings.Split(raw, ".")
	parts[i] = part
	return strings.Join(parts, ".")
}

const b64Alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

// flipped returns s with the 6-bit value of its character i xor-ed with x.
func flipped(s string, i int, x byte) string {
	v := strings.IndexByte(b64Alphabet, s[i])
	return s[:i] + string(b64Alphabet[byte(v)^x]) + s[i+1:]
}

// TestJWSDifferential signs assertions with go-jose and with the standard
// library for every algorithm, mutates them, and checks that the new code
// verifies exactly what the former go-jose code verified (but for the
// deliberate tightenings), and nothing that go-jose's own ParseSigned and
// Verify refuse.
func TestJWSDifferential(t *testing.T) {
	keys := newTestKeys(t, 2048)
	byAlg := map[string]*testKey{}
	for _, k := range keys {
		byAlg[k.alg] = k
	}
	others := newTestKeys(t, 2048)
	stats := map[string]int{}
	for i, k := range keys {
		other := others[i]
		t.Run(k.alg, func(t *testing.T) {
			check := func(name, raw string, key *jose.JSONWebKey, want bool) {
				t.Helper()
				ours, legacy := compareWithLegacy(t, raw, key)
				assert.Equal(t, want, ours.verified, "%s: %q (%v)", name, raw, ours)
				if ours.verified == legacy.verified {
					stats["same"]++
				} else {
					stats["stricter: "+stricterReason(raw)]++
				}
			}
			// Signed by go-jose, with the handler's usual header.
			valid := handlertest.SignWithKey(jose.SignatureAlgorithm(k.alg), k.private, map[string]interface{}{"kid": "k1", "typ": "JWT"}, testClaimsMap())
			check("go-jose signed", valid, &k.public, true)
			assert.True(t, joseVerifies(valid, &k.public))
			// Signed by the test's own signer.
			own := k.token(t, `{"alg":"`+k.alg+`","kid":"k1"}`, testClaims)
			check("own signer", own, &k.public, true)

			// Every character of each part changed: a flip of the low
			// bit of the last character may only touch the unused bits,
			// which go-jose ignored and the new code refuses.
			parts := strings.Split(valid, ".")
			for p := range 3 {
				for i := range parts[p] {
					for _, x := range []byte{1, 32} {
						if p == 2 && k.alg[0] != 'H' && k.alg != "EdDSA" && i%7 != 0 && i != len(parts[p])-1 {
							continue // RSA and ECDSA: a sample of the signature
						}
						m := withPart(valid, p, flipped(parts[p], i, x))
						check(fmt.Sprintf("part %d char %d ^%d", p, i, x), m, &k.public, false)
					}
				}
			}
			sig := parts[2]
			rawSig, err := base64.RawURLEncoding.DecodeString(sig)
			require.NoError(t, err)
			for name, m := range map[string]string{
				"signature truncated by one char":  withPart(valid, 2, sig[:len(sig)-1]),
				"signature truncated by two chars": withPart(valid, 2, sig[:len(sig)-2]),
				"signature truncated by one byte":  withPart(valid, 2, b64(rawSig[:len(rawSig)-1])),
				"signature extended by a zero":     withPart(valid, 2, b64(append(append([]byte{}, rawSig...), 0))),
				"signature led by a zero":          withPart(valid, 2, b64(append([]byte{0}, rawSig...))),
				"signature extended by AAAA":       valid + "AAAA",
				"signature empty":                  valid[:strings.LastIndexByte(valid, '.')+1],
				"signature doubled":                withPart(valid, 2, b64(append(append([]byte{}, rawSig...), rawSig...))),
				"padding added":                    valid + "=",
				"padding added to the header":      withPart(valid, 0, parts[0]+"=="),
				"white space":                      valid[:10] + " " + valid[10:],
				"fourth part":                      valid + ".AAAA",
				"payload swapped":                  withPart(valid, 1, b64([]byte(strings.Replace(testClaims, "User1", "User2", 1)))),
			} {
				check(name, m, &k.public, false)
			}
			// The JSON serialization, refused before any parse.
			obj, err := jose.ParseSigned(valid)
			require.NoError(t, err)
			check("JSON serialization", obj.FullSerialize(), &k.public, false)
			assert.True(t, joseVerifies(obj.FullSerialize(), &k.public), "go-jose itself takes it")

			// Another key of the same type.
			check("wrong key", valid, &other.public, false)
			// The key's own "alg" pins the algorithm.
			pinned := k.public
			pinned.Algorithm = "XX"
			assert.False(t, newOutcome(valid, &pinned).fits, "a key whose alg differs must not fit")
			check("pinned to another alg", valid, &pinned, false)
			pinned.Algorithm = k.alg
			check("pinned to its alg", valid, &pinned, true)

			// Every other algorithm named in the header, signed with this
			// key as that algorithm would sign... by this key's own.
			for _, alg := range knownAlgorithms {
				if alg == k.alg {
					continue
				}
				m := k.token(t, `{"alg":"`+alg+`"}`, testClaims)
				check("header alg "+alg, m, &k.public, false)
			}
			// Header variations, correctly signed.
			for _, h := range []struct {
				header string
				want   bool
			}{
				{"{ \"alg\" :\t\"" + k.alg + "\"\n,\r\"typ\": \"JWT\" }", true},
				{` {"alg":"` + k.alg + `"} `, true},
				{`{"alg":"` + k.alg + `","kid":null,"typ":null,"crit":null,"b64":null,"jwk":null,"x5c":null}`, true},
				{`{"\u0061lg":"` + k.alg + `"}`, true},
				{`{"alg":"` + k.alg + `","jku":"https://attacker.example/jwks","x5u":"https://attacker.example/c","x5t":"abc","cty":"JWT"}`, true},
				{`{"alg":"` + k.alg + `","x5c":[]}`, true},
				{`{"alg":"` + k.alg + `","ext":{"a":[1,2.5e3,true,null,{"b":"c"}]},"n":-0}`, true},
				{`{"alg":"` + k.alg + `","typ":"JWT","typ":"JWT"}`, false},
				{`{"alg":"` + k.alg + `","alg":"` + k.alg + `"}`, false},
				{`{"alg":"` + k.alg + `","\u0061lg":"` + k.alg + `"}`, false},
				{`{"alg":"none","alg":"` + k.alg + `"}`, false},
				{`{"alg":"` + k.alg + `","ALG":"none"}`, true},
				{`{"alg":"` + k.alg + `","ext":{"a":1,"a":2}}`, false},
				{`{"alg":"` + k.alg + `","ext":1e400}`, false},
				{`{"alg":"` + k.alg + `","kid":1}`, false},
				{`{"alg":"` + k.alg + `","nonce":1}`, false},
				{`{"alg":"` + k.alg + `","nonce":"n"}`, true},
				{`{"alg":"` + k.alg + `","typ":1}`, true},
				{`{"alg":"` + k.alg + `","typ":"AT+JWT"}`, false},
				{`{"alg":"` + k.alg + `","typ":"at\u002bjwt"}`, false},
				{`{"alg":"` + k.alg + `","crit":["exp"],"exp":1}`, false},
				{`{"alg":"` + k.alg + `","crit":[]}`, false},
				{`{"alg":"` + k.alg + `","b64":true}`, false},
				{`{"alg":"` + k.alg + `","jwk":{}}`, false},
				{`{"alg":"` + k.alg + `","jwk":1}`, false},
				{`{"alg":"` + k.alg + `","x5c":"abc"}`, false},
				{`{"alg":"` + k.alg + `","x5c":["AAAA"]}`, false},
				{`{"alg":"` + k.alg + `","kid":"` + strings.Repeat("k", maxIDLength+1) + `"}`, false},
				{`{"alg":"` + k.alg + `","kid":"é\u00e9\ud83d\ude00\ud800"}`, true},
				{`{"alg":"` + strings.ToLower(k.alg) + `"}`, false},
				{`{"alg":""}`, false},
				{`{}`, false},
				{`null`, false},
				{`[]`, false},
				{`"` + k.alg + `"`, false},
				{`1`, false},
				{`{"alg":"` + k.alg + `"`, false},
				{`{"alg":"` + k.alg + `"}x`, false},
				{`{"alg":"` + k.alg + `",}`, false},
				{"{\"alg\":\"" + k.alg + "\",\"k\xff\":1,\"k\xfe\":2}", false}, // both names read as "k\uFFFD"
			} {
				check("header "+h.header, k.token(t, h.header, testClaims), &k.public, h.want)
			}
			// Embedded keys and certificates are read, never used.
			embedded := func(name string, v interface{}) string {
				b, err := json.Marshal(v)
				require.NoError(t, err)
				return `{"alg":"` + k.alg + `","` + name + `":` + string(b) + `}`
			}
			check("embedded jwk of another key", k.token(t, embedded("jwk", other.public), testClaims), &k.public, other.alg[0] != 'H')
			check("embedded jwk, verified with it", other.token(t, embedded("jwk", other.public), testClaims), &k.public, false)
			check("x5c certificate", k.token(t, embedded("x5c", []string{testCertificate(t)}), testClaims), &k.public, true)
			// Claims variations, correctly signed.
			for _, c := range []struct {
				payload string
				want    bool
			}{
				{`{"iss":"TestClient","sub":"User1","iss":"Other"}`, true},
				{`{"iss":"TestClient","sub":"User1","exp":1e400}`, false},
				{`{"iss":"TestClient","sub":"User1","exp":"1"}`, false},
				{`{"iss":"TestClient","sub":"User1","exp":-0,"nbf":1.5e0,"iat":253402300799}`, true},
				{`{"iss":"TestClient","sub":"User1","aud":["a","b"],"scope":"\u0072ead"}`, true},
				{`{"iss":"Test\u0043lient","sub":"User1\u00e9\ud800","aud":"x\ty"}`, true},
				{`{"iss":"TestClient","sub":"User1","aud":[1]}`, false},
				{`{"iss":"TestClient","sub":"User1","ISS":"x","Sub":1}`, true},
				{`{"iss":"TestClient","sub":null}`, false},
				{`{"iss":"TestClient","sub":"User1"}x`, false},
				{`[{"iss":"TestClient","sub":"User1"}]`, false},
				{`null`, false},
			} {
				check("claims "+c.payload, k.token(t, `{"alg":"`+k.alg+`"}`, c.payload), &k.public, c.want)
			}
		})
	}

	t.Run("RSA confusion", func(t *testing.T) {
		rk := byAlg["RS256"]
		pub, err := rk.public.MarshalJSON()
		require.NoError(t, err)
		der, err := x509.MarshalPKIXPublicKey(rk.public.Key)
		require.NoError(t, err)
		for _, secret := range [][]byte{pub, der} {
			m := handlertest.SignWithKey(jose.HS256, secret, nil, testClaimsMap())
			ours, _ := compareWithLegacy(t, m, &rk.public)
			assert.False(t, ours.fits || ours.verified, "an RSA key is never an HMAC secret")
		}
	})
	t.Run("PSS salt lengths", func(t *testing.T) {
		// go-jose verifies PSS with any salt length; so does the new code.
		for _, alg := range []string{"PS256", "PS384", "PS512"} {
			k := *byAlg[alg]
			// PSSSaltLengthAuto signs with the longest salt that fits.
			for _, salt := range []int{rsa.PSSSaltLengthAuto, 1, 20, 64} {
				k.pss = &rsa.PSSOptions{SaltLength: salt}
				m := k.token(t, `{"alg":"`+alg+`"}`, testClaims)
				ours, _ := compareWithLegacy(t, m, &k.public)
				assert.True(t, ours.verified, "%s, salt length %d", alg, salt)
			}
		}
	})
	t.Run("ECDSA encodings", func(t *testing.T) {
		for _, alg := range []string{"ES256", "ES384", "ES512"} {
			k := byAlg[alg]
			valid := k.token(t, `{"alg":"`+alg+`"}`, testClaims)
			parts := strings.Split(valid, ".")
			sig, _ := base64.RawURLEncoding.DecodeString(parts[2])
			size := len(sig) / 2
			r, s := new(big.Int).SetBytes(sig[:size]), new(big.Int).SetBytes(sig[size:])
			pub := k.public.Key.(*ecdsa.PublicKey)
			n := pub.Curve.Params().N
			fixed := func(r, s *big.Int, size int) string {
				b := make([]byte, 2*size)
				r.FillBytes(b[:size])
				s.FillBytes(b[size:])
				return withPart(valid, 2, b64(b))
			}
			// R + N (or S + N) is R to the arithmetic, and must be refused:
			// at the same size where it fits (P-521), else one byte wider.
			rPlusN := func() string {
				rn := new(big.Int).Add(r, n)
				if rn.BitLen() <= 8*size {
					return fixed(rn, s, size)
				}
				return fixed(rn, s, size+1)
			}
			// -S mod N is as valid to ecdsa.Verify as S: the signature is
			// malleable, which the replay guard (by jti) does not mind.
			ours, _ := compareWithLegacy(t, fixed(r, new(big.Int).Sub(n, s), size), &k.public)
			assert.True(t, ours.verified, "%s high S", alg)
			for name, m := range map[string]string{
				"r zero":          fixed(new(big.Int), s, size),
				"s zero":          fixed(r, new(big.Int), size),
				"r plus N":        rPlusN(),
				"DER":             withPart(valid, 2, b64(derSignature(r, s))),
				"wider R and S":   fixed(r, s, size+1),
				"narrower R, S":   withPart(valid, 2, b64(append(sig[1:size], sig[size+1:]...))),
				"other curve":     withPart(valid, 2, b64(otherSize(sig, map[int]int{32: 48, 48: 66, 66: 32}[size]))),
				"R and S swapped": fixed(s, r, size),
			} {
				ours, _ := compareWithLegacy(t, m, &k.public)
				assert.False(t, ours.verified, "%s %s", alg, name)
			}
		}
	})
	t.Run("odd keys", func(t *testing.T) {
		// An empty secret: go-jose would verify a MAC with it, the new
		// code refuses (the store never holds one).
		empty := &testKey{alg: "HS256", private: []byte{}, public: jose.JSONWebKey{Key: []byte{}}}
		m := empty.token(t, `{"alg":"HS256"}`, testClaims)
		assert.True(t, legacyOutcome(m, &empty.public).verified)
		assert.False(t, newOutcome(m, &empty.public).verified)
		for name, key := range map[string]interface{}{
			"nil RSA":       (*rsa.PublicKey)(nil),
			"RSA without N": &rsa.PublicKey{E: 65537},
			"nil EC":        (*ecdsa.PublicKey)(nil),
			"EC without X":  &ecdsa.PublicKey{Curve: elliptic.P256()},
			"short Ed25519": ed25519.PublicKey(make([]byte, 31)),
			"RSA value":     rsa.PublicKey{},
			"private RSA":   byAlg["RS256"].private,
			"string secret": "secret",
			"JWK in a JWK":  &byAlg["RS256"].public,
			"nil":           nil,
		} {
			for _, k := range keys {
				m := k.token(t, `{"alg":"`+k.alg+`"}`, testClaims)
				a, err := parseAssertion(m, DefaultMaxAssertionSize)
				require.NoError(t, err)
				verified, _ := verifyWith(a, &jose.JSONWebKey{Key: key})
				assert.False(t, verified, "%s with %s", k.alg, name)
			}
		}
	})
	t.Run("unknown alg", func(t *testing.T) {
		for _, alg := range []string{"none", "RS1", "ES256K", "HS", "PS", "Ed25519", ""} {
			for _, k := range keys {
				assert.False(t, verifySignature(alg, k.public.Key, []byte("a.b"), []byte("sig")))
			}
		}
	})
	t.Logf("outcomes: %v", stats)
}

// otherSize is the R||S signature sig resized to halves of n bytes: each
// half left-padded with zeros, or cut to its last n bytes.
func otherSize(sig []byte, n int) []byte {
	half := len(sig) / 2
	resize := func(b []byte) []byte {
		if len(b) >= n {
			return b[len(b)-n:]
		}
		return append(make([]byte, n-len(b)), b...)
	}
	return append(resize(sig[:half]), resize(sig[half:])...)
}

// derSignature is r and s as an ASN.1 DER ECDSA-Sig-Value.
func derSignature(r, s *big.Int) []byte {
	enc := func(n *big.Int) []byte {
		b := n.Bytes()
		if len(b) == 0 || b[0]&0x80 != 0 {
			b = append([]byte{0}, b...)
		}
		return append([]byte{2, byte(len(b))}, b...)
	}
	body := append(enc(r), enc(s)...)
	if len(body) < 128 {
		return append([]byte{0x30, byte(len(body))}, body...)
	}
	return append([]byte{0x30, 0x81, byte(len(body))}, body...)
}

var testCert string

// testCertificate is a self-signed certificate, base64 (standard).
func testCertificate(t testing.TB) string {
	if testCert != "" {
		return testCert
	}
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "x"}, NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	require.NoError(t, err)
	testCert = base64.StdEncoding.EncodeToString(der)
	return testCert
}

// TestJWSCanonicalInput checks that the signing input kept is the token's
// own text, which strict decoding makes the canonical re-encoding go-jose
// verified.
func TestJWSCanonicalInput(t *testing.T) {
	k := newTestKeys(t, 1024)[0]
	raw := k.token(t, `{"alg":"`+k.alg+`","kid":"k"}`, testClaims)
	a, err := parseAssertion(raw, DefaultMaxAssertionSize)
	require.NoError(t, err)
	assert.Equal(t, raw[:strings.LastIndexByte(raw, '.')], string(a.signingInput))
	assert.Equal(t, raw[strings.LastIndexByte(raw, '.')+1:], b64(a.signature))
	// Appending to what parseAssertion returned must not corrupt the rest.
	_ = append(a.signingInput, 'x')
	_ = append(a.claims.Audience, "x")
	assert.Equal(t, raw[strings.LastIndexByte(raw, '.')+1:], b64(a.signature))
	iss, _ := a.claims.claim("iss")
	assert.Equal(t, `"TestClient"`, iss)
	assert.Equal(t, "TestClient", a.claims.Issuer)
}

func TestIsCompactJWS(t *testing.T) {
	for c := range 256 {
		for _, raw := range []string{"a" + string(rune(c)) + "a.b.c", "a.b.c" + string([]byte{byte(c)}), string([]byte{byte(c)}) + ".b.c", "a..c", ".b.c", "a.b.", "a.b.c.d", "a.b", ""} {
			assert.Equal(t, compactJWSPattern.MatchString(raw), isCompactJWS(raw), "%q", raw)
		}
		raw := "a" + string([]byte{byte(c)}) + "a.b.c"
		assert.Equal(t, compactJWSPattern.MatchString(raw), isCompactJWS(raw), "%q", raw)
	}
}

// TestJSONMembers checks the member scan against encoding/json on a few
// shapes; the fuzz targets cover the rest.
func TestJSONMembers(t *testing.T) {
	for _, in := range []string{
		`{}`, ` { } `, `{"a":1}`, `{"a" : [1, {"b":"}"}, "]"] , "c":"\"}" ,"d":{"e":[[]]}}`,
		`{"a":-1.5e+3,"b":true,"c":false,"d":null,"e":"x\\"}`, `[]`, `"x"`, `1`, `null`,
	} {
		var want map[string]json.RawMessage
		wantErr := json.Unmarshal([]byte(in), &want)
		got := map[string]json.RawMessage{}
		isObject, err := jsonMembers(in, stdUnquote, func(name, v string) error {
			got[name] = json.RawMessage(v)
			return nil
		})
		require.NoError(t, err, in)
		if wantErr != nil || want == nil {
			assert.False(t, isObject, in)
			continue
		}
		assert.True(t, isObject, in)
		assert.Equal(t, len(want), len(got), in)
		for name, v := range want {
			assert.Equal(t, string(v), string(got[name]), in)
		}
	}
}

// fuzzEdit applies the edits (4 bytes each: operation, position, value) to
// a token: characters replaced, removed or inserted, dots, padding and
// arbitrary bytes.
func fuzzEdit(tok string, edits []byte) string {
	b := []byte(tok)
	for len(edits) >= 4 {
		op, pos, v := edits[0]%6, (int(edits[1])<<8|int(edits[2]))%(len(b)+1), edits[3]
		edits = edits[4:]
		switch op {
		case 0: // replace by a base64url character
			if pos < len(b) {
				b[pos] = b64Alphabet[v%64]
			}
		case 1: // flip low bits of a base64url character
			if pos < len(b) {
				if i := strings.IndexByte(b64Alphabet, b[pos]); i >= 0 {
					b[pos] = b64Alphabet[(byte(i)^v)%64]
				}
			}
		case 2: // truncate
			b = b[:pos]
		case 3: // insert a base64url character
			b = append(b[:pos], append([]byte{b64Alphabet[v%64]}, b[pos:]...)...)
		case 4: // insert '.', '=' or a space
			b = append(b[:pos], append([]byte{".= "[v%3]}, b[pos:]...)...)
		case 5: // replace by any byte
			if pos < len(b) {
				b[pos] = v
			}
		}
	}
	return string(b)
}

var fuzzKeys []*testKey

func fuzzSetup(f *testing.F) []*testKey {
	if fuzzKeys == nil {
		// RSA-1152 keeps signing fast enough to fuzz and still fits
		// PS512's salt; the code under test does not depend on the size.
		fuzzKeys = newTestKeys(f, 1152)
	}
	return fuzzKeys
}

// FuzzVerifyDifferential signs a fuzzed header and payload with one of
// thirteen keys (every algorithm), edits the token, and verifies it with
// that key and with another: whenever the new code verifies, go-jose (the
// former code, and its plain ParseSigned and Verify) verifies too, and the
// two codes agree on everything else but the deliberate tightenings. The
// signature is also compared on its own, whatever the claims (compareJWS).
//
// When sel's bit 0x40 is clear the header and payload are framed, so that
// many inputs verify: the header starts with the key's "alg" and the
// fuzzed members follow; the payload starts with "iss" and "sub". The
// edits apply when its bit 0x80 is set.
func FuzzVerifyDifferential(f *testing.F) {
	keys := fuzzSetup(f)
	for i, k := range keys {
		f.Add(uint8(i), []byte(`"kid":"k1","typ":"JWT"`), []byte(`"aud":"x","exp":4102444800,"jti":"j"`), []byte{})
		f.Add(uint8(i), []byte(``), []byte(``), []byte{1, 0, 5, 1})
		f.Add(uint8(i|0x80), []byte(``), []byte(``), []byte{1, 0, 5, 1, 2, 1, 0, 0})
		f.Add(uint8(i|0x40), []byte(`{"alg":"`+k.alg+`","kid":"k1","typ":"JWT"}`), []byte(testClaims), []byte{})
		f.Add(uint8(i+16), []byte(`"x":{"y":[1,"z"]}`), []byte(`"scope":"a b"`), []byte{0, 0, 0, 0})
	}
	f.Add(uint8(0), []byte(`"alg":"ES256"`), []byte(testClaims), []byte{})
	f.Add(uint8(0xc0), []byte(`{"alg":"EdDSA","crit":["b64"],"b64":false}`), []byte(testClaims), []byte{2, 0, 40, 0})
	f.Fuzz(func(t *testing.T, sel uint8, header, payload, edits []byte) {
		k := keys[int(sel&0x3f)%len(keys)]
		other := keys[int(sel/16)%len(keys)]
		if sel&0x40 == 0 {
			header = frame(`{"alg":"`+k.alg+`"`, header)
			payload = frame(`{"iss":"TestClient","sub":"User1"`, payload)
		}
		tok := k.token(t, string(header), string(payload))
		if sel&0x80 != 0 {
			tok = fuzzEdit(tok, edits)
		}
		for _, key := range []*jose.JSONWebKey{&k.public, &other.public} {
			compareWithLegacy(t, tok, key)
			compareJWS(t, tok, key)
		}
	})
}

// frame closes the object that start opens, with members inside.
func frame(start string, members []byte) []byte {
	if len(members) == 0 {
		return []byte(start + "}")
	}
	return []byte(start + "," + string(members) + "}")
}

// compareJWS compares the signature check alone, claims aside: when both
// the new and go-jose's parse take raw, verifySignature and go-jose's
// DetachedVerify, behind algFitsKey, must agree. The new parse may refuse
// what go-jose's takes for the reasons stricterReason names, or because it
// is not compact (isCompactJWS, as before); never the reverse.
func compareJWS(t testing.TB, raw string, k *jose.JSONWebKey) {
	t.Helper()
	theirs, joseErr := jose.ParseSigned(raw)
	if !isCompactJWS(raw) {
		return
	}
	ours, err := parseCompactJWS(raw)
	if err != nil {
		if joseErr == nil && stricterReason(raw) == "" {
			t.Fatalf("go-jose parses %q, the new code does not: %v", raw, err)
		}
		return
	}
	if joseErr != nil {
		t.Fatalf("the new code parses %q, go-jose does not: %v", raw, joseErr)
	}
	h := theirs.Signatures[0].Protected
	if h.Algorithm != ours.header.alg || h.KeyID != ours.header.kid {
		t.Fatalf("header read differently for %q", raw)
	}
	if !algFitsKey(ours.header.alg, k.Key) {
		return
	}
	if ours.header.b64 || ours.header.crit {
		// go-jose honours "b64": false (RFC 7797) even without "crit";
		// parseAssertion refuses both, so such a token is never verified.
		return
	}
	want := theirs.DetachedVerify(theirs.UnsafePayloadWithoutVerification(), k) == nil
	if got := verifySignature(ours.header.alg, k.Key, ours.signingInput, ours.signature); got != want {
		t.Fatalf("signature check differs for %q: new %v, go-jose %v", raw, got, want)
	}
}

// FuzzParseDifferential compares the new parse with the former one on
// fuzzed headers, payloads and signature parts, unsigned: same hint, same
// "alg", "kid" and claims.
func FuzzParseDifferential(f *testing.F) {
	f.Add([]byte(`{"alg":"RS256","kid":"k1","typ":"JWT"}`), []byte(testClaims), "AAAA")
	f.Add([]byte(`{"alg":"ES256","jwk":{"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pkyStiXBw5Cxa1ZQ"}}`), []byte(`{"iss":"a","sub":"b","aud":["x"],"exp":1.5}`), "AA")
	f.Add([]byte(`{"alg":"HS256","x":[{"a":1,"b":[true,null]}],"typ":"at+jwt"}`), []byte(`{"iss":"a\u0062","sub":"b","scope":"x y","iss":"c"}`), "AAAA")
	f.Add([]byte(`{"alg":"HS256","n":1e308,"m":-1e-400}`), []byte(`{"iss":"a","sub":"b","nbf":253402300800}`), "_-_-")
	f.Add([]byte(`null`), []byte(`null`), "AAAA")
	long := strings.Repeat("x", maxNameLength+1)
	f.Add([]byte(`{"alg":"RS256"}`), []byte(`{"iss":"`+long+`","sub":"`+long+`"}`), "AAAA")
	f.Fuzz(func(t *testing.T, header, payload []byte, sig string) {
		compareWithLegacy(t, b64(header)+"."+b64(payload)+"."+sig, nil)
	})
}

// BenchmarkVerifySignatureRS256 is verifySignature on an RS256 assertion,
// to compare with BenchmarkVerifyRS256 (go-jose's Verify).
func BenchmarkVerifySignatureRS256(b *testing.B) {
	k := handlertest.NewRSAKey()
	a, err := parseAssertion(k.Sign(handlertest.Claims("TestClient", "User1", "https://as.example/token", time.Now())), DefaultMaxAssertionSize)
	require.NoError(b, err)
	b.ReportAllocs()
	for b.Loop() {
		if !verifySignature(a.alg, k.Public.Key, a.signingInput, a.signature) {
			b.Fatal("not verified")
		}
	}
}
