package server_test

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/jwtbearer/jwtbearer/handler/handlertest"
	"github.com/jwtbearer/jwtbearer/server"
)

const (
	adminToken  = "0123456789abcdef0123456789abcdef-admin"
	adminIssuer = "https://as.example"
	jwtBearer   = "urn:ietf:params:oauth:grant-type:jwt-bearer"
)

// adminConfig has the admin API on and one client, "svc".
const adminConfig = `
issuer: ` + adminIssuer + `
admin:
  listen: 127.0.0.1:0
  token: "` + adminToken + `"
clients:
  - id: svc
    secret_hash: "$2a$04$KIXQJkq1a0y6zWfC2d2r5eJ3sJm5Q0b3n5l8Q4rQyH7p9v1eWm6jS"
    grant_types: [client_credentials]
`

type adminFixture struct {
	srv   *server.Server
	admin http.Handler
}

func newAdminFixture(t *testing.T) *adminFixture {
	t.Helper()
	t.Setenv("JWTBEARER_ADMIN_TOKEN", "")
	cfg, err := server.ParseConfig([]byte(adminConfig), t.TempDir())
	require.NoError(t, err)
	srv, err := server.New(t.Context(), cfg)
	require.NoError(t, err)
	h := srv.AdminHandler()
	require.NotNil(t, h)
	return &adminFixture{srv: srv, admin: h}
}

// do sends a request to the admin API with the admin token ("" for none).
func (f *adminFixture) do(t *testing.T, method, path string, body any, token string) *httptest.ResponseRecorder {
	t.Helper()
	var b string
	switch v := body.(type) {
	case nil:
	case string:
		b = v
	default:
		j, err := json.Marshal(v)
		require.NoError(t, err)
		b = string(j)
	}
	req := httptest.NewRequestWithContext(t.Context(), method, path, strings.NewReader(b))
	if b != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	w := httptest.NewRecorder()
	f.admin.ServeHTTP(w, req)
	assert.Equal(t, "no-store", w.Header().Get("Cache-Control"), "%s %s", method, path)
	return w
}

func (f *adminFixture) call(t *testing.T, method, path string, body any) *httptest.ResponseRecorder {
	t.Helper()
	return f.do(t, method, path, body, adminToken)
}

