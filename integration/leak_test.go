package integration_test

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"io"
	"mime"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/jwtbearer/jwtbearer/handler/handlertest"
	"github.com/jwtbearer/jwtbearer/store/redis/redistest"
)

// leakAdminToken is the admin token of the server of TestLeak.
const leakAdminToken = "leak-test-admin-token-0123456789abcdef"

// leakConfig trusts partner.pub for TestClient/User1, has the client "rs"
// (secret "rs-secret") and the admin API on.
const leakConfig = `
listen: {{.Listen}}
issuer: {{.Issuer}}
trust:
  - id: partner
    issuer: TestClient
    subject: User1
    scopes: [read, write]
    keys:
      - file: partner.pub
clients:
  - id: rs
    secret_hash: {{hash "rs-secret"}}
    grant_types: [client_credentials]
    scopes: [read]
  - id: jwt-client
    jwks: [{file: partner.pub}]
    grant_types: [client_credentials]
    scopes: [read]
access_tokens: {format: jwt}
admin:
  listen: 127.0.0.1:0
  token: ` + leakAdminToken + `
`

// leakMarkers are texts that reveal internals: Go source paths, stack
// traces, module paths, store driver and network errors, and the raw
// messages of Go's decoders (which name Go types and layouts). No answer
// may hold one: the callers put none in their requests for it to be echoed.
var leakMarkers = []string{
	".go:", "/work/", "/root/", "/usr/local/go", "/home/",
	"goroutine ", "panic", "runtime.", "runtime error",
	"github.com/", "golang.org/", "go-jose",
	"redis:", "dial tcp", "connection refused", "i/o timeout", "EOF", "broken pipe",
	"json: cannot unmarshal", "Go struct field", "Go value of type", "strconv.", "parsing time",
}

// leakAssert checks body against leakMarkers and assertNoLeak's list.
func leakAssert(t *testing.T, body []byte) {
	t.Helper()
	assertNoLeak(t, body)
	leakAssertMarkers(t, body)
}

func leakAssertMarkers(t *testing.T, body []byte) {
	t.Helper()
	lower := strings.ToLower(string(body))
	for _, m := range leakMarkers {
		if m == "EOF" {
			assert.NotContains(t, string(body), m, "body leaks internals: %s", body)
			continue
		}
		assert.NotContains(t, lower, strings.ToLower(m), "body leaks internals: %s", body)
	}
}

// leakPrometheusHelp matches the HELP lines of the Prometheus text format,
// which describe the metrics in the client library's own words
// ("runtime.GOMAXPROCS").
var leakPrometheusHelp = regexp.MustCompile(`(?m)^# HELP .*$`)

// leakCase is one request with malformed input and what must come back.
type leakCase struct {
	name string
	// admin sends it to the admin listener, with the admin token unless
	// header says otherwise.
	admin  bool
	method string // POST when empty
	// path is the request target, with its query.
	path string
	// body is sent as it is, "$A" replaced with a fresh valid assertion of
	// TestClient/User1 and "$T" with a valid access token. A body comes
	// with Content-Type application/x-www-form-urlencoded (public) or
	// application/json (admin) unless header says otherwise.
	body string
	// header replaces request headers: an empty list removes one, several
	// values send it several times.
	header map[string][]string
	// raw sends the request as these bytes instead (see leakRaw), for what
	// net/http's client refuses to send: a body shorter than its
	// Content-Length, a broken chunked encoding.
	raw string
	// status is the status expected; 0 accepts any below 500.
	status int
	// text: the answer may be other than JSON (the Prometheus text format).
	text bool
}

// leakEnv is the running server of TestLeak.
type leakEnv struct {
	ts       *testServer
	adminURL string
	key      *handlertest.Key
	token    string
}

func newLeakEnv(t *testing.T) *leakEnv {
	t.Helper()
	t.Setenv("JWTBEARER_ADMIN_TOKEN", "")
	key, files := rsaKeyFile("partner.pub")
	ts := newServer(t, leakConfig, fixture{Files: files})
	require.NotNil(t, ts.Admin, "the admin API is on")
	admin := httptest.NewServer(ts.Admin)
	t.Cleanup(admin.Close)
	e := &leakEnv{ts: ts, adminURL: admin.URL, key: key}
	e.token = requireToken(t, ts.token(t, grant(e.assertion()))).AccessToken
	return e
}

