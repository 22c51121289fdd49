package main

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v3"
	"github.com/go-jose/go-jose/v3/jwt"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// testRSAKey is generated once: RSA key generation is slow under -race.
var testRSAKey = sync.OnceValue(func() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
})

// writeKeyFile writes blocks as PEM to a new file and returns its path.
func writeKeyFile(t *testing.T, blocks ...*pem.Block) string {
	t.Helper()
	var buf bytes.Buffer
	for _, b := range blocks {
		require.NoError(t, pem.Encode(&buf, b))
	}
	path := filepath.Join(t.TempDir(), "key.pem")
	require.NoError(t, os.WriteFile(path, buf.Bytes(), 0o600))
	return path
}

func pkcs8Block(t *testing.T, key crypto.Signer) *pem.Block {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	require.NoError(t, err)
	return &pem.Block{Type: "PRIVATE KEY", Bytes: der}
}

func newECKey(t *testing.T, c elliptic.Curve) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(c, rand.Reader)
	require.NoError(t, err)
	return k
}

// testKeys are the key types and PEM encodings mint must read, with the
// alg it picks by default.
func testKeys(t *testing.T) []struct {
	name    string
	key     crypto.Signer
	path    string
	wantAlg string
} {
	ec256 := newECKey(t, elliptic.P256())
	ec384 := newECKey(t, elliptic.P384())
	sec1, err := x509.MarshalECPrivateKey(ec256)
	require.NoError(t, err)
	_, ed, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	rsaKey := testRSAKey()

	return []struct {
		name    string
		key     crypto.Signer
		path    string
		wantAlg string
	}{
		{"RSA PKCS#8", rsaKey, writeKeyFile(t, pkcs8Block(t, rsaKey)), "RS256"},
		{"RSA PKCS#1", rsaKey, writeKeyFile(t, &pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rsaKey)}), "RS256"},
		{"EC P-256 PKCS#8", ec256, writeKeyFile(t, pkcs8Block(t, ec256)), "ES256"},
		{"EC P-256 SEC1 with parameters", ec256, writeKeyFile(t,
			&pem.Block{Type: "EC PARAMETERS", Bytes: []byte{0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07}},
			&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1}), "ES256"},
		{"EC P-384", ec384, writeKeyFile(t, pkcs8Block(t, ec384)), "ES384"},
		{"Ed25519", ed, writeKeyFile(t, pkcs8Block(t, ed)), "EdDSA"},
	}
}

// verify checks the signature of token with pub and returns its header
// and claims.
func verify(t *testing.T, token string, pub crypto.PublicKey) (jose.Header, map[string]any) {
	t.Helper()
	parsed, err := jwt.ParseSigned(token)
	require.NoError(t, err)
	require.Len(t, parsed.Headers, 1)
	var claims map[string]any
	require.NoError(t, parsed.Claims(pub, &claims))
	return parsed.Headers[0], claims
}

// rawHeader decodes the protected header of a compact JWS as sent.
func rawHeader(t *testing.T, token string) map[string]any {
	t.Helper()
	b64, _, ok := strings.Cut(token, ".")
	require.True(t, ok)
	js, err := base64.RawURLEncoding.DecodeString(b64)
	require.NoError(t, err)
	var header map[string]any
	require.NoError(t, json.Unmarshal(js, &header))
	return header
}

func keyThumbprint(t *testing.T, pub crypto.PublicKey) string {
	t.Helper()
	sum, err := (&jose.JSONWebKey{Key: pub}).Thumbprint(crypto.SHA256)
	require.NoError(t, err)
	return base64.RawURLEncoding.EncodeToString(sum)
}

func TestMintKeyTypes(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	for _, k := range testKeys(t) {
		t.Run(k.name, func(t *testing.T) {
			token, err := mintAssertion(mintOptions{
				KeyFile:  k.path,
				Issuer:   "TestClient",
				Subject:  "User1",
				Audience: stringList{"https://api.mysite.com"},
			}, now)
			require.NoError(t, err)

			_, claims := verify(t, token, k.key.Public())
			assert.Equal(t, map[string]any{
				"alg": k.wantAlg,
				"kid": keyThumbprint(t, k.key.Public()),
				"typ": "JWT",
			}, rawHeader(t, token))

			jti, ok := claims["jti"].(string)
			require.True(t, ok, "jti is a string")
			raw, err := base64.RawURLEncoding.DecodeString(jti)
			require.NoError(t, err)
			assert.Len(t, raw, 16)
			delete(claims, "jti")
			assert.Equal(t, map[string]any{
				"iss": "TestClient",
				"sub": "User1",
				"aud": "https://api.mysite.com",
				"exp": float64(now.Add(5 * time.Minute).Unix()),
				"iat": float64(now.Unix()),
			}, claims)
		})
	}
}

