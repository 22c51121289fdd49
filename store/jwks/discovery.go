package jwks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
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
// store.CheckRemoteURL and checkDiscoveredURL, then looks up the key set at
// that jwks_uri.
//
// The jwks_uri is chosen by the issuer, not by the operator: unless the
// issuer itself is on the loopback interface, it must be an https URL whose
// host is neither a loopback name nor a loopback, private, link-local,
// unspecified or multicast IP address, so that an issuer cannot turn this
// server's fetches against services only it can reach. Host names are not
// resolved: a DNS name that resolves to such an address is not caught here
// (the operator's network policy for outgoing requests must do that).
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
			// Not the error itself: encoding/json quotes the body.
			return nil, nil, errors.New("discovery document is not a JSON object")
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
		if err := checkDiscoveredURL(issuer, jwksURI); err != nil {
			return nil, nil, fmt.Errorf("jwks_uri: %w", err)
		}
		return &snapshot{jwksURI: jwksURI}, []any{"jwks_uri", jwksURI}, nil
	}
}

// checkDiscoveredURL reports whether jwksURI, read from the discovery
// document of issuer, may be fetched. It must pass store.CheckRemoteURL.
// Unless issuer's own host is loopback (a test, a sidecar), it must also be
// https, to a host that is neither "localhost" (nor a name under it, RFC
// 6761 §6.3) nor an IP address that is loopback, private, link-local,
// unspecified, multicast, in 0.0.0.0/8 or in the shared address space
// 100.64.0.0/10 (where some clouds serve instance metadata). Hosts that are
// numbers in a form other than a canonical IP address ("127.1", "2130706433",
// "0x7f.1") are refused: some resolvers read them as addresses. Host names
// are not resolved, so a name that resolves to a private address passes.
func checkDiscoveredURL(issuer, jwksURI string) error {
	if err := store.CheckRemoteURL(jwksURI); err != nil {
		return err
	}
	iss, err := url.Parse(issuer)
	if err != nil {
		return errors.New("the issuer is not a URL")
	}
	if store.IsLoopback(iss.Hostname()) {
		return nil
	}
	u, err := url.Parse(jwksURI)
	if err != nil { // CheckRemoteURL parsed it already
		return err
	}
	if u.Scheme != "https" {
		return fmt.Errorf("%q must use https", jwksURI)
	}
	if why := privateHost(u.Hostname()); why != "" {
		return fmt.Errorf("%q names %s, which an issuer that is not itself on the loopback interface may not point to", jwksURI, why)
	}
	return nil
}

// privateHost says why host, from a URL, names a place that is not on the
// public network, or returns "".
func privateHost(host string) string {
	h := strings.TrimSuffix(strings.ToLower(host), ".")
	switch {
	case h == "":
		return "no host"
	case h == "localhost" || strings.HasSuffix(h, ".localhost"):
		return "the loopback interface"
	case strings.Contains(h, "%"):
		return "an address with a zone"
	}
	ip := net.ParseIP(h)
	if ip == nil {
		// A host name, unless its last label is a number: top-level
		// domains are never numeric (RFC 3696 §2), and resolvers that
		// read inet_aton forms would take it for an address.
		last := h[strings.LastIndexByte(h, '.')+1:]
		if strings.Trim(last, "0123456789") == "" || strings.HasPrefix(last, "0x") {
			return "a number that is not a canonical IP address"
		}
		return ""
	}
	if ip4 := ip.To4(); ip4 != nil {
		switch {
		case ip4[0] == 0:
			return "an address of 0.0.0.0/8"
		case ip4[0] == 100 && ip4[1]&0xc0 == 64:
			return "an address of the shared address space 100.64.0.0/10"
		}
	}
	switch {
	case ip.IsLoopback():
		return "a loopback address"
	case ip.IsPrivate():
		return "a private address"
	case ip.IsLinkLocalUnicast(), ip.IsLinkLocalMulticast():
		return "a link-local address"
	case ip.IsUnspecified():
		return "the unspecified address"
	case ip.IsMulticast():
		return "a multicast address"
	}
	return ""
}
