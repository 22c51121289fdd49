package redis

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"strconv"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/jwtbearer/jwtbearer/store"
	"github.com/jwtbearer/jwtbearer/store/memory"
)

// trustCache is one loaded copy of the trust relationships: an in-memory
// store with the memory backend's O(1) key index, and the version of the
// Redis data it holds. A reload builds a new one and swaps the pointer;
// this instance's own writes patch the current one in place.
type trustCache struct {
	version int64
	store   *memory.Store
}

// Each script changes the relationships and bumps their version in one
// step; the hash tag keeps both keys in one Cluster slot. It returns the
// previous version (0 when there was none) and the new one, or {0, -1}
// when nothing changed.
//
// The new version is one more than the last, but at least Redis's clock in
// microseconds (TIME), so that it never goes backwards: after a FLUSHALL,
// a failover to a replica that missed writes, or a restore from an older
// backup, the next version is still larger than every one issued before
// (unless more than a million writes a second came before, or the clock
// of Redis went back), and no instance mistakes the new relationships for
// the ones it cached under the same number.
const bumpVersion = `
local prev = redis.call('GET', KEYS[2])
local v = redis.call('INCR', KEYS[2])
local t = redis.call('TIME')
local now = t[1] .. string.format('%06d', tonumber(t[2]))
if v < tonumber(now) then
  redis.call('SET', KEYS[2], now)
  v = tonumber(now)
end
return {tonumber(prev) or 0, v}`

var (
	createTrustScript = goredis.NewScript(`
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 0 then
  return {0, -1}
end` + bumpVersion)

	// updateTrustScript replaces the relationship in place (HSET over the
	// existing field), so that no reader of the hash, on any instance, ever
	// finds it missing.
	updateTrustScript = goredis.NewScript(`
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then
  return {0, -1}
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])` + bumpVersion)

	// syncTrustScript makes the fields starting with ARGV[1] be exactly
	// the (id, record) pairs that follow, in one step, bumping the version
	// only when something changed.
	syncTrustScript = goredis.NewScript(`
local prefix = ARGV[1]
local want = {}
for i = 2, #ARGV, 2 do
  want[ARGV[i]] = ARGV[i + 1]
end
local changed = false
local all = redis.call('HGETALL', KEYS[1])
local have = {}
for i = 1, #all, 2 do
  local id = all[i]
  if string.sub(id, 1, #prefix) == prefix then
    have[id] = all[i + 1]
    if want[id] == nil then
      redis.call('HDEL', KEYS[1], id)
      changed = true
    end
  end
end
for id, raw in pairs(want) do
  if have[id] ~= raw then
    redis.call('HSET', KEYS[1], id, raw)
    changed = true
  end
end
if not changed then
  return {0, -1}
end` + bumpVersion)

	deleteTrustScript = goredis.NewScript(`
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then
  return {0, -1}
end` + bumpVersion)
)

// runTrustScript runs one of the scripts above and returns the versions
// it reports.
func (s *Store) runTrustScript(ctx context.Context, script *goredis.Script, args ...any) (versions, error) {
	res, err := script.Run(ctx, s.client, []string{s.keys.trust, s.keys.trustVersion}, args...).Int64Slice()
	if err != nil {
		return versions{}, err
	}
	if len(res) != 2 {
		return versions{}, fmt.Errorf("unexpected reply %v", res)
	}
	return versions{prev: res[0], cur: res[1]}, nil
}

// versions are those of a trust write: the one it replaced and its own.
type versions struct{ prev, cur int64 }

// TrustedKeys implements store.KeyResolver from the local cache, with the
// memory store's two map lookups: no round trip, and the cost does not
// depend on the number of relationships. While Redis is unreachable it
// keeps answering from the last relationships loaded.
func (s *Store) TrustedKeys(ctx context.Context, issuer, subject, kid string) ([]store.TrustedKey, error) {
	return s.trust.Load().store.TrustedKeys(ctx, issuer, subject, kid)
}

