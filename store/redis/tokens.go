package redis

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"time"

	"github.com/ory/fosite"
	goredis "github.com/redis/go-redis/v9"
	"golang.org/x/text/language"
)

// tokenKind tells access-token sessions from refresh-token sessions.
type tokenKind byte

const (
	accessToken  tokenKind = 'a'
	refreshToken tokenKind = 'r'
)

func (k tokenKind) String() string {
	if k == refreshToken {
		return "refresh"
	}
	return "access"
}

func (k tokenKind) tokenType() fosite.TokenType {
	if k == refreshToken {
		return fosite.RefreshToken
	}
	return fosite.AccessToken
}

// A session value is a flag byte ('0' active, '1' inactive: a rotated or
// revoked refresh token), the 32 hex characters of its request ID's hash,
// then the JSON of the requester. The fixed-size head lets the scripts
// below read and flip the state with GETRANGE and SETRANGE, which keep the
// key's TTL, without decoding the JSON.
const (
	flagActive   = '0'
	flagInactive = '1'
	headLen      = 1 + 32
)

func (k keys) session(kind tokenKind, signature string) string {
	if kind == refreshToken {
		return k.prefix + "rt:" + idHash(signature)
	}
	return k.prefix + "at:" + idHash(signature)
}

// request is the set indexing the sessions of one request ID. Its members
// are the kind byte followed by the signature hash, from which the session
// key follows.
func (k keys) request(requestID string) string {
	return k.prefix + "req:" + idHash(requestID)
}

func (k keys) sessionOfMember(member string) (tokenKind, string, bool) {
	if len(member) != 33 || (member[0] != byte(accessToken) && member[0] != byte(refreshToken)) {
		return 0, "", false
	}
	kind := tokenKind(member[0])
	if kind == refreshToken {
		return kind, k.prefix + "rt:" + member[1:], true
	}
	return kind, k.prefix + "at:" + member[1:], true
}

// Each script touches one key, so that it runs on any Redis Cluster.
var (
	// indexScript adds ARGV[1] to the request set KEYS[1] and keeps the
	// set alive at least as long as its longest-lived session: ARGV[2] is
	// the new session's expiry in unix ms, or "0" for none, which makes
	// the set persistent. A set with no TTL already has such a member.
	indexScript = goredis.NewScript(`
local ttl = redis.call('PTTL', KEYS[1])
redis.call('SADD', KEYS[1], ARGV[1])
if ARGV[2] == '0' then
  redis.call('PERSIST', KEYS[1])
elseif ttl == -2 then
  redis.call('PEXPIREAT', KEYS[1], ARGV[2])
elseif ttl >= 0 then
  redis.call('PEXPIREAT', KEYS[1], ARGV[2], 'GT')
end
return 1`)

	// rotateScript is the compare-and-set of a refresh-token rotation: it
	// marks the refresh session KEYS[1] inactive if it exists, is active
	// and belongs to the request hash ARGV[1]. It returns 1 when it did, 0
	// when the session is already inactive (another rotation or a
	// revocation got there first), -1 when there is no such session of
	// that request.
	rotateScript = goredis.NewScript(`
local head = redis.call('GETRANGE', KEYS[1], 0, 32)
if string.sub(head, 2) ~= ARGV[1] then
  return -1
end
if string.sub(head, 1, 1) ~= '0' then
  return 0
end
redis.call('SETRANGE', KEYS[1], 0, '1')
return 1`)

	// deactivateScript marks the session KEYS[1] inactive if it exists and
	// belongs to the request hash ARGV[1].
	deactivateScript = goredis.NewScript(`
if redis.call('GETRANGE', KEYS[1], 1, 32) ~= ARGV[1] then
  return 0
end
redis.call('SETRANGE', KEYS[1], 0, '1')
return 1`)

	// deleteScript deletes the session KEYS[1] if it belongs to the
	// request hash ARGV[1].
	deleteScript = goredis.NewScript(`
if redis.call('GETRANGE', KEYS[1], 1, 32) ~= ARGV[1] then
  return 0
end
return redis.call('DEL', KEYS[1])`)
)

// requestRecord is how a fosite.Requester is stored. The client is kept as
// a fosite.DefaultClient built from the fosite.Client getters, without its
// secret hashes: a token session needs the client's identity, not its
// credentials.
type requestRecord struct {
	ID                string                `json:"id"`
	RequestedAt       time.Time             `json:"requested_at"`
	Client            *fosite.DefaultClient `json:"client,omitempty"`
	RequestedScope    fosite.Arguments      `json:"requested_scope,omitempty"`
	GrantedScope      fosite.Arguments      `json:"granted_scope,omitempty"`
	RequestedAudience fosite.Arguments      `json:"requested_audience,omitempty"`
	GrantedAudience   fosite.Arguments      `json:"granted_audience,omitempty"`
	Form              url.Values            `json:"form,omitempty"`
	Lang              string                `json:"lang,omitempty"`
	Session           json.RawMessage       `json:"session,omitempty"`
}

