package store

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/subtle"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/url"
	"slices"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v3"
)

// MinRSABits is the smallest RSA modulus accepted for a trusted key
// (NIST SP 800-131A; RFC 7518 §3.3 requires 2048 for RS*/PS*).
const MinRSABits = 2048

// MaxRSABits is the largest RSA modulus accepted: verifying with a larger
// one costs more CPU than any caller should be able to make the server
// spend on an unverified assertion.
const MaxRSABits = 8192

// MaxTrustLifetime bounds a relationship's MaxAssertionLifetime and
// AccessTokenLifetime: an assertion's jti is remembered for as long as it
// is valid, and a token that must outlive a day is not a workload token.
const MaxTrustLifetime = 24 * time.Hour

// MaxRequiredClaims bounds a relationship's RequiredClaims.
const MaxRequiredClaims = 32

// registeredClaims are checked by the handler itself; a relationship
// cannot pin them (RFC 7519 §4.1).
var registeredClaims = []string{"iss", "sub", "aud", "exp", "nbf", "iat", "jti"}

// MinSymmetricKeyBytes is the smallest shared secret accepted for HS*
// relationships. RFC 7518 §3.2 asks for a key at least as long as the hash
// output, so HS384 and HS512 need 48 and 64 bytes.
const MinSymmetricKeyBytes = 32

// keyKind names the kind of key material a JWS algorithm needs, in the words
// used in error messages.
type keyKind string

const (
	kindRSA       keyKind = "RSA"
	kindP256      keyKind = "EC P-256"
	kindP384      keyKind = "EC P-384"
	kindP521      keyKind = "EC P-521"
	kindEd25519   keyKind = "Ed25519"
	kindSymmetric keyKind = "symmetric"
)

// algKinds lists every JWS algorithm a relationship may name, with the key
// kind it verifies with. "none" is deliberately absent.
var algKinds = map[string]keyKind{
	string(jose.RS256): kindRSA,
	string(jose.RS384): kindRSA,
	string(jose.RS512): kindRSA,
	string(jose.PS256): kindRSA,
	string(jose.PS384): kindRSA,
	string(jose.PS512): kindRSA,
	string(jose.ES256): kindP256,
	string(jose.ES384): kindP384,
	string(jose.ES512): kindP521,
	string(jose.EdDSA): kindEd25519,
	string(jose.HS256): kindSymmetric,
	string(jose.HS384): kindSymmetric,
	string(jose.HS512): kindSymmetric,
}

// hmacKeyBytes is the minimum key length of each HS* algorithm (RFC 7518 §3.2).
var hmacKeyBytes = map[string]int{
	string(jose.HS256): 32,
	string(jose.HS384): 48,
	string(jose.HS512): 64,
}

// ParsePrivateKeysPEM reads the private keys of PEM data in the formats
// common tools write: PKCS #8 "PRIVATE KEY" (RSA, EC or Ed25519), PKCS #1
// "RSA PRIVATE KEY" and SEC 1 "EC PRIVATE KEY". The "EC PARAMETERS" block
// that openssl ecparam -genkey writes first is skipped. Public keys,
// certificates and encrypted keys are refused with an error that says so.
// It is for the keys this module signs with (JWT access tokens, the mint
// command); trust relationships take public keys only (ParseKeys).
func ParsePrivateKeysPEM(data []byte) ([]crypto.Signer, error) {
	var keys []crypto.Signer
	rest := data
	for n := 0; ; n++ {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if strings.Contains(block.Headers["Proc-Type"], "ENCRYPTED") || block.Type == "ENCRYPTED PRIVATE KEY" {
			return nil, fmt.Errorf("PEM block %d: encrypted private keys are not supported; decrypt it first", n)
		}
		var key any
		var err error
		switch block.Type {
		case "EC PARAMETERS":
			continue
		case "PRIVATE KEY":
			key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
		case "RSA PRIVATE KEY":
			key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
		case "EC PRIVATE KEY":
			key, err = x509.ParseECPrivateKey(block.Bytes)
		case "PUBLIC KEY", "RSA PUBLIC KEY", "CERTIFICATE":
			return nil, fmt.Errorf("PEM block %d: %q is a public key; signing needs the private key", n, block.Type)
		default:
			return nil, fmt.Errorf("PEM block %d: unsupported type %q; want PRIVATE KEY (PKCS #8), RSA PRIVATE KEY or EC PRIVATE KEY, unencrypted", n, block.Type)
		}
		if err != nil {
			return nil, fmt.Errorf("PEM block %d: %q: %w", n, block.Type, err)
		}
		signer, ok := key.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("PEM block %d: unsupported private key type %T", n, key)
		}
		keys = append(keys, signer)
	}
	if len(keys) == 0 {
		return nil, errors.New("no PEM private key found")
	}
	return keys, nil
}

