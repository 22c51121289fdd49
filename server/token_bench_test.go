package server_test

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jwtbearer/jwtbearer/handler"
	"github.com/jwtbearer/jwtbearer/handler/handlertest"
	"github.com/jwtbearer/jwtbearer/server"
)

// BenchmarkServerToken is one jwt-bearer token request through the
// server's HTTP handler, in process: what the server adds around fosite
// and the handler (form, request ID, audit event at info level, metrics,
// token response) without the network. Requests are built, and their
// assertions signed, before the clock starts; compare ns/op with
// handler's BenchmarkVerifyRS256, and watch B/op and allocs/op.
func BenchmarkServerToken(b *testing.B) {
	fuzzClearEnv(b)
	cfg, err := server.ParseConfig([]byte(fuzzServerYAML(b, false)), b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	// Info level, as jwtbearer serve logs: one audit line per token.
	logger := slog.New(slog.NewJSONHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelInfo}))
	srv, err := server.New(b.Context(), cfg, server.WithLogger(logger))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = srv.Close() })
	h := srv.Handler()

	reqs := make([]*http.Request, b.N)
	var wg sync.WaitGroup
	for i := range reqs {
		wg.Go(func() {
			a := fuzzKey().Sign(handlertest.Claims("TestClient", "User1", fuzzIssuer+"/token", time.Now()))
			body := url.Values{"grant_type": {handler.GrantType}, "assertion": {a}}.Encode()
			r := httptest.NewRequest(http.MethodPost, "/token", strings.NewReader(body))
			r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			reqs[i] = r
		})
	}
	wg.Wait()
	w := &discardWriter{}
	b.ReportAllocs()
	b.ResetTimer()
	for _, r := range reqs {
		w.header, w.status = make(http.Header), 0
		h.ServeHTTP(w, r)
		if w.status != http.StatusOK {
			b.Fatalf("status %d", w.status)
		}
	}
}

// discardWriter is an http.ResponseWriter that keeps the status only.
type discardWriter struct {
	header http.Header
	status int
}

func (w *discardWriter) Header() http.Header { return w.header }

func (w *discardWriter) WriteHeader(status int) {
	if w.status == 0 {
		w.status = status
	}
}

func (w *discardWriter) Write(p []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	return len(p), nil
}