// token redeems an assertion at /token of the public handler.
func (f *adminFixture) token(t *testing.T, assertion string) *httptest.ResponseRecorder {
	t.Helper()
	form := url.Values{"grant_type": {jwtBearer}, "assertion": {assertion}}
	req := httptest.NewRequestWithContext(t.Context(), http.MethodPost, "/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	w := httptest.NewRecorder()
	f.srv.Handler().ServeHTTP(w, req)
	return w
}

// problemBody is an RFC 9457 problem.
type problemBody struct {
	Type   string   `json:"type"`
	Title  string   `json:"title"`
	Status int      `json:"status"`
	Detail string   `json:"detail"`
	Errors []string `json:"errors"`
}

func requireProblem(t *testing.T, w *httptest.ResponseRecorder, status int) problemBody {
	t.Helper()
	require.Equalf(t, status, w.Code, "body: %s", w.Body)
	assert.Equal(t, "application/problem+json", w.Header().Get("Content-Type"))
	var p problemBody
	require.NoError(t, json.Unmarshal(w.Body.Bytes(), &p), "body: %s", w.Body)
	assert.Equal(t, status, p.Status)
	assert.NotEmpty(t, p.Type)
	assert.NotEmpty(t, p.Title)
	for _, marker := range []string{".go:", "goroutine", "panic", "go-jose"} {
		assert.NotContains(t, strings.ToLower(w.Body.String()), marker)
	}
	return p
}

func jwkJSON(t *testing.T, k jose.JSONWebKey) json.RawMessage {
	t.Helper()
	b, err := k.MarshalJSON()
	require.NoError(t, err)
	return b
}

// trustBody is a valid relationship for issuer/subject trusting key.
func trustBody(id, issuer, subject string, keys ...json.RawMessage) map[string]any {
	m := map[string]any{"issuer": issuer, "subject": subject, "scopes": []string{"read"}, "keys": keys}
	if id != "" {
		m["id"] = id
	}
	return m
}

func decodeTrust(t *testing.T, w *httptest.ResponseRecorder) map[string]any {
	t.Helper()
	assert.Equal(t, "application/json", w.Header().Get("Content-Type"))
	var m map[string]any
	require.NoError(t, json.Unmarshal(w.Body.Bytes(), &m), "body: %s", w.Body)
	return m
}

func assertion(k *handlertest.Key, iss, sub string) string {
	return k.Sign(handlertest.Claims(iss, sub, adminIssuer+"/token", time.Now()))
}

func TestAdminOff(t *testing.T) {
	cfg, err := server.ParseConfig([]byte("issuer: "+adminIssuer+"\n"), t.TempDir())
	require.NoError(t, err)
	srv, err := server.New(t.Context(), cfg)
	require.NoError(t, err)
	assert.Nil(t, srv.AdminHandler(), "no admin.listen: no admin API")
}

func TestAdminConfig(t *testing.T) {
	tests := []struct {
		name    string
		yaml    string
		env     string
		wantErr []string
	}{
		{name: "token required", yaml: "admin: {listen: 127.0.0.1:9090}", wantErr: []string{"admin.token: required"}},
		{name: "short token and bad listen at once", yaml: "admin: {listen: nowhere, token: short}",
			wantErr: []string{"admin.listen: \"nowhere\" is not host:port", "admin.token: must be at least 32 bytes"}},
		{name: "same address as listen", yaml: "listen: 127.0.0.1:9090\nadmin: {listen: 127.0.0.1:9090, token: " + adminToken + "}",
			wantErr: []string{"admin.listen: must differ from listen"}},
		{name: "env wins over a short token", yaml: "admin: {listen: 127.0.0.1:9090, token: short}", env: adminToken},
		{name: "env fills a missing token", yaml: "admin: {listen: 127.0.0.1:9090}", env: adminToken},
		{name: "off without listen", yaml: "admin: {token: short}"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("JWTBEARER_ADMIN_TOKEN", tt.env)
			cfg, err := server.ParseConfig([]byte(tt.yaml), t.TempDir())
			if len(tt.wantErr) == 0 {
				require.NoError(t, err)
				if tt.env != "" {
					assert.Equal(t, tt.env, cfg.Admin.Token)
				}
				return
			}
			require.Error(t, err)
			for _, want := range tt.wantErr {
				assert.Contains(t, err.Error(), want)
			}
		})
	}
}

func TestAdminAuth(t *testing.T) {
	f := newAdminFixture(t)
	tests := []struct {
		name   string
		header string
		want   int
	}{
		{"missing", "", http.StatusUnauthorized},
		{"wrong", "Bearer " + strings.Repeat("x", len(adminToken)), http.StatusUnauthorized},
		{"prefix of the token", "Bearer " + adminToken[:32], http.StatusUnauthorized},
		{"basic scheme", "Basic " + adminToken, http.StatusUnauthorized},
		{"right", "Bearer " + adminToken, http.StatusOK},
		{"right, scheme in lower case", "bearer " + adminToken, http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, path := range []string{"/admin/trust", "/admin/nothing"} {
				req := httptest.NewRequestWithContext(t.Context(), http.MethodGet, path, nil)
				if tt.header != "" {
					req.Header.Set("Authorization", tt.header)
				}
				w := httptest.NewRecorder()
				f.admin.ServeHTTP(w, req)
				if tt.want == http.StatusUnauthorized {
					p := requireProblem(t, w, http.StatusUnauthorized)
					assert.Contains(t, w.Header().Get("WWW-Authenticate"), "Bearer")
					assert.Empty(t, p.Detail, "no detail for a refused credential")
					assert.Empty(t, p.Errors)
					continue
				}
				if path == "/admin/trust" {
					assert.Equal(t, http.StatusOK, w.Code, "body: %s", w.Body)
				} else {
					requireProblem(t, w, http.StatusNotFound)
				}
			}
		})
	}
}

