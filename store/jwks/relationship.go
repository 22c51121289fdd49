package jwks

import (
	"context"
	"fmt"

	jose "github.com/go-jose/go-jose/v3"

	"github.com/jwtbearer/jwtbearer/store"
)

// RemoteKeys returns the published keys of the relationship t whose KeyID
// is kid (all of them when kid is empty): from its jwks_uri, or from the
// jwks_uri of its issuer's OpenID Provider metadata. It is the handler's
// RemoteKeySource.
func (c *Cache) RemoteKeys(ctx context.Context, t *store.Trust, kid string) ([]jose.JSONWebKey, error) {
	switch {
	case t.JWKSURI != "":
		return c.Keys(ctx, t.JWKSURI, kid)
	case t.OIDCDiscovery:
		return c.DiscoveredKeys(ctx, t.Issuer, kid)
	}
	return nil, fmt.Errorf("%w: relationship %q has no jwks_uri nor oidc_discovery", ErrUnavailable, t.ID)
}
