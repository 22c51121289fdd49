// Package memory is the embedded default store: trust relationships,
// replay guard, OAuth 2.0 clients and fosite's token sessions, all held in
// the process's memory and lost when it exits.
//
// It suits a single instance, tests and development. Several instances of
// the server do not share it, so they would not see each other's jtis nor
// tokens; use a network store for that.
//
// A Store is safe for concurrent use and starts no goroutines, so it needs
// no Close. Expired entries (jtis, token sessions) are forgotten by the
// requests themselves: every write pops a bounded number of expired entries
// off a min-heap ordered by expiry, so no request ever scans the whole
// store and the memory held follows the number of live entries.
//
// What the store hands out (relationships, clients, requesters) is shared
// with the store and must be treated as read-only.
package memory

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"slices"
	"sync"

	"github.com/ory/fosite"

	"github.com/jwtbearer/jwtbearer/store"
)

// Store is the in-memory store. The zero value is not usable; call New.
type Store struct {
	trustMu sync.RWMutex
	trusts  map[string]*store.Trust
	// keys is the lookup index behind TrustedKeys, by issuer. Writes patch
	// it so that reads allocate nothing.
	keys map[string]*issuerKeys

	// jtis and clientJTIs are separate namespaces: an assertion jti and a
	// client-assertion jti that happen to be equal do not collide.
	jtis       jtiCache
	clientJTIs jtiCache

	clientMu sync.RWMutex
	clients  map[string]*fosite.DefaultClient

	tokens tokenStore
}

// New returns an empty store.
func New() *Store {
	s := &Store{
		trusts:  make(map[string]*store.Trust),
		keys:    make(map[string]*issuerKeys),
		clients: make(map[string]*fosite.DefaultClient),
	}
	s.jtis.init()
	s.clientJTIs.init()
	s.tokens.init()
	return s
}

// keyList is the answer to TrustedKeys for one (issuer, subject), without
// and with a kid. Its slices are shared with every caller and have len ==
// cap, so that a caller's append cannot write into them.
type keyList struct {
	all   []store.TrustedKey
	byKID map[string][]store.TrustedKey
}

// issuerKeys indexes the relationships of one issuer and their keys.
type issuerKeys struct {
	// named holds the relationships naming each subject, anySubject those
	// accepting every subject, by ID.
	named      map[string]map[string]*store.Trust
	anySubject map[string]*store.Trust

	// subjects holds, for each subject named by a relationship, that
	// subject's keys followed by the keys of any-subject relationships.
	subjects map[string]*keyList
	// any holds the keys of any-subject relationships alone, for subjects
	// no relationship names.
	any *keyList
}

// TrustedKeys implements store.KeyResolver with two map lookups: the cost
// does not depend on the number of relationships and nothing is allocated.
// Keys of relationships naming the subject come first, then those of
// any-subject relationships, each group ordered by relationship ID.
func (s *Store) TrustedKeys(_ context.Context, issuer, subject, kid string) ([]store.TrustedKey, error) {
	s.trustMu.RLock()
	defer s.trustMu.RUnlock()

	idx, ok := s.keys[issuer]
	if !ok {
		return nil, nil
	}
	list, ok := idx.subjects[subject]
	if !ok {
		list = idx.any
	}
	if kid == "" {
		return list.all, nil
	}
	return list.byKID[kid], nil
}

// CreateTrust implements store.TrustStore.
func (s *Store) CreateTrust(_ context.Context, t store.Trust) (*store.Trust, error) {
	if err := store.NormalizeTrust(&t); err != nil {
		return nil, err
	}

	s.trustMu.Lock()
	defer s.trustMu.Unlock()

	if t.ID == "" {
		t.ID = newID()
	}
	if _, taken := s.trusts[t.ID]; taken {
		return nil, fmt.Errorf("memory: trust %q: %w", t.ID, store.ErrAlreadyExists)
	}
	stored := &t
	s.trusts[t.ID] = stored
	s.index(stored).reindex(stored)
	return stored, nil
}

// UpdateTrust implements store.TrustStore. The relationship is replaced in
// one step under the write lock: a concurrent TrustedKeys sees the old
// version or the new one, never neither. Only the key lists that either
// version touches are rebuilt.
func (s *Store) UpdateTrust(_ context.Context, t store.Trust) (*store.Trust, error) {
	if t.ID == "" {
		return nil, fmt.Errorf("%w: id: must not be empty to update a relationship", store.ErrInvalid)
	}
	if err := store.NormalizeTrust(&t); err != nil {
		return nil, err
	}

	s.trustMu.Lock()
	defer s.trustMu.Unlock()

	old, ok := s.trusts[t.ID]
	if !ok {
		return nil, fmt.Errorf("memory: trust %q: %w", t.ID, store.ErrNotFound)
	}
	stored := &t
	s.trusts[t.ID] = stored

	// The old *Trust is left untouched: callers may still hold it.
	oldIdx := s.unindex(old)
	newIdx := s.index(stored)
	if oldIdx != nil {
		oldIdx.reindex(old)
	}
	// Reindexing an any-subject relationship rebuilt every list of its
	// issuer, and reindexing a subject rebuilt that subject's list, the
	// new version's included.
	covered := oldIdx == newIdx && (old.AnySubject || !stored.AnySubject && stored.Subject == old.Subject)
	if !covered {
		newIdx.reindex(stored)
	}
	return stored, nil
}

