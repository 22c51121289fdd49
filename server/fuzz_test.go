package server_test

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"mime"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v3"
	"golang.org/x/crypto/bcrypt"

	"github.com/jwtbearer/jwtbearer/handler/handlertest"
	"github.com/jwtbearer/jwtbearer/server"
	"github.com/jwtbearer/jwtbearer/store"
	"github.com/jwtbearer/jwtbearer/store/memory"
)

// The fuzz targets of this file run their seed corpora (testdata/fuzz/) in
// every go test; make fuzz runs each with -fuzz.

const (
	fuzzIssuer     = "https://as.example"
	fuzzAdminToken = "fuzz-admin-token-0123456789abcdef0123"
	fuzzJWTBearer  = "urn:ietf:params:oauth:grant-type:jwt-bearer"
	// fuzzMaxInput bounds an input: larger ones test nothing that smaller
	// ones do not, and would only slow the fuzzer down.
	fuzzMaxInput = 64 << 10
	// fuzzExecLimit is the time one input may take before it counts as a
	// hang. It is generous: fuzzing runs one worker per CPU.
	fuzzExecLimit = 10 * time.Second
)

// fuzzKeyPEM is the private key of the relationship that FuzzTokenHTTP and
// FuzzAdminTrust trust. It is fixed, so that their seed corpora can hold
// assertions it signed and its JWK. It is a test key: it protects nothing.
const fuzzKeyPEM = `-----BEGIN PRIVATE KEY-----
MIIEvAIBADANBgkqhkiG9w0BAQEFAASCBKYwggSiAgEAAoIBAQCfkj4CWxQRCGz6
fbz2vPnFjcWHfXXCSjpJjmGbG/whvEPtJBiSlHrA1mXNXeDch0ihs0BYC8M4SMAg
P1qt7ynhRKhYm7ZebIa0cuDRhR7mkP6XI/wqe6bEwd72BPRwAXQG/ZTQtx44oQvH
3dqX37tSUrQNHrTBkRiv3mNY8Zt5IgR8M1g2bxB0zDg9tSzBk0ifv5P6999YyCLR
m60LbqXO70W5sRFR7t90pD+vXpJ1Byy1S3HIZUbl/S9ZHG28KF7d9aaDO4ZIy5mG
J4mCmdbYWyw+Hlfd0e9aMQFb736ik696eKLmeY4txqpP3FeNR8BA9Tf1cffVqTGU
vLMcVN/fAgMBAAECggEAT1u6rQ9AtovbLuRzor4u9dng/9YcR4kE3eoKjspnJRvt
KDXIZrWjKt41eOIUX3iEXa649FC9QPOlYSRA47nKuTadBpxCIUmV4I41Ut4ClSZN
BzulQDeIo9fLG80xB7chTgy1AuvfAsjNBBRIjzl8fp+U3eWEfbO8dFKEVAqsiJvi
RdvDYak88517i1E6HsvEDNIvHY406M+salknn2pMjIpFmGDvZlcOjIsRALqeIjP0
0T9mePx3QEnbmGj72v+Z32CFZ4W0lpJTt8SLTK/xh7x75yOy+yxSVACDR7JB3ifd
DhQP1jDLe8RugCWAg5c7Cz/gjLy2mO1bxemoOzGo8QKBgQDEysbiblk6ORX3ggLi
5BhrljZ8btw7bx5eKWS+ZSY95ENTPbGeXUJ+VgjPSRZvD6dRvkqllFgKZaWEWKfc
RRbwE8eTkX62fYPVNo0IhwEqVALQHhFAZ8j+/a2M+4/Ipk5b9lkJrxjmYxTLId4U
PKC2VL1ReL7ZAJuXoIBaVloMqQKBgQDPlKkQKEwjP0xJiiL9EnGAi+jensyM2hlS
uGXq8hQwmV0keQpYS6xpYrVQr1TE8JgDtEsobV24D8OItQhK5qELZFQJSHEiG0NJ
m6f1PhUWLXGFPwY72AhQgVAVlFmyot2hUp2twvY68MASDmUOiE2ia8BriV/sath7
7qXYuTWVRwKBgGa0GWX1BzY+srswrAbz2dbUV21Lgj62eFfWLJC9Q18LsSNRUFCB
BYHfrstXrpCZz832jQirSeNrNx3CEyD/IcB74i2ewk3FZbcxuBsaMj6AB9PLzV8a
iyihBiFM7LZgLQcLo15NdqZOUXzOGRPgrFNcGE3bwWaJTaqthi8fX/G5AoGATu//
Yo+QdI7rmcOYDpjm5LVPtui4bI+7tYM97pxkJR8NFoOY9X7Bb8oDnU0vdTzw8eer
9RGx4/7KosAFCUau00Ax3N3Zd9jaO7Gfq1kSd76MPtl6q2M5tjOWmr4xZgcdNO3P
3HYZYMyQnc0vjNk0fKFxKPOysJro/CgClWnJAJ0CgYBt2VQp+iGesxeC696P/rrj
akzbZ1Jqu5zR0k0pZUqUdsVVqHdnTAK63qyeghtnDShDndFkNtXkmzhR1BBfvUNy
yKylnrYZClEYE/6Ykej9kY0R5TBOvmyuQXwmZhKOBJw6uw8/FzGypkHtQJNhuegl
QAZ1w76MqBU620A7X8cYiA==
-----END PRIVATE KEY-----
`

