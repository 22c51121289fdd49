package server_test

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
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
