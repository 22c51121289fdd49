package integration_test

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/jwtbearer/jwtbearer/handler/handlertest"
)

// tableConfig has one relationship per trait the table needs: a plain
// one (TestClient/User1, from a PEM file), one restricted to client svc,
// an expired one, one pinned to RS256, an EC key given as an inline JWK
// for any subject, an Ed25519 key given as inline PEM, and a JWK Set file.
const tableConfig = `
listen: {{.Listen}}
issuer: {{.Issuer}}
access_token_lifetime: 1h
jwt_bearer:
  require_jti: true
  clock_skew: 30s
  max_assertion_lifetime: 1h
  max_assertion_size: 16384
  audiences: [https://api.mysite.com]
  require_client_auth: false
  cap_token_lifetime: true
  issue_refresh_tokens: false
trust:
  - id: user1
    issuer: TestClient
    subject: User1
    scopes: [read, write]
    keys:
      - file: id_rsa.pub
  - id: partner
    issuer: Partner
    subject: User1
    scopes: [read]
    clients: [svc]
    keys:
      - file: partner.pub
  - id: old
    issuer: OldPartner
    subject: User1
    scopes: [read]
    expires_at: 2020-01-01T00:00:00Z
    keys:
      - file: old.pub
  - id: pinned
    issuer: Pinned
    subject: User1
    scopes: [read]
    algorithms: [RS256]
    keys:
      - file: pinned.pub
  - id: ec
    issuer: ECIssuer
    any_subject: true
    scopes: [read]
    keys:
      - jwk: {{json .V.ecJWK}}
  - id: ed
    issuer: EdIssuer
    subject: robot
    scopes: [read]
    keys:
      - pem: |
{{indent 10 .V.edPEM}}
  - id: jwks
    issuer: JWKSIssuer
    subject: User1
    scopes: [read]
    keys:
      - file: jwks.json
clients:
  - id: svc
    secret_hash: "{{hash "s3cret"}}"
    grant_types: [client_credentials, "urn:ietf:params:oauth:grant-type:jwt-bearer", refresh_token]
    scopes: [read]
  - id: cconly
    secret_hash: "{{hash "cc-s3cret"}}"
    grant_types: [client_credentials]
    scopes: [read, write]
  - id: other
    secret: other-s3cret
    grant_types: ["urn:ietf:params:oauth:grant-type:jwt-bearer"]
    scopes: [read, write]
`

// tableEnv is the table server and the keys its relationships trust,
// plus a stranger key nobody trusts.
type tableEnv struct {
	ts                                *testServer
	user1, partner, old, pinned       *handlertest.Key
	ec, ed, jwksRSA, jwksEC, stranger *handlertest.Key
}

func newTableEnv(t *testing.T) *tableEnv {
	t.Helper()
	e := &tableEnv{
		user1: handlertest.NewRSAKey(), partner: handlertest.NewRSAKey(), old: handlertest.NewRSAKey(),
		pinned: handlertest.NewRSAKey(), ec: handlertest.NewECKey(), ed: handlertest.NewEd25519Key(),
		jwksRSA: handlertest.NewRSAKey(), jwksEC: handlertest.NewECKey(), stranger: handlertest.NewRSAKey(),
	}
	set, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{e.jwksRSA.Public, e.jwksEC.Public}})
	require.NoError(t, err)
	e.ts = newServer(t, tableConfig, fixture{
		Files: map[string][]byte{
			"id_rsa.pub":  e.user1.PublicKeyPEM(),
			"partner.pub": e.partner.PublicKeyPEM(),
			"old.pub":     e.old.PublicKeyPEM(),
			"pinned.pub":  e.pinned.PublicKeyPEM(),
			"jwks.json":   set,
		},
		Vars: map[string]any{"ecJWK": e.ec.PublicJWKJSON(), "edPEM": e.ed.PublicKeyPEM()},
	})
	return e
}

// claims are valid claims from TestClient about User1 for the token URL.
func (e *tableEnv) claims() map[string]any { return claims("TestClient", "User1", e.ts.TokenURL) }

// valid is a valid assertion for the user1 relationship with the changes
// kv (see with).
func (e *tableEnv) valid(kv ...any) string { return e.user1.Sign(with(e.claims(), kv...)) }

// header is the usual JWS header for k: its kid and typ JWT.
func header(k *handlertest.Key, kv ...any) map[string]any {
	return with(map[string]any{"kid": k.Public.KeyID, "typ": "JWT"}, kv...)
}

// signRaw signs payload bytes as they are (not necessarily a JSON object).
func signRaw(k *handlertest.Key, hdr map[string]any, payload []byte) string {
	opts := &jose.SignerOptions{}
	for name, v := range hdr {
		opts.WithHeader(jose.HeaderKey(name), v)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.SignatureAlgorithm(k.Alg), Key: k.Private}, opts)
	if err != nil {
		panic(err)
	}
	obj, err := signer.Sign(payload)
	if err != nil {
		panic(err)
	}
	s, err := obj.CompactSerialize()
	if err != nil {
		panic(err)
	}
	return s
}

// unsigned builds header.payload.signature from JSON texts and a
// signature string, without signing.
func unsigned(headerJSON, payloadJSON, signature string) string {
	enc := base64.RawURLEncoding
	return enc.EncodeToString([]byte(headerJSON)) + "." + enc.EncodeToString([]byte(payloadJSON)) + "." + signature
}

// jsonSerialization turns a compact JWS into the flattened JWS JSON
// serialization of RFC 7515 §7.2.2.
func jsonSerialization(compact string) string {
	p := strings.Split(compact, ".")
	b, _ := json.Marshal(map[string]string{"protected": p[0], "payload": p[1], "signature": p[2]})
	return string(b)
}

