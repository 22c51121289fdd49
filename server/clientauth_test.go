package server_test

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/jwtbearer/jwtbearer/server"
)

// A request without any client credentials takes a shortcut past fosite's
// client authentication; its answer must be exactly fosite's.
func TestNoClientCredentialsAnswersAsFosite(t *testing.T) {
	f := newAdminFixture(t)
	post := func(form url.Values) *httptest.ResponseRecorder {
		req := httptest.NewRequestWithContext(t.Context(), http.MethodPost, "/token", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		w := httptest.NewRecorder()
		f.srv.Handler().ServeHTTP(w, req)
		return w
	}
	shortcut := post(url.Values{"grant_type": {"client_credentials"}})
	// An empty client_id is "carrying credentials": fosite's own path.
	full := post(url.Values{"grant_type": {"client_credentials"}, "client_id": {""}})
	require.Equal(t, http.StatusUnauthorized, shortcut.Code, shortcut.Body.String())
	assert.Equal(t, full.Code, shortcut.Code)
	assert.JSONEq(t, full.Body.String(), shortcut.Body.String())
	assert.Contains(t, shortcut.Body.String(), `"error":"invalid_client"`)
	assert.Equal(t, full.Header().Get("WWW-Authenticate"), shortcut.Header().Get("WWW-Authenticate"))
}

// The first client authentications, several at once, must not race on
// state fosite's configuration fills in on first use (its secrets hasher,
// say): go test -race catches it.
func TestConcurrentFirstClientAuthentications(t *testing.T) {
	cfg, err := server.ParseConfig([]byte(`
clients:
  - id: c
    secret_hash: "$2a$04$sZ6Hx0QH3xqbRM2LC2Xp0e1Q3uYc5s2tH3N8kq1J4yC9eDq0dQ0uS"
    grant_types: [client_credentials]
`), t.TempDir())
	require.NoError(t, err)
	srv, err := server.New(t.Context(), cfg)
	require.NoError(t, err)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			req := httptest.NewRequest(http.MethodPost, "/token", strings.NewReader("grant_type=client_credentials"))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.SetBasicAuth("c", "wrong")
			w := httptest.NewRecorder()
			srv.Handler().ServeHTTP(w, req)
			assert.Equal(t, http.StatusUnauthorized, w.Code)
		})
	}
	wg.Wait()
}
