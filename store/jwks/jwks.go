// Package jwks fetches and caches the JSON Web Key Sets (RFC 7517 §5) that
// issuers publish at a jwks_uri, named directly or found through OpenID
// Connect Discovery, so that the token endpoint can verify assertions with
// keys the issuer rotates on its own schedule.
//
// The cache is built to sit on the request path of a token endpoint:
//
//   - Every fetch is bounded in time (Config.Timeout) and size
//     (Config.MaxBytes), refuses redirects, and is made only to URLs that pass
//     store.CheckRemoteURL. Only operator-configured URLs are ever fetched,
//     never URLs carried by an assertion.
//   - A key set stays fresh for the response's Cache-Control max-age, bounded
//     by Config.MinTTL and Config.MaxTTL, less a random jitter of up to 10% so
//     that a fleet of servers does not refetch in lockstep.
//   - An assertion naming an unknown kid triggers a refetch at once (the
//     issuer may have rotated its keys), but at most once per
//     Config.RefetchInterval per URL, so that random kids cannot turn the
//     token endpoint into an amplifier against the issuer.
//   - When an issuer is down, the last good set is still used for
//     Config.MaxStale past its freshness, and retries happen at most once per
//     RefetchInterval.
//   - At most one fetch per URL is in flight. A lookup that the cached set
//     answers (it is usable and holds the kid asked for) never waits for
//     it, so that a fetch triggered by an unknown kid, or one the issuer
//     slows down, does not stall the lookups of known kids; only lookups
//     that the cached set cannot answer wait for the fetch.
//   - Entries not used for MaxTTL+MaxStale are evicted (their set could not
//     be used anyway) when a fetch completes, and a key set that a refreshed
//     discovery document no longer names is dropped at once, so that an
//     issuer naming a new jwks_uri on every refresh cannot grow the cache.
//   - A set keeps at most 100 usable keys (the first ones in the document),
//     so that an assertion without a kid tries a bounded number of keys.
//
// There are no background goroutines: fetches happen on the goroutine of the
// lookup that needs them, so a Cache needs no Close and leaks nothing. The
// price is that the lookup which starts a fetch waits for it (at most
// Config.Timeout), even when its own context ends first: the fetch is shared
// with every other lookup waiting on it, so one caller giving up must not
// fail the others.
//
// Keys in a fetched set are checked one by one with store.NormalizeKey. A key
// that does not qualify (unknown type or algorithm, symmetric, private, too
// weak, too large, meant for encryption) is skipped and logged, never fatal:
// issuers publish keys for many consumers, and one odd key must not lock out
// the others. (NormalizeKey also refuses RSA moduli above store.MaxRSABits,
// 8192 bits, which would only make each verification slower.)
//
// Errors, and so Status.LastError, never quote the response body: a URL
// that does not serve what it should may serve something secret.
package jwks

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v3"

	"github.com/jwtbearer/jwtbearer/store"
)

// ErrUnavailable is wrapped by every error of Keys and DiscoveredKeys that
// means "no usable key set": the fetch failed and nothing is cached, or the
// last good set is older than its freshness plus Config.MaxStale. The rest of
// the message says why (status code, timeout, too large, bad JSON, issuer
// mismatch...); it never quotes the response body. The token endpoint should
// answer it with temporarily_unavailable: the condition is expected to pass.
var ErrUnavailable = errors.New("jwks: key set unavailable")

