package handler

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v3"
	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/oauth2"

	"github.com/jwtbearer/jwtbearer/store"
)

// GrantType is the grant_type value of RFC 7523 §2.1.
const GrantType = "urn:ietf:params:oauth:grant-type:jwt-bearer"

// Handler is a fosite.TokenEndpointHandler for the JWT Bearer grant.
type Handler struct {
	// Keys finds the keys trusted for an assertion's issuer and subject.
	Keys store.KeyResolver
	// Replay redeems each assertion's (iss, jti) once, atomically.
	Replay store.ReplayGuard
	// RemoteKeys fetches the key sets of relationships whose keys the
	// issuer publishes (jwks_uri, OpenID discovery). Nil: Settings's.
	RemoteKeys RemoteKeySource

	// Config holds the fosite settings the handler reads. The token URLs and
	// the access-token issuer identify this server as the assertion's
	// audience.
	Config interface {
		fosite.AccessTokenLifespanProvider
		fosite.RefreshTokenLifespanProvider
		fosite.TokenURLProvider
		fosite.AccessTokenIssuerProvider
		fosite.ScopeStrategyProvider
		fosite.AudienceStrategyProvider
	}
	// Settings supplies the jwt-bearer policy; nil means the default policy.
	Settings SettingsProvider

	// HandleHelper issues and stores the access token.
	*oauth2.HandleHelper
	// RefreshTokenStrategy and RefreshTokenStorage are needed only when
	// Settings.IssueRefreshTokens is set.
	RefreshTokenStrategy oauth2.RefreshTokenStrategy
	RefreshTokenStorage  oauth2.RefreshTokenStorage
}

var _ fosite.TokenEndpointHandler = (*Handler)(nil)

// RemoteKeySource supplies the keys of relationships whose Remote() is
// true. store/jwks implements it with a bounded, cached fetcher.
type RemoteKeySource interface {
	// RemoteKeys returns t's published keys whose KeyID is kid, or all of
	// them when kid is empty. An error means no usable key set.
	RemoteKeys(ctx context.Context, t *store.Trust, kid string) ([]jose.JSONWebKey, error)
}

var defaultSettings = &Settings{}

func (h *Handler) settings(ctx context.Context) *Settings {
	if h.Settings != nil {
		if s := h.Settings.GetJWTBearerSettings(ctx); s != nil {
			return s
		}
	}
	return defaultSettings
}

// CanHandleTokenEndpointRequest is true for exactly one grant_type, the
// jwt-bearer URN (RFC 7523 §2.1).
func (h *Handler) CanHandleTokenEndpointRequest(_ context.Context, requester fosite.AccessRequester) bool {
	return requester.GetGrantTypes().ExactOne(GrantType)
}

// CanSkipClientAuth lets a request without client credentials through when
// the policy makes client authentication optional (RFC 7521 §4.1). A request
// that carries credentials never skips: fosite then answers a failed
// authentication with its error instead of silently ignoring the
// credentials (RFC 7523 §3.1: if present, they MUST be validated).
func (h *Handler) CanSkipClientAuth(ctx context.Context, requester fosite.AccessRequester) bool {
	if h.settings(ctx).RequireClientAuth {
		return false
	}
	return !carriesClientCredentials(ctx, requester)
}

// carriesClientCredentials reports whether the token request holds any
// form of client authentication (see CarriesClientCredentials).
func carriesClientCredentials(ctx context.Context, requester fosite.AccessRequester) bool {
	var header http.Header
	if r, ok := ctx.Value(fosite.RequestContextKey).(*http.Request); ok {
		header = r.Header
	}
	return CarriesClientCredentials(header, requester.GetRequestForm())
}

// CarriesClientCredentials reports whether a request with this header and
// form holds any form of client authentication: an Authorization header,
// or client_id, client_secret, client_assertion or client_assertion_type
// parameters, even empty ones.
func CarriesClientCredentials(header http.Header, form url.Values) bool {
	if _, ok := header["Authorization"]; ok {
		return true
	}
	for _, name := range []string{"client_id", "client_secret", "client_assertion", "client_assertion_type"} {
		if _, ok := form[name]; ok {
			return true
		}
	}
	return false
}

