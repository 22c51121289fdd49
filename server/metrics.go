package server

import (
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"

	"github.com/jwtbearer/jwtbearer/handler"
	"github.com/jwtbearer/jwtbearer/store/jwks"
)

// Every label value the metrics record comes from one of the fixed lists
// below: anything else a caller passes is recorded as labelOther. Clients
// choose the grant_type they send, and an error code can come from any
// layer, so taking values as given would let requests create series
// without bound. Identifiers (sub, jti, iss, client_id, kid) and URLs are
// never labels: they are unbounded, and a URL can name a partner.
//
// Each list ends with labelOther, so its last index is the fallback.
const labelOther = "other"

var (
	// metricGrantTypes are the grant types this server composes
	// (knownGrantTypes).
	metricGrantTypes = [...]string{"client_credentials", "refresh_token", handler.GrantType, labelOther}
	// metricOutcomes are "ok" and the error codes a token request can
	// end with: RFC 6749 §5.2, plus slow_down (RFC 8628 §3.5, rate
	// limiting) and the codes of RFC 6749 §4.1.2.1 for server faults.
	metricOutcomes = [...]string{
		"ok",
		"invalid_request",
		"invalid_client",
		"invalid_grant",
		"unauthorized_client",
		"unsupported_grant_type",
		"invalid_scope",
		"slow_down",
		"temporarily_unavailable",
		"server_error",
		labelOther,
	}
	// metricEndpoints are the endpoints other than /token.
	metricEndpoints = [...]string{"introspect", "revoke", "admin", "healthz", labelOther}
	// metricStatusClasses are the classes of HTTP status codes.
	metricStatusClasses = [...]string{"2xx", "3xx", "4xx", "5xx", labelOther}
	// metricReplayKinds name the replay guards: the jti of a jwt-bearer
	// assertion (RFC 7523 §3 item 7), and that of a client assertion
	// (RFC 7523 §3 for client authentication, through fosite).
	metricReplayKinds = [...]string{"assertion", "client_assertion", labelOther}
	// metricStoreOps name what the server was doing with its store when
	// it failed: "trust" (trust relationships and their keys), "replay"
	// (claiming a jti), "client" (client lookup), "token" (token
	// sessions: issue, refresh, introspect, revoke), "ping" (health).
	metricStoreOps = [...]string{"trust", "replay", "client", "token", "ping", labelOther}
	// metricLimits name the rate limits (handler.LimitKind).
	metricLimits = [...]string{string(handler.LimitClient), string(handler.LimitIssuer), labelOther}
	// metricRemoteKinds and metricRemoteStates are jwks.Status's Kind and
	// State values.
	metricRemoteKinds  = [...]string{"jwks", "discovery", labelOther}
	metricRemoteStates = [...]string{"ok", "stale", "failing", labelOther}
)

// tokenDurationBuckets suit a token endpoint that answers in 0.1 to 10 ms
// (about 80 µs of CPU per token), with room for a slow store or a remote
// key set fetch (jwks.Config.Timeout is 5 s by default).
var tokenDurationBuckets = []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5}

// labelIndex returns the index of v in values, or the last index (that of
// labelOther) when v is not one of them. The lists are short, and a scan
// of them costs less than hashing v for a map.
func labelIndex(values []string, v string) int {
	last := len(values) - 1
	for i, s := range values[:last] {
		if s == v {
			return i
		}
	}
	return last
}

// statusClass returns the index in metricStatusClasses of status's class.
// Zero counts as 200, which net/http sends when a handler writes nothing.
func statusClass(status int) int {
	if status == 0 {
		status = http.StatusOK
	}
	if status >= 200 && status < 600 {
		return status/100 - 2
	}
	return len(metricStatusClasses) - 1
}

// remoteStatus is what the metrics read of the remote key cache:
// *jwks.Cache implements it.
type remoteStatus interface {
	Status() []jwks.Status
}

// remoteStatusFunc adapts a function to remoteStatus, so that the metrics
// can be built before the cache they report on (see newMetrics).
type remoteStatusFunc func() []jwks.Status

