package server

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/mux"
	"github.com/ory/fosite"

	"github.com/jwtbearer/jwtbearer/handler"
	"github.com/jwtbearer/jwtbearer/store"
)

// routes builds the router. Every answer, errors included, is JSON.
func (s *Server) routes() http.Handler {
	// No path cleaning: mux would answer //healthz with a bodiless 301;
	// such paths are 404s, in JSON like every answer.
	r := mux.NewRouter().SkipClean(true)
	// POST /token is served before the router (below); the route makes
	// the router answer other methods with 405.
	r.HandleFunc("/token", func(w http.ResponseWriter, req *http.Request) { s.token(req.Context(), w, req) }).Methods(http.MethodPost)
	r.Handle("/introspect", s.metrics.instrument("introspect", http.HandlerFunc(s.introspect))).Methods(http.MethodPost)
	r.Handle("/revoke", s.metrics.instrument("revoke", http.HandlerFunc(s.revoke))).Methods(http.MethodPost)
	r.HandleFunc("/healthz", s.healthz).Methods(http.MethodGet, http.MethodHead)
	r.HandleFunc(metadataPath, s.metadata).Methods(http.MethodGet, http.MethodHead)
	if p := issuerPath(s.cfg.Issuer); p != "" {
		// RFC 8414 §3.1: an issuer with a path component has its
		// metadata at the well-known prefix followed by that path.
		r.HandleFunc(metadataPath+p, s.metadata).Methods(http.MethodGet, http.MethodHead)
	}
	if s.jwks != nil {
		r.HandleFunc("/jwks.json", s.jwks.ServeJWKS).Methods(http.MethodGet, http.MethodHead)
	}
	if l := s.cfg.Metrics.Listener; l == MetricsPublic || l == "" {
		r.Handle("/metrics", s.metrics.Handler()).Methods(http.MethodGet, http.MethodHead)
	}
	r.NotFoundHandler = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		writeError(w, http.StatusNotFound, "not_found", "There is nothing at this path.")
	})
	r.MethodNotAllowedHandler = http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		allow := "POST"
		if !contains([]string{"/token", "/introspect", "/revoke"}, req.URL.Path) {
			allow = "GET, HEAD"
		}
		w.Header().Set("Allow", allow)
		writeError(w, http.StatusMethodNotAllowed, "invalid_request", "This endpoint accepts "+allow+" only.")
	})
	// The token endpoint, the one path under load, skips the router: mux
	// copies the request twice (route and variables) to match a path that
	// is a constant. Every other request, a /token with another method
	// included, goes through mux as before.
	return s.recoverer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		ctx := withRequestIDs(req.Context(), newRequestIDs(w, req))
		if req.Method == http.MethodPost && req.URL.Path == "/token" {
			s.token(ctx, w, req)
			return
		}
		r.ServeHTTP(w, req.WithContext(ctx))
	}))
}

// recoverer turns a panic into a 500 JSON error and a log line, so that no
// stack trace reaches a caller.
func (s *Server) recoverer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.logger.Error("panic serving request", "path", r.URL.Path, "panic", v)
				writeError(w, http.StatusInternalServerError, "server_error", "")
			}
		}()
		next.ServeHTTP(w, r)
	})
}