// clientAuthenticated reports whether fosite authenticated a client for
// this request: it did whenever the handler did not let it skip.
func (h *Handler) clientAuthenticated(ctx context.Context, requester fosite.AccessRequester) bool {
	return !h.CanSkipClientAuth(ctx, requester)
}

// HandleTokenEndpointRequest validates the assertion (RFC 7523 §2.1 and §3,
// RFC 7521 §4.1 and §5.2) and prepares the session. The jti is claimed last,
// after every other check, so that a rejected request consumes nothing.
func (h *Handler) HandleTokenEndpointRequest(ctx context.Context, request fosite.AccessRequester) error {
	if !h.CanHandleTokenEndpointRequest(ctx, request) {
		return fosite.ErrUnknownRequest
	}
	form := request.GetRequestForm()
	for _, name := range []string{"grant_type", "assertion", "scope"} {
		if len(form[name]) > 1 {
			return fosite.ErrInvalidRequest.WithHintf("The %q parameter must not be included more than once (RFC 6749 §3.2).", name)
		}
	}
	s := h.settings(ctx)
	now := s.now()

	// identified: fosite validated the client credentials the request
	// carries. authenticated: and the client is confidential, so that a
	// bare client_id of a public client proves nothing.
	identified := h.clientAuthenticated(ctx, request)
	client := request.GetClient()
	authenticated := identified && !client.IsPublic()
	if identified && !client.GetGrantTypes().Has(GrantType) {
		return fosite.ErrUnauthorizedClient.WithHintf("The OAuth 2.0 client is not allowed to use the grant type %q.", GrantType)
	}

	raw := form.Get("assertion")
	if raw == "" {
		return fosite.ErrInvalidRequest.WithHintf("The \"assertion\" parameter is required with grant_type %q.", GrantType)
	}
	a, tk, err := h.validate(ctx, raw, s, now)
	if d := decisionFrom(ctx); d != nil && a != nil {
		d.Issuer, d.Subject, d.KeyID = a.claims.Issuer, a.claims.Subject, a.kid
		if tk.Trust != nil {
			d.TrustID = tk.Trust.ID
		}
	}
	if err != nil {
		return err
	}
	trust := tk.Trust
	if s.Limiter != nil {
		// After the signature verified: only the issuer itself spends its
		// allowance. Before the jti is claimed: a refused assertion is not
		// used up.
		if ok, retry := s.Limiter.Allow(ctx, LimitIssuer, a.claims.Issuer); !ok {
			return RateLimited(LimitIssuer, retry)
		}
	}

	clientID := ""
	if authenticated {
		clientID = client.GetID()
	}
	if err := checkClients(trust, clientID); err != nil {
		return err
	}

	_, scopeSent := form["scope"]
	scopes, err := h.grantedScopes(ctx, a, trust, request.GetRequestedScopes(), scopeSent)
	if err != nil {
		return err
	}
	strategy := h.Config.GetScopeStrategy(ctx)
	for _, scope := range scopes {
		if identified && !strategy(client.GetScopes(), scope) {
			return fosite.ErrInvalidScope.WithHintf("The OAuth 2.0 client is not allowed to request the scope %q.", truncate(scope))
		}
	}
	if audience := request.GetRequestedAudience(); len(audience) > 0 {
		if !identified {
			return fosite.ErrInvalidRequest.WithHint("Requesting an audience requires client authentication.")
		}
		if err := h.Config.GetAudienceStrategy(ctx)(client.GetAudience(), audience); err != nil {
			return err
		}
	}

	if a.claims.ID != "" {
		// Remember the jti while the assertion can pass the "exp" check,
		// and at least replayMargin from the moment of the claim: a copy
		// that passed that check just before it ended, and reached the
		// store late, must still find the first claim there.
		until := a.claims.Expiry.Add(s.clockSkew())
		if floor := s.now().Add(replayMargin); until.Before(floor) {
			until = floor
		}
		fresh, err := h.Replay.ClaimJTI(ctx, a.claims.Issuer, a.claims.ID, until)
		if err != nil {
			return storeError(err)
		}
		if !fresh {
			return fosite.ErrInvalidGrant.WithHint("The assertion has already been used: its \"jti\" was redeemed before.").WithWrap(ErrReplayed)
		}
	}

	for _, scope := range scopes {
		request.GrantScope(scope)
	}
	for _, aud := range request.GetRequestedAudience() {
		request.GrantAudience(aud)
	}
	if !authenticated {
		// No client authenticated: the token is attributed to the
		// assertion's issuer, which is how introspection reports its
		// client_id and which client may revoke it.
		if ar, ok := request.(*fosite.AccessRequest); ok {
			ar.Client = newIssuerClient(a.claims.Issuer)
		}
	}

	session, ok := request.GetSession().(interface {
		fosite.Session
		SetSubject(string)
	})
	if !ok {
		return fosite.ErrServerError.WithDebugf("The session type %T has no SetSubject method.", request.GetSession())
	}
	session.SetSubject(a.claims.Subject)
	lifespan := fosite.GetEffectiveLifespan(request.GetClient(), fosite.GrantTypeJWTBearer, fosite.AccessToken, h.Config.GetAccessTokenLifespan(ctx))
	if trust.AccessTokenLifetime > 0 {
		lifespan = time.Duration(trust.AccessTokenLifetime)
	}
	if !s.NoTokenLifetimeCap {
		// RFC 7521 §4.1: the token should not significantly outlive the
		// assertion. An assertion accepted within the clock skew after its
		// "exp" still gets a one-second token rather than a negative one.
		if remaining := a.claims.Expiry.Sub(now); remaining < lifespan {
			lifespan = max(remaining, time.Second)
		}
	}
	if !trust.ExpiresAt.IsZero() {
		// Nothing obtained through a relationship outlives it.
		if remaining := trust.ExpiresAt.Sub(now); remaining < lifespan {
			lifespan = max(remaining, time.Second)
		}
	}
	session.SetExpiresAt(fosite.AccessToken, ceilSecond(now.UTC().Add(lifespan)))
	if h.issuesRefreshToken(ctx, request, s, authenticated) {
		refresh := fosite.GetEffectiveLifespan(request.GetClient(), fosite.GrantTypeJWTBearer, fosite.RefreshToken, h.Config.GetRefreshTokenLifespan(ctx))
		if refresh > 0 {
			exp := now.UTC().Add(refresh)
			if !trust.ExpiresAt.IsZero() && trust.ExpiresAt.Before(exp) {
				exp = trust.ExpiresAt
			}
			session.SetExpiresAt(fosite.RefreshToken, ceilSecond(exp))
		}
	}
	return nil
}

