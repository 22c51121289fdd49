package integration_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/jwtbearer/jwtbearer/handler/handlertest"
	"github.com/jwtbearer/jwtbearer/server"
	"github.com/jwtbearer/jwtbearer/store/redis/redistest"
)

// sharedIssuer is the issuer identifier of every instance behind one load
// balancer: assertions name it, whichever instance receives them.
const sharedIssuer = "https://as.example"

// redisConfig is one instance's configuration on a shared Redis.
const redisConfig = `
listen: {{.Listen}}
issuer: ` + sharedIssuer + `
token_secret: "0123456789abcdef0123456789abcdef-shared"
store:
  type: redis
  redis:
    addrs: {{json .V.addrs}}
    key_prefix: "{{.V.prefix}}"
    timeout: 300ms
    dial_timeout: 300ms
trust:
  - id: partner
    issuer: Partner
    subject: svc-account
    scopes: [read, write]
    keys:
      - file: partner.pub
clients:
  - id: rs
    secret_hash: {{hash "rs-secret"}}
    grant_types: [client_credentials]
  - id: Partner
    secret_hash: {{hash "partner-secret"}}
    grant_types: [client_credentials]
`

// instance is one server process of a scaled-out deployment, in-process.
type instance struct {
	*testServer
	srv *server.Server
}

// newInstance starts a server on the shared Redis at addrs under prefix.
func newInstance(t *testing.T, addrs []string, prefix string, key *handlertest.Key) *instance {
	t.Helper()
	return newInstanceWith(t, addrs, prefix, key, "", nil)
}

// newInstanceWith is newInstance with more top-level configuration and
// more files in the configuration's folder.
func newInstanceWith(t *testing.T, addrs []string, prefix string, key *handlertest.Key, extra string, files map[string][]byte) *instance {
	t.Helper()
	ts := httptest.NewUnstartedServer(nil)
	addr := ts.Listener.Addr().String()
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "partner.pub"), key.PublicKeyPEM(), 0o600))
	for name, data := range files {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), data, 0o600))
	}
	config := render(t, redisConfig+extra, templateData{Listen: addr, V: map[string]any{"addrs": addrs, "prefix": prefix}})
	cfg, err := server.ParseConfig([]byte(config), dir)
	require.NoError(t, err, "configuration:\n%s", config)
	srv, err := server.New(t.Context(), cfg)
	require.NoError(t, err)
	ts.Config.Handler = srv.Handler()
	ts.Start()
	t.Cleanup(func() {
		ts.Close()
		_ = srv.Close()
	})
	base := "http://" + addr
	return &instance{
		testServer: &testServer{Issuer: base, TokenURL: sharedIssuer + "/token", Dir: dir, HTTP: newHTTPClient()},
		srv:        srv,
	}
}

func uniquePrefix(t *testing.T) string {
	b := make([]byte, 6)
	_, err := rand.Read(b)
	require.NoError(t, err)
	return "it-" + hex.EncodeToString(b) + ":"
}

func partnerAssertion(key *handlertest.Key) string {
	return key.Sign(claims("Partner", "svc-account", sharedIssuer+"/token"))
}

// postAll sends the same form to the instances concurrently, round robin,
// and counts the answers by status.
func postAll(t *testing.T, form url.Values, n int, instances ...*instance) map[int]int {
	t.Helper()
	var mu sync.Mutex
	counts := map[int]int{}
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			in := instances[i%len(instances)]
			req, err := http.NewRequest(http.MethodPost, in.Issuer+"/token", strings.NewReader(form.Encode()))
			if err != nil {
				panic(err)
			}
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			resp, err := in.HTTP.Do(req)
			status := -1
			if err == nil {
				status = resp.StatusCode
				_ = resp.Body.Close()
			}
			mu.Lock()
			counts[status]++
			mu.Unlock()
		}()
	}
	close(start)
	wg.Wait()
	return counts
}

