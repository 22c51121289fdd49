package server

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/jwtbearer/jwtbearer/handler"
	"github.com/jwtbearer/jwtbearer/store/jwks"
)

// scrapeMetrics serves one scrape of h and returns the samples of the
// text exposition, keyed by series as written (name{label="value",...},
// labels in name order).
func scrapeMetrics(t *testing.T, h http.Handler) map[string]float64 {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	assert.Contains(t, rec.Header().Get("Content-Type"), "text/plain")
	return parseExposition(t, rec.Body.String())
}

func parseExposition(t *testing.T, body string) map[string]float64 {
	t.Helper()
	samples := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		require.Positive(t, i, "sample line %q", line)
		v, err := strconv.ParseFloat(line[i+1:], 64)
		require.NoError(t, err, "sample line %q", line)
		samples[line[:i]] = v
	}
	require.NoError(t, sc.Err())
	return samples
}

// metricsSeriesCounts counts the series of every jwtbearer_ family in m's
// registry (a histogram counts once per label set).
func metricsSeriesCounts(t *testing.T, m *metrics) map[string]int {
	t.Helper()
	mfs, err := m.registry.Gather()
	require.NoError(t, err)
	counts := map[string]int{}
	for _, mf := range mfs {
		if strings.HasPrefix(mf.GetName(), "jwtbearer_") {
			counts[mf.GetName()] = len(mf.GetMetric())
		}
	}
	return counts
}

// fakeRemoteStatus is a remoteStatus with a fixed answer.
type fakeRemoteStatus struct {
	mu     sync.Mutex
	status []jwks.Status
}

func (f *fakeRemoteStatus) Status() []jwks.Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]jwks.Status(nil), f.status...)
}

// The cache's Status is what the collector reads.
var _ remoteStatus = (*jwks.Cache)(nil)

func TestMetricsExposition(t *testing.T) {
	m := newMetrics(nil, nil)
	for range 3 {
		m.tokenRequest(handler.GrantType, "ok", 2*time.Millisecond)
	}
	m.tokenRequest("client_credentials", "invalid_client", 300*time.Microsecond)
	m.tokenRequest("refresh_token", "invalid_grant", 3*time.Second)
	m.endpointRequest("introspect", http.StatusOK)
	m.endpointRequest("introspect", http.StatusUnauthorized)
	m.endpointRequest("revoke", http.StatusServiceUnavailable)
	m.endpointRequest("admin", http.StatusCreated)
	m.endpointRequest("admin", http.StatusNotModified)
	m.replayRejected("assertion")
	m.replayRejected("assertion")
	m.replayRejected("client_assertion")
	m.storeError("replay")
	m.rateLimited("client")
	m.rateLimited("issuer")
	m.rateLimited("issuer")

	got := scrapeMetrics(t, m.Handler())
	jb := `grant_type="urn:ietf:params:oauth:grant-type:jwt-bearer"`
	want := map[string]float64{
		`jwtbearer_token_requests_total{grant_type="urn:ietf:params:oauth:grant-type:jwt-bearer",outcome="ok"}`: 3,
		`jwtbearer_token_requests_total{grant_type="client_credentials",outcome="invalid_client"}`:              1,
		`jwtbearer_token_requests_total{grant_type="refresh_token",outcome="invalid_grant"}`:                    1,
		// Known series exist from the start, at zero.
		`jwtbearer_token_requests_total{grant_type="client_credentials",outcome="ok"}`:                 0,
		`jwtbearer_token_requests_total{grant_type="other",outcome="other"}`:                           0,
		`jwtbearer_token_request_duration_seconds_bucket{` + jb + `,le="0.001"}`:                       0,
		`jwtbearer_token_request_duration_seconds_bucket{` + jb + `,le="0.0025"}`:                      3,
		`jwtbearer_token_request_duration_seconds_bucket{` + jb + `,le="+Inf"}`:                        3,
		`jwtbearer_token_request_duration_seconds_count{` + jb + `}`:                                   3,
		`jwtbearer_token_request_duration_seconds_sum{` + jb + `}`:                                     0.006,
		`jwtbearer_token_request_duration_seconds_bucket{grant_type="client_credentials",le="0.0005"}`: 1,
		`jwtbearer_token_request_duration_seconds_bucket{grant_type="refresh_token",le="2.5"}`:         0,
		`jwtbearer_token_request_duration_seconds_bucket{grant_type="refresh_token",le="5"}`:           1,
		`jwtbearer_token_request_duration_seconds_count{grant_type="other"}`:                           0,
		`jwtbearer_endpoint_requests_total{endpoint="introspect",status_class="2xx"}`:                  1,
		`jwtbearer_endpoint_requests_total{endpoint="introspect",status_class="4xx"}`:                  1,
		`jwtbearer_endpoint_requests_total{endpoint="revoke",status_class="5xx"}`:                      1,
		`jwtbearer_endpoint_requests_total{endpoint="admin",status_class="2xx"}`:                       1,
		`jwtbearer_endpoint_requests_total{endpoint="admin",status_class="3xx"}`:                       1,
		`jwtbearer_endpoint_requests_total{endpoint="healthz",status_class="2xx"}`:                     0,
		`jwtbearer_replay_rejections_total{kind="assertion"}`:                                          2,
		`jwtbearer_replay_rejections_total{kind="client_assertion"}`:                                   1,
		`jwtbearer_store_errors_total{op="replay"}`:                                                    1,
		`jwtbearer_store_errors_total{op="token"}`:                                                     0,
		`jwtbearer_rate_limited_requests_total{limit="client"}`:                                        1,
		`jwtbearer_rate_limited_requests_total{limit="issuer"}`:                                        2,
		`jwtbearer_remote_keys_fetches_total`:                                                          0,
		`jwtbearer_remote_keys_fetch_failures_total`:                                                   0,
		`jwtbearer_remote_keys_usable_keys`:                                                            0,
		`jwtbearer_remote_keys_documents{kind="jwks",state="failing"}`:                                 0,
	}
	for series, v := range want {
		if assert.Contains(t, got, series) {
			assert.InDelta(t, v, got[series], 1e-9, series)
		}
	}
	// The Go runtime and process collectors are in the registry.
	assert.Contains(t, got, "go_goroutines")
	if runtime.GOOS == "linux" {
		assert.Contains(t, got, "process_cpu_seconds_total")
	}
}

