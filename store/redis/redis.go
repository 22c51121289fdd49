package redis

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/jwtbearer/jwtbearer/store"
)

// Store is the Redis store. It is safe for concurrent use. Call Close when
// done with it.
type Store struct {
	client     goredis.UniversalClient
	ownsClient bool
	cfg        Config
	keys       keys
	logger     *slog.Logger

	// trust is the local copy of the trust relationships that TrustedKeys
	// reads; it is replaced whole by a reload, or patched in place by this
	// instance's own writes, both under swapMu. patched is the highest
	// version patched in since the current reload began. loadMu runs one
	// reload at a time.
	trust   atomic.Pointer[trustCache]
	swapMu  sync.Mutex
	patched int64
	loadMu  sync.Mutex
	// notify wakes the refresher; force asks it for a full reload even if
	// the version did not change (after a pub/sub reconnect, which may
	// follow a Redis restart that reset the version).
	notify chan struct{}
	force  atomic.Bool
	// reloadFailing makes the refresher log the first failure of an outage
	// and the recovery, not every failed poll in between.
	reloadFailing atomic.Bool

	pubsub    *goredis.PubSub
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
}

// Open connects to Redis as cfg says (single node, Sentinel or Cluster,
// through one goredis.UniversalClient), loads the trust relationships into
// the local cache and starts the invalidation listener. It fails, with an
// error wrapping store.ErrUnavailable, if Redis cannot be reached within
// cfg's dial timeout. A nil logger discards.
func Open(ctx context.Context, cfg Config, logger *slog.Logger) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	client := goredis.NewUniversalClient(cfg.options())
	s, err := newStore(ctx, client, cfg, logger, true)
	if err != nil {
		_ = client.Close()
		return nil, err
	}
	return s, nil
}

// New is Open with a client the caller made; cfg's connection fields
// (Addrs, MasterName, Username, Password, DB, DialTimeout, Timeout) are
// ignored, the client's own options apply. Close does not close client.
func New(ctx context.Context, client goredis.UniversalClient, cfg Config, logger *slog.Logger) (*Store, error) {
	if client == nil {
		return nil, errors.New("redis: New: client is nil")
	}
	if err := errors.Join(cfg.validateCommon()...); err != nil {
		return nil, err
	}
	return newStore(ctx, client, cfg.withDefaults(), logger, false)
}

func newStore(ctx context.Context, client goredis.UniversalClient, cfg Config, logger *slog.Logger, owns bool) (*Store, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &Store{
		client:     client,
		ownsClient: owns,
		cfg:        cfg,
		keys:       newKeys(cfg.KeyPrefix),
		logger:     logger,
		notify:     make(chan struct{}, 1),
	}

	openCtx, cancel := context.WithTimeout(ctx, cfg.DialTimeout+cfg.Timeout)
	defer cancel()

	// Subscribe before the first load, so that no change made after the
	// load goes unnoticed. The subscription's confirmation also triggers a
	// reload, which closes the gap between the two.
	s.pubsub = client.Subscribe(openCtx, s.keys.trustChanged)
	if err := s.reload(openCtx, true); err != nil {
		_ = s.pubsub.Close()
		return nil, fmt.Errorf("redis: open: %w", err)
	}

	bg, stop := context.WithCancel(context.Background())
	s.cancel = stop
	s.wg.Add(2)
	go s.listen(bg)
	go s.refresher(bg)
	return s, nil
}

// Close stops the listener and the refresher and waits for them, and
// closes the client if Open made it. It is safe to call more than once.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.cancel()
		_ = s.pubsub.Close() // unblocks the listener's read
		s.wg.Wait()
		if s.ownsClient {
			s.closeErr = s.client.Close()
		}
	})
	return s.closeErr
}

// Ping reports whether Redis answers, for a readiness probe. Its error
// wraps store.ErrUnavailable.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.client.Ping(ctx).Err(); err != nil {
		return unavailable("ping", err)
	}
	return nil
}

// unavailable wraps a Redis failure so that errors.Is(err,
// store.ErrUnavailable) holds and the message names the operation.
func unavailable(op string, err error) error {
	return fmt.Errorf("redis: %s: %w: %w", op, store.ErrUnavailable, err)
}

// keys derives every key and channel name from the prefix. See the package
// documentation for the layout.
type keys struct {
	prefix       string
	trust        string // hash: trust ID → JSON of store.Trust
	trustVersion string // string: counter bumped by every trust write
	trustChanged string // pub/sub channel: the new version
	clients      string // hash: client ID → JSON of fosite.DefaultClient
}

func newKeys(prefix string) keys {
	return keys{
		prefix: prefix,
		// The hash tag puts the relationships and their version in one
		// slot, so that one MULTI or script can read or change both.
		trust:        prefix + "{trust}",
		trustVersion: prefix + "{trust}:version",
		trustChanged: prefix + "trust:changed",
		clients:      prefix + "clients",
	}
}

// Namespaces of jtiHash, shared with the memory store: an assertion jti
// and a client-assertion jti that happen to be equal do not collide.
const (
	nsAssertion = store.ReplayAssertion
	nsClient    = store.ReplayClientAssertion
)

// jtiHash is the first 128 bits of store.ReplayKey, in hex: a key of fixed
// size whatever the length of what the sender chose, and one that reveals
// neither issuer nor jti.
func jtiHash(ns byte, issuer, jti string) string {
	sum := store.ReplayKey(ns, issuer, jti)
	return hex.EncodeToString(sum[:16])
}

// idHash is the fixed-size name of a token signature or request ID: 128
// bits of SHA-256, in hex (32 characters).
func idHash(id string) string {
	sum := sha256.Sum256([]byte(id))
	return hex.EncodeToString(sum[:16])
}

func (k keys) jti(issuer, jti string) string {
	return k.prefix + "jti:" + jtiHash(nsAssertion, issuer, jti)
}

func (k keys) clientJTI(jti string) string {
	return k.prefix + "cajti:" + jtiHash(nsClient, "", jti)
}

// Bounds of the expiry instants sent to Redis, in unix milliseconds: Redis
// refuses expiries that are not positive, and the year 9999 is as good as
// never.
const (
	minExpiryMs int64 = 1
	maxExpiryMs int64 = 253402300799999 // 9999-12-31T23:59:59.999Z
)

// expiryMs is t in unix milliseconds, rounded up so that nothing expires
// before t, and clamped to what Redis accepts.
func expiryMs(t time.Time) int64 {
	switch {
	case t.Before(time.UnixMilli(minExpiryMs)):
		return minExpiryMs
	case t.After(time.UnixMilli(maxExpiryMs)):
		return maxExpiryMs
	}
	ms := t.UnixMilli()
	if time.UnixMilli(ms).Before(t) {
		ms++
	}
	return ms
}
