package storetest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/jwtbearer/jwtbearer/store"
)

func testTrustCRUD(t *testing.T, s Store) {
	ctx := t.Context()
	in := trust("", "https://issuer.example", "alice", ecJWK(0, "k0"))
	in.Algorithms = []string{"ES256"}
	in.Clients = []string{"client-1"}
	requireJTI := true
	in.RequireJTI = &requireJTI
	in.ExpiresAt = time.Now().Add(hour).UTC().Truncate(time.Second)

	created := mustCreateTrust(t, s, in)
	assert.NotEmpty(t, created.ID, "the store assigns an ID")
	assert.Equal(t, in.Issuer, created.Issuer)

	got, err := s.GetTrust(ctx, created.ID)
	require.NoError(t, err)
	assert.Equal(t, created.ID, got.ID)
	assert.Equal(t, "https://issuer.example", got.Issuer)
	assert.Equal(t, "alice", got.Subject)
	assert.False(t, got.AnySubject)
	assert.Equal(t, []string{"read", "write"}, got.Scopes)
	assert.Equal(t, []string{"ES256"}, got.Algorithms)
	assert.Equal(t, []string{"client-1"}, got.Clients)
	require.NotNil(t, got.RequireJTI)
	assert.True(t, *got.RequireJTI)
	assert.True(t, in.ExpiresAt.Equal(got.ExpiresAt), "expires_at %v, want %v", got.ExpiresAt, in.ExpiresAt)
	require.Len(t, got.Keys, 1)
	assert.Equal(t, "k0", got.Keys[0].KeyID)
	assert.Equal(t, thumbprint(t, &in.Keys[0]), thumbprint(t, &got.Keys[0]))

	// An ID that is taken stays with its first owner.
	again := trust(created.ID, "https://other.example", "bob", ecJWK(1, "k1"))
	_, err = s.CreateTrust(ctx, again)
	assert.ErrorIs(t, err, store.ErrAlreadyExists)
	got, err = s.GetTrust(ctx, created.ID)
	require.NoError(t, err)
	assert.Equal(t, "https://issuer.example", got.Issuer)

	require.NoError(t, s.DeleteTrust(ctx, created.ID))
	_, err = s.GetTrust(ctx, created.ID)
	assert.ErrorIs(t, err, store.ErrNotFound)
	assert.ErrorIs(t, s.DeleteTrust(ctx, created.ID), store.ErrNotFound)
	list, err := s.ListTrust(ctx)
	require.NoError(t, err)
	assert.Empty(t, list)

	_, err = s.GetTrust(ctx, "no-such-id")
	assert.ErrorIs(t, err, store.ErrNotFound)
}

func testTrustListOrder(t *testing.T, s Store) {
	for i, id := range []string{"m-trust", "a-trust", "z-trust", "b-trust"} {
		mustCreateTrust(t, s, trust(id, "https://issuer.example", "sub-"+id, ecJWK(i, "")))
	}
	assigned := mustCreateTrust(t, s, trust("", "https://issuer.example", "", ecJWK(4, "")))

	list, err := s.ListTrust(t.Context())
	require.NoError(t, err)
	var ids []string
	for _, tr := range list {
		ids = append(ids, tr.ID)
	}
	want := []string{"a-trust", "b-trust", "m-trust", "z-trust", assigned.ID}
	assert.ElementsMatch(t, want, ids)
	assert.IsIncreasing(t, ids, "ListTrust orders by ID")
}

