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
		{"client secret beyond bcrypt's 72 bytes", "clients:\n  - {id: c, grant_types: [client_credentials], secret: " + strings.Repeat("s", 73) + "}\n",
			[]string{"clients[0].secret: at most 72 bytes"}},
		{"client with a secret and keys", "clients:\n  - {id: c, grant_types: [client_credentials], secret: s, jwks_uri: https://c.example/jwks}\n",
			[]string{"clients[0]: exactly one of secret, secret_hash, jwks or jwks_uri"}},
		{"client jwks_uri over plain http", "clients:\n  - {id: c, grant_types: [client_credentials], jwks_uri: http://c.example/jwks}\n",
			[]string{"clients[0].jwks_uri:"}},
		{"rate limits", "rate_limits:\n  client: {rate: -1}\n  issuer: {burst: 5}\n",
			[]string{"rate_limits.client.rate:", "rate_limits.issuer.burst: set without a rate"}},
		{"metrics on an absent admin listener", "metrics: {listener: admin}\n", []string{"metrics.listener: admin needs admin.listen"}},
		{"unknown metrics listener", "metrics: {listener: everywhere}\n", []string{`metrics.listener: "everywhere"`}},
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
			"trust[0]: store: invalid record: keys: give keys, a jwks_uri or oidc_discovery", "trust[0]: store: invalid record: issuer:", "trust[1]: keys[0]: file:", "trust[1]: store: invalid record: subject", "exactly one of secret, secret_hash, jwks or jwks_uri", `"password" is not served`,
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

// jwkWithKID is k's public JWK as JSON (which YAML reads as a flow
// mapping) under the given kid.
func jwkWithKID(t *testing.T, k *handlertest.Key, kid string) string {
	t.Helper()
	pub := k.Public
	pub.KeyID = kid
	b, err := pub.MarshalJSON()
	require.NoError(t, err)
	return string(b)
}

// writeFile writes data to dir/name, making the folders it needs.
func writeFile(t *testing.T, dir, name, data string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
	require.NoError(t, os.WriteFile(path, []byte(data), 0o600))
	return path
}

