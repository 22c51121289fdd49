package jwks

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v3"
	"go.uber.org/goleak"

	"github.com/jwtbearer/jwtbearer/store"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// ---- test helpers ----

// fakeClock is a settable clock for Config.Now.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *fakeClock {
	return &fakeClock{t: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

// testKeys are generated once: RSA generation is slow under -race.
type testKeys struct {
	rsaA, rsaB, rsaSmall *rsa.PrivateKey
	ecA, ecB             *ecdsa.PrivateKey
	ed                   ed25519.PrivateKey
}

var keysOnce = sync.OnceValue(func() testKeys {
	must := func(err error) {
		if err != nil {
			panic(err)
		}
	}
	var k testKeys
	var err error
	k.rsaA, err = rsa.GenerateKey(rand.Reader, 2048)
	must(err)
	k.rsaB, err = rsa.GenerateKey(rand.Reader, 2048)
	must(err)
	k.rsaSmall, err = rsa.GenerateKey(rand.Reader, 1024)
	must(err)
	k.ecA, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(err)
	k.ecB, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	must(err)
	_, k.ed, err = ed25519.GenerateKey(rand.Reader)
	must(err)
	return k
})

// jwk renders key as a JWK object (a map, so tests can add members).
func jwk(t *testing.T, key any, kid, alg, use string) map[string]any {
	t.Helper()
	b, err := json.Marshal(jose.JSONWebKey{Key: key, KeyID: kid, Algorithm: alg, Use: use})
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func jwkSet(t *testing.T, keys ...map[string]any) string {
	t.Helper()
	if keys == nil {
		keys = []map[string]any{}
	}
	b, err := json.Marshal(map[string]any{"keys": keys})
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// response is what a fakeIssuer answers.
type response struct {
	status       int // 0: 200
	cacheControl string
	age          string
	body         string
}

// fakeIssuer serves one changeable response on every path and counts hits.
type fakeIssuer struct {
	*httptest.Server
	hits   atomic.Int64
	accept atomic.Value // last Accept header

	mu   sync.Mutex
	resp response
}

func newIssuer(t *testing.T, r response) *fakeIssuer {
	t.Helper()
	f := &fakeIssuer{resp: r}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		f.hits.Add(1)
		f.accept.Store(req.Header.Get("Accept"))
		f.mu.Lock()
		r := f.resp
		f.mu.Unlock()
		if r.cacheControl != "" {
			w.Header().Set("Cache-Control", r.cacheControl)
		}
		if r.age != "" {
			w.Header().Set("Age", r.age)
		}
		w.WriteHeader(cmpOr(r.status, http.StatusOK))
		_, _ = io.WriteString(w, r.body)
	}))
	t.Cleanup(f.Close)
	return f
}

func cmpOr(v, def int) int {
	if v == 0 {
		return def
	}
	return v
}

func (f *fakeIssuer) set(r response) {
	f.mu.Lock()
	f.resp = r
	f.mu.Unlock()
}

// loopbackOnly is a transport that refuses, and records, any request to a
// host that is not loopback: tests never reach the network.
type loopbackOnly struct {
	base http.RoundTripper

	mu      sync.Mutex
	refused []string
}

func newLoopbackOnly() *loopbackOnly {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.DisableKeepAlives = true
	return &loopbackOnly{base: t}
}

func (l *loopbackOnly) RoundTrip(r *http.Request) (*http.Response, error) {
	if !store.IsLoopback(r.URL.Hostname()) {
		l.mu.Lock()
		l.refused = append(l.refused, r.URL.String())
		l.mu.Unlock()
		return nil, errors.New("test transport: non-loopback request refused")
	}
	return l.base.RoundTrip(r)
}

func (l *loopbackOnly) refusedURLs() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.refused)
}

// logBuffer collects JSON log records.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (b *logBuffer) records(t *testing.T) []map[string]any {
	t.Helper()
	var out []map[string]any
	for line := range strings.Lines(b.String()) {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		out = append(out, m)
	}
	return out
}

// newCache returns a cache on clock, with a loopback-only client, logging
// to the returned buffer. edit may change the config.
func newCache(t *testing.T, clock *fakeClock, edit func(*Config)) (*Cache, *logBuffer, *loopbackOnly) {
	t.Helper()
	logs := &logBuffer{}
	transport := newLoopbackOnly()
	cfg := Config{
		HTTPClient: &http.Client{Transport: transport},
		Logger:     slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Now:        clock.Now,
	}
	if edit != nil {
		edit(&cfg)
	}
	return New(cfg), logs, transport
}

func kids(keys []jose.JSONWebKey) []string {
	out := make([]string, 0, len(keys))
	for _, k := range keys {
		out = append(out, k.KeyID)
	}
	slices.Sort(out)
	return out
}

func onlyStatus(t *testing.T, c *Cache) Status {
	t.Helper()
	st := c.Status()
	if len(st) != 1 {
		t.Fatalf("Status() = %+v; want one entry", st)
	}
	return st[0]
}

// ---- tests ----

func TestNewDefaults(t *testing.T) {
	type bounds struct {
		Timeout, DefaultTTL, MinTTL, MaxTTL, RefetchInterval, MaxStale time.Duration
		MaxBytes                                                       int64
	}
	c := New(Config{})
	want := bounds{
		Timeout: 5 * time.Second, MaxBytes: 1 << 20, DefaultTTL: 15 * time.Minute,
		MinTTL: time.Minute, MaxTTL: 24 * time.Hour, RefetchInterval: 30 * time.Second,
		MaxStale: time.Hour,
	}
	got := bounds{c.cfg.Timeout, c.cfg.DefaultTTL, c.cfg.MinTTL, c.cfg.MaxTTL, c.cfg.RefetchInterval, c.cfg.MaxStale, c.cfg.MaxBytes}
	if got != want {
		t.Errorf("defaults = %+v; want %+v", got, want)
	}
	if c.client == nil || c.client.CheckRedirect == nil || c.log == nil || c.now == nil {
		t.Error("New left client, logger or clock unset")
	}

	// MaxTTL below MinTTL is raised; DefaultTTL is kept within the bounds.
	c = New(Config{MinTTL: time.Hour, MaxTTL: time.Minute, DefaultTTL: time.Second})
	if c.cfg.MaxTTL != time.Hour || c.cfg.DefaultTTL != time.Hour {
		t.Errorf("MaxTTL, DefaultTTL = %v, %v; want 1h, 1h", c.cfg.MaxTTL, c.cfg.DefaultTTL)
	}
}

func TestKeysBasic(t *testing.T) {
	k := keysOnce()
	f := newIssuer(t, response{body: jwkSet(t,
		jwk(t, k.rsaA.Public(), "rsa", "RS256", "sig"),
		jwk(t, k.ecA.Public(), "ec", "", ""),
	)})
	c, logs, _ := newCache(t, newClock(), nil)

	all, err := c.Keys(t.Context(), f.URL+"/jwks", "")
	if err != nil {
		t.Fatal(err)
	}
	if got := kids(all); !slices.Equal(got, []string{"ec", "rsa"}) {
		t.Errorf("kids = %v", got)
	}
	one, err := c.Keys(t.Context(), f.URL+"/jwks", "rsa")
	if err != nil || len(one) != 1 || one[0].KeyID != "rsa" || one[0].Algorithm != "RS256" {
		t.Fatalf("Keys(rsa) = %+v, %v", one, err)
	}
	if _, ok := one[0].Key.(*rsa.PublicKey); !ok {
		t.Errorf("key is %T; want *rsa.PublicKey", one[0].Key)
	}
	if got := f.accept.Load(); got != "application/jwk-set+json, application/json" {
		t.Errorf("Accept = %q", got)
	}
	if f.hits.Load() != 1 {
		t.Errorf("hits = %d; want 1", f.hits.Load())
	}

	// The result is the caller's: changing it changes nothing cached.
	all[0].KeyID = "mutated"
	all[1] = jose.JSONWebKey{}
	again, err := c.Keys(t.Context(), f.URL+"/jwks", "")
	if err != nil || !slices.Equal(kids(again), []string{"ec", "rsa"}) {
		t.Errorf("after mutating a result: %v, %v", kids(again), err)
	}

	st := onlyStatus(t, c)
	if st.State != "ok" || st.Kind != "jwks" || st.Keys != 2 || st.LastError != "" || st.URL != f.URL+"/jwks" {
		t.Errorf("Status = %+v", st)
	}
	recs := logs.records(t)
	if len(recs) != 1 || recs[0]["msg"] != "jwks: fetched" || recs[0]["level"] != "INFO" ||
		recs[0]["keys"] != float64(2) || recs[0]["skipped"] != float64(0) || recs[0]["ttl"] == nil {
		t.Errorf("logs = %v", recs)
	}
}

