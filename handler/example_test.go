package handler_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v3"
	"github.com/go-jose/go-jose/v3/jwt"
	"github.com/ory/fosite"
	"github.com/ory/fosite/compose"

	"github.com/jwtbearer/jwtbearer/handler"
	"github.com/jwtbearer/jwtbearer/store"
	"github.com/jwtbearer/jwtbearer/store/memory"
)

// Adding the grant to an existing fosite deployment: compose it with the
// other factories, on a storage that also implements store.KeyResolver and
// store.ReplayGuard (store/memory here).
func Example() {
	ctx := context.Background()
	config := &fosite.Config{
		AccessTokenLifespan: time.Hour,
		AccessTokenIssuer:   "https://as.example",       // accepted as "aud"
		TokenURL:            "https://as.example/token", // accepted as "aud"
		GlobalSecret:        []byte("a 32-byte secret for HMAC tokens"),
	}
	storage := memory.New()
	provider := compose.Compose(config, storage, compose.NewOAuth2HMACStrategy(config),
		compose.OAuth2ClientCredentialsGrantFactory,
		handler.Factory, // or handler.NewFactory(&handler.Settings{...})
	)

	// The out-of-band agreement (RFC 7523 §5): issuer TestClient may obtain
	// tokens for subject User1 with this public key, for scope "read".
	issuerKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	_, err := storage.CreateTrust(ctx, store.Trust{
		Issuer:  "TestClient",
		Subject: "User1",
		Scopes:  []string{"read"},
		Keys:    []jose.JSONWebKey{{Key: &issuerKey.PublicKey}},
	})
	if err != nil {
		panic(err)
	}

	// The issuer signs an assertion and posts it to the token endpoint.
	signer, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: issuerKey}, nil)
	now := time.Now()
	assertion, _ := jwt.Signed(signer).Claims(jwt.Claims{
		Issuer:   "TestClient",
		Subject:  "User1",
		Audience: jwt.Audience{"https://as.example/token"},
		Expiry:   jwt.NewNumericDate(now.Add(5 * time.Minute)),
		IssuedAt: jwt.NewNumericDate(now),
		ID:       "a-unique-id",
	}).CompactSerialize()
	form := url.Values{"grant_type": {handler.GrantType}, "assertion": {assertion}, "scope": {"read"}}
	r := httptest.NewRequest(http.MethodPost, "/token", strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")

	// The usual fosite token endpoint.
	ar, err := provider.NewAccessRequest(ctx, r, &fosite.DefaultSession{})
	if err != nil {
		fmt.Println(fosite.ErrorToRFC6749Error(err).GetDescription())
		return
	}
	resp, err := provider.NewAccessResponse(ctx, ar)
	if err != nil {
		panic(err)
	}
	fmt.Println(resp.GetTokenType(), ar.GetSession().GetSubject(), ar.GetGrantedScopes())
	// Output: bearer User1 [read]
}