func testTrustInvalid(t *testing.T, s Store) {
	ctx := t.Context()
	priv := rsaKey()
	tests := []struct {
		name  string
		trust store.Trust
	}{
		{"no issuer", trust("", "", "alice", ecJWK(0, ""))},
		{"no key", trust("", "https://issuer.example", "alice")},
		{"private key", trust("", "https://issuer.example", "alice", jose.JSONWebKey{Key: priv})},
		{"subject and any subject", func() store.Trust {
			tr := trust("", "https://issuer.example", "alice", ecJWK(0, ""))
			tr.AnySubject = true
			return tr
		}()},
		{"alg none", func() store.Trust {
			tr := trust("", "https://issuer.example", "alice", ecJWK(0, ""))
			tr.Algorithms = []string{"none"}
			return tr
		}()},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.CreateTrust(ctx, tc.trust)
			assert.ErrorIs(t, err, store.ErrInvalid)
		})
	}
	list, err := s.ListTrust(ctx)
	require.NoError(t, err)
	assert.Empty(t, list, "an invalid relationship is not stored")
	keys, err := s.TrustedKeys(ctx, "https://issuer.example", "alice", "")
	require.NoError(t, err)
	assert.Empty(t, keys)
}

func testTrustNotAliased(t *testing.T, s Store) {
	ctx := t.Context()
	in := trust("t1", "https://issuer.example", "alice", ecJWK(0, "k0"))
	in.Algorithms = []string{"ES256"}
	in.Clients = []string{"client-1"}
	created := mustCreateTrust(t, s, in)

	// The caller keeps using its slices.
	in.Scopes[0] = "admin"
	in.Algorithms[0] = "RS256"
	in.Clients[0] = "intruder"
	in.Keys[0].KeyID = "changed"
	in.Keys[0].Key = &ecKeys()[1].PublicKey

	for _, got := range []*store.Trust{created, mustGetTrust(t, s, "t1")} {
		assert.Equal(t, []string{"read", "write"}, got.Scopes)
		assert.Equal(t, []string{"ES256"}, got.Algorithms)
		assert.Equal(t, []string{"client-1"}, got.Clients)
		assert.Equal(t, "k0", got.Keys[0].KeyID)
		assert.Equal(t, thumbprint(t, &jose.JSONWebKey{Key: &ecKeys()[0].PublicKey}), thumbprint(t, &got.Keys[0]))
	}
	keys, err := s.TrustedKeys(ctx, "https://issuer.example", "alice", "changed")
	require.NoError(t, err)
	assert.Empty(t, keys)
}

func mustGetTrust(t *testing.T, s Store, id string) *store.Trust {
	t.Helper()
	got, err := s.GetTrust(t.Context(), id)
	require.NoError(t, err)
	return got
}

func testTrustKeyIDIsThumbprint(t *testing.T, s Store) {
	key := ecJWK(0, "")
	created := mustCreateTrust(t, s, trust("t1", "https://issuer.example", "alice", key))
	want := thumbprint(t, &key)
	require.Len(t, created.Keys, 1)
	assert.Equal(t, want, created.Keys[0].KeyID)

	keys, err := s.TrustedKeys(t.Context(), "https://issuer.example", "alice", want)
	require.NoError(t, err)
	require.Len(t, keys, 1)
	assert.Equal(t, want, keys[0].Key.KeyID)
}

func testTrustedKeysByKid(t *testing.T, s Store) {
	ctx := t.Context()
	created := mustCreateTrust(t, s, trust("t1", "https://issuer.example", "alice", ecJWK(0, "k0"), ecJWK(1, "k1")))

	keys, err := s.TrustedKeys(ctx, "https://issuer.example", "alice", "k1")
	require.NoError(t, err)
	require.Len(t, keys, 1)
	assert.Equal(t, "k1", keys[0].Key.KeyID)
	assert.Equal(t, thumbprint(t, &jose.JSONWebKey{Key: &ecKeys()[1].PublicKey}), thumbprint(t, keys[0].Key))
	require.NotNil(t, keys[0].Trust)
	assert.Equal(t, created.ID, keys[0].Trust.ID)
	assert.Equal(t, []string{"read", "write"}, keys[0].Trust.Scopes)

	keys, err = s.TrustedKeys(ctx, "https://issuer.example", "alice", "unknown-kid")
	require.NoError(t, err, "no match is an empty result, not an error")
	assert.Empty(t, keys)
}

