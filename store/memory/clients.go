package memory

import (
	"bytes"
	"context"
	"fmt"
	"slices"

	"github.com/ory/fosite"

	"github.com/jwtbearer/jwtbearer/store"
)

// GetClient implements fosite.ClientManager. An unknown id is an error
// that is both fosite.ErrNotFound (what fosite expects) and
// store.ErrNotFound. The client returned is shared and read-only.
func (s *Store) GetClient(_ context.Context, id string) (fosite.Client, error) {
	s.clientMu.RLock()
	defer s.clientMu.RUnlock()

	c, ok := s.clients[id]
	if !ok {
		return nil, fmt.Errorf("memory: client %q: %w: %w", id, store.ErrNotFound, fosite.ErrNotFound)
	}
	return c, nil
}

// CreateClient implements store.ClientStore. It stores a copy of c, so the
// caller may reuse c afterwards. c.Secret must already be a hash.
func (s *Store) CreateClient(_ context.Context, c *fosite.DefaultClient) error {
	if c == nil || c.ID == "" {
		return fmt.Errorf("%w: client: id must not be empty", store.ErrInvalid)
	}
	stored := cloneClient(c)

	s.clientMu.Lock()
	defer s.clientMu.Unlock()

	if _, taken := s.clients[c.ID]; taken {
		return fmt.Errorf("memory: client %q: %w", c.ID, store.ErrAlreadyExists)
	}
	s.clients[c.ID] = stored
	return nil
}

// DeleteClient implements store.ClientStore.
func (s *Store) DeleteClient(_ context.Context, id string) error {
	s.clientMu.Lock()
	defer s.clientMu.Unlock()

	if _, ok := s.clients[id]; !ok {
		return fmt.Errorf("memory: client %q: %w", id, store.ErrNotFound)
	}
	delete(s.clients, id)
	return nil
}

func cloneClient(c *fosite.DefaultClient) *fosite.DefaultClient {
	cp := *c
	cp.Secret = bytes.Clone(c.Secret)
	if c.RotatedSecrets != nil {
		cp.RotatedSecrets = make([][]byte, len(c.RotatedSecrets))
		for i, secret := range c.RotatedSecrets {
			cp.RotatedSecrets[i] = bytes.Clone(secret)
		}
	}
	cp.RedirectURIs = slices.Clone(c.RedirectURIs)
	cp.GrantTypes = slices.Clone(c.GrantTypes)
	cp.ResponseTypes = slices.Clone(c.ResponseTypes)
	cp.Scopes = slices.Clone(c.Scopes)
	cp.Audience = slices.Clone(c.Audience)
	return &cp
}
