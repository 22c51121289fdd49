package storetest

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/jwtbearer/jwtbearer/store"
)

// entries names each key of an answer by kid, and a remote entry (nil Key)
// by "remote:" and its relationship's ID.
func entries(keys []store.TrustedKey) []string {
	out := []string{}
	for _, k := range keys {
		if k.Key == nil {
			out = append(out, "remote:"+k.Trust.ID)
			continue
		}
		out = append(out, k.Key.KeyID)
	}
	return out
}

func lookup(t *testing.T, s Store, issuer, subject, kid string) []string {
	t.Helper()
	keys, err := s.TrustedKeys(t.Context(), issuer, subject, kid)
	require.NoError(t, err)
	for _, k := range keys {
		require.True(t, k.Trust.AllowsSubject(subject), "relationship %s returned for subject %q it does not accept", k.Trust.ID, subject)
	}
	return entries(keys)
}

func remoteTrust(id, issuer, subject, jwksURI string) store.Trust {
	tr := trust(id, issuer, subject)
	tr.JWKSURI = jwksURI
	return tr
}

func testTrustedKeysSubjectList(t *testing.T, s Store) {
	const iss = "https://issuer.example"
	tr := trust("t-list", iss, "alice", ecJWK(0, "k0"))
	tr.Subjects = []string{"bob", "carol"}
	mustCreateTrust(t, s, tr)

	for _, sub := range []string{"alice", "bob", "carol"} {
		assert.Equal(t, []string{"k0"}, lookup(t, s, iss, sub, ""), sub)
		assert.Equal(t, []string{"k0"}, lookup(t, s, iss, sub, "k0"), sub)
	}
	assert.Empty(t, lookup(t, s, iss, "dave", ""))

	tr.Subjects = []string{"bob"}
	_, err := s.UpdateTrust(t.Context(), tr)
	require.NoError(t, err)
	assert.Empty(t, lookup(t, s, iss, "carol", ""), "a subject taken off the list is no longer trusted")
	assert.Equal(t, []string{"k0"}, lookup(t, s, iss, "bob", ""))
}

func testTrustedKeysSubjectPatterns(t *testing.T, s Store) {
	const iss = "https://kubernetes.default.svc"
	exact := trust("t1-exact", iss, "system:serviceaccount:prod:api", ecJWK(0, "k-exact"))
	pattern := trust("t2-pattern", iss, "", ecJWK(1, "k-pattern"))
	pattern.AnySubject, pattern.SubjectPatterns = false, []string{"system:serviceaccount:prod:*"}
	both := trust("t0-both", iss, "", ecJWK(2, "k-both"))
	both.AnySubject, both.Subjects, both.SubjectPatterns = false, []string{"system:serviceaccount:prod:api"}, []string{"system:serviceaccount:prod:a*"}
	anySub := trust("t3-any", iss, "", ecJWK(3, "k-any"))
	for _, tr := range []store.Trust{exact, pattern, both, anySub} {
		mustCreateTrust(t, s, tr)
	}

	assert.Equal(t, []string{"k-both", "k-exact", "k-pattern", "k-any"}, lookup(t, s, iss, "system:serviceaccount:prod:api", ""),
		"exact subjects first, then patterns, then any subject; a relationship matching twice appears once")
	assert.Equal(t, []string{"k-both", "k-pattern", "k-any"}, lookup(t, s, iss, "system:serviceaccount:prod:app", ""))
	assert.Equal(t, []string{"k-pattern", "k-any"}, lookup(t, s, iss, "system:serviceaccount:prod:web", ""))
	assert.Equal(t, []string{"k-any"}, lookup(t, s, iss, "system:serviceaccount:staging:web", ""))
	assert.Equal(t, []string{"k-any"}, lookup(t, s, iss, "system:serviceaccount:prod:web:x", ""), "* stays within one segment")
	assert.Equal(t, []string{"k-pattern"}, lookup(t, s, iss, "system:serviceaccount:prod:web", "k-pattern"))
	assert.Empty(t, lookup(t, s, iss, "system:serviceaccount:prod:web", "k-exact"))

	require.NoError(t, s.DeleteTrust(t.Context(), pattern.ID))
	assert.Equal(t, []string{"k-any"}, lookup(t, s, iss, "system:serviceaccount:prod:web", ""))
}

