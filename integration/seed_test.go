package integration_test

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/jwtbearer/jwtbearer/handler/handlertest"
)

// seedConfig is the bshaffer walkthrough as configuration: issuer
// TestClient, subject User1, the public key from id_rsa.pub and the
// audience https://api.mysite.com. {{.V.relJTI}} is the relationship's
// require_jti line.
const seedConfig = `
listen: {{.Listen}}
issuer: {{.Issuer}}
token_secret: "0123456789abcdef0123456789abcdef-seed"
access_token_lifetime: 1h
jwt_bearer:
  require_jti: true
  clock_skew: 30s
  max_assertion_lifetime: 1h
  max_assertion_size: 16384
  audiences: [https://api.mysite.com]
  require_client_auth: false
  cap_token_lifetime: true
  issue_refresh_tokens: false
trust:
  - id: test-client-user1
    issuer: TestClient
    subject: User1
    scopes: [read, write]
{{.V.relJTI}}
    keys:
      - file: id_rsa.pub
`

// phpJSON encodes a string as PHP's json_encode does by default: like
// encoding/json, but with "/" escaped as "\/".
func phpJSON(s string) string {
	b, err := json.Marshal(s)
	if err != nil {
		panic(err)
	}
	return strings.ReplaceAll(string(b), "/", `\/`)
}

// generateJWT is the walkthrough's PHP generateJWT($privateKey, $iss,
// $sub, $aud) byte for byte, as OAuth2\Encryption\Jwt::encode builds it:
// header {"typ":"JWT","alg":"RS256"} (no kid), claims iss, sub, aud,
// exp = time() + 1000 and iat = time() in that order (no nbf, no jti),
// json_encode'd, base64url without padding, signed with openssl_sign
// SHA-256 (RSASSA-PKCS1-v1_5).
func generateJWT(privateKeyPEM []byte, iss, sub, aud string) string {
	block, _ := pem.Decode(privateKeyPEM)
	if block == nil {
		panic("no PEM block")
	}
	key, err := x509.ParsePKCS1PrivateKey(block.Bytes)
	if err != nil {
		panic(err)
	}
	now := time.Now().Unix()
	header := `{"typ":"JWT","alg":"RS256"}`
	payload := fmt.Sprintf(`{"iss":%s,"sub":%s,"aud":%s,"exp":%d,"iat":%d}`,
		phpJSON(iss), phpJSON(sub), phpJSON(aud), now+1000, now)
	enc := base64.RawURLEncoding
	input := enc.EncodeToString([]byte(header)) + "." + enc.EncodeToString([]byte(payload))
	digest := sha256.Sum256([]byte(input))
	sig, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, digest[:])
	if err != nil {
		panic(err)
	}
	return input + "." + enc.EncodeToString(sig)
}

// seedServer starts the walkthrough's server with its id_rsa / id_rsa.pub
// pair and returns it with the path of id_rsa.
func seedServer(t *testing.T, relJTI string) (*testServer, string) {
	t.Helper()
	k := handlertest.NewRSAKey()
	ts := newServer(t, seedConfig, fixture{
		Files: map[string][]byte{"id_rsa": k.RSAPrivateKeyPEM(), "id_rsa.pub": k.PublicKeyPEM()},
		Vars:  map[string]any{"relJTI": relJTI},
	})
	return ts, filepath.Join(ts.Dir, "id_rsa")
}

// TestSeedWalkthrough replays the walkthrough: the PHP-built assertion is
// posted exactly as its curl line does and gets a standard access token.
func TestSeedWalkthrough(t *testing.T) {
	t.Parallel()
	ts, keyPath := seedServer(t, "    require_jti: false          # generateJWT sends no jti")

	privateKey, err := os.ReadFile(keyPath)
	require.NoError(t, err)
	jwt := generateJWT(privateKey, "TestClient", "User1", "https://api.mysite.com")
	require.NotContains(t, jwt, "=", "base64url without padding")
	parts := strings.Split(jwt, ".")
	require.Len(t, parts, 3)
	head, err := base64.RawURLEncoding.DecodeString(parts[0])
	require.NoError(t, err)
	require.Equal(t, `{"typ":"JWT","alg":"RS256"}`, string(head))

	// curl https://api.mysite.com/token -d 'grant_type=$grant_type&assertion=$jwt'
	body := "grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer&assertion=" + jwt
	r := ts.do(t, "POST", "/token", body)
	tok := requireToken(t, r)
	assert.Equal(t, "bearer", tok.TokenType)
	assert.LessOrEqual(t, tok.ExpiresIn, 1000.0, "the token must not outlive the assertion (exp = now + 1000)")
	assert.Greater(t, tok.ExpiresIn, 990.0)
	assert.Nil(t, tok.RefreshToken, "no refresh token by default")
	m := r.JSON(t)
	for _, field := range []string{"access_token", "token_type", "expires_in", "scope"} {
		assert.Contains(t, m, field)
	}
	assert.NotContains(t, m, "refresh_token")
	assert.Equal(t, "", tok.Scope, "no scope was requested")

	// The same assertion again: there is no jti, so nothing to replay
	// against; the relationship allows that and the assertion is still
	// valid.
	requireToken(t, ts.do(t, "POST", "/token", body))

	// With a scope parameter as well.
	r = ts.token(t, grant(generateJWT(privateKey, "TestClient", "User1", "https://api.mysite.com"), "scope", "read write"))
	assert.Equal(t, "read write", requireToken(t, r).Scope)
}

// TestSeedWithoutJTIRejectedWhenRequired: the same assertion, when the
// relationship requires a jti (explicitly or by the server default).
func TestSeedWithoutJTIRejectedWhenRequired(t *testing.T) {
	t.Parallel()
	for name, line := range map[string]string{
		"server default":        "",
		"relationship requires": "    require_jti: true",
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ts, keyPath := seedServer(t, line)
			privateKey, err := os.ReadFile(keyPath)
			require.NoError(t, err)
			jwt := generateJWT(privateKey, "TestClient", "User1", "https://api.mysite.com")
			body := "grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer&assertion=" + jwt
			e := requireError(t, ts.do(t, "POST", "/token", body), 400, "invalid_grant")
			assert.Contains(t, e.Description, "jti")
		})
	}
}
