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
// caller's context; commands are bounded by Config.Timeout and not retried,
// so a dead Redis fails a request at once. The client reconnects by itself
// when Redis comes back.
//
// # Trust relationships
//
// TrustedKeys, on every token request, reads a local copy of the trust
// relationships with the memory store's O(1) index: no round trip. Every
// write bumps a version and publishes it; each instance listens (and
// re-subscribes after a reconnect) and reloads the whole set when the
// version changes, replacing its copy in one pointer swap. It also polls
// the version every Config.TrustRefresh, in case a message was lost. A
// relationship deleted on one instance thus stops resolving on every
// instance within TrustRefresh (500ms by default), and at once on the
// instance that deleted it. While Redis is unreachable, TrustedKeys keeps
// answering from the last copy loaded; the replay claim fails closed then
// anyway.
//
// # Key layout
//
// Every key and channel starts with Config.KeyPrefix (P, "jwtbearer:" by
// default). Hashes of client-chosen strings are 128 bits of SHA-256 in hex
// (32 characters), which keeps keys short and reveals neither jtis nor
// token signatures.
//
//	P+"jti:"+H(iss, jti)      string "1"        PXAT the claim's until         ClaimJTI
//	P+"cajti:"+H(jti)         string "1"        PXAT the assertion's exp       client-assertion jtis
//	P+"at:"+H(signature)      string session    PXAT the access token's exp    access-token sessions
//	P+"rt:"+H(signature)      string session    PXAT the refresh token's exp   refresh-token sessions
//	P+"req:"+H(request ID)    set of kind+H     PXAT its longest session       index for revocation
//	P+"{trust}"               hash id → JSON    none                           trust relationships
//	P+"{trust}:version"       string counter    none                           bumped by every trust write
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
// Redis Cluster: no command or script touches two slots. The only
// multi-key operations, on the trust relationships and their version,
// share the hash tag {trust}; a token session and its request's set may
// live on different nodes and are written in one pipeline, which go-redis
// splits by node. Each script touches one key. No KEYS, no SCAN.
//
// # Permissions
//
// With Redis ACLs, the store's user needs the keys and channels under the
// prefix (~P* &P*) and the commands it sends: GET, SET, DEL, EXISTS, HGET,
// HGETALL, HSETNX, HDEL, SMEMBERS, SREM, INCR, PUBLISH, SUBSCRIBE, PING,
// MULTI/EXEC, EVAL/EVALSHA (the scripts call PTTL, SADD, PERSIST,
// PEXPIREAT, GETRANGE, SETRANGE), and COMMAND for a Cluster client.
//
// # Round trips
//
// ClaimJTI, SetClientAssertionJWT, ClientAssertionJWTValid, GetClient,
// CreateClient, DeleteClient, Create/Get/Delete*TokenSession, GetTrust,
// ListTrust, Ping: one. Revoke*Token and RotateRefreshToken: two (the
// request's set, then a pipeline of single-key scripts). CreateTrust and
// DeleteTrust: two (a script, then PUBLISH). TrustedKeys: none.
//
// The trust relationships are read in one MULTI when they change; the
// version poll is one GET per Config.TrustRefresh per instance.
package redis
