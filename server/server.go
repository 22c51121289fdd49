// Package server composes fosite with the jwt-bearer handler and a store,
// and serves it over HTTP: POST /token (client_credentials, refresh_token
// and urn:ietf:params:oauth:grant-type:jwt-bearer), POST /introspect
// (RFC 7662), POST /revoke (RFC 7009) and GET /healthz.
package server

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ory/fosite"
	"github.com/ory/fosite/compose"
	"github.com/ory/fosite/handler/oauth2"

	"github.com/jwtbearer/jwtbearer/handler"
	"github.com/jwtbearer/jwtbearer/store"
	"github.com/jwtbearer/jwtbearer/store/jwks"
	"github.com/jwtbearer/jwtbearer/store/memory"
	redisstore "github.com/jwtbearer/jwtbearer/store/redis"
)

// Store is what the server needs of a backend: trust relationships and the
// replay guard for the grant, clients and token sessions for fosite.
type Store interface {
	store.TrustStore
	store.ReplayGuard
	store.ClientStore
	oauth2.TokenRevocationStorage
}

// Server is a composed authorization server.
type Server struct {
	cfg      *Config
	store    Store
	provider fosite.OAuth2Provider
	fosite   *fosite.Config
	logger   *slog.Logger
	// logHandler is the handler under logger's requestIDHandler, which
	// the audit events are written to directly (see logEvent).
	logHandler slog.Handler
	handler    http.Handler
	// admin serves the admin API; nil when it is off.
	admin http.Handler
	// closeStore closes a store New opened itself.
	closeStore func() error
	// remote fetches and caches the key sets of relationships with a
	// jwks_uri or OpenID discovery.
	remote *jwks.Cache
	// settings is the jwt-bearer policy, shared by the token endpoint and
	// the admin API's dry run.
	settings *handler.Settings
	// metrics counts requests and outcomes for GET /metrics; nil-safe.
	metrics *metrics
	// limiter rate-limits clients and issuers; nil when no limit is set.
	limiter *limiter
	// jwks serves GET /jwks.json, the keys of JWT access tokens; nil with
	// opaque tokens.
	jwks jwksServer
	// metadataJSON is the RFC 8414 document, built once.
	metadataJSON []byte
	// clientKeys holds the keys of clients that authenticate with signed
	// JWTs (private_key_jwt), and clientAssertions verifies those JWTs.
	clientKeys       *clientKeys
	clientAssertions *handler.ClientAssertionVerifier

	// reloadMu serialises Reload, and guards trustCfg and applied.
	reloadMu sync.Mutex
	// trustCfg is the configuration whose trust relationships are in
	// force: cfg, or the one the last successful Reload read. Only its
	// trust relationships and files are used.
	trustCfg *Config
	// attempted maps the files the last refused reload read or tried to
	// read, so that Watch notices the change that fixes it.
	attempted fileHashes
	// applied maps the files trustCfg was read from to the SHA-256 of
	// their content then (see Watch).
	applied fileHashes
}

// jwksServer serves the public keys that verify the access tokens.
type jwksServer interface {
	ServeJWKS(w http.ResponseWriter, r *http.Request)
}

// Option configures optional collaborators of New.
type Option func(*Server)

// WithLogger sets the logger; the default discards.
func WithLogger(l *slog.Logger) Option { return func(s *Server) { s.logger = l } }

// WithStore sets the backend instead of a new memory store.
func WithStore(st Store) Option { return func(s *Server) { s.store = st } }

// bcryptCost is the cost of hashing configured client secrets: bcrypt's
// usual 10 rather than fosite's 12, which would spend about 250 ms of CPU
// on every client_credentials request.
const bcryptCost = 10