// ParseKeys reads public keys for a trust relationship. It accepts PEM, with
// one or more blocks of type "PUBLIC KEY" (SPKI), "RSA PUBLIC KEY" (PKCS#1)
// or "CERTIFICATE" (whose public key is taken; the certificate itself is not
// verified nor kept), or JSON: a single JWK or a JWK Set ({"keys": [...]}).
// A JWK may be a symmetric ("oct") key, for HS* relationships.
//
// Private keys are refused rather than silently reduced to their public
// half: whoever supplies one has sent a secret where it does not belong.
// The keys are not validated further and get no KeyID here; NormalizeTrust
// does both.
func ParseKeys(data []byte) ([]jose.JSONWebKey, error) {
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) == 0 {
		return nil, errors.New("keys: input is empty")
	}
	if trimmed[0] == '{' {
		return parseJSONKeys(trimmed)
	}
	return parsePEMKeys(trimmed)
}

func parseJSONKeys(data []byte) ([]jose.JSONWebKey, error) {
	var probe map[string]json.RawMessage
	if err := json.Unmarshal(data, &probe); err != nil {
		return nil, fmt.Errorf("keys: input starts with '{' but is not valid JSON: %w", err)
	}

	// Look for private members before go-jose parses them, so that a
	// private key is named as such even when it is malformed.
	objects := []map[string]json.RawMessage{probe}
	if rawKeys, isSet := probe["keys"]; isSet {
		objects = nil
		_ = json.Unmarshal(rawKeys, &objects) // a bad set is reported below
	}
	for i, obj := range objects {
		if _, private := obj["d"]; private {
			return nil, fmt.Errorf("keys: JWK %d: this is a private key; give the public key", i)
		}
	}

	var keys []jose.JSONWebKey
	if _, isSet := probe["keys"]; isSet {
		var set jose.JSONWebKeySet
		if err := json.Unmarshal(data, &set); err != nil {
			return nil, fmt.Errorf("keys: invalid JWK Set: %w", err)
		}
		if len(set.Keys) == 0 {
			return nil, errors.New("keys: the JWK Set holds no keys")
		}
		keys = set.Keys
	} else {
		var key jose.JSONWebKey
		if err := json.Unmarshal(data, &key); err != nil {
			return nil, fmt.Errorf("keys: invalid JWK: %w", err)
		}
		keys = []jose.JSONWebKey{key}
	}

	for i := range keys {
		if isPrivate(keys[i].Key) {
			return nil, fmt.Errorf("keys: JWK %d: this is a private key; give the public key", i)
		}
	}
	return keys, nil
}

func parsePEMKeys(data []byte) ([]jose.JSONWebKey, error) {
	var keys []jose.JSONWebKey
	rest := data
	for n := 0; ; n++ {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		key, err := parsePEMBlock(block)
		if err != nil {
			return nil, fmt.Errorf("keys: PEM block %d: %w", n, err)
		}
		keys = append(keys, jose.JSONWebKey{Key: key})
	}
	if len(keys) == 0 {
		return nil, errors.New("keys: input is neither PEM nor a JSON Web Key (Set)")
	}
	return keys, nil
}

