// Package redis is the store for several server instances sharing one Redis:
// a single node, a Sentinel-managed master, or a Redis Cluster (Redis 7.0 or
// later). Tokens, revocations, OAuth 2.0 clients, trust relationships and
// the replay cache are shared: a jti used on one instance is refused on
// every other, and nothing but a cache lives only in process memory, so an
// instance that restarts carries on where it was.
//
// It passes the conformance suite of store/storetest and behaves as the
// memory store does; the differences are those of a network store. Every
// Redis failure other than a missing key (connection refused, timeout,
// cancelled context, CLUSTERDOWN…) is returned wrapped so that
// errors.Is(err, store.ErrUnavailable) holds, and the handler answers it
// with 503 temporarily_unavailable, issuing nothing. Every call uses the
// caller's context; commands are bounded by Config.Timeout and not retried
// by a single-node or Sentinel client, so a dead Redis fails a request at
// once. A Cluster client follows redirects and may send a command to a
// node again after a network error: the replay claims are safe to repeat
// (see below); a repeated CreateClient, CreateTrust, DeleteClient,
// DeleteTrust or RotateRefreshToken may answer with the conflict its own
// first sending caused; a repeated UpdateTrust writes the same record
// again, which is harmless. The client reconnects by itself when Redis
// comes back.
//
// # Trust relationships
//
// TrustedKeys, on every token request, reads a local copy of the trust
// relationships with the memory store's O(1) index: no round trip. Every
// write bumps a version and publishes it; each instance listens (and
// re-subscribes after a reconnect) and reloads the whole set when the
// version changes, replacing its copy in one pointer swap. It also polls
// the version every Config.TrustRefresh, in case a message was lost. A
// relationship created, updated or deleted on one instance thus takes
// effect on every instance within TrustRefresh (500ms by default), and at
// once on the instance that wrote it, which patches its own writes into
// its copy (unless that copy was already loaded from a later version).
//
// UpdateTrust replaces the relationship in place, in Redis (one script:
// HEXISTS, HSET over the existing field, version bump) and in every copy
// (the memory store swaps it under its lock, a reload swaps the whole
// copy): each instance serves the old version until it serves the new one,
// and never finds the relationship missing in between. Keys the update
// removed stop resolving, by kid or not, as soon as the new version is
// served.
//
// The version never goes back, even when Redis loses its data (FLUSHALL,
// a failover to a replica that missed writes, a restore from a backup):
// every write sets it to one more than the last but at least Redis's
// clock (TIME) in microseconds, and an instance reloads whenever the
// version differs from the one it holds, so new relationships are never
// taken for the old ones cached under the same number.
//
// While Redis is unreachable, TrustedKeys keeps answering from the last
// copy loaded; the replay claim fails closed then anyway.
//
// # Key layout
//
// Every key and channel starts with Config.KeyPrefix (P, "jwtbearer:" by
// default). Hashes of client-chosen strings are 128 bits of SHA-256 in hex
// (32 characters), which keeps keys short and reveals neither jtis nor
// token signatures.
//
//	P+"jti:"+H(iss, jti)      string nonce      PXAT the claim's until         ClaimJTI
//	P+"cajti:"+H(jti)         string nonce      PXAT the assertion's exp       client-assertion jtis
//	P+"at:"+H(signature)      string session    PXAT the access token's exp    access-token sessions
//	P+"rt:"+H(signature)      string session    PXAT the refresh token's exp   refresh-token sessions
//	P+"req:"+H(request ID)    set of kind+H     PXAT its longest session       index for revocation
//	P+"{trust}"               hash id → JSON    none                           trust relationships
//	P+"{trust}:version"       string integer    none                           raised by every trust write
//	P+"clients"               hash id → JSON    none                           OAuth 2.0 clients
//	P+"trust:changed"         pub/sub channel                                  new trust version
//
// A session without an expiry has no TTL, and neither has its request's set
// then, as the memory store keeps such sessions until deleted. A session
// value is a state byte ('1' once a refresh token is rotated or revoked),
// the request ID's hash, and the JSON of the requester (its client reduced
// to a fosite.DefaultClient without secrets, its session as JSON, decoded
// into the session fosite passes).
//
// A claim (ClaimJTI, SetClientAssertionJWT) is one SET NX GET PXAT of a
// random nonce: the key was absent, or held this call's own nonce because
// the client sent the command again after losing its reply (a Cluster
// client does), and the claim is fresh; any other value is a replay.
//
// The request's set lists the sessions a revocation may still have to
// act on. A revocation removes what it handled: the access tokens it
// deleted, the refresh tokens that are inactive after it (or gone, or of
// another request since); a session stored again is added again. So the
// set holds a grant's live pair, not every token a long-lived grant was
// ever issued, and a rotation costs the same the 300th time as the first.
//
// RotateRefreshToken is a compare-and-set on the presented refresh token:
// a single-key script flips its state byte from '0' to '1' only if it
// belongs to the request, and only the call that flipped it revokes the
// request's other tokens and lets fosite issue a new pair. Any other
// (a concurrent refresh grant with the same token, on any instance) gets
// fosite.ErrSerializationFailure, which fosite answers with 400
// invalid_request.
//
// Redis Cluster: no command or script touches two slots. The only
// multi-key operations, on the trust relationships and their version (the
// create, update and delete scripts, and the reload's MULTI), share the
// hash tag {trust}; a token session and its request's set may
// live on different nodes and are written in one pipeline, which go-redis
// splits by node. Every other script touches one key. No KEYS, no SCAN.
//
// # Permissions
//
// With Redis ACLs, the store's user needs the keys and channels under the
// prefix (~P* &P*) and the commands it sends: GET, SET, DEL, EXISTS, HGET,
// HGETALL, HSETNX, HDEL, SMEMBERS, SREM, INCR, PUBLISH, SUBSCRIBE, PING,
// MULTI/EXEC, EVAL/EVALSHA (the scripts also call PTTL, SADD, PERSIST,
// PEXPIREAT, GETRANGE, SETRANGE, TIME, HEXISTS, HSET), and COMMAND for a
// Cluster client.
//
// # Round trips
//
// ClaimJTI, SetClientAssertionJWT, ClientAssertionJWTValid, GetClient,
// CreateClient, DeleteClient, Create/Get/Delete*TokenSession, GetTrust,
// ListTrust, Ping: one. Revoke*Token and RotateRefreshToken: two (the
// request's set, with the rotation's compare-and-set; then a pipeline of
// single-key scripts and the SREM of what they handled), or one for a
// rotation that is refused or a request with no tokens. CreateTrust,
// UpdateTrust and DeleteTrust: two (a script, then PUBLISH). TrustedKeys: none.
//
// The trust relationships are read in one MULTI when they change; the
// version poll is one GET per Config.TrustRefresh per instance.
package redis