// fuzzKey is fuzzKeyPEM as a signing key, its kid the RFC 7638 thumbprint.
var fuzzKey = sync.OnceValue(func() *handlertest.Key {
	block, _ := pem.Decode([]byte(fuzzKeyPEM))
	if block == nil {
		panic("fuzzKeyPEM holds no PEM block")
	}
	priv, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		panic(err)
	}
	signer := priv.(crypto.Signer)
	pub := jose.JSONWebKey{Key: signer.Public(), Use: "sig"}
	tp, err := pub.Thumbprint(crypto.SHA256)
	if err != nil {
		panic(err)
	}
	pub.KeyID = base64.RawURLEncoding.EncodeToString(tp)
	return &handlertest.Key{Private: signer, Alg: "RS256", Public: pub}
})

// fuzzClearEnv unsets the variables that override the configuration.
func fuzzClearEnv(f testing.TB) {
	for _, name := range []string{"JWTBEARER_TOKEN_SECRET", "JWTBEARER_ADMIN_TOKEN", "REDIS_ADDR", "REDIS_PASSWORD"} {
		f.Setenv(name, "")
	}
}

// fuzzConfigDir writes the files the seeds of FuzzParseConfig name: key
// files in every format ParseKeys reads, trust files, and files that are
// refused (a private key, an empty trust file).
func fuzzConfigDir(f *testing.F) string {
	dir := f.TempDir()
	ec, ed := handlertest.NewECKey(), handlertest.NewEd25519Key()
	set, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{ec.Public, ed.Public}})
	if err != nil {
		f.Fatal(err)
	}
	files := map[string][]byte{
		"id_rsa.pub":     fuzzKey().PublicKeyPEM(),
		"id_rsa":         []byte(fuzzKeyPEM),
		"ec.jwk":         ec.PublicJWKJSON(),
		"keys.jwks":      set,
		"trust.yaml":     []byte("- issuer: FileIssuer\n  subject: robot\n  scopes: [read]\n  keys:\n    - file: ec.jwk\n"),
		"sub/trust.yaml": []byte("- id: sub\n  issuer: Sub\n  subject_patterns: [\"repo:*\"]\n  keys:\n    - file: ../keys.jwks\n"),
		"empty.yaml":     nil,
		"none.yaml":      []byte("[]\n"),
	}
	for name, data := range files {
		path := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			f.Fatal(err)
		}
		if err := os.WriteFile(path, data, 0o600); err != nil {
			f.Fatal(err)
		}
	}
	return dir
}

