package handler_test

import (
	"errors"
	"net/url"
	"testing"
	"time"

	"github.com/ory/fosite"

	"github.com/jwtbearer/jwtbearer/handler"
	"github.com/jwtbearer/jwtbearer/handler/handlertest"
)

// FuzzTokenEndpoint sends arbitrary assertions through fosite's whole token
// endpoint with the handler on the memory store. Whatever the input, the
// answer is a token or an RFC 6749 client error: never a panic, never a
// server error.
func FuzzTokenEndpoint(f *testing.F) {
	now := time.Now()
	valid := handlertest.Claims("TestClient", "User1", tokenURL, now)
	f.Add(rsaKey.Sign(valid))
	f.Add(rsaKey.SignNoKID(valid))
	f.Add(rsaKey.SignWith("PS256", map[string]interface{}{"crit": []string{"b64"}, "b64": false}, valid))
	f.Add(handlertest.SignRaw(rsaKey, []byte(`{"iss":1,"sub":["x"],"aud":{},"exp":1e400}`)))
	f.Add(handlertest.SignRaw(rsaKey, []byte(`null`)))
	f.Add("eyJhbGciOiJub25lIn0.e30.")
	f.Add("a.b.c")
	f.Add("")
	e := newEnv(f, &handler.Settings{JTIOptional: true}, trust(rsaKey))
	f.Fuzz(func(t *testing.T, assertion string) {
		_, _, err := e.token(url.Values{"grant_type": {handler.GrantType}, "assertion": {assertion}}, nil)
		if err == nil {
			return
		}
		rfc := fosite.ErrorToRFC6749Error(err)
		if rfc.CodeField >= 500 || errors.Is(err, fosite.ErrServerError) {
			t.Fatalf("server error for %q: %v", assertion, err)
		}
	})
}

// FuzzClaims signs arbitrary claims sets with a trusted key, so that every
// input reaches the claim checks behind the signature.
func FuzzClaims(f *testing.F) {
	f.Add([]byte(`{"iss":"TestClient","sub":"User1","aud":"https://as.example/token","exp":4102444800,"iat":4102441200,"jti":"x"}`))
	f.Add([]byte(`{"iss":"TestClient","sub":"User1","aud":["a","https://as.example"],"exp":1e300,"nbf":-1,"scope":"read write"}`))
	f.Add([]byte(`{"iss":"TestClient","sub":"User1","aud":null,"exp":null,"Scope":"x","ISS":"y"}`))
	f.Add([]byte(`[]`))
	e := newEnv(f, &handler.Settings{JTIOptional: true, MaxAssertionLifetime: 24 * 365 * 100 * time.Hour}, trust(rsaKey))
	f.Fuzz(func(t *testing.T, payload []byte) {
		_, _, err := e.token(url.Values{"grant_type": {handler.GrantType}, "assertion": {handlertest.SignRaw(rsaKey, payload)}}, nil)
		if err == nil {
			return
		}
		if rfc := fosite.ErrorToRFC6749Error(err); rfc.CodeField >= 500 {
			t.Fatalf("server error for %q: %v", payload, err)
		}
	})
}
