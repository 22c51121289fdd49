package handler

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"math/big"
	"strings"

	jose "github.com/go-jose/go-jose/v3"
	josejson "github.com/go-jose/go-jose/v3/json"
)

// This file reads a JWS in compact serialization (RFC 7515 §7.1) in one
// pass and verifies its signature with the standard library. It replaces
// go-jose's ParseSigned and Verify, which copy the token, decode the header
// into several structures and re-encode header and payload to verify, and
// it accepts exactly the headers and signatures go-jose v3.0.5 accepted
// (the differential tests and fuzz targets in jws_test.go check it), with
// three tightenings: every part must be canonical base64url (see b64url),
// the header nests at most encoding/json's 10000 levels, and an HS* key
// must not be the empty secret.

// b64url decodes the three parts: base64url without padding (RFC 7515 §2),
// strictly, so that the unused low bits of the last character must be zero.
// Every byte string thus has a single encoding, and the JWS Signing Input
// as sent is the one the signer computed. (go-jose decoded leniently and
// verified the re-encoding, so that a token with other trailing bits, the
// same token to it, verified too.)
var b64url = base64.RawURLEncoding.Strict()

// compactJWS is a JWS in compact serialization, decoded, not yet verified.
type compactJWS struct {
	header jwsHeader
	// payload is the decoded JWS Payload.
	payload []byte
	// signingInput is the JWS Signing Input (RFC 7515 §5.1): the header
	// and payload parts as sent, with the dot between them.
	signingInput []byte
	// signature is the decoded JWS Signature.
	signature []byte
}

// jwsHeader is the protected header, as far as this server reads it.
type jwsHeader struct {
	alg, kid string
	// typ is the "typ" parameter when it is a string, else "".
	typ string
	// crit and b64 tell whether the header has these parameters.
	crit, b64 bool
}

// parseCompactJWS splits raw at its two dots and decodes its three parts and
// its header. raw must have passed isCompactJWS. The signing input, the
// payload and the signature share one allocation.
// maxHeaderEncoded bounds the base64url header: 8 KiB of JSON, far more
// than any real JWS header (alg, kid, typ and perhaps an x5c chain).
const maxHeaderEncoded = 8 << 10 * 4 / 3

func parseCompactJWS(raw string) (*compactJWS, error) {
	dot1 := strings.IndexByte(raw, '.')
	if dot1 <= 0 {
		return nil, errors.New("the JWS has no header part")
	}
	n := strings.IndexByte(raw[dot1+1:], '.')
	if n <= 0 {
		return nil, errors.New("the JWS has no payload part")
	}
	dot2 := dot1 + 1 + n
	if dot2 == len(raw)-1 || strings.IndexByte(raw[dot2+1:], '.') >= 0 {
		return nil, errors.New("the JWS must have exactly three non-empty parts")
	}
	h, p, s := raw[:dot1], raw[dot1+1:dot2], raw[dot2+1:]
	if len(h) > maxHeaderEncoded {
		// Nothing of the header is trusted yet: bound what decoding it
		// can cost, whatever the configured assertion size.
		return nil, fmt.Errorf("the JWS header is longer than %d bytes", maxHeaderEncoded)
	}
	hn, pn, sn := b64url.DecodedLen(len(h)), b64url.DecodedLen(len(p)), b64url.DecodedLen(len(s))
	buf := make([]byte, dot2+hn+pn+sn)
	jws := &compactJWS{signingInput: buf[:dot2:dot2]}
	copy(jws.signingInput, raw[:dot2])
	rest := buf[dot2:]
	header, err := decodePart(rest[:hn:hn], h, "header")
	if err != nil {
		return nil, err
	}
	rest = rest[hn:]
	if jws.payload, err = decodePart(rest[:pn:pn], p, "payload"); err != nil {
		return nil, err
	}
	rest = rest[pn:]
	if jws.signature, err = decodePart(rest[:sn:sn], s, "signature"); err != nil {
		return nil, err
	}
	if jws.header, err = parseJWSHeader(header); err != nil {
		return nil, err
	}
	return jws, nil
}

