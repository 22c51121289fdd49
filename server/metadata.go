package server

import (
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/jwtbearer/jwtbearer/handler"
)

// metadataPath is where RFC 8414 §3 puts an issuer's metadata when its
// identifier has no path component. An issuer with a path has it after
// the well-known suffix (§3.1); both are served.
const metadataPath = "/.well-known/oauth-authorization-server"

// authorizationServerMetadata is RFC 8414 §2's document, for what this
// server does. It has no authorization endpoint, so it supports no
// response type: response_types_supported, which §2 requires, is empty.
type authorizationServerMetadata struct {
	Issuer                                    string   `json:"issuer"`
	TokenEndpoint                             string   `json:"token_endpoint"`
	IntrospectionEndpoint                     string   `json:"introspection_endpoint"`
	RevocationEndpoint                        string   `json:"revocation_endpoint"`
	JWKSURI                                   string   `json:"jwks_uri,omitempty"`
	ResponseTypesSupported                    []string `json:"response_types_supported"`
	GrantTypesSupported                       []string `json:"grant_types_supported"`
	TokenEndpointAuthMethodsSupported         []string `json:"token_endpoint_auth_methods_supported"`
	TokenEndpointAuthSigningAlgValues         []string `json:"token_endpoint_auth_signing_alg_values_supported"`
	IntrospectionEndpointAuthMethodsSupported []string `json:"introspection_endpoint_auth_methods_supported"`
	IntrospectionEndpointAuthSigningAlgValues []string `json:"introspection_endpoint_auth_signing_alg_values_supported"`
	RevocationEndpointAuthMethodsSupported    []string `json:"revocation_endpoint_auth_methods_supported"`
	RevocationEndpointAuthSigningAlgValues    []string `json:"revocation_endpoint_auth_signing_alg_values_supported"`
	// JWTBearerSigningAlgValues is an extension (no registry member says
	// this): the algorithms accepted on jwt-bearer grant assertions, the
	// server's allow-list (a trust relationship may narrow it).
	JWTBearerSigningAlgValues []string `json:"jwt_bearer_signing_alg_values_supported"`
}

// metadata builds the document once; it depends on the configuration only.
func (s *Server) buildMetadata() []byte {
	iss := s.cfg.Issuer
	assertionAlgs := s.cfg.JWTBearer.Algorithms
	if len(assertionAlgs) == 0 {
		assertionAlgs = handler.DefaultAlgorithms
	}
	clientAlgs := slices.Clone(handler.DefaultAlgorithms)
	m := authorizationServerMetadata{
		Issuer:                            iss,
		TokenEndpoint:                     iss + "/token",
		IntrospectionEndpoint:             iss + "/introspect",
		RevocationEndpoint:                iss + "/revoke",
		ResponseTypesSupported:            []string{},
		GrantTypesSupported:               slices.Clone(knownGrantTypes),
		TokenEndpointAuthMethodsSupported: []string{"client_secret_basic", "client_secret_post", "private_key_jwt"},
		TokenEndpointAuthSigningAlgValues: clientAlgs,
		// Introspection takes HTTP Basic or a client assertion, not a
		// secret in the body (see introspect).
		IntrospectionEndpointAuthMethodsSupported: []string{"client_secret_basic", "private_key_jwt"},
		IntrospectionEndpointAuthSigningAlgValues: clientAlgs,
		RevocationEndpointAuthMethodsSupported:    []string{"client_secret_basic", "client_secret_post", "private_key_jwt"},
		RevocationEndpointAuthSigningAlgValues:    clientAlgs,
		JWTBearerSigningAlgValues:                 slices.Clone(assertionAlgs),
	}
	if s.jwks != nil {
		m.JWKSURI = iss + "/jwks.json"
	}
	b, err := json.Marshal(m)
	if err != nil {
		panic(err) // strings and slices of strings only
	}
	return b
}

// metadata serves RFC 8414 §3's response: 200, application/json. It may
// be cached briefly; it changes only with the configuration.
func (s *Server) metadata(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "public, max-age=300")
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(s.metadataJSON)
	}
}

// issuerPath is the issuer identifier's path without a trailing slash,
// or "" when it has none.
func issuerPath(issuer string) string {
	u, err := url.Parse(issuer)
	if err != nil {
		return ""
	}
	return strings.TrimSuffix(u.EscapedPath(), "/")
}
