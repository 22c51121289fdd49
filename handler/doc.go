// Package handler implements the OAuth 2.0 JWT Bearer authorization grant
// (RFC 7523 §2.1, on RFC 7521 §4.1) as a fosite TokenEndpointHandler.
//
// A trusted party signs a JWT with its private key and posts it to the token
// endpoint as
//
//	grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer&assertion=<JWT>
//
// The handler verifies it against a key that the trust store holds for its
// issuer and subject, checks every claim of RFC 7523 §3, redeems its "jti"
// once through an atomic replay guard, and lets fosite issue an access token
// for the assertion's subject.
//
// Compared with fosite's stock handler/rfc7523 it is stricter: compact JWS
// only, a size cap, exactly one signature, an algorithm allow-list pinned to
// the key, clock-skew leeway, a bounded assertion lifetime, an atomic replay
// claim namespaced by issuer and answered with invalid_grant, client
// credentials always validated when present, and the assertion's audience is
// never copied into the token.
//
// Add it to a fosite deployment with compose.Compose(..., handler.Factory), or
// NewFactory(settings) for a non-default policy. The storage passed to
// Compose must implement store.KeyResolver and store.ReplayGuard (see
// package store) besides fosite's oauth2.AccessTokenStorage.
package handler