// Status calls f.
func (f remoteStatusFunc) Status() []jwks.Status { return f() }

// metrics are the Prometheus metrics of the server, kept in a registry of
// their own (never prometheus.DefaultRegisterer) with the Go runtime and
// process collectors, and served by Handler.
//
// Every label value is one of a fixed list (see labelOther), and the
// series of the known values are created up front, so that they are
// exported as zeros before their first event and so that recording an
// event is an array lookup and an atomic add: no allocation, no lock, no
// label hashing.
//
// A nil *metrics is valid: every method is then a no-op, and Handler
// answers 404. It is safe for concurrent use.
type metrics struct {
	registry *prometheus.Registry
	handler  http.Handler

	tokenRequests  [len(metricGrantTypes)][len(metricOutcomes)]prometheus.Counter
	tokenDuration  [len(metricGrantTypes)]prometheus.Observer
	endpoints      [len(metricEndpoints)][len(metricStatusClasses)]prometheus.Counter
	replays        [len(metricReplayKinds)]prometheus.Counter
	storeErrors    [len(metricStoreOps)]prometheus.Counter
	rateLimits     [len(metricLimits)]prometheus.Counter
	remoteFetches  prometheus.Counter
	remoteFailures prometheus.Counter
}

// newMetrics registers the server's metrics in a new registry. remote is
// read at every scrape for the state of the remote key sets; it may be
// nil, and then those gauges stay at zero. logger receives the errors of
// a scrape; nil discards them.
//
// The fetch counters need jwks.Config.OnFetch to call remoteKeysFetched.
// Either the metrics are built before the cache, with a remote that reads
// the cache when scraped:
//
//	s.metrics = newMetrics(remoteStatusFunc(func() []jwks.Status { return s.remote.Status() }), s.logger)
//	s.remote = jwks.New(jwks.Config{ /* ... */ OnFetch: s.metrics.remoteKeysFetched})
//
// or after it, with a hook that reads s.metrics when called (it is set
// before the server serves, and a nil *metrics ignores the call):
//
//	s.remote = jwks.New(jwks.Config{ /* ... */ OnFetch: func(url string, err error) { s.metrics.remoteKeysFetched(url, err) }})
//	s.metrics = newMetrics(s.remote, s.logger)
func newMetrics(remote remoteStatus, logger *slog.Logger) *metrics {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	m := &metrics{registry: reg}

	tokenRequests := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "jwtbearer",
		Name:      "token_requests_total",
		Help:      `Requests at the token endpoint, by grant_type and outcome ("ok" or the OAuth error code). Values outside a fixed list are "other".`,
	}, []string{"grant_type", "outcome"})
	tokenDuration := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "jwtbearer",
		Name:      "token_request_duration_seconds",
		Help:      `Time to answer a token request, by grant_type. Values outside a fixed list are "other".`,
		Buckets:   tokenDurationBuckets,
	}, []string{"grant_type"})
	for g, gt := range metricGrantTypes {
		for o, outcome := range metricOutcomes {
			m.tokenRequests[g][o] = tokenRequests.WithLabelValues(gt, outcome)
		}
		m.tokenDuration[g] = tokenDuration.WithLabelValues(gt)
	}

	endpoints := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "jwtbearer",
		Name:      "endpoint_requests_total",
		Help:      `Requests at the endpoints other than /token, by endpoint and HTTP status class. Values outside a fixed list are "other".`,
	}, []string{"endpoint", "status_class"})
	for e, endpoint := range metricEndpoints {
		for c, class := range metricStatusClasses {
			m.endpoints[e][c] = endpoints.WithLabelValues(endpoint, class)
		}
	}

	replays := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "jwtbearer",
		Name:      "replay_rejections_total",
		Help:      `Requests refused because their jti was already used, by kind: "assertion" (jwt-bearer grant) or "client_assertion" (client authentication).`,
	}, []string{"kind"})
	for i, v := range metricReplayKinds {
		m.replays[i] = replays.WithLabelValues(v)
	}

	storeErrors := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "jwtbearer",
		Name:      "store_errors_total",
		Help:      `Store operations that failed (unreachable or erring store), by operation: trust, replay, client, token, ping or other.`,
	}, []string{"op"})
	for i, v := range metricStoreOps {
		m.storeErrors[i] = storeErrors.WithLabelValues(v)
	}

	rateLimits := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "jwtbearer",
		Name:      "rate_limited_requests_total",
		Help:      `Requests refused by a rate limit, by limit: "client" or "issuer".`,
	}, []string{"limit"})
	for i, v := range metricLimits {
		m.rateLimits[i] = rateLimits.WithLabelValues(v)
	}

	m.remoteFetches = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "jwtbearer",
		Name:      "remote_keys_fetches_total",
		Help:      "Fetch attempts of remote key sets and discovery documents, all URLs together.",
	})
	m.remoteFailures = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "jwtbearer",
		Name:      "remote_keys_fetch_failures_total",
		Help:      "Fetch attempts of remote key sets and discovery documents that failed, all URLs together.",
	})

	reg.MustRegister(tokenRequests, tokenDuration, endpoints, replays, storeErrors, rateLimits,
		m.remoteFetches, m.remoteFailures, newRemoteKeysCollector(remote))

	// The handler is given a gatherer that logs the cause of an error and
	// returns a fixed one: promhttp may write the error's text in its
	// answer, and a collector's error may say more than a scraper should
	// read.
	gather := prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) {
		mfs, err := reg.Gather()
		if err != nil {
			logger.Error("metrics: gathering failed", "error", err)
			err = errGatherIncomplete
		}
		return mfs, err
	})
	m.handler = promhttp.HandlerFor(gather, promhttp.HandlerOpts{
		// Serve what could be gathered rather than nothing.
		ErrorHandling: promhttp.ContinueOnError,
		// Count the handler's own errors in reg.
		Registry: reg,
		// A scrape costs far more than a token: a few concurrent ones
		// are enough for any set of scrapers.
		MaxRequestsInFlight: 4,
	})
	return m
}