func TestMetricsFoldUnknownLabels(t *testing.T) {
	m := newMetrics(nil, nil)
	m.tokenRequest("password", "invalid_grant", time.Millisecond)
	m.tokenRequest("", "invalid_request", time.Millisecond)
	m.tokenRequest("CLIENT_CREDENTIALS", "jti_known", time.Millisecond)
	m.tokenRequest("client_credentials", "request_unauthorized", time.Millisecond)
	m.tokenRequest("client_credentials", "", time.Millisecond)
	m.endpointRequest("/admin/trust/partner-a", http.StatusOK)
	m.endpointRequest("introspect", 0)   // nothing written: 200
	m.endpointRequest("introspect", 99)  // not a status
	m.endpointRequest("introspect", 600) // not a status
	m.replayRejected("refresh")
	m.storeError("GET trust:https://partner.example")
	m.rateLimited("ip")

	got := scrapeMetrics(t, m.Handler())
	for series, v := range map[string]float64{
		`jwtbearer_token_requests_total{grant_type="other",outcome="invalid_grant"}`:      1,
		`jwtbearer_token_requests_total{grant_type="other",outcome="invalid_request"}`:    1,
		`jwtbearer_token_requests_total{grant_type="other",outcome="other"}`:              1,
		`jwtbearer_token_requests_total{grant_type="client_credentials",outcome="other"}`: 2,
		`jwtbearer_token_request_duration_seconds_count{grant_type="other"}`:              3,
		`jwtbearer_endpoint_requests_total{endpoint="other",status_class="2xx"}`:          1,
		`jwtbearer_endpoint_requests_total{endpoint="introspect",status_class="2xx"}`:     1,
		`jwtbearer_endpoint_requests_total{endpoint="introspect",status_class="other"}`:   2,
		`jwtbearer_replay_rejections_total{kind="other"}`:                                 1,
		`jwtbearer_store_errors_total{op="other"}`:                                        1,
		`jwtbearer_rate_limited_requests_total{limit="other"}`:                            1,
	} {
		assert.Equal(t, v, got[series], series)
	}
	for series := range got {
		assert.NotContains(t, series, "password")
		assert.NotContains(t, series, "jti_known")
		assert.NotContains(t, series, "partner")
		assert.NotContains(t, series, `"ip"`)
	}
}