type tokenCase struct {
	name string
	// form builds the request; raw, when set, is sent as the body instead.
	form func(e *tableEnv) url.Values
	raw  func(e *tableEnv) string
	opts []reqOption

	status int
	code   string // "" for a 200 token response
	// hint, when set, must appear in error_description (case-insensitive):
	// it shows the rejection came from the intended check.
	hint string
	// scope is the scope the token must have, on success.
	scope string
}

func tokenCases() []tokenCase {
	ok := func(name string, form func(e *tableEnv) url.Values, scope string, opts ...reqOption) tokenCase {
		return tokenCase{name: name, form: form, opts: opts, status: 200, scope: scope}
	}
	grantErr := func(name, hint string, form func(e *tableEnv) url.Values) tokenCase {
		return tokenCase{name: name, form: form, status: 400, code: "invalid_grant", hint: hint}
	}
	a := func(f func(e *tableEnv) string) func(e *tableEnv) url.Values {
		return func(e *tableEnv) url.Values { return grant(f(e)) }
	}
	svc := basicAuth("svc", "s3cret")

	return []tokenCase{
		// Accepted.
		ok("valid assertion", a(func(e *tableEnv) string { return e.valid() }), ""),
		ok("no kid header, as the PHP walkthrough signs", a(func(e *tableEnv) string { return e.user1.SignNoKID(e.claims()) }), ""),
		ok("aud is the issuer identifier", a(func(e *tableEnv) string { return e.valid("aud", e.ts.Issuer) }), ""),
		ok("aud is a configured audience", a(func(e *tableEnv) string { return e.valid("aud", "https://api.mysite.com") }), ""),
		ok("aud array holding the token URL", a(func(e *tableEnv) string {
			return e.valid("aud", []string{"https://elsewhere.example", e.ts.TokenURL})
		}), ""),
		ok("form content type with a charset", a(func(e *tableEnv) string { return e.valid() }), "",
			contentType("application/x-www-form-urlencoded; charset=UTF-8")),
		ok("scope parameter within the relationship", func(e *tableEnv) url.Values {
			return grant(e.valid(), "scope", "read write")
		}, "read write"),
		ok("scope claim honoured", a(func(e *tableEnv) string { return e.valid("scope", "read") }), "read"),
		ok("scope parameter within the scope claim", func(e *tableEnv) url.Values {
			return grant(e.valid("scope", "read write"), "scope", "read")
		}, "read"),
		ok("nbf within the clock skew", a(func(e *tableEnv) string { return e.valid("nbf", unix(10*time.Second)) }), ""),
		ok("lifetime of exactly the maximum", a(func(e *tableEnv) string {
			return e.valid("iat", unix(0), "exp", unix(time.Hour))
		}), ""),
		ok("PS256 with an RSA key", a(func(e *tableEnv) string {
			return e.user1.SignWith("PS256", header(e.user1), e.claims())
		}), ""),
		ok("EC key from an inline JWK, any subject", a(func(e *tableEnv) string {
			return e.ec.Sign(claims("ECIssuer", "anyone-at-all", e.ts.TokenURL))
		}), ""),
		ok("Ed25519 key from inline PEM", a(func(e *tableEnv) string {
			return e.ed.Sign(claims("EdIssuer", "robot", e.ts.TokenURL))
		}), ""),
		ok("second key of a JWK Set file", a(func(e *tableEnv) string {
			return e.jwksEC.Sign(claims("JWKSIssuer", "User1", e.ts.TokenURL))
		}), ""),
		ok("relationship pinned to RS256, RS256", a(func(e *tableEnv) string {
			return e.pinned.Sign(claims("Pinned", "User1", e.ts.TokenURL))
		}), ""),
		ok("authenticated client within its scopes", func(e *tableEnv) url.Values {
			return grant(e.valid(), "scope", "read")
		}, "read", svc),
		ok("restricted relationship, listed client", func(e *tableEnv) url.Values {
			return grant(e.partner.Sign(claims("Partner", "User1", e.ts.TokenURL)), "scope", "read")
		}, "read", svc),

		// Malformed assertions.
		grantErr("assertion larger than max_assertion_size", "larger than", a(func(e *tableEnv) string {
			return e.valid("pad", strings.Repeat("x", 17000))
		})),
		grantErr("JWS JSON serialization", "compact", a(func(e *tableEnv) string { return jsonSerialization(e.valid()) })),
		grantErr("five parts (JWE compact)", "compact", a(func(e *tableEnv) string { return e.valid() + ".AAAA.BBBB" })),
		grantErr("garbage", "compact", a(func(e *tableEnv) string { return "not a jwt" })),
		grantErr("three parts that are not a JWS", "parsed", a(func(e *tableEnv) string { return "aaaa.bbbb.cccc" })),
		grantErr("base64 padding", "compact", a(func(e *tableEnv) string { return e.valid() + "==" })),
		grantErr("trailing white space", "compact", a(func(e *tableEnv) string { return e.valid() + "\n" })),
		grantErr("alg none, empty signature", "compact", a(func(e *tableEnv) string {
			c, _ := json.Marshal(e.claims())
			return unsigned(`{"alg":"none","typ":"JWT"}`, string(c), "")
		})),
		grantErr("alg none with a signature", `"none"`, a(func(e *tableEnv) string {
			c, _ := json.Marshal(e.claims())
			return unsigned(`{"alg":"none","typ":"JWT"}`, string(c), "c2lnbmF0dXJl")
		})),
		// Algorithm confusion; like the key failures, no hint.
		grantErr("HS256 signed with the public key", "", a(func(e *tableEnv) string {
			return handlertest.SignWithKey(jose.HS256, e.user1.PublicKeyPEM(), header(e.user1), e.claims())
		})),
		grantErr("HS256 with the public key, no kid", "", a(func(e *tableEnv) string {
			return handlertest.SignWithKey(jose.HS256, e.user1.PublicKeyPEM(), map[string]any{"typ": "JWT"}, e.claims())
		})),
		grantErr("crit header", "crit", a(func(e *tableEnv) string {
			return e.user1.SignWith("RS256", header(e.user1, "crit", []string{"exp"}, "exp", unix(time.Minute)), e.claims())
		})),
		grantErr("crit b64 header", "crit", a(func(e *tableEnv) string {
			return e.user1.SignWith("RS256", header(e.user1, "crit", []string{"b64"}, "b64", true), e.claims())
		})),
		grantErr("no alg header", `"alg"`, a(func(e *tableEnv) string {
			signed := e.valid()
			parts := strings.Split(signed, ".")
			h := base64.RawURLEncoding.EncodeToString([]byte(`{"typ":"JWT","kid":"` + e.user1.Public.KeyID + `"}`))
			return h + "." + parts[1] + "." + parts[2]
		})),
		grantErr("kid longer than 256 bytes", "kid", a(func(e *tableEnv) string {
			return e.user1.SignWith("RS256", header(e.user1, "kid", strings.Repeat("k", 300)), e.claims())
		})),
		grantErr("claims are a JSON array", "claims", a(func(e *tableEnv) string {
			return signRaw(e.user1, header(e.user1), []byte(`["TestClient","User1"]`))
		})),
		grantErr("claims are not JSON", "claims", a(func(e *tableEnv) string {
			return signRaw(e.user1, header(e.user1), []byte(`iss=TestClient`))
		})),
		grantErr("exp is a string", "claims", a(func(e *tableEnv) string {
			return e.valid("exp", fmt.Sprint(unix(time.Minute)))
		})),
		grantErr("aud is a number", "claims", a(func(e *tableEnv) string { return e.valid("aud", 42) })),

		// Missing claims.
		grantErr("missing iss", `"iss"`, a(func(e *tableEnv) string { return e.valid("iss", nil) })),
		grantErr("missing sub", `"sub"`, a(func(e *tableEnv) string { return e.valid("sub", nil) })),
		grantErr("missing aud", `"aud"`, a(func(e *tableEnv) string { return e.valid("aud", nil) })),
		grantErr("empty aud array", `"aud"`, a(func(e *tableEnv) string { return e.valid("aud", []string{}) })),
		grantErr("missing exp", `"exp"`, a(func(e *tableEnv) string { return e.valid("exp", nil) })),

		// Keys. These share one description (see
		// TestKeyFailuresRevealNoTrustRelationship), so no hint.
		grantErr("unknown issuer", "", a(func(e *tableEnv) string { return e.valid("iss", "Nobody") })),
		grantErr("unknown issuer, no kid", "", a(func(e *tableEnv) string {
			return e.user1.SignNoKID(with(e.claims(), "iss", "Nobody"))
		})),
		grantErr("wrong subject", "", a(func(e *tableEnv) string { return e.valid("sub", "User2") })),
		grantErr("issuer compared byte for byte", "", a(func(e *tableEnv) string { return e.valid("iss", "testclient") })),
		grantErr("unknown kid", "", a(func(e *tableEnv) string {
			return e.user1.SignWith("RS256", header(e.user1, "kid", "no-such-key"), e.claims())
		})),
		grantErr("wrong key, no kid", "", a(func(e *tableEnv) string { return e.stranger.SignNoKID(e.claims()) })),
		grantErr("wrong key claiming the trusted kid", "", a(func(e *tableEnv) string {
			return e.stranger.SignWith("RS256", header(e.user1), e.claims())
		})),
		grantErr("embedded jwk header is not trusted", "", a(func(e *tableEnv) string {
			var jwk map[string]any
			_ = json.Unmarshal(e.stranger.PublicJWKJSON(), &jwk)
			return e.stranger.SignWith("RS256", map[string]any{"typ": "JWT", "jwk": jwk}, e.claims())
		})),
		grantErr("jku header is not followed", "", a(func(e *tableEnv) string {
			return e.stranger.SignWith("RS256", header(e.stranger, "jku", "http://127.0.0.1:1/jwks.json"), e.claims())
		})),
		grantErr("ES256 signature claiming an RSA key's kid", "", a(func(e *tableEnv) string {
			return e.ec.SignWith("ES256", header(e.user1), e.claims())
		})),
		grantErr("relationship pinned to RS256, RS384", "", a(func(e *tableEnv) string {
			return e.pinned.SignWith("RS384", header(e.pinned), claims("Pinned", "User1", e.ts.TokenURL))
		})),
		grantErr("relationship pinned to RS256, PS256", "", a(func(e *tableEnv) string {
			return e.pinned.SignWith("PS256", header(e.pinned), claims("Pinned", "User1", e.ts.TokenURL))
		})),
		grantErr("expired relationship", "", a(func(e *tableEnv) string {
			return e.old.Sign(claims("OldPartner", "User1", e.ts.TokenURL))
		})),

		// Audience.
		grantErr("wrong aud", `"aud"`, a(func(e *tableEnv) string { return e.valid("aud", "https://evil.example/token") })),
		grantErr("aud with a trailing slash", `"aud"`, a(func(e *tableEnv) string { return e.valid("aud", e.ts.TokenURL+"/") })),
		grantErr("aud in other case", `"aud"`, a(func(e *tableEnv) string {
			return e.valid("aud", strings.Replace(e.ts.TokenURL, "http://", "HTTP://", 1))
		})),
		grantErr("aud array without this server", `"aud"`, a(func(e *tableEnv) string {
			return e.valid("aud", []string{"https://a.example", "https://b.example"})
		})),

		// Time.
		grantErr("expired beyond the clock skew", "expired", a(func(e *tableEnv) string {
			return e.valid("exp", unix(-time.Minute), "iat", unix(-2*time.Minute))
		})),
		grantErr("nbf in the future", `"nbf"`, a(func(e *tableEnv) string { return e.valid("nbf", unix(2*time.Minute)) })),
		grantErr("iat in the future", `"iat"`, a(func(e *tableEnv) string { return e.valid("iat", unix(2*time.Minute)) })),
		grantErr("exp too far in the future", "too far", a(func(e *tableEnv) string {
			return e.valid("iat", unix(0), "exp", unix(2*time.Hour))
		})),
		grantErr("exp too far in the future, no iat", "too far", a(func(e *tableEnv) string {
			return e.valid("iat", nil, "exp", unix(2*time.Hour))
		})),
		grantErr("exp - iat longer than the maximum", "lifetime", a(func(e *tableEnv) string {
			return e.valid("iat", unix(-50*time.Minute), "exp", unix(20*time.Minute))
		})),

		// jti.
		grantErr("jti missing when required", `"jti"`, a(func(e *tableEnv) string { return e.valid("jti", nil) })),
		grantErr("jti empty when required", `"jti"`, a(func(e *tableEnv) string { return e.valid("jti", "") })),
		grantErr("jti longer than 256 bytes", `"jti"`, a(func(e *tableEnv) string { return e.valid("jti", strings.Repeat("j", 300)) })),

		// Scope.
		{name: "scope beyond the relationship", form: func(e *tableEnv) url.Values {
			return grant(e.valid(), "scope", "read admin")
		}, status: 400, code: "invalid_scope", hint: "admin"},
		{name: "scope claim beyond the relationship", form: a(func(e *tableEnv) string {
			return e.valid("scope", "read admin")
		}), status: 400, code: "invalid_scope", hint: "admin"},
		{name: "scope parameter beyond the scope claim", form: func(e *tableEnv) url.Values {
			return grant(e.valid("scope", "read"), "scope", "read write")
		}, status: 400, code: "invalid_scope", hint: "write"},
		{name: "scope beyond the authenticated client", form: func(e *tableEnv) url.Values {
			return grant(e.valid(), "scope", "write")
		}, opts: []reqOption{svc}, status: 400, code: "invalid_scope", hint: "client"},

		// Request syntax.
		{name: "repeated assertion", form: func(e *tableEnv) url.Values {
			f := grant(e.valid())
			f.Add("assertion", f.Get("assertion"))
			return f
		}, status: 400, code: "invalid_request", hint: "more than once"},
		{name: "repeated grant_type", form: func(e *tableEnv) url.Values {
			f := grant(e.valid())
			f.Add("grant_type", jwtBearer)
			return f
		}, status: 400, code: "invalid_request", hint: "more than once"},
		{name: "repeated scope", form: func(e *tableEnv) url.Values {
			return grant(e.valid(), "scope", "read", "scope", "read")
		}, status: 400, code: "invalid_request", hint: "more than once"},
		{name: "missing assertion", form: func(*tableEnv) url.Values {
			return url.Values{"grant_type": {jwtBearer}}
		}, status: 400, code: "invalid_request", hint: "assertion"},
		{name: "empty assertion", form: func(*tableEnv) url.Values {
			return grant("")
		}, status: 400, code: "invalid_request", hint: "assertion"},
		{name: "missing grant_type", form: func(e *tableEnv) url.Values {
			return url.Values{"assertion": {e.valid()}}
		}, status: 400, code: "invalid_request", hint: "grant_type"},
		{name: "empty body", raw: func(*tableEnv) string { return "" },
			opts:   []reqOption{contentType("application/x-www-form-urlencoded")},
			status: 400, code: "invalid_request", hint: "grant_type"},
		{name: "JSON body", raw: func(e *tableEnv) string {
			b, _ := json.Marshal(map[string]string{"grant_type": jwtBearer, "assertion": e.valid()})
			return string(b)
		}, opts: []reqOption{contentType("application/json")}, status: 400, code: "invalid_request", hint: "x-www-form-urlencoded"},
		{name: "text/plain content type", form: a(func(e *tableEnv) string { return e.valid() }),
			opts: []reqOption{contentType("text/plain")}, status: 400, code: "invalid_request", hint: "x-www-form-urlencoded"},
		{name: "no content type", form: a(func(e *tableEnv) string { return e.valid() }),
			opts: []reqOption{contentType("")}, status: 400, code: "invalid_request", hint: "x-www-form-urlencoded"},
		{name: "malformed form encoding", raw: func(*tableEnv) string { return "grant_type=%zz&assertion=x" },
			status: 400, code: "invalid_request"},
		{name: "audience parameter without client authentication", form: func(e *tableEnv) url.Values {
			return grant(e.valid(), "audience", "https://api.example")
		}, status: 400, code: "invalid_request", hint: "audience"},

		// Grant types.
		{name: "password grant", form: func(*tableEnv) url.Values {
			return url.Values{"grant_type": {"password"}, "username": {"u"}, "password": {"p"}}
		}, status: 400, code: "unsupported_grant_type", hint: "not supported"},
		{name: "saml2-bearer grant", form: func(e *tableEnv) url.Values {
			return url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:saml2-bearer"}, "assertion": {e.valid()}}
		}, status: 400, code: "unsupported_grant_type", hint: "not supported"},
		{name: "two grant types in one value", form: func(e *tableEnv) url.Values {
			return url.Values{"grant_type": {"client_credentials " + jwtBearer}, "assertion": {e.valid()}}
		}, status: 400, code: "unsupported_grant_type"},

		// Client authentication.
		{name: "wrong client secret (Basic)", form: a(func(e *tableEnv) string { return e.valid() }),
			opts: []reqOption{basicAuth("svc", "wrong")}, status: 401, code: "invalid_client"},
		{name: "wrong client secret (form)", form: func(e *tableEnv) url.Values {
			return grant(e.valid(), "client_id", "svc", "client_secret", "wrong")
		}, status: 401, code: "invalid_client"},
		{name: "unknown client", form: a(func(e *tableEnv) string { return e.valid() }),
			opts: []reqOption{basicAuth("nobody", "s3cret")}, status: 401, code: "invalid_client"},
		{name: "client_id without a secret", form: func(e *tableEnv) url.Values {
			return grant(e.valid(), "client_id", "svc")
		}, status: 401, code: "invalid_client"},
		{name: "two Authorization headers, the second with wrong credentials", form: a(func(e *tableEnv) string { return e.valid() }),
			opts: []reqOption{func(r *http.Request) {
				r.Header["Authorization"] = []string{"", "Basic " + base64.StdEncoding.EncodeToString([]byte("svc:wrong"))}
			}},
			status: 400, code: "invalid_request", hint: "Authorization"},
		{name: "malformed Basic header", form: a(func(e *tableEnv) string { return e.valid() }),
			opts:   []reqOption{func(r *http.Request) { r.Header.Set("Authorization", "Basic !!!not-base64") }},
			status: 401, code: "invalid_client"},
		{name: "restricted relationship without client authentication", form: a(func(e *tableEnv) string {
			return e.partner.Sign(claims("Partner", "User1", e.ts.TokenURL))
		}), status: 401, code: "invalid_client", hint: "client authentication"},
		{name: "restricted relationship, client not listed", form: a(func(e *tableEnv) string {
			return e.partner.Sign(claims("Partner", "User1", e.ts.TokenURL))
		}), opts: []reqOption{basicAuth("other", "other-s3cret")}, status: 400, code: "unauthorized_client"},
		{name: "client without the jwt-bearer grant type", form: a(func(e *tableEnv) string { return e.valid() }),
			opts: []reqOption{basicAuth("cconly", "cc-s3cret")}, status: 400, code: "unauthorized_client"},
	}
}