func TestMintOptions(t *testing.T) {
	ec := newECKey(t, elliptic.P256())
	keyFile := writeKeyFile(t, pkcs8Block(t, ec))
	now := time.Unix(1_700_000_000, 0)
	base := func() mintOptions {
		return mintOptions{KeyFile: keyFile, Issuer: "iss", Subject: "sub", Audience: stringList{"aud"}, JTI: "fixed"}
	}
	tests := []struct {
		name       string
		change     func(o *mintOptions)
		wantClaims map[string]any
		wantKID    string
	}{
		{
			name:       "defaults",
			change:     func(*mintOptions) {},
			wantClaims: map[string]any{"iss": "iss", "sub": "sub", "aud": "aud", "exp": 1_700_000_300.0, "iat": 1_700_000_000.0, "jti": "fixed"},
			wantKID:    keyThumbprint(t, ec.Public()),
		},
		{
			name: "several audiences, lifetime, nbf, scope, extra claims",
			change: func(o *mintOptions) {
				o.Audience = append(o.Audience, "aud2")
				o.Lifetime = time.Hour
				o.NotBefore = 1_699_999_000
				o.Scope = "read write"
				o.Claims = stringList{"tenant=acme", "note=a=b"}
			},
			wantClaims: map[string]any{
				"iss": "iss", "sub": "sub", "aud": []any{"aud", "aud2"}, "exp": 1_700_003_600.0, "iat": 1_700_000_000.0,
				"nbf": 1_699_999_000.0, "jti": "fixed", "scope": "read write", "tenant": "acme", "note": "a=b",
			},
			wantKID: keyThumbprint(t, ec.Public()),
		},
		{
			name: "explicit exp, iat and kid",
			change: func(o *mintOptions) {
				o.Expiry = 1_800_000_000
				o.IssuedAt = 1_600_000_000
				o.KeyID = "my-key"
			},
			wantClaims: map[string]any{"iss": "iss", "sub": "sub", "aud": "aud", "exp": 1_800_000_000.0, "iat": 1_600_000_000.0, "jti": "fixed"},
			wantKID:    "my-key",
		},
		{
			name: "no iat, no jti, no kid",
			change: func(o *mintOptions) {
				o.NoIssuedAt = true
				o.JTI = ""
				o.NoJTI = true
				o.NoKeyID = true
			},
			wantClaims: map[string]any{"iss": "iss", "sub": "sub", "aud": "aud", "exp": 1_700_000_300.0},
			wantKID:    "",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := base()
			tt.change(&opts)
			token, err := mintAssertion(opts, now)
			require.NoError(t, err)
			_, claims := verify(t, token, ec.Public())
			assert.Equal(t, tt.wantClaims, claims)
			wantHeader := map[string]any{"alg": "ES256", "typ": "JWT"}
			if tt.wantKID != "" {
				wantHeader["kid"] = tt.wantKID
			}
			assert.Equal(t, wantHeader, rawHeader(t, token))
		})
	}
}

func TestMintAlg(t *testing.T) {
	key := testRSAKey()
	keyFile := writeKeyFile(t, pkcs8Block(t, key))
	opts := mintOptions{KeyFile: keyFile, Issuer: "i", Subject: "s", Audience: stringList{"a"}, Alg: "PS384"}
	token, err := mintAssertion(opts, time.Now())
	require.NoError(t, err)
	header, _ := verify(t, token, key.Public())
	assert.Equal(t, "PS384", header.Algorithm)

	opts.Alg = "ES256"
	_, err = mintAssertion(opts, time.Now())
	assert.ErrorContains(t, err, "-alg ES256 does not fit the key")

	opts.Alg = "HS256"
	_, err = mintAssertion(opts, time.Now())
	assert.ErrorContains(t, err, "-alg HS256 does not fit the key")
}

func TestRunMint(t *testing.T) {
	key := newECKey(t, elliptic.P256())
	keyFile := writeKeyFile(t, pkcs8Block(t, key))
	var stdout, stderr bytes.Buffer
	before := time.Now().Unix()
	err := runMint(t.Context(), []string{
		"-key", keyFile, "-iss", "TestClient", "-sub", "User1",
		"-aud", "https://api.mysite.com", "-aud", "https://other",
		"-lifetime", "2m", "-scope", "a b", "-claim", "x=y", "-no-jti",
	}, &stdout, &stderr)
	after := time.Now().Unix()
	require.NoError(t, err)
	assert.Empty(t, stderr.String())

	out := stdout.String()
	require.True(t, strings.HasSuffix(out, "\n"))
	token := strings.TrimSuffix(out, "\n")
	assert.NotContains(t, token, "\n")
	_, claims := verify(t, token, key.Public())
	assert.Equal(t, []any{"https://api.mysite.com", "https://other"}, claims["aud"])
	assert.Equal(t, "a b", claims["scope"])
	assert.Equal(t, "y", claims["x"])
	assert.NotContains(t, claims, "jti")
	iat := int64(claims["iat"].(float64))
	assert.GreaterOrEqual(t, iat, before)
	assert.LessOrEqual(t, iat, after)
	assert.Equal(t, iat+120, int64(claims["exp"].(float64)))
}

