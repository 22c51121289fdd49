package main

import (
	"context"
	"crypto"
	"crypto/rand"
	"encoding/base64"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v3"
	"github.com/go-jose/go-jose/v3/jwt"

	"github.com/jwtbearer/jwtbearer/store"
)

// defaultLifetime is how long a minted assertion is valid when neither
// -lifetime nor -exp is given: long enough for a slow copy and paste,
// short enough to stay under a server's maximum assertion lifetime.
const defaultLifetime = 5 * time.Minute

const mintSynopsis = "-key FILE -iss ISS -sub SUB -aud AUD [-aud AUD2 ...] [-lifetime 5m | -exp UNIX] [-nbf UNIX] " +
	"[-iat UNIX | -no-iat] [-jti VALUE | -no-jti] [-scope \"a b\"] [-alg ALG] [-kid KID | -no-kid] [-claim NAME=VALUE ...]"

// registeredClaims are set by their own flags, so -claim may not set them.
var registeredClaims = []string{"iss", "sub", "aud", "exp", "nbf", "iat", "jti", "scope"}

// mintOptions describes one assertion. The zero value of each optional
// field means "the default": see addFlags for what each one is.
type mintOptions struct {
	KeyFile    string
	Issuer     string
	Subject    string
	Audience   stringList
	Lifetime   time.Duration // 0: defaultLifetime
	Expiry     int64         // Unix time; 0: now + Lifetime
	NotBefore  int64         // Unix time; 0: no nbf claim
	IssuedAt   int64         // Unix time; 0: now
	NoIssuedAt bool
	JTI        string // "": random
	NoJTI      bool
	Scope      string // space-separated; "": no scope claim
	Alg        string // "": by key type
	KeyID      string // "": RFC 7638 thumbprint
	NoKeyID    bool
	Claims     stringList // NAME=VALUE
}

// addFlags registers the mint flags on fs; token registers the same ones.
func (o *mintOptions) addFlags(fs *flag.FlagSet) {
	fs.StringVar(&o.KeyFile, "key", "", "PEM private key `FILE` (PKCS#8, PKCS#1 or SEC1) (required)")
	fs.StringVar(&o.Issuer, "iss", "", "issuer `ISS`, usually the client ID (required)")
	fs.StringVar(&o.Subject, "sub", "", "subject `SUB`, the user or service the token is for (required)")
	fs.Var(&o.Audience, "aud", "audience `AUD`, usually the token endpoint URL; repeat for several (required)")
	fs.DurationVar(&o.Lifetime, "lifetime", 0, "set exp to now + `DURATION` (default 5m)")
	fs.Int64Var(&o.Expiry, "exp", 0, "expiry as a Unix `TIME`, instead of -lifetime")
	fs.Int64Var(&o.NotBefore, "nbf", 0, "not-before as a Unix `TIME` (default none)")
	fs.Int64Var(&o.IssuedAt, "iat", 0, "issued-at as a Unix `TIME` (default now)")
	fs.BoolVar(&o.NoIssuedAt, "no-iat", false, "omit the iat claim")
	fs.StringVar(&o.JTI, "jti", "", "JWT ID `VALUE` (default 16 random bytes, base64url)")
	fs.BoolVar(&o.NoJTI, "no-jti", false, "omit the jti claim")
	fs.StringVar(&o.Scope, "scope", "", "space-separated `SCOPES` for the scope claim")
	fs.StringVar(&o.Alg, "alg", "", "signature `ALG` (default RS256 for RSA, ES256/ES384/ES512 by curve, EdDSA for Ed25519)")
	fs.StringVar(&o.KeyID, "kid", "", "key ID header `KID` (default the RFC 7638 thumbprint of the public key)")
	fs.BoolVar(&o.NoKeyID, "no-kid", false, "omit the kid header")
	fs.Var(&o.Claims, "claim", "extra string claim as `NAME=VALUE`; repeatable")
}

