package store_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/jwtbearer/jwtbearer/store"
)

var (
	rsaKey = sync.OnceValue(func() *rsa.PrivateKey { return must(rsa.GenerateKey(rand.Reader, 2048)) })
	rsa1k  = sync.OnceValue(func() *rsa.PrivateKey { return must(rsa.GenerateKey(rand.Reader, 1024)) })
	p256   = sync.OnceValue(func() *ecdsa.PrivateKey { return must(ecdsa.GenerateKey(elliptic.P256(), rand.Reader)) })
	p256b  = sync.OnceValue(func() *ecdsa.PrivateKey { return must(ecdsa.GenerateKey(elliptic.P256(), rand.Reader)) })
	p384   = sync.OnceValue(func() *ecdsa.PrivateKey { return must(ecdsa.GenerateKey(elliptic.P384(), rand.Reader)) })
	p521   = sync.OnceValue(func() *ecdsa.PrivateKey { return must(ecdsa.GenerateKey(elliptic.P521(), rand.Reader)) })
	p224   = sync.OnceValue(func() *ecdsa.PrivateKey { return must(ecdsa.GenerateKey(elliptic.P224(), rand.Reader)) })
	edKey  = sync.OnceValue(func() ed25519.PrivateKey {
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			panic(err)
		}
		return priv
	})
)

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func spki(pub any) []byte {
	return pemBlock("PUBLIC KEY", must(x509.MarshalPKIXPublicKey(pub)))
}

func selfSigned(t *testing.T, priv crypto.Signer) []byte {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "issuer.example"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, priv.Public(), priv)
	require.NoError(t, err)
	return pemBlock("CERTIFICATE", der)
}

func jwkJSON(t *testing.T, k jose.JSONWebKey) []byte {
	t.Helper()
	b, err := json.Marshal(k)
	require.NoError(t, err)
	return b
}

func thumb(t *testing.T, key any) string {
	t.Helper()
	tp, err := store.Thumbprint(&jose.JSONWebKey{Key: key})
	require.NoError(t, err)
	return tp
}

func TestParseKeys(t *testing.T) {
	rsaPub := &rsaKey().PublicKey
	ecPub := &p256().PublicKey
	edPub := edKey().Public().(ed25519.PublicKey)

	tests := []struct {
		name  string
		input []byte
		want  []any // public keys, in order
	}{
		{"PEM SPKI RSA", spki(rsaPub), []any{rsaPub}},
		{"PEM SPKI EC", spki(ecPub), []any{ecPub}},
		{"PEM SPKI Ed25519", spki(edPub), []any{edPub}},
		{"PEM PKCS#1", pemBlock("RSA PUBLIC KEY", x509.MarshalPKCS1PublicKey(rsaPub)), []any{rsaPub}},
		{"PEM certificate", selfSigned(t, p256()), []any{ecPub}},
		{"several PEM blocks with text around", []byte("subject=CN=issuer\n" + string(spki(rsaPub)) + "\n" +
			string(selfSigned(t, edKey())) + string(pemBlock("RSA PUBLIC KEY", x509.MarshalPKCS1PublicKey(rsaPub)))),
			[]any{rsaPub, edPub, rsaPub}},
		{"JWK", jwkJSON(t, jose.JSONWebKey{Key: ecPub, KeyID: "k1"}), []any{ecPub}},
		{"JWK Set", []byte(`{"keys":[` + string(jwkJSON(t, jose.JSONWebKey{Key: rsaPub, KeyID: "a"})) + `,` +
			string(jwkJSON(t, jose.JSONWebKey{Key: edPub, KeyID: "b"})) + `]}`), []any{rsaPub, edPub}},
		{"JWK with surrounding whitespace", []byte("\n  " + string(jwkJSON(t, jose.JSONWebKey{Key: ecPub})) + "\n"), []any{ecPub}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			keys, err := store.ParseKeys(tc.input)
			require.NoError(t, err)
			require.Len(t, keys, len(tc.want))
			for i, want := range tc.want {
				assert.True(t, keys[i].IsPublic(), "key %d is public", i)
				assert.Equal(t, thumb(t, want), thumb(t, keys[i].Key), "key %d", i)
			}
		})
	}

	t.Run("JWK keeps kid, alg and use", func(t *testing.T) {
		keys, err := store.ParseKeys(jwkJSON(t, jose.JSONWebKey{Key: ecPub, KeyID: "k1", Algorithm: "ES256", Use: "sig"}))
		require.NoError(t, err)
		require.Len(t, keys, 1)
		assert.Equal(t, "k1", keys[0].KeyID)
		assert.Equal(t, "ES256", keys[0].Algorithm)
		assert.Equal(t, "sig", keys[0].Use)
	})

	t.Run("symmetric JWK", func(t *testing.T) {
		secret := []byte(strings.Repeat("s", 32))
		keys, err := store.ParseKeys(jwkJSON(t, jose.JSONWebKey{Key: secret, KeyID: "shared"}))
		require.NoError(t, err)
		require.Len(t, keys, 1)
		assert.Equal(t, secret, keys[0].Key)
	})
}

