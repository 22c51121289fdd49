package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v3"
	"github.com/go-jose/go-jose/v3/jwt"
	"github.com/ory/fosite"
)

// A resource server that verifies this server's RFC 9068 access tokens by
// itself: it fetches the key set from /jwks.json, picks the key by the
// token's kid, and checks the algorithm, the "at+jwt" type (so that no
// other JWT signed by the same keys passes for an access token), the
// issuer, its own audience and the expiry.
func Example_jwtAccessTokenResourceServer() {
	const issuer = "https://as.example"
	const api = "https://api.example"

	// The authorization server, with access_tokens: {format: jwt}.
	base, err := newTokenStrategy(&fosite.Config{GlobalSecret: []byte("an-example-secret-of-32-bytes!!!")})
	if err != nil {
		panic(err)
	}
	tokens, err := newJWTAccessTokens(AccessTokensConfig{Format: AccessTokensJWT}, "", issuer, time.Hour, base, nil)
	if err != nil {
		panic(err)
	}
	as := httptest.NewServer(http.HandlerFunc(tokens.ServeJWKS))
	defer as.Close()

	// A token as the jwt-bearer grant issues it.
	req := fosite.NewAccessRequest(&fosite.DefaultSession{Subject: "spiffe://example.org/billing"})
	req.Client = &fosite.DefaultClient{ID: "https://idp.example"}
	req.GrantScope("invoices:read")
	req.GrantAudience(api)
	req.Session.SetExpiresAt(fosite.AccessToken, time.Now().Add(5*time.Minute))
	token, _, err := tokens.GenerateAccessToken(context.Background(), req)
	if err != nil {
		panic(err)
	}

	// The resource server. A real one caches the key set for the
	// response's Cache-Control max-age, and fetches it again when a token
	// names a kid it does not know.
	resp, err := http.Get(as.URL + "/jwks.json")
	if err != nil {
		panic(err)
	}
	defer func() { _ = resp.Body.Close() }()
	var keys jose.JSONWebKeySet
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&keys); err != nil {
		panic(err)
	}
	fmt.Println("Cache-Control:", resp.Header.Get("Cache-Control"))

	verify := func(token string) (map[string]any, error) {
		parsed, err := jwt.ParseSigned(token)
		if err != nil {
			return nil, err
		}
		if len(parsed.Headers) != 1 {
			return nil, errors.New("one signature expected")
		}
		h := parsed.Headers[0]
		if h.Algorithm != string(jose.ES256) && h.Algorithm != string(jose.EdDSA) {
			return nil, fmt.Errorf("algorithm %q refused", h.Algorithm)
		}
		if typ, _ := h.ExtraHeaders[jose.HeaderType].(string); typ != "at+jwt" {
			return nil, fmt.Errorf("typ %q: not an access token", typ)
		}
		found := keys.Key(h.KeyID)
		if len(found) != 1 {
			return nil, fmt.Errorf("unknown kid %q", h.KeyID)
		}
		var std jwt.Claims
		var all map[string]any
		if err := parsed.Claims(found[0], &std, &all); err != nil {
			return nil, err
		}
		if err := std.ValidateWithLeeway(jwt.Expected{Issuer: issuer, Audience: jwt.Audience{api}, Time: time.Now()}, 30*time.Second); err != nil {
			return nil, err
		}
		return all, nil
	}

	claims, err := verify(token)
	if err != nil {
		panic(err)
	}
	for _, name := range []string{"iss", "sub", "aud", "client_id", "scope"} {
		fmt.Printf("%s: %v\n", name, claims[name])
	}

	// The same token with one character of its payload changed.
	forged := []byte(token)
	i := strings.IndexByte(token, '.') + 10
	if forged[i] == 'A' {
		forged[i] = 'B'
	} else {
		forged[i] = 'A'
	}
	if _, err := verify(string(forged)); err != nil {
		fmt.Println("altered token refused")
	}

	// Output:
	// Cache-Control: public, max-age=300
	// iss: https://as.example
	// sub: spiffe://example.org/billing
	// aud: https://api.example
	// client_id: https://idp.example
	// scope: invoices:read
	// altered token refused
}