func decodePart(dst []byte, src, name string) ([]byte, error) {
	n, err := b64url.Decode(dst, []byte(src))
	if err != nil {
		return nil, fmt.Errorf("the %s is not canonical base64url without padding: %w", name, err)
	}
	return dst[:n], nil
}

// parseJWSHeader decodes the protected header with go-jose v3.0.5's rules,
// so that what it refuses and what it reads stay what they were:
//
//   - the header is a JSON object, or null (read as an empty header);
//   - member names are case-sensitive and must not repeat, also when
//     written with escapes ("\u0061lg" repeats "alg");
//   - a member whose value is null is as absent;
//   - "alg", "kid" and "nonce" must be strings;
//   - "jwk" must be a valid public JWK and "x5c" a chain of X.509
//     certificates, though neither is ever used (keys come from the store
//     only, RFC 8725 §3.10);
//   - any other member may hold any JSON value that go-jose's JSON package
//     decodes (which refuses repeated names in nested objects too, and
//     numbers beyond float64).
//
// Strings that need more than copying (escapes, bytes outside printable
// ASCII) and values that are neither strings nor literals are decoded by
// go-jose's JSON package itself.
func parseJWSHeader(data []byte) (jwsHeader, error) {
	var h jwsHeader
	if !json.Valid(data) {
		return h, errors.New("the header is not valid JSON")
	}
	// One string of the header, of which alg, kid and typ are substrings.
	text := string(data)
	if isJSONNull(text) {
		return h, nil
	}
	names := make([]string, 0, 8)
	var seen map[string]struct{}
	isObject, err := jsonMembers(text, joseUnquote, func(name, v string) error {
		// Repeated names: a linear scan while the header is small, a map
		// beyond, so that a 16 KiB header of tiny members stays linear.
		if seen == nil {
			for _, n := range names {
				if n == name {
					return fmt.Errorf("the header repeats %q", truncate(name))
				}
			}
			names = append(names, name)
			if len(names) > 8 {
				seen = make(map[string]struct{}, 2*len(names))
				for _, n := range names {
					seen[n] = struct{}{}
				}
			}
		} else {
			if _, ok := seen[name]; ok {
				return fmt.Errorf("the header repeats %q", truncate(name))
			}
			seen[name] = struct{}{}
		}
		if v == "null" {
			return nil
		}
		var err error
		switch name {
		case "alg":
			h.alg, err = joseString(v)
		case "kid":
			h.kid, err = joseString(v)
		case "nonce":
			_, err = joseString(v)
		case "jwk":
			var jwk *jose.JSONWebKey
			if err = josejson.Unmarshal([]byte(v), &jwk); err == nil && jwk != nil && (!jwk.Valid() || !jwk.IsPublic()) {
				err = errors.New("invalid embedded jwk, must be public key")
			}
		case "x5c":
			err = checkX5C(v)
		default:
			switch name {
			case "typ":
				if v[0] == '"' {
					h.typ, err = joseString(v)
				}
			case "crit":
				h.crit = true
			case "b64":
				h.b64 = true
			}
			if err == nil && v[0] != '"' && v[0] != 't' && v[0] != 'f' {
				// Strings and booleans always decode.
				var decoded interface{}
				err = josejson.Unmarshal([]byte(v), &decoded)
			}
		}
		if err != nil {
			return fmt.Errorf("the header's %q: %w", truncate(name), err)
		}
		return nil
	})
	if err != nil {
		return jwsHeader{}, err
	}
	if !isObject {
		return jwsHeader{}, errors.New("the header is not a JSON object")
	}
	return h, nil
}

// checkX5C checks an "x5c" header as go-jose v3.0.5 did: an array of
// base64 (standard, padded) DER certificates that x509 parses.
func checkX5C(v string) error {
	chain := []string{}
	if err := josejson.Unmarshal([]byte(v), &chain); err != nil {
		return err
	}
	for _, c := range chain {
		der, err := base64.StdEncoding.DecodeString(c)
		if err != nil {
			return err
		}
		if _, err := x509.ParseCertificate(der); err != nil {
			return err
		}
	}
	return nil
}

