package redis_test

import (
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/ory/fosite"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/jwtbearer/jwtbearer/store"
	"github.com/jwtbearer/jwtbearer/store/redis"
	"github.com/jwtbearer/jwtbearer/store/redis/redistest"
)

// TestRedisKilledAndRestarted kills Redis under a store, then restarts it:
// meanwhile every operation that needs Redis fails fast with
// ErrUnavailable and TrustedKeys answers from the cache; afterwards the
// same store works again, with what was written before the crash.
func TestRedisKilledAndRestarted(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	const timeout = 200 * time.Millisecond
	cfg := redis.Config{
		Addrs: []string{srv.Addr}, KeyPrefix: newPrefix(),
		DialTimeout: timeout, Timeout: timeout, TrustRefresh: 50 * time.Millisecond,
	}
	s := openStore(t, cfg)
	ctx := t.Context()
	const issuer = "https://issuer.example"
	hour := time.Now().Add(time.Hour)

	_, err := s.CreateTrust(ctx, ecTrust(t, "t1", issuer, "alice"))
	require.NoError(t, err)
	fresh, err := s.ClaimJTI(ctx, issuer, "claimed-before", hour)
	require.NoError(t, err)
	require.True(t, fresh)
	require.NoError(t, s.CreateAccessTokenSession(ctx, "at-before", newRequest("req-1", "client-1", hour, hour)))
	require.NoError(t, s.CreateClient(ctx, &fosite.DefaultClient{ID: "client-1", Secret: []byte("hash")}))

	srv.Kill()

	ops := map[string]func() error{
		"ClaimJTI": func() error {
			_, err := s.ClaimJTI(ctx, issuer, "during", hour)
			return err
		},
		"SetClientAssertionJWT":   func() error { return s.SetClientAssertionJWT(ctx, "during", hour) },
		"ClientAssertionJWTValid": func() error { return s.ClientAssertionJWTValid(ctx, "during") },
		"CreateAccessTokenSession": func() error {
			return s.CreateAccessTokenSession(ctx, "at-during", newRequest("req-2", "client-1", hour, hour))
		},
		"CreateRefreshTokenSession": func() error {
			return s.CreateRefreshTokenSession(ctx, "rt-during", "at-during", newRequest("req-2", "client-1", hour, hour))
		},
		"GetAccessTokenSession": func() error {
			_, err := s.GetAccessTokenSession(ctx, "at-before", nil)
			return err
		},
		"GetRefreshTokenSession": func() error {
			_, err := s.GetRefreshTokenSession(ctx, "rt-before", nil)
			return err
		},
		"DeleteAccessTokenSession": func() error { return s.DeleteAccessTokenSession(ctx, "at-x") },
		"RevokeAccessToken":        func() error { return s.RevokeAccessToken(ctx, "req-1") },
		"RotateRefreshToken":       func() error { return s.RotateRefreshToken(ctx, "req-1", "rt-before") },
		"GetClient": func() error {
			_, err := s.GetClient(ctx, "client-1")
			return err
		},
		"CreateClient": func() error { return s.CreateClient(ctx, &fosite.DefaultClient{ID: "client-2"}) },
		"DeleteClient": func() error { return s.DeleteClient(ctx, "client-1") },
		"CreateTrust": func() error {
			_, err := s.CreateTrust(ctx, ecTrust(t, "t2", issuer, "bob"))
			return err
		},
		"GetTrust": func() error {
			_, err := s.GetTrust(ctx, "t1")
			return err
		},
		"ListTrust": func() error {
			_, err := s.ListTrust(ctx)
			return err
		},
		"DeleteTrust": func() error { return s.DeleteTrust(ctx, "t1") },
		"Ping":        func() error { return s.Ping(ctx) },
	}
	for name, op := range ops {
		start := time.Now()
		err := op()
		took := time.Since(start)
		assert.ErrorIs(t, err, store.ErrUnavailable, name)
		assert.NotErrorIs(t, err, fosite.ErrNotFound, "%s: an outage is not a missing record", name)
		assert.Less(t, took, 2*timeout, "%s fails fast", name)
	}

	// Many requests at once during the outage: errors, no panic.
	var wg sync.WaitGroup
	for range 32 {
		wg.Go(func() {
			for _, op := range ops {
				if err := op(); !errors.Is(err, store.ErrUnavailable) {
					t.Errorf("during the outage: %v", err)
				}
			}
		})
	}
	wg.Wait()

	time.Sleep(4 * cfg.TrustRefresh) // the refresher fails a few times
	assert.Equal(t, []string{"t1-key"}, kidsOf(t, s, issuer, "alice"), "TrustedKeys answers from the cache")

	srv.Restart(t)
	took := waitFor(5*time.Second, func() bool { return s.Ping(ctx) == nil })
	require.NoError(t, s.Ping(ctx), "the store reconnects by itself")
	t.Logf("reconnected %v after the restart", took)

	fresh, err = s.ClaimJTI(ctx, issuer, "claimed-before", hour)
	require.NoError(t, err)
	assert.False(t, fresh, "a jti claimed before the crash is still refused (append-only file)")
	fresh, err = s.ClaimJTI(ctx, issuer, "claimed-after", hour)
	require.NoError(t, err)
	assert.True(t, fresh)

	got, err := s.GetAccessTokenSession(ctx, "at-before", nil)
	require.NoError(t, err, "token sessions survive the crash")
	assert.Equal(t, "req-1", got.GetID())
	_, err = s.GetClient(ctx, "client-1")
	require.NoError(t, err, "clients survive the crash")

	_, err = s.CreateTrust(ctx, ecTrust(t, "t3", issuer, "carol"))
	require.NoError(t, err)
	assert.Equal(t, []string{"t3-key"}, kidsOf(t, s, issuer, "carol"))
	assert.Equal(t, []string{"t1-key"}, kidsOf(t, s, issuer, "alice"))
}

