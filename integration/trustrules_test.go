package integration_test

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/jwtbearer/jwtbearer/handler/handlertest"
	"github.com/jwtbearer/jwtbearer/store/redis/redistest"
)

// TestTrustRulesAcrossInstances manages a workload-identity relationship
// through instance A's admin API (a subject pattern, a subject list, a
// required claim, its own lifetimes, an expiry) and exercises every rule
// on instance B over HTTP, with B's dry run agreeing with B's token
// endpoint.
func TestTrustRulesAcrossInstances(t *testing.T) {
	redistest.Require(t)
	rs := redistest.Start(t)
	prefix := uniquePrefix(t)
	partner := handlertest.NewRSAKey()
	a := newAdminInstance(t, []string{rs.Addr}, prefix, partner)
	b := newAdminInstance(t, []string{rs.Addr}, prefix, partner)

	const iss = "https://kubernetes.example"
	key := handlertest.NewECKey()
	pub, err := key.Public.MarshalJSON()
	require.NoError(t, err)
	r := a.admin(t, http.MethodPost, "/admin/trust", map[string]any{
		"id": "k8s-prod", "issuer": iss,
		"subject_patterns":       []string{"system:serviceaccount:prod:*"},
		"subjects":               []string{"system:serviceaccount:ops:deployer"},
		"required_claims":        map[string]string{"cluster": "eu-1"},
		"scopes":                 []string{"orders.read"},
		"max_assertion_lifetime": "2h",
		"access_token_lifetime":  "10m",
		"expires_at":             time.Now().Add(time.Hour).UTC().Format(time.RFC3339),
		"keys":                   []json.RawMessage{pub},
	})
	require.Equalf(t, http.StatusCreated, r.Status, "body: %s", r.Body)

	sign := func(sub string, kv ...any) string {
		return key.Sign(with(claims(iss, sub, sharedIssuer+"/token"), append([]any{"cluster", "eu-1"}, kv...)...))
	}
	waitStatus(t, b, func() string { return sign("system:serviceaccount:prod:api") }, http.StatusOK)

	tok := requireToken(t, b.token(t, grant(sign("system:serviceaccount:ops:deployer", "exp", unix(90*time.Minute)))))
	assert.InDelta(t, 600, tok.ExpiresIn, 2, "the relationship's access-token lifetime")

	for name, assertion := range map[string]string{
		"namespace not matched":    sign("system:serviceaccount:staging:api"),
		"pattern stays in segment": sign("system:serviceaccount:prod:api:extra"),
		"not in the list":          sign("system:serviceaccount:ops:other"),
		"required claim differs":   sign("system:serviceaccount:prod:api", "cluster", "us-1"),
		"required claim missing":   sign("system:serviceaccount:prod:api", "cluster", nil),
		"beyond its max lifetime":  sign("system:serviceaccount:prod:api", "exp", unix(3*time.Hour)),
	} {
		requireError(t, b.token(t, grant(assertion)), http.StatusBadRequest, "invalid_grant")

		// B's dry run agrees, and names the reason.
		d := b.admin(t, http.MethodPost, "/admin/trust/check", map[string]any{"assertion": assertion})
		require.Equalf(t, http.StatusOK, d.Status, "%s: %s", name, d.Body)
		v := d.JSON(t)
		assert.Equal(t, false, v["would_issue"], name)
		assert.Equal(t, "invalid_grant", v["error"], name)
		assert.NotEmpty(t, v["reason"], name)
	}

	good := sign("system:serviceaccount:prod:web")
	d := b.admin(t, http.MethodPost, "/admin/trust/check", map[string]any{"assertion": good, "scope": "orders.read"})
	require.Equalf(t, http.StatusOK, d.Status, "body: %s", d.Body)
	v := d.JSON(t)
	assert.Equal(t, true, v["would_issue"], "body: %s", d.Body)
	assert.Equal(t, "k8s-prod", v["trust_id"])
	assert.Equal(t, false, v["jti_used"])
	requireToken(t, a.token(t, grant(good, "scope", "orders.read")))
	v = b.admin(t, http.MethodPost, "/admin/trust/check", map[string]any{"assertion": good}).JSON(t)
	assert.Equal(t, true, v["jti_used"], "A redeemed it; B's dry run sees the shared replay guard")

	// The relationship from the configuration cannot be changed here.
	r = b.admin(t, http.MethodDelete, "/admin/trust/cfg-partner", nil)
	require.Equalf(t, http.StatusConflict, r.Status, "body: %s", r.Body)
	requireToken(t, b.token(t, grant(partnerAssertion(partner))))

	// Expired: refused on both, with and without a kid.
	r = a.admin(t, http.MethodGet, "/admin/trust/k8s-prod", nil)
	require.Equal(t, http.StatusOK, r.Status)
	rel := r.JSON(t)
	rel["expires_at"] = time.Now().Add(-time.Minute).UTC().Format(time.RFC3339)
	r = a.admin(t, http.MethodPut, "/admin/trust/k8s-prod", rel)
	require.Equalf(t, http.StatusOK, r.Status, "body: %s", r.Body)
	waitStatus(t, b, func() string { return sign("system:serviceaccount:prod:api") }, http.StatusBadRequest)
	requireError(t, b.token(t, grant(key.SignNoKID(with(claims(iss, "system:serviceaccount:prod:api", sharedIssuer+"/token"), "cluster", "eu-1")))), http.StatusBadRequest, "invalid_grant")
	v = b.admin(t, http.MethodPost, "/admin/trust/check", map[string]any{"assertion": sign("system:serviceaccount:prod:api")}).JSON(t)
	assert.Contains(t, v["reason"], "expired")
}
