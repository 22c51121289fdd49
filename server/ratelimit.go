package server

import (
	"context"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/jwtbearer/jwtbearer/handler"
)

// RateLimitsConfig limits how often one client, or one assertion issuer,
// may be served. Both are off unless a rate is set.
type RateLimitsConfig struct {
	// Client counts the requests of each authenticated client at /token,
	// /introspect and /revoke. Only requests whose client authentication
	// succeeded count, so that nobody can spend another client's
	// allowance with wrong credentials.
	Client RateLimit `yaml:"client"`
	// Issuer counts the jwt-bearer assertions of each trusted issuer, once
	// the signature verified (so again only the issuer spends its own
	// allowance), and before the jti is claimed (so a refused assertion
	// may be sent again).
	Issuer RateLimit `yaml:"issuer"`
}

// RateLimit is a token bucket: Rate requests per second on average, in
// bursts of up to Burst.
type RateLimit struct {
	// Rate is the sustained rate in requests per second; 0 means no limit.
	Rate float64 `yaml:"rate"`
	// Burst is the bucket's size; 0 means the rate rounded up (at least 1).
	Burst int `yaml:"burst"`
}

func (l RateLimit) check(name string, check func(bool, string, ...any)) {
	check(l.Rate < 0 || math.IsNaN(l.Rate) || math.IsInf(l.Rate, 0), "rate_limits.%s.rate: must be a number of requests per second, 0 or more", name)
	check(l.Burst < 0 || l.Burst > 1_000_000, "rate_limits.%s.burst: must be between 0 and 1000000", name)
	check(l.Rate == 0 && l.Burst != 0, "rate_limits.%s.burst: set without a rate", name)
}

// maxLimitedKeys bounds the buckets kept per kind. The keys are proven
// identities (configured clients, trusted issuers), so the bound is only
// reached with that many of them; the buckets then start over full.
const maxLimitedKeys = 100_000

// limiter implements handler.Limiter with one token bucket per client and
// per issuer. A bucket is found without a lock (sync.Map); each bucket has
// its own.
type limiter struct {
	client, issuer *keyedLimiter
	now            func() time.Time
	// refused is told about every refusal (for the metrics); may be nil.
	refused func(kind handler.LimitKind)
}

type keyedLimiter struct {
	limit   rate.Limit
	burst   int
	buckets sync.Map // string → *rate.Limiter
	n       atomic.Int64
}

// newLimiter returns nil when no limit is configured.
func newLimiter(c RateLimitsConfig, now func() time.Time) *limiter {
	if c.Client.Rate == 0 && c.Issuer.Rate == 0 {
		return nil
	}
	if now == nil {
		now = time.Now
	}
	return &limiter{client: newKeyedLimiter(c.Client), issuer: newKeyedLimiter(c.Issuer), now: now}
}

func newKeyedLimiter(l RateLimit) *keyedLimiter {
	if l.Rate == 0 {
		return nil
	}
	burst := l.Burst
	if burst == 0 {
		burst = max(1, int(math.Ceil(l.Rate)))
	}
	return &keyedLimiter{limit: rate.Limit(l.Rate), burst: burst}
}

// Allow implements handler.Limiter.
func (l *limiter) Allow(_ context.Context, kind handler.LimitKind, key string) (bool, time.Duration) {
	if l == nil {
		return true, 0
	}
	k := l.client
	if kind == handler.LimitIssuer {
		k = l.issuer
	}
	if k == nil {
		return true, 0
	}
	ok, retry := k.allow(key, l.now())
	if !ok && l.refused != nil {
		l.refused(kind)
	}
	return ok, retry
}

func (k *keyedLimiter) allow(key string, now time.Time) (bool, time.Duration) {
	v, ok := k.buckets.Load(key)
	if !ok {
		if k.n.Load() >= maxLimitedKeys {
			k.buckets.Clear()
			k.n.Store(0)
		}
		var loaded bool
		v, loaded = k.buckets.LoadOrStore(key, rate.NewLimiter(k.limit, k.burst))
		if !loaded {
			k.n.Add(1)
		}
	}
	r := v.(*rate.Limiter).ReserveN(now, 1)
	if !r.OK() {
		return false, time.Second
	}
	if d := r.DelayFrom(now); d > 0 {
		// Refused: give the token back, so that a client that keeps
		// asking too fast is not pushed ever further into the future.
		r.CancelAt(now)
		return false, d
	}
	return true, 0
}
