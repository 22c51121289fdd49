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
	"reflect"
	"slices"
	"strings"
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
	all []store.TrustedKey
	// byKID holds, for each kid, the keys with that KeyID and the remote
	// entries, in the order of all.
	byKID map[string][]store.TrustedKey
	// remote holds the entries of relationships with remote keys alone:
	// the answer for a kid no static key has.
	remote []store.TrustedKey
}

func (l *keyList) get(kid string) []store.TrustedKey {
	if kid == "" {
		return l.all
	}
	if keys, ok := l.byKID[kid]; ok {
		return keys
	}
	return l.remote
}

// issuerKeys indexes the relationships of one issuer and their keys.
type issuerKeys struct {
	// named holds the relationships naming each exact subject (Subject or
	// Subjects), patterned those with subject patterns, anySubject those
	// accepting every subject, by ID.
	named      map[string]map[string]*store.Trust
	patterned  map[string]*store.Trust
	anySubject map[string]*store.Trust

	// subjects holds, for each exactly named subject, that subject's keys
	// followed by the keys of any-subject relationships.
	subjects map[string]*keyList
	// any holds the keys of any-subject relationships alone, for subjects
	// no relationship names.
	any *keyList
	// patterns lists the patterned relationships by ID: the only part of
	// a lookup that is a scan, over this issuer's patterns alone.
	patterns []*store.Trust
}

// TrustedKeys implements store.KeyResolver with two map lookups, and a
// scan of the issuer's subject patterns when it has any: the cost does
// not depend on the number of relationships, and nothing is allocated
// unless a pattern matches. Keys of relationships naming the subject come
// first, then those whose patterns match it, then those of any-subject
// relationships, each group ordered by relationship ID.
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
	var matched []*store.Trust
	for _, t := range idx.patterns {
		if _, named := idx.named[subject][t.ID]; !named && t.AllowsSubject(subject) {
			matched = append(matched, t)
		}
	}
	if len(matched) == 0 {
		return list.get(kid), nil
	}
	// A pattern matched: assemble the answer in specificity order.
	order := append(sortedTrusts(idx.named[subject]), matched...)
	order = append(order, sortedTrusts(idx.anySubject)...)
	var keys []store.TrustedKey
	for _, t := range order {
		if t.Remote() {
			keys = append(keys, store.TrustedKey{Trust: t})
			continue
		}
		for i := range t.Keys {
			if kid == "" || t.Keys[i].KeyID == kid {
				keys = append(keys, store.TrustedKey{Key: &t.Keys[i], Trust: t})
			}
		}
	}
	return keys, nil
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
	s.put(nil, stored)
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
	s.put(old, stored)
	return stored, nil
}

// SyncTrust implements store.TrustStore: every relationship is validated
// first, and the whole change is applied under one write lock, so a
// concurrent TrustedKeys sees the old set or the new one.
func (s *Store) SyncTrust(_ context.Context, prefix string, ts []store.Trust) error {
	next, err := store.PrepareSync(prefix, ts)
	if err != nil {
		return err
	}

	s.trustMu.Lock()
	defer s.trustMu.Unlock()

	// Change the relationships first and rebuild each issuer's key lists
	// once at the end, so that the lock is held for O(n log n), not for a
	// rebuild per relationship. Unchanged relationships are left alone.
	touched := make(map[string]bool)
	for id, old := range s.trusts {
		if strings.HasPrefix(id, prefix) {
			if _, kept := next[id]; !kept {
				delete(s.trusts, id)
				s.unindex(old)
				touched[old.Issuer] = true
			}
		}
	}
	for id, t := range next {
		old, ok := s.trusts[id]
		if ok && reflect.DeepEqual(old, t) {
			continue
		}
		if ok {
			s.unindex(old)
			touched[old.Issuer] = true
		}
		s.trusts[id] = t
		s.index(t)
		touched[t.Issuer] = true
	}
	for issuer := range touched {
		if idx := s.keys[issuer]; idx != nil {
			idx.rebuild()
		}
	}
	return nil
}

// rebuild recomputes every key list of the issuer. The caller holds
// trustMu for writing.
func (idx *issuerKeys) rebuild() {
	idx.patterns = sortedTrusts(idx.patterned)
	anyTrusts := sortedTrusts(idx.anySubject)
	idx.any = newKeyList(anyTrusts)
	clear(idx.subjects)
	for subject, group := range idx.named {
		idx.subjects[subject] = newKeyList(append(sortedTrusts(group), anyTrusts...))
	}
}

// put replaces old (nil: none) with t (nil: none) in s.trusts and in the
// index, and rebuilds the key lists either version touches. The old
// *Trust itself is left untouched: callers may still hold it. The caller
// holds trustMu for writing.
func (s *Store) put(old, t *store.Trust) {
	if old != nil {
		delete(s.trusts, old.ID)
		if idx := s.unindex(old); idx != nil {
			idx.reindex(old)
		}
	}
	if t != nil {
		s.trusts[t.ID] = t
		s.index(t).reindex(t)
	}
}