func encodeRequest(req fosite.Requester) ([]byte, error) {
	rec := requestRecord{
		ID:                req.GetID(),
		RequestedAt:       req.GetRequestedAt(),
		RequestedScope:    req.GetRequestedScopes(),
		GrantedScope:      req.GetGrantedScopes(),
		RequestedAudience: req.GetRequestedAudience(),
		GrantedAudience:   req.GetGrantedAudience(),
		Form:              req.GetRequestForm(),
	}
	if c := req.GetClient(); c != nil {
		rec.Client = &fosite.DefaultClient{
			ID:            c.GetID(),
			RedirectURIs:  c.GetRedirectURIs(),
			GrantTypes:    c.GetGrantTypes(),
			ResponseTypes: c.GetResponseTypes(),
			Scopes:        c.GetScopes(),
			Audience:      c.GetAudience(),
			Public:        c.IsPublic(),
		}
	}
	if l, ok := req.(interface{ GetLang() language.Tag }); ok {
		if tag := l.GetLang(); tag != language.Und {
			rec.Lang = tag.String()
		}
	}
	if sess := req.GetSession(); sess != nil {
		raw, err := json.Marshal(sess)
		if err != nil {
			return nil, fmt.Errorf("session: %w", err)
		}
		rec.Session = raw
	}
	return json.Marshal(&rec)
}

// decodeRequest rebuilds the requester, decoding the session into the
// prototype fosite passes (a fosite.DefaultSession when it passes nil).
func decodeRequest(raw []byte, session fosite.Session) (*fosite.Request, error) {
	var rec requestRecord
	if err := json.Unmarshal(raw, &rec); err != nil {
		return nil, err
	}
	if session == nil {
		session = &fosite.DefaultSession{}
	}
	if len(rec.Session) > 0 {
		if err := json.Unmarshal(rec.Session, session); err != nil {
			return nil, fmt.Errorf("session: %w", err)
		}
	}
	req := fosite.NewRequest()
	req.ID = rec.ID
	req.RequestedAt = rec.RequestedAt
	if rec.Client != nil {
		req.Client = rec.Client
	}
	if rec.RequestedScope != nil {
		req.RequestedScope = rec.RequestedScope
	}
	if rec.GrantedScope != nil {
		req.GrantedScope = rec.GrantedScope
	}
	if rec.RequestedAudience != nil {
		req.RequestedAudience = rec.RequestedAudience
	}
	if rec.GrantedAudience != nil {
		req.GrantedAudience = rec.GrantedAudience
	}
	if rec.Form != nil {
		req.Form = rec.Form
	}
	if rec.Lang != "" {
		if tag, err := language.Parse(rec.Lang); err == nil {
			req.Lang = tag
		}
	}
	req.Session = session
	return req, nil
}

// notFound names the kind of token but not its signature, which is as good
// as the token to whoever reads the logs.
func notFound(kind tokenKind) error {
	return fmt.Errorf("redis: %s token session: %w", kind, fosite.ErrNotFound)
}

// create stores req under signature in one round trip: a pipeline of the
// session's SET (with PXAT at the token's expiry, or no TTL when it has
// none) and the script that adds it to its request's set. In Redis
// Cluster the two keys may live on different nodes; the pipeline is split
// by node, and neither command spans slots.
//
// A session that has already expired when stored replaces the one under
// that signature and is forgotten at once (a DEL), as in the memory store.
func (s *Store) create(ctx context.Context, kind tokenKind, signature string, req fosite.Requester) error {
	if req == nil {
		return errors.New("redis: token session: requester is nil")
	}
	body, err := encodeRequest(req)
	if err != nil {
		return fmt.Errorf("redis: %s token session: %w", kind, err)
	}
	reqHash := idHash(req.GetID())
	value := make([]byte, 0, headLen+len(body))
	value = append(value, flagActive)
	value = append(value, reqHash...)
	value = append(value, body...)

	var exp time.Time
	if sess := req.GetSession(); sess != nil {
		exp = sess.GetExpiresAt(kind.tokenType())
	}
	key := s.keys.session(kind, signature)
	op := "create " + kind.String() + " token session"
	if !exp.IsZero() && !exp.After(time.Now()) {
		if err := s.client.Del(ctx, key).Err(); err != nil {
			return unavailable(op, err)
		}
		return nil
	}

	expiry := "0"
	_, err = s.client.Pipelined(ctx, func(p goredis.Pipeliner) error {
		if exp.IsZero() {
			p.Set(ctx, key, value, 0)
		} else {
			ms := expiryMs(exp)
			expiry = strconv.FormatInt(ms, 10)
			_ = p.Process(ctx, goredis.NewStatusCmd(ctx, "set", key, value, "pxat", ms))
		}
		indexScript.Eval(ctx, p, []string{s.keys.request(req.GetID())}, string(kind)+idHash(signature), expiry)
		return nil
	})
	if err != nil {
		return unavailable(op, err)
	}
	return nil
}