// validate runs every check that depends on the assertion alone: it
// parses it, finds the trusted key that signed it and applies the claim
// rules of RFC 7523 §3 and of the relationship. The jti is not claimed.
func (h *Handler) validate(ctx context.Context, raw string, s *Settings, now time.Time) (*assertion, store.TrustedKey, error) {
	a, err := parseAssertion(raw, s.maxSize())
	if err != nil {
		return nil, store.TrustedKey{}, err
	}
	tk, err := h.verify(ctx, a, s, now)
	if err != nil {
		return a, store.TrustedKey{}, err
	}
	if err := h.checkClaims(ctx, a, tk.Trust, s, now); err != nil {
		return a, tk, err
	}
	return a, tk, nil
}

// grantedScopes decides the scopes an assertion obtains: those requested
// (or, when no scope parameter was sent, those of its signed "scope"
// claim), within the claim and within the relationship's ceiling.
func (h *Handler) grantedScopes(ctx context.Context, a *assertion, trust *store.Trust, requested []string, scopeSent bool) ([]string, error) {
	scopes := requested
	strategy := h.Config.GetScopeStrategy(ctx)
	if a.claims.Scope != nil {
		// The issuer signed a "scope" claim (as golang.org/x/oauth2/jwt and
		// Google-style clients send it): it is what is asked for when no
		// scope parameter is sent, and a limit the parameter cannot exceed.
		claimed := fosite.RemoveEmpty(strings.Split(*a.claims.Scope, " "))
		if !scopeSent {
			scopes = claimed
		}
		for _, scope := range scopes {
			if !strategy(claimed, scope) {
				return nil, fosite.ErrInvalidScope.WithHintf("The scope %q is not in the assertion's \"scope\" claim.", truncate(scope))
			}
		}
	}
	for _, scope := range scopes {
		if !strategy(trust.Scopes, scope) {
			return nil, fosite.ErrInvalidScope.WithHintf("The trust relationship for this issuer and subject does not allow the scope %q.", truncate(scope))
		}
	}
	return scopes, nil
}