func testTrustedKeysRemote(t *testing.T, s Store) {
	const iss = "https://token.actions.githubusercontent.com"
	static := trust("t1-static", iss, "repo:acme/app:ref:refs/heads/main", ecJWK(0, "k-static"))
	remote := remoteTrust("t2-remote", iss, "repo:acme/app:ref:refs/heads/main", iss+"/.well-known/jwks")
	mustCreateTrust(t, s, static)
	mustCreateTrust(t, s, remote)
	const sub = "repo:acme/app:ref:refs/heads/main"

	assert.Equal(t, []string{"k-static", "remote:t2-remote"}, lookup(t, s, iss, sub, ""))
	assert.Equal(t, []string{"k-static", "remote:t2-remote"}, lookup(t, s, iss, sub, "k-static"))
	assert.Equal(t, []string{"remote:t2-remote"}, lookup(t, s, iss, sub, "some-rotated-kid"),
		"a remote relationship answers for every kid: its keys are fetched by the caller")
	assert.Empty(t, lookup(t, s, iss, "repo:acme/other:ref:refs/heads/main", "k"))

	disc := trust("t3-discovery", iss, "", ecJWK(1, "unused"))
	disc.Keys, disc.AnySubject, disc.SubjectPatterns, disc.OIDCDiscovery = nil, false, []string{"repo:acme/*:ref:refs/heads/main"}, true
	mustCreateTrust(t, s, disc)
	assert.Equal(t, []string{"remote:t3-discovery"}, lookup(t, s, iss, "repo:acme/web:ref:refs/heads/main", "x"))
	assert.Equal(t, []string{"k-static", "remote:t2-remote", "remote:t3-discovery"}, lookup(t, s, iss, sub, ""))
}

func testTrustRoundTripsEveryField(t *testing.T, s Store) {
	jti := false
	tr := store.Trust{
		ID:                   "t-full",
		Issuer:               "https://issuer.example",
		Subject:              "a",
		Subjects:             []string{"b", "c"},
		SubjectPatterns:      []string{"ns:*"},
		RequiredClaims:       map[string]string{"repository_owner": "acme", "ref_protected": "true"},
		Scopes:               []string{"read"},
		Algorithms:           []string{"ES256", "RS256"},
		Clients:              []string{"c1"},
		RequireJTI:           &jti,
		MaxAssertionLifetime: store.Duration(2 * time.Hour),
		AccessTokenLifetime:  store.Duration(5 * time.Minute),
		ExpiresAt:            time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC),
		JWKSURI:              "https://issuer.example/jwks",
	}
	created := mustCreateTrust(t, s, tr)
	got := mustGetTrust(t, s, tr.ID)
	assert.Equal(t, created, got)
	assert.Equal(t, tr.RequiredClaims, got.RequiredClaims)
	assert.Equal(t, tr.SubjectPatterns, got.SubjectPatterns)
	assert.Equal(t, tr.MaxAssertionLifetime, got.MaxAssertionLifetime)
	assert.Equal(t, tr.JWKSURI, got.JWKSURI)
	assert.Empty(t, got.Keys)
	list, err := s.ListTrust(t.Context())
	require.NoError(t, err)
	require.Len(t, list, 1)
	assert.Equal(t, got, list[0])
}