// get reads the session under signature with one GET. It returns the
// requester and whether it is inactive, or fosite.ErrNotFound when there
// is none or it has expired.
func (s *Store) get(ctx context.Context, kind tokenKind, signature string, session fosite.Session) (*fosite.Request, bool, error) {
	raw, err := s.client.Get(ctx, s.keys.session(kind, signature)).Bytes()
	if errors.Is(err, goredis.Nil) {
		return nil, false, notFound(kind)
	}
	if err != nil {
		return nil, false, unavailable("get "+kind.String()+" token session", err)
	}
	if len(raw) < headLen || (raw[0] != flagActive && raw[0] != flagInactive) {
		return nil, false, fmt.Errorf("redis: %s token session: stored record is corrupt", kind)
	}
	req, err := decodeRequest(raw[headLen:], session)
	if err != nil {
		return nil, false, fmt.Errorf("redis: %s token session: stored record is corrupt: %w", kind, err)
	}
	// Redis expires the key on its own clock; this holds the expiry to
	// this process's clock too, as the memory store does.
	if exp := req.Session.GetExpiresAt(kind.tokenType()); !exp.IsZero() && exp.Before(time.Now()) {
		return nil, false, notFound(kind)
	}
	return req, raw[0] == flagInactive, nil
}

// del deletes the session under signature with one DEL. Its member stays
// in the request's set until the request's next revocation of that kind of
// token prunes it, or the set expires.
func (s *Store) del(ctx context.Context, kind tokenKind, signature string) error {
	if err := s.client.Del(ctx, s.keys.session(kind, signature)).Err(); err != nil {
		return unavailable("delete "+kind.String()+" token session", err)
	}
	return nil
}

// revoke deletes the access-token sessions (when access) and deactivates
// the refresh-token sessions (when refresh) of a request, in two round
// trips: the request's set, then one pipeline of single-key scripts, each
// of which acts only if the session still belongs to that request.
//
// The same pipeline removes from the set every member it handled: a
// deleted access token, and a refresh token that is inactive now (or was
// already, or is gone, or belongs to another request since). None of them
// can need revoking again (a refresh session only turns active again when
// stored anew, which indexes it again), so the set holds the request's
// live tokens rather than every token it ever had, and the pipeline does
// not grow with rotations.
//
// With rotate, the refresh session under the signature rotated is rotated
// in the first round trip, by rotateScript, and nothing else happens
// unless that succeeds: see RotateRefreshToken.
//
// The two steps are not one transaction across keys (Redis Cluster keeps
// them on different nodes): a session created for the same request while
// it is being revoked may escape the revocation, and stay out of the set
// if the revocation saw its member before its session was written. fosite
// revokes before it stores the new pair, never at the same time.
func (s *Store) revoke(ctx context.Context, op, requestID string, access, refresh, rotate bool, rotated string) error {
	setKey := s.keys.request(requestID)
	reqHash := idHash(requestID)
	var rotation *goredis.Cmd
	var members *goredis.StringSliceCmd
	_, err := s.client.Pipelined(ctx, func(p goredis.Pipeliner) error {
		if rotate {
			rotation = rotateScript.Eval(ctx, p, []string{s.keys.session(refreshToken, rotated)}, reqHash)
		}
		members = p.SMembers(ctx, setKey)
		return nil
	})
	if err != nil {
		return unavailable(op, err)
	}
	rotatedMember := ""
	if rotation != nil {
		switch n, _ := rotation.Int64(); n {
		case 1:
			rotatedMember = string(refreshToken) + idHash(rotated)
		case 0:
			return fmt.Errorf("redis: refresh token session: rotated or revoked meanwhile: %w: %w",
				fosite.ErrSerializationFailure, fosite.ErrInactiveToken)
		default:
			return notFound(refreshToken)
		}
	}

	if len(members.Val()) == 0 {
		return nil
	}
	_, err = s.client.Pipelined(ctx, func(p goredis.Pipeliner) error {
		var handled []any
		for _, m := range members.Val() {
			kind, key, ok := s.keys.sessionOfMember(m)
			switch {
			case !ok || m == rotatedMember:
				handled = append(handled, m) // corrupt; or rotated just now
			case kind == accessToken && access:
				deleteScript.Eval(ctx, p, []string{key}, reqHash)
				handled = append(handled, m)
			case kind == refreshToken && refresh:
				deactivateScript.Eval(ctx, p, []string{key}, reqHash)
				handled = append(handled, m)
			}
		}
		if len(handled) > 0 {
			p.SRem(ctx, setKey, handled...)
		}
		return nil
	})
	if err != nil {
		return unavailable(op, err)
	}
	return nil
}

