package storetest

import (
	"testing"

	"github.com/ory/fosite"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/jwtbearer/jwtbearer/store"
)

func testClientCRUD(t *testing.T, s Store) {
	ctx := t.Context()
	in := &fosite.DefaultClient{
		ID:         "client-1",
		Secret:     []byte("$2a$10$IxMdI6d.LIRZPpSfEwNoeu4rY3FhDREsxFJXikcgdRRAStxUlsuEO"),
		GrantTypes: []string{"urn:ietf:params:oauth:grant-type:jwt-bearer", "refresh_token"},
		Scopes:     []string{"read", "write"},
		Audience:   []string{"https://api.example"},
	}
	require.NoError(t, s.CreateClient(ctx, in))

	// The store keeps its own copy.
	in.Scopes[0] = "admin"
	in.Secret[0] = 'X'

	got, err := s.GetClient(ctx, "client-1")
	require.NoError(t, err)
	assert.Equal(t, "client-1", got.GetID())
	assert.Equal(t, []byte("$2a$10$IxMdI6d.LIRZPpSfEwNoeu4rY3FhDREsxFJXikcgdRRAStxUlsuEO"), got.GetHashedSecret())
	assert.Equal(t, fosite.Arguments{"read", "write"}, got.GetScopes())
	assert.Equal(t, fosite.Arguments{"urn:ietf:params:oauth:grant-type:jwt-bearer", "refresh_token"}, got.GetGrantTypes())
	assert.Equal(t, fosite.Arguments{"https://api.example"}, got.GetAudience())
	assert.False(t, got.IsPublic())

	err = s.CreateClient(ctx, &fosite.DefaultClient{ID: "client-1", Secret: []byte("other")})
	assert.ErrorIs(t, err, store.ErrAlreadyExists)
	got, err = s.GetClient(ctx, "client-1")
	require.NoError(t, err)
	assert.Equal(t, fosite.Arguments{"read", "write"}, got.GetScopes(), "the first client is kept")

	_, err = s.GetClient(ctx, "unknown")
	assert.ErrorIs(t, err, fosite.ErrNotFound, "fosite expects its own ErrNotFound")

	require.NoError(t, s.DeleteClient(ctx, "client-1"))
	_, err = s.GetClient(ctx, "client-1")
	assert.ErrorIs(t, err, fosite.ErrNotFound)
	assert.ErrorIs(t, s.DeleteClient(ctx, "client-1"), store.ErrNotFound)
}