// New composes the provider, loads the configured clients and trust
// relationships into the store (see load), and builds the router. The
// trust relationships can be reloaded later: see Reload and Watch.
func New(ctx context.Context, cfg *Config, opts ...Option) (*Server, error) {
	s := &Server{cfg: cfg, trustCfg: cfg, logger: slog.New(slog.DiscardHandler)}
	for _, o := range opts {
		o(s)
	}
	// Every line logged with a request's context names the request.
	s.logHandler = s.logger.Handler()
	s.logger = slog.New(requestIDHandler{s.logHandler})
	if s.store == nil {
		switch cfg.Store.Type {
		case "redis":
			rs, err := redisstore.Open(ctx, cfg.Store.Redis, s.logger)
			if err != nil {
				return nil, fmt.Errorf("store: %w", err)
			}
			s.store, s.closeStore = rs, rs.Close
		default:
			s.store = memory.New()
		}
	}
	secret := []byte(cfg.TokenSecret)
	if len(secret) == 0 {
		secret = make([]byte, 32)
		if _, err := rand.Read(secret); err != nil {
			return nil, err
		}
	}
	fc := &fosite.Config{
		AccessTokenLifespan:  cfg.AccessTokenLifetime,
		RefreshTokenLifespan: cfg.RefreshTokenLifetime,
		TokenURL:             cfg.Issuer + "/token",
		AccessTokenIssuer:    cfg.Issuer,
		GlobalSecret:         secret,
		HashCost:             bcryptCost,
		ScopeStrategy:        fosite.ExactScopeStrategy,
		// Refresh tokens are issued by policy, not by an "offline" scope.
		RefreshTokenScopes: []string{},
		// Set here, not left to fosite's getters, which fill them in on
		// first use: two requests using them at once would race.
		AudienceMatchingStrategy: fosite.DefaultAudienceMatchingStrategy,
	}
	fc.ClientSecretsHasher = &fosite.BCrypt{Config: fc}
	s.fosite = fc
	rk := cfg.RemoteKeys
	s.remote = jwks.New(jwks.Config{
		Timeout:         rk.Timeout,
		MaxBytes:        rk.MaxBytes,
		DefaultTTL:      rk.DefaultTTL,
		MinTTL:          rk.MinTTL,
		MaxTTL:          rk.MaxTTL,
		RefetchInterval: rk.RefetchInterval,
		MaxStale:        rk.MaxStale,
		Logger:          s.logger,
		OnFetch:         func(u string, err error) { s.metrics.remoteKeysFetched(u, err) },
	})
	s.settings = cfg.Settings()
	s.settings.RemoteKeys = s.remote
	s.metrics = newMetrics(s.remote, s.logger)
	s.clientKeys = newClientKeys(s.remote)
	s.clientAssertions = &handler.ClientAssertionVerifier{
		// The issuer identifier or the token endpoint, as
		// draft-ietf-oauth-rfc7523bis asks, at every endpoint.
		Audiences:   []string{cfg.Issuer, cfg.Issuer + "/token"},
		Keys:        s.clientKeys,
		Replay:      s.store,
		ClockSkew:   s.settings.ClockSkew,
		MaxLifetime: s.settings.MaxAssertionLifetime,
		MaxSize:     s.settings.MaxAssertionSize,
	}
	if s.limiter = newLimiter(cfg.RateLimits, nil); s.limiter != nil {
		s.limiter.refused = func(kind handler.LimitKind) { s.metrics.rateLimited(string(kind)) }
		s.settings.Limiter = s.limiter
		s.clientAssertions.Limiter = s.limiter
	}
	opaque, err := newTokenStrategy(fc)
	if err != nil {
		_ = s.Close()
		return nil, err
	}
	var strategy oauth2.CoreStrategy = opaque
	if cfg.AccessTokens.UsesJWT() {
		jat, err := newJWTAccessTokens(cfg.AccessTokens, cfg.dir, cfg.Issuer, cfg.AccessTokenLifetime, opaque, nil)
		if err != nil {
			_ = s.Close()
			return nil, fmt.Errorf("access_tokens: %w", err)
		}
		strategy, s.jwks = jat, jat
	}
	provider := compose.Compose(fc, s.store, strategy,
		onlyIfHandles[*oauth2.ClientCredentialsGrantHandler](compose.OAuth2ClientCredentialsGrantFactory),
		onlyIfHandles[*oauth2.RefreshTokenGrantHandler](compose.OAuth2RefreshTokenGrantFactory),
		handler.NewFactory(s.settings),
		introspectionFactory,
		compose.OAuth2TokenRevocationFactory,
	)
	s.provider = provider
	if f, ok := provider.(*fosite.Fosite); ok {
		fc.ClientAuthenticationStrategy = s.limitClients(s.clientJWTs(invalidClientStrategy(f)))
	}
	if err := s.load(ctx, fc); err != nil {
		_ = s.Close()
		return nil, err
	}
	s.metadataJSON = s.buildMetadata()
	s.handler = s.routes()
	if cfg.Admin.Listen != "" {
		s.admin = s.adminRoutes()
	}
	return s, nil
}

