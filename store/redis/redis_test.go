package redis_test

import (
	"net"
	"testing"
	"time"

	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/oauth2"
	goredis "github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/jwtbearer/jwtbearer/store"
	"github.com/jwtbearer/jwtbearer/store/redis"
	"github.com/jwtbearer/jwtbearer/store/redis/redistest"
	"github.com/jwtbearer/jwtbearer/store/storetest"
)

var (
	_ store.TrustStore              = (*redis.Store)(nil)
	_ store.ReplayGuard             = (*redis.Store)(nil)
	_ store.ClientStore             = (*redis.Store)(nil)
	_ fosite.ClientManager          = (*redis.Store)(nil)
	_ oauth2.AccessTokenStorage     = (*redis.Store)(nil)
	_ oauth2.RefreshTokenStorage    = (*redis.Store)(nil)
	_ oauth2.TokenRevocationStorage = (*redis.Store)(nil)
	_ storetest.Store               = (*redis.Store)(nil)
)

// TestStore runs the conformance suite on one Redis node, each test on a
// store with a key prefix of its own. The conformance tests do not run in
// parallel with the others: the suite's readers spin on the CPU, which
// would skew the timing checks of the tests below.
func TestStore(t *testing.T) {
	srv := redistest.Start(t)
	newStore := func(t *testing.T) storetest.Store {
		return openStore(t, redis.Config{Addrs: []string{srv.Addr}, KeyPrefix: newPrefix()})
	}
	storetest.RunTests(t, newStore)
	storetest.RunConcurrencyTests(t, newStore)
}

// TestStoreCluster runs the conformance suite on a Redis Cluster of three
// masters: any command that spans slots would fail with CROSSSLOT.
func TestStoreCluster(t *testing.T) {
	cluster := redistest.StartCluster(t, 3)
	newStore := func(t *testing.T) storetest.Store {
		return openStore(t, redis.Config{Addrs: cluster.Addrs, KeyPrefix: newPrefix()})
	}
	storetest.RunTests(t, newStore)
	storetest.RunConcurrencyTests(t, newStore)
}

// TestCloseStopsGoroutines checks that Close stops every goroutine the
// store and its client started. It does not run in parallel, so that no
// other test's goroutines come and go meanwhile.
func TestCloseStopsGoroutines(t *testing.T) {
	srv := redistest.Start(t)
	ctx := t.Context()
	before := goleak.IgnoreCurrent()

	s, err := redis.Open(ctx, redis.Config{Addrs: []string{srv.Addr}, KeyPrefix: newPrefix(), TrustRefresh: 20 * time.Millisecond}, testLogger(t))
	require.NoError(t, err)
	_, err = s.ClaimJTI(ctx, "https://issuer.example", "jti-1", time.Now().Add(time.Hour))
	require.NoError(t, err)
	_, err = s.CreateTrust(ctx, ecTrust(t, "t1", "https://issuer.example", "alice"))
	require.NoError(t, err)
	time.Sleep(50 * time.Millisecond) // let the listener and the refresher run
	require.NoError(t, s.Close())
	require.NoError(t, s.Close(), "Close is idempotent")

	goleak.VerifyNone(t, before)
}

// TestNewLeavesClientOpen checks that a store made with New uses the
// caller's client and does not close it.
func TestNewLeavesClientOpen(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	ctx := t.Context()
	client := goredis.NewClient(&goredis.Options{Addr: srv.Addr})
	t.Cleanup(func() { _ = client.Close() })

	s, err := redis.New(ctx, client, redis.Config{KeyPrefix: newPrefix()}, nil)
	require.NoError(t, err)
	fresh, err := s.ClaimJTI(ctx, "https://issuer.example", "jti-1", time.Now().Add(time.Hour))
	require.NoError(t, err)
	assert.True(t, fresh)
	require.NoError(t, s.Close())
	assert.NoError(t, client.Ping(ctx).Err(), "the caller's client stays open")

	_, err = redis.New(ctx, nil, redis.Config{}, nil)
	assert.Error(t, err)
	_, err = redis.New(ctx, client, redis.Config{KeyPrefix: "{bad}"}, nil)
	assert.Error(t, err)
}

// TestOpenUnreachable checks that Open gives up within about the dial
// timeout when nothing listens, with an error wrapping ErrUnavailable.
func TestOpenUnreachable(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())

	const dial = 200 * time.Millisecond
	start := time.Now()
	s, err := redis.Open(t.Context(), redis.Config{Addrs: []string{addr}, DialTimeout: dial, Timeout: dial}, nil)
	assert.Nil(t, s)
	assert.ErrorIs(t, err, store.ErrUnavailable)
	assert.Less(t, time.Since(start), 2*dial+500*time.Millisecond)

	_, err = redis.Open(t.Context(), redis.Config{}, nil)
	assert.ErrorContains(t, err, "addrs", "the configuration is validated first")
}

func TestPing(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	s := openStore(t, redis.Config{Addrs: []string{srv.Addr}, KeyPrefix: newPrefix()})
	assert.NoError(t, s.Ping(t.Context()))
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  redis.Config
		want []string // substrings of the error; none means valid
	}{
		{"single node", redis.Config{Addrs: []string{"127.0.0.1:6379"}}, nil},
		{"cluster", redis.Config{Addrs: []string{"a:1", "b:2", "c:3"}}, nil},
		{"sentinel with db", redis.Config{Addrs: []string{"s1:26379", "s2:26379"}, MasterName: "mymaster", DB: 2}, nil},
		{"everything set", redis.Config{
			Addrs: []string{"redis.internal:6379"}, Username: "u", Password: "p", DB: 1, KeyPrefix: "app:",
			DialTimeout: time.Second, Timeout: time.Second, TrustRefresh: time.Second,
		}, nil},
		{"no addrs", redis.Config{}, []string{"addrs"}},
		{"bad addrs", redis.Config{Addrs: []string{"localhost", ":6379", "h:0", "h:port"}},
			[]string{"addrs[0]", "addrs[1]", "addrs[2]", "addrs[3]"}},
		{"cluster with db", redis.Config{Addrs: []string{"a:1", "b:2"}, DB: 1}, []string{"db"}},
		{"negative db", redis.Config{Addrs: []string{"a:1"}, DB: -1}, []string{"db"}},
		{"hash tag in prefix", redis.Config{Addrs: []string{"a:1"}, KeyPrefix: "{app}:"}, []string{"key_prefix"}},
		{"negative durations", redis.Config{Addrs: []string{"a:1"}, DialTimeout: -1, Timeout: -1, TrustRefresh: -1},
			[]string{"dial_timeout", "timeout", "trust_refresh"}},
		{"tiny refresh", redis.Config{Addrs: []string{"a:1"}, TrustRefresh: time.Millisecond}, []string{"trust_refresh"}},
		{"all at once", redis.Config{KeyPrefix: "}", Timeout: -1}, []string{"addrs", "key_prefix", "timeout"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if len(tc.want) == 0 {
				assert.NoError(t, err)
				return
			}
			require.Error(t, err)
			for _, w := range tc.want {
				assert.ErrorContains(t, err, w)
			}
		})
	}
}

func TestConfigLogValueHidesPassword(t *testing.T) {
	cfg := redis.Config{Addrs: []string{"a:1"}, Password: "s3cret"}
	assert.NotContains(t, cfg.LogValue().String(), "s3cret")
	assert.Contains(t, cfg.LogValue().String(), "a:1")
}
