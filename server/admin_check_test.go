package server_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/jwtbearer/jwtbearer/handler/handlertest"
	"github.com/jwtbearer/jwtbearer/server"
)

func TestAdminNewTrustFields(t *testing.T) {
	f := newAdminFixture(t)
	k := handlertest.NewECKey()
	body := map[string]any{
		"id":                     "k8s-prod",
		"issuer":                 "https://kubernetes.default.svc",
		"subject_patterns":       []string{"system:serviceaccount:prod:*"},
		"subjects":               []string{"system:serviceaccount:ops:deployer"},
		"required_claims":        map[string]string{"team": "payments"},
		"scopes":                 []string{"read"},
		"max_assertion_lifetime": "2h",
		"access_token_lifetime":  300,
		"keys":                   []any{jwkJSON(t, k.Public)},
	}
	w := f.call(t, http.MethodPost, "/admin/trust", body)
	require.Equal(t, http.StatusCreated, w.Code, w.Body.String())
	got := decodeTrust(t, w)
	assert.Equal(t, []any{"system:serviceaccount:prod:*"}, got["subject_patterns"])
	assert.Equal(t, map[string]any{"team": "payments"}, got["required_claims"])
	assert.Equal(t, "2h0m0s", got["max_assertion_lifetime"])
	assert.Equal(t, "5m0s", got["access_token_lifetime"])

	// GET round-trips into PUT unchanged.
	w = f.call(t, http.MethodGet, "/admin/trust/k8s-prod", nil)
	require.Equal(t, http.StatusOK, w.Code)
	w = f.call(t, http.MethodPut, "/admin/trust/k8s-prod", w.Body.String())
	require.Equal(t, http.StatusOK, w.Code, w.Body.String())

	c := handlertest.Claims("https://kubernetes.default.svc", "system:serviceaccount:prod:api", adminIssuer+"/token", time.Now())
	c["team"] = "payments"
	require.Equal(t, http.StatusOK, f.token(t, k.Sign(c)).Code)
	c = handlertest.Claims("https://kubernetes.default.svc", "system:serviceaccount:prod:api", adminIssuer+"/token", time.Now())
	c["team"] = "other"
	require.Equal(t, http.StatusBadRequest, f.token(t, k.Sign(c)).Code)

	remote := map[string]any{"issuer": "https://token.actions.githubusercontent.com", "subject_patterns": []string{"repo:acme/*:ref:refs/heads/main"},
		"oidc_discovery": true, "required_claims": map[string]string{"repository_owner": "acme"}, "keys": []any{}}
	w = f.call(t, http.MethodPost, "/admin/trust", remote)
	require.Equal(t, http.StatusCreated, w.Code, w.Body.String())
	assert.Equal(t, true, decodeTrust(t, w)["oidc_discovery"])

	bad := map[string]any{"issuer": "https://partner.example", "subject_patterns": []string{"**", "exact"}, "jwks_uri": "http://partner.example/jwks",
		"required_claims": map[string]string{"exp": "1"}, "max_assertion_lifetime": "48h", "keys": []any{jwkJSON(t, k.Public)}}
	p := requireProblem(t, f.call(t, http.MethodPost, "/admin/trust", bad), http.StatusBadRequest)
	for _, want := range []string{"subject_patterns[0]", "subject_patterns[1]", "jwks_uri", "must use https", "required_claims", "max_assertion_lifetime", "give only one of keys, jwks_uri and oidc_discovery"} {
		assert.True(t, anyContains(p.Errors, want), "want %q among %v", want, p.Errors)
	}
}

func anyContains(list []string, sub string) bool {
	for _, v := range list {
		if strings.Contains(v, sub) {
			return true
		}
	}
	return false
}

func TestAdminConfigOwnedReadOnly(t *testing.T) {
	f := newAdminFixture(t)
	k := handlertest.NewECKey()
	p := requireProblem(t, f.call(t, http.MethodPost, "/admin/trust", trustBody(server.ConfigTrustPrefix+"mine", "https://i.example", "s", jwkJSON(t, k.Public))), http.StatusBadRequest)
	assert.True(t, anyContains(p.Errors, "reserved for relationships from the configuration file"), p.Errors)

	p = requireProblem(t, f.call(t, http.MethodPut, "/admin/trust/cfg-x", trustBody("", "https://i.example", "s", jwkJSON(t, k.Public))), http.StatusConflict)
	assert.Equal(t, "urn:jwtbearer:admin:managed-by-config", p.Type)
	p = requireProblem(t, f.call(t, http.MethodDelete, "/admin/trust/cfg-x", nil), http.StatusConflict)
	assert.Contains(t, p.Detail, "SIGHUP")
}

