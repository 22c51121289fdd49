package integration_test

import (
	"bytes"
	"encoding/json"
	"io"
	"mime"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"text/template"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/bcrypt"

	"github.com/jwtbearer/jwtbearer/handler/handlertest"
	"github.com/jwtbearer/jwtbearer/server"
)

// jwtBearer is the grant_type of RFC 7523 §2.1.
const jwtBearer = "urn:ietf:params:oauth:grant-type:jwt-bearer"

// testServer is a running server and what a client needs to talk to it.
type testServer struct {
	// Issuer is http://127.0.0.1:PORT, the configured issuer identifier.
	Issuer string
	// TokenURL is Issuer + "/token".
	TokenURL string
	// Dir holds the key files and is the config's folder.
	Dir string
	// HTTP is a client with a timeout that does not follow redirects.
	HTTP *http.Client
	// Admin is the admin API's handler when the configuration turns it on.
	Admin http.Handler
}

// fixture is what newServer writes next to the configuration and what its
// template may refer to as .V.name.
type fixture struct {
	Files map[string][]byte
	Vars  map[string]any
}

// templateData is the data of a configuration template.
type templateData struct {
	Listen, Issuer, TokenURL, Dir string
	V                             map[string]any
}

var templateFuncs = template.FuncMap{
	// indent prefixes every line of s (a PEM block, say) with n spaces,
	// for a YAML block scalar.
	"indent": func(n int, s any) string {
		var text string
		switch v := s.(type) {
		case []byte:
			text = string(v)
		default:
			text = v.(string)
		}
		pad := strings.Repeat(" ", n)
		lines := strings.Split(strings.TrimRight(text, "\n"), "\n")
		return pad + strings.Join(lines, "\n"+pad)
	},
	// hash is a bcrypt hash of a client secret for secret_hash, at the
	// lowest cost: the server's own cost-10 hashing of "secret:" takes most
	// of a second per check under the race detector.
	"hash": func(secret string) (string, error) {
		h, err := bcrypt.GenerateFromPassword([]byte(secret), bcrypt.MinCost)
		return string(h), err
	},
	// json renders v as JSON, which YAML reads as a flow mapping.
	"json": func(v any) (string, error) {
		if b, ok := v.([]byte); ok {
			return string(b), nil
		}
		b, err := json.Marshal(v)
		return string(b), err
	},
}

// newServer starts a fresh server on 127.0.0.1 with the configuration
// rendered from tmpl, whose issuer is the listener's own address. The key
// files of fx are written to a temporary folder that relative file: paths
// resolve against.
func newServer(t *testing.T, tmpl string, fx fixture, opts ...server.Option) *testServer {
	t.Helper()
	ts := httptest.NewUnstartedServer(nil)
	addr := ts.Listener.Addr().String()
	issuer := "http://" + addr
	dir := t.TempDir()
	for name, data := range fx.Files {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), data, 0o600))
	}
	config := render(t, tmpl, templateData{Listen: addr, Issuer: issuer, TokenURL: issuer + "/token", Dir: dir, V: fx.Vars})
	cfg, err := server.ParseConfig([]byte(config), dir)
	require.NoError(t, err, "configuration:\n%s", config)
	srv, err := server.New(t.Context(), cfg, opts...)
	require.NoError(t, err)
	ts.Config.Handler = srv.Handler()
	ts.Start()
	t.Cleanup(ts.Close)
	return &testServer{Issuer: issuer, TokenURL: issuer + "/token", Dir: dir, HTTP: newHTTPClient(), Admin: srv.AdminHandler()}
}

func newHTTPClient() *http.Client {
	return &http.Client{
		Timeout:       15 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

func render(t *testing.T, tmpl string, data any) string {
	t.Helper()
	tp, err := template.New("config").Funcs(templateFuncs).Option("missingkey=error").Parse(tmpl)
	require.NoError(t, err)
	var b bytes.Buffer
	require.NoError(t, tp.Execute(&b, data))
	return b.String()
}

// response is an HTTP answer, read whole.
type response struct {
	Status int
	Header http.Header
	Body   []byte
}

// JSON decodes the body as a JSON object.
func (r *response) JSON(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	require.NoError(t, json.Unmarshal(r.Body, &m), "body: %s", r.Body)
	return m
}

// reqOption changes a request before it is sent.
type reqOption func(*http.Request)

// basicAuth sets HTTP Basic client authentication, form-encoding both
// parts first as RFC 6749 §2.3.1 asks.
func basicAuth(id, secret string) reqOption {
	return func(r *http.Request) { r.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret)) }
}

// contentType overrides the Content-Type header ("" removes it).
func contentType(ct string) reqOption {
	return func(r *http.Request) {
		if ct == "" {
			r.Header.Del("Content-Type")
			return
		}
		r.Header.Set("Content-Type", ct)
	}
}

// do sends a request and reads the whole answer.
func (ts *testServer) do(t *testing.T, method, path, body string, opts ...reqOption) *response {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, ts.Issuer+path, strings.NewReader(body))
	require.NoError(t, err)
	if body != "" {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for _, o := range opts {
		o(req)
	}
	resp, err := ts.HTTP.Do(req)
	require.NoError(t, err)
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return &response{Status: resp.StatusCode, Header: resp.Header, Body: b}
}