// ttlOf is the freshness the cache gave the only URL it holds, as
// UsableUntil - MaxStale - fetch time.
func ttlOf(t *testing.T, c *Cache, fetchedAt time.Time) time.Duration {
	t.Helper()
	return onlyStatus(t, c).UsableUntil.Sub(fetchedAt) - c.cfg.MaxStale
}

func TestFreshness(t *testing.T) {
	k := keysOnce()
	body := jwkSet(t, jwk(t, k.ecA.Public(), "a", "", ""))
	tests := []struct {
		name         string
		cacheControl string
		age          string
		want         time.Duration
	}{
		{"max-age honoured", "public, max-age=300", "", 5 * time.Minute},
		{"max-age upper case and quoted", `MAX-AGE="600"`, "", 10 * time.Minute},
		{"max-age below MinTTL", "max-age=5", "", time.Minute},
		{"max-age zero", "max-age=0", "", time.Minute},
		{"max-age above MaxTTL", "max-age=999999", "", 24 * time.Hour},
		{"max-age overflowing int64", "max-age=99999999999999999999999", "", 24 * time.Hour},
		{"absent", "", "", 15 * time.Minute},
		{"malformed max-age", "max-age=ten", "", 15 * time.Minute},
		{"negative max-age", "max-age=-5", "", 15 * time.Minute},
		{"no-store", "no-store, max-age=3600", "", time.Minute},
		{"no-cache", "max-age=3600, no-cache", "", time.Minute},
		{"age subtracted", "max-age=600", "120", 8 * time.Minute},
		{"malformed age ignored", "max-age=600", "soon", 10 * time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newIssuer(t, response{cacheControl: tt.cacheControl, age: tt.age, body: body})
			clock := newClock()
			c, _, _ := newCache(t, clock, nil)
			if _, err := c.Keys(t.Context(), f.URL, ""); err != nil {
				t.Fatal(err)
			}
			got := ttlOf(t, c, clock.Now())
			if lo := tt.want - tt.want/10; got < lo || got > tt.want {
				t.Errorf("freshness = %v; want within [%v, %v]", got, lo, tt.want)
			}
		})
	}
}

func TestJitter(t *testing.T) {
	k := keysOnce()
	f := newIssuer(t, response{cacheControl: "max-age=1000", body: jwkSet(t, jwk(t, k.ecA.Public(), "a", "", ""))})
	clock := newClock()
	c, _, _ := newCache(t, clock, nil)
	const n = 40
	for i := range n {
		if _, err := c.Keys(t.Context(), fmt.Sprintf("%s/%d", f.URL, i), ""); err != nil {
			t.Fatal(err)
		}
	}
	distinct := map[time.Time]bool{}
	for _, st := range c.Status() {
		ttl := st.UsableUntil.Sub(clock.Now()) - c.cfg.MaxStale
		if ttl < 900*time.Second || ttl > 1000*time.Second {
			t.Errorf("%s: freshness %v; want within [900s, 1000s]", st.URL, ttl)
		}
		distinct[st.UsableUntil] = true
	}
	if len(distinct) < n/2 {
		t.Errorf("%d distinct freshness ends among %d fetches; the jitter is missing", len(distinct), n)
	}
}

func TestRefetchWhenStale(t *testing.T) {
	k := keysOnce()
	f := newIssuer(t, response{cacheControl: "max-age=600", body: jwkSet(t, jwk(t, k.ecA.Public(), "a", "", ""))})
	clock := newClock()
	c, _, _ := newCache(t, clock, nil)
	get := func(wantHits int64) {
		t.Helper()
		if keys, err := c.Keys(t.Context(), f.URL, "a"); err != nil || len(keys) != 1 {
			t.Fatalf("Keys = %v, %v", keys, err)
		}
		if got := f.hits.Load(); got != wantHits {
			t.Fatalf("hits = %d; want %d", got, wantHits)
		}
	}
	get(1)
	clock.Advance(539 * time.Second) // below 90% of max-age: still fresh
	get(1)
	clock.Advance(61 * time.Second) // max-age reached
	get(2)
	get(2)
}

func TestFetchRefused(t *testing.T) {
	k := keysOnce()
	good := jwkSet(t, jwk(t, k.ecA.Public(), "a", "", ""))
	big := `{"keys":[],"pad":"` + strings.Repeat("x", 2000) + `"}`
	tests := []struct {
		name    string
		handler http.HandlerFunc
		wantErr string
	}{
		{"redirect", func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "/real", http.StatusFound)
		}, "status 302: redirects are not followed"},
		{"permanent redirect", func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "/real", http.StatusPermanentRedirect)
		}, "status 308: redirects are not followed"},
		{"server error", func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusInternalServerError)
			_, _ = io.WriteString(w, "SECRET-BODY-TEXT")
		}, "status 500"},
		{"not found", func(w http.ResponseWriter, r *http.Request) {
			http.NotFound(w, r)
		}, "status 404"},
		{"no content", func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusNoContent)
		}, "status 204"},
		{"invalid JSON", func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.WriteString(w, `{"keys": [SECRET-BODY-TEXT`)
		}, "not a JSON object"},
		{"JSON array", func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.WriteString(w, `[]`)
		}, "not a JSON object"},
		{"no keys member", func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.WriteString(w, `{"Keys": []}`)
		}, `no "keys" member`},
		{"keys null", func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.WriteString(w, `{"keys": null}`)
		}, `"keys" is not an array`},
		{"keys object", func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.WriteString(w, `{"keys": {}}`)
		}, `"keys" is not an array`},
		{"too large, chunked", func(w http.ResponseWriter, r *http.Request) {
			for i := range big {
				_, _ = io.WriteString(w, big[i:i+1])
				w.(http.Flusher).Flush()
			}
		}, "larger than the limit of 1024 bytes"},
		{"too large, with length", func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.WriteString(w, big)
		}, "response of 2020 bytes is larger than the limit of 1024"},
	}
	for _, tt := range tests {
		for _, ownClient := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/own client %v", tt.name, ownClient), func(t *testing.T) {
				var realHits atomic.Int64
				mux := http.NewServeMux()
				mux.HandleFunc("/jwks", tt.handler)
				mux.HandleFunc("/real", func(w http.ResponseWriter, r *http.Request) {
					realHits.Add(1)
					_, _ = io.WriteString(w, good)
				})
				srv := httptest.NewServer(mux)
				defer srv.Close()

				clock := newClock()
				var given *http.Client
				c, logs, _ := newCache(t, clock, func(cfg *Config) {
					cfg.MaxBytes = 1024
					if ownClient {
						// A client that would follow redirects: the
						// cache must refuse them anyway, without
						// changing the client.
						given = &http.Client{Transport: newLoopbackOnly()}
						cfg.HTTPClient = given
					} else {
						cfg.HTTPClient = nil
					}
				})
				keys, err := c.Keys(t.Context(), srv.URL+"/jwks", "")
				if !errors.Is(err, ErrUnavailable) {
					t.Fatalf("Keys = %v, %v; want ErrUnavailable", keys, err)
				}
				if !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), srv.URL+"/jwks") {
					t.Errorf("error %q; want it to contain %q and the URL", err, tt.wantErr)
				}
				if strings.Contains(err.Error(), "SECRET-BODY") || strings.Contains(logs.String(), "SECRET-BODY") {
					t.Errorf("error or log quotes the body: %q", err)
				}
				if realHits.Load() != 0 {
					t.Error("the redirect was followed")
				}
				if given != nil && given.CheckRedirect != nil {
					t.Error("the given client was modified")
				}
				st := onlyStatus(t, c)
				if st.State != "failing" || st.LastError == "" || !st.LastSuccess.IsZero() {
					t.Errorf("Status = %+v", st)
				}
			})
		}
	}
}