// Config bounds every fetch and the cache. Zero (or negative) fields take
// the defaults.
type Config struct {
	// Timeout bounds one fetch, from connecting to reading the last byte.
	// Default 5s.
	Timeout time.Duration
	// MaxBytes is the largest response body accepted. Default 1 MiB.
	MaxBytes int64
	// DefaultTTL is how long a response stays fresh when it has no usable
	// Cache-Control max-age. Default 15m. It is kept within [MinTTL, MaxTTL].
	DefaultTTL time.Duration
	// MinTTL is the lower bound on max-age, and the freshness of responses
	// marked no-cache or no-store: refetching on every assertion would let
	// the issuer's cache headers decide our load on it. Default 1m.
	MinTTL time.Duration
	// MaxTTL is the upper bound on max-age, so that a removed key stops
	// being trusted within a bounded time. Default 24h. A MaxTTL below
	// MinTTL is raised to MinTTL.
	MaxTTL time.Duration
	// RefetchInterval is the least time between two fetch attempts of one
	// URL when a fetch is wanted for an unknown kid, or after a failure.
	// Default 30s.
	RefetchInterval time.Duration
	// MaxStale is how long after its freshness ends the last good set stays
	// usable while refreshes fail: an issuer outage shorter than this does
	// not stop token issuance. Default 1h.
	MaxStale time.Duration
	// HTTPClient makes the requests. When nil, a dedicated client is used:
	// a clone of http.DefaultTransport (so it honours HTTP_PROXY and
	// friends, as requests to issuers from a corporate network need) with
	// keep-alives off, because fetches are minutes apart and idle
	// connections would only hold goroutines and sockets. Redirects are
	// refused either way: the cache sets CheckRedirect on a shallow copy of
	// the client given, which itself is not modified.
	HTTPClient *http.Client
	// Logger receives one record per fetch and per skipped key. When nil,
	// nothing is logged.
	Logger *slog.Logger
	// Now is the clock. When nil, time.Now. Tests inject a fake clock.
	Now func() time.Time
	// OnFetch, when set, is called after every fetch attempt, with the URL
	// and the error (nil on success), on the goroutine that fetched and
	// without any lock held. It is meant for metrics.
	OnFetch func(url string, err error)
}

// Defaults, for the zero fields of Config.
const (
	defaultTimeout         = 5 * time.Second
	defaultMaxBytes        = 1 << 20
	defaultDefaultTTL      = 15 * time.Minute
	defaultMinTTL          = time.Minute
	defaultMaxTTL          = 24 * time.Hour
	defaultRefetchInterval = 30 * time.Second
	defaultMaxStale        = time.Hour
)

// Kinds of cached documents, as reported by Status.
const (
	kindJWKS      = "jwks"
	kindDiscovery = "discovery"
)

// States reported by Status.
const (
	stateOK      = "ok"
	stateStale   = "stale"
	stateFailing = "failing"
)

// Cache fetches key sets and discovery documents on demand and keeps them
// for as long as they are fresh, and longer while their issuer is down. It
// is safe for concurrent use.
//
// Cached URLs come from the operator's configuration, not from requests,
// except the jwks_uri of discovery documents, which the issuer chooses and
// may change at every refresh. So that the cache stays small, whenever a
// fetch completes, entries that no lookup used for MaxTTL+MaxStale (and that
// have no fetch in flight) are dropped; and when a refreshed discovery
// document names another jwks_uri, the key set of the previous one is
// dropped at once, unless another cached discovery document names it. (If
// the operator also configured that URL directly, its next lookup fetches
// it again.)
type Cache struct {
	cfg    Config
	client *http.Client
	log    *slog.Logger
	now    func() time.Time

	mu      sync.Mutex
	entries map[entryKey]*entry
}

// entryKey identifies a cached document. A discovery document is also keyed
// by the issuer it must name: "https://a" and "https://a/" share a discovery
// URL but expect different "issuer" members.
type entryKey struct {
	kind   string
	url    string
	issuer string // discovery only
}

// entry is the state of one URL. Fields are guarded by Cache.mu.
type entry struct {
	good        *snapshot     // last good document; nil until a fetch succeeds
	lastAttempt time.Time     // start of the last fetch attempt
	lastErr     error         // error of the last attempt; nil if it succeeded
	inflight    chan struct{} // closed when the fetch in progress ends; nil if none
	lastUsed    time.Time     // time of the last lookup of this entry, for eviction
}

// snapshot is one successfully fetched document. It is never modified once
// stored, so lookups may read it after releasing the lock.
type snapshot struct {
	keys        []jose.JSONWebKey // jwks: the usable keys
	jwksURI     string            // discovery: the key set's URL
	fetchedAt   time.Time
	freshUntil  time.Time
	usableUntil time.Time
}