// readForm bounds and parses an application/x-www-form-urlencoded body and
// refuses repeated parameters (RFC 6749 §3.2: "Request and response
// parameters MUST NOT be included more than once").
//
// Parameters in the URL's query are refused too: fosite reads only the body,
// so a client_secret there would be silently ignored, and credentials must
// not travel in URLs (RFC 6749 §2.3.1). So are several Authorization headers,
// of which fosite would read only the first.
func (s *Server) readForm(w http.ResponseWriter, r *http.Request) (int, *fosite.RFC6749Error) {
	r.Body = http.MaxBytesReader(w, r.Body, s.cfg.MaxRequestBytes)
	if r.URL.RawQuery != "" {
		return http.StatusBadRequest, fosite.ErrInvalidRequest.WithHint("Parameters must be sent in the request body, not in the URL.")
	}
	if len(r.Header.Values("Authorization")) > 1 {
		return http.StatusBadRequest, fosite.ErrInvalidRequest.WithHint("The request carries more than one Authorization header.")
	}
	if ct := r.Header.Get("Content-Type"); ct != formType { // the usual case needs no parsing
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || mt != formType {
			return http.StatusBadRequest, fosite.ErrInvalidRequest.WithHint("The request body must be application/x-www-form-urlencoded.")
		}
	}
	body, err := readBody(r.Body)
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return http.StatusRequestEntityTooLarge, fosite.ErrInvalidRequest.WithHintf("The request body is larger than the %d bytes this server accepts.", s.cfg.MaxRequestBytes)
		}
		return http.StatusBadRequest, fosite.ErrInvalidRequest.WithHint("The request body could not be read.")
	}
	// What r.ParseForm does for this content type, without its growing
	// reads and its copy of every value into r.Form: there is no query to
	// merge (refused above), so Form and PostForm are the same values.
	form, err := url.ParseQuery(body)
	if err != nil {
		return http.StatusBadRequest, fosite.ErrInvalidRequest.WithHint("The request body could not be parsed as a form.")
	}
	r.PostForm, r.Form = form, form
	for name, values := range r.PostForm {
		if len(values) > 1 {
			return http.StatusBadRequest, fosite.ErrInvalidRequest.WithHintf("The %q parameter must not be included more than once.", truncate(name))
		}
	}
	return 0, nil
}

const formType = "application/x-www-form-urlencoded"

// bodyBuffers holds the buffers readBody reads into.
var bodyBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

// readBody reads a (bounded) request body into one string of its exact
// size: io.ReadAll's doubling reads would allocate about twice as much on
// every request.
func readBody(body io.Reader) (string, error) {
	bp := bodyBuffers.Get().(*[]byte)
	b := (*bp)[:0]
	var err error
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		var n int
		n, err = body.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err != nil {
			break
		}
	}
	s := string(b)
	if cap(b) <= 64<<10 {
		*bp = b
		bodyBuffers.Put(bp)
	}
	if err == io.EOF {
		return s, nil
	}
	return "", err
}

// token serves the token endpoint (RFC 6749 §3.2). ctx is the request's
// context with its ID. Every request that gets as far as a grant type
// ends with one audit event (see tokenAudit) and is counted in the
// metrics.
func (s *Server) token(ctx context.Context, w http.ResponseWriter, r *http.Request) {
	audit := &tokenAudit{start: time.Now()}
	if status, err := s.readForm(w, r); err != nil {
		s.tokenRefused(ctx, w, audit, status, err)
		return
	}
	audit.grantType = r.PostForm.Get("grant_type")
	switch gt := audit.grantType; {
	case gt == "":
		s.tokenRefused(ctx, w, audit, http.StatusBadRequest, fosite.ErrInvalidRequest.WithHint("The \"grant_type\" parameter is required."))
		return
	case !contains(knownGrantTypes, gt):
		s.tokenRefused(ctx, w, audit, http.StatusBadRequest, fosite.ErrUnsupportedGrantType.WithHintf("The grant type %q is not supported; this server supports %s.", truncate(gt), strings.Join(knownGrantTypes, ", ")))
		return
	}
	ctx = handler.WithDecision(ctx, &audit.Decision)
	ar, err := s.provider.NewAccessRequest(ctx, r, &fosite.DefaultSession{})
	if err != nil {
		s.accessError(ctx, w, audit, ar, err)
		return
	}
	if ar.GetGrantTypes().ExactOne("client_credentials") {
		// fosite's client_credentials handler checks the requested scopes
		// and audience against the client but leaves granting them to the
		// application.
		for _, scope := range ar.GetRequestedScopes() {
			ar.GrantScope(scope)
		}
		for _, aud := range ar.GetRequestedAudience() {
			ar.GrantAudience(aud)
		}
	}
	resp, err := s.provider.NewAccessResponse(ctx, ar)
	if err != nil {
		s.accessError(ctx, w, audit, ar, err)
		return
	}
	if !writeTokenResponse(w, resp) {
		s.provider.WriteAccessResponse(ctx, w, ar, resp)
	}
	s.auditToken(ctx, audit, ar, resp, nil)
	s.metrics.tokenRequest(audit.grantType, "ok", time.Since(audit.start))
}

// tokenRefused answers a token request refused before fosite saw it.
func (s *Server) tokenRefused(ctx context.Context, w http.ResponseWriter, audit *tokenAudit, status int, err *fosite.RFC6749Error) {
	writeRFCError(w, status, err)
	s.auditToken(ctx, audit, nil, nil, err)
	s.metrics.tokenRequest(audit.grantType, err.ErrorField, time.Since(audit.start))
}