// joseString decodes a JSON string value as go-jose's JSON package does,
// and refuses any other type.
func joseString(v string) (string, error) {
	if s, ok := plainString(v); ok {
		return s, nil
	}
	var s string
	err := josejson.Unmarshal([]byte(v), &s)
	return s, err
}

// joseUnquote decodes a member name as go-jose's JSON package does.
func joseUnquote(q string) (string, error) {
	if s, ok := plainString(q); ok {
		return s, nil
	}
	var s string
	err := josejson.Unmarshal([]byte(q), &s)
	return s, err
}

// stdUnquote decodes a member name as encoding/json does.
func stdUnquote(q string) (string, error) {
	if s, ok := plainString(q); ok {
		return s, nil
	}
	var s string
	err := json.Unmarshal([]byte(q), &s)
	return s, err
}

// plainString returns the content of the JSON string v when it needs no
// decoding: no escapes, only printable ASCII. Every JSON decoder reads such
// a string as its bytes; others are left to the decoders. The content is
// a substring of v: no copy.
func plainString(v string) (string, bool) {
	if len(v) < 2 || v[0] != '"' || v[len(v)-1] != '"' {
		return "", false
	}
	for i := 1; i < len(v)-1; i++ {
		if c := v[i]; c < 0x20 || c > 0x7e || c == '\\' || c == '"' {
			return "", false
		}
	}
	return v[1 : len(v)-1], true
}

// isJSONNull reports whether the valid JSON text data is null.
func isJSONNull(data string) bool {
	i := skipJSONSpace(data, 0)
	return i < len(data) && data[i] == 'n'
}

var errJSONShape = errors.New("malformed JSON")

// jsonMembers calls fn with each member of the JSON object data, in order:
// its name as unquote decodes it and its value as it is written, without
// the white space around it. data must be valid JSON (json.Valid): the
// scan relies on it, and only guards against reading out of bounds. It
// reports false, calling nothing, when data is not an object.
func jsonMembers(data string, unquote func(string) (string, error), fn func(name, value string) error) (bool, error) {
	i := skipJSONSpace(data, 0)
	if i >= len(data) || data[i] != '{' {
		return false, nil
	}
	i = skipJSONSpace(data, i+1)
	if i < len(data) && data[i] == '}' {
		return true, nil
	}
	for {
		if i >= len(data) || data[i] != '"' {
			return true, errJSONShape
		}
		end := jsonValueEnd(data, i)
		if end <= i {
			return true, errJSONShape
		}
		name, err := unquote(data[i:end])
		if err != nil {
			return true, err
		}
		i = skipJSONSpace(data, end)
		if i >= len(data) || data[i] != ':' {
			return true, errJSONShape
		}
		i = skipJSONSpace(data, i+1)
		end = jsonValueEnd(data, i)
		if end <= i {
			return true, errJSONShape
		}
		if err := fn(name, data[i:end]); err != nil {
			return true, err
		}
		i = skipJSONSpace(data, end)
		if i >= len(data) {
			return true, errJSONShape
		}
		switch data[i] {
		case '}':
			return true, nil
		case ',':
			i = skipJSONSpace(data, i+1)
		default:
			return true, errJSONShape
		}
	}
}