// Status describes one cached URL, for logs and health checks.
type Status struct {
	URL string `json:"url"`
	// Kind is "jwks" or "discovery".
	Kind string `json:"kind"`
	// State is "ok" when the last good document is fresh or the last fetch
	// attempt succeeded (an idle URL is refreshed by its next lookup);
	// "stale" when it is past its freshness and still in use because
	// refreshes fail; "failing" when there is no usable document.
	State string `json:"state"`
	// Keys counts the usable keys in the last good set (jwks only).
	Keys        int       `json:"keys,omitempty"`
	LastSuccess time.Time `json:"last_success,omitzero"`
	LastError   string    `json:"last_error,omitempty"`
	UsableUntil time.Time `json:"usable_until,omitzero"`
}

// New returns an empty cache. It makes no request until the first lookup.
func New(cfg Config) *Cache {
	cfg.Timeout = orDefault(cfg.Timeout, defaultTimeout)
	cfg.MaxBytes = orDefault(cfg.MaxBytes, defaultMaxBytes)
	cfg.MinTTL = orDefault(cfg.MinTTL, defaultMinTTL)
	cfg.MaxTTL = max(orDefault(cfg.MaxTTL, defaultMaxTTL), cfg.MinTTL)
	cfg.DefaultTTL = min(max(orDefault(cfg.DefaultTTL, defaultDefaultTTL), cfg.MinTTL), cfg.MaxTTL)
	cfg.RefetchInterval = orDefault(cfg.RefetchInterval, defaultRefetchInterval)
	cfg.MaxStale = orDefault(cfg.MaxStale, defaultMaxStale)

	c := &Cache{cfg: cfg, log: cfg.Logger, now: cfg.Now, entries: make(map[entryKey]*entry)}
	if cfg.HTTPClient != nil {
		client := *cfg.HTTPClient
		client.CheckRedirect = refuseRedirects
		c.client = &client
	} else {
		c.client = defaultClient()
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if c.now == nil {
		c.now = time.Now
	}
	return c
}

func orDefault[T time.Duration | int64](v, def T) T {
	if v <= 0 {
		return def
	}
	return v
}

// Keys returns the usable keys of the key set at jwksURL whose KeyID equals
// kid, or all of them when kid is "". No match is an empty result and a nil
// error. The result is the caller's own copy.
//
// An error wraps ErrUnavailable when there is no usable key set. A URL
// refused by store.CheckRemoteURL is a configuration error and does not
// wrap it; neither does the caller's context ending before the lookup or
// while it waits for another lookup's fetch.
func (c *Cache) Keys(ctx context.Context, jwksURL, kid string) ([]jose.JSONWebKey, error) {
	if err := store.CheckRemoteURL(jwksURL); err != nil {
		return nil, fmt.Errorf("jwks: %w", err)
	}
	return c.keys(ctx, jwksURL, kid, c.now())
}

func (c *Cache) keys(ctx context.Context, jwksURL, kid string, now time.Time) ([]jose.JSONWebKey, error) {
	var hasKid func(*snapshot) bool
	if kid != "" {
		hasKid = func(s *snapshot) bool {
			return slices.ContainsFunc(s.keys, func(k jose.JSONWebKey) bool { return k.KeyID == kid })
		}
	}
	s, err := c.lookup(ctx, entryKey{kind: kindJWKS, url: jwksURL}, now, hasKid, c.parseJWKS)
	if err != nil {
		return nil, err
	}
	var out []jose.JSONWebKey
	for _, k := range s.keys {
		if kid == "" || k.KeyID == kid {
			out = append(out, k)
		}
	}
	return out, nil
}

// parseFunc turns a fetched body into a snapshot (without its times), with
// attributes for the success log record.
type parseFunc func(url string, body []byte) (*snapshot, []any, error)

// lookup returns the usable document for k, fetching it first when it is
// missing or stale, or when has (if not nil) reports that the fresh
// document lacks what the caller needs and the last attempt is at least
// RefetchInterval old. now is the lookup's one reading of the clock.
//
// While a fetch of k is in flight, a usable document that has what the
// caller needs is the answer at once, fresh or not: only lookups it cannot
// answer wait for the fetch. Otherwise an attacker sending an unknown kid
// once per RefetchInterval, to an issuer slow to answer, would stall every
// lookup of that issuer's known kids for up to Timeout.
func (c *Cache) lookup(ctx context.Context, k entryKey, now time.Time, has func(*snapshot) bool, parse parseFunc) (*snapshot, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	c.mu.Lock()
	e := c.entries[k]
	if e == nil {
		e = &entry{}
		c.entries[k] = e
	}
	if now.After(e.lastUsed) {
		e.lastUsed = now
	}
	if ch := e.inflight; ch != nil {
		if g := e.good; g != nil && now.Before(g.usableUntil) && (has == nil || has(g)) {
			c.mu.Unlock()
			return g, nil
		}
		c.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, fmt.Errorf("jwks: waiting for %s: %w", k.url, ctx.Err())
		}
		// The fetch just made is the answer. Whatever it brought, a second
		// one now would learn nothing new and defeat RefetchInterval.
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.usable(k, e, now)
	}
	if !c.needFetch(e, now, has) {
		defer c.mu.Unlock()
		return c.usable(k, e, now)
	}
	ch := make(chan struct{})
	e.inflight = ch
	c.mu.Unlock()

	return c.refresh(ctx, k, e, ch, now, parse)
}

