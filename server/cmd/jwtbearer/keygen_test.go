package main

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"

	jose "github.com/go-jose/go-jose/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// keygen runs the keygen command and returns its stdout.
func keygen(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	err := runKeygen(t.Context(), args, &stdout, &stderr)
	return stdout.String(), err
}

// checkKeyPair checks the files keygen wrote for prefix and that the JWK
// it printed describes the public key, with the thumbprint as kid.
func checkKeyPair(t *testing.T, prefix, stdout, wantAlg string) {
	t.Helper()
	assertMode(t, prefix, 0o600)
	assertMode(t, prefix+".pub", 0o644)

	priv, err := loadPrivateKey(prefix)
	require.NoError(t, err)
	pemPub, err := os.ReadFile(prefix + ".pub")
	require.NoError(t, err)
	block, rest := pem.Decode(pemPub)
	require.NotNil(t, block)
	assert.Empty(t, rest)
	assert.Equal(t, "PUBLIC KEY", block.Type)
	pub, err := x509.ParsePKIXPublicKey(block.Bytes)
	require.NoError(t, err)
	assert.True(t, priv.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(pub))

	dec := json.NewDecoder(strings.NewReader(stdout))
	var jwk jose.JSONWebKey
	require.NoError(t, dec.Decode(&jwk))
	assert.True(t, jwk.IsPublic())
	assert.Equal(t, "sig", jwk.Use)
	assert.Equal(t, wantAlg, jwk.Algorithm)
	assert.True(t, pub.(interface{ Equal(crypto.PublicKey) bool }).Equal(jwk.Key))

	sum, err := (&jose.JSONWebKey{Key: pub}).Thumbprint(crypto.SHA256)
	require.NoError(t, err)
	kid := base64.RawURLEncoding.EncodeToString(sum)
	assert.Equal(t, kid, jwk.KeyID)
	assert.Contains(t, stdout, "\nkid: "+kid+"\n")
}

func assertMode(t *testing.T, path string, want os.FileMode) {
	t.Helper()
	fi, err := os.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, want, fi.Mode().Perm(), path)
}

func TestKeygenDefaultsRSA(t *testing.T) {
	t.Chdir(t.TempDir())
	stdout, err := keygen(t)
	require.NoError(t, err)
	checkKeyPair(t, "id_rsa", stdout, "RS256")

	priv, err := loadPrivateKey("id_rsa")
	require.NoError(t, err)
	assert.Equal(t, 2048, priv.Public().(interface{ Size() int }).Size()*8)
}

func TestKeygenEC(t *testing.T) {
	for curve, alg := range map[string]string{"P-256": "ES256", "P-384": "ES384", "P-521": "ES512"} {
		t.Run(curve, func(t *testing.T) {
			prefix := filepath.Join(t.TempDir(), "key")
			stdout, err := keygen(t, "-type", "ec", "-curve", curve, "-out", prefix)
			require.NoError(t, err)
			checkKeyPair(t, prefix, stdout, alg)
		})
	}
}

func TestKeygenECDefaultPrefix(t *testing.T) {
	t.Chdir(t.TempDir())
	stdout, err := keygen(t, "-type", "ec")
	require.NoError(t, err)
	checkKeyPair(t, "id_ec", stdout, "ES256")
}

func TestKeygenRefusesOverwrite(t *testing.T) {
	prefix := filepath.Join(t.TempDir(), "key")
	_, err := keygen(t, "-type", "ec", "-out", prefix)
	require.NoError(t, err)
	before, err := os.ReadFile(prefix)
	require.NoError(t, err)

	_, err = keygen(t, "-type", "ec", "-out", prefix)
	require.ErrorContains(t, err, "already exists")
	after, err := os.ReadFile(prefix)
	require.NoError(t, err)
	assert.Equal(t, before, after, "private key must be untouched")

	// Only the public half existing must also stop keygen.
	require.NoError(t, os.Remove(prefix))
	_, err = keygen(t, "-type", "ec", "-out", prefix)
	require.ErrorContains(t, err, "key.pub already exists")
	assert.NoFileExists(t, prefix)

	// -force overwrites and repairs a too-open private key mode.
	require.NoError(t, os.WriteFile(prefix, []byte("old"), 0o644))
	require.NoError(t, os.Chmod(prefix, 0o644))
	stdout, err := keygen(t, "-type", "ec", "-out", prefix, "-force")
	require.NoError(t, err)
	checkKeyPair(t, prefix, stdout, "ES256")
}

func TestKeygenBadFlags(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{"small RSA", []string{"-bits", "1024"}, "-bits must be between 2048 and 8192, got 1024"},
		{"huge RSA", []string{"-bits", "16384"}, "-bits must be between"},
		{"type", []string{"-type", "dsa"}, `unknown -type "dsa"`},
		{"curve", []string{"-type", "ec", "-curve", "P-224"}, `unknown -curve "P-224"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prefix := filepath.Join(t.TempDir(), "key")
			var stderr bytes.Buffer
			_, err := keygen(t, append(tt.args, "-out", prefix)...)
			require.ErrorContains(t, err, tt.wantErr)
			assert.Equal(t, 2, exitCode(err, &stderr))
			assert.NoFileExists(t, prefix)
		})
	}
}