// errGatherIncomplete is what a scraper is told when gathering failed;
// the cause is logged.
var errGatherIncomplete = errors.New("some metrics could not be gathered; see the server log")

// Handler serves the metrics in the Prometheus text format (or
// OpenMetrics, as negotiated). On a nil *metrics it answers 404.
func (m *metrics) Handler() http.Handler {
	if m == nil {
		return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			writeError(w, http.StatusNotFound, "not_found", "There is nothing at this path.")
		})
	}
	return m.handler
}

// tokenRequest records a request at the token endpoint: its grant_type
// parameter as sent (any value; unknown ones count as "other"), its
// outcome ("ok", or the "error" member of the answer, such as
// RFC6749Error.ErrorField; unknown ones count as "other") and the time it
// took to answer. It allocates nothing.
func (m *metrics) tokenRequest(grantType, outcome string, d time.Duration) {
	if m == nil {
		return
	}
	g := labelIndex(metricGrantTypes[:], grantType)
	m.tokenRequests[g][labelIndex(metricOutcomes[:], outcome)].Inc()
	m.tokenDuration[g].Observe(d.Seconds())
}

// endpointRequest records a request at an endpoint other than /token
// ("introspect", "revoke", "admin", "healthz"; others count as "other")
// answered with the HTTP status (0 counts as 200).
func (m *metrics) endpointRequest(endpoint string, status int) {
	if m == nil {
		return
	}
	m.endpoints[labelIndex(metricEndpoints[:], endpoint)][statusClass(status)].Inc()
}