// index adds t to the relationships of its issuer, creating that issuer's
// index when needed, and returns it. The caller reindexes and holds
// trustMu for writing.
func (s *Store) index(t *store.Trust) *issuerKeys {
	idx := s.keys[t.Issuer]
	if idx == nil {
		idx = &issuerKeys{
			named:      make(map[string]map[string]*store.Trust),
			anySubject: make(map[string]*store.Trust),
			subjects:   make(map[string]*keyList),
			any:        newKeyList(nil),
		}
		s.keys[t.Issuer] = idx
	}
	if t.AnySubject {
		idx.anySubject[t.ID] = t
	} else {
		group := idx.named[t.Subject]
		if group == nil {
			group = make(map[string]*store.Trust)
			idx.named[t.Subject] = group
		}
		group[t.ID] = t
	}
	return idx
}

// unindex removes t from the relationships of its issuer and returns that
// issuer's index for the caller to reindex, or nil when the issuer has no
// relationship left and its index is gone. The caller holds trustMu for
// writing.
func (s *Store) unindex(t *store.Trust) *issuerKeys {
	idx := s.keys[t.Issuer]
	if t.AnySubject {
		delete(idx.anySubject, t.ID)
	} else {
		delete(idx.named[t.Subject], t.ID)
		if len(idx.named[t.Subject]) == 0 {
			delete(idx.named, t.Subject)
		}
	}
	if len(idx.named) == 0 && len(idx.anySubject) == 0 {
		delete(s.keys, t.Issuer)
		return nil
	}
	return idx
}

// GetTrust implements store.TrustStore.
func (s *Store) GetTrust(_ context.Context, id string) (*store.Trust, error) {
	s.trustMu.RLock()
	defer s.trustMu.RUnlock()

	t, ok := s.trusts[id]
	if !ok {
		return nil, fmt.Errorf("memory: trust %q: %w", id, store.ErrNotFound)
	}
	return t, nil
}

// ListTrust implements store.TrustStore.
func (s *Store) ListTrust(_ context.Context) ([]*store.Trust, error) {
	s.trustMu.RLock()
	list := make([]*store.Trust, 0, len(s.trusts))
	for _, t := range s.trusts {
		list = append(list, t)
	}
	s.trustMu.RUnlock()

	slices.SortFunc(list, func(a, b *store.Trust) int { return cmp.Compare(a.ID, b.ID) })
	return list, nil
}

// DeleteTrust implements store.TrustStore. The keys of the relationship
// stop being returned by TrustedKeys when it returns.
func (s *Store) DeleteTrust(_ context.Context, id string) error {
	s.trustMu.Lock()
	defer s.trustMu.Unlock()

	t, ok := s.trusts[id]
	if !ok {
		return fmt.Errorf("memory: trust %q: %w", id, store.ErrNotFound)
	}
	delete(s.trusts, id)
	if idx := s.unindex(t); idx != nil {
		idx.reindex(t)
	}
	return nil
}

// reindex rebuilds the key lists that changed with t: those of t's
// subject, or, when t accepts any subject, the any-subject list and every
// subject's list (which ends with it). A write thus costs the size of what
// it affects, not of the whole issuer. The caller holds trustMu for
// writing.
func (idx *issuerKeys) reindex(t *store.Trust) {
	anyKeys := trustedKeys(idx.anySubject)
	if t.AnySubject {
		idx.any = newKeyList(anyKeys)
		for subject, group := range idx.named {
			idx.subjects[subject] = newKeyList(append(trustedKeys(group), anyKeys...))
		}
		return
	}
	group, ok := idx.named[t.Subject]
	if !ok {
		delete(idx.subjects, t.Subject)
		return
	}
	idx.subjects[t.Subject] = newKeyList(append(trustedKeys(group), anyKeys...))
}

// trustedKeys lists the keys of the relationships in group, by
// relationship ID and then in each relationship's order.
func trustedKeys(group map[string]*store.Trust) []store.TrustedKey {
	ids := make([]string, 0, len(group))
	for id := range group {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	var keys []store.TrustedKey
	for _, id := range ids {
		t := group[id]
		for i := range t.Keys {
			keys = append(keys, store.TrustedKey{Key: &t.Keys[i], Trust: t})
		}
	}
	return keys
}

func newKeyList(keys []store.TrustedKey) *keyList {
	l := &keyList{all: slices.Clip(keys), byKID: make(map[string][]store.TrustedKey)}
	for _, k := range keys {
		l.byKID[k.Key.KeyID] = append(l.byKID[k.Key.KeyID], k)
	}
	for kid, ks := range l.byKID {
		l.byKID[kid] = slices.Clip(ks)
	}
	return l
}

// newID returns 16 random bytes in hex: unguessable, and fixed-length so
// IDs sort without surprises.
func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never returns an error since Go 1.24.
	return hex.EncodeToString(b[:])
}
