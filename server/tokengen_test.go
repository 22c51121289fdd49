package server

import (
	"context"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ory/fosite"
	"github.com/ory/fosite/compose"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The tokens of tokenStrategy must be fosite's: its own HMAC strategy
// validates them and finds the same signature, and a token changed in any
// way, or made with another secret, is refused.
func TestTokenStrategyMatchesFosite(t *testing.T) {
	ctx := context.Background()
	secret := []byte("0123456789abcdef0123456789abcdef-and-more-than-32-bytes")
	for _, entropy := range []int{0, 16, 32, 48, 64, 100, 200} {
		fc := &fosite.Config{GlobalSecret: secret, TokenEntropy: entropy, AccessTokenLifespan: time.Hour, RefreshTokenLifespan: time.Hour}
		ours, err := newTokenStrategy(fc)
		require.NoError(t, err)
		stock := compose.NewOAuth2HMACStrategy(fc)
		other := compose.NewOAuth2HMACStrategy(&fosite.Config{GlobalSecret: []byte("another-secret-of-at-least-32-bytes!")})

		req := fosite.NewRequest()
		req.Session = &fosite.DefaultSession{}
		req.Session.SetExpiresAt(fosite.AccessToken, time.Now().Add(time.Hour))
		req.Session.SetExpiresAt(fosite.RefreshToken, time.Now().Add(time.Hour))

		stockAT, _, err := stock.GenerateAccessToken(ctx, req)
		require.NoError(t, err)
		shape := regexp.MustCompile(`^ory_at_[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{43}$`)

		for range 50 {
			at, atSig, err := ours.GenerateAccessToken(ctx, req)
			require.NoError(t, err)
			assert.Regexp(t, shape, at)
			assert.Len(t, at, len(stockAT), "entropy %d", entropy)
			assert.NoError(t, stock.ValidateAccessToken(ctx, req, at))
			assert.Equal(t, stock.AccessTokenSignature(ctx, at), atSig)
			assert.Error(t, other.ValidateAccessToken(ctx, req, at))

			rt, rtSig, err := ours.GenerateRefreshToken(ctx, req)
			require.NoError(t, err)
			assert.True(t, strings.HasPrefix(rt, "ory_rt_"), rt)
			assert.NoError(t, stock.ValidateRefreshToken(ctx, req, rt))
			assert.Equal(t, stock.RefreshTokenSignature(ctx, rt), rtSig)
			// An access token is not a refresh token.
			assert.Error(t, stock.ValidateRefreshToken(ctx, req, at))

			// Any one character changed, in the random part or the MAC.
			for _, i := range []int{len("ory_at_"), len(at) / 2, len(at) - 2} {
				b := []byte(at)
				if b[i] == 'A' {
					b[i] = 'B'
				} else {
					b[i] = 'A'
				}
				assert.Error(t, stock.ValidateAccessToken(ctx, req, string(b)), "changed at %d", i)
			}
		}
	}
}

func TestTokenStrategyUnique(t *testing.T) {
	ours, err := newTokenStrategy(&fosite.Config{GlobalSecret: []byte("0123456789abcdef0123456789abcdef")})
	require.NoError(t, err)
	var mu sync.Mutex
	seen := map[string]bool{}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 500 {
				at, sig, err := ours.GenerateAccessToken(context.Background(), nil)
				assert.NoError(t, err)
				mu.Lock()
				assert.False(t, seen[at] || seen[sig])
				seen[at], seen[sig] = true, true
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	assert.Len(t, seen, 8000)
}

func TestTokenStrategyRefusesWeakConfig(t *testing.T) {
	_, err := newTokenStrategy(&fosite.Config{GlobalSecret: []byte("short")})
	assert.Error(t, err)
	_, err = newTokenStrategy(&fosite.Config{})
	assert.Error(t, err)
}