// verify finds the trusted key that signed the assertion. Keys come only
// from the store: "jwk", "jku", "x5u" and "x5c" headers are never used
// (RFC 8725 §3.10). The header's "alg" must be on the relationship's
// allow-list and, when the key names an "alg", equal it (RFC 8725 §3.1).
//
// Until a signature verifies, the caller has proven nothing, so every
// failure here gets the same hint: which issuers, subjects, key IDs and
// relationships exist is not revealed. The precise reason goes to the
// error's debug field, which the server logs and does not send.
func (h *Handler) verify(ctx context.Context, a *assertion, s *Settings, now time.Time) (store.TrustedKey, error) {
	if !contains(knownAlgorithms, a.alg) {
		return store.TrustedKey{}, fosite.ErrInvalidGrant.WithHintf("The assertion's signing algorithm %q is not accepted.", truncate(a.alg))
	}
	keys, err := h.Keys.TrustedKeys(ctx, a.claims.Issuer, a.claims.Subject, a.kid)
	if err != nil {
		return store.TrustedKey{}, storeError(err)
	}
	var expired, algRefused bool
	var remoteErr error
	for _, tk := range keys {
		if tk.Trust.Expired(now) {
			expired = true
			continue
		}
		if !tk.Trust.AllowsSubject(a.claims.Subject) || tk.Trust.Issuer != a.claims.Issuer {
			// The store answered for another issuer or subject: never
			// trust that, whatever the backend.
			continue
		}
		if !algAllowed(tk.Trust, s, a.alg) {
			algRefused = true
			continue
		}
		if tk.Key != nil {
			switch verified, fits := verifyWith(a, tk.Key); {
			case verified:
				return tk, nil
			case !fits:
				algRefused = true
			}
			continue
		}
		source := h.RemoteKeys
		if source == nil {
			source = s.RemoteKeys
		}
		if source == nil {
			remoteErr = errors.New("the relationship's keys are remote and no remote key source is configured")
			continue
		}
		remote, err := source.RemoteKeys(ctx, tk.Trust, a.kid)
		if err != nil {
			remoteErr = err
			continue
		}
		for i := range remote {
			switch verified, fits := verifyWith(a, &remote[i]); {
			case verified:
				tk.Key = &remote[i]
				return tk, nil
			case !fits:
				algRefused = true
			}
		}
	}
	var reason string
	switch {
	case len(keys) == 0 && a.kid != "":
		reason = fmt.Sprintf("no key with kid %q is trusted for issuer %q and subject %q", truncate(a.kid), truncate(a.claims.Issuer), truncate(a.claims.Subject))
	case len(keys) == 0:
		reason = fmt.Sprintf("no key is trusted for issuer %q and subject %q", truncate(a.claims.Issuer), truncate(a.claims.Subject))
	case remoteErr != nil:
		// The issuer's key set is unavailable. The caller gets the same
		// hint as everyone else (which mentions this case): a distinct one
		// would tell a stranger which issuers and subjects are trusted.
		// The operator sees the cause in the log, in the admin API's dry
		// run and in its health report.
		reason = "the issuer's published keys are unavailable: " + remoteErr.Error()
	case expired && !algRefused:
		reason = "the trust relationship has expired"
	case algRefused:
		reason = fmt.Sprintf("algorithm %q is not allowed for the trusted keys", truncate(a.alg))
	default:
		reason = "the signature does not verify with any trusted key"
	}
	return store.TrustedKey{}, fosite.ErrInvalidGrant.WithHint(untrustedHint).WithDebug(reason)
}