// However many distinct values callers pass, the series are those of the
// fixed lists.
func TestMetricsBoundedCardinality(t *testing.T) {
	m := newMetrics(nil, nil)
	want := metricsSeriesCounts(t, m)
	assert.Equal(t, map[string]int{
		"jwtbearer_token_requests_total":             len(metricGrantTypes) * len(metricOutcomes),
		"jwtbearer_token_request_duration_seconds":   len(metricGrantTypes),
		"jwtbearer_endpoint_requests_total":          len(metricEndpoints) * len(metricStatusClasses),
		"jwtbearer_replay_rejections_total":          len(metricReplayKinds),
		"jwtbearer_store_errors_total":               len(metricStoreOps),
		"jwtbearer_rate_limited_requests_total":      len(metricLimits),
		"jwtbearer_remote_keys_fetches_total":        1,
		"jwtbearer_remote_keys_fetch_failures_total": 1,
		"jwtbearer_remote_keys_documents":            (len(metricRemoteKinds) - 1) * (len(metricRemoteStates) - 1),
		"jwtbearer_remote_keys_usable_keys":          1,
	}, want)

	rng := rand.New(rand.NewPCG(1, 2))
	random := func() string {
		b := make([]byte, 1+rng.IntN(40))
		for i := range b {
			b[i] = byte(rng.IntN(256))
		}
		return string(b)
	}
	pick := func(known []string) string {
		if rng.IntN(4) == 0 {
			return known[rng.IntN(len(known))]
		}
		return random()
	}
	for range 10_000 {
		m.tokenRequest(pick(metricGrantTypes[:]), pick(metricOutcomes[:]), time.Duration(rng.Int64N(int64(10*time.Second))))
		m.endpointRequest(pick(metricEndpoints[:]), rng.IntN(1000)-100)
		m.replayRejected(pick(metricReplayKinds[:]))
		m.storeError(pick(metricStoreOps[:]))
		m.rateLimited(pick(metricLimits[:]))
		m.remoteKeysFetched(random(), nil)
	}
	assert.Equal(t, want, metricsSeriesCounts(t, m))

	got := scrapeMetrics(t, m.Handler())
	var total float64
	for series, v := range got {
		if strings.HasPrefix(series, "jwtbearer_token_requests_total{") {
			total += v
		}
	}
	assert.Equal(t, 10_000.0, total, "every request is counted, in some series")
	assert.Equal(t, 10_000.0, got[`jwtbearer_remote_keys_fetches_total`])
}

func TestMetricsRemoteKeys(t *testing.T) {
	remote := &fakeRemoteStatus{status: []jwks.Status{
		{URL: "https://partner-a.example/jwks", Kind: "jwks", State: "ok", Keys: 2},
		{URL: "https://partner-b.example/jwks", Kind: "jwks", State: "ok", Keys: 3},
		{URL: "https://partner-c.example/jwks", Kind: "jwks", State: "stale", Keys: 1, LastError: "jwks: GET https://partner-c.example/jwks: 503"},
		{URL: "https://partner-d.example/jwks", Kind: "jwks", State: "failing"},
		{URL: "https://partner-e.example/.well-known/openid-configuration", Kind: "discovery", State: "ok"},
		{URL: "https://partner-f.example/.well-known/openid-configuration", Kind: "discovery", State: "failing"},
		{URL: "https://partner-g.example/x", Kind: "jwks", State: "refreshing", Keys: 4},
	}}
	m := newMetrics(remote, nil)
	m.remoteKeysFetched("https://partner-a.example/jwks", nil)
	m.remoteKeysFetched("https://partner-c.example/jwks", errors.New("503"))
	m.remoteKeysFetched("https://partner-d.example/jwks", errors.New("timeout"))
	m.remoteKeysFetched("https://partner-a.example/jwks", nil)

	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	require.Equal(t, http.StatusOK, rec.Code)
	assert.NotContains(t, rec.Body.String(), "partner", "URLs and errors are never exported")
	got := parseExposition(t, rec.Body.String())
	for series, v := range map[string]float64{
		`jwtbearer_remote_keys_fetches_total`:                               4,
		`jwtbearer_remote_keys_fetch_failures_total`:                        2,
		`jwtbearer_remote_keys_usable_keys`:                                 10,
		`jwtbearer_remote_keys_documents{kind="jwks",state="ok"}`:           2,
		`jwtbearer_remote_keys_documents{kind="jwks",state="stale"}`:        1,
		`jwtbearer_remote_keys_documents{kind="jwks",state="failing"}`:      1,
		`jwtbearer_remote_keys_documents{kind="jwks",state="other"}`:        1,
		`jwtbearer_remote_keys_documents{kind="discovery",state="ok"}`:      1,
		`jwtbearer_remote_keys_documents{kind="discovery",state="stale"}`:   0,
		`jwtbearer_remote_keys_documents{kind="discovery",state="failing"}`: 1,
	} {
		if assert.Contains(t, got, series) {
			assert.Equal(t, v, got[series], series)
		}
	}
	assert.NotContains(t, got, `jwtbearer_remote_keys_documents{kind="discovery",state="other"}`, "other only when not zero")

	// The gauges follow the cache at every scrape.
	remote.mu.Lock()
	remote.status = remote.status[:1]
	remote.mu.Unlock()
	got = scrapeMetrics(t, m.Handler())
	assert.Equal(t, 1.0, got[`jwtbearer_remote_keys_documents{kind="jwks",state="ok"}`])
	assert.Equal(t, 0.0, got[`jwtbearer_remote_keys_documents{kind="jwks",state="failing"}`])
	assert.Equal(t, 2.0, got[`jwtbearer_remote_keys_usable_keys`])
	assert.NotContains(t, got, `jwtbearer_remote_keys_documents{kind="jwks",state="other"}`)
}