func TestAdminCreate(t *testing.T) {
	f := newAdminFixture(t)
	key := handlertest.NewRSAKey()
	pub := jwkJSON(t, key.Public)

	weak, err := rsa.GenerateKey(rand.Reader, 1024)
	require.NoError(t, err)
	priv := handlertest.NewECKey()
	enc := handlertest.NewECKey().Public
	enc.Use = "enc"

	other := handlertest.NewECKey()
	clash := other.Public
	clash.KeyID = key.Public.KeyID // same kid as key, different material

	tests := []struct {
		name       string
		body       any
		wantStatus int
		wantType   string
		wantErrors []string
	}{
		{
			name: "invalid: every problem at once",
			body: map[string]any{"subject": "s", "keys": []json.RawMessage{
				jwkJSON(t, jose.JSONWebKey{Key: &weak.PublicKey}),
				jwkJSON(t, jose.JSONWebKey{Key: priv.Private}),
				jwkJSON(t, enc),
			}},
			wantStatus: http.StatusBadRequest,
			wantType:   "urn:jwtbearer:admin:invalid-trust",
			wantErrors: []string{
				"issuer: must not be empty",
				"keys[0]: RSA key has 1024 bits",
				"keys[1]: this is a private key; give the public key",
				"keys[2]: use is \"enc\"",
			},
		},
		{
			name:       "private PEM",
			body:       trustBody("", "iss-pem", "s", mustJSON(t, map[string]string{"pem": string(key.PrivateKeyPEM())})),
			wantStatus: http.StatusBadRequest,
			wantErrors: []string{"keys[0]: \"PRIVATE KEY\": this is a private key; give the public key"},
		},
		{
			name:       "unknown client",
			body:       withField(trustBody("", "iss-c", "s", pub), "clients", []string{"svc", "ghost"}),
			wantStatus: http.StatusBadRequest,
			wantErrors: []string{"clients[1]: \"ghost\" is not a known client"},
		},
		{
			name:       "unknown field",
			body:       withField(trustBody("", "iss-u", "s", pub), "colour", "blue"),
			wantStatus: http.StatusBadRequest,
		},
		{
			name:       "not JSON",
			body:       "{",
			wantStatus: http.StatusBadRequest,
		},
		{
			name:       "body too large",
			body:       `{"issuer":"` + strings.Repeat("a", 1<<20) + `"}`,
			wantStatus: http.StatusRequestEntityTooLarge,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := requireProblem(t, f.call(t, http.MethodPost, "/admin/trust", tt.body), tt.wantStatus)
			if tt.wantType != "" {
				assert.Equal(t, tt.wantType, p.Type)
			}
			assert.Len(t, p.Errors, len(tt.wantErrors), "errors: %q", p.Errors)
			for _, want := range tt.wantErrors {
				assert.True(t, containsPrefix(p.Errors, want), "errors %q lack %q", p.Errors, want)
			}
		})
	}

	t.Run("created with an assigned id, then a duplicate id", func(t *testing.T) {
		w := f.call(t, http.MethodPost, "/admin/trust", withField(trustBody("", "iss-a", "s", mustJSON(t, map[string]string{"pem": string(key.PublicKeyPEM())})), "clients", []string{"svc"}))
		require.Equal(t, http.StatusCreated, w.Code, "body: %s", w.Body)
		got := decodeTrust(t, w)
		id, _ := got["id"].(string)
		require.NotEmpty(t, id)
		assert.Equal(t, "/admin/trust/"+id, w.Header().Get("Location"))
		assert.Equal(t, "iss-a", got["issuer"])
		keys := got["keys"].([]any)
		require.Len(t, keys, 1)
		assert.Equal(t, key.Public.KeyID, keys[0].(map[string]any)["kid"], "a key without kid gets its thumbprint")
		assert.NotContains(t, keys[0], "d")
		assert.NotContains(t, got, "expires_at", "no expiry: no zero time")

		w = f.call(t, http.MethodPost, "/admin/trust", trustBody("fixed", "iss-b", "s", pub))
		require.Equal(t, http.StatusCreated, w.Code, "body: %s", w.Body)
		assert.Equal(t, "/admin/trust/fixed", w.Header().Get("Location"))
		p := requireProblem(t, f.call(t, http.MethodPost, "/admin/trust", trustBody("fixed", "iss-b", "other", pub)), http.StatusConflict)
		assert.Equal(t, "urn:jwtbearer:admin:id-taken", p.Type)
	})

	t.Run("kid used by another relationship of the issuer", func(t *testing.T) {
		w := f.call(t, http.MethodPost, "/admin/trust", trustBody("kid-1", "iss-k", "one", pub))
		require.Equal(t, http.StatusCreated, w.Code, "body: %s", w.Body)

		p := requireProblem(t, f.call(t, http.MethodPost, "/admin/trust", trustBody("kid-2", "iss-k", "two", jwkJSON(t, clash))), http.StatusConflict)
		assert.Equal(t, "urn:jwtbearer:admin:kid-conflict", p.Type)
		require.Len(t, p.Errors, 1)
		assert.Contains(t, p.Errors[0], `"kid-1"`)
		requireProblem(t, f.call(t, http.MethodGet, "/admin/trust/kid-2", nil), http.StatusNotFound)

		// The same key under the same kid is fine, and so is the same kid
		// for another issuer.
		w = f.call(t, http.MethodPost, "/admin/trust", trustBody("kid-3", "iss-k", "three", pub))
		assert.Equal(t, http.StatusCreated, w.Code, "body: %s", w.Body)
		w = f.call(t, http.MethodPost, "/admin/trust", trustBody("kid-4", "iss-other", "four", jwkJSON(t, clash)))
		assert.Equal(t, http.StatusCreated, w.Code, "body: %s", w.Body)
		// Replacing kid-1 with the clashing key conflicts with kid-3.
		p = requireProblem(t, f.call(t, http.MethodPut, "/admin/trust/kid-1", trustBody("", "iss-k", "one", jwkJSON(t, clash))), http.StatusConflict)
		assert.Contains(t, p.Errors[0], `"kid-3"`)
	})
}