func TestRunMintUsageErrors(t *testing.T) {
	keyFile := writeKeyFile(t, pkcs8Block(t, newECKey(t, elliptic.P256())))
	ok := []string{"-key", keyFile, "-iss", "i", "-sub", "s", "-aud", "a"}
	tests := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{"nothing", nil, "missing required flag(s) -key, -iss, -sub, -aud"},
		{"no aud", []string{"-key", keyFile, "-iss", "i", "-sub", "s"}, "missing required flag(s) -aud"},
		{"empty aud", append(ok, "-aud", ""), "-aud must not be empty"},
		{"lifetime and exp", append(ok, "-lifetime", "1m", "-exp", "1800000000"), "use -lifetime or -exp, not both"},
		{"negative lifetime", append(ok, "-lifetime", "-1m"), "-lifetime must be positive"},
		{"iat and no-iat", append(ok, "-iat", "1", "-no-iat"), "use -iat or -no-iat, not both"},
		{"jti and no-jti", append(ok, "-jti", "x", "-no-jti"), "use -jti or -no-jti, not both"},
		{"kid and no-kid", append(ok, "-kid", "x", "-no-kid"), "use -kid or -no-kid, not both"},
		{"claim without value", append(ok, "-claim", "tenant"), `-claim "tenant": want NAME=VALUE`},
		{"claim overriding iss", append(ok, "-claim", "iss=evil"), "set iss with -iss"},
		{"claim twice", append(ok, "-claim", "a=1", "-claim", "a=2"), "a given twice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			err := runMint(t.Context(), tt.args, &stdout, &stderr)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.wantErr)
			assert.Equal(t, 2, exitCode(err, &stderr))
			assert.Empty(t, stdout.String())
		})
	}
}

func TestRunMintKeyErrors(t *testing.T) {
	ec := newECKey(t, elliptic.P256())
	pubDER, err := x509.MarshalPKIXPublicKey(ec.Public())
	require.NoError(t, err)
	p224 := newECKey(t, elliptic.P224())
	p224DER, err := x509.MarshalECPrivateKey(p224)
	require.NoError(t, err)
	notPEM := filepath.Join(t.TempDir(), "key")
	require.NoError(t, os.WriteFile(notPEM, []byte("not a key"), 0o600))

	tests := []struct {
		name    string
		keyFile string
		wantErr string
	}{
		{"missing file", filepath.Join(t.TempDir(), "nope"), "no such file"},
		{"not PEM", notPEM, "no PEM private key found"},
		{"public key", writeKeyFile(t, &pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}), `PEM block 0: "PUBLIC KEY" is a public key; signing needs the private key`},
		{"encrypted", writeKeyFile(t, &pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: []byte{1}}), "encrypted private keys are not supported"},
		{"legacy encrypted", writeKeyFile(t, &pem.Block{Type: "RSA PRIVATE KEY", Headers: map[string]string{"Proc-Type": "4,ENCRYPTED", "DEK-Info": "AES-128-CBC,00"}, Bytes: []byte{1}}), "encrypted private keys are not supported"},
		{"garbage DER", writeKeyFile(t, &pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1, 2, 3}}), "key.pem:"},
		{"P-224", writeKeyFile(t, &pem.Block{Type: "EC PRIVATE KEY", Bytes: p224DER}), "unsupported EC curve P-224"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			err := runMint(t.Context(), []string{"-key", tt.keyFile, "-iss", "i", "-sub", "s", "-aud", "a"}, &stdout, &stderr)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.wantErr)
			assert.Equal(t, 1, exitCode(err, &stderr))
			assert.Empty(t, stdout.String())
		})
	}
}

func TestMintUsesKeygenKey(t *testing.T) {
	prefix := filepath.Join(t.TempDir(), "id_ec")
	stdout, err := keygen(t, "-type", "ec", "-out", prefix)
	require.NoError(t, err)
	var jwk jose.JSONWebKey
	require.NoError(t, jwk.UnmarshalJSON([]byte(stdout[:strings.Index(stdout, "\nkid:")])))

	token, err := mintAssertion(mintOptions{KeyFile: prefix, Issuer: "i", Subject: "s", Audience: stringList{"a"}}, time.Now())
	require.NoError(t, err)
	header, _ := verify(t, token, jwk.Key)
	assert.Equal(t, jwk.KeyID, header.KeyID, "mint's default kid matches keygen's JWK")
	assert.Equal(t, jwk.Algorithm, header.Algorithm)
}
