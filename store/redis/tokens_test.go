package redis_test

import (
	"net/url"
	"regexp"
	"testing"
	"time"

	"github.com/ory/fosite"
	goredis "github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/text/language"

	"github.com/jwtbearer/jwtbearer/store/redis"
	"github.com/jwtbearer/jwtbearer/store/redis/redistest"
)

// wrappedClient is a client type of the caller's own around a
// DefaultClient, as the handler hands over when no client authenticated.
type wrappedClient struct{ *fosite.DefaultClient }

// TestRequesterRoundTrip checks what a token session keeps of a requester.
func TestRequesterRoundTrip(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	s := openStore(t, redis.Config{Addrs: []string{srv.Addr}, KeyPrefix: newPrefix()})
	ctx := t.Context()

	exp := time.Now().Add(time.Hour).UTC().Round(time.Second)
	requestedAt := time.Now().Add(-time.Minute).UTC().Round(time.Millisecond)
	in := fosite.NewRequest()
	in.SetID("req-1")
	in.RequestedAt = requestedAt
	in.Client = &wrappedClient{&fosite.DefaultClient{
		ID: "https://issuer.example", Secret: []byte("$2a$10$secret-hash"),
		GrantTypes: []string{"urn:ietf:params:oauth:grant-type:jwt-bearer"}, Scopes: []string{"read"},
		Audience: []string{"https://api.example"}, Public: true,
	}}
	in.RequestedScope = fosite.Arguments{"read", "write"}
	in.GrantedScope = fosite.Arguments{"read"}
	in.RequestedAudience = fosite.Arguments{"https://api.example"}
	in.GrantedAudience = fosite.Arguments{"https://api.example"}
	in.Form = url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:jwt-bearer"}, "scope": {"read write"}}
	in.Lang = language.German
	in.Session = &fosite.DefaultSession{
		Subject:   "alice",
		Username:  "Alice",
		ExpiresAt: map[fosite.TokenType]time.Time{fosite.AccessToken: exp},
		Extra:     map[string]any{"tenant": "acme"},
	}
	require.NoError(t, s.CreateAccessTokenSession(ctx, "at-1", in))

	for _, proto := range []fosite.Session{nil, &fosite.DefaultSession{}} {
		got, err := s.GetAccessTokenSession(ctx, "at-1", proto)
		require.NoError(t, err)
		assert.Equal(t, "req-1", got.GetID())
		assert.True(t, requestedAt.Equal(got.GetRequestedAt()))
		c := got.GetClient()
		require.IsType(t, &fosite.DefaultClient{}, c)
		assert.Equal(t, "https://issuer.example", c.GetID())
		assert.Empty(t, c.GetHashedSecret(), "token sessions do not copy the client's secret hash")
		assert.Equal(t, fosite.Arguments{"urn:ietf:params:oauth:grant-type:jwt-bearer"}, c.GetGrantTypes())
		assert.Equal(t, fosite.Arguments{"read"}, c.GetScopes())
		assert.Equal(t, fosite.Arguments{"https://api.example"}, c.GetAudience())
		assert.True(t, c.IsPublic())
		assert.Equal(t, fosite.Arguments{"read", "write"}, got.GetRequestedScopes())
		assert.Equal(t, fosite.Arguments{"read"}, got.GetGrantedScopes())
		assert.Equal(t, fosite.Arguments{"https://api.example"}, got.GetRequestedAudience())
		assert.Equal(t, fosite.Arguments{"https://api.example"}, got.GetGrantedAudience())
		assert.Equal(t, in.Form, got.GetRequestForm())
		require.IsType(t, &fosite.Request{}, got)
		assert.Equal(t, language.German, got.(*fosite.Request).Lang)

		sess, ok := got.GetSession().(*fosite.DefaultSession)
		require.True(t, ok, "a nil prototype gets a DefaultSession")
		if proto != nil {
			assert.Same(t, proto, got.GetSession(), "the session is decoded into the prototype")
		}
		assert.Equal(t, "alice", sess.Subject)
		assert.Equal(t, "Alice", sess.Username)
		assert.True(t, exp.Equal(sess.GetExpiresAt(fosite.AccessToken)))
		assert.Equal(t, "acme", sess.Extra["tenant"])
	}

	// A requester without a session, and a nil one.
	bare := fosite.NewRequest()
	bare.SetID("req-bare")
	require.NoError(t, s.CreateRefreshTokenSession(ctx, "rt-bare", "", bare))
	got, err := s.GetRefreshTokenSession(ctx, "rt-bare", nil)
	require.NoError(t, err)
	assert.Equal(t, "req-bare", got.GetID())
	assert.NotNil(t, got.GetSession())
	assert.Error(t, s.CreateAccessTokenSession(ctx, "at-nil", nil))
}