// TestTokenEndpoint runs one request per case against one server; every
// case uses its own assertion (own jti), so they do not interfere.
func TestTokenEndpoint(t *testing.T) {
	t.Parallel()
	e := newTableEnv(t)
	for _, tc := range tokenCases() {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var r *response
			if tc.raw != nil {
				r = e.ts.do(t, http.MethodPost, "/token", tc.raw(e), tc.opts...)
			} else {
				r = e.ts.token(t, tc.form(e), tc.opts...)
			}
			if tc.code == "" {
				tok := requireToken(t, r)
				assert.Equal(t, tc.scope, tok.Scope)
				assert.Nil(t, tok.RefreshToken, "no refresh token unless configured")
				assert.LessOrEqual(t, tok.ExpiresIn, float64(time.Hour/time.Second))
				return
			}
			got := requireError(t, r, tc.status, tc.code)
			t.Logf("%d %s: %s", r.Status, got.Error, got.Description)
			if tc.hint != "" {
				// fosite writes the hint's double quotes as single quotes.
				norm := func(s string) string { return strings.ToLower(strings.ReplaceAll(s, `"`, "'")) }
				assert.Contains(t, norm(got.Description), norm(tc.hint))
			}
		})
	}
}

// TestTokenEndpointHTTP covers the HTTP layer around the grant: methods,
// unknown paths, the body size limit and the health check.
func TestTokenEndpointHTTP(t *testing.T) {
	t.Parallel()
	k, files := rsaKeyFile("id_rsa.pub")
	ts := newServer(t, `
listen: {{.Listen}}
issuer: {{.Issuer}}
max_request_bytes: 4096
jwt_bearer:
  max_assertion_size: 2048
trust:
  - issuer: TestClient
    subject: User1
    scopes: [read]
    keys:
      - file: id_rsa.pub
`, fixture{Files: files})

	t.Run("GET /token", func(t *testing.T) {
		requireError(t, ts.do(t, http.MethodGet, "/token", ""), 405, "invalid_request")
	})
	t.Run("PUT /token", func(t *testing.T) {
		requireError(t, ts.do(t, http.MethodPut, "/token", grant(k.Sign(claims("TestClient", "User1", ts.TokenURL))).Encode()), 405, "invalid_request")
	})
	t.Run("parameters in the URL query", func(t *testing.T) {
		body := grant(k.Sign(claims("TestClient", "User1", ts.TokenURL))).Encode()
		requireError(t, ts.do(t, http.MethodPost, "/token?client_id=svc", body), 400, "invalid_request")
	})
	t.Run("unknown path", func(t *testing.T) {
		requireError(t, ts.do(t, http.MethodGet, "/authorize", ""), 404, "not_found")
	})
	t.Run("body over max_request_bytes", func(t *testing.T) {
		body := grant(k.Sign(claims("TestClient", "User1", ts.TokenURL)), "pad", strings.Repeat("p", 5000)).Encode()
		requireError(t, ts.do(t, http.MethodPost, "/token", body), http.StatusRequestEntityTooLarge, "invalid_request")
	})
	t.Run("assertion over max_assertion_size", func(t *testing.T) {
		a := k.Sign(with(claims("TestClient", "User1", ts.TokenURL), "pad", strings.Repeat("p", 2000)))
		require.Greater(t, len(a), 2048)
		requireError(t, ts.token(t, grant(a)), 400, "invalid_grant")
	})
	t.Run("body just under the limit works", func(t *testing.T) {
		requireToken(t, ts.token(t, grant(k.Sign(claims("TestClient", "User1", ts.TokenURL)), "pad", strings.Repeat("p", 2000))))
	})
	t.Run("healthz", func(t *testing.T) {
		r := ts.do(t, http.MethodGet, "/healthz", "")
		require.Equal(t, 200, r.Status)
		requireJSONContentType(t, r)
		assert.Equal(t, "ok", r.JSON(t)["status"])
	})
}