// FuzzParseConfig reads arbitrary YAML with ParseConfig, from a folder
// holding the key and trust files the seeds name. Whatever the input,
// ParseConfig returns in bounded time without panicking, and a
// configuration it accepts passes Validate again and starts a server (on a
// memory store, whatever its store type says: no Redis is dialled).
func FuzzParseConfig(f *testing.F) {
	fuzzClearEnv(f)
	dir := fuzzConfigDir(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > fuzzMaxInput {
			return
		}
		defer fuzzWatchdog(t)()
		cfg, err := server.ParseConfig(data, dir)
		if err != nil {
			if cfg != nil {
				t.Fatalf("ParseConfig returned a configuration and the error %v", err)
			}
			if err.Error() == "" {
				t.Fatal("ParseConfig failed with an empty message")
			}
			return
		}
		if err := cfg.Validate(); err != nil {
			t.Fatalf("an accepted configuration fails Validate: %v\ninput:\n%s", err, data)
		}
		if fuzzPlainSecrets(cfg) > 2 {
			// Each costs New a bcrypt hash at cost 10 (about 50 ms); a few
			// are tested, more only slow the fuzzer down.
			return
		}
		srv, err := server.New(t.Context(), cfg, server.WithStore(memory.New()))
		if err != nil {
			t.Fatalf("an accepted configuration does not start a server: %v\ninput:\n%s", err, data)
		}
		defer func() { _ = srv.Close() }()
		if srv.Handler() == nil {
			t.Fatal("no public handler")
		}
		if on := srv.AdminHandler() != nil; on != (cfg.Admin.Listen != "") {
			t.Fatalf("admin handler present %v with admin.listen %q", on, cfg.Admin.Listen)
		}
	})
}

// fuzzWatchdog makes the input under test fail when it runs longer than
// fuzzExecLimit: it panics, which ends the process, and go test -fuzz
// then records the input as failing (a test alone cannot stop a hung
// call). Call the function it returns when the input is done.
func fuzzWatchdog(t *testing.T) func() bool {
	name := t.Name()
	return time.AfterFunc(fuzzExecLimit, func() {
		panic(fmt.Sprintf("%s: an input ran longer than %v", name, fuzzExecLimit))
	}).Stop
}

// fuzzPlainSecrets counts the clients whose secret New must hash.
func fuzzPlainSecrets(cfg *server.Config) int {
	n := 0
	for _, c := range cfg.Clients {
		if c.Secret != "" {
			n++
		}
	}
	return n
}

// fuzzServerYAML is the configuration of the servers of FuzzTokenHTTP and
// FuzzAdminTrust: fuzzKey trusted for TestClient/User1 (read, write), and
// the client "svc" (secret "svc-secret") for client_credentials and
// introspection. With admin, the admin API is on.
func fuzzServerYAML(f testing.TB, admin bool) string {
	hash, err := bcrypt.GenerateFromPassword([]byte("svc-secret"), bcrypt.MinCost)
	if err != nil {
		f.Fatal(err)
	}
	pemText := strings.ReplaceAll(strings.TrimSpace(string(fuzzKey().PublicKeyPEM())), "\n", "\n          ")
	y := `
issuer: ` + fuzzIssuer + `
token_secret: "0123456789abcdef0123456789abcdef-fuzz"
trust:
  - id: partner
    issuer: TestClient
    subject: User1
    scopes: [read, write]
    keys:
      - pem: |
          ` + pemText + `
clients:
  - id: svc
    secret_hash: "` + string(hash) + `"
    grant_types: [client_credentials, refresh_token, ` + fuzzJWTBearer + `]
    scopes: [read]
`
	if admin {
		y += "admin:\n  listen: 127.0.0.1:0\n  token: \"" + fuzzAdminToken + "\"\n"
	}
	return y
}

func fuzzConfig(f *testing.F, admin bool) *server.Config {
	cfg, err := server.ParseConfig([]byte(fuzzServerYAML(f, admin)), f.TempDir())
	if err != nil {
		f.Fatal(err)
	}
	return cfg
}

