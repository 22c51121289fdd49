package server

import (
	"context"
	"errors"
	"fmt"
	"sync"

	jose "github.com/go-jose/go-jose/v3"

	"github.com/jwtbearer/jwtbearer/handler"
	"github.com/jwtbearer/jwtbearer/store"
	"github.com/jwtbearer/jwtbearer/store/jwks"
)

// clientKeys holds the public keys of the clients that authenticate with
// private_key_jwt (RFC 7523 §2.2): for each client, either keys given
// inline in the configuration or a jwks_uri whose key set is fetched and
// cached by a *jwks.Cache (the one used for issuers' key sets, with the
// same bounds). It is the handler.ClientKeySource of the token endpoint,
// and safe for concurrent use.
type clientKeys struct {
	// remote fetches key sets for clients registered with a jwks_uri; nil
	// when none may be.
	remote *jwks.Cache

	mu     sync.RWMutex
	inline map[string][]jose.JSONWebKey
	uris   map[string]string
}

var _ handler.ClientKeySource = (*clientKeys)(nil)

// newClientKeys returns an empty registry whose clients with a jwks_uri
// are fetched through remote (nil: add refuses a jwks_uri).
func newClientKeys(remote *jwks.Cache) *clientKeys {
	return &clientKeys{
		remote: remote,
		inline: make(map[string][]jose.JSONWebKey),
		uris:   make(map[string]string),
	}
}

// add registers the keys of clientID: exactly one of keys (inline public
// keys) and jwksURI (see store.CheckRemoteURL). Each inline key must be an
// asymmetric public key with "use" absent or "sig" and an "alg", if any,
// that fits it (store.NormalizeKey): private keys and shared secrets are
// refused, since only the client may hold the signing key. A key without a
// kid gets its RFC 7638 thumbprint; two different keys must not share a
// kid. The keys are copied. An error wraps store.ErrInvalid, or
// store.ErrAlreadyExists when clientID is registered already.
func (c *clientKeys) add(clientID string, keys []jose.JSONWebKey, jwksURI string) error {
	switch {
	case clientID == "":
		return fmt.Errorf("%w: client keys: the client_id must not be empty", store.ErrInvalid)
	case len(keys) > 0 && jwksURI != "":
		return fmt.Errorf("%w: client %q: give jwks or jwks_uri, not both", store.ErrInvalid, clientID)
	case len(keys) == 0 && jwksURI == "":
		return fmt.Errorf("%w: client %q: give jwks (at least one key) or jwks_uri", store.ErrInvalid, clientID)
	}
	var normalized []jose.JSONWebKey
	if jwksURI != "" {
		if err := store.CheckRemoteURL(jwksURI); err != nil {
			return fmt.Errorf("%w: client %q: jwks_uri: %v", store.ErrInvalid, clientID, err)
		}
		if c.remote == nil {
			return fmt.Errorf("%w: client %q: jwks_uri: no key set fetcher is configured", store.ErrInvalid, clientID)
		}
	} else {
		normalized = make([]jose.JSONWebKey, len(keys))
		var errs []error
		for i := range keys {
			k := keys[i]
			if err := store.NormalizeKey(&k); err != nil {
				errs = append(errs, fmt.Errorf("client %q: jwks[%d]: %w", clientID, i, err))
				continue
			}
			for j := range normalized[:i] {
				if prev := &normalized[j]; prev.Key != nil && prev.KeyID == k.KeyID && !store.SameKey(prev, &k) {
					errs = append(errs, fmt.Errorf("%w: client %q: jwks[%d]: kid %q is already used by jwks[%d], another key", store.ErrInvalid, clientID, i, k.KeyID, j))
				}
			}
			normalized[i] = k
		}
		if len(errs) > 0 {
			return errors.Join(errs...)
		}
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.inline[clientID]; ok {
		return fmt.Errorf("%w: client %q already has keys", store.ErrAlreadyExists, clientID)
	}
	if _, ok := c.uris[clientID]; ok {
		return fmt.Errorf("%w: client %q already has keys", store.ErrAlreadyExists, clientID)
	}
	if jwksURI != "" {
		c.uris[clientID] = jwksURI
	} else {
		c.inline[clientID] = normalized
	}
	return nil
}

// ClientKeys implements handler.ClientKeySource. An unknown client is
// store.ErrNotFound; a jwks_uri without a usable key set is an error
// wrapping store.ErrUnavailable (and jwks.ErrUnavailable); a known client
// without a key of that kid is an empty result.
func (c *clientKeys) ClientKeys(ctx context.Context, clientID, kid string) ([]jose.JSONWebKey, error) {
	c.mu.RLock()
	keys, isInline := c.inline[clientID]
	uri, isRemote := c.uris[clientID]
	c.mu.RUnlock()
	switch {
	case isInline:
		if kid == "" {
			return keys, nil
		}
		var out []jose.JSONWebKey
		for _, k := range keys {
			if k.KeyID == kid {
				out = append(out, k)
			}
		}
		return out, nil
	case isRemote:
		keys, err := c.remote.Keys(ctx, uri, kid)
		if errors.Is(err, jwks.ErrUnavailable) {
			return nil, fmt.Errorf("%w: keys of client %q: %w", store.ErrUnavailable, clientID, err)
		}
		if err != nil {
			return nil, fmt.Errorf("keys of client %q: %w", clientID, err)
		}
		return keys, nil
	}
	return nil, fmt.Errorf("%w: client %q has no registered keys", store.ErrNotFound, clientID)
}