// onlyIfHandles wraps the factory of a token endpoint handler so that its
// PopulateTokenEndpointResponse runs only for requests it handles. fosite
// calls every handler's for every token request, and its own handlers
// answer the others with an error carrying a stack trace, a cost paid
// twice per token for nothing. The wrapper is generic because fosite
// keeps one token endpoint handler per Go type: two wrappers of one type
// would make it drop the second.
func onlyIfHandles[T fosite.TokenEndpointHandler](f compose.Factory) compose.Factory {
	return func(config fosite.Configurator, storage interface{}, strategy interface{}) interface{} {
		return handlesOnly[T]{f(config, storage, strategy).(T)}
	}
}

type handlesOnly[T fosite.TokenEndpointHandler] struct{ h T }

func (w handlesOnly[T]) HandleTokenEndpointRequest(ctx context.Context, req fosite.AccessRequester) error {
	return w.h.HandleTokenEndpointRequest(ctx, req)
}

func (w handlesOnly[T]) CanSkipClientAuth(ctx context.Context, req fosite.AccessRequester) bool {
	return w.h.CanSkipClientAuth(ctx, req)
}

func (w handlesOnly[T]) CanHandleTokenEndpointRequest(ctx context.Context, req fosite.AccessRequester) bool {
	return w.h.CanHandleTokenEndpointRequest(ctx, req)
}

func (w handlesOnly[T]) PopulateTokenEndpointResponse(ctx context.Context, req fosite.AccessRequester, resp fosite.AccessResponder) error {
	if !w.h.CanHandleTokenEndpointRequest(ctx, req) {
		return fosite.ErrUnknownRequest
	}
	return w.h.PopulateTokenEndpointResponse(ctx, req, resp)
}

// introspectionFactory is compose.OAuth2TokenIntrospectionFactory for a
// store without authorization codes, which this server does not issue.
func introspectionFactory(config fosite.Configurator, storage interface{}, strategy interface{}) interface{} {
	return &oauth2.CoreValidator{
		CoreStrategy: strategy.(oauth2.CoreStrategy),
		CoreStorage:  noAuthorizeCodes{storage.(Store)},
		Config:       config,
	}
}

// noAuthorizeCodes completes oauth2.CoreStorage: no authorization code
// exists here, so every lookup finds nothing.
type noAuthorizeCodes struct{ Store }

func (noAuthorizeCodes) CreateAuthorizeCodeSession(context.Context, string, fosite.Requester) error {
	return fosite.ErrNotFound.WithHint("This server does not issue authorization codes.")
}

func (noAuthorizeCodes) GetAuthorizeCodeSession(context.Context, string, fosite.Session) (fosite.Requester, error) {
	return nil, fosite.ErrNotFound
}

func (noAuthorizeCodes) InvalidateAuthorizeCodeSession(context.Context, string) error {
	return fosite.ErrNotFound
}