// TestMethodNotAllowedHasAllowHeader: RFC 9110 §15.5.6, a 405 response
// MUST carry an Allow header listing the supported methods.
func TestMethodNotAllowedHasAllowHeader(t *testing.T) {
	t.Parallel()
	_, files := rsaKeyFile("id_rsa.pub")
	ts := newServer(t, minimalConfig, fixture{Files: files})
	for _, path := range []string{"/token", "/introspect", "/revoke"} {
		r := ts.do(t, http.MethodGet, path, "")
		require.Equal(t, 405, r.Status)
		assert.Contains(t, r.Header.Get("Allow"), "POST", "GET %s: 405 without Allow header", path)
	}
}

// minimalConfig trusts id_rsa.pub for TestClient/User1 with scopes read
// and write, and has client svc.
const minimalConfig = `
listen: {{.Listen}}
issuer: {{.Issuer}}
trust:
  - id: user1
    issuer: TestClient
    subject: User1
    scopes: [read, write]
    keys:
      - file: id_rsa.pub
clients:
  - id: svc
    secret_hash: "{{hash "s3cret"}}"
    grant_types: [client_credentials, "urn:ietf:params:oauth:grant-type:jwt-bearer", refresh_token]
    scopes: [read, write]
`

// TestReplay: an assertion is redeemed once; a rejected request consumes
// nothing; jtis are namespaced by issuer.
func TestReplay(t *testing.T) {
	t.Parallel()
	k1, k2 := handlertest.NewRSAKey(), handlertest.NewRSAKey()
	ts := newServer(t, `
listen: {{.Listen}}
issuer: {{.Issuer}}
trust:
  - issuer: IssuerA
    subject: User1
    scopes: [read]
    keys: [{file: a.pub}]
  - issuer: IssuerB
    subject: User1
    scopes: [read]
    keys: [{file: b.pub}]
`, fixture{Files: map[string][]byte{"a.pub": k1.PublicKeyPEM(), "b.pub": k2.PublicKeyPEM()}})

	t.Run("same assertion twice", func(t *testing.T) {
		a := k1.Sign(claims("IssuerA", "User1", ts.TokenURL))
		requireToken(t, ts.token(t, grant(a)))
		e := requireError(t, ts.token(t, grant(a)), 400, "invalid_grant")
		assert.Contains(t, e.Description, "already been used")
		requireError(t, ts.token(t, grant(a)), 400, "invalid_grant")
	})
	t.Run("same jti, new assertion", func(t *testing.T) {
		c := claims("IssuerA", "User1", ts.TokenURL)
		requireToken(t, ts.token(t, grant(k1.Sign(c))))
		requireError(t, ts.token(t, grant(k1.Sign(with(c, "iat", unix(-time.Second))))), 400, "invalid_grant")
	})
	t.Run("rejected request consumes nothing", func(t *testing.T) {
		a := k1.Sign(claims("IssuerA", "User1", ts.TokenURL))
		requireError(t, ts.token(t, grant(a, "scope", "admin")), 400, "invalid_scope")
		requireError(t, ts.token(t, grant(a), basicAuth("nobody", "x")), 401, "invalid_client")
		requireToken(t, ts.token(t, grant(a, "scope", "read")))
		requireError(t, ts.token(t, grant(a)), 400, "invalid_grant")
	})
	t.Run("jti namespaced by issuer", func(t *testing.T) {
		jti := handlertest.RandomID()
		requireToken(t, ts.token(t, grant(k1.Sign(with(claims("IssuerA", "User1", ts.TokenURL), "jti", jti)))))
		requireToken(t, ts.token(t, grant(k2.Sign(with(claims("IssuerB", "User1", ts.TokenURL), "jti", jti)))))
	})
}

