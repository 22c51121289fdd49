package jwks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	jose "github.com/go-jose/go-jose/v3"

	"github.com/jwtbearer/jwtbearer/store"
)

// wellKnown is appended to an issuer to find its OpenID Provider metadata
// (OpenID Connect Discovery 1.0 §4).
const wellKnown = "/.well-known/openid-configuration"

// DiscoveredKeys does what Keys does for an OpenID Provider: it reads
// issuer+"/.well-known/openid-configuration" (with a trailing slash of
// issuer trimmed), requires its "issuer" member to equal issuer exactly
// (OpenID Connect Discovery 1.0 §4.3, which stops one provider from
// publishing metadata in another's name) and its "jwks_uri" to pass
// store.CheckRemoteURL, then looks up the key set at that jwks_uri.
//
// The discovery document is cached under the same freshness and staleness
// rules as a key set; an unknown kid refetches the key set, not the
// document. A document that fails these checks counts as a failed fetch:
// the last good one, if any, stays in use within its staleness bound.
func (c *Cache) DiscoveredKeys(ctx context.Context, issuer, kid string) ([]jose.JSONWebKey, error) {
	if strings.ContainsAny(issuer, "?#") {
		return nil, fmt.Errorf("jwks: issuer %q must have no query nor fragment to be discovered", issuer)
	}
	docURL := strings.TrimSuffix(issuer, "/") + wellKnown
	if err := store.CheckRemoteURL(docURL); err != nil {
		return nil, fmt.Errorf("jwks: discovery: %w", err)
	}
	now := c.now()
	k := entryKey{kind: kindDiscovery, url: docURL, issuer: issuer}
	doc, err := c.lookup(ctx, k, now, nil, discoveryParser(issuer))
	if err != nil {
		return nil, err
	}
	return c.keys(ctx, doc.jwksURI, kid, now)
}

// discoveryParser reads OpenID Provider metadata published for issuer. Only
// "issuer" and "jwks_uri" are used; member names are matched exactly, not
// with encoding/json's case folding.
func discoveryParser(issuer string) parseFunc {
	return func(_ string, body []byte) (*snapshot, []any, error) {
		var doc map[string]json.RawMessage
		if err := json.Unmarshal(body, &doc); err != nil {
			return nil, nil, fmt.Errorf("body is not a JSON object: %v", err)
		}
		var iss, jwksURI string
		if err := json.Unmarshal(doc["issuer"], &iss); err != nil {
			return nil, nil, errors.New(`"issuer" is missing or not a string`)
		}
		if iss != issuer {
			// %.200q: the value comes from the body; quote a bounded part.
			return nil, nil, fmt.Errorf("issuer is %.200q, want %q (OpenID Connect Discovery 1.0 §4.3)", iss, issuer)
		}
		if err := json.Unmarshal(doc["jwks_uri"], &jwksURI); err != nil {
			return nil, nil, errors.New(`"jwks_uri" is missing or not a string`)
		}
		if len(jwksURI) > 2048 {
			return nil, nil, errors.New(`"jwks_uri" is longer than 2048 bytes`)
		}
		if err := store.CheckRemoteURL(jwksURI); err != nil {
			return nil, nil, fmt.Errorf("jwks_uri: %w", err)
		}
		return &snapshot{jwksURI: jwksURI}, []any{"jwks_uri", jwksURI}, nil
	}
}