func (e *leakEnv) assertion() string {
	return e.key.Sign(claims("TestClient", "User1", e.ts.TokenURL))
}

// send sends c's request and reads the answer.
func (e *leakEnv) send(t *testing.T, c leakCase) *response {
	t.Helper()
	base := e.ts.Issuer
	if c.admin {
		base = e.adminURL
	}
	if c.raw != "" {
		return leakRaw(t, base, c.raw)
	}
	method := c.method
	if method == "" {
		method = http.MethodPost
	}
	body := strings.NewReplacer("$A", url.QueryEscape(e.assertion()), "$T", url.QueryEscape(e.token)).Replace(c.body)
	req, err := http.NewRequestWithContext(t.Context(), method, base+c.path, strings.NewReader(body))
	require.NoError(t, err)
	if c.admin {
		req.Header.Set("Authorization", "Bearer "+leakAdminToken)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if c.admin {
			req.Header.Set("Content-Type", "application/json")
		}
	}
	for name, values := range c.header {
		req.Header.Del(name)
		for _, v := range values {
			req.Header.Add(name, v)
		}
	}
	resp, err := e.ts.HTTP.Do(req)
	require.NoError(t, err)
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return &response{Status: resp.StatusCode, Header: resp.Header, Body: b}
}

// leakRaw writes request to the listener at base as it is, closes the
// connection for writing (so that a short body ends), and reads the
// answer.
func leakRaw(t *testing.T, base, request string) *response {
	t.Helper()
	u, err := url.Parse(base)
	require.NoError(t, err)
	conn, err := net.DialTimeout("tcp", u.Host, 5*time.Second)
	require.NoError(t, err)
	defer func() { _ = conn.Close() }()
	require.NoError(t, conn.SetDeadline(time.Now().Add(10*time.Second)))
	_, err = io.WriteString(conn, request)
	require.NoError(t, err)
	require.NoError(t, conn.(*net.TCPConn).CloseWrite())
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	require.NoError(t, err)
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return &response{Status: resp.StatusCode, Header: resp.Header, Body: b}
}

// check asserts what every answer must be: below 500 (or c.status), a
// JSON object with a JSON media type unless there is no body to give (a
// HEAD, a 204, RFC 7009's 200 to a revocation) or c.text, and nothing in
// it that reveals internals.
func (c leakCase) check(t *testing.T, r *response) {
	t.Helper()
	if c.status != 0 {
		assert.Equalf(t, c.status, r.Status, "body: %s", r.Body)
	}
	assert.Lessf(t, r.Status, 500, "body: %s", r.Body)
	switch {
	case c.method == http.MethodHead:
		assert.Empty(t, r.Body, "HEAD")
		return
	case r.Status == http.StatusNoContent,
		r.Status == http.StatusOK && c.path == "/revoke" && !c.admin:
		assert.Empty(t, r.Body)
		return
	case c.text && r.Status == http.StatusOK:
		leakAssertMarkers(t, leakPrometheusHelp.ReplaceAll(r.Body, nil))
		return
	}
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if assert.NoErrorf(t, err, "Content-Type %q; body: %s", r.Header.Get("Content-Type"), r.Body) {
		assert.Containsf(t, []string{"application/json", "application/problem+json"}, mt, "body: %s", r.Body)
	}
	var m map[string]any
	assert.NoErrorf(t, json.Unmarshal(r.Body, &m), "the body is not a JSON object: %s", r.Body)
	if r.Status >= 400 && !c.admin {
		assert.NotEmptyf(t, m["error"], "RFC 6749 §5.2 error member; body: %s", r.Body)
	}
	leakAssert(t, r.Body)
}