func TestBodyLimitStopsReading(t *testing.T) {
	const total = 100 << 20
	for _, declareLength := range []bool{false, true} {
		t.Run(fmt.Sprintf("declared length %v", declareLength), func(t *testing.T) {
			var written atomic.Int64
			done := make(chan struct{})
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				defer close(done)
				if declareLength {
					w.Header().Set("Content-Length", fmt.Sprint(total))
				}
				_, _ = io.WriteString(w, `{"keys":[],"pad":"`)
				chunk := bytes.Repeat([]byte("x"), 32<<10)
				for written.Load() < total {
					n, err := w.Write(chunk)
					written.Add(int64(n))
					if err != nil {
						return
					}
				}
			}))
			defer srv.Close()
			c, _, _ := newCache(t, newClock(), nil)

			_, err := c.Keys(t.Context(), srv.URL, "")
			if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "larger than the limit") {
				t.Fatalf("err = %v; want a size error", err)
			}
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("handler still writing 10s after the cache gave up")
			}
			if n := written.Load(); n >= total {
				t.Errorf("server wrote all %d bytes; the body was read to the end", n)
			}
		})
	}
}

func TestSlowServer(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(2 * time.Second):
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	c, _, _ := newCache(t, newClock(), func(cfg *Config) { cfg.Timeout = 200 * time.Millisecond })

	start := time.Now()
	_, err := c.Keys(t.Context(), srv.URL, "")
	elapsed := time.Since(start)
	if !errors.Is(err, ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) ||
		!strings.Contains(err.Error(), "timed out after 200ms") {
		t.Errorf("err = %v; want a timeout wrapping ErrUnavailable", err)
	}
	if elapsed > time.Second {
		t.Errorf("Keys took %v; want about 200ms", elapsed)
	}
}

func TestSkippedKeys(t *testing.T) {
	k := keysOnce()
	withMember := func(m map[string]any, name string, v any) map[string]any {
		m[name] = v
		return m
	}
	ecNoKid := jwk(t, k.ecA.Public(), "", "ES256", "sig")
	wantThumb, err := store.Thumbprint(&jose.JSONWebKey{Key: k.ecA.Public()})
	if err != nil {
		t.Fatal(err)
	}
	privateRSA := jwk(t, k.rsaB, "rsa-private", "RS256", "")
	privateD := privateRSA["d"].(string)
	set := jwkSet(t,
		jwk(t, k.rsaA.Public(), "rsa-good", "RS256", "sig"),
		ecNoKid,
		jwk(t, k.ed.Public(), "ed-good", "EdDSA", ""),
		jwk(t, k.ecB.Public(), "same-twice", "ES384", ""),
		jwk(t, k.ecB.Public(), "same-twice", "ES384", ""), // repeat of the same key: kept once
		map[string]any{"kty": "XYZ", "kid": "unknown-kty"},
		jwk(t, k.rsaA.Public(), "unknown-alg", "RS999", ""),
		map[string]any{"kty": "oct", "kid": "oct", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA"},
		privateRSA,
		withMember(jwk(t, k.rsaB.Public(), "rsa-p-only", "", ""), "p", "AQAB"),
		jwk(t, k.rsaB.Public(), "enc", "RSA-OAEP", "enc"),
		jwk(t, k.rsaB.Public(), "enc-noalg", "", "enc"),
		jwk(t, k.rsaSmall.Public(), "rsa-1024", "RS256", ""),
		jwk(t, k.rsaA.Public(), "alg-mismatch", "ES256", ""),
		map[string]any{"kty": "RSA", "kid": "broken", "n": "!!", "e": "AQAB"},
		jwk(t, k.rsaA.Public(), "dup", "RS256", ""),
		jwk(t, k.rsaB.Public(), "dup", "RS256", ""), // same kid, other key: both dropped
		jwk(t, k.ecA.Public(), "dup-alg", "ES256", ""),
		jwk(t, k.ecA.Public(), "dup-alg", "", ""), // same key, other alg: both dropped
	)
	set = strings.Replace(set, `"keys":[`, `"keys":[42,"str",null,`, 1)
	f := newIssuer(t, response{body: set})
	c, logs, _ := newCache(t, newClock(), nil)

	keys, err := c.Keys(t.Context(), f.URL, "")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"ed-good", "rsa-good", "same-twice", wantThumb}
	slices.Sort(want)
	if got := kids(keys); !slices.Equal(got, want) {
		t.Errorf("kids = %v; want %v", got, want)
	}
	for _, key := range keys {
		if !key.IsPublic() {
			t.Errorf("kid %q: private key kept", key.KeyID)
		}
	}

	skipped := map[string]string{} // kid -> reason
	var dropped []string
	var info map[string]any
	for _, r := range logs.records(t) {
		switch r["msg"] {
		case "jwks: key skipped":
			if r["level"] != "WARN" || r["url"] != f.URL {
				t.Errorf("skip record %v", r)
			}
			kid, _ := r["kid"].(string)
			skipped[kid+fmt.Sprint(r["index"])] = r["reason"].(string)
		case "jwks: kid names different keys; all of them skipped":
			dropped = append(dropped, r["kid"].(string))
		case "jwks: fetched":
			info = r
		}
	}
	wantSkipped := map[string]string{
		"0": "not a JSON object", "1": "not a JSON object", "2": "not a JSON object",
		"unknown-kty8":   "unknown json web key type",
		"unknown-alg9":   "unknown JWS algorithm",
		"oct10":          "symmetric",
		"rsa-private11":  `private key (has a "d" member)`,
		"rsa-p-only12":   `private key (has a "p" member)`,
		"enc13":          `use is "enc"`,
		"enc-noalg14":    `use is "enc"`,
		"rsa-102415":     "1024 bits",
		"alg-mismatch16": "does not fit",
		"broken17":       "",
	}
	if len(skipped) != len(wantSkipped) {
		t.Errorf("skip records %v; want %d", skipped, len(wantSkipped))
	}
	for key, reason := range wantSkipped {
		got, ok := skipped[key]
		if !ok || !strings.Contains(got, reason) {
			t.Errorf("skip of %s: reason %q; want it to contain %q", key, got, reason)
		}
	}
	slices.Sort(dropped)
	if !slices.Equal(dropped, []string{"dup", "dup-alg"}) {
		t.Errorf("dropped kids %v; want [dup dup-alg]", dropped)
	}
	if info == nil || info["keys"] != float64(4) || info["skipped"] != float64(22-4) {
		t.Errorf("fetched record %v; want keys 4, skipped 18", info)
	}
	if strings.Contains(logs.String(), privateD) {
		t.Error("the log quotes a private key")
	}
}

func TestNoUsableKeys(t *testing.T) {
	k := keysOnce()
	for name, body := range map[string]string{
		"empty set":    `{"keys": []}`,
		"only bad key": jwkSet(t, jwk(t, k.rsaSmall.Public(), "small", "", "")),
	} {
		t.Run(name, func(t *testing.T) {
			f := newIssuer(t, response{body: body})
			c, logs, _ := newCache(t, newClock(), nil)
			keys, err := c.Keys(t.Context(), f.URL, "")
			if err != nil || len(keys) != 0 {
				t.Fatalf("Keys = %v, %v; want no keys and no error", keys, err)
			}
			if st := onlyStatus(t, c); st.State != "ok" || st.Keys != 0 || st.LastSuccess.IsZero() {
				t.Errorf("Status = %+v", st)
			}
			if !strings.Contains(logs.String(), "jwks: key set holds no usable key") {
				t.Errorf("no warning logged: %s", logs.String())
			}
		})
	}
}