// CreateTrust implements store.TrustStore. It validates and normalises t
// (store.NormalizeTrust), stores it and bumps the version in one script,
// publishes the new version to the other instances, and updates this
// instance's cache before returning.
func (s *Store) CreateTrust(ctx context.Context, t store.Trust) (*store.Trust, error) {
	if err := store.NormalizeTrust(&t); err != nil {
		return nil, err
	}
	if t.ID == "" {
		t.ID = newID()
	}
	raw, err := json.Marshal(&t)
	if err != nil {
		return nil, fmt.Errorf("redis: trust %q: %w", t.ID, err)
	}
	v, err := s.runTrustScript(ctx, createTrustScript, t.ID, raw)
	if err != nil {
		return nil, unavailable("create trust", err)
	}
	if v.cur < 0 {
		return nil, fmt.Errorf("redis: trust %q: %w", t.ID, store.ErrAlreadyExists)
	}
	stored := s.applyCreate(ctx, v, t)
	s.publish(ctx, v.cur)
	return stored, nil
}

// applyCreate adds t, which Redis stored as version v.cur, to the local
// cache (see applyLocal), and returns the cache's copy, or &t when the
// cache already reflected it.
func (s *Store) applyCreate(ctx context.Context, v versions, t store.Trust) *store.Trust {
	stored := &t
	s.applyLocal(v, func(cache *memory.Store) {
		// The cache may hold it already, from a reload that ran after
		// the script; either copy is the same relationship.
		if c, err := cache.CreateTrust(context.WithoutCancel(ctx), t); err == nil {
			stored = c
		}
	})
	return stored
}

// UpdateTrust implements store.TrustStore. It validates and normalises t
// as CreateTrust does, replaces the stored relationship and bumps the
// version in one script (ErrNotFound when there is none), updates this
// instance's cache before returning and publishes the new version to the
// other instances, which reload within Config.TrustRefresh. Every instance
// serves the old version until it serves the new one: the relationship is
// replaced, never deleted and created again.
func (s *Store) UpdateTrust(ctx context.Context, t store.Trust) (*store.Trust, error) {
	if t.ID == "" {
		return nil, fmt.Errorf("%w: id: must not be empty to update a relationship", store.ErrInvalid)
	}
	if err := store.NormalizeTrust(&t); err != nil {
		return nil, err
	}
	raw, err := json.Marshal(&t)
	if err != nil {
		return nil, fmt.Errorf("redis: trust %q: %w", t.ID, err)
	}
	v, err := s.runTrustScript(ctx, updateTrustScript, t.ID, raw)
	if err != nil {
		return nil, unavailable("update trust", err)
	}
	if v.cur < 0 {
		return nil, fmt.Errorf("redis: trust %q: %w", t.ID, store.ErrNotFound)
	}
	stored := s.applyUpdate(ctx, v, t)
	s.publish(ctx, v.cur)
	return stored, nil
}

// applyUpdate replaces the relationship t.ID with t, which Redis stored as
// version v.cur, in the local cache (see applyLocal), and returns the
// cache's copy, or &t when the cache already reflected it. The memory
// store replaces it in one step, so this instance's readers never find it
// missing. A cache that lacks it (it missed the creation, or left out a
// record written around the store that failed validation) gets t all the
// same; if it missed writes it keeps its older version and is reloaded.
func (s *Store) applyUpdate(ctx context.Context, v versions, t store.Trust) *store.Trust {
	stored := &t
	s.applyLocal(v, func(cache *memory.Store) {
		ctx := context.WithoutCancel(ctx)
		c, err := cache.UpdateTrust(ctx, t)
		if errors.Is(err, store.ErrNotFound) {
			c, err = cache.CreateTrust(ctx, t)
		}
		if err == nil {
			stored = c
		}
	})
	return stored
}