// clientJWTs authenticates the requests that carry a client assertion
// (private_key_jwt, RFC 7523 §2.2) and leaves the others to next. A
// request may use one client authentication method only (RFC 6749 §2.3):
// an Authorization header goes with neither an assertion nor a
// client_secret in the body, nor with a client_id naming someone else. The
// client of an assertion must be one configured with keys: a client with a
// secret cannot switch to assertions, nor the reverse.
func (s *Server) clientJWTs(next fosite.ClientAuthenticationStrategy) fosite.ClientAuthenticationStrategy {
	return func(ctx context.Context, r *http.Request, form url.Values) (fosite.Client, error) {
		if !handler.HasClientAssertion(form) {
			if _, ok := r.Header["Authorization"]; ok {
				// fosite would read the header and ignore the body.
				if _, ok := form["client_secret"]; ok {
					return nil, fosite.ErrInvalidClient.WithHint("The request carries both an Authorization header and a client_secret; use one client authentication method.")
				}
				if id, _, ok := r.BasicAuth(); ok {
					if unescaped, err := url.QueryUnescape(id); err == nil && form.Has("client_id") && form.Get("client_id") != unescaped {
						return nil, fosite.ErrInvalidClient.WithHint("The client_id parameter names another client than the Authorization header.")
					}
				}
			}
			return next(ctx, r, form)
		}
		if _, ok := r.Header["Authorization"]; ok {
			return nil, fosite.ErrInvalidClient.WithHint("The request carries both an Authorization header and a client assertion; use one client authentication method.")
		}
		id, err := s.clientAssertions.Authenticate(ctx, form)
		if err != nil {
			if errors.Is(err, handler.ErrReplayed) {
				s.metrics.replayRejected("client_assertion")
			}
			if errors.Is(err, store.ErrUnavailable) {
				return nil, unavailable(err)
			}
			return nil, err
		}
		c, err := s.store.GetClient(ctx, id)
		switch {
		case errors.Is(err, store.ErrUnavailable):
			return nil, unavailable(err)
		case err != nil:
			return nil, fosite.ErrInvalidClient.WithHint("The client assertion's client is not registered.")
		}
		return c, nil
	}
}

// limitClients applies the per-client rate limit to every request whose
// client authenticated, at /token (every grant: a request that carries
// credentials never goes on without its client), /introspect and /revoke.
// A client assertion is counted by its verifier instead, before its jti
// is claimed.
func (s *Server) limitClients(next fosite.ClientAuthenticationStrategy) fosite.ClientAuthenticationStrategy {
	if s.limiter == nil {
		return next
	}
	return func(ctx context.Context, r *http.Request, form url.Values) (fosite.Client, error) {
		c, err := next(ctx, r, form)
		if err != nil || c == nil {
			return c, err
		}
		if handler.HasClientAssertion(form) {
			// Counted by the verifier, before the assertion's jti is
			// claimed.
			return c, nil
		}
		if ok, retry := s.limiter.Allow(ctx, handler.LimitClient, c.GetID()); !ok {
			return nil, handler.RateLimited(handler.LimitClient, retry)
		}
		return c, nil
	}
}

// clientAuthReason says, for the log, why fosite's client authentication
// failed, in words that quote nothing the caller sent.
func clientAuthReason(err error) string {
	switch {
	case errors.Is(err, fosite.ErrNotFound) || errors.Is(err, store.ErrNotFound):
		return "no such client"
	case errors.Is(err, fosite.ErrInvalidClient):
		return "the client credentials do not verify"
	}
	return "the client credentials are malformed"
}

// invalidClientStrategy wraps fosite's client authentication so that every
// failure is invalid_client (RFC 6749 §5.2), including credentials fosite
// calls malformed.
//
// A request that carries no client credentials at all (the usual
// jwt-bearer request) gets, without calling fosite, the error fosite's
// strategy would give: fosite builds it with a stack trace, which cost
// about 7% of the server's CPU per token.
func invalidClientStrategy(f *fosite.Fosite) fosite.ClientAuthenticationStrategy {
	var strategy fosite.ClientAuthenticationStrategy
	var noCredentials *fosite.RFC6749Error
	strategy = func(ctx context.Context, r *http.Request, form url.Values) (fosite.Client, error) {
		if noCredentials != nil && !handler.CarriesClientCredentials(r.Header, form) {
			e := *noCredentials
			return nil, &e
		}
		c, err := f.DefaultClientAuthenticationStrategy(ctx, r, form)
		if errors.Is(err, store.ErrUnavailable) {
			// The client could not be looked up: not the client's fault.
			return nil, unavailable(err)
		}
		if err == nil {
			return c, nil
		}
		rfc := fosite.ErrorToRFC6749Error(err)
		if rfc.ErrorField == fosite.ErrServerError.ErrorField {
			return nil, err
		}
		// No WithWrap: fosite's revocation writer would find the original
		// invalid_request in the chain and answer 400. And not fosite's
		// debug text, which the audit log would show: it can quote the
		// client ID (a secret, when a client swaps the two) or part of a
		// malformed secret.
		hint := rfc.HintField
		if rfc.ErrorField != fosite.ErrInvalidClient.ErrorField {
			hint = rfc.GetDescription()
		}
		return nil, fosite.ErrInvalidClient.WithHint(hint).WithDebug(clientAuthReason(err))
	}
	// Ask the strategy once what it answers to no credentials.
	empty := &http.Request{Header: http.Header{}}
	if _, err := strategy(context.Background(), empty, url.Values{}); err != nil {
		var rfc *fosite.RFC6749Error
		if errors.As(err, &rfc) && rfc.ErrorField == fosite.ErrInvalidClient.ErrorField {
			noCredentials = rfc
		}
	}
	return strategy
}