// TestTokenLifetime: the access token does not outlive the assertion
// (RFC 7521 §4.1) unless cap_token_lifetime is false, and never outlives
// access_token_lifetime.
func TestTokenLifetime(t *testing.T) {
	t.Parallel()
	const tmpl = `
listen: {{.Listen}}
issuer: {{.Issuer}}
access_token_lifetime: {{.V.lifetime}}
jwt_bearer:
  cap_token_lifetime: {{.V.cap}}
trust:
  - issuer: TestClient
    subject: User1
    scopes: [read]
    keys: [{file: id_rsa.pub}]
clients:
  - id: svc
    secret_hash: "{{hash "s3cret"}}"
    grant_types: [client_credentials]
`
	k, files := rsaKeyFile("id_rsa.pub")
	start := func(t *testing.T, lifetime string, capped bool) *testServer {
		return newServer(t, tmpl, fixture{Files: files, Vars: map[string]any{"lifetime": lifetime, "cap": capped}})
	}

	t.Run("capped at the assertion's remaining validity", func(t *testing.T) {
		t.Parallel()
		ts := start(t, "1h", true)
		exp := unix(2 * time.Minute)
		tok := requireToken(t, ts.token(t, grant(k.Sign(with(claims("TestClient", "User1", ts.TokenURL), "exp", exp)))))
		assert.LessOrEqual(t, tok.ExpiresIn, 120.0)
		assert.Greater(t, tok.ExpiresIn, 100.0)
		in := ts.introspect(t, tok.AccessToken, "svc", "s3cret")
		require.Equal(t, true, in["active"])
		assert.LessOrEqual(t, in["exp"], float64(exp), "token exp after assertion exp")
	})
	t.Run("not capped when cap_token_lifetime is false", func(t *testing.T) {
		t.Parallel()
		ts := start(t, "1h", false)
		tok := requireToken(t, ts.token(t, grant(k.Sign(with(claims("TestClient", "User1", ts.TokenURL), "exp", unix(2*time.Minute))))))
		assert.Greater(t, tok.ExpiresIn, 3500.0)
		assert.LessOrEqual(t, tok.ExpiresIn, 3600.0)
	})
	t.Run("access_token_lifetime shorter than the assertion", func(t *testing.T) {
		t.Parallel()
		ts := start(t, "1m", true)
		tok := requireToken(t, ts.token(t, grant(k.Sign(claims("TestClient", "User1", ts.TokenURL)))))
		assert.LessOrEqual(t, tok.ExpiresIn, 60.0)
		assert.Greater(t, tok.ExpiresIn, 50.0)
	})
	t.Run("token expires with the assertion", func(t *testing.T) {
		t.Parallel()
		ts := start(t, "1h", true)
		exp := time.Now().Add(2 * time.Second).Truncate(time.Second).Add(time.Second)
		tok := requireToken(t, ts.token(t, grant(k.Sign(with(claims("TestClient", "User1", ts.TokenURL), "exp", exp.Unix())))))
		assert.LessOrEqual(t, tok.ExpiresIn, 3.0)
		assert.Equal(t, true, ts.introspect(t, tok.AccessToken, "svc", "s3cret")["active"])
		time.Sleep(time.Until(exp) + 1100*time.Millisecond)
		assert.Equal(t, false, ts.introspect(t, tok.AccessToken, "svc", "s3cret")["active"], "token outlived its assertion")
	})
}

