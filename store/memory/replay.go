package memory

import (
	"context"
	"math"
	"sync"
	"time"

	"github.com/ory/fosite"

	"github.com/jwtbearer/jwtbearer/store"
)

const (
	// jtiShards spreads the replay cache over independent locks, so that
	// concurrent token requests rarely wait for each other.
	jtiShards = 64
	// sweepBatch bounds the expired entries one call forgets. It is more
	// than the one entry a call adds, so a backlog drains while the cost of
	// any single call stays small.
	sweepBatch = 16
	// compactMin is the size under which a shard never bothers to give
	// memory back after a burst.
	compactMin = 1024
)

// jtiKey identifies a (namespace, issuer, jti) by the first 128 bits of a
// SHA-256 over an unambiguous encoding of them. A fixed-size key keeps an
// entry small (no string header, no separate allocation) whatever the
// length of the issuer and jti, which the sender chooses.
type jtiKey [16]byte

// jtiEntry is a heap element: a key and the expiry it was stored with.
type jtiEntry struct {
	until int64 // unix nanoseconds
	key   jtiKey
}

// jtiShard holds the keys of one shard. live maps a key to its expiry;
// expiry is a min-heap of the same entries by expiry. A heap element whose
// expiry no longer equals live[key] is stale (the key expired and was
// claimed again before being swept) and is skipped when popped.
type jtiShard struct {
	mu     sync.Mutex
	live   map[jtiKey]int64
	expiry []jtiEntry
	peak   int // largest len(live) since the map was last rebuilt
}

// jtiCache is a set of keys that each expire, sharded by key.
type jtiCache struct {
	shards [jtiShards]jtiShard
}

func (c *jtiCache) init() {
	for i := range c.shards {
		c.shards[i].live = make(map[jtiKey]int64)
	}
}

// claim records key until the instant until and reports whether it was not
// already recorded with an expiry at or after now.
func (c *jtiCache) claim(key jtiKey, until, now int64) bool {
	sh := &c.shards[key[0]%jtiShards]
	sh.mu.Lock()
	defer sh.mu.Unlock()

	sh.sweep(now)
	if exp, ok := sh.live[key]; ok && exp >= now {
		return false
	}
	if until < now {
		// Already expired: there is nothing to remember, and an entry
		// would only be swept again at once.
		delete(sh.live, key)
		return true
	}
	sh.live[key] = until
	sh.push(jtiEntry{until: until, key: key})
	sh.peak = max(sh.peak, len(sh.live))
	return true
}

// known reports whether key is recorded with an expiry at or after now.
func (c *jtiCache) known(key jtiKey, now int64) bool {
	sh := &c.shards[key[0]%jtiShards]
	sh.mu.Lock()
	defer sh.mu.Unlock()

	exp, ok := sh.live[key]
	return ok && exp >= now
}

// sweep forgets at most sweepBatch entries that expired before now, then
// gives memory back when a burst has drained.
func (sh *jtiShard) sweep(now int64) {
	for n := 0; n < sweepBatch && len(sh.expiry) > 0 && sh.expiry[0].until < now; n++ {
		e := sh.pop()
		if exp, ok := sh.live[e.key]; ok && exp == e.until {
			delete(sh.live, e.key)
		}
	}

	// Neither a map nor a slice shrinks by itself. After a burst, copy
	// them once they hold under a quarter of their peak; the copy costs
	// O(live), paid for by the three quarters that were swept first.
	if c := cap(sh.expiry); c > compactMin && len(sh.expiry) < c/4 {
		sh.expiry = append(make([]jtiEntry, 0, 2*len(sh.expiry)), sh.expiry...)
	}
	if sh.peak > compactMin && len(sh.live) < sh.peak/4 {
		live := make(map[jtiKey]int64, len(sh.live))
		for k, v := range sh.live {
			live[k] = v
		}
		sh.live = live
		sh.peak = len(live)
	}
}