func parsePEMBlock(block *pem.Block) (any, error) {
	var key any
	var err error
	switch {
	case strings.Contains(block.Type, "PRIVATE KEY"):
		return nil, fmt.Errorf("%q: this is a private key; give the public key", block.Type)
	case block.Type == "PUBLIC KEY":
		key, err = x509.ParsePKIXPublicKey(block.Bytes)
	case block.Type == "RSA PUBLIC KEY":
		key, err = x509.ParsePKCS1PublicKey(block.Bytes)
	case block.Type == "CERTIFICATE":
		var cert *x509.Certificate
		cert, err = x509.ParseCertificate(block.Bytes)
		if err == nil {
			key = cert.PublicKey
		}
	default:
		return nil, fmt.Errorf("unsupported PEM type %q; want PUBLIC KEY, RSA PUBLIC KEY or CERTIFICATE", block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("%q: %w", block.Type, err)
	}
	switch key.(type) {
	case *rsa.PublicKey, *ecdsa.PublicKey, ed25519.PublicKey:
		return key, nil
	default:
		return nil, fmt.Errorf("%q: unsupported key type %T", block.Type, key)
	}
}

func isPrivate(key any) bool {
	switch key.(type) {
	case *rsa.PrivateKey, *ecdsa.PrivateKey, ed25519.PrivateKey, crypto.Signer, jose.OpaqueSigner:
		return true
	}
	return false
}

// Thumbprint returns the RFC 7638 JWK thumbprint of k with SHA-256, encoded
// as base64url without padding: the KeyID given to keys that have none.
// Symmetric keys have no thumbprint here (go-jose does not define one, and a
// hash of a shared secret should not travel in JWS headers); they need an
// explicit KeyID.
func Thumbprint(k *jose.JSONWebKey) (string, error) {
	if _, ok := k.Key.([]byte); ok {
		return "", errors.New("symmetric keys have no thumbprint; give them a kid")
	}
	sum, err := k.Thumbprint(crypto.SHA256)
	if err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(sum), nil
}

// NormalizeTrust validates t and normalises it in place: every static key
// gets a KeyID (its thumbprint when it had none) and the slices and maps
// are copied, so that a stored relationship shares no memory with the
// caller's value.
//
// It reports every problem at once (joined with errors.Join), each wrapping
// ErrInvalid and naming the field, so an operator can fix a relationship in
// one round. t is left untouched when an error is returned.
//
// Rules: Issuer is set; the subject rule is AnySubject alone or at least
// one of Subject, Subjects and SubjectPatterns (valid patterns, see
// CheckSubjectPattern); RequiredClaims name no registered claim; exactly
// one source of keys: Keys, JWKSURI (see CheckRemoteURL) or OIDCDiscovery
// (whose Issuer must then pass CheckRemoteURL); static keys are valid
// public keys (RSA of at least MinRSABits, EC on P-256, P-384 or P-521,
// Ed25519) or, only when Algorithms lists nothing but HS* algorithms,
// shared secrets of at least MinSymmetricKeyBytes (and of the hash size of
// every HS* algorithm listed) carrying a kid; a key's "use", if set, is
// "sig" and its "alg", if set, is a known JWS algorithm that fits the key;
// Algorithms holds known JWS algorithms only ("none" never, HS* not with
// remote keys); scope tokens follow RFC 6749 §3.3; client IDs are not
// empty; two keys with the same KeyID are the same key; lifetimes lie
// between one second and MaxTrustLifetime.
func NormalizeTrust(t *Trust) error {
	n := *t
	n.Scopes = cloneStrings(t.Scopes)
	n.Algorithms = cloneStrings(t.Algorithms)
	n.Clients = cloneStrings(t.Clients)
	n.Subjects = cloneStrings(t.Subjects)
	n.SubjectPatterns = cloneStrings(t.SubjectPatterns)
	if t.RequiredClaims != nil {
		n.RequiredClaims = make(map[string]string, len(t.RequiredClaims))
		for k, v := range t.RequiredClaims {
			n.RequiredClaims[k] = v
		}
	}
	if t.RequireJTI != nil {
		v := *t.RequireJTI
		n.RequireJTI = &v
	}
	if t.Keys != nil {
		n.Keys = make([]jose.JSONWebKey, len(t.Keys))
	}
	for i := range t.Keys {
		n.Keys[i] = cloneKey(t.Keys[i])
	}

	var errs []error
	invalid := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, args...)...))
	}

	if n.Issuer == "" {
		invalid("issuer: must not be empty")
	}
	named := n.Subject != "" || len(n.Subjects) > 0 || len(n.SubjectPatterns) > 0
	switch {
	case n.AnySubject && named:
		invalid("subject: subject, subjects and subject_patterns must be empty when any_subject is set")
	case !n.AnySubject && !named:
		invalid("subject: set subject, subjects or subject_patterns, or any_subject to accept every subject")
	}
	for i, sub := range n.Subjects {
		if sub == "" {
			invalid("subjects[%d]: must not be empty", i)
		} else if sub == n.Subject || slices.Contains(n.Subjects[:i], sub) {
			invalid("subjects[%d]: %q is listed twice", i, sub)
		}
	}
	for i, p := range n.SubjectPatterns {
		if err := CheckSubjectPattern(p); err != nil {
			invalid("subject_patterns[%d]: %v", i, err)
		} else if slices.Contains(n.SubjectPatterns[:i], p) {
			invalid("subject_patterns[%d]: %q is listed twice", i, p)
		}
	}
	if len(n.RequiredClaims) > MaxRequiredClaims {
		invalid("required_claims: at most %d claims", MaxRequiredClaims)
	}
	for _, name := range slices.Sorted(maps.Keys(n.RequiredClaims)) {
		switch {
		case name == "":
			invalid("required_claims: a claim name must not be empty")
		case slices.Contains(registeredClaims, name):
			invalid("required_claims: %q is checked by the server itself and cannot be pinned", name)
		}
	}
	for _, l := range []struct {
		name string
		d    Duration
	}{{"max_assertion_lifetime", n.MaxAssertionLifetime}, {"access_token_lifetime", n.AccessTokenLifetime}} {
		if l.d != 0 && (time.Duration(l.d) < time.Second || time.Duration(l.d) > MaxTrustLifetime) {
			invalid("%s: must be between 1s and %s, or unset", l.name, MaxTrustLifetime)
		}
	}
	for i, s := range n.Scopes {
		if !validScopeToken(s) {
			invalid("scopes[%d]: %q is not a valid scope token (RFC 6749 §3.3)", i, s)
		}
	}
	for i, c := range n.Clients {
		if c == "" {
			invalid("clients[%d]: must not be empty", i)
		}
	}

	// What Algorithms says about symmetric keys.
	hsListed := false // some HS* algorithm is listed
	onlyHS := len(n.Algorithms) > 0
	minSecret := MinSymmetricKeyBytes
	for i, alg := range n.Algorithms {
		kind, known := algKinds[alg]
		switch {
		case strings.EqualFold(alg, "none"):
			invalid("algorithms[%d]: \"none\" is never accepted", i)
			onlyHS = false
		case !known:
			invalid("algorithms[%d]: unknown JWS algorithm %q", i, alg)
			onlyHS = false
		case kind == kindSymmetric:
			hsListed = true
			minSecret = max(minSecret, hmacKeyBytes[alg])
		default:
			onlyHS = false
		}
	}

	sources := 0
	for _, set := range []bool{len(n.Keys) > 0, n.JWKSURI != "", n.OIDCDiscovery} {
		if set {
			sources++
		}
	}
	switch {
	case sources == 0:
		invalid("keys: give keys, a jwks_uri or oidc_discovery")
	case sources > 1:
		invalid("keys: give only one of keys, jwks_uri and oidc_discovery")
	}
	if n.JWKSURI != "" {
		if err := CheckRemoteURL(n.JWKSURI); err != nil {
			invalid("jwks_uri: %v", err)
		}
	}
	if n.OIDCDiscovery && n.Issuer != "" {
		if err := CheckRemoteURL(n.Issuer); err != nil {
			invalid("oidc_discovery: the issuer must be a URL its metadata can be fetched from: %v", err)
		} else if strings.ContainsAny(n.Issuer, "?#") {
			invalid("oidc_discovery: the issuer %q has a query; OpenID Connect issuers have none", n.Issuer)
		}
	}
	if n.Remote() && hsListed {
		invalid("algorithms: HS* algorithms need static shared keys; a published key set holds public keys only")
	}
	for i := range n.Keys {
		k := &n.Keys[i]
		kind, problem := checkKey(k, minSecret)
		if problem != "" {
			invalid("keys[%d]: %s", i, problem)
			continue
		}
		if k.Use != "" && k.Use != "sig" {
			invalid("keys[%d]: use is %q; must be \"sig\" (or unset)", i, k.Use)
		}
		if k.Algorithm != "" {
			algKind, known := algKinds[k.Algorithm]
			switch {
			case strings.EqualFold(k.Algorithm, "none"):
				invalid("keys[%d]: alg \"none\" is never accepted", i)
			case !known:
				invalid("keys[%d]: unknown JWS algorithm %q", i, k.Algorithm)
			case algKind != kind:
				invalid("keys[%d]: alg %s does not fit this %s key (it needs %s)", i, k.Algorithm, kind, algKind)
			case kind == kindSymmetric && len(k.Key.([]byte)) < hmacKeyBytes[k.Algorithm]:
				invalid("keys[%d]: %s needs a secret of at least %d bytes, this one has %d",
					i, k.Algorithm, hmacKeyBytes[k.Algorithm], len(k.Key.([]byte)))
			}
		}
		if kind == kindSymmetric {
			if !onlyHS {
				invalid("keys[%d]: a symmetric key needs algorithms to list only HS256, HS384 or HS512", i)
			}
			if k.KeyID == "" {
				invalid("keys[%d]: a symmetric key needs a kid", i)
			}
		} else if hsListed {
			invalid("keys[%d]: algorithms lists an HS* algorithm, which needs every key to be symmetric; this key is %s", i, kind)
		}
		if k.KeyID == "" && kind != kindSymmetric {
			kid, err := Thumbprint(k)
			if err != nil {
				invalid("keys[%d]: thumbprint: %v", i, err)
				continue
			}
			k.KeyID = kid
		}
	}

	// Same kid, same key: drop the repeat. Same kid, different key (or
	// different alg or use): an assertion's kid would be ambiguous, so
	// refuse.
	if len(errs) == 0 {
		kept := n.Keys[:0:0]
		for i := range n.Keys {
			j := slices.IndexFunc(kept, func(k jose.JSONWebKey) bool { return k.KeyID == n.Keys[i].KeyID })
			switch {
			case j < 0:
				kept = append(kept, n.Keys[i])
			case !SameKey(&kept[j], &n.Keys[i]):
				invalid("keys[%d]: kid %q is already used by a different key", i, n.Keys[i].KeyID)
			case kept[j].Algorithm != n.Keys[i].Algorithm || kept[j].Use != n.Keys[i].Use:
				invalid("keys[%d]: kid %q is already used by the same key with another alg or use", i, n.Keys[i].KeyID)
			}
		}
		n.Keys = kept
	}

	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	*t = n
	return nil
}