// algAllowed reports whether alg may sign assertions of the relationship
// t: it must be on the server's allow-list and, when t names algorithms,
// on t's too, so that a relationship narrows the server's list and never
// widens it. The one exception is HMAC, which the server's list never
// holds and only a relationship with shared keys may name.
func algAllowed(t *store.Trust, s *Settings, alg string) bool {
	if len(t.Algorithms) == 0 {
		return contains(s.algorithms(), alg)
	}
	if !contains(t.Algorithms, alg) {
		return false
	}
	return strings.HasPrefix(alg, "HS") || contains(s.algorithms(), alg)
}

// verifyWith checks a's signature with k, if the assertion's "alg" fits k
// (its own "alg" when it names one, and its key type). The signature is
// checked over the signing input as sent, with the standard library
// (verifySignature); the key's own "alg", "use" and certificates are not
// otherwise consulted, as with go-jose's Verify.
func verifyWith(a *assertion, k *jose.JSONWebKey) (verified, fits bool) {
	if (k.Algorithm != "" && k.Algorithm != a.alg) || !algFitsKey(a.alg, k.Key) {
		return false, false
	}
	return verifySignature(a.alg, k.Key, a.signingInput, a.signature), true
}

// untrustedHint is the one hint for every failure to verify the signature.
const untrustedHint = "The assertion is not signed by a key this server trusts for its issuer and subject, or the keys its issuer publishes cannot be fetched right now."

// knownAlgorithms are the JWS algorithms a trust relationship can allow;
// anything else ("none" included) is refused before any lookup.
var knownAlgorithms = []string{
	"RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
	"ES256", "ES384", "ES512", "EdDSA", "HS256", "HS384", "HS512",
}

// checkClaims applies RFC 7523 §3 to the verified claims.
func (h *Handler) checkClaims(ctx context.Context, a *assertion, trust *store.Trust, s *Settings, now time.Time) error {
	c := &a.claims
	if len(c.Audience) == 0 {
		return fosite.ErrInvalidGrant.WithHint("The assertion must contain an \"aud\" (audience) claim.")
	}
	if !h.audienceAccepted(ctx, c.Audience, s) {
		return fosite.ErrInvalidGrant.WithHintf("The assertion's \"aud\" claim must contain this server's issuer identifier or token endpoint URL: %s.", strings.Join(h.audiences(ctx, s), ", "))
	}
	limit := s.maxLifetime()
	if trust.MaxAssertionLifetime > 0 {
		limit = time.Duration(trust.MaxAssertionLifetime)
	}
	if err := grantAssertion.checkTimes(c, now, s.clockSkew(), limit); err != nil {
		return err
	}
	requireJTI := !s.JTIOptional
	if trust.RequireJTI != nil {
		requireJTI = *trust.RequireJTI
	}
	if requireJTI && c.ID == "" {
		return fosite.ErrInvalidGrant.WithHint("The assertion must contain a \"jti\" (JWT ID) claim: this server redeems every assertion once.")
	}
	if len(c.ID) > maxIDLength {
		return fosite.ErrInvalidGrant.WithHintf("The assertion's \"jti\" is longer than %d bytes.", maxIDLength)
	}
	if len(trust.RequiredClaims) == 0 {
		return nil
	}
	for _, name := range slices.Sorted(maps.Keys(trust.RequiredClaims)) {
		v, ok := c.claim(name)
		if !ok {
			return fosite.ErrInvalidGrant.WithHintf("The assertion must contain the %q claim that the trust relationship requires.", truncate(name))
		}
		if !claimEquals(v, trust.RequiredClaims[name]) {
			return fosite.ErrInvalidGrant.WithHintf("The assertion's %q claim does not have the value the trust relationship requires.", truncate(name))
		}
	}
	return nil
}

// audienceAccepted reports whether aud names this server: a configured
// audience, a token URL or the issuer identifier, compared as plain strings
// (RFC 7521 §5.2).
func (h *Handler) audienceAccepted(ctx context.Context, aud []string, s *Settings) bool {
	for _, v := range aud {
		if contains(s.Audiences, v) || contains(h.Config.GetTokenURLs(ctx), v) {
			return true
		}
		if iss := h.Config.GetAccessTokenIssuer(ctx); iss != "" && iss == v {
			return true
		}
	}
	return false
}