func TestTrustFile(t *testing.T) {
	k1, k2 := handlertest.NewECKey(), handlertest.NewECKey()
	for _, tt := range []struct {
		name   string
		config string
		// files are written in the config's folder first; trust_file:
		// sub/trust.yaml lives in sub/.
		files map[string]string
		// trust is the content of sub/trust.yaml ("" for no file).
		trust string
		// want are substrings of the error; none means success, with
		// wantIDs the relationships in the store.
		want    []string
		wantIDs []string
	}{
		{
			name:   "good file joins trust",
			config: "trust:\n  - {id: a, issuer: A, subject: s, keys: [{file: a.pub}]}\ntrust_file: sub/trust.yaml\n",
			files:  map[string]string{"a.pub": "k1", "sub/b.pub": "k2"},
			trust: `
- id: b
  issuer: B
  subject: s
  scopes: [read]
  keys: [{file: b.pub}]       # next to the trust file, not the config
- issuer: C
  any_subject: true
  keys: [{jwk: ` + jwkWithKID(t, k1, "c1") + `}]
`,
			wantIDs: []string{"cfg-a", "cfg-b", "C"},
		},
		{
			name:    "empty list",
			config:  "trust_file: sub/trust.yaml\n",
			trust:   "[]\n",
			wantIDs: []string{},
		},
		{
			name:   "absolute path",
			config: "trust_file: ABS\n",
			files:  map[string]string{"sub/b.pub": "k2"},
			trust:  "- {id: b, issuer: B, subject: s, keys: [{file: b.pub}]}\n", wantIDs: []string{"cfg-b"},
		},
		{
			name:   "unknown field",
			config: "trust_file: sub/trust.yaml\n",
			files:  map[string]string{"sub/b.pub": "k2"},
			trust:  "- {id: b, issuer: B, subject: s, scopez: [read], keys: [{file: b.pub}]}\n",
			want:   []string{"trust_file:", "field scopez not found"},
		},
		{
			name:   "not a list",
			config: "trust_file: sub/trust.yaml\n",
			trust:  "issuer: B\nsubject: s\n",
			want:   []string{"trust_file:", "cannot unmarshal"},
		},
		{
			name:   "YAML syntax error",
			config: "trust_file: sub/trust.yaml\n",
			trust:  "- {id: b, issuer: B\n",
			want:   []string{"trust_file:", "yaml:"},
		},
		{
			name:   "key file resolved against the trust file's folder",
			config: "trust_file: sub/trust.yaml\n",
			files:  map[string]string{"b.pub": "k2"}, // next to the config only
			trust:  "- {id: b, issuer: B, subject: s, keys: [{file: b.pub}]}\n",
			want:   []string{"trust_file[0]: keys[0]: file:", filepath.Join("sub", "b.pub")},
		},
		{
			name:   "duplicate id across trust and trust_file",
			config: "trust:\n  - {id: a, issuer: A, subject: s, keys: [{file: a.pub}]}\ntrust_file: sub/trust.yaml\n",
			files:  map[string]string{"a.pub": "k1", "sub/b.pub": "k2"},
			trust:  "- {id: a, issuer: B, subject: s, keys: [{file: b.pub}]}\n",
			want:   []string{`trust_file[0].id: "a" is used twice (also by trust[0])`},
		},
		{
			name:   "same issuer and subject without ids",
			config: "trust:\n  - {issuer: A, subject: s, keys: [{file: a.pub}]}\ntrust_file: sub/trust.yaml\n",
			files:  map[string]string{"a.pub": "k1", "sub/b.pub": "k2"},
			trust:  "- {issuer: A, subject: s, keys: [{file: b.pub}]}\n",
			want:   []string{"trust_file[0]: a second relationship for the same issuer and subject as trust[0] needs an id of its own"},
		},
		{
			name:   "kid used for two keys by one issuer",
			config: "trust:\n  - {id: a, issuer: A, subject: s, keys: [{jwk: " + jwkWithKID(t, k1, "k") + "}]}\ntrust_file: sub/trust.yaml\n",
			trust:  "- {id: b, issuer: A, subject: t, keys: [{jwk: " + jwkWithKID(t, k2, "k") + "}]}\n",
			want:   []string{`trust_file[0]: kid "k" is also used by trust[0] (id "cfg-a") of issuer "A" for a different key`},
		},
		{
			name:   "kid used for two keys within trust",
			config: "trust:\n  - {id: a, issuer: A, subject: s, keys: [{jwk: " + jwkWithKID(t, k1, "k") + "}]}\n  - {id: b, issuer: A, subject: t, keys: [{jwk: " + jwkWithKID(t, k2, "k") + "}]}\n",
			want:   []string{`trust[1]: kid "k" is also used by trust[0]`},
		},
		{
			name:    "same kid for the same key",
			config:  "trust:\n  - {id: a, issuer: A, subject: s, keys: [{jwk: " + jwkWithKID(t, k1, "k") + "}]}\ntrust_file: sub/trust.yaml\n",
			trust:   "- {id: b, issuer: A, subject: t, keys: [{jwk: " + jwkWithKID(t, k1, "k") + "}]}\n",
			wantIDs: []string{"cfg-a", "cfg-b"},
		},
		{
			name:    "same kid in two issuers",
			config:  "trust:\n  - {id: a, issuer: A, subject: s, keys: [{jwk: " + jwkWithKID(t, k1, "k") + "}]}\ntrust_file: sub/trust.yaml\n",
			trust:   "- {id: b, issuer: B, subject: s, keys: [{jwk: " + jwkWithKID(t, k2, "k") + "}]}\n",
			wantIDs: []string{"cfg-a", "cfg-b"},
		},
		{
			name:   "missing trust file",
			config: "trust_file: sub/nowhere.yaml\n",
			want:   []string{"trust_file:", "nowhere.yaml"},
		},
		{
			name:   "empty trust file",
			config: "trust_file: sub/trust.yaml\n",
			trust:  "# nothing yet\n",
			want:   []string{"trust_file:", "is empty; write [] for no relationships"},
		},
		{
			name:   "unknown client",
			config: "trust_file: sub/trust.yaml\n",
			trust:  "- {id: b, issuer: B, subject: s, clients: [ghost], keys: [{jwk: " + jwkWithKID(t, k2, "k") + "}]}\n",
			want:   []string{`trust_file[0].clients: "ghost" is not a configured client`},
		},
		{
			name:   "every problem at once",
			config: "listen: nowhere\ntrust_file: sub/trust.yaml\n",
			files:  map[string]string{"sub/b.pub": "k2"},
			trust: `
- {id: b, issuer: B, subject: s, keys: [{file: b.pub}]}
- {id: c, issuer: "", subject: s, keys: [{file: b.pub}]}
- {id: d, issuer: D, subject: s, bogus: 1, keys: [{file: missing.pub}]}
`,
			want: []string{`listen: "nowhere"`, "field bogus not found", "trust_file[1]: store: invalid record: issuer", "trust_file[2]: keys[0]: file:"},
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			keys := map[string]*handlertest.Key{"k1": k1, "k2": k2}
			for name, k := range tt.files {
				require.NoError(t, os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755))
				writePublicPEM(t, dir, name, keys[k])
			}
			if tt.trust != "" {
				writeFile(t, dir, "sub/trust.yaml", tt.trust)
			}
			config := strings.ReplaceAll(tt.config, "ABS", filepath.Join(dir, "sub", "trust.yaml"))
			path := writeFile(t, dir, "config.yaml", config)
			cfg, err := server.LoadConfig(path)
			if len(tt.want) > 0 {
				require.Error(t, err)
				for _, w := range tt.want {
					assert.Contains(t, err.Error(), w)
				}
				return
			}
			require.NoError(t, err)
			srv, err := server.New(t.Context(), cfg)
			require.NoError(t, err)
			ts, err := srv.Store().ListTrust(t.Context())
			require.NoError(t, err)
			ids := []string{}
			for _, tr := range ts {
				ids = append(ids, tr.ID)
			}
			require.Len(t, ids, len(tt.wantIDs), "ids %v", ids)
			for _, want := range tt.wantIDs {
				if want == "C" { // derived from issuer and subject
					assert.True(t, containsPrefix(ids, server.ConfigTrustPrefix), ids)
					continue
				}
				assert.Contains(t, ids, want)
			}
		})
	}
}

