package main

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	jose "github.com/go-jose/go-jose/v3"
)

// jwtBearer is the grant_type of RFC 7523 §2.1.
const jwtBearer = "urn:ietf:params:oauth:grant-type:jwt-bearer"

// pool holds pre-signed token requests: form bodies with unique-jti
// assertions. A scenario uses each body at most once; every scenario runs
// against a fresh server, so the same pool serves them all.
type pool struct {
	key      *rsa.PrivateKey
	kid      string
	aud      string
	lifetime time.Duration
	bodies   [][]byte
	// sample is one of the assertions, as a compact JWS.
	sample string
	// oldest is when the first body of the pool was signed; every
	// assertion is valid until at least oldest + lifetime.
	oldest time.Time
}

// claims are an assertion's claims.
type claims struct {
	Iss string `json:"iss"`
	Sub string `json:"sub"`
	Aud string `json:"aud"`
	Iat int64  `json:"iat"`
	Exp int64  `json:"exp"`
	JTI string `json:"jti"`
}

// validFor reports whether every assertion of the pool is still valid d
// from now.
func (p *pool) validFor(d time.Duration) bool {
	return len(p.bodies) == 0 || time.Now().Add(d).Before(p.oldest.Add(p.lifetime))
}

// reset empties the pool.
func (p *pool) reset() { p.bodies = nil }