// The hook and the adapter work with a real cache, built after the
// metrics as newMetrics's comment shows.
func TestMetricsRemoteKeysCache(t *testing.T) {
	var cache *jwks.Cache
	m := newMetrics(remoteStatusFunc(func() []jwks.Status { return cache.Status() }), nil)
	cache = jwks.New(jwks.Config{OnFetch: m.remoteKeysFetched})
	// An empty cache: no fetch, no document.
	got := scrapeMetrics(t, m.Handler())
	assert.Equal(t, 0.0, got[`jwtbearer_remote_keys_fetches_total`])
	assert.Equal(t, 0.0, got[`jwtbearer_remote_keys_documents{kind="jwks",state="ok"}`])
}

func TestMetricsNil(t *testing.T) {
	var m *metrics
	assert.NotPanics(t, func() {
		m.tokenRequest("client_credentials", "ok", time.Millisecond)
		m.endpointRequest("introspect", http.StatusOK)
		m.replayRejected("assertion")
		m.storeError("replay")
		m.rateLimited("client")
		m.remoteKeysFetched("https://partner.example/jwks", errors.New("x"))
		// The hook can be taken from a nil *metrics.
		jwks.New(jwks.Config{OnFetch: m.remoteKeysFetched})
	})
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	assert.Equal(t, http.StatusNotFound, rec.Code)
	assert.Contains(t, rec.Header().Get("Content-Type"), "application/json")

	next := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusTeapot) })
	rec = httptest.NewRecorder()
	m.instrument("introspect", next).ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/introspect", nil))
	assert.Equal(t, http.StatusTeapot, rec.Code)
}

// Nothing reaches the global registry, and several servers in one
// process (as in tests) each have their own metrics.
func TestMetricsOwnRegistry(t *testing.T) {
	before, err := prometheus.DefaultGatherer.Gather()
	require.NoError(t, err)
	a := newMetrics(nil, nil)
	b := newMetrics(nil, nil)
	assert.NotSame(t, a.registry, b.registry)
	assert.NotEqual(t, prometheus.DefaultRegisterer, prometheus.Registerer(a.registry))
	a.tokenRequest("client_credentials", "ok", time.Millisecond)
	a.rateLimited("client")
	after, err := prometheus.DefaultGatherer.Gather()
	require.NoError(t, err)
	assert.Len(t, after, len(before))
	for _, mf := range after {
		assert.False(t, strings.HasPrefix(mf.GetName(), "jwtbearer_"), mf.GetName())
	}
	assert.Equal(t, 1.0, scrapeMetrics(t, a.Handler())[`jwtbearer_rate_limited_requests_total{limit="client"}`])
	assert.Equal(t, 0.0, scrapeMetrics(t, b.Handler())[`jwtbearer_rate_limited_requests_total{limit="client"}`])
}

// failingMetricsCollector fails with an error that must not reach a scraper.
type failingMetricsCollector struct{ desc *prometheus.Desc }

func (c failingMetricsCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }
func (c failingMetricsCollector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.NewInvalidMetric(c.desc, errors.New("dial https://partner.example/secret: refused"))
}

func TestMetricsGatherErrorNotLeaked(t *testing.T) {
	var log bytes.Buffer
	m := newMetrics(nil, slog.New(slog.NewTextHandler(&log, nil)))
	m.registry.MustRegister(failingMetricsCollector{prometheus.NewDesc("jwtbearer_test_failing", "Fails.", nil, nil)})
	m.rateLimited("issuer")

	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	assert.Equal(t, http.StatusOK, rec.Code, "what could be gathered is served")
	assert.NotContains(t, rec.Body.String(), "partner")
	got := parseExposition(t, rec.Body.String())
	assert.Equal(t, 1.0, got[`jwtbearer_rate_limited_requests_total{limit="issuer"}`])
	assert.Contains(t, log.String(), "partner.example/secret", "the cause is logged")
}