// tokenBody is a token response with the members this server issues, in
// the order json.Marshal gives a map's keys, so that it encodes to the
// same bytes as fosite's WriteAccessResponse without a map's reflection
// and sorting.
type tokenBody struct {
	AccessToken  string `json:"access_token"`
	ExpiresIn    int64  `json:"expires_in"`
	RefreshToken string `json:"refresh_token,omitempty"`
	Scope        string `json:"scope"`
	TokenType    string `json:"token_type"`
}

var (
	headerNoStore = []string{"no-store"}
	headerNoCache = []string{"no-cache"}
	headerJSON    = []string{"application/json;charset=UTF-8"}
)

// writeTokenResponse writes resp as fosite's WriteAccessResponse would
// (json.Marshal of resp.ToMap()), and reports whether it could: a response
// with any member but access_token, expires_in, refresh_token, scope and
// token_type, or of another type, is left to fosite. It reads the members
// where fosite keeps them rather than through ToMap, which writes the
// token into the response's map on every token granted.
func writeTokenResponse(w http.ResponseWriter, resp fosite.AccessResponder) bool {
	r, ok := resp.(*fosite.AccessResponse)
	if !ok {
		return false
	}
	b := tokenBody{AccessToken: r.AccessToken, TokenType: r.TokenType}
	var hasExpiry, hasScope bool
	for k, v := range r.Extra {
		switch k {
		case "access_token":
			// ToMap copies the field here; called before, it left this.
			s, isString := v.(string)
			ok = isString && s == r.AccessToken
		case "token_type":
			s, isString := v.(string)
			ok = isString && s == r.TokenType
		case "expires_in":
			b.ExpiresIn, ok = v.(int64)
			hasExpiry = true
		case "scope":
			b.Scope, ok = v.(string)
			hasScope = true
		case "refresh_token":
			b.RefreshToken, ok = v.(string)
			ok = ok && b.RefreshToken != ""
		default:
			ok = false
		}
		if !ok {
			return false
		}
	}
	if !hasExpiry || !hasScope {
		return false
	}
	js, err := json.Marshal(&b)
	if err != nil {
		return false
	}
	// Assigned rather than Set: the values are shared, never modified
	// (net/http copies them when the header is written), and Set would
	// allocate a slice for each on every response.
	h := w.Header()
	h["Cache-Control"] = headerNoStore
	h["Pragma"] = headerNoCache
	h["Content-Type"] = headerJSON
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(js)
	return true
}