// TestTrustChangesWhileDisconnected cuts one instance off Redis (behind a
// proxy) while another changes the trust relationships: the cut-off
// instance keeps serving its cache, and catches up once reconnected, with
// no message to tell it.
func TestTrustChangesWhileDisconnected(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	proxy := startProxy(t, srv.Addr)
	prefix := newPrefix()
	const timeout = 200 * time.Millisecond
	a := openStore(t, redis.Config{Addrs: []string{srv.Addr}, KeyPrefix: prefix})
	b := openStore(t, redis.Config{
		Addrs: []string{proxy.addr}, KeyPrefix: prefix,
		DialTimeout: timeout, Timeout: timeout, TrustRefresh: 100 * time.Millisecond,
	})
	ctx := t.Context()
	const issuer = "https://issuer.example"

	_, err := a.CreateTrust(ctx, ecTrust(t, "t1", issuer, "alice"))
	require.NoError(t, err)
	waitFor(3*time.Second, func() bool { return len(kidsOf(t, b, issuer, "alice")) == 1 })
	require.Equal(t, []string{"t1-key"}, kidsOf(t, b, issuer, "alice"))

	proxy.pause()
	_, err = b.ClaimJTI(ctx, issuer, "jti-1", time.Now().Add(time.Hour))
	require.ErrorIs(t, err, store.ErrUnavailable, "B is cut off")

	_, err = a.CreateTrust(ctx, ecTrust(t, "t2", issuer, "bob"))
	require.NoError(t, err)
	require.NoError(t, a.DeleteTrust(ctx, "t1"))
	time.Sleep(300 * time.Millisecond)
	assert.Equal(t, []string{"t1-key"}, kidsOf(t, b, issuer, "alice"), "B serves its last copy while cut off")
	assert.Empty(t, kidsOf(t, b, issuer, "bob"))

	proxy.resume()
	took := waitFor(5*time.Second, func() bool {
		return len(kidsOf(t, b, issuer, "bob")) == 1 && len(kidsOf(t, b, issuer, "alice")) == 0
	})
	assert.Equal(t, []string{"t2-key"}, kidsOf(t, b, issuer, "bob"), "B catches up after reconnecting")
	assert.Empty(t, kidsOf(t, b, issuer, "alice"))
	t.Logf("B caught up %v after reconnecting", took)

	fresh, err := b.ClaimJTI(ctx, issuer, "jti-1", time.Now().Add(time.Hour))
	require.NoError(t, err)
	assert.True(t, fresh)
}

// proxy forwards TCP connections to a Redis until paused, which closes the
// listener and every connection, as a network partition would (but with
// resets rather than silence).
type proxy struct {
	addr, upstream string

	mu     sync.Mutex
	ln     net.Listener
	conns  map[net.Conn]struct{}
	paused bool
	wg     sync.WaitGroup
}

func startProxy(t *testing.T, upstream string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p := &proxy{addr: ln.Addr().String(), upstream: upstream, conns: make(map[net.Conn]struct{})}
	p.serve(ln)
	t.Cleanup(p.pause)
	return p
}

func (p *proxy) serve(ln net.Listener) {
	p.ln = ln
	p.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", p.upstream)
			if err != nil {
				_ = c.Close()
				continue
			}
			p.mu.Lock()
			if p.paused {
				p.mu.Unlock()
				_ = c.Close()
				_ = up.Close()
				continue
			}
			p.conns[c], p.conns[up] = struct{}{}, struct{}{}
			p.mu.Unlock()
			p.wg.Go(func() { p.pipe(c, up) })
			p.wg.Go(func() { p.pipe(up, c) })
		}
	})
}

func (p *proxy) pipe(dst, src net.Conn) {
	_, _ = io.Copy(dst, src)
	_ = dst.Close()
	_ = src.Close()
}

func (p *proxy) pause() {
	p.mu.Lock()
	if p.paused {
		p.mu.Unlock()
		return
	}
	p.paused = true
	_ = p.ln.Close()
	for c := range p.conns {
		_ = c.Close()
	}
	clear(p.conns)
	p.mu.Unlock()
	p.wg.Wait()
}

func (p *proxy) resume() {
	p.mu.Lock()
	defer p.mu.Unlock()
	ln, err := net.Listen("tcp", p.addr)
	if err != nil {
		panic(err)
	}
	p.paused = false
	p.serve(ln)
}