// checkKey reports the kind of k's key material, or a problem with it.
func checkKey(k *jose.JSONWebKey, minSecret int) (keyKind, string) {
	switch key := k.Key.(type) {
	case *rsa.PublicKey:
		if !k.Valid() {
			return "", "invalid RSA public key"
		}
		if key.E < 3 || key.E > 1<<31-1 || key.E%2 == 0 {
			// What crypto/rsa verifies with; go-jose reads larger "e"
			// values into an int without complaint (even as -1), and such
			// a key would be stored yet verify nothing.
			return "", "RSA public exponent must be odd, from 3 to 2^31-1"
		}
		if bits := key.N.BitLen(); bits < MinRSABits {
			return "", fmt.Sprintf("RSA key has %d bits; at least %d are required", bits, MinRSABits)
		} else if bits > MaxRSABits {
			return "", fmt.Sprintf("RSA key has %d bits; at most %d are accepted", bits, MaxRSABits)
		}
		return kindRSA, ""
	case *ecdsa.PublicKey:
		if !k.Valid() {
			return "", "invalid EC public key"
		}
		var kind keyKind
		switch key.Curve.Params().Name {
		case "P-256":
			kind = kindP256
		case "P-384":
			kind = kindP384
		case "P-521":
			kind = kindP521
		default:
			return "", fmt.Sprintf("EC curve %q is not accepted; use P-256, P-384 or P-521", key.Curve.Params().Name)
		}
		if _, err := key.ECDH(); err != nil {
			return "", "EC public key is not a point on its curve"
		}
		return kind, ""
	case ed25519.PublicKey:
		if !k.Valid() {
			return "", fmt.Sprintf("Ed25519 public key has %d bytes; want %d", len(key), ed25519.PublicKeySize)
		}
		return kindEd25519, ""
	case []byte:
		if len(key) < minSecret {
			return "", fmt.Sprintf("symmetric key has %d bytes; at least %d are required", len(key), minSecret)
		}
		return kindSymmetric, ""
	case nil:
		return "", "no key material"
	}
	if isPrivate(k.Key) {
		return "", "this is a private key; give the public key"
	}
	return "", fmt.Sprintf("unsupported key type %T", k.Key)
}

