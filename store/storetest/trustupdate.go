package storetest

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	jose "github.com/go-jose/go-jose/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/jwtbearer/jwtbearer/store"
)

// testTrustUpdate replaces a relationship's subject, scopes and keys: the
// new version is what GetTrust, ListTrust and TrustedKeys return, and the
// old subject and kids stop resolving at once. Other relationships of the
// issuer are left alone.
func testTrustUpdate(t *testing.T, s Store) {
	ctx := t.Context()
	const issuer = "https://issuer.example"
	created := mustCreateTrust(t, s, trust("t1", issuer, "alice", ecJWK(0, "k0"), ecJWK(1, "k1")))
	mustCreateTrust(t, s, trust("t-carol", issuer, "carol", ecJWK(4, "k-carol")))
	mustCreateTrust(t, s, trust("t-any", issuer, "", ecJWK(5, "k-any")))

	in := trust("t1", issuer, "bob", ecJWK(2, "k2"), ecJWK(3, ""))
	in.Scopes = []string{"admin"}
	in.Algorithms = []string{"ES256"}
	in.Clients = []string{"client-1"}
	updated, err := s.UpdateTrust(ctx, in)
	require.NoError(t, err)
	require.NotNil(t, updated)

	for name, got := range map[string]*store.Trust{"returned": updated, "GetTrust": mustGetTrust(t, s, "t1")} {
		assert.Equal(t, "t1", got.ID, name)
		assert.Equal(t, issuer, got.Issuer, name)
		assert.Equal(t, "bob", got.Subject, name)
		assert.False(t, got.AnySubject, name)
		assert.Equal(t, []string{"admin"}, got.Scopes, name)
		assert.Equal(t, []string{"ES256"}, got.Algorithms, name)
		assert.Equal(t, []string{"client-1"}, got.Clients, name)
		require.Len(t, got.Keys, 2, name)
		assert.Equal(t, "k2", got.Keys[0].KeyID, name)
		assert.Equal(t, thumbprint(t, &in.Keys[1]), got.Keys[1].KeyID, "%s: a key without kid is normalised", name)
	}
	assert.Equal(t, []string{"read", "write"}, created.Scopes, "the copy handed out before is not changed")

	keys, err := s.TrustedKeys(ctx, issuer, "bob", "")
	require.NoError(t, err)
	assert.ElementsMatch(t, []string{"k2", thumbprint(t, &in.Keys[1]), "k-any"}, kids(keys))
	for _, k := range keys {
		if k.Trust.ID == "t1" {
			assert.Equal(t, []string{"admin"}, k.Trust.Scopes, "TrustedKeys returns the new version")
		}
	}
	keys, err = s.TrustedKeys(ctx, issuer, "bob", "k2")
	require.NoError(t, err)
	assert.Equal(t, []string{"k2"}, kids(keys))

	// The old subject and the removed kids resolve no more.
	keys, err = s.TrustedKeys(ctx, issuer, "alice", "")
	require.NoError(t, err)
	assert.Equal(t, []string{"k-any"}, kids(keys), "alice is left with the any-subject keys")
	for _, subject := range []string{"alice", "bob"} {
		for _, kid := range []string{"k0", "k1"} {
			keys, err = s.TrustedKeys(ctx, issuer, subject, kid)
			require.NoError(t, err)
			assert.Empty(t, keys, "subject %s, removed kid %s", subject, kid)
		}
	}

	// The other relationships are untouched.
	keys, err = s.TrustedKeys(ctx, issuer, "carol", "")
	require.NoError(t, err)
	assert.ElementsMatch(t, []string{"k-carol", "k-any"}, kids(keys))
	list, err := s.ListTrust(ctx)
	require.NoError(t, err)
	require.Len(t, list, 3)

	// Same subject, new keys: the kids follow.
	in = trust("t1", issuer, "bob", ecJWK(0, "k0"))
	_, err = s.UpdateTrust(ctx, in)
	require.NoError(t, err)
	keys, err = s.TrustedKeys(ctx, issuer, "bob", "")
	require.NoError(t, err)
	assert.ElementsMatch(t, []string{"k0", "k-any"}, kids(keys))
	keys, err = s.TrustedKeys(ctx, issuer, "bob", "k2")
	require.NoError(t, err)
	assert.Empty(t, keys)
}