func TestAdminCheck(t *testing.T) {
	f := newAdminFixture(t)
	k, other := handlertest.NewECKey(), handlertest.NewECKey()
	require.Equal(t, http.StatusCreated, f.call(t, http.MethodPost, "/admin/trust", trustBody("partner", "https://partner.example", "svc-1", jwkJSON(t, k.Public))).Code)

	type verdict struct {
		WouldIssue       bool     `json:"would_issue"`
		TrustID          string   `json:"trust_id"`
		Candidates       []string `json:"candidates"`
		Issuer           string   `json:"issuer"`
		Subject          string   `json:"subject"`
		KID              string   `json:"kid"`
		JTIUsed          *bool    `json:"jti_used"`
		Scopes           []string `json:"scopes"`
		Error            string   `json:"error"`
		ErrorDescription string   `json:"error_description"`
		Reason           string   `json:"reason"`
	}
	check := func(body any) verdict {
		t.Helper()
		w := f.call(t, http.MethodPost, "/admin/trust/check", body)
		require.Equal(t, http.StatusOK, w.Code, w.Body.String())
		var v verdict
		require.NoError(t, json.Unmarshal(w.Body.Bytes(), &v))
		return v
	}

	a := assertion(k, "https://partner.example", "svc-1")
	v := check(map[string]any{"assertion": a, "scope": "read"})
	assert.True(t, v.WouldIssue, "%+v", v)
	assert.Equal(t, "partner", v.TrustID)
	assert.Equal(t, []string{"partner"}, v.Candidates)
	assert.Equal(t, []string{"read"}, v.Scopes)
	require.NotNil(t, v.JTIUsed)
	assert.False(t, *v.JTIUsed)

	// Twice: the dry run consumed nothing, and the token endpoint still
	// redeems the assertion once.
	assert.True(t, check(map[string]any{"assertion": a}).WouldIssue)
	require.Equal(t, http.StatusOK, f.token(t, a).Code)
	v = check(map[string]any{"assertion": a})
	assert.False(t, v.WouldIssue)
	assert.Equal(t, "invalid_grant", v.Error)
	require.NotNil(t, v.JTIUsed)
	assert.True(t, *v.JTIUsed)

	v = check(map[string]any{"assertion": assertion(other, "https://partner.example", "svc-1")})
	assert.False(t, v.WouldIssue)
	assert.Equal(t, []string{"partner"}, v.Candidates)
	assert.Empty(t, v.TrustID)
	assert.Contains(t, v.Reason, "no key with kid", "the operator gets the precise reason")

	v = check(map[string]any{"assertion": assertion(k, "https://partner.example", "svc-2")})
	assert.Empty(t, v.Candidates)
	assert.Contains(t, v.Reason, `no key with kid`)

	v = check(map[string]any{"assertion": a, "scope": "write"})
	assert.Equal(t, "invalid_scope", v.Error)

	requireProblem(t, f.call(t, http.MethodPost, "/admin/trust/check", map[string]any{}), http.StatusBadRequest)
	requireProblem(t, f.call(t, http.MethodPost, "/admin/trust/check", map[string]any{"assertion": a, "extra": 1}), http.StatusBadRequest)
	requireProblem(t, f.call(t, http.MethodPost, "/admin/trust/check", "{"), http.StatusBadRequest)
	requireProblem(t, f.do(t, http.MethodPost, "/admin/trust/check", map[string]any{"assertion": a}, ""), http.StatusUnauthorized)
}

func TestAdminRemoteKeys(t *testing.T) {
	f := newAdminFixture(t)
	requireProblem(t, f.do(t, http.MethodGet, "/admin/remote-keys", nil, ""), http.StatusUnauthorized)
	w := f.call(t, http.MethodGet, "/admin/remote-keys", nil)
	require.Equal(t, http.StatusOK, w.Code)
	assert.JSONEq(t, `{"remote_keys": []}`, w.Body.String())
	w = f.call(t, http.MethodPost, "/admin/remote-keys", "{}")
	requireProblem(t, w, http.StatusMethodNotAllowed)
	assert.Equal(t, "GET, HEAD", w.Header().Get("Allow"))
}