func testTrustedKeysWithoutKid(t *testing.T, s Store) {
	mustCreateTrust(t, s, trust("t1", "https://issuer.example", "alice", ecJWK(0, "k0"), ecJWK(1, "k1")))

	keys, err := s.TrustedKeys(t.Context(), "https://issuer.example", "alice", "")
	require.NoError(t, err)
	assert.ElementsMatch(t, []string{"k0", "k1"}, kids(keys))
}

func testTrustedKeysAnySubject(t *testing.T, s Store) {
	ctx := t.Context()
	named := mustCreateTrust(t, s, trust("t-named", "https://issuer.example", "alice", ecJWK(0, "k-alice")))
	anySub := mustCreateTrust(t, s, trust("t-any", "https://issuer.example", "", ecJWK(1, "k-any")))

	keys, err := s.TrustedKeys(ctx, "https://issuer.example", "alice", "")
	require.NoError(t, err)
	assert.ElementsMatch(t, []string{"k-alice", "k-any"}, kids(keys), "alice gets her keys and the any-subject keys")
	for _, k := range keys {
		switch k.Key.KeyID {
		case "k-alice":
			assert.Equal(t, named.ID, k.Trust.ID)
		case "k-any":
			assert.Equal(t, anySub.ID, k.Trust.ID)
			assert.True(t, k.Trust.AnySubject)
		}
	}

	keys, err = s.TrustedKeys(ctx, "https://issuer.example", "bob", "")
	require.NoError(t, err)
	assert.Equal(t, []string{"k-any"}, kids(keys), "bob gets the any-subject keys only")

	keys, err = s.TrustedKeys(ctx, "https://issuer.example", "alice", "k-any")
	require.NoError(t, err)
	assert.Equal(t, []string{"k-any"}, kids(keys))

	keys, err = s.TrustedKeys(ctx, "https://issuer.example", "bob", "k-alice")
	require.NoError(t, err)
	assert.Empty(t, keys, "alice's key is not trusted for bob")

	// A subject named after the any-subject relationship exists gets both.
	mustCreateTrust(t, s, trust("t-carol", "https://issuer.example", "carol", ecJWK(2, "k-carol")))
	keys, err = s.TrustedKeys(ctx, "https://issuer.example", "carol", "")
	require.NoError(t, err)
	assert.ElementsMatch(t, []string{"k-carol", "k-any"}, kids(keys))
	keys, err = s.TrustedKeys(ctx, "https://issuer.example", "carol", "k-any")
	require.NoError(t, err)
	assert.Equal(t, []string{"k-any"}, kids(keys))
}

func testTrustedKeysOtherSubject(t *testing.T, s Store) {
	mustCreateTrust(t, s, trust("t1", "https://issuer.example", "alice", ecJWK(0, "k0")))

	for _, subject := range []string{"bob", "Alice", "alice ", ""} {
		keys, err := s.TrustedKeys(t.Context(), "https://issuer.example", subject, "")
		require.NoError(t, err)
		assert.Empty(t, keys, "subject %q", subject)
	}
}

func testTrustedKeysOtherIssuer(t *testing.T, s Store) {
	mustCreateTrust(t, s, trust("t1", "https://issuer.example", "alice", ecJWK(0, "k0")))
	mustCreateTrust(t, s, trust("t2", "https://issuer.example", "", ecJWK(1, "k1")))

	// Issuers compare byte for byte (RFC 7521 §5.2).
	for _, issuer := range []string{"https://other.example", "https://issuer.example/", "HTTPS://issuer.example", ""} {
		keys, err := s.TrustedKeys(t.Context(), issuer, "alice", "")
		require.NoError(t, err)
		assert.Empty(t, keys, "issuer %q", issuer)
	}
}