// instrument wraps next, the handler of endpoint, so that every request it
// serves is recorded with endpointRequest. A request whose handler panics
// counts as a 5xx (the panic goes on). On a nil *metrics it returns next.
func (m *metrics) instrument(endpoint string, next http.Handler) http.Handler {
	if m == nil {
		return next
	}
	counters := &m.endpoints[labelIndex(metricEndpoints[:], endpoint)]
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &metricsStatusRecorder{ResponseWriter: w}
		done := false
		defer func() {
			status := rec.status
			if !done {
				status = http.StatusInternalServerError
			}
			counters[statusClass(status)].Inc()
		}()
		next.ServeHTTP(rec, r)
		done = true
	})
}

// metricsStatusRecorder remembers the status a handler answers with.
type metricsStatusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *metricsStatusRecorder) WriteHeader(status int) {
	if r.status == 0 {
		r.status = status
	}
	r.ResponseWriter.WriteHeader(status)
}

func (r *metricsStatusRecorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (r *metricsStatusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// replayRejected records a request refused because its jti was already
// used: kind is "assertion" for the jwt-bearer grant's assertion,
// "client_assertion" for a client authentication assertion (others count
// as "other").
func (m *metrics) replayRejected(kind string) {
	if m == nil {
		return
	}
	m.replays[labelIndex(metricReplayKinds[:], kind)].Inc()
}

// storeError records a failed store operation: op is "trust", "replay",
// "client", "token" or "ping" (others count as "other").
func (m *metrics) storeError(op string) {
	if m == nil {
		return
	}
	m.storeErrors[labelIndex(metricStoreOps[:], op)].Inc()
}

// rateLimited records a request refused by the rate limit named limit,
// "client" or "issuer" (others count as "other").
func (m *metrics) rateLimited(limit string) {
	if m == nil {
		return
	}
	m.rateLimits[labelIndex(metricLimits[:], limit)].Inc()
}

// remoteKeysFetched records a fetch attempt of a remote key set or
// discovery document, failed when err is not nil. Its signature is that
// of jwks.Config.OnFetch, so that the method value can be the hook; the
// URL is not recorded.
func (m *metrics) remoteKeysFetched(_ string, err error) {
	if m == nil {
		return
	}
	m.remoteFetches.Inc()
	if err != nil {
		m.remoteFailures.Inc()
	}
}

// remoteKeysCollector reports, at each scrape, how many remote documents
// the cache holds by kind and state, and how many usable keys their sets
// hold, all URLs together.
type remoteKeysCollector struct {
	remote    remoteStatus
	documents *prometheus.Desc
	keys      *prometheus.Desc
}

func newRemoteKeysCollector(remote remoteStatus) *remoteKeysCollector {
	return &remoteKeysCollector{
		remote: remote,
		documents: prometheus.NewDesc("jwtbearer_remote_keys_documents",
			`Remote key sets ("jwks") and discovery documents ("discovery") in the cache, by state: "ok", "stale" (past freshness, in use because refreshes fail) or "failing" (no usable document).`,
			[]string{"kind", "state"}, nil),
		keys: prometheus.NewDesc("jwtbearer_remote_keys_usable_keys",
			"Usable keys in the cached remote key sets, all sets together.",
			nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *remoteKeysCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.documents
	ch <- c.keys
}

// Collect implements prometheus.Collector. Every known kind and state is
// reported, zeros included, so that an alert on stale or failing sets has
// a series to watch; "other" only when it is not zero.
func (c *remoteKeysCollector) Collect(ch chan<- prometheus.Metric) {
	var counts [len(metricRemoteKinds)][len(metricRemoteStates)]int
	keys := 0
	if c.remote != nil {
		for _, st := range c.remote.Status() {
			counts[labelIndex(metricRemoteKinds[:], st.Kind)][labelIndex(metricRemoteStates[:], st.State)]++
			keys += st.Keys
		}
	}
	for k, kind := range metricRemoteKinds {
		for s, state := range metricRemoteStates {
			n := counts[k][s]
			if n == 0 && (kind == labelOther || state == labelOther) {
				continue
			}
			ch <- prometheus.MustNewConstMetric(c.documents, prometheus.GaugeValue, float64(n), kind, state)
		}
	}
	ch <- prometheus.MustNewConstMetric(c.keys, prometheus.GaugeValue, float64(keys))
}