func skipJSONSpace(data string, i int) int {
	for i < len(data) {
		switch data[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// jsonValueEnd returns the index just past the JSON value that starts at
// data[i], or -1 when it does not end.
func jsonValueEnd(data string, i int) int {
	if i >= len(data) {
		return -1
	}
	switch data[i] {
	case '"':
		for j := i + 1; j < len(data); j++ {
			switch data[j] {
			case '\\':
				j++
			case '"':
				return j + 1
			}
		}
		return -1
	case '{', '[':
		depth := 0
		for j := i; j < len(data); j++ {
			switch data[j] {
			case '"':
				end := jsonValueEnd(data, j)
				if end < 0 {
					return -1
				}
				j = end - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1
				}
			}
		}
		return -1
	default:
		// A number, true, false or null.
		j := i
		for j < len(data) {
			switch data[j] {
			case ',', '}', ']', ' ', '\t', '\n', '\r':
				return j
			}
			j++
		}
		return j
	}
}

// verifySignature reports whether sig is a valid alg signature of input
// under key, exactly as go-jose v3.0.5's verifiers decide, with the key
// types algFitsKey admits: *rsa.PublicKey for RS* and PS*, an
// *ecdsa.PublicKey on the alg's curve for ES*, an ed25519.PublicKey for
// EdDSA and a non-empty []byte secret for HS*. Anything else is false.
func verifySignature(alg string, key interface{}, input, sig []byte) bool {
	switch alg {
	case "RS256", "RS384", "RS512", "PS256", "PS384", "PS512":
		pub, ok := key.(*rsa.PublicKey)
		if !ok || pub == nil || pub.N == nil {
			return false
		}
		h, digest := shaDigest(alg[2:], input)
		if alg[0] == 'R' {
			return rsa.VerifyPKCS1v15(pub, h, digest, sig) == nil
		}
		// RFC 7518 §3.5 has the signer use a salt as long as the hash.
		// go-jose v3.0.5 verifies with nil options, which is
		// PSSSaltLengthAuto: any salt length that the encoded message
		// holds. Kept, so that no signature it accepted is refused.
		return rsa.VerifyPSS(pub, h, digest, sig, nil) == nil
	case "ES256", "ES384", "ES512":
		pub, ok := key.(*ecdsa.PublicKey)
		// ecdsa.Verify panics on a key without coordinates; stored keys
		// always have them, but a bad key must not crash a request.
		if !ok || pub == nil || pub.Curve == nil || pub.X == nil || pub.Y == nil { //nolint:staticcheck // reading, not modifying, the coordinates
			return false
		}
		var curve elliptic.Curve
		var size int
		switch alg {
		case "ES256":
			curve, size = elliptic.P256(), 32
		case "ES384":
			curve, size = elliptic.P384(), 48
		default:
			curve, size = elliptic.P521(), 66
		}
		// RFC 7518 §3.4: R and S, each as long as the curve's order.
		if pub.Curve != curve || len(sig) != 2*size {
			return false
		}
		_, digest := shaDigest(alg[2:], input)
		r := new(big.Int).SetBytes(sig[:size])
		s := new(big.Int).SetBytes(sig[size:])
		return ecdsa.Verify(pub, digest, r, s)
	case "EdDSA":
		pub, ok := key.(ed25519.PublicKey)
		if !ok || len(pub) != ed25519.PublicKeySize || len(sig) != ed25519.SignatureSize {
			return false
		}
		return ed25519.Verify(pub, input, sig)
	case "HS256", "HS384", "HS512":
		secret, ok := key.([]byte)
		if !ok || len(secret) == 0 {
			// An empty secret is one anybody holds. The store refuses
			// secrets shorter than RFC 7518 §3.2's minimum anyway.
			return false
		}
		var newHash func() hash.Hash
		switch alg {
		case "HS256":
			newHash = sha256.New
		case "HS384":
			newHash = sha512.New384
		default:
			newHash = sha512.New
		}
		mac := hmac.New(newHash, secret)
		mac.Write(input)
		return hmac.Equal(mac.Sum(nil), sig)
	}
	return false
}

// shaDigest hashes input with SHA-256, SHA-384 or SHA-512 for bits "256",
// "384" or "512".
func shaDigest(bits string, input []byte) (crypto.Hash, []byte) {
	switch bits {
	case "256":
		d := sha256.Sum256(input)
		return crypto.SHA256, d[:]
	case "384":
		d := sha512.Sum384(input)
		return crypto.SHA384, d[:]
	default:
		d := sha512.Sum512(input)
		return crypto.SHA512, d[:]
	}
}