// TestClientAuthRequired: with require_client_auth the signed assertion
// alone is not enough.
func TestClientAuthRequired(t *testing.T) {
	t.Parallel()
	k, files := rsaKeyFile("id_rsa.pub")
	ts := newServer(t, `
listen: {{.Listen}}
issuer: {{.Issuer}}
jwt_bearer:
  require_client_auth: true
trust:
  - issuer: TestClient
    subject: User1
    scopes: [read]
    keys: [{file: id_rsa.pub}]
clients:
  - id: svc
    secret: s3cret
    grant_types: ["urn:ietf:params:oauth:grant-type:jwt-bearer"]
    scopes: [read]
`, fixture{Files: files})
	requireError(t, ts.token(t, grant(k.Sign(claims("TestClient", "User1", ts.TokenURL)))), 401, "invalid_client")
	tok := requireToken(t, ts.token(t, grant(k.Sign(claims("TestClient", "User1", ts.TokenURL)), "scope", "read"), basicAuth("svc", "s3cret")))
	assert.Equal(t, "read", tok.Scope)
	in := ts.introspect(t, tok.AccessToken, "svc", "s3cret")
	assert.Equal(t, "svc", in["client_id"])
	assert.Equal(t, "User1", in["sub"])
}

// TestAcceptedWithinClockSkew: an assertion whose exp passed less than
// clock_skew ago is accepted (RFC 7523 §3 item 4), and the handler means to
// give it "a one-second token rather than a negative one"
// (handler.HandleTokenEndpointRequest). The token response must then say
// so: expires_in 0 announces a token that is already dead, and clients such
// as golang.org/x/oauth2 read expires_in 0 as "no expiry" and would use it
// forever.
func TestAcceptedWithinClockSkew(t *testing.T) {
	t.Parallel()
	k, files := rsaKeyFile("id_rsa.pub")
	ts := newServer(t, minimalConfig, fixture{Files: files})
	a := k.Sign(with(claims("TestClient", "User1", ts.TokenURL), "exp", unix(-10*time.Second), "iat", unix(-time.Minute)))
	r := ts.token(t, grant(a))
	require.Equalf(t, 200, r.Status, "body: %s", r.Body)
	var tok tokenResponse
	require.NoError(t, json.Unmarshal(r.Body, &tok))
	require.NotEmpty(t, tok.AccessToken)
	assert.GreaterOrEqual(t, tok.ExpiresIn, 1.0, "a token accepted within the skew should live one second; body: %s", r.Body)
}

