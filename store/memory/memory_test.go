package memory_test

import (
	"testing"

	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/oauth2"

	"github.com/jwtbearer/jwtbearer/store"
	"github.com/jwtbearer/jwtbearer/store/memory"
	"github.com/jwtbearer/jwtbearer/store/storetest"
)

var (
	_ store.TrustStore              = (*memory.Store)(nil)
	_ store.ReplayGuard             = (*memory.Store)(nil)
	_ store.ClientStore             = (*memory.Store)(nil)
	_ fosite.ClientManager          = (*memory.Store)(nil)
	_ oauth2.AccessTokenStorage     = (*memory.Store)(nil)
	_ oauth2.RefreshTokenStorage    = (*memory.Store)(nil)
	_ oauth2.TokenRevocationStorage = (*memory.Store)(nil)
	_ storetest.Store               = (*memory.Store)(nil)
)

func TestStore(t *testing.T) {
	newStore := func(*testing.T) storetest.Store { return memory.New() }
	storetest.RunTests(t, newStore)
	storetest.RunConcurrencyTests(t, newStore)
}