// twoInstances checks what must hold for two instances on one store.
func twoInstances(t *testing.T, a, b *instance, key *handlertest.Key) {
	t.Run("replay across instances", func(t *testing.T) {
		assertion := partnerAssertion(key)
		requireToken(t, a.token(t, grant(assertion)))
		requireError(t, b.token(t, grant(assertion)), http.StatusBadRequest, "invalid_grant")
	})
	t.Run("64 concurrent copies split across instances", func(t *testing.T) {
		counts := postAll(t, grant(partnerAssertion(key)), 64, a, b)
		assert.Equal(t, map[int]int{200: 1, 400: 63}, counts)
	})
	t.Run("a token from A introspects on B, revoked on B is inactive on A", func(t *testing.T) {
		tok := requireToken(t, a.token(t, grant(partnerAssertion(key), "scope", "read")))
		got := b.introspect(t, tok.AccessToken, "rs", "rs-secret")
		assert.Equal(t, true, got["active"])
		assert.Equal(t, "svc-account", got["sub"])
		assert.Equal(t, "read", got["scope"])

		// The token is attributed to the issuer, and the client of that
		// name revokes it.
		r := b.post(t, "/revoke", url.Values{"token": {tok.AccessToken}}, basicAuth("Partner", "partner-secret"))
		require.Equalf(t, http.StatusOK, r.Status, "body: %s", r.Body)
		assert.Equal(t, false, a.introspect(t, tok.AccessToken, "rs", "rs-secret")["active"])
	})
	t.Run("a trust relationship removed via A stops working on B within a second", func(t *testing.T) {
		requireToken(t, b.token(t, grant(partnerAssertion(key))))
		require.NoError(t, a.srv.Store().DeleteTrust(context.Background(), server.ConfigTrustPrefix+"partner"))
		removed := time.Now()
		for {
			r := b.token(t, grant(partnerAssertion(key)))
			if r.Status == http.StatusBadRequest {
				requireError(t, r, http.StatusBadRequest, "invalid_grant")
				break
			}
			require.Equalf(t, http.StatusOK, r.Status, "body: %s", r.Body)
			require.Less(t, time.Since(removed), time.Second, "B still trusts a relationship deleted via A")
			time.Sleep(20 * time.Millisecond)
		}
		t.Logf("B stopped trusting it %v after the delete", time.Since(removed).Round(time.Millisecond))
	})
}

func TestRedisTwoInstances(t *testing.T) {
	redistest.Require(t)
	rs := redistest.Start(t)
	key := handlertest.NewRSAKey()
	prefix := uniquePrefix(t)
	a := newInstance(t, []string{rs.Addr}, prefix, key)
	b := newInstance(t, []string{rs.Addr}, prefix, key)
	twoInstances(t, a, b, key)
}

func TestRedisClusterTwoInstances(t *testing.T) {
	redistest.Require(t)
	cluster := redistest.StartCluster(t, 3)
	key := handlertest.NewRSAKey()
	prefix := uniquePrefix(t)
	a := newInstance(t, cluster.Addrs, prefix, key)
	b := newInstance(t, cluster.Addrs, prefix, key)
	twoInstances(t, a, b, key)
}

// An instance that restarts finds its tokens, revocations and replay
// window in Redis.
func TestRedisInstanceRestart(t *testing.T) {
	redistest.Require(t)
	rs := redistest.Start(t)
	key := handlertest.NewRSAKey()
	prefix := uniquePrefix(t)

	first := newInstance(t, []string{rs.Addr}, prefix, key)
	used := partnerAssertion(key)
	kept := requireToken(t, first.token(t, grant(used)))
	revoked := requireToken(t, first.token(t, grant(partnerAssertion(key))))
	r := first.post(t, "/revoke", url.Values{"token": {revoked.AccessToken}}, basicAuth("Partner", "partner-secret"))
	require.Equal(t, http.StatusOK, r.Status)
	require.NoError(t, first.srv.Close())

	second := newInstance(t, []string{rs.Addr}, prefix, key)
	assert.Equal(t, true, second.introspect(t, kept.AccessToken, "rs", "rs-secret")["active"])
	assert.Equal(t, false, second.introspect(t, revoked.AccessToken, "rs", "rs-secret")["active"])
	requireError(t, second.token(t, grant(used)), http.StatusBadRequest, "invalid_grant")
}