// testTrustUpdateMoves moves a relationship between a named subject, any
// subject and another issuer.
func testTrustUpdateMoves(t *testing.T, s Store) {
	ctx := t.Context()
	const issuer, other = "https://issuer.example", "https://other.example"
	mustCreateTrust(t, s, trust("t1", issuer, "alice", ecJWK(0, "k0")))
	mustCreateTrust(t, s, trust("t2", issuer, "carol", ecJWK(1, "k1")))

	lookup := func(issuer, subject string) []string {
		t.Helper()
		keys, err := s.TrustedKeys(ctx, issuer, subject, "")
		require.NoError(t, err)
		return kids(keys)
	}

	// Named → any subject.
	_, err := s.UpdateTrust(ctx, trust("t1", issuer, "", ecJWK(2, "k2")))
	require.NoError(t, err)
	assert.Equal(t, []string{"k2"}, lookup(issuer, "alice"))
	assert.Equal(t, []string{"k2"}, lookup(issuer, "anyone"))
	assert.ElementsMatch(t, []string{"k1", "k2"}, lookup(issuer, "carol"))

	// Any subject → named.
	_, err = s.UpdateTrust(ctx, trust("t1", issuer, "dave", ecJWK(3, "k3")))
	require.NoError(t, err)
	assert.Empty(t, lookup(issuer, "anyone"))
	assert.Empty(t, lookup(issuer, "alice"))
	assert.Equal(t, []string{"k1"}, lookup(issuer, "carol"))
	assert.Equal(t, []string{"k3"}, lookup(issuer, "dave"))

	// Another issuer.
	_, err = s.UpdateTrust(ctx, trust("t1", other, "dave", ecJWK(3, "k3")))
	require.NoError(t, err)
	assert.Empty(t, lookup(issuer, "dave"))
	assert.Equal(t, []string{"k3"}, lookup(other, "dave"))
	assert.Equal(t, []string{"k1"}, lookup(issuer, "carol"))

	// The last relationship of an issuer moves away, and back.
	_, err = s.UpdateTrust(ctx, trust("t2", other, "carol", ecJWK(1, "k1")))
	require.NoError(t, err)
	assert.Empty(t, lookup(issuer, "carol"))
	assert.Equal(t, []string{"k1"}, lookup(other, "carol"))
	_, err = s.UpdateTrust(ctx, trust("t2", issuer, "", ecJWK(1, "k1")))
	require.NoError(t, err)
	assert.Equal(t, []string{"k1"}, lookup(issuer, "carol"))
	assert.Empty(t, lookup(other, "carol"))
	assert.Equal(t, []string{"k3"}, lookup(other, "dave"))

	got := mustGetTrust(t, s, "t2")
	assert.True(t, got.AnySubject)
	assert.Equal(t, issuer, got.Issuer)
}

func testTrustUpdateNotFound(t *testing.T, s Store) {
	ctx := t.Context()
	mustCreateTrust(t, s, trust("t1", "https://issuer.example", "alice", ecJWK(0, "k0")))

	_, err := s.UpdateTrust(ctx, trust("no-such-id", "https://issuer.example", "bob", ecJWK(1, "k1")))
	require.ErrorIs(t, err, store.ErrNotFound)

	_, err = s.GetTrust(ctx, "no-such-id")
	assert.ErrorIs(t, err, store.ErrNotFound, "an update creates nothing")
	list, err := s.ListTrust(ctx)
	require.NoError(t, err)
	assert.Len(t, list, 1)
	keys, err := s.TrustedKeys(ctx, "https://issuer.example", "bob", "")
	require.NoError(t, err)
	assert.Empty(t, keys)

	require.NoError(t, s.DeleteTrust(ctx, "t1"))
	_, err = s.UpdateTrust(ctx, trust("t1", "https://issuer.example", "alice", ecJWK(0, "k0")))
	require.ErrorIs(t, err, store.ErrNotFound, "a deleted relationship is not found")
	keys, err = s.TrustedKeys(ctx, "https://issuer.example", "alice", "")
	require.NoError(t, err)
	assert.Empty(t, keys)
}