func TestUnknownKid(t *testing.T) {
	k := keysOnce()
	f := newIssuer(t, response{cacheControl: "max-age=3600", body: jwkSet(t, jwk(t, k.ecA.Public(), "a", "", ""))})
	clock := newClock()
	c, _, _ := newCache(t, clock, nil)
	steps := []struct {
		advance  time.Duration
		kid      string
		wantKeys int
		wantHits int64
	}{
		{0, "a", 1, 1},
		{0, "zzz", 0, 1},                // unknown kid, but the set was fetched just now
		{30 * time.Second, "zzz", 0, 2}, // unknown kid: refetch at once
		{0, "yyy", 0, 2},                // another one right after: no fetch
		{29 * time.Second, "yyy", 0, 2}, // still within RefetchInterval
		{1 * time.Second, "yyy", 0, 3},  // interval elapsed
		{0, "a", 1, 3},                  // known kid: no fetch
		{time.Minute, "", 1, 3},         // all keys: no fetch while fresh
		{30 * time.Second, "www", 0, 4}, // interval elapsed again
	}
	for i, s := range steps {
		clock.Advance(s.advance)
		keys, err := c.Keys(t.Context(), f.URL, s.kid)
		if err != nil || len(keys) != s.wantKeys {
			t.Fatalf("step %d: Keys(%q) = %v, %v; want %d keys", i, s.kid, keys, err, s.wantKeys)
		}
		if got := f.hits.Load(); got != s.wantHits {
			t.Fatalf("step %d: hits = %d; want %d", i, got, s.wantHits)
		}
	}
}

func TestRotation(t *testing.T) {
	k := keysOnce()
	setA := jwkSet(t, jwk(t, k.rsaA.Public(), "A", "RS256", ""))
	setB := jwkSet(t, jwk(t, k.rsaB.Public(), "B", "RS256", ""))
	f := newIssuer(t, response{cacheControl: "max-age=3600", body: setA})
	clock := newClock()
	c, _, _ := newCache(t, clock, nil)

	if keys, err := c.Keys(t.Context(), f.URL, "A"); err != nil || len(keys) != 1 {
		t.Fatalf("Keys(A) = %v, %v", keys, err)
	}
	f.set(response{cacheControl: "max-age=3600", body: setB})
	clock.Advance(time.Minute)
	keys, err := c.Keys(t.Context(), f.URL, "B")
	if err != nil || len(keys) != 1 || keys[0].KeyID != "B" {
		t.Fatalf("Keys(B) after rotation = %v, %v", keys, err)
	}
	if keys, err := c.Keys(t.Context(), f.URL, "A"); err != nil || len(keys) != 0 {
		t.Errorf("Keys(A) after rotation = %v, %v; want none", kids(keys), err)
	}
	if keys, err := c.Keys(t.Context(), f.URL, ""); err != nil || !slices.Equal(kids(keys), []string{"B"}) {
		t.Errorf("Keys() after rotation = %v, %v; want [B]", kids(keys), err)
	}
	if f.hits.Load() != 2 {
		t.Errorf("hits = %d; want 2", f.hits.Load())
	}
}

// blockingIssuer serves set once release is closed, counting hits.
func blockingIssuer(t *testing.T, body string) (srv *httptest.Server, hits *atomic.Int64, release chan struct{}) {
	t.Helper()
	hits = new(atomic.Int64)
	release = make(chan struct{})
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		select {
		case <-release:
		case <-r.Context().Done():
			return
		}
		_, _ = io.WriteString(w, body)
	}))
	t.Cleanup(srv.Close)
	return srv, hits, release
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestSingleflight(t *testing.T) {
	k := keysOnce()
	srv, hits, release := blockingIssuer(t, jwkSet(t, jwk(t, k.ecA.Public(), "a", "", "")))
	c, _, _ := newCache(t, newClock(), nil)

	const n = 50
	var started, done sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		started.Add(1)
		done.Add(1)
		go func() {
			defer done.Done()
			started.Done()
			keys, err := c.Keys(context.Background(), srv.URL, "a")
			if err == nil && len(keys) != 1 {
				err = fmt.Errorf("got %d keys", len(keys))
			}
			errs <- err
		}()
	}
	started.Wait()
	waitFor(t, "the first request", func() bool { return hits.Load() >= 1 })
	time.Sleep(100 * time.Millisecond) // let every goroutine reach the wait
	close(release)
	done.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if got := hits.Load(); got != 1 {
		t.Errorf("hits = %d; want 1", got)
	}
}

func TestWaitersHonourTheirContext(t *testing.T) {
	k := keysOnce()
	srv, hits, release := blockingIssuer(t, jwkSet(t, jwk(t, k.ecA.Public(), "a", "", "")))
	c, _, _ := newCache(t, newClock(), nil)

	type result struct {
		keys []jose.JSONWebKey
		err  error
	}
	lookup := func(ctx context.Context) chan result {
		ch := make(chan result, 1)
		go func() {
			keys, err := c.Keys(ctx, srv.URL, "")
			ch <- result{keys, err}
		}()
		return ch
	}

	// The first lookup starts the fetch, then gives up.
	ctxA, cancelA := context.WithCancel(context.Background())
	first := lookup(ctxA)
	waitFor(t, "the fetch", func() bool { return hits.Load() == 1 })

	// A waiter with a short deadline returns on its own.
	ctxB, cancelB := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancelB()
	start := time.Now()
	r := <-lookup(ctxB)
	if !errors.Is(r.err, context.DeadlineExceeded) || errors.Is(r.err, ErrUnavailable) {
		t.Errorf("waiter with deadline: %v; want its own context's error", r.err)
	}
	if time.Since(start) > time.Second {
		t.Error("waiter did not honour its deadline")
	}

	// Another waiter stays, the first lookup's caller gives up: the
	// shared fetch still completes for everyone.
	third := lookup(context.Background())
	time.Sleep(50 * time.Millisecond)
	cancelA()
	time.Sleep(20 * time.Millisecond)
	close(release)
	for name, ch := range map[string]chan result{"first": first, "third": third} {
		if r := <-ch; r.err != nil || len(r.keys) != 1 {
			t.Errorf("%s lookup: %v, %v; want the key", name, r.keys, r.err)
		}
	}
	if hits.Load() != 1 {
		t.Errorf("hits = %d; want 1", hits.Load())
	}

	// A lookup whose context has already ended fetches nothing.
	ctxD, cancelD := context.WithCancel(context.Background())
	cancelD()
	if _, err := c.Keys(ctxD, srv.URL+"/other", ""); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled lookup: %v", err)
	}
	if hits.Load() != 1 {
		t.Errorf("hits = %d; want 1", hits.Load())
	}
}

func TestIssuerDown(t *testing.T) {
	k := keysOnce()
	good := response{cacheControl: "max-age=600", body: jwkSet(t, jwk(t, k.ecA.Public(), "a", "", ""))}
	f := newIssuer(t, good)
	clock := newClock()
	t0 := clock.Now()
	var fetches []error
	var fetchMu sync.Mutex
	c, logs, _ := newCache(t, clock, func(cfg *Config) {
		cfg.OnFetch = func(url string, err error) {
			if url != f.URL {
				t.Errorf("OnFetch url %q", url)
			}
			fetchMu.Lock()
			fetches = append(fetches, err)
			fetchMu.Unlock()
		}
	})

	served := func(step string, wantHits int64) {
		t.Helper()
		keys, err := c.Keys(t.Context(), f.URL, "a")
		if err != nil || len(keys) != 1 {
			t.Fatalf("%s: Keys = %v, %v; want the key", step, keys, err)
		}
		if got := f.hits.Load(); got != wantHits {
			t.Fatalf("%s: hits = %d; want %d", step, got, wantHits)
		}
	}
	unavailable := func(step string, wantHits int64) {
		t.Helper()
		keys, err := c.Keys(t.Context(), f.URL, "a")
		if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "older than the staleness bound") ||
			!strings.Contains(err.Error(), "status 500") {
			t.Fatalf("%s: Keys = %v, %v; want ErrUnavailable past the staleness bound", step, keys, err)
		}
		if got := f.hits.Load(); got != wantHits {
			t.Fatalf("%s: hits = %d; want %d", step, got, wantHits)
		}
	}
	state := func(step, want string) Status {
		t.Helper()
		st := onlyStatus(t, c)
		if st.State != want {
			t.Fatalf("%s: state %q; want %q (%+v)", step, st.State, want, st)
		}
		return st
	}

	served("first fetch", 1)
	usableUntil := state("first fetch", "ok").UsableUntil
	f.set(response{status: http.StatusInternalServerError, body: "down"})

	clock.Advance(500 * time.Second)
	served("within freshness", 1)
	state("within freshness", "ok")

	clock.Set(t0.Add(600 * time.Second))
	served("refresh fails, stale set used", 2)
	st := state("refresh failed", "stale")
	if !strings.Contains(st.LastError, "status 500") || st.UsableUntil != usableUntil || !st.LastSuccess.Equal(t0) {
		t.Errorf("stale status %+v", st)
	}
	if !strings.Contains(logs.String(), `"stale_in_use":true`) {
		t.Errorf("failure log does not say the stale set is in use: %s", logs.String())
	}

	clock.Advance(29 * time.Second)
	served("retry too soon", 2)
	clock.Advance(time.Second)
	served("retry allowed", 3)

	clock.Set(usableUntil)
	unavailable("past the staleness bound", 4)
	state("past the staleness bound", "failing")
	unavailable("again at once", 4)

	f.set(good)
	clock.Advance(10 * time.Second)
	unavailable("issuer back, retry too soon", 4)
	clock.Advance(20 * time.Second)
	served("issuer back", 5)
	if st := state("issuer back", "ok"); st.LastError != "" || !st.LastSuccess.Equal(clock.Now()) {
		t.Errorf("recovered status %+v", st)
	}

	fetchMu.Lock()
	defer fetchMu.Unlock()
	if len(fetches) != 5 || fetches[0] != nil || fetches[1] == nil || fetches[3] == nil || fetches[4] != nil {
		t.Errorf("OnFetch saw %v; want ok, 3 failures, ok", fetches)
	}
}