// fuzzAssertion is a fresh valid assertion of fuzzKey for TestClient/User1.
func fuzzAssertion() string {
	return fuzzKey().Sign(handlertest.Claims("TestClient", "User1", fuzzIssuer+"/token", time.Now()))
}

// fuzzExpand replaces, in a fuzzed body, "$A" with a fresh valid assertion
// and "$T" with a fresh access token obtained from h, so that inputs reach
// what lies behind a valid signature or token however long ago the seed
// was written.
func fuzzExpand(t *testing.T, h http.Handler, body string) string {
	t.Helper()
	if strings.Contains(body, "$A") {
		body = strings.ReplaceAll(body, "$A", url.QueryEscape(fuzzAssertion()))
	}
	if strings.Contains(body, "$T") {
		form := url.Values{"grant_type": {fuzzJWTBearer}, "assertion": {fuzzAssertion()}}
		req := httptest.NewRequestWithContext(t.Context(), http.MethodPost, "/token", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		var tok struct {
			AccessToken string `json:"access_token"`
		}
		if w.Code != http.StatusOK || json.Unmarshal(w.Body.Bytes(), &tok) != nil || tok.AccessToken == "" {
			t.Fatalf("a valid assertion was refused: %d %s", w.Code, w.Body)
		}
		body = strings.ReplaceAll(body, "$T", url.QueryEscape(tok.AccessToken))
	}
	return body
}

// fuzzHeaderValue reports whether v can reach a handler as a header value:
// net/http refuses a request with control characters in one, and trims
// surrounding blanks.
func fuzzHeaderValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; (c < 0x20 && c != '\t') || c == 0x7f {
			return false
		}
	}
	return strings.TrimSpace(v) == v
}

var fuzzTokenPaths = [4]string{"/token", "/introspect", "/revoke", "/token"}

