package redis

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/ory/fosite"
	goredis "github.com/redis/go-redis/v9"

	"github.com/jwtbearer/jwtbearer/store"
)

// GetClient implements fosite.ClientManager with one HGET. An unknown id is
// an error that is both fosite.ErrNotFound (what fosite expects) and
// store.ErrNotFound, as in the memory store. Every call returns a fresh
// copy.
func (s *Store) GetClient(ctx context.Context, id string) (fosite.Client, error) {
	raw, err := s.client.HGet(ctx, s.keys.clients, id).Bytes()
	if errors.Is(err, goredis.Nil) {
		return nil, fmt.Errorf("redis: client %q: %w: %w", id, store.ErrNotFound, fosite.ErrNotFound)
	}
	if err != nil {
		return nil, unavailable("get client", err)
	}
	var c fosite.DefaultClient
	if err := json.Unmarshal(raw, &c); err != nil {
		return nil, fmt.Errorf("redis: client %q: stored record is corrupt: %w", id, err)
	}
	return &c, nil
}

// CreateClient implements store.ClientStore with one HSETNX. c.Secret must
// already be a hash.
func (s *Store) CreateClient(ctx context.Context, c *fosite.DefaultClient) error {
	if c == nil || c.ID == "" {
		return fmt.Errorf("%w: client: id must not be empty", store.ErrInvalid)
	}
	raw, err := json.Marshal(c) //nolint:gosec // Secret is the hash fosite compares with, and must be stored
	if err != nil {
		return fmt.Errorf("redis: client %q: %w", c.ID, err)
	}
	created, err := s.client.HSetNX(ctx, s.keys.clients, c.ID, raw).Result()
	if err != nil {
		return unavailable("create client", err)
	}
	if !created {
		return fmt.Errorf("redis: client %q: %w", c.ID, store.ErrAlreadyExists)
	}
	return nil
}

// DeleteClient implements store.ClientStore with one HDEL.
func (s *Store) DeleteClient(ctx context.Context, id string) error {
	n, err := s.client.HDel(ctx, s.keys.clients, id).Result()
	if err != nil {
		return unavailable("delete client", err)
	}
	if n == 0 {
		return fmt.Errorf("redis: client %q: %w", id, store.ErrNotFound)
	}
	return nil
}