// CreateAccessTokenSession implements oauth2.AccessTokenStorage in one
// round trip. The session is kept until its access-token expiry
// (GetSession().GetExpiresAt(fosite.AccessToken)); a session without one
// is kept until deleted or revoked.
func (s *Store) CreateAccessTokenSession(ctx context.Context, signature string, req fosite.Requester) error {
	return s.create(ctx, accessToken, signature, req)
}

// GetAccessTokenSession implements oauth2.AccessTokenStorage. It returns
// the requester with its session decoded into session (a
// fosite.DefaultSession when nil), or fosite.ErrNotFound when there is
// none or it has expired.
func (s *Store) GetAccessTokenSession(ctx context.Context, signature string, session fosite.Session) (fosite.Requester, error) {
	req, _, err := s.get(ctx, accessToken, signature, session)
	if err != nil {
		return nil, err
	}
	return req, nil
}

// DeleteAccessTokenSession implements oauth2.AccessTokenStorage. Deleting
// an unknown signature is not an error.
func (s *Store) DeleteAccessTokenSession(ctx context.Context, signature string) error {
	return s.del(ctx, accessToken, signature)
}

// CreateRefreshTokenSession implements oauth2.RefreshTokenStorage in one
// round trip. The session is kept until its refresh-token expiry
// (GetSession().GetExpiresAt(fosite.RefreshToken)), even once rotated or
// revoked, so that reuse is detected; a session without an expiry is kept
// until deleted. The access signature is not needed: revocation goes by
// request ID.
func (s *Store) CreateRefreshTokenSession(ctx context.Context, signature, _ string, req fosite.Requester) error {
	return s.create(ctx, refreshToken, signature, req)
}

// GetRefreshTokenSession implements oauth2.RefreshTokenStorage. For a
// rotated or revoked token it returns the requester together with
// fosite.ErrInactiveToken, which is how fosite's refresh handler detects
// reuse; for an unknown or expired one, fosite.ErrNotFound.
func (s *Store) GetRefreshTokenSession(ctx context.Context, signature string, session fosite.Session) (fosite.Requester, error) {
	req, inactive, err := s.get(ctx, refreshToken, signature, session)
	if err != nil {
		return nil, err
	}
	if inactive {
		return req, fmt.Errorf("redis: refresh token session: %w", fosite.ErrInactiveToken)
	}
	return req, nil
}

// DeleteRefreshTokenSession implements oauth2.RefreshTokenStorage.
// Deleting an unknown signature is not an error.
func (s *Store) DeleteRefreshTokenSession(ctx context.Context, signature string) error {
	return s.del(ctx, refreshToken, signature)
}

// RotateRefreshToken implements oauth2.RefreshTokenStorage. fosite calls it
// before storing the new pair of a refresh grant: it marks the presented
// refresh token and every other refresh token of the request inactive and
// deletes the request's access tokens, so that only the pair about to be
// issued is valid. Two round trips, as a revocation.
//
// It is a compare-and-set on the presented token, in one single-key
// script: only the call that flips it from active to inactive, and finds
// it belongs to requestID, goes on to revoke the rest. Any other, such as
// a second refresh grant racing with the same token on any instance,
// changes nothing and gets an error fosite answers with 400
// invalid_request instead of issuing a second pair: one that wraps
// fosite.ErrSerializationFailure (and fosite.ErrInactiveToken) when the
// token was rotated or revoked meanwhile, fosite.ErrNotFound when it is
// unknown, expired or of another request.
func (s *Store) RotateRefreshToken(ctx context.Context, requestID, refreshTokenSignature string) error {
	return s.revoke(ctx, "rotate refresh token", requestID, true, true, true, refreshTokenSignature)
}

// RevokeRefreshToken implements oauth2.TokenRevocationStorage (RFC 7009
// §2.1): the refresh tokens of the request become inactive. An unknown
// request ID is not an error.
func (s *Store) RevokeRefreshToken(ctx context.Context, requestID string) error {
	return s.revoke(ctx, "revoke refresh token", requestID, false, true, false, "")
}

// RevokeAccessToken implements oauth2.TokenRevocationStorage (RFC 7009
// §2.1): the access tokens of the request are deleted. An unknown request
// ID is not an error.
func (s *Store) RevokeAccessToken(ctx context.Context, requestID string) error {
	return s.revoke(ctx, "revoke access token", requestID, true, false, false, "")
}