func TestNeverFetchedIsUnavailable(t *testing.T) {
	f := newIssuer(t, response{status: http.StatusServiceUnavailable})
	clock := newClock()
	c, _, _ := newCache(t, clock, nil)
	for i, wantHits := range []int64{1, 1} {
		_, err := c.Keys(t.Context(), f.URL, "a")
		if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "status 503") {
			t.Errorf("lookup %d: %v; want ErrUnavailable with the status", i, err)
		}
		if f.hits.Load() != wantHits {
			t.Errorf("lookup %d: hits = %d; want %d", i, f.hits.Load(), wantHits)
		}
	}
	if st := onlyStatus(t, c); st.State != "failing" || st.UsableUntil != (time.Time{}) {
		t.Errorf("Status = %+v", st)
	}
}

// discoveryIssuer serves OpenID Provider metadata at prefix+wellKnown and a
// key set at /jwks, counting hits on each.
type discoveryIssuer struct {
	*httptest.Server
	docHits, jwksHits atomic.Int64

	mu  sync.Mutex
	doc response
}

func newDiscoveryIssuer(t *testing.T, prefix string, jwks string) *discoveryIssuer {
	t.Helper()
	d := &discoveryIssuer{}
	mux := http.NewServeMux()
	mux.HandleFunc(prefix+wellKnown, func(w http.ResponseWriter, r *http.Request) {
		d.docHits.Add(1)
		d.mu.Lock()
		doc := d.doc
		d.mu.Unlock()
		if doc.cacheControl != "" {
			w.Header().Set("Cache-Control", doc.cacheControl)
		}
		w.WriteHeader(cmpOr(doc.status, http.StatusOK))
		_, _ = io.WriteString(w, doc.body)
	})
	mux.HandleFunc("/jwks", func(w http.ResponseWriter, r *http.Request) {
		d.jwksHits.Add(1)
		w.Header().Set("Cache-Control", "max-age=3600")
		_, _ = io.WriteString(w, jwks)
	})
	d.Server = httptest.NewServer(mux)
	t.Cleanup(d.Close)
	return d
}

func (d *discoveryIssuer) setDoc(r response) {
	d.mu.Lock()
	d.doc = r
	d.mu.Unlock()
}

func docBody(t *testing.T, members map[string]any) string {
	t.Helper()
	b, err := json.Marshal(members)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestDiscovery(t *testing.T) {
	k := keysOnce()
	jwks := jwkSet(t, jwk(t, k.ecA.Public(), "a", "", ""), jwk(t, k.ed.Public(), "b", "", ""))
	for _, prefix := range []string{"", "/tenant"} {
		for _, slash := range []string{"", "/"} {
			t.Run(fmt.Sprintf("path %q slash %q", prefix, slash), func(t *testing.T) {
				d := newDiscoveryIssuer(t, prefix, jwks)
				issuer := d.URL + prefix + slash
				d.setDoc(response{cacheControl: "max-age=120", body: docBody(t, map[string]any{
					"issuer": issuer, "jwks_uri": d.URL + "/jwks", "token_endpoint": d.URL + "/token",
				})})
				clock := newClock()
				c, _, _ := newCache(t, clock, nil)

				get := func(kid string, wantKeys int, wantDoc, wantJWKS int64) {
					t.Helper()
					keys, err := c.DiscoveredKeys(t.Context(), issuer, kid)
					if err != nil || len(keys) != wantKeys {
						t.Fatalf("DiscoveredKeys(%q) = %v, %v; want %d keys", kid, keys, err, wantKeys)
					}
					if d.docHits.Load() != wantDoc || d.jwksHits.Load() != wantJWKS {
						t.Fatalf("hits: document %d, jwks %d; want %d, %d",
							d.docHits.Load(), d.jwksHits.Load(), wantDoc, wantJWKS)
					}
				}
				get("a", 1, 1, 1)
				get("", 2, 1, 1) // both cached
				clock.Advance(121 * time.Second)
				get("b", 1, 2, 1) // document refreshed under its own max-age

				byKind := func() map[string]Status {
					t.Helper()
					m := map[string]Status{}
					for _, s := range c.Status() {
						m[s.Kind] = s
					}
					if len(m) != 2 {
						t.Fatalf("Status = %+v; want a discovery and a jwks entry", c.Status())
					}
					return m
				}
				st := byKind()
				if doc, set := st["discovery"], st["jwks"]; doc.URL != d.URL+prefix+wellKnown || doc.Keys != 0 ||
					doc.State != "ok" || set.URL != d.URL+"/jwks" || set.Keys != 2 || set.State != "ok" {
					t.Errorf("Status = %+v", st)
				}

				// The document's issuer stays down: the cached document is
				// used within its staleness bound.
				d.setDoc(response{status: http.StatusBadGateway})
				clock.Advance(121 * time.Second)
				get("a", 1, 3, 1)
				if st := byKind(); st["discovery"].State != "stale" || st["jwks"].State != "ok" {
					t.Errorf("Status = %+v; want the discovery document stale", st)
				}
			})
		}
	}
}

func TestDiscoveryRefused(t *testing.T) {
	k := keysOnce()
	jwks := jwkSet(t, jwk(t, k.ecA.Public(), "a", "", ""))
	tests := []struct {
		name    string
		doc     func(base string) response
		wantErr string
	}{
		{"issuer mismatch", func(base string) response {
			return response{body: docBody(t, map[string]any{"issuer": base + "/", "jwks_uri": base + "/jwks"})}
		}, "want"},
		{"issuer of another host", func(base string) response {
			return response{body: docBody(t, map[string]any{"issuer": "https://evil.example", "jwks_uri": base + "/jwks"})}
		}, `issuer is "https://evil.example"`},
		{"issuer member case-folded", func(base string) response {
			return response{body: docBody(t, map[string]any{"Issuer": base, "jwks_uri": base + "/jwks"})}
		}, `"issuer" is missing`},
		{"jwks_uri over plain http", func(base string) response {
			return response{body: docBody(t, map[string]any{"issuer": base, "jwks_uri": "http://example.com/jwks"})}
		}, "must use https"},
		{"jwks_uri missing", func(base string) response {
			return response{body: docBody(t, map[string]any{"issuer": base})}
		}, `"jwks_uri" is missing`},
		{"jwks_uri not a string", func(base string) response {
			return response{body: docBody(t, map[string]any{"issuer": base, "jwks_uri": 7})}
		}, `"jwks_uri" is missing or not a string`},
		{"document not found", func(string) response { return response{status: http.StatusNotFound} }, "status 404"},
		{"document not JSON", func(string) response { return response{body: "<html>"} }, "not a JSON object"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := newDiscoveryIssuer(t, "", jwks)
			d.setDoc(tt.doc(d.URL))
			c, _, transport := newCache(t, newClock(), nil)

			keys, err := c.DiscoveredKeys(t.Context(), d.URL, "a")
			if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), tt.wantErr) ||
				!strings.Contains(err.Error(), "discovery document") {
				t.Fatalf("DiscoveredKeys = %v, %v; want ErrUnavailable containing %q", keys, err, tt.wantErr)
			}
			if d.jwksHits.Load() != 0 || len(transport.refusedURLs()) != 0 {
				t.Errorf("key set fetched: %d hits, non-loopback %v", d.jwksHits.Load(), transport.refusedURLs())
			}
			if st := onlyStatus(t, c); st.Kind != "discovery" || st.State != "failing" || st.LastError == "" {
				t.Errorf("Status = %+v", st)
			}
		})
	}
}

