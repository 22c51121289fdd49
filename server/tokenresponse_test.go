package server

import (
	"context"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/ory/fosite"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// writeTokenResponse must write exactly what fosite's WriteAccessResponse
// writes, bytes and headers, or leave the response to it.
func TestWriteTokenResponseMatchesFosite(t *testing.T) {
	f := &fosite.Fosite{Config: &fosite.Config{}}
	for _, tc := range []struct {
		name   string
		build  func(r *fosite.AccessResponse)
		handle bool
	}{
		{"plain", func(r *fosite.AccessResponse) {
			r.SetExpiresIn(time.Hour)
			r.SetScopes(fosite.Arguments{"read", "write"})
		}, true},
		{"no scope", func(r *fosite.AccessResponse) { r.SetExpiresIn(299 * time.Second); r.SetScopes(nil) }, true},
		{"HTML characters escaped as fosite does", func(r *fosite.AccessResponse) {
			r.SetExpiresIn(time.Minute)
			r.SetScopes(fosite.Arguments{"a<b>&c", "ü"})
		}, true},
		{"refresh token", func(r *fosite.AccessResponse) {
			r.SetExpiresIn(time.Hour)
			r.SetScopes(fosite.Arguments{"read"})
			r.SetExtra("refresh_token", "ory_rt_abc.def")
		}, true},
		{"another member", func(r *fosite.AccessResponse) {
			r.SetExpiresIn(time.Hour)
			r.SetScopes(fosite.Arguments{"read"})
			r.SetExtra("id_token", "x")
		}, false},
		{"no expiry", func(r *fosite.AccessResponse) { r.SetScopes(fosite.Arguments{"read"}) }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := fosite.NewAccessResponse()
			resp.SetAccessToken("ory_at_token.signature")
			resp.SetTokenType("bearer")
			tc.build(resp)

			want := httptest.NewRecorder()
			f.WriteAccessResponse(context.Background(), want, nil, resp)
			got := httptest.NewRecorder()
			handled := writeTokenResponse(got, resp)
			require.Equal(t, tc.handle, handled)
			if !handled {
				assert.Empty(t, got.Body.String(), "nothing written when left to fosite")
				return
			}
			assert.Equal(t, want.Code, got.Code)
			assert.Equal(t, want.Body.String(), got.Body.String())
			assert.Equal(t, want.Header(), got.Header())
		})
	}
}