func TestAdminList(t *testing.T) {
	f := newAdminFixture(t)
	pub := jwkJSON(t, handlertest.NewECKey().Public)
	var want []string
	for i := range 7 {
		id := fmt.Sprintf("t-%02d", i)
		want = append(want, id)
		w := f.call(t, http.MethodPost, "/admin/trust", trustBody(id, "iss-list", id, pub))
		require.Equal(t, http.StatusCreated, w.Code, "body: %s", w.Body)
	}
	w := f.call(t, http.MethodPost, "/admin/trust", trustBody("a-other", "iss-elsewhere", "s", pub))
	require.Equal(t, http.StatusCreated, w.Code, "body: %s", w.Body)

	type page struct {
		Items []struct {
			ID     string `json:"id"`
			Issuer string `json:"issuer"`
		} `json:"items"`
		NextPageToken string `json:"next_page_token"`
	}
	var got []string
	token, pages := "", 0
	for {
		q := url.Values{"issuer": {"iss-list"}, "limit": {"3"}}
		if token != "" {
			q.Set("page_token", token)
		}
		w := f.call(t, http.MethodGet, "/admin/trust?"+q.Encode(), nil)
		require.Equal(t, http.StatusOK, w.Code, "body: %s", w.Body)
		var p page
		require.NoError(t, json.Unmarshal(w.Body.Bytes(), &p))
		pages++
		for _, it := range p.Items {
			assert.Equal(t, "iss-list", it.Issuer)
			got = append(got, it.ID)
		}
		if p.NextPageToken == "" {
			break
		}
		assert.NotEqual(t, token, p.NextPageToken, "tokens chain")
		token = p.NextPageToken
		require.Less(t, pages, 10)
	}
	assert.Equal(t, 3, pages)
	assert.Equal(t, want, got, "every item once, in id order")

	w = f.call(t, http.MethodGet, "/admin/trust", nil)
	var all page
	require.NoError(t, json.Unmarshal(w.Body.Bytes(), &all))
	assert.Len(t, all.Items, 8)
	assert.Empty(t, all.NextPageToken)

	w = f.call(t, http.MethodGet, "/admin/trust?issuer=nobody", nil)
	assert.JSONEq(t, `{"items":[],"next_page_token":""}`, w.Body.String())

	for _, q := range []string{"page_token=%25%25", "page_token=", "limit=0", "limit=1001", "limit=x", "colour=blue"} {
		requireProblem(t, f.call(t, http.MethodGet, "/admin/trust?"+q, nil), http.StatusBadRequest)
	}
}