// TestKeyLayout checks the keys a store writes: their names, and that
// every one that should expire does, at the right time.
func TestKeyLayout(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	prefix := newPrefix()
	s := openStore(t, redis.Config{Addrs: []string{srv.Addr}, KeyPrefix: prefix})
	raw := goredis.NewClient(&goredis.Options{Addr: srv.Addr})
	t.Cleanup(func() { _ = raw.Close() })
	ctx := t.Context()

	now := time.Now()
	hour, twoHours := now.Add(time.Hour), now.Add(2*time.Hour)
	_, err := s.ClaimJTI(ctx, "https://issuer.example", "jti-1", hour)
	require.NoError(t, err)
	require.NoError(t, s.SetClientAssertionJWT(ctx, "client-jti-1", hour))
	req := newRequest("req-1", "client-1", hour, twoHours)
	require.NoError(t, s.CreateAccessTokenSession(ctx, "signature-at-1", req))
	require.NoError(t, s.CreateRefreshTokenSession(ctx, "signature-rt-1", "signature-at-1", req))
	forever := newRequest("req-2", "client-1", time.Time{}, time.Time{})
	require.NoError(t, s.CreateAccessTokenSession(ctx, "signature-at-2", forever))
	require.NoError(t, s.CreateClient(ctx, &fosite.DefaultClient{ID: "client-1"}))
	_, err = s.CreateTrust(ctx, ecTrust(t, "t1", "https://issuer.example", "alice"))
	require.NoError(t, err)

	keys, err := raw.Keys(ctx, prefix+"*").Result() // test only: a server of its own
	require.NoError(t, err)
	hexKey := regexp.MustCompile(`^(jti|cajti|at|rt|req):[0-9a-f]{32}$`)
	ttls := map[string][]time.Duration{}
	for _, k := range keys {
		name := k[len(prefix):]
		assert.NotContains(t, name, "signature", "signatures are hashed")
		assert.NotContains(t, name, "jti-1", "jtis are hashed")
		ttl, err := raw.PTTL(ctx, k).Result()
		require.NoError(t, err)
		switch {
		case hexKey.MatchString(name):
			kind := name[:len(name)-33]
			ttls[kind] = append(ttls[kind], ttl)
		case name == "{trust}" || name == "{trust}:version" || name == "clients":
			assert.Equal(t, time.Duration(-1), ttl, "%s has no TTL", name)
		default:
			t.Errorf("unexpected key %q", k)
		}
	}

	near := func(want time.Duration) func(time.Duration) bool {
		return func(got time.Duration) bool { return got > want-time.Minute && got <= want }
	}
	check := func(kind string, conds ...func(time.Duration) bool) {
		t.Helper()
		got := ttls[kind]
		require.Len(t, got, len(conds), kind)
		for _, cond := range conds {
			found := false
			for _, ttl := range got {
				found = found || cond(ttl)
			}
			assert.True(t, found, "%s TTLs %v", kind, got)
		}
	}
	none := func(got time.Duration) bool { return got == -1 }
	check("jti", near(time.Hour))
	check("cajti", near(time.Hour))
	check("at", near(time.Hour), none)
	check("rt", near(2*time.Hour))
	check("req", near(2*time.Hour), none) // req-1 lives as long as its refresh token; req-2 as its session
}