func TestMetricsInstrument(t *testing.T) {
	m := newMetrics(nil, nil)
	serve := func(endpoint string, h http.HandlerFunc) {
		t.Helper()
		rec := httptest.NewRecorder()
		m.instrument(endpoint, h).ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/x", nil))
	}
	serve("introspect", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "{}") })
	serve("introspect", func(http.ResponseWriter, *http.Request) {})
	serve("revoke", func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusUnauthorized)
		w.WriteHeader(http.StatusOK) // superfluous: ignored by net/http, and here
	})
	serve("admin", func(w http.ResponseWriter, _ *http.Request) {
		// The recorder lets http.ResponseController reach the writer.
		assert.NoError(t, http.NewResponseController(w).Flush())
		w.WriteHeader(http.StatusNoContent)
	})
	assert.Panics(t, func() {
		serve("admin", func(http.ResponseWriter, *http.Request) { panic("boom") })
	})

	got := scrapeMetrics(t, m.Handler())
	for series, v := range map[string]float64{
		`jwtbearer_endpoint_requests_total{endpoint="introspect",status_class="2xx"}`: 2,
		`jwtbearer_endpoint_requests_total{endpoint="revoke",status_class="4xx"}`:     1,
		`jwtbearer_endpoint_requests_total{endpoint="revoke",status_class="2xx"}`:     0,
		`jwtbearer_endpoint_requests_total{endpoint="admin",status_class="2xx"}`:      1,
		`jwtbearer_endpoint_requests_total{endpoint="admin",status_class="5xx"}`:      1,
	} {
		assert.Equal(t, v, got[series], series)
	}
}

// Recording is safe while other goroutines record and scrape.
func TestMetricsConcurrent(t *testing.T) {
	m := newMetrics(&fakeRemoteStatus{status: []jwks.Status{{Kind: "jwks", State: "ok", Keys: 1}}}, nil)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 500 {
				m.tokenRequest(metricGrantTypes[i%len(metricGrantTypes)], metricOutcomes[(i+g)%len(metricOutcomes)], time.Millisecond)
				m.endpointRequest("revoke", 200)
				m.remoteKeysFetched("", nil)
			}
		})
	}
	wg.Go(func() {
		for range 5 {
			rec := httptest.NewRecorder()
			m.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
			assert.Equal(t, http.StatusOK, rec.Code)
		}
	})
	wg.Wait()
	got := scrapeMetrics(t, m.Handler())
	assert.Equal(t, 4000.0, got[`jwtbearer_endpoint_requests_total{endpoint="revoke",status_class="2xx"}`])
	assert.Equal(t, 4000.0, got[`jwtbearer_remote_keys_fetches_total`])
}

// Recording allocates nothing, so the token endpoint pays no GC for it.
func TestMetricsRecordingAllocatesNothing(t *testing.T) {
	m := newMetrics(nil, nil)
	for name, f := range map[string]func(){
		"tokenRequest":         func() { m.tokenRequest(handler.GrantType, "ok", time.Millisecond) },
		"tokenRequest/unknown": func() { m.tokenRequest("password", "jti_known", time.Millisecond) },
		"endpointRequest":      func() { m.endpointRequest("introspect", http.StatusOK) },
		"replayRejected":       func() { m.replayRejected("assertion") },
		"storeError":           func() { m.storeError("replay") },
		"rateLimited":          func() { m.rateLimited("client") },
		"remoteKeysFetched":    func() { m.remoteKeysFetched("https://x", nil) },
	} {
		assert.Zero(t, testing.AllocsPerRun(100, f), name)
	}
}

func BenchmarkMetricsTokenRequest(b *testing.B) {
	m := newMetrics(nil, nil)
	cases := []struct{ name, grantType, outcome string }{
		{"jwt-bearer/ok", handler.GrantType, "ok"},                                    // the usual request
		{"client_credentials/invalid_client", "client_credentials", "invalid_client"}, // a known error
		{"refresh_token/temporarily_unavailable", "refresh_token", "temporarily_unavailable"},
		{"unknown/unknown", "password", "jti_known"}, // folded into "other": the longest scans
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				m.tokenRequest(c.grantType, c.outcome, 1500*time.Microsecond)
			}
		})
	}
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				m.tokenRequest(handler.GrantType, "ok", 1500*time.Microsecond)
			}
		})
	})
}