// accessError writes a token endpoint error. invalid_client gets 401 with
// a WWW-Authenticate challenge (RFC 6749 §5.2); server errors are logged
// with their cause, which never reaches the caller.
func (s *Server) accessError(ctx context.Context, w http.ResponseWriter, audit *tokenAudit, ar fosite.AccessRequester, err error) {
	if errors.Is(err, store.ErrUnavailable) && !errors.Is(err, fosite.ErrTemporarilyUnavailable) {
		// fosite's own grants pass storage errors through as they are.
		err = unavailable(err)
	}
	rfc := fosite.ErrorToRFC6749Error(err)
	if rfc.CodeField == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Basic realm="token", charset="UTF-8"`)
	}
	if rfc.CodeField == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "1")
		s.metrics.storeError("token")
	}
	if rl, ok := handler.AsRateLimit(err); ok && rfc.CodeField == http.StatusTooManyRequests {
		w.Header().Set("Retry-After", strconv.Itoa(rl.RetryAfterSeconds()))
	}
	if rfc.ErrorField == fosite.ErrInvalidGrant.ErrorField && errors.Is(err, handler.ErrReplayed) {
		s.metrics.replayRejected("assertion")
	}
	s.provider.WriteAccessError(ctx, w, ar, err)
	s.auditToken(ctx, audit, ar, nil, err)
	s.metrics.tokenRequest(audit.grantType, rfc.ErrorField, time.Since(audit.start))
}

// introspect serves RFC 7662 token introspection for authenticated clients.
// fosite's own introspection request authenticates clients with HTTP Basic
// only, bypassing the client authentication strategy; this one
// authenticates the caller with the server's strategy (HTTP Basic or a
// client assertion, with the per-client rate limit), then asks fosite
// about the token.
func (s *Server) introspect(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if status, err := s.readForm(w, r); err != nil {
		writeRFCError(w, status, err)
		return
	}
	// fosite would also take any access token as a Bearer credential, in
	// the header or an access_token parameter, which would let every
	// token holder read every other token: both are refused. So is a
	// secret in the body: RFC 7662 §2.1 names HTTP Basic, and metadata
	// advertises Basic and private_key_jwt only.
	audit := endpointAudit{event: "introspection", outcome: "refused"}
	defer func() { s.auditEndpoint(ctx, &audit) }()
	challenge := func() { w.Header().Set("WWW-Authenticate", `Basic realm="introspect", charset="UTF-8"`) }
	if _, ok := r.PostForm["access_token"]; ok {
		writeRFCError(w, http.StatusBadRequest, fosite.ErrInvalidRequest.WithHint("Introspection takes client credentials, not an access_token parameter."))
		return
	}
	auth := r.Header.Get("Authorization")
	basic := len(auth) >= 6 && strings.EqualFold(auth[:6], "basic ")
	_, secretInBody := r.PostForm["client_secret"]
	if (!basic && !handler.HasClientAssertion(r.PostForm)) || secretInBody {
		challenge()
		writeRFCError(w, http.StatusUnauthorized, fosite.ErrInvalidClient.WithHint("Introspection requires client authentication with HTTP Basic or a client assertion (private_key_jwt)."))
		return
	}
	client, err := s.fosite.GetClientAuthenticationStrategy(ctx)(ctx, r, r.PostForm)
	if err != nil {
		audit.err = err
		if s.wroteNotTheClientsFault(w, r, "introspection", err) {
			return
		}
		challenge()
		hint := "The client credentials are invalid."
		if handler.HasClientAssertion(r.PostForm) {
			hint = fosite.ErrorToRFC6749Error(err).HintField
		}
		writeRFCError(w, http.StatusUnauthorized, fosite.ErrInvalidClient.WithHint(hint))
		return
	}
	audit.clientID = client.GetID()
	form := r.PostForm
	scopes := fosite.RemoveEmpty(strings.Split(form.Get("scope"), " "))
	use, ar, err := s.provider.IntrospectToken(ctx, form.Get("token"), fosite.TokenUse(form.Get("token_type_hint")), &fosite.DefaultSession{}, scopes...)
	if errors.Is(err, store.ErrUnavailable) {
		audit.err = err
		s.writeUnavailable(w, r, err)
		return
	}
	if err != nil {
		// Unknown, expired, revoked or malformed: RFC 7662 §2.2 says only
		// that it is not active.
		audit.outcome = "inactive"
		s.provider.WriteIntrospectionResponse(ctx, w, &fosite.IntrospectionResponse{Active: false})
		return
	}
	audit.outcome = "active"
	resp := &fosite.IntrospectionResponse{Active: true, AccessRequester: ar, TokenUse: use}
	if use == fosite.AccessToken {
		resp.AccessTokenType = fosite.BearerAccessToken
	}
	s.provider.WriteIntrospectionResponse(ctx, w, resp)
}

// revoke serves RFC 7009 token revocation.
func (s *Server) revoke(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if status, err := s.readForm(w, r); err != nil {
		writeRFCError(w, status, err)
		return
	}
	err := s.provider.NewRevocationRequest(ctx, r)
	audit := endpointAudit{event: "revocation", outcome: "revoked", err: err}
	if err != nil {
		audit.outcome = "refused"
	}
	defer func() { s.auditEndpoint(ctx, &audit) }()
	// fosite's writer answers 200 to every error but invalid_request and
	// invalid_client: a revocation that did not happen must not look done.
	if s.wroteNotTheClientsFault(w, r, "revocation", err) {
		return
	}
	if errors.Is(err, fosite.ErrInvalidClient) {
		w.Header().Set("WWW-Authenticate", `Basic realm="revoke", charset="UTF-8"`)
	}
	if errors.Is(err, fosite.ErrUnauthorizedClient) {
		// RFC 7009 §2.1: a token issued to another client is not revoked
		// and the request is refused. fosite would answer 200.
		writeRFCError(w, http.StatusBadRequest, fosite.ErrUnauthorizedClient.WithHint("The token was not issued to this client."))
		return
	}
	s.provider.WriteRevocationResponse(ctx, w, err)
}

// pinger is a store that can tell whether it is reachable.
type pinger interface {
	Ping(ctx context.Context) error
}

// healthz reports readiness: 200 when the store answers (always, for the
// memory store), 503 when it does not, so that a load balancer sends no
// traffic to an instance that can issue no token. "degraded" says that some
// issuer's published key set is stale or failing, without affecting the
// status (one issuer's outage is no reason to take every instance out of
// service) and without saying which: this endpoint is public, and the
// list of trusted issuers is not. The details are on the admin listener,
// at GET /admin/remote-keys.
func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	body := healthBody{Status: "ok"}
	if s.remote != nil {
		for _, st := range s.remote.Status() {
			if st.State != "ok" {
				body.Degraded = true
			}
		}
	}
	status := http.StatusOK
	if p, ok := s.store.(pinger); ok {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if err := p.Ping(ctx); err != nil {
			s.logger.WarnContext(r.Context(), "store unreachable", "error", err)
			body.Status, body.Store, status = "unavailable", "unreachable", http.StatusServiceUnavailable
		}
	}
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(body)
}

// healthBody is /healthz's answer.
type healthBody struct {
	Status string `json:"status"`
	Store  string `json:"store,omitempty"`
	// Degraded is set when some remote key set is stale or failing.
	Degraded bool `json:"degraded,omitempty"`
}

// unavailable is the RFC 6749 answer to a store outage: 503
// temporarily_unavailable, with the cause kept for the log only.
func unavailable(err error) error {
	return fosite.ErrTemporarilyUnavailable.WithHint("The token store cannot be reached; try again later.").WithWrap(err).WithDebug(err.Error())
}

// writeUnavailable logs a store outage and answers 503.
func (s *Server) writeUnavailable(w http.ResponseWriter, r *http.Request, err error) {
	s.logger.ErrorContext(r.Context(), "store unavailable", "path", r.URL.Path, "cause", err.Error())
	w.Header().Set("Retry-After", "1")
	writeRFCError(w, http.StatusServiceUnavailable, fosite.ErrTemporarilyUnavailable.WithHint("The token store cannot be reached; try again later."))
}

// writeRFCError writes an RFC 6749 §5.2 error body with status.
// wroteNotTheClientsFault answers the errors of an introspection or
// revocation request that are not about the request itself: a rate limit
// (429), an unavailable store (503) or a server error (500, its cause
// logged). It reports whether it wrote an answer.
func (s *Server) wroteNotTheClientsFault(w http.ResponseWriter, r *http.Request, what string, err error) bool {
	if rl, ok := handler.AsRateLimit(err); ok {
		writeRateLimited(w, rl)
		return true
	}
	if errors.Is(err, store.ErrUnavailable) || errors.Is(err, fosite.ErrTemporarilyUnavailable) {
		s.writeUnavailable(w, r, err)
		return true
	}
	if errors.Is(err, fosite.ErrServerError) {
		s.logger.ErrorContext(r.Context(), what+" failed", "cause", fosite.ErrorToRFC6749Error(err).DebugField)
		writeRFCError(w, http.StatusInternalServerError, fosite.ErrServerError)
		return true
	}
	return false
}

// writeRateLimited answers 429 with Retry-After and an RFC 6749 body.
func writeRateLimited(w http.ResponseWriter, rl *handler.RateLimitError) {
	w.Header().Set("Retry-After", strconv.Itoa(rl.RetryAfterSeconds()))
	writeRFCError(w, http.StatusTooManyRequests, handler.RateLimited(rl.Kind, rl.RetryAfter))
}

func writeRFCError(w http.ResponseWriter, status int, err *fosite.RFC6749Error) {
	writeError(w, status, err.ErrorField, err.GetDescription())
}

func writeError(w http.ResponseWriter, status int, code, description string) {
	w.Header().Set("Content-Type", "application/json;charset=UTF-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
	w.WriteHeader(status)
	body := map[string]string{"error": code}
	if description != "" {
		body["error_description"] = description
	}
	_ = json.NewEncoder(w).Encode(body)
}

// truncate bounds caller-supplied strings echoed in errors.
func truncate(s string) string {
	if len(s) <= 64 {
		return s
	}
	return s[:64] + "…"
}