func testTrustUpdateInvalid(t *testing.T, s Store) {
	ctx := t.Context()
	const issuer = "https://issuer.example"
	mustCreateTrust(t, s, trust("t1", issuer, "alice", ecJWK(0, "k0")))

	tests := []struct {
		name  string
		trust store.Trust
	}{
		{"no ID", trust("", issuer, "alice", ecJWK(1, "k1"))},
		{"no issuer", trust("t1", "", "alice", ecJWK(1, "k1"))},
		{"no key", trust("t1", issuer, "alice")},
		{"private key", trust("t1", issuer, "alice", jose.JSONWebKey{Key: rsaKey(), KeyID: "k1"})},
		{"subject and any subject", func() store.Trust {
			tr := trust("t1", issuer, "bob", ecJWK(1, "k1"))
			tr.AnySubject = true
			return tr
		}()},
		{"alg none", func() store.Trust {
			tr := trust("t1", issuer, "alice", ecJWK(1, "k1"))
			tr.Algorithms = []string{"none"}
			return tr
		}()},
		{"bad scope", func() store.Trust {
			tr := trust("t1", issuer, "alice", ecJWK(1, "k1"))
			tr.Scopes = []string{"has space"}
			return tr
		}()},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := s.UpdateTrust(ctx, tc.trust)
			assert.ErrorIs(t, err, store.ErrInvalid)
			assert.Nil(t, got)
		})
	}

	got := mustGetTrust(t, s, "t1")
	assert.Equal(t, "alice", got.Subject, "the old record is unchanged")
	assert.Equal(t, []string{"read", "write"}, got.Scopes)
	require.Len(t, got.Keys, 1)
	assert.Equal(t, "k0", got.Keys[0].KeyID)
	keys, err := s.TrustedKeys(ctx, issuer, "alice", "")
	require.NoError(t, err)
	assert.Equal(t, []string{"k0"}, kids(keys))
	keys, err = s.TrustedKeys(ctx, issuer, "alice", "k1")
	require.NoError(t, err)
	assert.Empty(t, keys)
	list, err := s.ListTrust(ctx)
	require.NoError(t, err)
	assert.Len(t, list, 1)
}

func testTrustUpdateNotAliased(t *testing.T, s Store) {
	ctx := t.Context()
	mustCreateTrust(t, s, trust("t1", "https://issuer.example", "alice", ecJWK(0, "k0")))

	in := trust("t1", "https://issuer.example", "alice", ecJWK(1, "k1"))
	in.Algorithms = []string{"ES256"}
	in.Clients = []string{"client-1"}
	requireJTI := true
	in.RequireJTI = &requireJTI
	updated, err := s.UpdateTrust(ctx, in)
	require.NoError(t, err)

	// The caller keeps using its slices.
	in.Scopes[0] = "admin"
	in.Algorithms[0] = "RS256"
	in.Clients[0] = "intruder"
	requireJTI = false
	in.Keys[0].KeyID = "changed"
	in.Keys[0].Key = &ecKeys()[2].PublicKey

	for _, got := range []*store.Trust{updated, mustGetTrust(t, s, "t1")} {
		assert.Equal(t, []string{"read", "write"}, got.Scopes)
		assert.Equal(t, []string{"ES256"}, got.Algorithms)
		assert.Equal(t, []string{"client-1"}, got.Clients)
		require.NotNil(t, got.RequireJTI)
		assert.True(t, *got.RequireJTI)
		require.Len(t, got.Keys, 1)
		assert.Equal(t, "k1", got.Keys[0].KeyID)
		assert.Equal(t, thumbprint(t, &jose.JSONWebKey{Key: &ecKeys()[1].PublicKey}), thumbprint(t, &got.Keys[0]))
	}
	keys, err := s.TrustedKeys(ctx, "https://issuer.example", "alice", "changed")
	require.NoError(t, err)
	assert.Empty(t, keys)
	keys, err = s.TrustedKeys(ctx, "https://issuer.example", "alice", "")
	require.NoError(t, err)
	require.Len(t, keys, 1)
	assert.Equal(t, "k1", keys[0].Key.KeyID)
	assert.Equal(t, thumbprint(t, &jose.JSONWebKey{Key: &ecKeys()[1].PublicKey}), thumbprint(t, keys[0].Key))
}