// audiences lists the accepted audience values, for the error hint.
func (h *Handler) audiences(ctx context.Context, s *Settings) []string {
	var out []string
	add := func(v string) {
		if v != "" && !contains(out, v) {
			out = append(out, v)
		}
	}
	add(h.Config.GetAccessTokenIssuer(ctx))
	for _, v := range h.Config.GetTokenURLs(ctx) {
		add(v)
	}
	for _, v := range s.Audiences {
		add(v)
	}
	return out
}

// ceilSecond rounds t up to a whole second, so that a token's expires_in
// is never rounded down to nothing.
func ceilSecond(t time.Time) time.Time {
	if r := t.Truncate(time.Second); !r.Equal(t) {
		return r.Add(time.Second)
	}
	return t
}

// issuerClient stands in for the client when none authenticated: the
// token is attributed to the assertion's issuer. It is one allocation,
// its grant types included, on every such token request.
type issuerClient struct {
	fosite.DefaultClient
	grantTypes [1]string
}

func newIssuerClient(issuer string) *issuerClient {
	c := &issuerClient{DefaultClient: fosite.DefaultClient{ID: issuer}, grantTypes: [1]string{GrantType}}
	c.GrantTypes = c.grantTypes[:]
	return c
}

// issuesRefreshToken reports whether this request gets a refresh token: only
// when configured, for an authenticated client allowed the refresh_token
// grant, since refreshing requires authenticating that client again.
func (h *Handler) issuesRefreshToken(_ context.Context, request fosite.AccessRequester, s *Settings, authenticated bool) bool {
	return s.IssueRefreshTokens && h.RefreshTokenStrategy != nil && h.RefreshTokenStorage != nil &&
		authenticated && request.GetClient().GetGrantTypes().Has("refresh_token")
}

// PopulateTokenEndpointResponse issues the access token (and, when
// configured, a refresh token) for a request that HandleTokenEndpointRequest
// accepted.
func (h *Handler) PopulateTokenEndpointResponse(ctx context.Context, request fosite.AccessRequester, response fosite.AccessResponder) error {
	if !h.CanHandleTokenEndpointRequest(ctx, request) {
		return fosite.ErrUnknownRequest
	}
	lifespan := h.Config.GetAccessTokenLifespan(ctx)
	if exp := request.GetSession().GetExpiresAt(fosite.AccessToken); !exp.IsZero() {
		lifespan = time.Until(exp)
	}
	signature, err := h.IssueAccessToken(ctx, lifespan, request, response)
	if err != nil {
		return storeError(err)
	}
	// The HTTP request is gone from ctx by now; an authenticated client is
	// one that is neither fosite's empty default nor the issuer stand-in.
	_, standIn := request.GetClient().(*issuerClient)
	authenticated := !standIn && request.GetClient().GetID() != "" && !request.GetClient().IsPublic()
	if !h.issuesRefreshToken(ctx, request, h.settings(ctx), authenticated) {
		return nil
	}
	token, refreshSignature, err := h.RefreshTokenStrategy.GenerateRefreshToken(ctx, request)
	if err != nil {
		return fosite.ErrServerError.WithWrap(err).WithDebug(err.Error())
	}
	if err := h.RefreshTokenStorage.CreateRefreshTokenSession(ctx, refreshSignature, signature, request.Sanitize([]string{})); err != nil {
		return storeError(err)
	}
	response.SetExtra("refresh_token", token)
	return nil
}

// storeError turns a storage failure into a fosite error that issues
// nothing: 503 temporarily_unavailable for an outage expected to pass,
// 500 server_error otherwise. The cause goes to the debug field only.
func storeError(err error) error {
	var rfc *fosite.RFC6749Error
	if errors.As(err, &rfc) {
		return err
	}
	if errors.Is(err, store.ErrUnavailable) {
		return fosite.ErrTemporarilyUnavailable.WithHint("The token store cannot be reached; try again later.").WithWrap(err).WithDebug(err.Error())
	}
	return fosite.ErrServerError.WithWrap(err).WithDebug(err.Error())
}

// truncate bounds caller-supplied strings echoed in hints.
func truncate(s string) string {
	const n = 128
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