// Redis is killed during a load of concurrent token requests: no token is
// issued by a request that starts after the kill until Redis is back,
// every failure is an RFC 6749 JSON error, /healthz says not ready, and
// the instances recover by themselves once Redis restarts.
func TestRedisKilledUnderLoad(t *testing.T) {
	redistest.Require(t)
	rs := redistest.Start(t)
	key := handlertest.NewRSAKey()
	prefix := uniquePrefix(t)
	a := newInstance(t, []string{rs.Addr}, prefix, key)
	b := newInstance(t, []string{rs.Addr}, prefix, key)

	// Assertions are signed ahead so that the load is all server work.
	const workers = 8
	assertions := make(chan string, 4096)
	for range cap(assertions) {
		assertions <- partnerAssertion(key)
	}
	close(assertions)

	var (
		killedAt, backAt atomic.Int64 // unix nanos; 0 = not yet
		mu               sync.Mutex
		okAfterKill      []string
		statuses         = map[string]int{}
		badBodies        []string
	)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			in := []*instance{a, b}[w%2]
			for assertion := range assertions {
				select {
				case <-stop:
					return
				default:
				}
				started := time.Now().UnixNano()
				req, _ := http.NewRequest(http.MethodPost, in.Issuer+"/token", strings.NewReader(grant(assertion).Encode()))
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				resp, err := in.HTTP.Do(req)
				if err != nil {
					mu.Lock()
					statuses["transport error"]++
					mu.Unlock()
					continue
				}
				var e oauthError
				body := readAll(resp)
				mu.Lock()
				k, back := killedAt.Load(), backAt.Load()
				if resp.StatusCode == http.StatusOK {
					if k != 0 && started > k && (back == 0 || started < back) {
						okAfterKill = append(okAfterKill, string(body))
					}
				} else if ok := decodeError(body, &e); !ok || e.Error == "" {
					badBodies = append(badBodies, fmt.Sprintf("%d %s", resp.StatusCode, body))
				}
				statuses[fmt.Sprintf("%d %s", resp.StatusCode, e.Error)]++
				mu.Unlock()
			}
		}()
	}

	time.Sleep(300 * time.Millisecond)
	rs.Kill()
	killedAt.Store(time.Now().UnixNano())
	time.Sleep(700 * time.Millisecond)

	h := a.do(t, http.MethodGet, "/healthz", "")
	assert.Equal(t, http.StatusServiceUnavailable, h.Status, "healthz while Redis is down: %s", h.Body)
	down := a.token(t, grant(partnerAssertion(key)))
	requireError(t, down, http.StatusServiceUnavailable, "temporarily_unavailable")

	// From the moment the restart begins, a request may legitimately
	// succeed: mark it before, not after, Redis is back.
	backAt.Store(time.Now().UnixNano())
	rs.Restart(t)
	deadline := time.Now().Add(10 * time.Second)
	for {
		r := b.token(t, grant(partnerAssertion(key)))
		if r.Status == http.StatusOK {
			break
		}
		require.Truef(t, time.Now().Before(deadline), "no recovery after Redis came back: %d %s", r.Status, r.Body)
		time.Sleep(100 * time.Millisecond)
	}
	close(stop)
	wg.Wait()

	t.Logf("answers: %v", statuses)
	assert.Empty(t, okAfterKill, "tokens issued while Redis was down")
	assert.Empty(t, badBodies, "failures that are not RFC 6749 JSON errors")
	assert.Positive(t, statuses["503 temporarily_unavailable"], "no request saw the outage")
	for s := range statuses {
		assert.NotContains(t, s, "500", "a store outage must not be a 500")
	}
	assert.Equal(t, http.StatusOK, a.do(t, http.MethodGet, "/healthz", "").Status)
}

func readAll(resp *http.Response) []byte {
	defer func() { _ = resp.Body.Close() }()
	b, _ := io.ReadAll(resp.Body)
	return b
}

// decodeError reports whether body is a JSON object, decoding it into e.
func decodeError(body []byte, e *oauthError) bool {
	return json.Unmarshal(body, e) == nil
}

// Instances starting at the same moment on one Redis all load the same
// configuration without tripping over each other, and leave one copy of
// each relationship.
func TestRedisInstancesStartTogether(t *testing.T) {
	redistest.Require(t)
	rs := redistest.Start(t)
	key := handlertest.NewRSAKey()
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "partner.pub"), key.PublicKeyPEM(), 0o600))
	config := render(t, strings.Replace(redisConfig, "  - id: partner\n    issuer:", "  - issuer:", 1),
		templateData{Listen: "127.0.0.1:1", V: map[string]any{"addrs": []string{rs.Addr}, "prefix": uniquePrefix(t)}})
	cfg, err := server.ParseConfig([]byte(config), dir)
	require.NoError(t, err)

	const n = 4
	servers := make([]*server.Server, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			servers[i], errs[i] = server.New(context.Background(), cfg)
		}()
	}
	wg.Wait()
	for i := range n {
		require.NoError(t, errs[i])
		t.Cleanup(func() { _ = servers[i].Close() })
	}
	trusts, err := servers[0].Store().ListTrust(context.Background())
	require.NoError(t, err)
	assert.Len(t, trusts, 1)
}

