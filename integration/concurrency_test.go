package integration_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestConcurrentCopiesOfOneAssertion: 64 copies of one assertion sent at
// once over real connections get exactly one token; every other copy is
// invalid_grant (the replay claim is atomic), and nothing fails with 5xx.
func TestConcurrentCopiesOfOneAssertion(t *testing.T) {
	t.Parallel()
	const copies = 64
	k, files := rsaKeyFile("id_rsa.pub")
	ts := newServer(t, minimalConfig, fixture{Files: files})
	body := grant(k.Sign(claims("TestClient", "User1", ts.TokenURL)), "scope", "read").Encode()

	client := &http.Client{
		Timeout:   30 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: copies, DisableKeepAlives: true},
	}
	t.Cleanup(client.CloseIdleConnections)

	type result struct {
		status int
		body   string
		err    error
	}
	results := make([]result, copies)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range copies {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, ts.TokenURL, strings.NewReader(body))
			if err != nil {
				results[i].err = err
				return
			}
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			resp, err := client.Do(req)
			if err != nil {
				results[i].err = err
				return
			}
			defer func() { _ = resp.Body.Close() }()
			b, err := io.ReadAll(resp.Body)
			results[i] = result{status: resp.StatusCode, body: string(b), err: err}
		}()
	}
	close(start)
	wg.Wait()

	var ok, replayed int
	for i, r := range results {
		require.NoError(t, r.err, "request %d", i)
		require.Less(t, r.status, 500, "request %d: %s", i, r.body)
		switch r.status {
		case http.StatusOK:
			ok++
			var tok tokenResponse
			require.NoError(t, json.Unmarshal([]byte(r.body), &tok))
			assert.NotEmpty(t, tok.AccessToken)
			assert.Equal(t, "read", tok.Scope)
		case http.StatusBadRequest:
			var e oauthError
			require.NoError(t, json.Unmarshal([]byte(r.body), &e), "request %d: %s", i, r.body)
			assert.Equal(t, "invalid_grant", e.Error, "request %d: %s", i, r.body)
			replayed++
		default:
			t.Errorf("request %d: unexpected status %d: %s", i, r.status, r.body)
		}
	}
	assert.Equal(t, 1, ok, "exactly one copy gets a token")
	assert.Equal(t, copies-1, replayed, "every other copy is invalid_grant")
}