// SyncTrust implements store.TrustStore with one script: the whole set
// changes in one step in Redis, and every instance, which reloads all
// relationships together on a version change, sees the old set or the new
// one. Applying the same set again changes nothing and bumps no version.
func (s *Store) SyncTrust(ctx context.Context, prefix string, ts []store.Trust) error {
	next, err := store.PrepareSync(prefix, ts)
	if err != nil {
		return err
	}
	args := []any{prefix}
	for _, id := range slices.Sorted(maps.Keys(next)) {
		raw, err := json.Marshal(next[id])
		if err != nil {
			return fmt.Errorf("redis: trust %q: %w", id, err)
		}
		args = append(args, id, raw)
	}
	v, err := s.runTrustScript(ctx, syncTrustScript, args...)
	if err != nil {
		return unavailable("sync trust", err)
	}
	if v.cur < 0 {
		return nil
	}
	s.applyLocal(v, func(cache *memory.Store) {
		// The same relationships, validated once more: cannot fail.
		_ = cache.SyncTrust(context.WithoutCancel(ctx), prefix, ts)
	})
	s.publish(ctx, v.cur)
	return nil
}

// GetTrust implements store.TrustStore with one HGET: it reads Redis, not
// the cache, so that it sees other instances' writes at once.
func (s *Store) GetTrust(ctx context.Context, id string) (*store.Trust, error) {
	raw, err := s.client.HGet(ctx, s.keys.trust, id).Bytes()
	if errors.Is(err, goredis.Nil) {
		return nil, fmt.Errorf("redis: trust %q: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return nil, unavailable("get trust", err)
	}
	var t store.Trust
	if err := json.Unmarshal(raw, &t); err != nil {
		return nil, fmt.Errorf("redis: trust %q: stored record is corrupt: %w", id, err)
	}
	return &t, nil
}

// ListTrust implements store.TrustStore with one HGETALL, ordered by ID.
func (s *Store) ListTrust(ctx context.Context) ([]*store.Trust, error) {
	all, err := s.client.HGetAll(ctx, s.keys.trust).Result()
	if err != nil {
		return nil, unavailable("list trust", err)
	}
	list := make([]*store.Trust, 0, len(all))
	for id, raw := range all {
		var t store.Trust
		if err := json.Unmarshal([]byte(raw), &t); err != nil {
			return nil, fmt.Errorf("redis: trust %q: stored record is corrupt: %w", id, err)
		}
		list = append(list, &t)
	}
	slices.SortFunc(list, func(a, b *store.Trust) int { return cmp.Compare(a.ID, b.ID) })
	return list, nil
}

// DeleteTrust implements store.TrustStore. The relationship's keys stop
// being returned by this instance's TrustedKeys when it returns, and by
// the other instances' as soon as they get the invalidation message, or at
// their next version poll (Config.TrustRefresh) if it is lost.
func (s *Store) DeleteTrust(ctx context.Context, id string) error {
	v, err := s.runTrustScript(ctx, deleteTrustScript, id)
	if err != nil {
		return unavailable("delete trust", err)
	}
	if v.cur < 0 {
		return fmt.Errorf("redis: trust %q: %w", id, store.ErrNotFound)
	}
	s.applyDelete(ctx, v, id)
	s.publish(ctx, v.cur)
	return nil
}

// applyDelete removes the relationship id, which Redis deleted as version
// v.cur, from the local cache (see applyLocal).
func (s *Store) applyDelete(ctx context.Context, v versions, id string) {
	s.applyLocal(v, func(cache *memory.Store) {
		_ = cache.DeleteTrust(context.WithoutCancel(ctx), id) // a reload may have dropped it already
	})
}

// applyLocal patches the current cache with this instance's own write,
// which Redis numbered v.cur. When the cache held the version the write
// replaced (v.prev), it now holds exactly v.cur, and says so, so that the
// write's own invalidation message does not reload it; otherwise it
// missed other writes and keeps its version, so that the message or the
// next poll reloads it. v.cur is also noted for a reload in progress,
// which must not swap in a copy read before this write.
//
// A cache whose version is already v.cur or a later one was read from
// Redis after the write, and reflects it together with whatever came
// after: patching it would bring back what a later write undid (a
// relationship created here, deleted on another instance, then patched
// back in), and nothing would ever reload it. It is left alone.
func (s *Store) applyLocal(v versions, patch func(*memory.Store)) {
	s.swapMu.Lock()
	defer s.swapMu.Unlock()
	s.patched = max(s.patched, v.cur)
	cur := s.trust.Load()
	if cur.version >= v.cur {
		return
	}
	patch(cur.store)
	if cur.version == v.prev {
		s.trust.Store(&trustCache{version: v.cur, store: cur.store})
	}
}

// publish tells the other instances about a new version. A lost message
// only delays them until their next poll, so a failure is logged, not
// returned: the write itself succeeded.
func (s *Store) publish(ctx context.Context, version int64) {
	if err := s.client.Publish(ctx, s.keys.trustChanged, version).Err(); err != nil {
		s.logger.WarnContext(ctx, "redis: publishing a trust change failed; other instances see it at their next poll",
			"error", err)
	}
}

// reload reads the version and the relationships in one MULTI (one slot,
// thanks to the hash tag) and, if the version differs from the cache's or
// force is set, builds a new cache and swaps it in.
//
// Reloads run one at a time (loadMu), and read and build without holding
// swapMu, so that this instance's writes never wait for one. A copy older
// than a write patched in meanwhile is not swapped in: the patched cache
// stays, and the refresher is woken to read again.
func (s *Store) reload(ctx context.Context, force bool) error {
	s.loadMu.Lock()
	defer s.loadMu.Unlock()
	s.swapMu.Lock()
	s.patched = 0
	s.swapMu.Unlock()

	var versionCmd *goredis.StringCmd
	var allCmd *goredis.MapStringStringCmd
	_, err := s.client.TxPipelined(ctx, func(p goredis.Pipeliner) error {
		versionCmd = p.Get(ctx, s.keys.trustVersion)
		allCmd = p.HGetAll(ctx, s.keys.trust)
		return nil
	})
	if err != nil && !errors.Is(err, goredis.Nil) {
		return unavailable("load trust", err)
	}
	version, err := parseVersion(versionCmd)
	if err != nil {
		return err
	}
	if cur := s.trust.Load(); cur != nil && cur.version == version && !force {
		return nil
	}
	cache := s.buildCache(ctx, allCmd.Val())

	s.swapMu.Lock()
	defer s.swapMu.Unlock()
	if version < s.patched {
		s.wake(force)
		return nil
	}
	s.trust.Store(&trustCache{version: version, store: cache})
	return nil
}

// buildCache loads the relationships into a new memory store. Each is
// validated again on the way (memory.Store.CreateTrust normalises): a
// record that does not pass, written around this store, is logged and left
// out rather than trusted. Any-subject relationships go in first, which
// keeps the memory store's per-write reindexing linear.
func (s *Store) buildCache(ctx context.Context, all map[string]string) *memory.Store {
	trusts := make([]store.Trust, 0, len(all))
	for id, raw := range all {
		var t store.Trust
		if err := json.Unmarshal([]byte(raw), &t); err != nil {
			s.logger.ErrorContext(ctx, "redis: skipping a corrupt trust relationship", "id", id, "error", err)
			continue
		}
		if t.ID != id {
			s.logger.ErrorContext(ctx, "redis: skipping a trust relationship stored under another ID", "id", id, "record_id", t.ID)
			continue
		}
		trusts = append(trusts, t)
	}
	slices.SortFunc(trusts, func(a, b store.Trust) int {
		if a.AnySubject != b.AnySubject {
			if a.AnySubject {
				return -1
			}
			return 1
		}
		return cmp.Compare(a.ID, b.ID)
	})
	cache := memory.New()
	for _, t := range trusts {
		if _, err := cache.CreateTrust(ctx, t); err != nil {
			s.logger.ErrorContext(ctx, "redis: skipping an invalid trust relationship", "id", t.ID, "error", err)
		}
	}
	return cache
}

func parseVersion(cmd *goredis.StringCmd) (int64, error) {
	raw, err := cmd.Result()
	if errors.Is(err, goredis.Nil) {
		return 0, nil
	}
	if err != nil {
		return 0, unavailable("load trust version", err)
	}
	v, err := strconv.ParseInt(raw, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("redis: trust version %q is not a number: %w", raw, err)
	}
	return v, nil
}

// refresh polls the version with one GET and reloads when it changed (or
// when forced).
func (s *Store) refresh(ctx context.Context, force bool) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.DialTimeout+2*s.cfg.Timeout)
	defer cancel()
	if !force {
		version, err := parseVersion(s.client.Get(ctx, s.keys.trustVersion))
		if err != nil {
			return err
		}
		if s.trust.Load().version == version {
			return nil
		}
	}
	return s.reload(ctx, force)
}