// FuzzTokenHTTP sends POST requests with arbitrary bodies, Content-Type
// and Authorization values to the public handler: to /token, /introspect
// or /revoke, picked by sel. The answer is never a server error or a
// panic: it is 200 with the endpoint's JSON (a token, an introspection,
// or RFC 7009's empty revocation answer), or 4xx with an RFC 6749 error
// object. "$A" and "$T" in the body become a fresh assertion and a fresh
// access token.
func FuzzTokenHTTP(f *testing.F) {
	fuzzClearEnv(f)
	srv, err := server.New(f.Context(), fuzzConfig(f, false))
	if err != nil {
		f.Fatal(err)
	}
	h := srv.Handler()
	f.Fuzz(func(t *testing.T, sel byte, body, contentType, authorization string) {
		if len(body) > fuzzMaxInput || !fuzzHeaderValue(contentType) || !fuzzHeaderValue(authorization) {
			return
		}
		defer fuzzWatchdog(t)()
		path := fuzzTokenPaths[sel&3]
		body = fuzzExpand(t, h, body)
		req := httptest.NewRequestWithContext(t.Context(), http.MethodPost, path, strings.NewReader(body))
		if contentType != "" {
			req.Header.Set("Content-Type", contentType)
		}
		if authorization != "" {
			req.Header.Set("Authorization", authorization)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		fuzzCheckOAuth(t, path, w)
	})
}

// fuzzCheckOAuth checks an answer of /token, /introspect or /revoke.
func fuzzCheckOAuth(t *testing.T, path string, w *httptest.ResponseRecorder) {
	t.Helper()
	if w.Code >= 500 {
		t.Fatalf("POST %s: server error %d: %s", path, w.Code, w.Body)
	}
	if w.Code == http.StatusOK && path == "/revoke" {
		// RFC 7009 §2.2: the client ignores the body; fosite writes none.
		return
	}
	if mt, _, err := mime.ParseMediaType(w.Header().Get("Content-Type")); err != nil || mt != "application/json" {
		t.Fatalf("POST %s: %d with Content-Type %q: %s", path, w.Code, w.Header().Get("Content-Type"), w.Body)
	}
	var m map[string]any
	if err := json.Unmarshal(w.Body.Bytes(), &m); err != nil || m == nil {
		t.Fatalf("POST %s: %d, the body is not a JSON object (%v): %s", path, w.Code, err, w.Body)
	}
	switch {
	case w.Code == http.StatusOK && path == "/token":
		at, _ := m["access_token"].(string)
		tt, _ := m["token_type"].(string)
		exp, _ := m["expires_in"].(float64)
		if at == "" || !strings.EqualFold(tt, "bearer") || exp <= 0 {
			t.Fatalf("POST /token: 200 without a bearer token: %s", w.Body)
		}
		if got := w.Header().Get("Cache-Control"); got != "no-store" {
			t.Fatalf("POST /token: 200 with Cache-Control %q (RFC 6749 §5.1: no-store)", got)
		}
	case w.Code == http.StatusOK && path == "/introspect":
		if _, ok := m["active"].(bool); !ok {
			t.Fatalf("POST /introspect: 200 without \"active\": %s", w.Body)
		}
	case w.Code >= 400 && w.Code < 500:
		if code, _ := m["error"].(string); code == "" {
			t.Fatalf("POST %s: %d without an RFC 6749 \"error\": %s", path, w.Code, w.Body)
		}
		if d, present := m["error_description"]; present {
			if _, ok := d.(string); !ok {
				t.Fatalf("POST %s: error_description is not a string: %s", path, w.Body)
			}
		}
	default:
		t.Fatalf("POST %s: unexpected status %d: %s", path, w.Code, w.Body)
	}
}

var fuzzAdminMethods = [8]string{
	http.MethodPost, http.MethodPut, http.MethodGet, http.MethodDelete,
	http.MethodHead, http.MethodPatch, http.MethodOptions, http.MethodPost,
}

// FuzzAdminTrust sends arbitrary bodies to the admin API, with the method,
// the resource and the headers picked by sel, on a fresh server whose
// store holds a relationship from the configuration ("cfg-partner", read
// only here) and one created through the store ("known"):
//
//	sel&7      method: POST PUT GET DELETE HEAD PATCH OPTIONS POST
//	sel>>3&3   target: /admin/trust+path, /admin/trust/+path,
//	           /admin/trust/check+path, /admin/+path
//	sel&0x20   no Content-Type (else application/json)
//	sel>>6==3  a wrong admin token
//
// Every answer is JSON (an empty 204 and HEAD aside) with a status below
// 500, and a relationship the API creates reads back as it was answered
// and can be PUT back unchanged. "$A" in the body becomes a fresh
// assertion of cfg-partner's key.
func FuzzAdminTrust(f *testing.F) {
	fuzzClearEnv(f)
	cfg := fuzzConfig(f, true)
	known := handlertest.NewECKey()
	f.Fuzz(func(t *testing.T, sel byte, path string, body []byte) {
		if len(body) > fuzzMaxInput || len(path) > 1024 {
			return
		}
		var target string
		switch sel >> 3 & 3 {
		case 0:
			target = "/admin/trust" + path
		case 1:
			target = "/admin/trust/" + path
		case 2:
			target = "/admin/trust/check" + path
		default:
			target = "/admin/" + path
		}
		u, err := url.ParseRequestURI(target)
		if err != nil || strings.ContainsAny(target, " \t") {
			return // net/http answers such a request line itself
		}
		defer fuzzWatchdog(t)()
		srv, err := server.New(t.Context(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := srv.Store().CreateTrust(t.Context(), store.Trust{ID: "known", Issuer: "Known", Subject: "robot",
			Scopes: []string{"read"}, Keys: []jose.JSONWebKey{known.Public}}); err != nil {
			t.Fatal(err)
		}
		h := srv.AdminHandler()
		if bytes.Contains(body, []byte("$A")) {
			body = bytes.ReplaceAll(body, []byte("$A"), []byte(fuzzAssertion()))
		}
		token := fuzzAdminToken
		if sel>>6 == 3 {
			token = fuzzAdminToken[:len(fuzzAdminToken)-1] + "X"
		}
		method := fuzzAdminMethods[sel&7]
		w := fuzzAdmin(t, h, method, u, target, body, sel&0x20 == 0, token)
		fuzzCheckAdmin(t, method, target, w)
		if method == http.MethodPost && sel>>3&3 == 0 && w.Code == http.StatusCreated {
			fuzzAdminRoundTrip(t, h, w)
		}
	})
}

// fuzzAdmin sends one request to the admin handler h.
func fuzzAdmin(t *testing.T, h http.Handler, method string, u *url.URL, target string, body []byte, jsonBody bool, token string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequestWithContext(t.Context(), method, "/", bytes.NewReader(body))
	req.URL, req.RequestURI = u, target
	if jsonBody {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Authorization", "Bearer "+token)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	return w
}

// fuzzCheckAdmin checks an admin answer: below 500, and a JSON object with
// a JSON media type, except for HEAD and for an empty 204.
func fuzzCheckAdmin(t *testing.T, method, target string, w *httptest.ResponseRecorder) {
	t.Helper()
	if w.Code >= 500 {
		t.Fatalf("%s %s: server error %d: %s", method, target, w.Code, w.Body)
	}
	if method == http.MethodHead {
		return
	}
	if w.Code == http.StatusNoContent {
		if w.Body.Len() != 0 {
			t.Fatalf("%s %s: 204 with a body: %s", method, target, w.Body)
		}
		return
	}
	mt, _, err := mime.ParseMediaType(w.Header().Get("Content-Type"))
	if err != nil || (mt != "application/json" && mt != "application/problem+json") {
		t.Fatalf("%s %s: %d with Content-Type %q: %s", method, target, w.Code, w.Header().Get("Content-Type"), w.Body)
	}
	var m map[string]any
	if err := json.Unmarshal(w.Body.Bytes(), &m); err != nil || m == nil {
		t.Fatalf("%s %s: %d, the body is not a JSON object (%v): %s", method, target, w.Code, err, w.Body)
	}
	if mt == "application/problem+json" {
		if status, _ := m["status"].(float64); int(status) != w.Code {
			t.Fatalf("%s %s: %d with a problem of status %v: %s", method, target, w.Code, m["status"], w.Body)
		}
	}
}

// fuzzAdminRoundTrip checks a relationship the API has just created (w):
// GET at its Location answers what the create answered, and PUT of that
// answer is accepted and changes nothing. Relationships with shared
// secrets are not PUT back: their secrets are never rendered.
func fuzzAdminRoundTrip(t *testing.T, h http.Handler, w *httptest.ResponseRecorder) {
	t.Helper()
	created := w.Body.Bytes()
	loc := w.Header().Get("Location")
	u, err := url.ParseRequestURI(loc)
	if err != nil || !strings.HasPrefix(loc, "/admin/trust/") {
		t.Fatalf("201 with Location %q: %s", loc, created)
	}
	got := fuzzAdmin(t, h, http.MethodGet, u, loc, nil, false, fuzzAdminToken)
	if got.Code != http.StatusOK || !fuzzSameJSON(got.Body.Bytes(), created) {
		t.Fatalf("GET %s after create: %d %s\ncreated: %s", loc, got.Code, got.Body, created)
	}
	if bytes.Contains(created, []byte(`"kty":"oct"`)) {
		return
	}
	put := fuzzAdmin(t, h, http.MethodPut, u, loc, created, true, fuzzAdminToken)
	if put.Code != http.StatusOK || !fuzzSameJSON(put.Body.Bytes(), created) {
		t.Fatalf("PUT %s of what the create answered: %d %s\ncreated: %s", loc, put.Code, put.Body, created)
	}
}

// fuzzSameJSON reports whether a and b hold the same JSON value.
func fuzzSameJSON(a, b []byte) bool {
	var va, vb any
	if json.Unmarshal(a, &va) != nil || json.Unmarshal(b, &vb) != nil {
		return false
	}
	ja, _ := json.Marshal(va)
	jb, _ := json.Marshal(vb)
	return bytes.Equal(ja, jb)
}
