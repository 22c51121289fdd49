package main

import (
	"bytes"
	"crypto/elliptic"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// tokenRequest is what the fake token endpoint received.
type tokenRequest struct {
	method, contentType string
	form                url.Values
	user, pass          string
	basic               bool
}

// newTokenServer starts a loopback token endpoint that records the request
// and answers with status and body.
func newTokenServer(t *testing.T, status int, body string) (*httptest.Server, *tokenRequest) {
	t.Helper()
	got := &tokenRequest{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got.method = r.Method
		got.contentType = r.Header.Get("Content-Type")
		raw, _ := io.ReadAll(r.Body)
		got.form, _ = url.ParseQuery(string(raw))
		got.user, got.pass, got.basic = r.BasicAuth()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}))
	t.Cleanup(srv.Close)
	return srv, got
}

func TestRunToken(t *testing.T) {
	key := newECKey(t, elliptic.P256())
	keyFile := writeKeyFile(t, pkcs8Block(t, key))
	srv, got := newTokenServer(t, http.StatusOK, `{"access_token":"abc","token_type":"bearer","expires_in":3600}`)
	tokenURL := srv.URL + "/token"

	var stdout, stderr bytes.Buffer
	err := runToken(t.Context(), []string{
		"-url", tokenURL, "-key", keyFile, "-iss", "TestClient", "-sub", "User1",
		"-client-id", "Test Client", "-client-secret", "s3cr:t/+&",
		"-scope", "read write",
	}, &stdout, &stderr)
	require.NoError(t, err)
	assert.Empty(t, stderr.String())
	assert.Equal(t, "{\n  \"access_token\": \"abc\",\n  \"token_type\": \"bearer\",\n  \"expires_in\": 3600\n}\n", stdout.String())

	assert.Equal(t, http.MethodPost, got.method)
	assert.Equal(t, "application/x-www-form-urlencoded", got.contentType)
	assert.Equal(t, []string{"assertion", "grant_type", "scope"}, sortedKeys(got.form))
	assert.Equal(t, "urn:ietf:params:oauth:grant-type:jwt-bearer", got.form.Get("grant_type"))
	assert.Equal(t, "read write", got.form.Get("scope"))
	require.True(t, got.basic)
	user, err := url.QueryUnescape(got.user)
	require.NoError(t, err)
	pass, err := url.QueryUnescape(got.pass)
	require.NoError(t, err)
	assert.Equal(t, "Test Client", user)
	assert.Equal(t, "s3cr:t/+&", pass)

	_, claims := verify(t, got.form.Get("assertion"), key.Public())
	assert.Equal(t, tokenURL, claims["aud"], "aud defaults to -url")
	assert.Equal(t, "TestClient", claims["iss"])
	assert.Equal(t, "User1", claims["sub"])
	assert.NotContains(t, claims, "scope", "scope goes in the form")
}

func TestRunTokenScopeClaim(t *testing.T) {
	key := newECKey(t, elliptic.P256())
	keyFile := writeKeyFile(t, pkcs8Block(t, key))
	srv, got := newTokenServer(t, http.StatusOK, `{"access_token":"abc"}`)

	var stdout, stderr bytes.Buffer
	err := runToken(t.Context(), []string{
		"-url", srv.URL, "-key", keyFile, "-iss", "i", "-sub", "s",
		"-aud", "https://issuer.example", "-scope", "read", "-scope-claim",
	}, &stdout, &stderr)
	require.NoError(t, err)
	assert.False(t, got.basic, "no client credentials given")
	assert.NotContains(t, got.form, "scope")
	_, claims := verify(t, got.form.Get("assertion"), key.Public())
	assert.Equal(t, "read", claims["scope"])
	assert.Equal(t, "https://issuer.example", claims["aud"])
}

func TestRunTokenNotJSON(t *testing.T) {
	keyFile := writeKeyFile(t, pkcs8Block(t, newECKey(t, elliptic.P256())))
	srv, _ := newTokenServer(t, http.StatusOK, "plain text")
	var stdout, stderr bytes.Buffer
	err := runToken(t.Context(), []string{"-url", srv.URL, "-key", keyFile, "-iss", "i", "-sub", "s"}, &stdout, &stderr)
	require.NoError(t, err)
	assert.Equal(t, "plain text\n", stdout.String())
}

func TestRunTokenErrors(t *testing.T) {
	keyFile := writeKeyFile(t, pkcs8Block(t, newECKey(t, elliptic.P256())))
	tests := []struct {
		name    string
		status  int
		body    string
		wantErr string
	}{
		{
			name:    "RFC 6749 error",
			status:  http.StatusBadRequest,
			body:    `{"error":"invalid_grant","error_description":"The JWT is expired."}`,
			wantErr: "token: server answered 400 Bad Request: invalid_grant: The JWT is expired.",
		},
		{
			name:    "error without description",
			status:  http.StatusUnauthorized,
			body:    `{"error":"invalid_client"}`,
			wantErr: "server answered 401 Unauthorized: invalid_client",
		},
		{
			name:    "not JSON",
			status:  http.StatusBadGateway,
			body:    "upstream down\n",
			wantErr: "server answered 502 Bad Gateway: upstream down",
		},
		{
			name:    "empty",
			status:  http.StatusInternalServerError,
			wantErr: "server answered 500 Internal Server Error",
		},
		{
			name:    "redirect is not followed",
			status:  http.StatusFound,
			wantErr: "server answered 302 Found",
		},
		{
			name:    "too large",
			status:  http.StatusOK,
			body:    strings.Repeat("x", maxResponseBytes+1),
			wantErr: "response larger than 1048576 bytes",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, _ := newTokenServer(t, tt.status, tt.body)
			var stdout, stderr bytes.Buffer
			err := runToken(t.Context(), []string{"-url", srv.URL, "-key", keyFile, "-iss", "i", "-sub", "s"}, &stdout, &stderr)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.wantErr)
			assert.Equal(t, 1, exitCode(err, &stderr))
			assert.Empty(t, stdout.String())
		})
	}
}

func TestRunTokenUsageErrors(t *testing.T) {
	keyFile := writeKeyFile(t, pkcs8Block(t, newECKey(t, elliptic.P256())))
	mint := []string{"-key", keyFile, "-iss", "i", "-sub", "s"}
	tests := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{"no url", mint, "missing required flag -url"},
		{"relative url", append([]string{"-url", "/token"}, mint...), `-url "/token" is not an http(s) URL`},
		{"other scheme", append([]string{"-url", "ftp://host/token"}, mint...), "is not an http(s) URL"},
		{"id without secret", append([]string{"-url", "http://127.0.0.1:1/token", "-client-id", "c"}, mint...), "give both -client-id and -client-secret"},
		{"secret without id", append([]string{"-url", "http://127.0.0.1:1/token", "-client-secret", "c"}, mint...), "give both -client-id and -client-secret"},
		{"missing mint flags", []string{"-url", "http://127.0.0.1:1/token"}, "missing required flag(s) -key, -iss, -sub"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			err := runToken(t.Context(), tt.args, &stdout, &stderr)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.wantErr)
			assert.Equal(t, 2, exitCode(err, &stderr))
		})
	}
}

func sortedKeys(v url.Values) []string {
	keys := make([]string, 0, len(v))
	for k := range v {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