// TestNoClockSkew: clock_skew 0s leaves no leeway on exp and nbf.
func TestNoClockSkew(t *testing.T) {
	t.Parallel()
	k, files := rsaKeyFile("id_rsa.pub")
	ts := newServer(t, `
listen: {{.Listen}}
issuer: {{.Issuer}}
jwt_bearer:
  clock_skew: 0s
trust:
  - issuer: TestClient
    subject: User1
    keys: [{file: id_rsa.pub}]
`, fixture{Files: files})
	c := claims("TestClient", "User1", ts.TokenURL)
	requireError(t, ts.token(t, grant(k.Sign(with(c, "exp", unix(-5*time.Second), "iat", unix(-time.Minute))))), 400, "invalid_grant")
	requireError(t, ts.token(t, grant(k.Sign(with(c, "nbf", unix(10*time.Second), "jti", handlertest.RandomID())))), 400, "invalid_grant")
	requireToken(t, ts.token(t, grant(k.Sign(with(c, "jti", handlertest.RandomID())))))
}

// TestRefreshTokens: none by default; with issue_refresh_tokens, only for
// an authenticated client allowed the refresh_token grant, and it works.
func TestRefreshTokens(t *testing.T) {
	t.Parallel()
	const tmpl = `
listen: {{.Listen}}
issuer: {{.Issuer}}
jwt_bearer:
  issue_refresh_tokens: {{.V.refresh}}
trust:
  - issuer: TestClient
    subject: User1
    scopes: [read]
    keys: [{file: id_rsa.pub}]
clients:
  - id: svc
    secret_hash: "{{hash "s3cret"}}"
    grant_types: ["urn:ietf:params:oauth:grant-type:jwt-bearer", refresh_token]
    scopes: [read]
`
	k, files := rsaKeyFile("id_rsa.pub")

	t.Run("default", func(t *testing.T) {
		t.Parallel()
		ts := newServer(t, tmpl, fixture{Files: files, Vars: map[string]any{"refresh": false}})
		tok := requireToken(t, ts.token(t, grant(k.Sign(claims("TestClient", "User1", ts.TokenURL)), "scope", "read"), basicAuth("svc", "s3cret")))
		assert.Nil(t, tok.RefreshToken)
	})
	t.Run("configured", func(t *testing.T) {
		t.Parallel()
		ts := newServer(t, tmpl, fixture{Files: files, Vars: map[string]any{"refresh": true}})
		tok := requireToken(t, ts.token(t, grant(k.Sign(claims("TestClient", "User1", ts.TokenURL)))))
		assert.Nil(t, tok.RefreshToken, "no refresh token without client authentication")

		tok = requireToken(t, ts.token(t, grant(k.Sign(claims("TestClient", "User1", ts.TokenURL)), "scope", "read"), basicAuth("svc", "s3cret")))
		require.NotNil(t, tok.RefreshToken)
		require.NotEmpty(t, *tok.RefreshToken)

		form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {*tok.RefreshToken}}
		requireError(t, ts.token(t, form), 401, "invalid_client")
		refreshed := requireToken(t, ts.token(t, form, basicAuth("svc", "s3cret")))
		assert.NotEqual(t, tok.AccessToken, refreshed.AccessToken)
		assert.Equal(t, "read", refreshed.Scope)
		in := ts.introspect(t, refreshed.AccessToken, "svc", "s3cret")
		assert.Equal(t, true, in["active"])
		assert.Equal(t, "User1", in["sub"])
		assert.Equal(t, "svc", in["client_id"])
	})
}