func TestRemoteURLRefused(t *testing.T) {
	c, _, transport := newCache(t, newClock(), nil)
	for _, u := range []string{
		"http://example.com/jwks",
		"ftp://127.0.0.1/jwks",
		"https://user:pass@127.0.0.1/jwks",
		"https://127.0.0.1/jwks#frag",
		"/jwks",
		"",
	} {
		_, err := c.Keys(t.Context(), u, "")
		if err == nil || errors.Is(err, ErrUnavailable) {
			t.Errorf("Keys(%q) = %v; want a configuration error", u, err)
		}
	}
	for _, iss := range []string{"http://example.com", "http://example.com/", "https://127.0.0.1?x=1", "not a url"} {
		_, err := c.DiscoveredKeys(t.Context(), iss, "")
		if err == nil || errors.Is(err, ErrUnavailable) {
			t.Errorf("DiscoveredKeys(%q) = %v; want a configuration error", iss, err)
		}
	}
	if r := transport.refusedURLs(); len(r) != 0 {
		t.Errorf("requests made to %v", r)
	}
	if st := c.Status(); len(st) != 0 {
		t.Errorf("Status = %+v; want nothing cached", st)
	}
}

func TestStatusSortedAndJSON(t *testing.T) {
	k := keysOnce()
	f := newIssuer(t, response{body: jwkSet(t, jwk(t, k.ecA.Public(), "a", "", ""))})
	c, _, _ := newCache(t, newClock(), nil)
	for _, p := range []string{"/c", "/a", "/b"} {
		if _, err := c.Keys(t.Context(), f.URL+p, ""); err != nil {
			t.Fatal(err)
		}
	}
	st := c.Status()
	var urls []string
	for _, s := range st {
		urls = append(urls, s.URL)
	}
	if !slices.Equal(urls, []string{f.URL + "/a", f.URL + "/b", f.URL + "/c"}) {
		t.Errorf("Status URLs %v; want sorted", urls)
	}
	b, err := json.Marshal(Status{URL: "u", Kind: "jwks", State: "failing"})
	if err != nil || string(b) != `{"url":"u","kind":"jwks","state":"failing"}` {
		t.Errorf("zero Status JSON = %s, %v", b, err)
	}
}

// ---- security review ----

// lookupWithin runs c.Keys with a context that ends after d: a lookup that
// waits for a fetch in flight fails with context.DeadlineExceeded, one
// answered from the cache returns at once.
func lookupWithin(c *Cache, d time.Duration, u, kid string) ([]jose.JSONWebKey, error) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return c.Keys(ctx, u, kid)
}

func TestKnownKidDoesNotWaitForFetch(t *testing.T) {
	k := keysOnce()
	body := jwkSet(t, jwk(t, k.ecA.Public(), "a", "", ""), jwk(t, k.ed.Public(), "b", "", ""))
	var hits atomic.Int64
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if hits.Add(1) > 1 { // every fetch after the first blocks
			select {
			case <-release:
			case <-r.Context().Done():
				return
			}
		}
		w.Header().Set("Cache-Control", "max-age=600")
		_, _ = io.WriteString(w, body)
	}))
	defer srv.Close()
	released := false
	defer func() {
		if !released {
			close(release)
		}
	}()
	clock := newClock()
	c, _, _ := newCache(t, clock, nil)

	if keys, err := c.Keys(t.Context(), srv.URL, "a"); err != nil || len(keys) != 1 {
		t.Fatalf("first fetch: %v, %v", keys, err)
	}
	clock.Advance(30 * time.Second) // an unknown kid may refetch

	// A random kid starts a fetch, which the issuer holds up.
	unknown := make(chan error, 1)
	go func() {
		keys, err := c.Keys(context.Background(), srv.URL, "zzz")
		if err == nil && len(keys) != 0 {
			err = fmt.Errorf("got %d keys", len(keys))
		}
		unknown <- err
	}()
	waitFor(t, "the refetch", func() bool { return hits.Load() == 2 })

	const within = 50 * time.Millisecond
	for _, tc := range []struct {
		step    string
		advance time.Duration
		kid     string
		want    []string
	}{
		{"known kid, fresh set", 0, "a", []string{"a"}},
		{"all keys, fresh set", 0, "", []string{"a", "b"}},
		{"known kid, stale but usable set", 10 * time.Minute, "b", []string{"b"}},
	} {
		clock.Advance(tc.advance)
		start := time.Now()
		keys, err := lookupWithin(c, within, srv.URL, tc.kid)
		if err != nil || !slices.Equal(kids(keys), tc.want) {
			t.Errorf("%s: Keys(%q) = %v, %v; want %v at once, without waiting for the fetch in flight",
				tc.step, tc.kid, kids(keys), err, tc.want)
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("%s: took %v", tc.step, d)
		}
	}

	// A lookup that the cached set cannot answer still waits for the fetch.
	if keys, err := lookupWithin(c, within, srv.URL, "yyy"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("unknown kid while a fetch is in flight: %v, %v; want it to wait", keys, err)
	}

	released = true
	close(release)
	if err := <-unknown; err != nil {
		t.Errorf("lookup of the unknown kid: %v", err)
	}
	if got := hits.Load(); got != 2 {
		t.Errorf("hits = %d; want 2", got)
	}
}