// exactSubjects lists the subjects t names exactly.
func exactSubjects(t *store.Trust) []string {
	if t.Subject == "" {
		return t.Subjects
	}
	return append([]string{t.Subject}, t.Subjects...)
}

// index adds t to the relationships of its issuer, creating that issuer's
// index when needed, and returns it. The caller reindexes and holds
// trustMu for writing.
func (s *Store) index(t *store.Trust) *issuerKeys {
	idx := s.keys[t.Issuer]
	if idx == nil {
		idx = &issuerKeys{
			named:      make(map[string]map[string]*store.Trust),
			patterned:  make(map[string]*store.Trust),
			anySubject: make(map[string]*store.Trust),
			subjects:   make(map[string]*keyList),
			any:        newKeyList(nil),
		}
		s.keys[t.Issuer] = idx
	}
	if t.AnySubject {
		idx.anySubject[t.ID] = t
	}
	for _, sub := range exactSubjects(t) {
		group := idx.named[sub]
		if group == nil {
			group = make(map[string]*store.Trust)
			idx.named[sub] = group
		}
		group[t.ID] = t
	}
	if len(t.SubjectPatterns) > 0 {
		idx.patterned[t.ID] = t
	}
	return idx
}

// unindex removes t from the relationships of its issuer and returns that
// issuer's index for the caller to reindex, or nil when the issuer has no
// relationship left and its index is gone. The caller holds trustMu for
// writing.
func (s *Store) unindex(t *store.Trust) *issuerKeys {
	idx := s.keys[t.Issuer]
	delete(idx.anySubject, t.ID)
	delete(idx.patterned, t.ID)
	for _, sub := range exactSubjects(t) {
		delete(idx.named[sub], t.ID)
		if len(idx.named[sub]) == 0 {
			delete(idx.named, sub)
		}
	}
	if len(idx.named) == 0 && len(idx.anySubject) == 0 && len(idx.patterned) == 0 {
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
	s.put(t, nil)
	return nil
}

// reindex rebuilds the key lists that changed with t: those of t's exact
// subjects, or, when t accepts any subject, the any-subject list and every
// subject's list (which ends with it); and the pattern list when t has
// patterns. A write thus costs the size of what it affects, not of the
// whole issuer. The caller holds trustMu for writing.
func (idx *issuerKeys) reindex(t *store.Trust) {
	if len(t.SubjectPatterns) > 0 {
		idx.patterns = sortedTrusts(idx.patterned)
	}
	anyTrusts := sortedTrusts(idx.anySubject)
	if t.AnySubject {
		idx.any = newKeyList(anyTrusts)
		for subject, group := range idx.named {
			idx.subjects[subject] = newKeyList(append(sortedTrusts(group), anyTrusts...))
		}
		return
	}
	for _, sub := range exactSubjects(t) {
		group, ok := idx.named[sub]
		if !ok {
			delete(idx.subjects, sub)
			continue
		}
		idx.subjects[sub] = newKeyList(append(sortedTrusts(group), anyTrusts...))
	}
}

// sortedTrusts lists the relationships in group by ID.
func sortedTrusts(group map[string]*store.Trust) []*store.Trust {
	list := make([]*store.Trust, 0, len(group))
	for _, t := range group {
		list = append(list, t)
	}
	slices.SortFunc(list, func(a, b *store.Trust) int { return cmp.Compare(a.ID, b.ID) })
	return list
}

// newKeyList lists the keys of trusts, in order and then in each
// relationship's order; a relationship with remote keys gives one entry
// with a nil Key, which every kid lookup includes.
func newKeyList(trusts []*store.Trust) *keyList {
	l := &keyList{byKID: make(map[string][]store.TrustedKey)}
	for _, t := range trusts {
		if t.Remote() {
			l.all = append(l.all, store.TrustedKey{Trust: t})
			l.remote = append(l.remote, store.TrustedKey{Trust: t})
			continue
		}
		for i := range t.Keys {
			k := store.TrustedKey{Key: &t.Keys[i], Trust: t}
			l.all = append(l.all, k)
			l.byKID[k.Key.KeyID] = append(l.byKID[k.Key.KeyID], k)
		}
	}
	if len(l.remote) > 0 {
		// Every kid list also holds the remote entries, in order.
		for kid := range l.byKID {
			var keys []store.TrustedKey
			for _, k := range l.all {
				if k.Key == nil || k.Key.KeyID == kid {
					keys = append(keys, k)
				}
			}
			l.byKID[kid] = keys
		}
	}
	for kid, keys := range l.byKID {
		l.byKID[kid] = slices.Clip(keys)
	}
	l.all, l.remote = slices.Clip(l.all), slices.Clip(l.remote)
	return l
}

// newID returns 16 random bytes in hex: unguessable, and fixed-length so
// IDs sort without surprises.
func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never returns an error since Go 1.24.
	return hex.EncodeToString(b[:])
}