// SameKey reports whether a and b hold the same key material: equal
// shared secrets (compared in constant time), or public keys with the same
// RFC 7638 thumbprint.
func SameKey(a, b *jose.JSONWebKey) bool {
	as, aSym := a.Key.([]byte)
	bs, bSym := b.Key.([]byte)
	if aSym || bSym {
		return aSym && bSym && subtle.ConstantTimeCompare(as, bs) == 1
	}
	ta, errA := Thumbprint(a)
	tb, errB := Thumbprint(b)
	return errA == nil && errB == nil && ta == tb
}

// KIDConflict is a kid of a relationship's keys that another relationship
// of the same issuer uses for different key material.
type KIDConflict struct {
	// Key is the index of the key in the relationship checked.
	Key   int
	KID   string
	Other *Trust
}

// KIDConflicts reports the kids of t's keys that a relationship in others
// of the same issuer (t itself, by ID, excepted) uses for other key
// material: an assertion's kid would then pick keys of both, and which
// one verifies would depend on the relationship tried. The same key under
// the same kid is fine. Stores do not enforce this across relationships;
// the admin API and the configuration loader do.
func KIDConflicts(t *Trust, others []*Trust) []KIDConflict {
	var out []KIDConflict
	for _, other := range others {
		if other.Issuer != t.Issuer || (t.ID != "" && other.ID == t.ID) {
			continue
		}
		for i := range t.Keys {
			for j := range other.Keys {
				if other.Keys[j].KeyID == t.Keys[i].KeyID && !SameKey(&other.Keys[j], &t.Keys[i]) {
					out = append(out, KIDConflict{Key: i, KID: t.Keys[i].KeyID, Other: other})
				}
			}
		}
	}
	return out
}