// leakB64 is base64url without padding.
func leakB64(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

// leakBasic is an Authorization header of HTTP Basic with userpass as it
// is, not form-encoded: malformed ones included.
func leakBasic(userpass string) map[string][]string {
	return map[string][]string{"Authorization": {"Basic " + base64.StdEncoding.EncodeToString([]byte(userpass))}}
}

// leakClientAssertionType is RFC 7523 §2.2's client_assertion_type.
const leakClientAssertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

// leakCases are the malformed requests of TestLeak, to every route of
// both listeners.
func leakCases(e *leakEnv) []leakCase {
	jwtGrant := "grant_type=" + url.QueryEscape(jwtBearer)
	withAssertion := func(a string) string { return jwtGrant + "&assertion=" + url.QueryEscape(a) }
	rs := leakBasic("rs:rs-secret")
	form := func(ct ...string) map[string][]string { return map[string][]string{"Content-Type": ct} }
	noAuth := map[string][]string{"Authorization": {}}
	hugeNumbers := signRaw(e.key, header(e.key), []byte(`{"iss":"TestClient","sub":"User1","aud":"`+e.ts.TokenURL+`","exp":1e400,"iat":-99999999999999999999,"nbf":1e-400,"jti":"x"}`))
	notObject := signRaw(e.key, header(e.key), []byte(`["TestClient","User1"]`))
	// Client assertions of a client that authenticates with that key.
	caHuge := signRaw(e.key, header(e.key), []byte(`{"iss":"jwt-client","sub":"jwt-client","aud":"`+e.ts.TokenURL+`","exp":1e400,"iat":-99999999999999999999,"jti":"x"}`))
	caWeird := signRaw(e.key, header(e.key), []byte(`{"iss":"jwt-client","sub":"jwt-client","aud":[[],{},null,1],"exp":"soon","jti":{"a":1}}`))
	caType := url.QueryEscape(leakClientAssertionType)
	trust := `{"id":"x","issuer":"X","subject":"y","scopes":["read"],"keys":[` + string(handlertest.NewECKey().PublicJWKJSON()) + `]}`
	withKeys := func(keys string) string {
		return `{"id":"x","issuer":"X","subject":"y","keys":[` + keys + `]}`
	}

	cases := []leakCase{
		// The token endpoint: bodies.
		{name: "token/empty body", path: "/token", status: 400},
		{name: "token/huge body", path: "/token", body: jwtGrant + "&assertion=" + strings.Repeat("a", 70<<10), status: 413},
		{name: "token/truncated body", path: "/token", raw: "POST /token HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 500\r\n\r\ngrant_type=client_cre", status: 400},
		{name: "token/broken chunked body", path: "/token", raw: "POST /token HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\ngrant_type\r\n0\r\n\r\n", status: 400},
		{name: "token/not a form", path: "/token", body: "%zz&&==%", status: 400},
		{name: "token/invalid UTF-8", path: "/token", body: "grant_type=%ff%fe&assertion=%c0%80", status: 400},
		{name: "token/raw invalid UTF-8", path: "/token", body: "grant_type=\xff\xfe&assertion=\xc0\x80", status: 400},
		{name: "token/NUL bytes", path: "/token", body: jwtGrant + "%00&assertion=a%00b", status: 400},
		{name: "token/raw NUL bytes", path: "/token", body: "grant_type=\x00&assertion=\x00", status: 400},
		{name: "token/JSON body", path: "/token", body: `{"grant_type":"client_credentials"}`, header: form("application/json"), status: 400},
		{name: "token/no Content-Type", path: "/token", body: jwtGrant + "&assertion=$A", header: form(), status: 400},
		{name: "token/malformed Content-Type", path: "/token", body: jwtGrant + "&assertion=$A", header: form("application/x-www-form-urlencoded; charset"), status: 400},
		{name: "token/multipart", path: "/token", body: "--b\r\nContent-Disposition: form-data; name=\"grant_type\"\r\n\r\nclient_credentials\r\n--b--\r\n", header: form("multipart/form-data; boundary=b"), status: 400},
		{name: "token/query string", path: "/token?grant_type=client_credentials", body: "scope=read", header: rs, status: 400},
		{name: "token/repeated grant_type", path: "/token", body: jwtGrant + "&" + jwtGrant + "&assertion=$A", status: 400},
		{name: "token/repeated assertion", path: "/token", body: jwtGrant + "&assertion=$A&assertion=$A", status: 400},
		{name: "token/unknown grant type", path: "/token", body: "grant_type=" + strings.Repeat("x", 500), status: 400},
		{name: "token/no grant type", path: "/token", body: "assertion=$A", status: 400},
		{name: "token/refresh garbage", path: "/token", body: "grant_type=refresh_token&refresh_token=ory_rt_x.y", header: rs, status: 400},
		// The token endpoint: methods.
		{name: "token/GET", method: http.MethodGet, path: "/token", status: 405},
		{name: "token/HEAD", method: http.MethodHead, path: "/token", status: 405},
		{name: "token/PUT", method: http.MethodPut, path: "/token", body: jwtGrant, status: 405},
		{name: "token/DELETE", method: http.MethodDelete, path: "/token", status: 405},
		{name: "token/OPTIONS", method: http.MethodOptions, path: "/token", status: 405},
		{name: "token/unknown method", method: "BREW", path: "/token", status: 405},
		// The token endpoint: client authentication.
		{name: "basic/bad base64", path: "/token", body: "grant_type=client_credentials", header: map[string][]string{"Authorization": {"Basic !!!%%%"}}, status: 401},
		{name: "basic/no colon", path: "/token", body: "grant_type=client_credentials", header: leakBasic("rsrs-secret"), status: 401},
		{name: "basic/bad percent-encoding in id", path: "/token", body: "grant_type=client_credentials", header: leakBasic("r%zz:rs-secret"), status: 401},
		{name: "basic/bad percent-encoding in secret", path: "/token", body: "grant_type=client_credentials", header: leakBasic("rs:rs-secret%"), status: 401},
		{name: "basic/invalid UTF-8", path: "/token", body: "grant_type=client_credentials", header: leakBasic("\xff\xfe:\xc0\x80"), status: 401},
		{name: "basic/NUL", path: "/token", body: "grant_type=client_credentials", header: leakBasic("rs\x00:rs-secret\x00"), status: 401},
		{name: "basic/empty", path: "/token", body: "grant_type=client_credentials", header: map[string][]string{"Authorization": {"Basic "}}, status: 401},
		{name: "basic/huge", path: "/token", body: "grant_type=client_credentials", header: leakBasic(strings.Repeat("r", 8<<10) + ":x"), status: 401},
		{name: "basic/unknown client", path: "/token", body: "grant_type=client_credentials", header: leakBasic("nobody:x"), status: 401},
		{name: "basic/wrong secret", path: "/token", body: "grant_type=client_credentials", header: leakBasic("rs:wrong"), status: 401},
		{name: "basic/other scheme", path: "/token", body: "grant_type=client_credentials", header: map[string][]string{"Authorization": {"Digest username=rs"}}, status: 401},
		{name: "basic/two headers", path: "/token", body: "grant_type=client_credentials", header: map[string][]string{"Authorization": {rs["Authorization"][0], rs["Authorization"][0]}}, status: 400},
		{name: "client_assertion/huge numbers, real client", path: "/token", body: "grant_type=client_credentials&client_assertion_type=" + caType + "&client_assertion=" + url.QueryEscape(caHuge), status: 401},
		{name: "client_assertion/wrong types, real client", path: "/token", body: "grant_type=client_credentials&client_assertion_type=" + caType + "&client_assertion=" + url.QueryEscape(caWeird), status: 401},
		{name: "client_assertion/at introspection", path: "/introspect", body: "token=x&client_assertion_type=" + caType + "&client_assertion=" + url.QueryEscape(caWeird), status: 401},
		{name: "client_assertion/at revocation", path: "/revoke", body: "token=x&client_assertion_type=" + caType + "&client_assertion=" + url.QueryEscape(caHuge), status: 401},
		{name: "client_assertion/garbage", path: "/token", body: "grant_type=client_credentials&client_assertion_type=" + url.QueryEscape(leakClientAssertionType) + "&client_assertion=a.b.c", status: 401},
		{name: "client_assertion/unknown type", path: "/token", body: "grant_type=client_credentials&client_id=rs&client_assertion_type=%ff%00&client_assertion=" + url.QueryEscape(e.assertion()), status: 401},
		{name: "client_assertion/huge numbers", path: "/token", body: "grant_type=client_credentials&client_id=rs&client_assertion_type=" + url.QueryEscape(leakClientAssertionType) + "&client_assertion=" + url.QueryEscape(hugeNumbers), status: 401},
		{name: "basic/and other body credentials", path: "/token", body: "grant_type=client_credentials&client_id=nobody&client_secret=%ff", header: rs},
		// The token endpoint: garbage assertions.
		{name: "assertion/not a JWS", path: "/token", body: withAssertion("not-a-jws"), status: 400},
		{name: "assertion/bad base64", path: "/token", body: withAssertion("!!!.???.***"), status: 400},
		{name: "assertion/two parts", path: "/token", body: withAssertion(leakB64(`{"alg":"RS256"}`) + "." + leakB64(`{}`)), status: 400},
		{name: "assertion/header not an object", path: "/token", body: withAssertion(unsigned(`["RS256"]`, `{}`, "AAAA")), status: 400},
		{name: "assertion/header not JSON", path: "/token", body: withAssertion(unsigned(`{"alg":`, `{}`, "AAAA")), status: 400},
		{name: "assertion/claims not an object", path: "/token", body: withAssertion(notObject), status: 400},
		{name: "assertion/huge numbers", path: "/token", body: withAssertion(hugeNumbers), status: 400},
		{name: "assertion/alg none", path: "/token", body: withAssertion(unsigned(`{"alg":"none"}`, `{"iss":"TestClient","sub":"User1"}`, "")), status: 400},
		{name: "assertion/JSON serialization", path: "/token", body: withAssertion(jsonSerialization(e.assertion())), status: 400},
		{name: "assertion/oversized", path: "/token", body: withAssertion(strings.Repeat("a", 60<<10)), status: 400},
		{name: "assertion/NUL and invalid UTF-8", path: "/token", body: withAssertion("\x00\xff.\xc0\x80.\x00"), status: 400},
		{name: "assertion/empty", path: "/token", body: jwtGrant + "&assertion=", status: 400},
		// Introspection.
		{name: "introspect/no auth", path: "/introspect", body: "token=$T", status: 401},
		{name: "introspect/bad basic", path: "/introspect", body: "token=$T", header: map[string][]string{"Authorization": {"Basic ###"}}, status: 401},
		{name: "introspect/bearer", path: "/introspect", body: "token=$T", header: map[string][]string{"Authorization": {"Bearer $T"}}, status: 401},
		{name: "introspect/garbage token", path: "/introspect", body: "token=%00%ff" + strings.Repeat("x", 1000), header: rs, status: 200},
		{name: "introspect/no token", path: "/introspect", body: "token_type_hint=access_token", header: rs, status: 200},
		{name: "introspect/access_token parameter", path: "/introspect", body: "token=$T&access_token=$T", header: rs, status: 400},
		{name: "introspect/repeated token", path: "/introspect", body: "token=$T&token=x", header: rs, status: 400},
		{name: "introspect/query string", path: "/introspect?token=x", body: "token=$T", header: rs, status: 400},
		{name: "introspect/wrong Content-Type", path: "/introspect", body: `{"token":"x"}`, header: map[string][]string{"Authorization": rs["Authorization"], "Content-Type": {"application/json"}}, status: 400},
		{name: "introspect/GET", method: http.MethodGet, path: "/introspect?token=x", status: 405},
		// Revocation.
		{name: "revoke/no auth", path: "/revoke", body: "token=$T", status: 401},
		{name: "revoke/bad basic", path: "/revoke", body: "token=$T", header: leakBasic("rs"), status: 401},
		{name: "revoke/garbage token", path: "/revoke", body: "token=%00%ff", header: rs, status: 200},
		{name: "revoke/bad hint", path: "/revoke", body: "token=x&token_type_hint=%ff", header: rs, status: 200},
		{name: "revoke/no token", path: "/revoke", body: "", header: rs, status: 400},
		{name: "revoke/huge body", path: "/revoke", body: "token=" + strings.Repeat("t", 70<<10), header: rs, status: 413},
		{name: "revoke/DELETE", method: http.MethodDelete, path: "/revoke", status: 405},
		// Health.
		{name: "healthz/query", method: http.MethodGet, path: "/healthz?x=%00%ff&x=1", status: 200},
		{name: "healthz/HEAD", method: http.MethodHead, path: "/healthz", status: 200},
		{name: "healthz/POST", path: "/healthz", body: "x=1", status: 405},
		// Metadata, the access tokens' key set and metrics, whatever their
		// state: none of them may leak either.
		{name: "metadata/GET", method: http.MethodGet, path: "/.well-known/oauth-authorization-server"},
		{name: "metadata/query", method: http.MethodGet, path: "/.well-known/oauth-authorization-server?x=%00%ff"},
		{name: "metadata/POST", path: "/.well-known/oauth-authorization-server", body: "x=%zz"},
		{name: "metadata/suffix", method: http.MethodGet, path: "/.well-known/oauth-authorization-server/%ff%00"},
		{name: "jwks/GET", method: http.MethodGet, path: "/jwks.json"},
		{name: "jwks/POST", path: "/jwks.json", body: `{"keys":[]}`, header: form("application/json")},
		{name: "jwks/query", method: http.MethodGet, path: "/jwks.json?kid=%00"},
		{name: "metrics/GET", method: http.MethodGet, path: "/metrics", text: true},
		{name: "metrics/query", method: http.MethodGet, path: "/metrics?name[]=%ff&x=%00", text: true},
		{name: "metrics/POST", path: "/metrics", body: "x=1", text: true},
		{name: "metrics/Accept", method: http.MethodGet, path: "/metrics", header: map[string][]string{"Accept": {"text/plain;version=9;q=abc, \xff/\xfe;;, application/openmetrics-text; version=0.0.1"}}, text: true},
		// Unknown paths.
		{name: "unknown/GET", method: http.MethodGet, path: "/nope", status: 404},
		{name: "unknown/POST", path: "/nope", body: "x=1", status: 404},
		{name: "unknown/escapes", method: http.MethodGet, path: "/%ff%00%2e%2e%2f", status: 404},
		{name: "unknown/long", method: http.MethodGet, path: "/" + strings.Repeat("a", 4000), status: 404},
		{name: "unknown/token suffix", path: "/token/", body: "grant_type=client_credentials", header: rs},
		{name: "unknown/dot segments", method: http.MethodGet, path: "/x/../healthz"},
		{name: "unknown/double slash", method: http.MethodGet, path: "//healthz"},

		// The admin API: authentication.
		{name: "admin/no token", admin: true, method: http.MethodGet, path: "/admin/trust", header: noAuth, status: 401},
		{name: "admin/wrong token", admin: true, method: http.MethodGet, path: "/admin/trust", header: map[string][]string{"Authorization": {"Bearer " + strings.Repeat("x", len(leakAdminToken))}}, status: 401},
		{name: "admin/basic", admin: true, method: http.MethodGet, path: "/admin/trust", header: leakBasic("admin:" + leakAdminToken), status: 401},
		{name: "admin/two tokens", admin: true, method: http.MethodGet, path: "/admin/trust", header: map[string][]string{"Authorization": {"Bearer " + leakAdminToken, "Bearer " + leakAdminToken}}, status: 401},
		{name: "admin/no token, unknown path", admin: true, method: http.MethodGet, path: "/nope", header: noAuth, status: 401},
		{name: "admin/no token, bad body", admin: true, path: "/admin/trust", body: "{", header: noAuth, status: 401},
		// The admin API: bodies.
		{name: "admin/empty body", admin: true, path: "/admin/trust", status: 400},
		{name: "admin/truncated JSON", admin: true, path: "/admin/trust", body: trust[:30], status: 400},
		{name: "admin/truncated body", admin: true, raw: "POST /admin/trust HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + leakAdminToken + "\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n{\"issuer\":", status: 400},
		{name: "admin/broken chunked body", admin: true, raw: "POST /admin/trust HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + leakAdminToken + "\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n", status: 400},
		{name: "admin/JSON array", admin: true, path: "/admin/trust", body: `[]`, status: 400},
		{name: "admin/JSON string", admin: true, path: "/admin/trust", body: `"trust"`, status: 400},
		{name: "admin/wrong member type", admin: true, path: "/admin/trust", body: `{"issuer":1,"subject":"y","keys":[]}`, status: 400},
		{name: "admin/huge number", admin: true, path: "/admin/trust", body: `{"issuer":"X","subject":"y","require_jti":1e400,"keys":[]}`, status: 400},
		{name: "admin/bad time", admin: true, path: "/admin/trust", body: `{"issuer":"X","subject":"y","expires_at":"tomorrow","keys":[]}`, status: 400},
		{name: "admin/bad duration", admin: true, path: "/admin/trust", body: `{"issuer":"X","subject":"y","max_assertion_lifetime":"forever","access_token_lifetime":1e400,"keys":[]}`, status: 400},
		{name: "admin/unknown member", admin: true, path: "/admin/trust", body: `{"issuer":"X","subject":"y","bogus":1}`, status: 400},
		{name: "admin/trailing data", admin: true, path: "/admin/trust", body: trust + `{}`, status: 400},
		{name: "admin/NUL byte", admin: true, path: "/admin/trust", body: "{\"issuer\":\"X\x00\"}", status: 400},
		{name: "admin/invalid UTF-8", admin: true, path: "/admin/trust", body: "{\"id\":\"\xff\",\"issuer\":\"\xc0\x80\",\"subject\":\"y\",\"keys\":[]}", status: 400},
		{name: "admin/huge body", admin: true, path: "/admin/trust", body: `{"issuer":"` + strings.Repeat("x", 1<<20) + `"}`, status: 413},
		{name: "admin/text body", admin: true, path: "/admin/trust", body: "issuer=X", header: form("text/plain"), status: 415},
		{name: "admin/malformed Content-Type", admin: true, path: "/admin/trust", body: trust, header: form("application/json; ="), status: 415},
		// The admin API: bad JWKs.
		{name: "jwk/not an object", admin: true, path: "/admin/trust", body: withKeys(`1,"x",null,[]`), status: 400},
		{name: "jwk/wrong member type", admin: true, path: "/admin/trust", body: withKeys(`{"kty":"RSA","n":1,"e":"AQAB"}`), status: 400},
		{name: "jwk/bad base64", admin: true, path: "/admin/trust", body: withKeys(`{"kty":"EC","crv":"P-256","x":"!!","y":"??"}`), status: 400},
		{name: "jwk/unknown kty", admin: true, path: "/admin/trust", body: withKeys(`{"kty":"XYZ"}`), status: 400},
		{name: "jwk/private", admin: true, path: "/admin/trust", body: withKeys(`{"kty":"EC","crv":"P-256","x":"AA","y":"AA","d":"AA"}`), status: 400},
		{name: "jwk/short RSA", admin: true, path: "/admin/trust", body: withKeys(`{"kty":"RSA","n":"AQAB","e":"AQAB"}`), status: 400},
		{name: "jwk/point off the curve", admin: true, path: "/admin/trust", body: withKeys(`{"kty":"EC","crv":"P-256","x":"` + leakB64(strings.Repeat("\x01", 32)) + `","y":"` + leakB64(strings.Repeat("\x02", 32)) + `"}`), status: 400},
		{name: "jwk/set", admin: true, path: "/admin/trust", body: withKeys(`{"keys":[]}`), status: 400},
		{name: "jwk/bad PEM", admin: true, path: "/admin/trust", body: withKeys(`{"pem":"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"}`), status: 400},
		{name: "jwk/short secret", admin: true, path: "/admin/trust", body: withKeys(`{"kty":"oct","k":"AA","alg":"HS256"}`), status: 400},
		// The admin API: routes, methods and queries.
		{name: "admin/unknown path", admin: true, method: http.MethodGet, path: "/admin/nope", status: 404},
		{name: "admin/double slash", admin: true, method: http.MethodGet, path: "//admin/trust"},
		{name: "admin/escaped id", admin: true, method: http.MethodGet, path: "/admin/trust/%ff%00", status: 404},
		{name: "admin/PATCH", admin: true, method: http.MethodPatch, path: "/admin/trust/cfg-partner", body: `{}`, status: 405},
		{name: "admin/DELETE collection", admin: true, method: http.MethodDelete, path: "/admin/trust", status: 405},
		{name: "admin/HEAD", admin: true, method: http.MethodHead, path: "/admin/trust", status: 200},
		{name: "admin/bad query", admin: true, method: http.MethodGet, path: "/admin/trust?limit=1e400&page_token=%00&issuer=a&issuer=b&x=%ff", status: 400},
		{name: "admin/PUT config relationship", admin: true, method: http.MethodPut, path: "/admin/trust/cfg-partner", body: trust, status: 409},
		{name: "admin/PUT id mismatch", admin: true, method: http.MethodPut, path: "/admin/trust/other", body: trust, status: 400},
		{name: "admin/DELETE missing", admin: true, method: http.MethodDelete, path: "/admin/trust/missing", status: 404},
		{name: "check/empty", admin: true, path: "/admin/trust/check", body: `{}`, status: 400},
		{name: "check/garbage", admin: true, path: "/admin/trust/check", body: `{"assertion":"\u0000.\u00ff.x"}`, status: 200},
		{name: "check/huge numbers", admin: true, path: "/admin/trust/check", body: `{"assertion":"` + hugeNumbers + `"}`, status: 200},
		{name: "check/wrong type", admin: true, path: "/admin/trust/check", body: `{"assertion":["x"]}`, status: 400},
		{name: "remote-keys/POST", admin: true, path: "/admin/remote-keys", body: `{}`, status: 405},
	}
	return cases
}

// TestLeak sends malformed input to every route of the public and the
// admin listener: the answers are below 500, JSON, and reveal nothing of
// the server's internals.
func TestLeak(t *testing.T) {
	e := newLeakEnv(t)
	for _, c := range leakCases(e) {
		t.Run(c.name, func(t *testing.T) {
			c.check(t, e.send(t, c))
		})
	}
}

// TestLeakRedisDown stops Redis under a running instance: every route that
// needs the store answers 503, and says nothing of Redis.
func TestLeakRedisDown(t *testing.T) {
	redistest.Require(t)
	rs := redistest.Start(t)
	key := handlertest.NewRSAKey()
	a := newAdminInstance(t, []string{rs.Addr}, uniquePrefix(t), key)
	tok := requireToken(t, a.token(t, grant(partnerAssertion(key)))).AccessToken
	_, port, err := net.SplitHostPort(rs.Addr)
	require.NoError(t, err)
	rs.Stop()

	partner := basicAuth("Partner", "partner-secret")
	trust := map[string]any{"id": "x", "issuer": "X", "subject": "y", "keys": []json.RawMessage{handlertest.NewECKey().PublicJWKJSON()}}
	for _, c := range []struct {
		name string
		send func(t *testing.T) *response
		// code is the RFC 6749 error code; "" for the admin API's problem
		// details and the health check.
		code string
		// may200: a 200 is fine too (see below).
		may200 bool
	}{
		{"token jwt-bearer", func(t *testing.T) *response { return a.token(t, grant(partnerAssertion(key))) }, "temporarily_unavailable", false},
		{"token client_credentials", func(t *testing.T) *response {
			return a.token(t, url.Values{"grant_type": {"client_credentials"}}, partner)
		}, "temporarily_unavailable", false},
		{"introspect", func(t *testing.T) *response {
			return a.post(t, "/introspect", url.Values{"token": {tok}}, basicAuth("rs", "rs-secret"))
		}, "temporarily_unavailable", false},
		{"revoke", func(t *testing.T) *response { return a.post(t, "/revoke", url.Values{"token": {tok}}, partner) }, "temporarily_unavailable", false},
		{"healthz", func(t *testing.T) *response { return a.do(t, http.MethodGet, "/healthz", "") }, "", false},
		{"admin list", func(t *testing.T) *response { return a.admin(t, http.MethodGet, "/admin/trust", nil) }, "", false},
		{"admin get", func(t *testing.T) *response { return a.admin(t, http.MethodGet, "/admin/trust/cfg-partner", nil) }, "", false},
		{"admin create", func(t *testing.T) *response { return a.admin(t, http.MethodPost, "/admin/trust", trust) }, "", false},
		{"admin delete", func(t *testing.T) *response { return a.admin(t, http.MethodDelete, "/admin/trust/x", nil) }, "", false},
		// The dry run reads relationships through the store's cache, and
		// leaves jti_used out when the replay guard fails
		// (handler.CheckResult): it may still answer.
		{"admin check", func(t *testing.T) *response {
			return a.admin(t, http.MethodPost, "/admin/trust/check", map[string]string{"assertion": partnerAssertion(key)})
		}, "", true},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := c.send(t)
			if !c.may200 || r.Status != http.StatusOK {
				require.Equalf(t, http.StatusServiceUnavailable, r.Status, "body: %s", r.Body)
			}
			if c.code != "" {
				requireError(t, r, http.StatusServiceUnavailable, c.code)
			} else {
				mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
				require.NoError(t, err)
				assert.Contains(t, []string{"application/json", "application/problem+json"}, mt)
				assert.True(t, json.Valid(r.Body), "body: %s", r.Body)
			}
			leakAssert(t, r.Body)
			lower := strings.ToLower(string(r.Body))
			for _, m := range []string{"redis", rs.Addr, ":" + port, "127.0.0.1", "tcp", "timeout", "refused"} {
				assert.NotContains(t, lower, strings.ToLower(m), "the answer names Redis internals: %s", r.Body)
			}
		})
	}
}