func TestParsePrivateKeysPEM(t *testing.T) {
	ec := p256()
	sec1, err := x509.MarshalECPrivateKey(ec)
	require.NoError(t, err)
	pkcs8, err := x509.MarshalPKCS8PrivateKey(edKey())
	require.NoError(t, err)
	rsaPriv := rsaKey()
	spki, err := x509.MarshalPKIXPublicKey(&rsaPriv.PublicKey)
	require.NoError(t, err)

	keys, err := store.ParsePrivateKeysPEM(slices.Concat(
		pemBlock("EC PARAMETERS", []byte{0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07}),
		pemBlock("EC PRIVATE KEY", sec1),
		pemBlock("PRIVATE KEY", pkcs8),
		pemBlock("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rsaPriv)),
	))
	require.NoError(t, err)
	require.Len(t, keys, 3, "EC PARAMETERS skipped")
	assert.True(t, ec.Equal(keys[0]))
	assert.IsType(t, ed25519.PrivateKey{}, keys[1])
	assert.True(t, rsaPriv.Equal(keys[2]))

	for _, tc := range []struct {
		name string
		data []byte
		want string
	}{
		{"empty", nil, "no PEM private key found"},
		{"not PEM", []byte("hello"), "no PEM private key found"},
		{"parameters only", pemBlock("EC PARAMETERS", []byte{6, 1, 0}), "no PEM private key found"},
		{"public key", pemBlock("PUBLIC KEY", spki), `PEM block 0: "PUBLIC KEY" is a public key; signing needs the private key`},
		{"encrypted PKCS #8", pemBlock("ENCRYPTED PRIVATE KEY", []byte{1}), "encrypted private keys are not supported"},
		{"legacy encrypted", pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Headers: map[string]string{"Proc-Type": "4,ENCRYPTED", "DEK-Info": "AES-128-CBC,00"}, Bytes: []byte{1}}), "encrypted private keys are not supported"},
		{"unknown type", pemBlock("OPENSSH PRIVATE KEY", []byte{1}), `unsupported type "OPENSSH PRIVATE KEY"`},
		{"corrupt", pemBlock("EC PRIVATE KEY", []byte{1, 2, 3}), `PEM block 0: "EC PRIVATE KEY":`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := store.ParsePrivateKeysPEM(tc.data)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

func TestParseKeysRejects(t *testing.T) {
	const private = "this is a private key; give the public key"
	tests := []struct {
		name    string
		input   []byte
		wantErr string
	}{
		{"empty", nil, "empty"},
		{"blank", []byte(" \n\t"), "empty"},
		{"garbage", []byte("not a key at all"), "neither PEM nor a JSON Web Key"},
		{"base64 DER without PEM armour", []byte(base64.StdEncoding.EncodeToString(must(x509.MarshalPKIXPublicKey(&p256().PublicKey)))), "neither PEM nor a JSON Web Key"},
		{"broken JSON", []byte(`{"kty":`), "not valid JSON"},
		{"JWK of unknown type", []byte(`{"kty":"XYZ"}`), "invalid JWK"},
		{"empty JWK Set", []byte(`{"keys":[]}`), "holds no keys"},
		{"PKCS#8 private key", pemBlock("PRIVATE KEY", must(x509.MarshalPKCS8PrivateKey(p256()))), private},
		{"PKCS#1 private key", pemBlock("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rsaKey())), private},
		{"SEC 1 private key", pemBlock("EC PRIVATE KEY", must(x509.MarshalECPrivateKey(p256()))), private},
		{"private key after a public one", append(spki(&p256().PublicKey), pemBlock("PRIVATE KEY", must(x509.MarshalPKCS8PrivateKey(edKey())))...), private},
		{"private JWK", jwkJSON(t, jose.JSONWebKey{Key: rsaKey()}), private},
		{"malformed private JWK", []byte(`{"kty":"RSA","n":"AQAB","e":"AQAB","d":"AQAB"}`), private},
		{"private JWK in a set", []byte(`{"keys":[` + string(jwkJSON(t, jose.JSONWebKey{Key: p256()})) + `]}`), private},
		{"unsupported PEM type", pemBlock("CERTIFICATE REQUEST", []byte{1, 2, 3}), "unsupported PEM type"},
		{"corrupt PUBLIC KEY", pemBlock("PUBLIC KEY", []byte{1, 2, 3}), `"PUBLIC KEY"`},
		{"corrupt CERTIFICATE", pemBlock("CERTIFICATE", []byte{1, 2, 3}), `"CERTIFICATE"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			keys, err := store.ParseKeys(tc.input)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.wantErr)
			assert.Nil(t, keys)
		})
	}
}

func TestThumbprint(t *testing.T) {
	// RFC 7638 §3.1 example.
	var k jose.JSONWebKey
	require.NoError(t, json.Unmarshal([]byte(`{"kty":"RSA","e":"AQAB","alg":"RS256","kid":"2011-04-29",`+
		`"n":"0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"}`), &k))
	tp, err := store.Thumbprint(&k)
	require.NoError(t, err)
	assert.Equal(t, "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs", tp)

	_, err = store.Thumbprint(&jose.JSONWebKey{Key: []byte(strings.Repeat("s", 32))})
	assert.Error(t, err, "symmetric keys have no thumbprint")
}

// validTrust is a relationship NormalizeTrust accepts; cases change one
// thing each.
func validTrust(keys ...jose.JSONWebKey) store.Trust {
	if len(keys) == 0 {
		keys = []jose.JSONWebKey{{Key: &p256().PublicKey}}
	}
	return store.Trust{Issuer: "https://issuer.example", Subject: "alice", Scopes: []string{"read"}, Keys: keys}
}

func secret(n int) []byte { return []byte(strings.Repeat("k", n)) }

func TestNormalizeTrustAccepts(t *testing.T) {
	tests := []struct {
		name string
		edit func(*store.Trust)
	}{
		{"EC P-256", func(*store.Trust) {}},
		{"any subject", func(tr *store.Trust) { tr.Subject, tr.AnySubject = "", true }},
		{"RSA 2048 with RS256 and PS512", func(tr *store.Trust) {
			tr.Keys = []jose.JSONWebKey{{Key: &rsaKey().PublicKey, Algorithm: "RS256"}, {Key: &rsaKey().PublicKey, Algorithm: "PS512", KeyID: "ps"}}
		}},
		{"EC P-384 ES384", func(tr *store.Trust) { tr.Keys = []jose.JSONWebKey{{Key: &p384().PublicKey, Algorithm: "ES384"}} }},
		{"EC P-521 ES512", func(tr *store.Trust) { tr.Keys = []jose.JSONWebKey{{Key: &p521().PublicKey, Algorithm: "ES512"}} }},
		{"Ed25519 EdDSA", func(tr *store.Trust) {
			tr.Keys = []jose.JSONWebKey{{Key: edKey().Public(), Algorithm: "EdDSA", Use: "sig"}}
		}},
		{"algorithms", func(tr *store.Trust) { tr.Algorithms = []string{"ES256", "RS256", "PS256", "EdDSA"} }},
		{"HS256 shared secret", func(tr *store.Trust) {
			tr.Algorithms = []string{"HS256"}
			tr.Keys = []jose.JSONWebKey{{Key: secret(32), KeyID: "shared", Algorithm: "HS256"}}
		}},
		{"HS512 shared secret", func(tr *store.Trust) {
			tr.Algorithms = []string{"HS256", "HS512"}
			tr.Keys = []jose.JSONWebKey{{Key: secret(64), KeyID: "shared"}}
		}},
		{"expired relationship", func(tr *store.Trust) { tr.ExpiresAt = time.Now().Add(-time.Hour) }},
		{"same key twice under one kid", func(tr *store.Trust) {
			tr.Keys = []jose.JSONWebKey{{Key: &p256().PublicKey, KeyID: "k"}, {Key: &p256().PublicKey, KeyID: "k"}}
		}},
		{"same key under two kids", func(tr *store.Trust) {
			tr.Keys = []jose.JSONWebKey{{Key: &p256().PublicKey, KeyID: "a"}, {Key: &p256().PublicKey, KeyID: "b"}}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tr := validTrust()
			tc.edit(&tr)
			require.NoError(t, store.NormalizeTrust(&tr))
			for _, k := range tr.Keys {
				assert.NotEmpty(t, k.KeyID)
			}
		})
	}
}

func TestNormalizeTrustRejects(t *testing.T) {
	rsaPub := &rsaKey().PublicKey
	ecPub := &p256().PublicKey
	tests := []struct {
		name    string
		edit    func(*store.Trust)
		wantErr string
	}{
		{"no issuer", func(tr *store.Trust) { tr.Issuer = "" }, "issuer: must not be empty"},
		{"no subject", func(tr *store.Trust) { tr.Subject = "" }, "subject: set subject, subjects or subject_patterns, or any_subject"},
		{"subject and any subject", func(tr *store.Trust) { tr.AnySubject = true }, "must be empty when any_subject is set"},
		{"no keys", func(tr *store.Trust) { tr.Keys = nil }, "keys: give keys, a jwks_uri or oidc_discovery"},
		{"bad scope", func(tr *store.Trust) { tr.Scopes = []string{"read write"} }, `scopes[0]: "read write" is not a valid scope token`},
		{"empty scope", func(tr *store.Trust) { tr.Scopes = []string{"read", ""} }, `scopes[1]: "" is not a valid scope token`},
		{"empty client", func(tr *store.Trust) { tr.Clients = []string{""} }, "clients[0]: must not be empty"},
		{"private RSA key", func(tr *store.Trust) { tr.Keys = []jose.JSONWebKey{{Key: rsaKey()}} }, "keys[0]: this is a private key; give the public key"},
		{"private EC key", func(tr *store.Trust) { tr.Keys = []jose.JSONWebKey{{Key: p256()}} }, "keys[0]: this is a private key"},
		{"private Ed25519 key", func(tr *store.Trust) { tr.Keys = []jose.JSONWebKey{{Key: edKey()}} }, "keys[0]: this is a private key"},
		{"RSA 1024", func(tr *store.Trust) { tr.Keys = []jose.JSONWebKey{{Key: &rsa1k().PublicKey}} }, "keys[0]: RSA key has 1024 bits; at least 2048 are required"},
		{"RSA without modulus", func(tr *store.Trust) { tr.Keys = []jose.JSONWebKey{{Key: &rsa.PublicKey{E: 65537}}} }, "keys[0]: invalid RSA public key"},
		// go-jose reads an over-long "e" into an int, as -1 for 64 bytes
		// of 0xff: such keys would be stored and verify nothing.
		{"RSA exponent -1", func(tr *store.Trust) { tr.Keys = []jose.JSONWebKey{{Key: &rsa.PublicKey{N: rsaKey().N, E: -1}}} }, "keys[0]: RSA public exponent must be odd, from 3 to 2^31-1"},
		{"RSA exponent 2^32+1", func(tr *store.Trust) { tr.Keys = []jose.JSONWebKey{{Key: &rsa.PublicKey{N: rsaKey().N, E: 1<<32 + 1}}} }, "keys[0]: RSA public exponent must be odd"},
		{"RSA even exponent", func(tr *store.Trust) { tr.Keys = []jose.JSONWebKey{{Key: &rsa.PublicKey{N: rsaKey().N, E: 65536}}} }, "keys[0]: RSA public exponent must be odd"},
		{"EC P-224", func(tr *store.Trust) { tr.Keys = []jose.JSONWebKey{{Key: &p224().PublicKey}} }, `keys[0]: EC curve "P-224" is not accepted`},
		{"EC point off the curve", func(tr *store.Trust) {
			tr.Keys = []jose.JSONWebKey{{Key: &ecdsa.PublicKey{Curve: elliptic.P256(), X: big.NewInt(1), Y: big.NewInt(1)}}} //nolint:staticcheck // a point off the curve, on purpose
		}, "keys[0]: EC public key is not a point on its curve"},
		{"short Ed25519", func(tr *store.Trust) { tr.Keys = []jose.JSONWebKey{{Key: ed25519.PublicKey(make([]byte, 31))}} }, "keys[0]: Ed25519 public key has 31 bytes"},
		{"no key material", func(tr *store.Trust) { tr.Keys = []jose.JSONWebKey{{KeyID: "k"}} }, "keys[0]: no key material"},
		{"unsupported key type", func(tr *store.Trust) { tr.Keys = []jose.JSONWebKey{{Key: "secret"}} }, "keys[0]: unsupported key type string"},
		{"use enc", func(tr *store.Trust) { tr.Keys[0].Use = "enc" }, `keys[0]: use is "enc"; must be "sig"`},
		{"key alg none", func(tr *store.Trust) { tr.Keys[0].Algorithm = "none" }, `keys[0]: alg "none" is never accepted`},
		{"unknown key alg", func(tr *store.Trust) { tr.Keys[0].Algorithm = "ES256K" }, `keys[0]: unknown JWS algorithm "ES256K"`},
		{"RSA key with ES256", func(tr *store.Trust) { tr.Keys = []jose.JSONWebKey{{Key: rsaPub, Algorithm: "ES256"}} }, "keys[0]: alg ES256 does not fit this RSA key"},
		{"P-256 key with ES384", func(tr *store.Trust) { tr.Keys[0].Algorithm = "ES384" }, "keys[0]: alg ES384 does not fit this EC P-256 key (it needs EC P-384)"},
		{"P-384 key with ES256", func(tr *store.Trust) { tr.Keys = []jose.JSONWebKey{{Key: &p384().PublicKey, Algorithm: "ES256"}} }, "alg ES256 does not fit this EC P-384 key"},
		{"EC key with RS256", func(tr *store.Trust) { tr.Keys[0].Algorithm = "RS256" }, "alg RS256 does not fit this EC P-256 key"},
		{"Ed25519 key with ES256", func(tr *store.Trust) { tr.Keys = []jose.JSONWebKey{{Key: edKey().Public(), Algorithm: "ES256"}} }, "alg ES256 does not fit this Ed25519 key"},
		{"RSA key with HS256", func(tr *store.Trust) { tr.Keys = []jose.JSONWebKey{{Key: rsaPub, Algorithm: "HS256"}} }, "alg HS256 does not fit this RSA key"},
		{"algorithm none", func(tr *store.Trust) { tr.Algorithms = []string{"ES256", "none"} }, `algorithms[1]: "none" is never accepted`},
		{"algorithm NONE", func(tr *store.Trust) { tr.Algorithms = []string{"NONE"} }, `algorithms[0]: "none" is never accepted`},
		{"unknown algorithm", func(tr *store.Trust) { tr.Algorithms = []string{"RSA-OAEP"} }, `algorithms[0]: unknown JWS algorithm "RSA-OAEP"`},
		{"HS256 listed with an EC key", func(tr *store.Trust) { tr.Algorithms = []string{"HS256"} }, "keys[0]: algorithms lists an HS* algorithm, which needs every key to be symmetric; this key is EC P-256"},
		{"symmetric key without algorithms", func(tr *store.Trust) {
			tr.Keys = []jose.JSONWebKey{{Key: secret(32), KeyID: "s"}}
		}, "keys[0]: a symmetric key needs algorithms to list only HS256, HS384 or HS512"},
		{"symmetric key with RS256 listed too", func(tr *store.Trust) {
			tr.Algorithms = []string{"HS256", "RS256"}
			tr.Keys = []jose.JSONWebKey{{Key: secret(32), KeyID: "s"}}
		}, "keys[0]: a symmetric key needs algorithms to list only HS256"},
		{"symmetric key without kid", func(tr *store.Trust) {
			tr.Algorithms = []string{"HS256"}
			tr.Keys = []jose.JSONWebKey{{Key: secret(32)}}
		}, "keys[0]: a symmetric key needs a kid"},
		{"short symmetric key", func(tr *store.Trust) {
			tr.Algorithms = []string{"HS256"}
			tr.Keys = []jose.JSONWebKey{{Key: secret(31), KeyID: "s"}}
		}, "keys[0]: symmetric key has 31 bytes; at least 32 are required"},
		{"symmetric key too short for HS512", func(tr *store.Trust) {
			tr.Algorithms = []string{"HS512"}
			tr.Keys = []jose.JSONWebKey{{Key: secret(48), KeyID: "s"}}
		}, "keys[0]: symmetric key has 48 bytes; at least 64 are required"},
		{"symmetric key alg HS384 too short", func(tr *store.Trust) {
			tr.Algorithms = []string{"HS256"}
			tr.Keys = []jose.JSONWebKey{{Key: secret(40), KeyID: "s", Algorithm: "HS384"}}
		}, "keys[0]: HS384 needs a secret of at least 48 bytes, this one has 40"},
		{"symmetric key with ES256", func(tr *store.Trust) {
			tr.Algorithms = []string{"HS256"}
			tr.Keys = []jose.JSONWebKey{{Key: secret(32), KeyID: "s", Algorithm: "ES256"}}
		}, "keys[0]: alg ES256 does not fit this symmetric key"},
		{"one kid, two keys", func(tr *store.Trust) {
			tr.Keys = []jose.JSONWebKey{{Key: ecPub, KeyID: "k"}, {Key: &p256b().PublicKey, KeyID: "k"}}
		}, `keys[1]: kid "k" is already used by a different key`},
		{"one kid, one key, two algs", func(tr *store.Trust) {
			tr.Keys = []jose.JSONWebKey{{Key: rsaPub, KeyID: "k", Algorithm: "RS256"}, {Key: rsaPub, KeyID: "k", Algorithm: "PS256"}}
		}, `keys[1]: kid "k" is already used by the same key with another alg or use`},
		{"thumbprint kid clashes with explicit kid", func(tr *store.Trust) {
			tr.Keys = []jose.JSONWebKey{{Key: ecPub}, {Key: &p256b().PublicKey, KeyID: thumb(t, ecPub)}}
		}, "keys[1]: kid"},
		{"subjects with any_subject", func(tr *store.Trust) {
			tr.Subject, tr.Subjects, tr.AnySubject = "", []string{"a"}, true
		}, "must be empty when any_subject is set"},
		{"patterns with any_subject", func(tr *store.Trust) {
			tr.Subject, tr.SubjectPatterns, tr.AnySubject = "", []string{"a:*"}, true
		}, "must be empty when any_subject is set"},
		{"empty subject in list", func(tr *store.Trust) { tr.Subjects = []string{"a", ""} }, "subjects[1]: must not be empty"},
		{"subject listed twice", func(tr *store.Trust) { tr.Subjects = []string{"a", "a"} }, `subjects[1]: "a" is listed twice`},
		{"subject repeats subject", func(tr *store.Trust) { tr.Subjects = []string{tr.Subject} }, "subjects[0]"},
		{"pattern without wildcard", func(tr *store.Trust) { tr.SubjectPatterns = []string{"exact"} }, "subject_patterns[0]: \"exact\" has no wildcard"},
		{"bare wildcard", func(tr *store.Trust) { tr.SubjectPatterns = []string{"**"} }, "set any_subject instead"},
		{"triple star", func(tr *store.Trust) { tr.SubjectPatterns = []string{"a:***"} }, "ambiguous"},
		{"long pattern", func(tr *store.Trust) { tr.SubjectPatterns = []string{strings.Repeat("a", 257) + "*"} }, "longer than 256"},
		{"too many wildcards", func(tr *store.Trust) { tr.SubjectPatterns = []string{"a" + strings.Repeat(":*", 9)} }, "more than 8 wildcards"},
		{"pattern twice", func(tr *store.Trust) { tr.SubjectPatterns = []string{"a:*", "a:*"} }, "subject_patterns[1]"},
		{"required registered claim", func(tr *store.Trust) { tr.RequiredClaims = map[string]string{"aud": "x"} }, `required_claims: "aud" is checked by the server itself`},
		{"required empty claim name", func(tr *store.Trust) { tr.RequiredClaims = map[string]string{"": "x"} }, "required_claims: a claim name must not be empty"},
		{"too many required claims", func(tr *store.Trust) {
			tr.RequiredClaims = map[string]string{}
			for i := range 33 {
				tr.RequiredClaims[fmt.Sprint("c", i)] = "v"
			}
		}, "required_claims: at most 32"},
		{"keys and jwks_uri", func(tr *store.Trust) { tr.JWKSURI = "https://issuer.example/jwks" }, "give only one of keys, jwks_uri and oidc_discovery"},
		{"jwks_uri over http", func(tr *store.Trust) { tr.Keys, tr.JWKSURI = nil, "http://issuer.example/jwks" }, "jwks_uri: \"http://issuer.example/jwks\" must use https"},
		{"jwks_uri relative", func(tr *store.Trust) { tr.Keys, tr.JWKSURI = nil, "/jwks" }, "not an absolute URL"},
		{"jwks_uri with user", func(tr *store.Trust) { tr.Keys, tr.JWKSURI = nil, "https://u:p@issuer.example/jwks" }, "user information"},
		{"discovery with non-URL issuer", func(tr *store.Trust) { tr.Keys, tr.OIDCDiscovery, tr.Issuer = nil, true, "acme-partner" }, "oidc_discovery: the issuer must be a URL"},
		{"discovery with a query", func(tr *store.Trust) { tr.Keys, tr.OIDCDiscovery, tr.Issuer = nil, true, "https://i.example/?tenant=a" }, "has a query"},
		{"remote keys with HS256", func(tr *store.Trust) {
			tr.Keys, tr.JWKSURI, tr.Algorithms = nil, "https://issuer.example/jwks", []string{"HS256"}
		}, "HS* algorithms need static shared keys"},
		{"max lifetime too long", func(tr *store.Trust) { tr.MaxAssertionLifetime = store.Duration(25 * time.Hour) }, "max_assertion_lifetime: must be between 1s and 24h0m0s"},
		{"token lifetime negative", func(tr *store.Trust) { tr.AccessTokenLifetime = store.Duration(-time.Second) }, "access_token_lifetime: must be between"},
		{"token lifetime under a second", func(tr *store.Trust) { tr.AccessTokenLifetime = store.Duration(time.Millisecond) }, "access_token_lifetime: must be between"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tr := validTrust()
			tc.edit(&tr)
			before := tr
			err := store.NormalizeTrust(&tr)
			require.Error(t, err)
			assert.ErrorIs(t, err, store.ErrInvalid)
			assert.Contains(t, err.Error(), tc.wantErr)
			assert.Equal(t, before, tr, "t is untouched on error")
		})
	}
}

func TestNormalizeTrustReportsEveryProblem(t *testing.T) {
	tr := store.Trust{
		Algorithms: []string{"none", "XX"},
		Keys:       []jose.JSONWebKey{{Key: rsaKey()}, {Key: &rsa1k().PublicKey}},
	}
	err := store.NormalizeTrust(&tr)
	require.Error(t, err)

	var joined interface{ Unwrap() []error }
	require.True(t, errors.As(err, &joined))
	problems := joined.Unwrap()
	for _, p := range problems {
		assert.ErrorIs(t, p, store.ErrInvalid, "each problem wraps ErrInvalid: %v", p)
	}
	msg := err.Error()
	for _, want := range []string{"issuer:", "subject:", "algorithms[0]:", "algorithms[1]:", "keys[0]: this is a private key", "keys[1]: RSA key has 1024 bits"} {
		assert.Contains(t, msg, want)
	}
	assert.Len(t, problems, 6)
}

func TestNormalizeTrustKeyID(t *testing.T) {
	tr := validTrust(
		jose.JSONWebKey{Key: &p256().PublicKey},
		jose.JSONWebKey{Key: &rsaKey().PublicKey, KeyID: "explicit"},
		jose.JSONWebKey{Key: edKey().Public()},
	)
	require.NoError(t, store.NormalizeTrust(&tr))
	require.Len(t, tr.Keys, 3)
	assert.Equal(t, thumb(t, &p256().PublicKey), tr.Keys[0].KeyID, "a key without kid gets its RFC 7638 thumbprint")
	assert.Equal(t, "explicit", tr.Keys[1].KeyID, "an explicit kid is kept")
	assert.Equal(t, thumb(t, edKey().Public()), tr.Keys[2].KeyID)
	assert.NotContains(t, tr.Keys[0].KeyID, "=", "base64url without padding")
	assert.Len(t, tr.Keys[0].KeyID, 43)
}

func TestNormalizeTrustDropsRepeatedKey(t *testing.T) {
	tr := validTrust(jose.JSONWebKey{Key: &p256().PublicKey}, jose.JSONWebKey{Key: &p256().PublicKey})
	require.NoError(t, store.NormalizeTrust(&tr))
	assert.Len(t, tr.Keys, 1)
}

func TestNormalizeTrustDeepCopies(t *testing.T) {
	requireJTI := true
	shared := secret(32)
	in := store.Trust{
		Issuer:     "https://issuer.example",
		AnySubject: true,
		Scopes:     []string{"read"},
		Algorithms: []string{"HS256"},
		Clients:    []string{"client-1"},
		RequireJTI: &requireJTI,
		Keys:       []jose.JSONWebKey{{Key: shared, KeyID: "s"}},
	}
	out := in
	require.NoError(t, store.NormalizeTrust(&out))

	in.Scopes[0] = "admin"
	in.Algorithms[0] = "HS512"
	in.Clients[0] = "intruder"
	in.Keys[0].KeyID = "changed"
	shared[0] = 'X'
	requireJTI = false

	assert.Equal(t, []string{"read"}, out.Scopes)
	assert.Equal(t, []string{"HS256"}, out.Algorithms)
	assert.Equal(t, []string{"client-1"}, out.Clients)
	assert.Equal(t, "s", out.Keys[0].KeyID)
	assert.Equal(t, secret(32), out.Keys[0].Key)
	require.NotNil(t, out.RequireJTI)
	assert.True(t, *out.RequireJTI)
}

// TestParseThenNormalize is the admin path: a PEM or JWKS file becomes the
// keys of a relationship.
func TestParseThenNormalize(t *testing.T) {
	keys, err := store.ParseKeys(append(spki(&rsaKey().PublicKey), selfSigned(t, p384())...))
	require.NoError(t, err)
	tr := validTrust(keys...)
	require.NoError(t, store.NormalizeTrust(&tr))
	assert.Equal(t, thumb(t, &rsaKey().PublicKey), tr.Keys[0].KeyID)
	assert.Equal(t, thumb(t, &p384().PublicKey), tr.Keys[1].KeyID)
}