// During an outage, revocation and introspection say so (503): a
// revocation that did not happen must not be answered 200.
func TestRedisOutageRevokeAndIntrospect(t *testing.T) {
	redistest.Require(t)
	rs := redistest.Start(t)
	key := handlertest.NewRSAKey()
	a := newInstance(t, []string{rs.Addr}, uniquePrefix(t), key)
	tok := requireToken(t, a.token(t, grant(partnerAssertion(key))))

	rs.Kill()
	r := a.post(t, "/revoke", url.Values{"token": {tok.AccessToken}}, basicAuth("Partner", "partner-secret"))
	requireError(t, r, http.StatusServiceUnavailable, "temporarily_unavailable")
	r = a.post(t, "/introspect", url.Values{"token": {tok.AccessToken}}, basicAuth("rs", "rs-secret"))
	requireError(t, r, http.StatusServiceUnavailable, "temporarily_unavailable")
	r = a.post(t, "/token", url.Values{"grant_type": {"client_credentials"}}, basicAuth("rs", "rs-secret"))
	requireError(t, r, http.StatusServiceUnavailable, "temporarily_unavailable")

	rs.Restart(t)
	deadline := time.Now().Add(5 * time.Second)
	for {
		r = a.post(t, "/introspect", url.Values{"token": {tok.AccessToken}}, basicAuth("rs", "rs-secret"))
		if r.Status == http.StatusOK || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	require.Equalf(t, http.StatusOK, r.Status, "body: %s", r.Body)
	assert.Equal(t, true, r.JSON(t)["active"], "the failed revocation must not have revoked")
}

// A reload on one instance applies the new declarative set on every
// instance sharing the store, at once and as a whole.
func TestRedisReloadReachesEveryInstance(t *testing.T) {
	redistest.Require(t)
	rs := redistest.Start(t)
	key, ciKey := handlertest.NewRSAKey(), handlertest.NewECKey()
	prefix := uniquePrefix(t)
	trustFile := func(subject string) []byte {
		return []byte("- id: ci\n  issuer: CI\n  subject_patterns: [\"" + subject + "\"]\n  scopes: [read]\n  keys:\n    - jwk: " + string(ciKey.PublicJWKJSON()) + "\n")
	}
	files := map[string][]byte{"trust.yaml": trustFile("job:build:*")}
	a := newInstanceWith(t, []string{rs.Addr}, prefix, key, "trust_file: trust.yaml\n", files)
	b := newInstanceWith(t, []string{rs.Addr}, prefix, key, "trust_file: trust.yaml\n", files)
	ci := func(sub string) url.Values { return grant(ciKey.Sign(claims("CI", sub, sharedIssuer+"/token"))) }

	requireToken(t, b.token(t, ci("job:build:42")))
	requireError(t, b.token(t, ci("job:deploy:42")), http.StatusBadRequest, "invalid_grant")

	require.NoError(t, os.WriteFile(filepath.Join(a.Dir, "trust.yaml"), trustFile("job:deploy:*"), 0o600))
	require.NoError(t, a.srv.Reload(t.Context()))
	requireToken(t, a.token(t, ci("job:deploy:43")))
	deadline := time.Now().Add(2 * time.Second)
	for b.token(t, ci("job:deploy:44")).Status != http.StatusOK {
		require.True(t, time.Now().Before(deadline), "instance B never saw the reload made on A")
		time.Sleep(20 * time.Millisecond)
	}
	requireError(t, b.token(t, ci("job:build:45")), http.StatusBadRequest, "invalid_grant")
	requireToken(t, b.token(t, grant(partnerAssertion(key))))

	// An invalid file changes nothing anywhere.
	require.NoError(t, os.WriteFile(filepath.Join(a.Dir, "trust.yaml"), []byte("- id: ci\n  issuer: CI\n  subject_patterns: [\"**\"]\n"), 0o600))
	require.Error(t, a.srv.Reload(t.Context()))
	time.Sleep(100 * time.Millisecond)
	requireToken(t, b.token(t, ci("job:deploy:46")))
	requireToken(t, a.token(t, ci("job:deploy:47")))
}