func testTrustSync(t *testing.T, s Store) {
	ctx := t.Context()
	const iss = "https://issuer.example"
	mustCreateTrust(t, s, trust("admin-1", iss, "alice", ecJWK(0, "k-admin")))
	mustCreateTrust(t, s, trust("cfg-old", iss, "bob", ecJWK(1, "k-old")))
	mustCreateTrust(t, s, trust("cfg-keep", iss, "carol", ecJWK(2, "k-keep")))

	keep := trust("cfg-keep", iss, "carol", ecJWK(3, "k-keep-new"))
	added := trust("cfg-new", iss, "dave", ecJWK(4, "k-new"))
	require.NoError(t, s.SyncTrust(ctx, "cfg-", []store.Trust{keep, added}))

	ids := func() []string {
		list, err := s.ListTrust(ctx)
		require.NoError(t, err)
		var out []string
		for _, tr := range list {
			out = append(out, tr.ID)
		}
		return out
	}
	assert.Equal(t, []string{"admin-1", "cfg-keep", "cfg-new"}, ids(), "prefixed relationships are replaced, the others untouched")
	assert.Equal(t, []string{"k-admin"}, lookup(t, s, iss, "alice", ""))
	assert.Empty(t, lookup(t, s, iss, "bob", ""), "a relationship dropped from the set is deleted")
	assert.Equal(t, []string{"k-keep-new"}, lookup(t, s, iss, "carol", ""), "a kept relationship is replaced")
	assert.Equal(t, []string{"k-new"}, lookup(t, s, iss, "dave", ""))

	// The same set again changes nothing.
	require.NoError(t, s.SyncTrust(ctx, "cfg-", []store.Trust{keep, added}))
	assert.Equal(t, []string{"admin-1", "cfg-keep", "cfg-new"}, ids())

	// One invalid relationship: nothing applies, every problem is named.
	bad := trust("cfg-bad", iss, "", ecJWK(5, "k-bad"))
	bad.AnySubject = false
	unprefixed := trust("other", iss, "erin", ecJWK(6, "k-other"))
	err := s.SyncTrust(ctx, "cfg-", []store.Trust{added, bad, unprefixed})
	require.ErrorIs(t, err, store.ErrInvalid)
	assert.Contains(t, err.Error(), "cfg-bad")
	assert.Contains(t, err.Error(), `id "other" must start with "cfg-"`)
	assert.Equal(t, []string{"admin-1", "cfg-keep", "cfg-new"}, ids(), "a failed sync changes nothing")
	assert.Equal(t, []string{"k-keep-new"}, lookup(t, s, iss, "carol", ""))

	dup := s.SyncTrust(ctx, "cfg-", []store.Trust{added, added})
	require.ErrorIs(t, dup, store.ErrInvalid)

	// An empty set removes every prefixed relationship.
	require.NoError(t, s.SyncTrust(ctx, "cfg-", nil))
	assert.Equal(t, []string{"admin-1"}, ids())
	assert.Empty(t, lookup(t, s, iss, "dave", ""))
}

// testConcurrentTrustSyncAndLookup flips between two sets that trust alice
// through different relationships: a reader must find exactly one key,
// never none (the new set not in yet) nor two (the old not gone yet).
func testConcurrentTrustSyncAndLookup(t *testing.T, s Store) {
	ctx := t.Context()
	const iss, sub = "https://issuer.example", "alice"
	setX := []store.Trust{trust("cfg-x", iss, sub, ecJWK(0, "kx")), trust("cfg-x2", iss, "bob", ecJWK(1, "kx2"))}
	setY := []store.Trust{trust("cfg-y", iss, sub, ecJWK(2, "ky"))}
	require.NoError(t, s.SyncTrust(ctx, "cfg-", setX))

	done := make(chan struct{})
	errs := make(chan error, 9)
	var reads sync.WaitGroup
	for r := range 8 {
		reads.Go(func() {
			for n := 0; ; n++ {
				select {
				case <-done:
					return
				default:
				}
				keys, err := s.TrustedKeys(ctx, iss, sub, "")
				if err != nil {
					errs <- err
					return
				}
				if got := entries(keys); !slices.Equal(got, []string{"kx"}) && !slices.Equal(got, []string{"ky"}) {
					errs <- fmt.Errorf("reader %d, read %d: %v, want [kx] or [ky]", r, n, got)
					return
				}
			}
		})
	}
	for i := range 60 {
		next := setY
		if i%2 == 1 {
			next = setX
		}
		if err := s.SyncTrust(ctx, "cfg-", next); err != nil {
			errs <- fmt.Errorf("sync %d: %w", i, err)
			break
		}
	}
	close(done)
	reads.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