// needFetch applies the refetch rules to e. c.mu is held.
func (c *Cache) needFetch(e *entry, now time.Time, has func(*snapshot) bool) bool {
	sinceAttempt := now.Sub(e.lastAttempt)
	if e.good == nil || !now.Before(e.good.freshUntil) {
		// Missing or stale: refresh, unless the last attempt failed
		// recently; a failing issuer is not hammered.
		return e.lastErr == nil || sinceAttempt >= c.cfg.RefetchInterval
	}
	// Fresh but lacking (an unknown kid): the issuer may have rotated.
	return has != nil && !has(e.good) && sinceAttempt >= c.cfg.RefetchInterval
}

// refresh fetches k, records the outcome in e, wakes the lookups waiting on
// ch, and answers from the updated entry. It runs without c.mu held.
func (c *Cache) refresh(ctx context.Context, k entryKey, e *entry, ch chan struct{}, now time.Time, parse parseFunc) (*snapshot, error) {
	recorded := false
	defer func() {
		// Only when parsing panicked: release the waiters rather than leave
		// them blocked on this URL forever, and let the panic go on.
		if !recorded {
			c.mu.Lock()
			e.lastAttempt, e.lastErr, e.inflight = now, errors.New("fetch did not complete"), nil
			close(ch)
			c.mu.Unlock()
		}
	}()

	snap, attrs, err := c.fetch(ctx, k, now, parse)

	c.mu.Lock()
	old := e.good
	e.lastAttempt, e.lastErr, e.inflight = now, err, nil
	if err == nil {
		e.good = snap
	}
	close(ch)
	recorded = true
	good := e.good
	answer, answerErr := c.usable(k, e, now)
	var dropped []evicted
	if err == nil && k.kind == kindDiscovery && old != nil && old.jwksURI != snap.jwksURI {
		dropped = c.dropUnnamed(old.jwksURI)
	}
	dropped = append(dropped, c.evictIdle(now)...)
	c.mu.Unlock()

	for _, d := range dropped {
		c.log.Info("jwks: entry evicted", "kind", d.key.kind, "url", d.key.url, "reason", d.reason)
	}

	if err != nil {
		attrs := []any{"kind", k.kind, "url", k.url, "error", err.Error(), "stale_in_use", answerErr == nil}
		if good != nil {
			attrs = append(attrs, "usable_until", good.usableUntil)
		}
		c.log.Warn("jwks: fetch failed", attrs...)
	} else {
		c.log.Info("jwks: fetched", append([]any{"kind", k.kind, "url", k.url}, append(attrs,
			"ttl", snap.freshUntil.Sub(snap.fetchedAt))...)...)
	}
	if c.cfg.OnFetch != nil {
		c.cfg.OnFetch(k.url, err)
	}
	return answer, answerErr
}

// evicted is an entry dropped from the cache, for the log.
type evicted struct {
	key    entryKey
	reason string
}

