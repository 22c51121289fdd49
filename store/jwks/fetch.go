package jwks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v3"

	"github.com/jwtbearer/jwtbearer/store"
)

// defaultClient is the client used when Config.HTTPClient is nil.
func defaultClient() *http.Client {
	var t *http.Transport
	if dt, ok := http.DefaultTransport.(*http.Transport); ok {
		t = dt.Clone()
	} else {
		t = &http.Transport{Proxy: http.ProxyFromEnvironment, ForceAttemptHTTP2: true}
	}
	t.DisableKeepAlives = true
	return &http.Client{Transport: t, CheckRedirect: refuseRedirects}
}

// refuseRedirects makes the client return a 3xx response as it is, which
// get then refuses. A redirect would take the fetch to a URL the operator
// never configured, and store.CheckRemoteURL never saw.
func refuseRedirects(*http.Request, []*http.Request) error {
	return http.ErrUseLastResponse
}

// get fetches u and returns its body and header, or says why not. The
// request is bounded by Timeout but detached from ctx's cancellation: other
// lookups may be waiting for this fetch.
func (c *Cache) get(ctx context.Context, u, accept string) ([]byte, http.Header, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, nil, err
	}
	req.Header.Set("Accept", accept)
	resp, err := c.client.Do(req)
	if err != nil {
		return nil, nil, c.requestError(ctx, err)
	}
	defer func() { _ = resp.Body.Close() }()

	switch code := resp.StatusCode; {
	case code >= 300 && code < 400:
		return nil, nil, fmt.Errorf("status %d: redirects are not followed", code)
	case code != http.StatusOK:
		return nil, nil, fmt.Errorf("status %d", code)
	case resp.ContentLength > c.cfg.MaxBytes:
		return nil, nil, fmt.Errorf("response of %d bytes is larger than the limit of %d", resp.ContentLength, c.cfg.MaxBytes)
	}
	// One byte more than allowed tells a body at the limit from a larger
	// one, without reading the rest.
	body, err := io.ReadAll(io.LimitReader(resp.Body, c.cfg.MaxBytes+1))
	if err != nil {
		return nil, nil, c.requestError(ctx, err)
	}
	if int64(len(body)) > c.cfg.MaxBytes {
		return nil, nil, fmt.Errorf("response is larger than the limit of %d bytes", c.cfg.MaxBytes)
	}
	return body, resp.Header, nil
}

// requestError names a timeout as such, and drops the URL that *url.Error
// repeats (every message of this package names it already). net/http
// quotes the bytes it could not read as HTTP ("malformed HTTP response
// \"...\""); those bytes come from the server and are not repeated.
func (c *Cache) requestError(ctx context.Context, err error) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("timed out after %s: %w", c.cfg.Timeout, context.DeadlineExceeded)
	}
	if ue, ok := errors.AsType[*url.Error](err); ok {
		err = ue.Err
	}
	if strings.Contains(err.Error(), "malformed") {
		return errors.New("request failed: malformed HTTP response")
	}
	return fmt.Errorf("request failed: %w", err)
}

// freshness is how long a response with header h stays fresh, before
// jitter: its Cache-Control max-age (less its Age, as RFC 9111 §4.2.3 has
// it, for responses served by an intermediate cache) within [MinTTL,
// MaxTTL]; MinTTL for no-store and no-cache; DefaultTTL without a valid
// max-age. Expires is not read.
func (c *Cache) freshness(h http.Header) time.Duration {
	maxAge := int64(-1)
	for _, line := range h.Values("Cache-Control") {
		for directive := range strings.SplitSeq(line, ",") {
			name, value, _ := strings.Cut(directive, "=")
			switch strings.ToLower(strings.TrimSpace(name)) {
			case "no-store", "no-cache":
				return c.cfg.MinTTL
			case "max-age":
				if n, ok := parseSeconds(value); ok && maxAge < 0 {
					maxAge = n
				}
			}
		}
	}
	if maxAge < 0 {
		return c.cfg.DefaultTTL
	}
	if age, ok := parseSeconds(h.Get("Age")); ok {
		maxAge = max(maxAge-age, 0)
	}
	ttl := c.cfg.MaxTTL
	if maxAge < int64(math.MaxInt64/time.Second) {
		ttl = time.Duration(maxAge) * time.Second
	}
	return min(max(ttl, c.cfg.MinTTL), c.cfg.MaxTTL)
}