// validate checks the options that need no key file, naming every missing
// required flag at once.
func (o *mintOptions) validate() error {
	var missing []string
	for _, f := range []struct {
		name  string
		unset bool
	}{
		{"-key", o.KeyFile == ""},
		{"-iss", o.Issuer == ""},
		{"-sub", o.Subject == ""},
		{"-aud", len(o.Audience) == 0},
	} {
		if f.unset {
			missing = append(missing, f.name)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("missing required flag(s) %s", strings.Join(missing, ", "))
	}
	switch {
	case slices.Contains(o.Audience, ""):
		return fmt.Errorf("-aud must not be empty")
	case o.Lifetime != 0 && o.Expiry != 0:
		return fmt.Errorf("use -lifetime or -exp, not both")
	case o.Lifetime < 0:
		return fmt.Errorf("-lifetime must be positive")
	case o.IssuedAt != 0 && o.NoIssuedAt:
		return fmt.Errorf("use -iat or -no-iat, not both")
	case o.JTI != "" && o.NoJTI:
		return fmt.Errorf("use -jti or -no-jti, not both")
	case o.KeyID != "" && o.NoKeyID:
		return fmt.Errorf("use -kid or -no-kid, not both")
	}
	_, err := o.extraClaims()
	return err
}

// extraClaims parses the -claim values.
func (o *mintOptions) extraClaims() (map[string]string, error) {
	claims := make(map[string]string, len(o.Claims))
	for _, c := range o.Claims {
		name, value, ok := strings.Cut(c, "=")
		switch {
		case !ok || name == "":
			return nil, fmt.Errorf("-claim %q: want NAME=VALUE", c)
		case slices.Contains(registeredClaims, name):
			return nil, fmt.Errorf("-claim %q: set %s with -%s", c, name, name)
		}
		if _, dup := claims[name]; dup {
			return nil, fmt.Errorf("-claim %q: %s given twice", c, name)
		}
		claims[name] = value
	}
	return claims, nil
}

// runMint prints a signed assertion, for use with curl as in the bshaffer
// walkthrough or for testing a server by hand.
func runMint(_ context.Context, args []string, stdout, stderr io.Writer) error {
	var opts mintOptions
	fs := newFlagSet("mint", mintSynopsis, stderr)
	opts.addFlags(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := opts.validate(); err != nil {
		return usageErrorf(false, "mint: %v", err)
	}
	assertion, err := mintAssertion(opts, time.Now())
	if err != nil {
		return fmt.Errorf("mint: %w", err)
	}
	_, err = fmt.Fprintln(stdout, assertion)
	return err
}

// mintAssertion signs the JWT bearer assertion of RFC 7523 §2.1 described
// by opts, taking now as the current time. mint and token both use it.
func mintAssertion(opts mintOptions, now time.Time) (string, error) {
	// runMint and runToken validate first to report usage errors; checking
	// again here keeps direct callers from signing a malformed assertion.
	if err := opts.validate(); err != nil {
		return "", err
	}
	key, err := loadPrivateKey(opts.KeyFile)
	if err != nil {
		return "", err
	}
	algs, err := signingAlgs(key.Public())
	if err != nil {
		return "", fmt.Errorf("%s: %w", opts.KeyFile, err)
	}
	alg := algs[0]
	if opts.Alg != "" {
		alg = jose.SignatureAlgorithm(opts.Alg)
		if !slices.Contains(algs, alg) {
			return "", fmt.Errorf("-alg %s does not fit the key in %s (it can sign with %v)", opts.Alg, opts.KeyFile, algs)
		}
	}
	kid := opts.KeyID
	if kid == "" && !opts.NoKeyID {
		kid = thumbprint(&jose.JSONWebKey{Key: key.Public()})
	}
	signer, err := jose.NewSigner(
		jose.SigningKey{Algorithm: alg, Key: jose.JSONWebKey{Key: key, KeyID: kid}},
		(&jose.SignerOptions{}).WithType("JWT"),
	)
	if err != nil {
		return "", fmt.Errorf("signer: %w", err)
	}

	claims, err := assertionClaims(opts, now)
	if err != nil {
		return "", err
	}
	token, err := jwt.Signed(signer).Claims(claims).CompactSerialize()
	if err != nil {
		return "", fmt.Errorf("sign: %w", err)
	}
	return token, nil
}

// assertionClaims builds the claim set. aud is a plain string when there
// is one audience, as most servers and the bshaffer example expect, and an
// array otherwise (RFC 7519 §4.1.3 allows both).
func assertionClaims(opts mintOptions, now time.Time) (map[string]any, error) {
	extra, err := opts.extraClaims()
	if err != nil {
		return nil, err
	}
	claims := make(map[string]any, len(extra)+8)
	for name, value := range extra {
		claims[name] = value
	}
	claims["iss"] = opts.Issuer
	claims["sub"] = opts.Subject
	if len(opts.Audience) == 1 {
		claims["aud"] = opts.Audience[0]
	} else {
		claims["aud"] = []string(opts.Audience)
	}

	exp := opts.Expiry
	if exp == 0 {
		lifetime := opts.Lifetime
		if lifetime == 0 {
			lifetime = defaultLifetime
		}
		exp = now.Add(lifetime).Unix()
	}
	claims["exp"] = exp
	if !opts.NoIssuedAt {
		iat := opts.IssuedAt
		if iat == 0 {
			iat = now.Unix()
		}
		claims["iat"] = iat
	}
	if opts.NotBefore != 0 {
		claims["nbf"] = opts.NotBefore
	}
	if !opts.NoJTI {
		jti := opts.JTI
		if jti == "" {
			if jti, err = randomJTI(); err != nil {
				return nil, err
			}
		}
		claims["jti"] = jti
	}
	if opts.Scope != "" {
		claims["scope"] = opts.Scope
	}
	return claims, nil
}

// randomJTI returns 16 random bytes in base64url: unique enough that a
// server's replay check never rejects a fresh assertion.
func randomJTI() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("jti: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// loadPrivateKey reads the first PEM private key of the file at path, in
// the formats store.ParsePrivateKeysPEM takes: those keygen, openssl and
// ssh-keygen -m PEM write.
func loadPrivateKey(path string) (crypto.Signer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	keys, err := store.ParsePrivateKeysPEM(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return keys[0], nil
}

// stringList is a repeatable string flag (-aud, -claim).
type stringList []string

func (l *stringList) String() string { return strings.Join(*l, ", ") }

func (l *stringList) Set(v string) error {
	*l = append(*l, v)
	return nil
}