// dropUnnamed drops the key set at jwksURI, which a refreshed discovery
// document no longer names, unless another cached discovery document still
// names it. An entry with a fetch in flight is dropped too: the lookups
// waiting on it keep their pointer to it and get their answer. c.mu is held.
func (c *Cache) dropUnnamed(jwksURI string) []evicted {
	for k, e := range c.entries {
		if k.kind == kindDiscovery && e.good != nil && e.good.jwksURI == jwksURI {
			return nil
		}
	}
	k := entryKey{kind: kindJWKS, url: jwksURI}
	if _, ok := c.entries[k]; !ok {
		return nil
	}
	delete(c.entries, k)
	return []evicted{{k, "no discovery document names it any more"}}
}

// evictIdle drops the entries that no lookup used for longer than
// MaxTTL+MaxStale, the longest a document stays usable, and that have no
// fetch in flight. Entries are few, so a scan per fetch is cheap. c.mu is
// held.
func (c *Cache) evictIdle(now time.Time) []evicted {
	idle := c.cfg.MaxTTL + c.cfg.MaxStale
	if idle < 0 { // overflow
		idle = math.MaxInt64
	}
	var out []evicted
	for k, e := range c.entries {
		if e.inflight == nil && now.Sub(e.lastUsed) > idle {
			delete(c.entries, k)
			out = append(out, evicted{k, "unused for longer than MaxTTL+MaxStale"})
		}
	}
	return out
}

// fetch gets and parses k, and dates the result.
func (c *Cache) fetch(ctx context.Context, k entryKey, now time.Time, parse parseFunc) (*snapshot, []any, error) {
	accept := "application/jwk-set+json, application/json"
	if k.kind == kindDiscovery {
		accept = "application/json"
	}
	body, header, err := c.get(ctx, k.url, accept)
	if err != nil {
		return nil, nil, err
	}
	s, attrs, err := parse(k.url, body)
	if err != nil {
		return nil, nil, err
	}
	s.fetchedAt = now
	s.freshUntil = now.Add(jitter(c.freshness(header)))
	s.usableUntil = s.freshUntil.Add(c.cfg.MaxStale)
	return s, attrs, nil
}

// usable returns e's last good document if it is still usable at now, or an
// error wrapping ErrUnavailable that says why not. c.mu is held.
func (c *Cache) usable(k entryKey, e *entry, now time.Time) (*snapshot, error) {
	good, lastErr := e.good, e.lastErr
	what := "key set"
	if k.kind == kindDiscovery {
		what = "discovery document"
	}
	if lastErr == nil {
		lastErr = errors.New("no " + what + " fetched yet")
	}
	switch {
	case good == nil:
		return nil, fmt.Errorf("%w: %s %s: %w", ErrUnavailable, what, k.url, lastErr)
	case !now.Before(good.usableUntil):
		return nil, fmt.Errorf("%w: %s %s: last good %s from %s is older than the staleness bound: %w",
			ErrUnavailable, what, k.url, what, good.fetchedAt.UTC().Format(time.RFC3339), lastErr)
	}
	return good, nil
}

// Status reports every cached URL, sorted by URL, for logs and health
// checks. A URL whose first fetch is still in flight is not reported yet.
func (c *Cache) Status() []Status {
	now := c.now()
	c.mu.Lock()
	out := make([]Status, 0, len(c.entries))
	for k, e := range c.entries {
		if e.good == nil && e.lastAttempt.IsZero() {
			continue
		}
		s := Status{URL: k.url, Kind: k.kind, State: stateFailing}
		if e.lastErr != nil {
			s.LastError = e.lastErr.Error()
		}
		if g := e.good; g != nil {
			s.LastSuccess = g.fetchedAt
			s.UsableUntil = g.usableUntil
			if k.kind == kindJWKS {
				s.Keys = len(g.keys)
			}
			switch {
			case now.Before(g.freshUntil) || e.lastErr == nil:
				s.State = stateOK
			case now.Before(g.usableUntil):
				s.State = stateStale
			}
		}
		out = append(out, s)
	}
	c.mu.Unlock()
	slices.SortFunc(out, func(a, b Status) int {
		return cmp.Or(strings.Compare(a.URL, b.URL), strings.Compare(a.Kind, b.Kind))
	})
	return out
}