// validScopeToken implements scope-token = 1*( %x21 / %x23-5B / %x5D-7E ).
func validScopeToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x21 || c == 0x22 || c == 0x5C || c > 0x7E {
			return false
		}
	}
	return true
}

func cloneStrings(s []string) []string {
	if s == nil {
		return nil
	}
	return append(make([]string, 0, len(s)), s...)
}

// cloneKey copies the parts of k that a caller could still change. Public
// key values themselves are immutable in practice and are shared.
func cloneKey(k jose.JSONWebKey) jose.JSONWebKey {
	if b, ok := k.Key.([]byte); ok {
		k.Key = bytes.Clone(b)
	}
	if k.Certificates != nil {
		k.Certificates = append([]*x509.Certificate(nil), k.Certificates...)
	}
	if k.CertificatesURL != nil {
		u := *k.CertificatesURL
		k.CertificatesURL = &u
	}
	k.CertificateThumbprintSHA1 = bytes.Clone(k.CertificateThumbprintSHA1)
	k.CertificateThumbprintSHA256 = bytes.Clone(k.CertificateThumbprintSHA256)
	return k
}

// NormalizeKey validates one key taken from a key set published by an
// issuer (a jwks_uri) and gives it its thumbprint as KeyID when it has
// none. Only asymmetric public keys qualify, by the rules NormalizeTrust
// applies to static keys: a published set never carries shared secrets,
// and a private key in it is refused rather than used.
func NormalizeKey(k *jose.JSONWebKey) error {
	kind, problem := checkKey(k, MinSymmetricKeyBytes)
	switch {
	case problem != "":
		return fmt.Errorf("%w: %s", ErrInvalid, problem)
	case kind == kindSymmetric:
		return fmt.Errorf("%w: a symmetric key has no place in a published key set", ErrInvalid)
	case k.Use != "" && k.Use != "sig":
		return fmt.Errorf("%w: use is %q, not \"sig\"", ErrInvalid, k.Use)
	}
	if k.Algorithm != "" {
		algKind, known := algKinds[k.Algorithm]
		switch {
		case !known:
			return fmt.Errorf("%w: unknown JWS algorithm %q", ErrInvalid, k.Algorithm)
		case algKind != kind:
			return fmt.Errorf("%w: alg %s does not fit this %s key", ErrInvalid, k.Algorithm, kind)
		}
	}
	if k.KeyID == "" {
		kid, err := Thumbprint(k)
		if err != nil {
			return fmt.Errorf("%w: thumbprint: %v", ErrInvalid, err)
		}
		k.KeyID = kid
	}
	return nil
}

// CheckRemoteURL reports whether u may be fetched for an issuer's keys or
// its OpenID Provider metadata: an absolute https URL, or http to a
// loopback address (for tests and sidecars), with no user information nor
// fragment. Only URLs configured by an operator are ever fetched; URLs
// carried by assertions ("jku", "x5u") never are.
func CheckRemoteURL(u string) error {
	p, err := url.Parse(u)
	if err != nil {
		return fmt.Errorf("%q is not a URL: %v", u, err)
	}
	switch {
	case p.Host == "" || !p.IsAbs():
		return fmt.Errorf("%q is not an absolute URL", u)
	case p.User != nil:
		return fmt.Errorf("%q must not carry user information", u)
	case p.Fragment != "" || strings.HasSuffix(u, "#"):
		return fmt.Errorf("%q must not have a fragment", u)
	case p.Scheme == "https":
		return nil
	case p.Scheme == "http" && IsLoopback(p.Hostname()):
		return nil
	case p.Scheme == "http":
		return fmt.Errorf("%q must use https (plain http is allowed for loopback addresses only)", u)
	}
	return fmt.Errorf("%q must be an https URL", u)
}

// IsLoopback reports whether host (without port) names the loopback
// interface: "localhost" or a loopback IP literal.
func IsLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
