package server_test

import (
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/jwtbearer/jwtbearer/handler/handlertest"
	"github.com/jwtbearer/jwtbearer/server"
)

// writePublicPEM writes k's public key as SPKI PEM to dir/name.
func writePublicPEM(t *testing.T, dir, name string, k *handlertest.Key) {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(k.Private.Public())
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, name), pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o644))
}

func TestParseConfigDefaults(t *testing.T) {
	dir := t.TempDir()
	writePublicPEM(t, dir, "id_rsa.pub", handlertest.NewRSAKey())
	cfg, err := server.ParseConfig([]byte(`
trust:
  - issuer: TestClient
    subject: User1
    keys:
      - file: id_rsa.pub
`), dir)
	require.NoError(t, err)
	assert.Equal(t, "127.0.0.1:8080", cfg.Listen)
	assert.Equal(t, "http://127.0.0.1:8080", cfg.Issuer)
	assert.Equal(t, time.Hour, cfg.AccessTokenLifetime)
	assert.Equal(t, "memory", cfg.Store.Type)
	s := cfg.Settings()
	assert.False(t, s.JTIOptional, "jti is required by default")
	assert.False(t, s.RequireClientAuth)
	assert.False(t, s.NoTokenLifetimeCap)
	assert.Zero(t, s.ClockSkew, "zero means the handler's default")
}

func TestParseConfigSettings(t *testing.T) {
	cfg, err := server.ParseConfig([]byte(`
jwt_bearer:
  require_jti: false
  clock_skew: 0s
  max_assertion_lifetime: 10m
  audiences: [https://api.mysite.com]
  require_client_auth: true
  cap_token_lifetime: false
`), t.TempDir())
	require.NoError(t, err)
	s := cfg.Settings()
	assert.True(t, s.JTIOptional)
	assert.Negative(t, s.ClockSkew, "an explicit 0s means no leeway")
	assert.Equal(t, 10*time.Minute, s.MaxAssertionLifetime)
	assert.Equal(t, []string{"https://api.mysite.com"}, s.Audiences)
	assert.True(t, s.RequireClientAuth)
	assert.True(t, s.NoTokenLifetimeCap)
}

func TestParseConfigErrors(t *testing.T) {
	dir := t.TempDir()
	writePublicPEM(t, dir, "id_rsa.pub", handlertest.NewRSAKey())
	for _, tt := range []struct {
		name string
		yaml string
		want []string
	}{
		{"unknown key", "listen: 127.0.0.1:1\nlisen: x\n", []string{"field lisen not found"}},
		{"unknown nested key", "jwt_bearer:\n  requre_jti: true\n", []string{"field requre_jti not found"}},
		{"wrong type", "jwt_bearer:\n  clock_skew: soon\n", []string{"line 2", "time.Duration"}},
		{"every problem at once", `
listen: nowhere
issuer: ftp://x
token_secret: short
store: {type: etcd}
jwt_bearer:
  clock_skew: 1h
  algorithms: [HS256]
trust:
  - issuer: ""
    subject: User1
    keys: []
  - issuer: A
    keys:
      - file: missing.pub
clients:
  - id: svc
    grant_types: [password]
`, []string{
			"listen:", "issuer:", "token_secret:", "store.type:", "clock_skew:", `algorithms: "HS256"`,
			"trust[0]: store: invalid record: keys: give keys, a jwks_uri or oidc_discovery", "trust[0]: store: invalid record: issuer:", "trust[1]: keys[0]: file:", "trust[1]: store: invalid record: subject", "exactly one of secret or secret_hash", `"password" is not served`,
		}},
		{"private key file", "trust:\n  - issuer: A\n    subject: B\n    keys:\n      - pem: |\n          -----BEGIN PRIVATE KEY-----\n          MC4CAQAwBQYDK2VwBCIEIA==\n          -----END PRIVATE KEY-----\n", []string{"private key"}},
		{"subject and any_subject", "trust:\n  - issuer: A\n    subject: B\n    any_subject: true\n    keys:\n      - file: id_rsa.pub\n", []string{"trust[0]"}},
		{"unknown client in trust", "trust:\n  - issuer: A\n    subject: B\n    clients: [ghost]\n    keys:\n      - file: id_rsa.pub\n", []string{`"ghost" is not a configured client`}},
		{"duplicate ids", "clients:\n  - {id: a, secret: x, grant_types: [client_credentials]}\n  - {id: a, secret: y, grant_types: [client_credentials]}\n", []string{`"a" is used twice`}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := server.ParseConfig([]byte(tt.yaml), dir)
			require.Error(t, err)
			for _, w := range tt.want {
				assert.Contains(t, err.Error(), w)
			}
		})
	}
}

func TestLoadConfigResolvesKeyFilesNextToIt(t *testing.T) {
	dir := t.TempDir()
	writePublicPEM(t, dir, "id_rsa.pub", handlertest.NewRSAKey())
	path := filepath.Join(dir, "config.yaml")
	require.NoError(t, os.WriteFile(path, []byte("trust:\n  - {issuer: A, subject: B, keys: [{file: id_rsa.pub}]}\n"), 0o600))
	wd, err := os.Getwd()
	require.NoError(t, err)
	require.False(t, strings.HasPrefix(dir, wd))
	_, err = server.LoadConfig(path)
	require.NoError(t, err)
}

func TestParseConfigRefusesEmptyAudience(t *testing.T) {
	_, err := server.ParseConfig([]byte("jwt_bearer:\n  audiences: [\"\"]\n"), t.TempDir())
	require.Error(t, err)
	assert.Contains(t, err.Error(), "empty audience")
}

func TestParseConfigTypeErrorAndValidationTogether(t *testing.T) {
	_, err := server.ParseConfig([]byte("listen: nowhere\nbogus: 1\n"), t.TempDir())
	require.Error(t, err)
	assert.Contains(t, err.Error(), "field bogus not found")
	assert.Contains(t, err.Error(), `listen: "nowhere"`)
}

func TestSetListenMovesADerivedIssuer(t *testing.T) {
	cfg, err := server.ParseConfig(nil, t.TempDir())
	require.NoError(t, err)
	require.NoError(t, cfg.SetListen("127.0.0.1:9999"))
	assert.Equal(t, "http://127.0.0.1:9999", cfg.Issuer)

	cfg, err = server.ParseConfig([]byte("issuer: https://as.example\n"), t.TempDir())
	require.NoError(t, err)
	require.NoError(t, cfg.SetListen("127.0.0.1:9999"))
	assert.Equal(t, "https://as.example", cfg.Issuer, "an explicit issuer stays")
}