// load puts the configured clients and trust relationships in the store.
//
// Clients: on a shared store other instances may be doing the same at the
// same moment, so a client that is already there as configured is left
// alone (a rolling restart then changes nothing), one that differs is
// replaced, and a create that loses a race is retried.
//
// Trust relationships (trust: and trust_file) are declarative: one
// SyncTrust makes the relationships whose IDs begin with ConfigTrustPrefix
// exactly the configured set, all or nothing, in one step that readers on
// every instance see whole. Configured relationships no longer in the
// configuration are deleted; those created through the admin API have
// other IDs and are left alone. Applying the set a store already holds
// changes nothing, so a rolling restart with the same files is quiet.
// Reload applies the files again the same way. Instances sharing a store
// should therefore share the same files: the last one to start or reload
// sets the configured relationships of all.
func (s *Server) load(ctx context.Context, fc *fosite.Config) error {
	hasher := &fosite.BCrypt{Config: fc}
	for _, cc := range s.cfg.Clients {
		if err := s.loadClient(ctx, hasher, cc); err != nil {
			return fmt.Errorf("clients %q: %w", cc.ID, err)
		}
		if len(cc.JWKS) == 0 && cc.JWKSURI == "" {
			continue
		}
		keys, err := s.cfg.clientKeys(cc, nil)
		if err == nil {
			err = s.clientKeys.add(cc.ID, keys, cc.JWKSURI)
		}
		if err != nil {
			return fmt.Errorf("clients %q: %w", cc.ID, err)
		}
	}
	applied := maps.Clone(s.cfg.sources)
	if applied == nil {
		applied = fileHashes{}
	}
	ts, err := s.cfg.trusts(applied)
	if err == nil {
		err = s.storeKidConflicts(ctx, ts)
	}
	if err != nil {
		return fmt.Errorf("trust: %w", err)
	}
	if err := s.store.SyncTrust(ctx, ConfigTrustPrefix, ts); err != nil {
		return fmt.Errorf("trust: %w", err)
	}
	s.applied = applied
	return nil
}

// storeKidConflicts reports the kids that a configured relationship uses
// for other key material than a relationship of the same issuer created
// through the admin API: an assertion's kid would pick keys of both. (The
// admin API refuses the converse.)
func (s *Server) storeKidConflicts(ctx context.Context, ts []store.Trust) error {
	all, err := s.store.ListTrust(ctx)
	if err != nil {
		return err
	}
	admin := all[:0:0]
	for _, other := range all {
		if !strings.HasPrefix(other.ID, ConfigTrustPrefix) {
			admin = append(admin, other)
		}
	}
	var errs []error
	for i := range ts {
		for _, c := range store.KIDConflicts(&ts[i], admin) {
			errs = append(errs, fmt.Errorf("%s: kid %q is also used by trust relationship %q (admin API) of issuer %q for a different key; give one of them another kid",
				ts[i].ID, c.KID, c.Other.ID, c.Other.Issuer))
		}
	}
	return errors.Join(errs...)
}