// ensure signs assertions until the pool holds n, on every core (no
// server runs meanwhile). It returns how many it signed and how long that
// took.
func (p *pool) ensure(n int) (int, time.Duration, error) {
	need := n - len(p.bodies)
	if need <= 0 {
		return 0, 0, nil
	}
	start := time.Now()
	prefix := url.Values{"grant_type": {jwtBearer}}.Encode() + "&assertion="
	suffix := "&" + url.Values{"scope": {benchScope}}.Encode()
	out := make([][]byte, need)
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make([]error, runtime.GOMAXPROCS(0))
	for w := range errs {
		wg.Go(func() {
			opts := (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", p.kid)
			signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: p.key}, opts)
			if err != nil {
				errs[w] = err
				return
			}
			jti := make([]byte, 16)
			for {
				i := int(next.Add(1) - 1)
				if i >= need {
					return
				}
				if _, err := rand.Read(jti); err != nil {
					errs[w] = err
					return
				}
				payload, err := json.Marshal(claims{
					Iss: benchIssuer, Sub: benchSubject, Aud: p.aud,
					Iat: start.Unix(), Exp: start.Add(p.lifetime).Unix(),
					JTI: hex.EncodeToString(jti),
				})
				if err != nil {
					errs[w] = err
					return
				}
				obj, err := signer.Sign(payload)
				if err != nil {
					errs[w] = err
					return
				}
				jws, err := obj.CompactSerialize()
				if err != nil {
					errs[w] = err
					return
				}
				out[i] = []byte(prefix + jws + suffix)
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return 0, 0, fmt.Errorf("signing assertions: %w", err)
	}
	if len(p.bodies) == 0 {
		p.oldest = start
		b := string(out[0])
		p.sample = b[len(prefix) : len(b)-len(suffix)]
	}
	p.bodies = append(p.bodies, out...)
	return need, time.Since(start), nil
}

// measureVerify returns the wall time of one go-jose RS256 verification
// of jws with pub, measured in a loop on one goroutine for about d while
// nothing else runs, and the number of verifications.
func measureVerify(jws string, pub *rsa.PublicKey, d time.Duration) (time.Duration, int, error) {
	obj, err := jose.ParseSigned(jws)
	if err != nil {
		return 0, 0, err
	}
	n := 0
	start := time.Now()
	for time.Since(start) < d || n == 0 {
		for range 16 {
			if _, err := obj.Verify(pub); err != nil {
				return 0, 0, err
			}
			n++
		}
	}
	return time.Since(start) / time.Duration(n), n, nil
}

// Outcomes of requests, besides "<status> <OAuth error code>".
const (
	outcomeOK = "200"
	// outcomeCanceled is a request still in flight when the drain time
	// after the window ran out; the load generator abandoned it.
	outcomeCanceled = "canceled: still in flight when the drain time ran out"
)

// record is one completed request.
type record struct {
	// end is when it completed, since the start of the run.
	end time.Duration
	// lat is its latency.
	lat     time.Duration
	outcome string
}

// loadParams describe one run of the load.
type loadParams struct {
	url         string
	pid         int
	bodies      [][]byte
	concurrency int
	warmup      time.Duration
	duration    time.Duration
	// drain bounds the wait for the requests in flight at the end of the
	// window; those still running are then canceled.
	drain time.Duration
}

// loadResult is what a run measured.
type loadResult struct {
	// window is whether a measured window exists (the assertions did not
	// run out during the warm-up).
	window bool
	// windowStart and windowEnd bound it, since the start of the run.
	windowStart, windowEnd time.Duration
	// ranOut is set when the pool ran out before the planned end.
	ranOut   bool
	ranOutAt time.Duration
	// Server and own CPU time at the window's bounds, in clock ticks.
	cpu0, cpu1   int64
	self0, self1 int64
	cpuErr       error
	// used is the number of bodies taken from the pool.
	used    int
	records []record
	// samples holds the first response description seen for each failed
	// outcome.
	samples map[string]string
}

// runLoad posts the pool's bodies to p.url from p.concurrency goroutines
// over keep-alive connections: p.warmup of warm-up, then the measured
// window of p.duration, whose bounds read the server's CPU time.
func runLoad(p loadParams) *loadResult {
	tr := &http.Transport{
		MaxIdleConns:        p.concurrency,
		MaxIdleConnsPerHost: p.concurrency,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 60 * time.Second}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	res := &loadResult{samples: map[string]string{}}
	var (
		next       atomic.Int64
		stop       atomic.Bool
		ranOutOnce sync.Once
		ranOut     = make(chan time.Duration, 1)
		mu         sync.Mutex
		wg         sync.WaitGroup
	)
	start := time.Now()
	for range p.concurrency {
		wg.Go(func() {
			var recs []record
			samples := map[string]string{}
			for !stop.Load() {
				i := int(next.Add(1) - 1)
				if i >= len(p.bodies) {
					ranOutOnce.Do(func() { ranOut <- time.Since(start) })
					break
				}
				t0 := time.Now()
				outcome, sample := post(ctx, client, p.url, p.bodies[i])
				t1 := time.Now()
				recs = append(recs, record{end: t1.Sub(start), lat: t1.Sub(t0), outcome: outcome})
				if outcome != outcomeOK {
					if _, ok := samples[outcome]; !ok {
						samples[outcome] = sample
					}
				}
			}
			mu.Lock()
			res.records = append(res.records, recs...)
			for k, v := range samples {
				if _, ok := res.samples[k]; !ok {
					res.samples[k] = v
				}
			}
			mu.Unlock()
		})
	}
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()

	readCPU := func() (int64, int64) {
		srv, err := procCPUTicks(p.pid)
		if err != nil && res.cpuErr == nil {
			res.cpuErr = err
		}
		self, _ := procCPUTicks(os.Getpid())
		return srv, self
	}
	warm := time.NewTimer(p.warmup)
	select {
	case <-warm.C:
		res.window = true
		res.windowStart = time.Since(start)
		res.cpu0, res.self0 = readCPU()
	case at := <-ranOut:
		res.ranOut, res.ranOutAt = true, at
	}
	if res.window {
		end := time.NewTimer(time.Until(start.Add(p.warmup + p.duration)))
		select {
		case <-end.C:
		case at := <-ranOut:
			res.ranOut, res.ranOutAt = true, at
		}
		end.Stop()
		res.windowEnd = time.Since(start)
		res.cpu1, res.self1 = readCPU()
	} else {
		res.windowStart, res.windowEnd = 1<<62, 1<<62
	}
	stop.Store(true)
	select {
	case <-done:
	case <-time.After(p.drain):
		cancel()
		<-done
	}
	res.used = min(int(next.Load()), len(p.bodies))
	slices.SortFunc(res.records, func(a, b record) int { return cmp.Compare(a.end, b.end) })
	return res
}

// post sends one token request and classifies the answer: outcomeOK for a
// 200 with an access token, "<status> <error>" for an OAuth error, and a
// description of anything else. sample is the error's description.
func post(ctx context.Context, client *http.Client, u string, body []byte) (outcome, sample string) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return "client error: " + err.Error(), ""
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return outcomeCanceled, ""
		}
		return "transport error: " + describe(err), err.Error()
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	_ = resp.Body.Close()
	if err != nil {
		if ctx.Err() != nil {
			return outcomeCanceled, ""
		}
		return fmt.Sprintf("%d, then transport error reading the body: %s", resp.StatusCode, describe(err)), err.Error()
	}
	return classify(resp.StatusCode, data)
}

// classify names the outcome of an answer.
func classify(status int, body []byte) (outcome, sample string) {
	var r struct {
		AccessToken string `json:"access_token"`
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}
	jsonErr := json.Unmarshal(body, &r)
	switch {
	case status == http.StatusOK && jsonErr == nil && r.AccessToken != "":
		return outcomeOK, ""
	case status == http.StatusOK:
		return "200 without an access token", truncate(string(body), 200)
	case jsonErr == nil && r.Error != "":
		return fmt.Sprintf("%d %s", status, r.Error), truncate(r.Description, 200)
	default:
		return fmt.Sprintf("%d without an OAuth error", status), truncate(string(body), 200)
	}
}

// describe shortens a transport error: the url.Error's cause without the
// method and URL.
func describe(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return truncate(err.Error(), 120)
}

func truncate(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
