package handler

import (
	"context"
	"errors"
	"time"

	jose "github.com/go-jose/go-jose/v3"
	"github.com/ory/fosite"
	"github.com/ory/fosite/compose"
	"github.com/ory/fosite/handler/oauth2"
	"github.com/ory/fosite/handler/rfc7523"

	"github.com/jwtbearer/jwtbearer/store"
)

// Factory builds the handler with the default policy, or with the policy
// of a configuration that implements SettingsProvider, for
// compose.Compose(config, storage, strategy, ..., handler.Factory).
//
// storage must implement oauth2.AccessTokenStorage and either
// store.KeyResolver and store.ReplayGuard (store/memory does) or fosite's
// rfc7523.RFC7523KeyStorage; see FromRFC7523Storage for what the latter
// gives up.
func Factory(config fosite.Configurator, storage interface{}, strategy interface{}) interface{} {
	return NewFactory(nil)(config, storage, strategy)
}

// GetJWTBearerSettings makes a *Settings its own SettingsProvider, so that
// NewFactory(&Settings{...}) works.
func (s *Settings) GetJWTBearerSettings(context.Context) *Settings { return s }

// NewFactory returns a compose.Factory that builds the handler with the
// policy from settings (nil: the configuration's, else the default).
func NewFactory(settings SettingsProvider) compose.Factory {
	return func(config fosite.Configurator, storage interface{}, strategy interface{}) interface{} {
		h := &Handler{
			Config:   config,
			Settings: settings,
			HandleHelper: &oauth2.HandleHelper{
				AccessTokenStrategy: strategy.(oauth2.AccessTokenStrategy),
				AccessTokenStorage:  storage.(oauth2.AccessTokenStorage),
				Config:              config,
			},
		}
		if h.Settings == nil {
			h.Settings, _ = config.(SettingsProvider)
		}
		if rs, ok := strategy.(oauth2.RefreshTokenStrategy); ok {
			h.RefreshTokenStrategy = rs
		}
		if rs, ok := storage.(oauth2.RefreshTokenStorage); ok {
			h.RefreshTokenStorage = rs
		}
		keys, hasKeys := storage.(store.KeyResolver)
		replay, hasReplay := storage.(store.ReplayGuard)
		if legacy, ok := storage.(rfc7523.RFC7523KeyStorage); ok && (!hasKeys || !hasReplay) {
			lk, lr := FromRFC7523Storage(legacy)
			if !hasKeys {
				keys = lk
			}
			if !hasReplay {
				replay = lr
			}
		}
		if keys == nil || replay == nil {
			panic("handler: storage implements neither store.KeyResolver and store.ReplayGuard nor rfc7523.RFC7523KeyStorage")
		}
		h.Keys, h.Replay = keys, replay
		return h
	}
}

// FromRFC7523Storage adapts storage written for fosite's stock rfc7523
// handler. Its keys carry only scopes (no algorithm list, client list or
// expiry), and its replay check is not atomic: IsJWTUsed followed by
// MarkJWTUsedForTime leaves a window in which two concurrent copies of an
// assertion both succeed, and its jti namespace is global rather than per
// issuer. Prefer a store that implements store.ReplayGuard.
func FromRFC7523Storage(s rfc7523.RFC7523KeyStorage) (store.KeyResolver, store.ReplayGuard) {
	a := legacyStorage{s}
	return a, a
}

type legacyStorage struct{ s rfc7523.RFC7523KeyStorage }

func (l legacyStorage) TrustedKeys(ctx context.Context, issuer, subject, kid string) ([]store.TrustedKey, error) {
	var keys []jose.JSONWebKey
	if kid != "" {
		k, err := l.s.GetPublicKey(ctx, issuer, subject, kid)
		if errors.Is(err, fosite.ErrNotFound) {
			return nil, nil
		} else if err != nil {
			return nil, err
		}
		keys = append(keys, *k)
	} else {
		set, err := l.s.GetPublicKeys(ctx, issuer, subject)
		if errors.Is(err, fosite.ErrNotFound) {
			return nil, nil
		} else if err != nil {
			return nil, err
		}
		keys = set.Keys
	}
	out := make([]store.TrustedKey, 0, len(keys))
	for i := range keys {
		scopes, err := l.s.GetPublicKeyScopes(ctx, issuer, subject, keys[i].KeyID)
		if err != nil && !errors.Is(err, fosite.ErrNotFound) {
			return nil, err
		}
		out = append(out, store.TrustedKey{
			Key:   &keys[i],
			Trust: &store.Trust{Issuer: issuer, Subject: subject, Scopes: scopes},
		})
	}
	return out, nil
}

func (l legacyStorage) ClaimJTI(ctx context.Context, _, jti string, until time.Time) (bool, error) {
	used, err := l.s.IsJWTUsed(ctx, jti)
	if err != nil || used {
		return false, err
	}
	return true, l.s.MarkJWTUsedForTime(ctx, jti, until)
}