// TestClaimNamesAreCaseSensitive: RFC 7519 §4 and §10.1 make claim names
// case-sensitive strings, so "EXP", "JTI" or "Scope" are private claims
// that say nothing about expiry, replay or scope.
func TestClaimNamesAreCaseSensitive(t *testing.T) {
	t.Parallel()
	k, files := rsaKeyFile("id_rsa.pub")
	ts := newServer(t, minimalConfig, fixture{Files: files})
	c := func() map[string]any { return claims("TestClient", "User1", ts.TokenURL) }

	t.Run("EXP is not exp", func(t *testing.T) {
		a := k.Sign(with(c(), "exp", nil, "EXP", unix(5*time.Minute)))
		requireError(t, ts.token(t, grant(a)), 400, "invalid_grant")
	})
	t.Run("JTI is not jti", func(t *testing.T) {
		a := k.Sign(with(c(), "jti", nil, "JTI", handlertest.RandomID()))
		requireError(t, ts.token(t, grant(a)), 400, "invalid_grant")
	})
	t.Run("Scope is not scope", func(t *testing.T) {
		r := ts.token(t, grant(k.Sign(with(c(), "Scope", "write"))))
		assert.Equal(t, "", requireToken(t, r).Scope, "a \"Scope\" claim granted scopes")
	})
}

// TestNumericDatesOutOfRange: NumericDate values beyond the int64 range
// (RFC 7519 §2 allows any JSON number) must not wrap around: an nbf in the
// far future still means "not yet".
func TestNumericDatesOutOfRange(t *testing.T) {
	t.Parallel()
	k, files := rsaKeyFile("id_rsa.pub")
	ts := newServer(t, minimalConfig, fixture{Files: files})
	for _, tc := range []struct {
		claim string
		value float64
	}{
		{"nbf", 1e300},
		{"nbf", 1e19},
		{"exp", 1e19},
		{"iat", 1e19},
	} {
		t.Run(fmt.Sprintf("%s=%g", tc.claim, tc.value), func(t *testing.T) {
			a := k.Sign(with(claims("TestClient", "User1", ts.TokenURL), tc.claim, tc.value))
			requireError(t, ts.token(t, grant(a)), 400, "invalid_grant")
		})
	}
}

// TestKeyFailuresRevealNoTrustRelationship: an unauthenticated caller with
// a key of its own must not learn from the error which issuers, subjects,
// kids or algorithms are trusted, or whether a relationship has expired
// (DESIGN.md: hints leak nothing internal).
func TestKeyFailuresRevealNoTrustRelationship(t *testing.T) {
	t.Parallel()
	e := newTableEnv(t)
	tok := e.ts.TokenURL
	assertions := map[string]string{
		"unknown issuer":            e.stranger.SignNoKID(claims("Nobody", "User1", tok)),
		"known issuer, unknown sub": e.stranger.SignNoKID(claims("TestClient", "User2", tok)),
		"known issuer and subject":  e.stranger.SignNoKID(e.claims()),
		"known kid, wrong key":      e.stranger.SignWith("RS256", header(e.user1), e.claims()),
		"unknown kid":               e.stranger.Sign(e.claims()),
		"algorithm not allowed":     handlertest.SignWithKey(jose.HS256, []byte("0123456789abcdef0123456789abcdef"), map[string]any{"typ": "JWT"}, e.claims()),
		"expired relationship":      e.stranger.SignNoKID(claims("OldPartner", "User1", tok)),
	}
	descriptions := map[string][]string{}
	for name, a := range assertions {
		d := requireError(t, e.ts.token(t, grant(a)), 400, "invalid_grant").Description
		descriptions[d] = append(descriptions[d], name)
	}
	assert.Len(t, descriptions, 1, "the answers tell these cases apart: %v", descriptions)
}