// testConcurrentTrustUpdateAndLookup updates one relationship back and
// forth between two key sets while readers look its keys up: every read
// finds exactly one of the two versions, never nothing and never a mix.
func testConcurrentTrustUpdateAndLookup(t *testing.T, s Store) {
	ctx := t.Context()
	const issuer, subject = "https://issuer.example", "alice"
	const updates, readers = 100, 8
	versionA := trust("t1", issuer, subject, ecJWK(0, "a0"), ecJWK(1, "a1"))
	versionB := trust("t1", issuer, subject, ecJWK(2, "b0"), ecJWK(3, "b1"), ecJWK(4, "b2"))
	versionB.Scopes = []string{"read"}
	wantA, wantB := []string{"a0", "a1"}, []string{"b0", "b1", "b2"}
	mustCreateTrust(t, s, versionA)

	done := make(chan struct{})
	errs := make(chan error, readers+1)
	var reads sync.WaitGroup
	for r := range readers {
		reads.Go(func() {
			for n := 0; ; n++ {
				select {
				case <-done:
					return
				default:
				}
				got, err := s.TrustedKeys(ctx, issuer, subject, "")
				if err != nil {
					errs <- err
					return
				}
				ks := kids(got)
				if !slices.Equal(ks, wantA) && !slices.Equal(ks, wantB) {
					errs <- fmt.Errorf("reader %d, read %d: kids %v, want %v or %v", r, n, ks, wantA, wantB)
					return
				}
				for _, k := range got {
					if k.Trust != got[0].Trust || k.Trust.ID != "t1" {
						errs <- fmt.Errorf("reader %d, read %d: keys of two versions in one answer", r, n)
						return
					}
				}
				// A kid lookup finds its key or, when the other
				// version is in place, nothing; never the other's.
				byKID, err := s.TrustedKeys(ctx, issuer, subject, "a1")
				if err != nil {
					errs <- err
					return
				}
				if ks := kids(byKID); len(ks) > 1 || len(ks) == 1 && ks[0] != "a1" {
					errs <- fmt.Errorf("reader %d, read %d: kid a1 gives %v", r, n, ks)
					return
				}
			}
		})
	}

	for i := range updates {
		next := versionB
		if i%2 == 1 {
			next = versionA
		}
		if _, err := s.UpdateTrust(ctx, next); err != nil {
			errs <- fmt.Errorf("update %d: %w", i, err)
			break
		}
	}
	close(done)
	reads.Wait()
	close(errs)
	var all []error
	for err := range errs {
		all = append(all, err)
	}
	require.NoError(t, errors.Join(all...))

	// The last update wrote versionA (updates is even).
	keys, err := s.TrustedKeys(ctx, issuer, subject, "")
	require.NoError(t, err)
	assert.Equal(t, wantA, kids(keys))
	assert.Equal(t, []string{"read", "write"}, mustGetTrust(t, s, "t1").Scopes)
}