func TestParseConfigTrustFileRelativeToDir(t *testing.T) {
	// ParseConfig reads the trust file from dir, as the key files.
	dir := t.TempDir()
	writePublicPEM(t, dir, "b.pub", handlertest.NewECKey())
	writeFile(t, dir, "trust.yaml", "- {id: b, issuer: B, subject: s, keys: [{file: b.pub}]}\n")
	_, err := server.ParseConfig([]byte("trust_file: trust.yaml\n"), dir)
	require.NoError(t, err)
	_, err = server.ParseConfig([]byte("trust_file: trust.yaml\n"), t.TempDir())
	require.Error(t, err)
	assert.Contains(t, err.Error(), "trust_file:")
}

func TestParseConfigTrustReload(t *testing.T) {
	cfg, err := server.ParseConfig(nil, t.TempDir())
	require.NoError(t, err)
	assert.False(t, cfg.TrustReload.Watch)
	assert.Equal(t, 2*time.Second, cfg.TrustReload.Interval, "default")

	cfg, err = server.ParseConfig([]byte("trust_reload: {watch: true, interval: 100ms}\n"), t.TempDir())
	require.NoError(t, err)
	assert.True(t, cfg.TrustReload.Watch)
	assert.Equal(t, 100*time.Millisecond, cfg.TrustReload.Interval)

	for _, bad := range []string{"99ms", "61m", "-1s"} {
		_, err := server.ParseConfig([]byte("trust_reload: {watch: true, interval: "+bad+"}\n"), t.TempDir())
		require.Error(t, err, bad)
		assert.Contains(t, err.Error(), "trust_reload.interval: must be between 100ms and 1h", bad)
	}
	_, err = server.ParseConfig([]byte("trust_reload: {wach: true}\n"), t.TempDir())
	require.Error(t, err)
	assert.Contains(t, err.Error(), "field wach not found")
}