func TestDiscoveredDocumentDoesNotWaitForFetch(t *testing.T) {
	k := keysOnce()
	jwks := jwkSet(t, jwk(t, k.ecA.Public(), "a", "", ""))
	var docHits atomic.Int64
	release := make(chan struct{})
	var issuer string
	mux := http.NewServeMux()
	mux.HandleFunc(wellKnown, func(w http.ResponseWriter, r *http.Request) {
		if docHits.Add(1) > 1 {
			select {
			case <-release:
			case <-r.Context().Done():
				return
			}
		}
		w.Header().Set("Cache-Control", "max-age=60")
		_, _ = io.WriteString(w, docBody(t, map[string]any{"issuer": issuer, "jwks_uri": issuer + "/jwks"}))
	})
	mux.HandleFunc("/jwks", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=3600")
		_, _ = io.WriteString(w, jwks)
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	issuer = srv.URL
	clock := newClock()
	c, _, _ := newCache(t, clock, nil)

	if keys, err := c.DiscoveredKeys(t.Context(), issuer, "a"); err != nil || len(keys) != 1 {
		t.Fatalf("first lookup: %v, %v", keys, err)
	}
	clock.Advance(61 * time.Second) // the document is stale

	first := make(chan error, 1)
	go func() {
		_, err := c.DiscoveredKeys(context.Background(), issuer, "a")
		first <- err
	}()
	waitFor(t, "the document refresh", func() bool { return docHits.Load() == 2 })

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if keys, err := c.DiscoveredKeys(ctx, issuer, "a"); err != nil || len(keys) != 1 {
		t.Errorf("lookup while the document is refreshed: %v, %v; want the key at once", keys, err)
	}
	close(release)
	if err := <-first; err != nil {
		t.Errorf("lookup that refreshed the document: %v", err)
	}
}

func TestCheckDiscoveredURL(t *testing.T) {
	const remote = "https://issuer.example"
	tests := []struct {
		issuer, jwksURI string
		wantErr         string // "" when accepted
	}{
		{remote, "https://issuer.example/jwks", ""},
		{remote, "https://keys.example:8443/oauth2/v3/certs", ""},
		{remote, "https://8.8.8.8/jwks", ""},
		{remote, "https://[2001:4860:4860::8888]/jwks", ""},
		{remote, "https://deadbeef.example/jwks", ""},
		{remote, "https://issuer.example./jwks", ""},

		{remote, "http://issuer.example/jwks", "must use https"},
		{remote, "http://127.0.0.1:8080/jwks", "must use https"},
		{remote, "http://localhost:8080/jwks", "must use https"},
		{remote, "ftp://issuer.example/jwks", "https"},
		{remote, "https://user@issuer.example/jwks", "user information"},
		{remote, "https://127.0.0.1:8443/jwks", "loopback"},
		{remote, "https://127.9.9.9/jwks", "loopback"},
		{remote, "https://[::1]/jwks", "loopback"},
		{remote, "https://[::ffff:127.0.0.1]/jwks", "loopback"},
		{remote, "https://localhost/jwks", "loopback"},
		{remote, "https://LocalHost./jwks", "loopback"},
		{remote, "https://keys.localhost/jwks", "loopback"},
		{remote, "https://10.1.2.3/jwks", "private"},
		{remote, "https://172.16.0.1/jwks", "private"},
		{remote, "https://192.168.1.1/jwks", "private"},
		{remote, "https://[::ffff:192.168.1.1]/jwks", "private"},
		{remote, "https://[fd00:ec2::254]/jwks", "private"},
		{remote, "https://169.254.169.254/latest/meta-data", "link-local"},
		{remote, "https://[fe80::1]/jwks", "link-local"},
		{remote, "https://[fe80::1%25eth0]/jwks", "zone"},
		{remote, "https://[ff02::1]/jwks", "link-local"},
		{remote, "https://[ff0e::1]/jwks", "multicast"},
		{remote, "https://224.0.0.251/jwks", "link-local"},
		{remote, "https://239.1.2.3/jwks", "multicast"},
		{remote, "https://0.0.0.0/jwks", "0.0.0.0/8"},
		{remote, "https://[::]/jwks", "unspecified"},
		{remote, "https://100.100.100.200/jwks", "shared address space"},
		{remote, "https://127.1/jwks", "not a canonical IP address"},
		{remote, "https://2130706433/jwks", "not a canonical IP address"},
		{remote, "https://0x7f.0.0.1/jwks", "not a canonical IP address"},
		{remote, "https://0177.0.0.1/jwks", "not a canonical IP address"},
		{remote, "https://127.0.0.1./jwks", "loopback"},
		{"https://10.0.0.5", "https://10.0.0.6/jwks", "private"}, // a private issuer is not loopback

		// A loopback issuer (tests, sidecars) may name loopback key sets.
		{"http://127.0.0.1:8080", "http://127.0.0.1:9090/jwks", ""},
		{"http://localhost:8080/tenant", "http://localhost:9090/jwks", ""},
		{"https://[::1]:8443", "https://127.0.0.1/jwks", ""},
		{"http://127.0.0.1:8080", "https://10.1.2.3/jwks", ""},
		{"http://127.0.0.1:8080", "http://example.com/jwks", "must use https"},
	}
	for _, tt := range tests {
		err := checkDiscoveredURL(tt.issuer, tt.jwksURI)
		switch {
		case tt.wantErr == "" && err != nil:
			t.Errorf("issuer %s, jwks_uri %s: %v; want it accepted", tt.issuer, tt.jwksURI, err)
		case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
			t.Errorf("issuer %s, jwks_uri %s: %v; want an error containing %q", tt.issuer, tt.jwksURI, err, tt.wantErr)
		}
	}
}

// fakeNetwork serves handler as the host "issuer.example", over any scheme,
// without a socket, and records every request.
type fakeNetwork struct {
	handler http.Handler

	mu       sync.Mutex
	requests []string
}

func (f *fakeNetwork) RoundTrip(r *http.Request) (*http.Response, error) {
	f.mu.Lock()
	f.requests = append(f.requests, r.URL.String())
	f.mu.Unlock()
	if r.URL.Host != "issuer.example" {
		return nil, errors.New("test network: unknown host")
	}
	rec := httptest.NewRecorder()
	f.handler.ServeHTTP(rec, r)
	return rec.Result(), nil
}

func (f *fakeNetwork) requested() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.requests)
}

func TestDiscoveredJWKSURIOfRemoteIssuer(t *testing.T) {
	k := keysOnce()
	jwks := jwkSet(t, jwk(t, k.ecA.Public(), "a", "", ""))

	// A loopback server the issuer would like this server to fetch from.
	var localHits atomic.Int64
	local := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		localHits.Add(1)
		_, _ = io.WriteString(w, jwks)
	}))
	defer local.Close()

	const issuer = "https://issuer.example"
	for _, tc := range []struct {
		jwksURI string
		wantErr string
	}{
		{issuer + "/jwks", ""},
		{local.URL + "/jwks", "must use https"},
		{strings.Replace(local.URL, "http:", "https:", 1) + "/jwks", "loopback"},
		{"https://localhost/jwks", "loopback"},
		{"https://169.254.169.254/latest/meta-data/jwks", "link-local"},
		{"https://10.0.0.1/jwks", "private"},
	} {
		t.Run(tc.jwksURI, func(t *testing.T) {
			mux := http.NewServeMux()
			mux.HandleFunc(wellKnown, func(w http.ResponseWriter, r *http.Request) {
				_, _ = io.WriteString(w, docBody(t, map[string]any{"issuer": issuer, "jwks_uri": tc.jwksURI}))
			})
			mux.HandleFunc("/jwks", func(w http.ResponseWriter, r *http.Request) {
				_, _ = io.WriteString(w, jwks)
			})
			network := &fakeNetwork{handler: mux}
			c, _, _ := newCache(t, newClock(), func(cfg *Config) {
				cfg.HTTPClient = &http.Client{Transport: network}
			})

			keys, err := c.DiscoveredKeys(t.Context(), issuer, "a")
			if tc.wantErr == "" {
				if err != nil || len(keys) != 1 {
					t.Fatalf("DiscoveredKeys = %v, %v; want the key", keys, err)
				}
				return
			}
			if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "jwks_uri") ||
				!strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("DiscoveredKeys = %v, %v; want ErrUnavailable containing %q", keys, err, tc.wantErr)
			}
			if got := network.requested(); !slices.Equal(got, []string{issuer + wellKnown}) {
				t.Errorf("requests %v; want the discovery document only", got)
			}
		})
	}
	if localHits.Load() != 0 {
		t.Errorf("the loopback server was fetched %d times", localHits.Load())
	}
}

// rotatingIssuer serves OpenID Provider metadata at wellKnown naming a new
// jwks_uri at every request, and at /other+wellKnown (issuer URL+"/other")
// metadata that always names URL+"/jwks/shared". Every /jwks/ path serves
// the same set.
type rotatingIssuer struct {
	*httptest.Server
	docs atomic.Int64

	mu    sync.Mutex
	first string // jwks_uri of the first document
}

func newRotatingIssuer(t *testing.T, jwks string) *rotatingIssuer {
	t.Helper()
	r := &rotatingIssuer{}
	mux := http.NewServeMux()
	mux.HandleFunc(wellKnown, func(w http.ResponseWriter, _ *http.Request) {
		n := r.docs.Add(1)
		jwksURI := fmt.Sprintf("%s/jwks/%d", r.URL, n)
		r.mu.Lock()
		if r.first != "" {
			jwksURI, r.first = r.first, ""
		}
		r.mu.Unlock()
		w.Header().Set("Cache-Control", "max-age=60")
		_, _ = io.WriteString(w, docBody(t, map[string]any{"issuer": r.URL, "jwks_uri": jwksURI}))
	})
	mux.HandleFunc("/other"+wellKnown, func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, docBody(t, map[string]any{"issuer": r.URL + "/other", "jwks_uri": r.URL + "/jwks/shared"}))
	})
	mux.HandleFunc("/jwks/", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Cache-Control", "max-age=3600")
		_, _ = io.WriteString(w, jwks)
	})
	r.Server = httptest.NewServer(mux)
	t.Cleanup(r.Close)
	return r
}

func jwksURLs(c *Cache) []string {
	var out []string
	for _, s := range c.Status() {
		if s.Kind == kindJWKS {
			out = append(out, s.URL)
		}
	}
	return out
}

