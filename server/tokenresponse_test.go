package server

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
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
		{"ToMap called before", func(r *fosite.AccessResponse) {
			r.SetExpiresIn(time.Hour)
			r.SetScopes(fosite.Arguments{"read"})
			r.ToMap()
		}, true},
		{"a member ToMap would overwrite", func(r *fosite.AccessResponse) {
			r.SetExpiresIn(time.Hour)
			r.SetScopes(fosite.Arguments{"read"})
			r.SetExtra("token_type", "mac")
		}, false},
		{"characters JSON escapes in every member", func(r *fosite.AccessResponse) {
			r.SetAccessToken("tok\"en\\<\x01>\u2028é")
			r.SetTokenType("Bearer\t&")
			r.SetExpiresIn(time.Hour)
			r.SetScopes(fosite.Arguments{"\x7f", "\xff"})
			r.SetExtra("refresh_token", "&rt")
		}, true},
		{"wrong types", func(r *fosite.AccessResponse) {
			r.SetExtra("expires_in", 3600)
			r.SetScopes(fosite.Arguments{"read"})
		}, false},
		{"empty refresh token", func(r *fosite.AccessResponse) {
			r.SetExpiresIn(time.Hour)
			r.SetScopes(fosite.Arguments{"read"})
			r.SetExtra("refresh_token", "")
		}, false},
		{"no expiry", func(r *fosite.AccessResponse) { r.SetScopes(fosite.Arguments{"read"}) }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := fosite.NewAccessResponse()
			resp.SetAccessToken("ory_at_token.signature")
			resp.SetTokenType("bearer")
			tc.build(resp)

			// Ours first: fosite's ToMap writes into the response.
			got := httptest.NewRecorder()
			handled := writeTokenResponse(got, resp)
			want := httptest.NewRecorder()
			f.WriteAccessResponse(context.Background(), want, nil, resp)
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

// BenchmarkWriteTokenResponse is the token response of every granted
// jwt-bearer request.
func BenchmarkWriteTokenResponse(b *testing.B) {
	resp := fosite.NewAccessResponse()
	resp.SetAccessToken("ory_at_" + strings.Repeat("x", 43) + "." + strings.Repeat("y", 43))
	resp.SetTokenType("bearer")
	resp.SetExpiresIn(time.Hour)
	resp.SetScopes(fosite.Arguments{"read", "write"})
	w := &headerOnlyWriter{}
	b.ReportAllocs()
	for b.Loop() {
		w.h = make(http.Header)
		if !writeTokenResponse(w, resp) {
			b.Fatal("not handled")
		}
	}
}

// headerOnlyWriter keeps the header of a response and discards the rest.
type headerOnlyWriter struct{ h http.Header }

func (w *headerOnlyWriter) Header() http.Header         { return w.h }
func (w *headerOnlyWriter) WriteHeader(int)             {}
func (w *headerOnlyWriter) Write(p []byte) (int, error) { return len(p), nil }