// push and pop keep expiry a binary min-heap by until. They are written out
// rather than going through container/heap, whose interface{} arguments
// would allocate for every entry.
func (sh *jtiShard) push(e jtiEntry) {
	h := append(sh.expiry, e)
	i := len(h) - 1
	for i > 0 {
		parent := (i - 1) / 2
		if h[parent].until <= h[i].until {
			break
		}
		h[parent], h[i] = h[i], h[parent]
		i = parent
	}
	sh.expiry = h
}

func (sh *jtiShard) pop() jtiEntry {
	h := sh.expiry
	top := h[0]
	last := len(h) - 1
	h[0] = h[last]
	h = h[:last]
	i := 0
	for {
		smallest, l, r := i, 2*i+1, 2*i+2
		if l < len(h) && h[l].until < h[smallest].until {
			smallest = l
		}
		if r < len(h) && h[r].until < h[smallest].until {
			smallest = r
		}
		if smallest == i {
			break
		}
		h[i], h[smallest] = h[smallest], h[i]
		i = smallest
	}
	sh.expiry = h
	return top
}

// Namespaces of the key hash, shared with every backend.
const (
	nsAssertion = store.ReplayAssertion
	nsClient    = store.ReplayClientAssertion
)

// hashKey derives the key of (ns, issuer, jti): the first 128 bits of
// store.ReplayKey.
func hashKey(ns byte, issuer, jti string) jtiKey {
	sum := store.ReplayKey(ns, issuer, jti)
	var k jtiKey
	copy(k[:], sum[:])
	return k
}

// ClaimJTI implements store.ReplayGuard. Exactly one of any number of
// concurrent calls with the same issuer and jti wins, since the check and
// the write happen under the one lock of the key's shard.
//
// An until that has already passed protects nothing: the claim succeeds
// (unless an unexpired claim exists) and is forgotten at once, so a second
// such call succeeds too. The handler never asks for that, since it only
// claims jtis of assertions that have not expired.
func (s *Store) ClaimJTI(_ context.Context, issuer, jti string, until time.Time) (bool, error) {
	key := hashKey(nsAssertion, issuer, jti)
	return s.jtis.claim(key, unixNano(until), time.Now().UnixNano()), nil
}

// JTIUsed implements store.ReplayInspector.
func (s *Store) JTIUsed(_ context.Context, issuer, jti string) (bool, error) {
	return s.jtis.known(hashKey(nsAssertion, issuer, jti), time.Now().UnixNano()), nil
}

// ClientAssertionJWTValid implements fosite.ClientManager. It returns
// fosite.ErrJTIKnown when the client-assertion jti is known and unexpired.
func (s *Store) ClientAssertionJWTValid(_ context.Context, jti string) error {
	if s.clientJTIs.known(hashKey(nsClient, "", jti), time.Now().UnixNano()) {
		return fosite.ErrJTIKnown.WithDebug("The client assertion's jti was already used.")
	}
	return nil
}

// SetClientAssertionJWT implements fosite.ClientManager. fosite checks with
// ClientAssertionJWTValid first and then calls this; the insert itself is
// atomic too and returns fosite.ErrJTIKnown if another request got there
// in between, which closes fosite's check-then-set window.
func (s *Store) SetClientAssertionJWT(_ context.Context, jti string, exp time.Time) error {
	if !s.clientJTIs.claim(hashKey(nsClient, "", jti), unixNano(exp), time.Now().UnixNano()) {
		return fosite.ErrJTIKnown.WithDebug("The client assertion's jti was already used.")
	}
	return nil
}

// Bounds of the instants an int64 of unix nanoseconds can hold.
var (
	minTime = time.Unix(0, math.MinInt64)
	maxTime = time.Unix(0, math.MaxInt64)
)

// unixNano is t.UnixNano, clamped to the range an int64 holds. Without the
// clamp an expiry after the year 2262 would wrap around into the past and
// a jti would be forgotten at once.
func unixNano(t time.Time) int64 {
	switch {
	case t.Before(minTime):
		return math.MinInt64
	case t.After(maxTime):
		return math.MaxInt64
	}
	return t.UnixNano()
}