func TestDiscoveryRotationEvicts(t *testing.T) {
	k := keysOnce()
	r := newRotatingIssuer(t, jwkSet(t, jwk(t, k.ecA.Public(), "a", "", "")))
	shared := r.URL + "/jwks/shared"
	r.mu.Lock()
	r.first = shared // the first document names the set the other issuer names too
	r.mu.Unlock()
	clock := newClock()
	c, logs, _ := newCache(t, clock, nil)

	for _, iss := range []string{r.URL + "/other", r.URL} {
		if keys, err := c.DiscoveredKeys(t.Context(), iss, "a"); err != nil || len(keys) != 1 {
			t.Fatalf("DiscoveredKeys(%s) = %v, %v", iss, keys, err)
		}
	}
	if got := jwksURLs(c); !slices.Equal(got, []string{shared}) {
		t.Fatalf("jwks entries %v; want [%s]", got, shared)
	}

	for i := range 50 {
		clock.Advance(61 * time.Second) // the document is stale: refreshed, naming a new jwks_uri
		if keys, err := c.DiscoveredKeys(t.Context(), r.URL, "a"); err != nil || len(keys) != 1 {
			t.Fatalf("refresh %d: DiscoveredKeys = %v, %v", i, keys, err)
		}
		got := jwksURLs(c)
		want := []string{fmt.Sprintf("%s/jwks/%d", r.URL, i+2), shared} // the other issuer still names shared
		slices.Sort(want)
		if len(got) > 2 || !slices.Equal(got, want) {
			t.Fatalf("refresh %d: jwks entries %v; want %v", i, got, want)
		}
	}
	if r.docs.Load() != 51 {
		t.Errorf("documents served: %d; want 51", r.docs.Load())
	}
	if !strings.Contains(logs.String(), "no discovery document names it any more") {
		t.Errorf("evictions not logged: %s", logs.String())
	}
}

func TestIdleEntriesEvicted(t *testing.T) {
	k := keysOnce()
	f := newIssuer(t, response{body: jwkSet(t, jwk(t, k.ecA.Public(), "a", "", ""))})
	clock := newClock()
	c, logs, _ := newCache(t, clock, func(cfg *Config) {
		cfg.MinTTL, cfg.MaxTTL, cfg.MaxStale = time.Minute, 2*time.Minute, time.Minute // evicted after 3m unused
	})
	get := func(path string, wantHits int64) {
		t.Helper()
		if keys, err := c.Keys(t.Context(), f.URL+path, "a"); err != nil || len(keys) != 1 {
			t.Fatalf("Keys(%s) = %v, %v", path, keys, err)
		}
		if got := f.hits.Load(); got != wantHits {
			t.Fatalf("Keys(%s): hits = %d; want %d", path, got, wantHits)
		}
	}
	urls := func() []string {
		var out []string
		for _, s := range c.Status() {
			out = append(out, s.URL)
		}
		return out
	}

	get("/a", 1)
	get("/b", 2)
	clock.Advance(time.Minute)
	get("/b", 2) // answered from the cache: still counts as a use
	clock.Advance(2*time.Minute + time.Second)
	if got, want := urls(), []string{f.URL + "/a", f.URL + "/b"}; !slices.Equal(got, want) {
		t.Fatalf("before the next fetch: Status URLs %v; want %v", got, want)
	}
	get("/c", 3) // a fetch completes: /a, unused for 3m1s, goes
	if got, want := urls(), []string{f.URL + "/b", f.URL + "/c"}; !slices.Equal(got, want) {
		t.Errorf("after the next fetch: Status URLs %v; want %v", got, want)
	}
	if !strings.Contains(logs.String(), "unused for longer than MaxTTL+MaxStale") {
		t.Errorf("eviction not logged: %s", logs.String())
	}
	get("/a", 4) // an evicted URL is simply fetched again
}

// rawServer answers every connection with raw, then closes it.
func rawServer(t *testing.T, raw string) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
			buf := make([]byte, 4096)
			_, _ = conn.Read(buf) // the request
			_, _ = io.WriteString(conn, raw)
			_ = conn.Close()
		}
	})
	t.Cleanup(func() {
		_ = l.Close()
		wg.Wait()
	})
	return "http://" + l.Addr().String()
}

func TestErrorsDoNotQuoteBody(t *testing.T) {
	const secret = "SECRET-TOKEN-xyz"
	f := newIssuer(t, response{body: secret})
	d := newDiscoveryIssuer(t, "", `{"keys":[]}`)
	d.setDoc(response{body: secret})
	raw := rawServer(t, secret+"\r\n\r\n")

	for _, tc := range []struct {
		name   string
		lookup func(c *Cache) error
	}{
		{"key set", func(c *Cache) error {
			_, err := c.Keys(t.Context(), f.URL+"/jwks", "a")
			return err
		}},
		{"discovery document", func(c *Cache) error {
			_, err := c.DiscoveredKeys(t.Context(), d.URL, "a")
			return err
		}},
		{"not HTTP", func(c *Cache) error {
			_, err := c.Keys(t.Context(), raw+"/jwks", "a")
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, logs, _ := newCache(t, newClock(), nil)
			err := tc.lookup(c)
			if !errors.Is(err, ErrUnavailable) {
				t.Fatalf("lookup: %v; want ErrUnavailable", err)
			}
			st := onlyStatus(t, c)
			for what, text := range map[string]string{"error": err.Error(), "LastError": st.LastError, "log": logs.String()} {
				if strings.Contains(text, "SECRET") || strings.Contains(text, "'S'") {
					t.Errorf("%s quotes the response: %s", what, text)
				}
			}
			if st.LastError == "" {
				t.Error("no LastError")
			}
		})
	}
}

func TestKeysCapped(t *testing.T) {
	k := keysOnce()
	var members []map[string]any
	for i := range 150 {
		members = append(members, jwk(t, k.ecA.Public(), fmt.Sprintf("k%03d", i), "", ""))
	}
	f := newIssuer(t, response{body: jwkSet(t, members...)})
	c, logs, _ := newCache(t, newClock(), nil)

	all, err := c.Keys(t.Context(), f.URL, "")
	if err != nil || len(all) != maxKeys {
		t.Fatalf("Keys() = %d keys, %v; want %d", len(all), err, maxKeys)
	}
	if keys, err := c.Keys(t.Context(), f.URL, "k099"); err != nil || len(keys) != 1 {
		t.Errorf("Keys(k099) = %v, %v; want the key", kids(keys), err)
	}
	if keys, err := c.Keys(t.Context(), f.URL, "k100"); err != nil || len(keys) != 0 {
		t.Errorf("Keys(k100) = %v, %v; want none", kids(keys), err)
	}
	if st := onlyStatus(t, c); st.Keys != maxKeys {
		t.Errorf("Status.Keys = %d; want %d", st.Keys, maxKeys)
	}
	if !strings.Contains(logs.String(), "too many usable keys") {
		t.Errorf("cap not logged: %s", logs.String())
	}
}

func TestRSAModulusBound(t *testing.T) {
	// Moduli that are not products of two primes: only their size matters
	// here, and generating an 8192-bit key takes too long.
	modulus := func(bits uint) *rsa.PublicKey {
		n := new(big.Int).Lsh(big.NewInt(1), bits-1)
		return &rsa.PublicKey{N: n.Or(n, big.NewInt(0xfffff1)), E: 65537}
	}
	f := newIssuer(t, response{body: jwkSet(t,
		jwk(t, modulus(8192), "rsa-8192", "RS256", ""),
		jwk(t, modulus(8193), "rsa-8193", "RS256", ""),
		jwk(t, modulus(16384), "rsa-16384", "", ""),
	)})
	c, logs, _ := newCache(t, newClock(), nil)

	keys, err := c.Keys(t.Context(), f.URL, "")
	if err != nil || !slices.Equal(kids(keys), []string{"rsa-8192"}) {
		t.Errorf("Keys() = %v, %v; want [rsa-8192]", kids(keys), err)
	}
	skipped := 0
	for _, r := range logs.records(t) {
		if r["msg"] == "jwks: key skipped" {
			skipped++
			if reason, _ := r["reason"].(string); !strings.Contains(reason, "bits") {
				t.Errorf("skip reason %q", reason)
			}
		}
	}
	if skipped != 2 {
		t.Errorf("%d keys skipped; want 2", skipped)
	}
}