// loadAttempts bounds the retries of a configured client's create.
const loadAttempts = 5

func (s *Server) loadClient(ctx context.Context, hasher fosite.Hasher, cc ClientConfig) error {
	c := &fosite.DefaultClient{
		ID:         cc.ID,
		Secret:     []byte(cc.SecretHash),
		GrantTypes: cc.GrantTypes,
		Scopes:     cc.Scopes,
		Audience:   cc.Audience,
	}
	for attempt := 1; ; attempt++ {
		existing, err := s.store.GetClient(ctx, cc.ID)
		switch {
		case err == nil:
			if sameClient(ctx, hasher, existing, c, cc.Secret) {
				return nil
			}
			if err := s.store.DeleteClient(ctx, cc.ID); err != nil && !errors.Is(err, store.ErrNotFound) {
				return err
			}
		case !errors.Is(err, fosite.ErrNotFound) && !errors.Is(err, store.ErrNotFound):
			return err
		}
		if cc.Secret != "" && len(c.Secret) == 0 {
			if c.Secret, err = hasher.Hash(ctx, []byte(cc.Secret)); err != nil {
				return err
			}
		}
		err = s.store.CreateClient(ctx, c)
		if !errors.Is(err, store.ErrAlreadyExists) || attempt == loadAttempts {
			return err
		}
	}
}

// sameClient reports whether the stored client is the configured one. A
// plain secret is compared with the stored hash, whose salt differs on
// every instance.
func sameClient(ctx context.Context, hasher fosite.Hasher, have fosite.Client, want *fosite.DefaultClient, secret string) bool {
	if !slices.Equal(have.GetGrantTypes(), want.GrantTypes) || !slices.Equal(have.GetScopes(), want.Scopes) ||
		!slices.Equal(have.GetAudience(), want.Audience) {
		return false
	}
	if secret != "" {
		return hasher.Compare(ctx, have.GetHashedSecret(), []byte(secret)) == nil
	}
	return bytes.Equal(have.GetHashedSecret(), want.Secret)
}

// Close releases the store if New opened it (a Redis connection, say).
func (s *Server) Close() error {
	if s.closeStore == nil {
		return nil
	}
	return s.closeStore()
}

// Handler returns the HTTP handler serving every route.
func (s *Server) Handler() http.Handler { return s.handler }

// Store returns the backend the server uses.
func (s *Server) Store() Store { return s.store }

// Serve serves on ln until ctx is done, then shuts down gracefully: it
// stops accepting connections and waits up to 10 seconds for requests in
// flight.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	return s.serve(ctx, ln, s.handler)
}

// ServeAdmin serves the admin API on ln as Serve serves the public routes,
// with the same graceful shutdown. It fails at once when the admin API is
// off (admin.listen is not configured).
func (s *Server) ServeAdmin(ctx context.Context, ln net.Listener) error {
	if s.admin == nil {
		return errors.New("admin API is off: admin.listen is not configured")
	}
	return s.serve(ctx, ln, s.admin)
}

func (s *Server) serve(ctx context.Context, ln net.Listener, h http.Handler) error {
	return ServeHTTP(ctx, ln, h, s.logger)
}

// ServeHTTP serves h on ln with this server's HTTP timeouts and limits
// until ctx is done, then shuts down gracefully: it stops accepting
// connections and waits up to 10 seconds for requests in flight. It is
// exported so that a benchmark can serve another handler (stock fosite's)
// exactly as this server serves its own.
func ServeHTTP(ctx context.Context, ln net.Listener, h http.Handler, logger *slog.Logger) error {
	hs := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       15 * time.Second,
		WriteTimeout:      15 * time.Second,
		IdleTimeout:       90 * time.Second,
		MaxHeaderBytes:    32 << 10,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	err := hs.Shutdown(shutdownCtx)
	if err != nil {
		// Requests still running after the grace period are cut off.
		_ = hs.Close()
	}
	if serveErr := <-errc; !errors.Is(serveErr, http.ErrServerClosed) {
		logger.Warn("serve ended", "error", serveErr)
	}
	return err
}