// parseSeconds reads delta-seconds (RFC 9111 §1.2.2), also in the quoted
// form recipients are asked to accept. Values too large for an int64 are
// read as the largest one.
func parseSeconds(s string) (int64, bool) {
	s = strings.TrimSpace(s)
	if len(s) >= 2 && s[0] == '"' && s[len(s)-1] == '"' {
		s = s[1 : len(s)-1]
	}
	if s == "" || strings.Trim(s, "0123456789") != "" {
		return 0, false
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil { // only a range error is left
		return math.MaxInt64, true
	}
	return n, true
}

// jitter shortens ttl by a random amount of up to 10%, so that servers that
// fetched a set together do not all refetch it together.
func jitter(ttl time.Duration) time.Duration {
	return ttl - time.Duration(rand.Int64N(int64(ttl)/10+1))
}

// privateMembers are the JWK members that carry private or secret key
// material (RFC 7518 §6.2.2, §6.3.2, §6.4.1; RFC 8037 §2). A key that has
// any of them is skipped before go-jose parses it, so that no private key
// is ever held, even briefly, as a usable value.
var privateMembers = []string{"d", "p", "q", "dp", "dq", "qi", "oth", "k"}

// maxKeys is the most usable keys kept from one set: an assertion without a
// kid is tried against each of them.
const maxKeys = 100

// parseJWKS reads a JWK Set. The body must be a JSON object with a "keys"
// array; each element is parsed on its own, so that one key this server
// cannot use is skipped (and logged) rather than failing the set. The first
// maxKeys usable keys are kept; the rest are skipped and logged.
//
// Errors never quote the body (encoding/json's syntax errors quote the
// offending byte): the URL may serve something else than a key set.
func (c *Cache) parseJWKS(u string, body []byte) (*snapshot, []any, error) {
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(body, &doc); err != nil {
		return nil, nil, errors.New(`body is not a JSON object with a "keys" array`)
	}
	rawKeys, ok := doc["keys"]
	if !ok {
		return nil, nil, errors.New(`body has no "keys" member`)
	}
	var elems []json.RawMessage
	if err := json.Unmarshal(rawKeys, &elems); err != nil || elems == nil {
		return nil, nil, errors.New(`"keys" is not an array`)
	}

	keys := make([]jose.JSONWebKey, 0, len(elems))
	for i, raw := range elems {
		k, kid, err := parseKey(raw)
		if err != nil {
			attrs := []any{"url", u, "index", i, "reason", err.Error()}
			if kid != "" {
				attrs = append(attrs, "kid", kid)
			}
			c.log.Warn("jwks: key skipped", attrs...)
			continue
		}
		keys = append(keys, k)
	}
	keys = c.dropAmbiguous(u, keys)
	if len(keys) > maxKeys {
		c.log.Warn("jwks: key set holds too many usable keys; the rest skipped",
			"url", u, "usable", len(keys), "kept", maxKeys)
		keys = slices.Clip(keys[:maxKeys])
	}

	skipped := len(elems) - len(keys)
	if len(keys) == 0 {
		// Not an error: an issuer may withdraw all its keys, and then no
		// assertion of it must verify.
		c.log.Warn("jwks: key set holds no usable key", "url", u, "skipped", skipped)
	}
	return &snapshot{keys: keys}, []any{"keys", len(keys), "skipped", skipped}, nil
}

// parseKey reads and validates one element of "keys". It also returns the
// element's kid, if it has one, for the log.
func parseKey(raw json.RawMessage) (jose.JSONWebKey, string, error) {
	var members map[string]json.RawMessage
	if err := json.Unmarshal(raw, &members); err != nil || members == nil { // null leaves it nil
		return jose.JSONWebKey{}, "", errors.New("not a JSON object")
	}
	var kid, kty string
	_ = json.Unmarshal(members["kid"], &kid) // absent or not a string: none
	_ = json.Unmarshal(members["kty"], &kty)
	if kty == "oct" {
		return jose.JSONWebKey{}, kid, errors.New(`symmetric ("oct") key`)
	}
	for _, m := range privateMembers {
		if _, ok := members[m]; ok {
			return jose.JSONWebKey{}, kid, fmt.Errorf("private key (has a %q member)", m)
		}
	}
	var k jose.JSONWebKey
	if err := k.UnmarshalJSON(raw); err != nil {
		return jose.JSONWebKey{}, kid, err
	}
	if err := store.NormalizeKey(&k); err != nil {
		return jose.JSONWebKey{}, kid, err
	}
	return k, kid, nil
}

// dropAmbiguous keeps one copy of keys repeated under the same kid, and
// drops every key of a kid shared by different keys (different material,
// alg or use): an assertion naming that kid could not tell which is meant,
// and trying each would let whoever added the second key choose.
func (c *Cache) dropAmbiguous(u string, keys []jose.JSONWebKey) []jose.JSONWebKey {
	first := make(map[string]int, len(keys)) // kid -> index in out
	thumbs := make([]string, 0, len(keys))
	var conflicts []string
	out := keys[:0:0]
	for _, k := range keys {
		tp, err := store.Thumbprint(&k)
		if err != nil { // NormalizeKey accepted it, so not expected
			c.log.Warn("jwks: key skipped", "url", u, "kid", k.KeyID, "reason", err.Error())
			continue
		}
		j, seen := first[k.KeyID]
		if !seen {
			first[k.KeyID] = len(out)
			out = append(out, k)
			thumbs = append(thumbs, tp)
			continue
		}
		if thumbs[j] != tp || out[j].Algorithm != k.Algorithm || out[j].Use != k.Use {
			if !slices.Contains(conflicts, k.KeyID) {
				conflicts = append(conflicts, k.KeyID)
			}
		}
	}
	for _, kid := range conflicts {
		c.log.Warn("jwks: kid names different keys; all of them skipped", "url", u, "kid", kid)
	}
	return slices.DeleteFunc(out, func(k jose.JSONWebKey) bool { return slices.Contains(conflicts, k.KeyID) })
}