// post sends form to path as application/x-www-form-urlencoded.
func (ts *testServer) post(t *testing.T, path string, form url.Values, opts ...reqOption) *response {
	t.Helper()
	return ts.do(t, http.MethodPost, path, form.Encode(), opts...)
}

// token posts form to the token endpoint.
func (ts *testServer) token(t *testing.T, form url.Values, opts ...reqOption) *response {
	t.Helper()
	return ts.post(t, "/token", form, opts...)
}

// grant returns the form of a jwt-bearer token request with assertion and
// further name, value pairs.
func grant(assertion string, kv ...string) url.Values {
	f := url.Values{"grant_type": {jwtBearer}, "assertion": {assertion}}
	for i := 0; i+1 < len(kv); i += 2 {
		f.Add(kv[i], kv[i+1])
	}
	return f
}

// tokenResponse is a successful token response (RFC 6749 §5.1).
type tokenResponse struct {
	AccessToken  string  `json:"access_token"`
	TokenType    string  `json:"token_type"`
	ExpiresIn    float64 `json:"expires_in"`
	Scope        string  `json:"scope"`
	RefreshToken *string `json:"refresh_token"`
}

// requireToken checks a successful token response and decodes it.
func requireToken(t *testing.T, r *response) tokenResponse {
	t.Helper()
	require.Equalf(t, http.StatusOK, r.Status, "body: %s", r.Body)
	requireJSONContentType(t, r)
	assert.Equal(t, "no-store", r.Header.Get("Cache-Control"), "RFC 6749 §5.1: Cache-Control no-store")
	var tr tokenResponse
	require.NoError(t, json.Unmarshal(r.Body, &tr), "body: %s", r.Body)
	require.NotEmpty(t, tr.AccessToken, "body: %s", r.Body)
	assert.True(t, strings.EqualFold(tr.TokenType, "bearer"), "token_type %q", tr.TokenType)
	assert.Greater(t, tr.ExpiresIn, 0.0, "expires_in")
	return tr
}

func requireJSONContentType(t *testing.T, r *response) {
	t.Helper()
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	require.NoError(t, err, "Content-Type %q", r.Header.Get("Content-Type"))
	require.Equal(t, "application/json", mt)
}

// oauthError is an RFC 6749 §5.2 error body.
type oauthError struct {
	Error       string `json:"error"`
	Description string `json:"error_description"`
}

// requireError checks an error answer: the exact status and error code, a
// JSON body with a description, Cache-Control no-store, a WWW-Authenticate
// challenge on 401, and no internals leaked.
func requireError(t *testing.T, r *response, status int, code string) oauthError {
	t.Helper()
	require.Equalf(t, status, r.Status, "body: %s", r.Body)
	requireJSONContentType(t, r)
	assert.Equal(t, "no-store", r.Header.Get("Cache-Control"))
	var e oauthError
	require.NoError(t, json.Unmarshal(r.Body, &e), "body: %s", r.Body)
	assert.Equalf(t, code, e.Error, "body: %s", r.Body)
	assert.NotEmptyf(t, e.Description, "error_description; body: %s", r.Body)
	if status == http.StatusUnauthorized {
		assert.NotEmpty(t, r.Header.Get("WWW-Authenticate"), "RFC 6749 §5.2: 401 needs WWW-Authenticate")
	}
	assertNoLeak(t, r.Body)
	return e
}

// assertNoLeak checks that a body reveals no Go internals: file and line
// numbers, goroutine dumps, panics or library error texts.
func assertNoLeak(t *testing.T, body []byte) {
	t.Helper()
	lower := strings.ToLower(string(body))
	for _, marker := range []string{".go:", "goroutine", "panic", "go-jose"} {
		assert.NotContains(t, lower, marker, "body leaks internals: %s", body)
	}
}

// introspect asks /introspect about token as client id.
func (ts *testServer) introspect(t *testing.T, token, id, secret string) map[string]any {
	t.Helper()
	r := ts.post(t, "/introspect", url.Values{"token": {token}}, basicAuth(id, secret))
	require.Equalf(t, http.StatusOK, r.Status, "body: %s", r.Body)
	requireJSONContentType(t, r)
	return r.JSON(t)
}

// rsaKeyFiles returns a fresh RSA key and its public key as a PEM file.
func rsaKeyFile(name string) (*handlertest.Key, map[string][]byte) {
	k := handlertest.NewRSAKey()
	return k, map[string][]byte{name: k.PublicKeyPEM()}
}

// claims returns valid claims (five minutes, random jti) from iss about
// sub for aud.
func claims(iss, sub, aud string) map[string]any {
	return handlertest.Claims(iss, sub, aud, time.Now())
}

// with returns a copy of c with the given name, value pairs set; a nil
// value deletes the claim.
func with(c map[string]any, kv ...any) map[string]any {
	out := make(map[string]any, len(c)+len(kv)/2)
	for k, v := range c {
		out[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		name := kv[i].(string)
		if kv[i+1] == nil {
			delete(out, name)
			continue
		}
		out[name] = kv[i+1]
	}
	return out
}

// unix is now + d as a NumericDate.
func unix(d time.Duration) int64 { return time.Now().Add(d).Unix() }