func TestAdminReplaceAndDelete(t *testing.T) {
	f := newAdminFixture(t)
	oldKey, newKey := handlertest.NewRSAKey(), handlertest.NewECKey()

	requireProblem(t, f.call(t, http.MethodGet, "/admin/trust/nope", nil), http.StatusNotFound)
	requireProblem(t, f.call(t, http.MethodPut, "/admin/trust/nope", trustBody("", "iss-r", "sub", jwkJSON(t, newKey.Public))), http.StatusNotFound)
	requireProblem(t, f.call(t, http.MethodDelete, "/admin/trust/nope", nil), http.StatusNotFound)

	w := f.call(t, http.MethodPost, "/admin/trust", trustBody("rel", "iss-r", "sub", jwkJSON(t, oldKey.Public)))
	require.Equal(t, http.StatusCreated, w.Code, "body: %s", w.Body)
	require.Equal(t, http.StatusOK, f.token(t, assertion(oldKey, "iss-r", "sub")).Code)

	p := requireProblem(t, f.call(t, http.MethodPut, "/admin/trust/rel", trustBody("other", "iss-r", "sub", jwkJSON(t, newKey.Public))), http.StatusBadRequest)
	assert.True(t, containsPrefix(p.Errors, "id: \"other\" differs"), "errors: %q", p.Errors)

	w = f.call(t, http.MethodPut, "/admin/trust/rel", trustBody("rel", "iss-r", "sub", jwkJSON(t, newKey.Public)))
	require.Equal(t, http.StatusOK, w.Code, "body: %s", w.Body)
	got := decodeTrust(t, f.call(t, http.MethodGet, "/admin/trust/rel", nil))
	assert.Equal(t, newKey.Public.KeyID, got["keys"].([]any)[0].(map[string]any)["kid"])

	assert.Equal(t, http.StatusBadRequest, f.token(t, assertion(oldKey, "iss-r", "sub")).Code, "the replaced key is refused")
	assert.Equal(t, http.StatusOK, f.token(t, assertion(newKey, "iss-r", "sub")).Code, "the new key works")

	w = f.call(t, http.MethodDelete, "/admin/trust/rel", nil)
	require.Equal(t, http.StatusNoContent, w.Code, "body: %s", w.Body)
	assert.Empty(t, w.Body.String())
	r := f.token(t, assertion(newKey, "iss-r", "sub"))
	require.Equal(t, http.StatusBadRequest, r.Code)
	assert.Contains(t, r.Body.String(), `"invalid_grant"`)
	requireProblem(t, f.call(t, http.MethodGet, "/admin/trust/rel", nil), http.StatusNotFound)
}

func TestAdminRouting(t *testing.T) {
	f := newAdminFixture(t)
	w := f.call(t, http.MethodPatch, "/admin/trust/x", nil)
	requireProblem(t, w, http.StatusMethodNotAllowed)
	assert.Equal(t, "GET, HEAD, PUT, DELETE", w.Header().Get("Allow"))
	w = f.call(t, http.MethodDelete, "/admin/trust", nil)
	requireProblem(t, w, http.StatusMethodNotAllowed)
	assert.Equal(t, "GET, HEAD, POST", w.Header().Get("Allow"))
	requireProblem(t, f.call(t, http.MethodGet, "/admin", nil), http.StatusNotFound)
	requireProblem(t, f.call(t, http.MethodGet, "/token", nil), http.StatusNotFound)

	// A symmetric secret is never echoed.
	secret := jose.JSONWebKey{Key: []byte(strings.Repeat("s", 32)), KeyID: "hs", Algorithm: "HS256"}
	body := withField(trustBody("hs", "iss-hs", "sub", jwkJSON(t, secret)), "algorithms", []string{"HS256"})
	w = f.call(t, http.MethodPost, "/admin/trust", body)
	require.Equal(t, http.StatusCreated, w.Code, "body: %s", w.Body)
	assert.NotContains(t, w.Body.String(), `"k"`)
	assert.NotContains(t, f.call(t, http.MethodGet, "/admin/trust/hs", nil).Body.String(), `"k"`)
}

func mustJSON(t *testing.T, v any) json.RawMessage {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return b
}

func withField(m map[string]any, k string, v any) map[string]any {
	m[k] = v
	return m
}

func containsPrefix(list []string, prefix string) bool {
	for _, s := range list {
		if strings.HasPrefix(s, prefix) {
			return true
		}
	}
	return false
}