// wake asks the refresher to check for changes, and for a full reload when
// force is set.
func (s *Store) wake(force bool) {
	if force {
		s.force.Store(true)
	}
	select {
	case s.notify <- struct{}{}:
	default: // a wake-up is pending already; it will see the flag
	}
}

// refresher reloads the cache when the listener says so and, as a safety
// net for lost messages, polls the version every TrustRefresh. A failure
// keeps the last cache (TrustedKeys goes on answering) and is logged once
// per outage.
func (s *Store) refresher(ctx context.Context) {
	defer s.wg.Done()
	ticker := time.NewTicker(s.cfg.TrustRefresh)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		case <-s.notify:
		}
		err := s.refresh(ctx, s.force.Swap(false))
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			s.force.Store(true) // reload in full once Redis is back
			if !s.reloadFailing.Swap(true) {
				s.logger.WarnContext(ctx, "redis: reloading trust relationships failed; serving the last ones loaded",
					"error", err)
			}
		case s.reloadFailing.Swap(false):
			s.logger.InfoContext(ctx, "redis: reloading trust relationships works again")
		}
	}
}

// Bounds of the listener's wait between reconnection attempts.
const (
	listenMinBackoff = 50 * time.Millisecond
	listenMaxBackoff = 2 * time.Second
	// listenIdle is how long the listener waits for a message before it
	// pings, so that a connection that died silently is noticed.
	listenIdle = 30 * time.Second
)

