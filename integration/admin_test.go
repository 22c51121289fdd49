package integration_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jwtbearer/jwtbearer/handler/handlertest"
	"github.com/jwtbearer/jwtbearer/server"
	"github.com/jwtbearer/jwtbearer/store/redis/redistest"
)

const adminToken = "integration-admin-token-0123456789abcdef"

// adminInstance is an instance on the shared Redis with its admin API
// served on a second listener.
type adminInstance struct {
	*instance
	adminURL string
}

// newAdminInstance starts a server like newInstance, with the admin API on.
func newAdminInstance(t *testing.T, addrs []string, prefix string, key *handlertest.Key) *adminInstance {
	t.Helper()
	t.Setenv("JWTBEARER_ADMIN_TOKEN", "")
	ts := httptest.NewUnstartedServer(nil)
	addr := ts.Listener.Addr().String()
	adminTS := httptest.NewUnstartedServer(nil)
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "partner.pub"), key.PublicKeyPEM(), 0o600))
	tmpl := redisConfig + `
admin:
  listen: ` + adminTS.Listener.Addr().String() + `
  token: ` + adminToken + `
`
	config := render(t, tmpl, templateData{Listen: addr, V: map[string]any{"addrs": addrs, "prefix": prefix}})
	cfg, err := server.ParseConfig([]byte(config), dir)
	require.NoError(t, err, "configuration:\n%s", config)
	srv, err := server.New(t.Context(), cfg)
	require.NoError(t, err)
	ts.Config.Handler = srv.Handler()
	adminTS.Config.Handler = srv.AdminHandler()
	ts.Start()
	adminTS.Start()
	t.Cleanup(func() {
		ts.Close()
		adminTS.Close()
		_ = srv.Close()
	})
	return &adminInstance{
		instance: &instance{
			testServer: &testServer{Issuer: "http://" + addr, TokenURL: sharedIssuer + "/token", Dir: dir, HTTP: newHTTPClient()},
			srv:        srv,
		},
		adminURL: adminTS.URL,
	}
}

// admin sends a request to the admin API.
func (a *adminInstance) admin(t *testing.T, method, path string, body any) *response {
	t.Helper()
	var rd *strings.Reader
	if body != nil {
		b, err := json.Marshal(body)
		require.NoError(t, err)
		rd = strings.NewReader(string(b))
	} else {
		rd = strings.NewReader("")
	}
	req, err := http.NewRequestWithContext(t.Context(), method, a.adminURL+path, rd)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := a.HTTP.Do(req)
	require.NoError(t, err)
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return &response{Status: resp.StatusCode, Header: resp.Header, Body: b}
}

// waitStatus polls /token on in with fresh assertions until it answers
// want, failing after a second.
func waitStatus(t *testing.T, in *adminInstance, assertion func() string, want int) {
	t.Helper()
	start := time.Now()
	for {
		r := in.token(t, grant(assertion()))
		if r.Status == want {
			t.Logf("B answered %d %v after the change", want, time.Since(start).Round(time.Millisecond))
			return
		}
		require.Less(t, time.Since(start), time.Second, "B still answers %d: %s", r.Status, r.Body)
		time.Sleep(20 * time.Millisecond)
	}
}

func TestAdminAcrossInstances(t *testing.T) {
	redistest.Require(t)
	rs := redistest.Start(t)
	partner := handlertest.NewRSAKey()
	prefix := uniquePrefix(t)
	a := newAdminInstance(t, []string{rs.Addr}, prefix, partner)
	b := newAdminInstance(t, []string{rs.Addr}, prefix, partner)

	key := handlertest.NewECKey()
	pub, err := key.Public.MarshalJSON()
	require.NoError(t, err)
	sign := func() string { return key.Sign(claims("NewPartner", "robot", sharedIssuer+"/token")) }

	requireError(t, b.token(t, grant(sign())), http.StatusBadRequest, "invalid_grant")

	r := a.admin(t, http.MethodPost, "/admin/trust", map[string]any{
		"id": "new-partner", "issuer": "NewPartner", "subject": "robot", "scopes": []string{"read"},
		"keys": []json.RawMessage{pub},
	})
	require.Equalf(t, http.StatusCreated, r.Status, "body: %s", r.Body)
	waitStatus(t, b, sign, http.StatusOK)

	r = b.admin(t, http.MethodGet, "/admin/trust/new-partner", nil)
	require.Equalf(t, http.StatusOK, r.Status, "body: %s", r.Body)

	r = a.admin(t, http.MethodDelete, "/admin/trust/new-partner", nil)
	require.Equalf(t, http.StatusNoContent, r.Status, "body: %s", r.Body)
	waitStatus(t, b, sign, http.StatusBadRequest)
	requireError(t, b.token(t, grant(sign())), http.StatusBadRequest, "invalid_grant")
}