func testTrustedKeysGoneOnDelete(t *testing.T, s Store) {
	ctx := t.Context()
	mustCreateTrust(t, s, trust("t1", "https://issuer.example", "alice", ecJWK(0, "k0")))
	mustCreateTrust(t, s, trust("t2", "https://issuer.example", "", ecJWK(1, "k1")))

	keys, err := s.TrustedKeys(ctx, "https://issuer.example", "alice", "")
	require.NoError(t, err)
	require.ElementsMatch(t, []string{"k0", "k1"}, kids(keys))

	require.NoError(t, s.DeleteTrust(ctx, "t2"))
	keys, err = s.TrustedKeys(ctx, "https://issuer.example", "alice", "")
	require.NoError(t, err)
	assert.Equal(t, []string{"k0"}, kids(keys))
	keys, err = s.TrustedKeys(ctx, "https://issuer.example", "bob", "k1")
	require.NoError(t, err)
	assert.Empty(t, keys)

	require.NoError(t, s.DeleteTrust(ctx, "t1"))
	keys, err = s.TrustedKeys(ctx, "https://issuer.example", "alice", "k0")
	require.NoError(t, err)
	assert.Empty(t, keys)
}

func testTrustedKeysExpiredTrust(t *testing.T, s Store) {
	in := trust("t1", "https://issuer.example", "alice", ecJWK(0, "k0"))
	in.ExpiresAt = time.Now().Add(-time.Minute)
	mustCreateTrust(t, s, in)

	keys, err := s.TrustedKeys(t.Context(), "https://issuer.example", "alice", "k0")
	require.NoError(t, err)
	require.Len(t, keys, 1, "expired relationships are returned; the caller decides")
	assert.True(t, keys[0].Trust.Expired(time.Now()))
}

// testConcurrentTrustCreateAndLookup changes relationships while others
// look keys up, to let the race detector see both sides.
func testConcurrentTrustCreateAndLookup(t *testing.T, s Store) {
	ctx := t.Context()
	const writers, perWriter, readers = 8, 16, 8
	// Fresh keys, so that every relationship has its own thumbprint kid.
	keys := make([]jose.JSONWebKey, writers*perWriter)
	for i := range keys {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		require.NoError(t, err)
		keys[i] = jose.JSONWebKey{Key: &k.PublicKey}
	}

	done := make(chan struct{})
	errs := make(chan error, writers*perWriter+readers)
	var writersWG, readersWG sync.WaitGroup
	for w := range writers {
		writersWG.Go(func() {
			for i := range perWriter {
				n := w*perWriter + i
				_, err := s.CreateTrust(ctx, trust("", "https://issuer.example", subjectName(n), keys[n]))
				if err != nil {
					errs <- err
				}
			}
		})
	}
	for range readers {
		readersWG.Go(func() {
			for {
				select {
				case <-done:
					return
				default:
				}
				got, err := s.TrustedKeys(ctx, "https://issuer.example", subjectName(0), "")
				if err != nil {
					errs <- err
					return
				}
				for _, k := range got {
					if k.Trust.Subject != subjectName(0) || k.Key.KeyID == "" {
						errs <- assert.AnError
						return
					}
				}
			}
		})
	}
	writersWG.Wait()
	close(done)
	readersWG.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}

	for n := range writers * perWriter {
		got, err := s.TrustedKeys(ctx, "https://issuer.example", subjectName(n), "")
		require.NoError(t, err)
		require.Len(t, got, 1, "subject %d", n)
		assert.Equal(t, thumbprint(t, &keys[n]), got[0].Key.KeyID)
	}
	list, err := s.ListTrust(ctx)
	require.NoError(t, err)
	assert.Len(t, list, writers*perWriter)
}

func subjectName(n int) string {
	return "subject-" + string(rune('a'+n/26)) + string(rune('a'+n%26))
}

func kids(keys []store.TrustedKey) []string {
	var out []string
	for _, k := range keys {
		out = append(out, k.Key.KeyID)
	}
	return out
}