// listen receives the invalidation messages and wakes the refresher. The
// PubSub reconnects and subscribes again by itself after a failure; each
// (re)subscription asks for a full reload, since messages may have been
// lost in between (or Redis restarted, resetting the version).
func (s *Store) listen(ctx context.Context) {
	defer s.wg.Done()
	backoff := listenMinBackoff
	timer := time.NewTimer(0)
	<-timer.C
	defer timer.Stop()
	for {
		msg, err := s.pubsub.ReceiveTimeout(ctx, listenIdle)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			var netErr net.Error
			if errors.As(err, &netErr) && netErr.Timeout() {
				_ = s.pubsub.Ping(ctx) // a failure makes the next receive reconnect
				continue
			}
			timer.Reset(backoff)
			select {
			case <-ctx.Done():
				return
			case <-timer.C:
			}
			backoff = min(2*backoff, listenMaxBackoff)
			continue
		}
		backoff = listenMinBackoff
		switch m := msg.(type) {
		case *goredis.Subscription:
			if m.Kind == "subscribe" {
				s.wake(true)
			}
		case *goredis.Message:
			if v, err := strconv.ParseInt(m.Payload, 10, 64); err != nil || v != s.trust.Load().version {
				s.wake(false)
			}
		}
	}
}

// newID returns 16 random bytes in hex, as the memory store does.
func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never returns an error since Go 1.24.
	return hex.EncodeToString(b[:])
}
