package server

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v3"
	"github.com/gorilla/mux"
	"github.com/ory/fosite"

	"github.com/jwtbearer/jwtbearer/handler"
	"github.com/jwtbearer/jwtbearer/store"
	"github.com/jwtbearer/jwtbearer/store/jwks"
)

// Admin API limits.
const (
	// adminMaxBody caps an admin request body (413 beyond).
	adminMaxBody = 1 << 20
	// adminDefaultLimit and adminMaxLimit bound a list page.
	adminDefaultLimit = 100
	adminMaxLimit     = 1000
)

// Problem types (RFC 9457 §3.1.1). Problems without a type of their own
// are "about:blank" and their title is the HTTP status text.
const (
	problemInvalidTrust = "urn:jwtbearer:admin:invalid-trust"
	problemKIDConflict  = "urn:jwtbearer:admin:kid-conflict"
	problemIDTaken      = "urn:jwtbearer:admin:id-taken"
	problemConfigOwned  = "urn:jwtbearer:admin:managed-by-config"
)

// AdminHandler returns the trust-management API, or nil when it is off
// (admin.listen is not configured): an embedding program then has nothing
// to mount by mistake. Serve it on a listener of its own (ServeAdmin), never
// next to the public routes.
//
// Routes, all behind "Authorization: Bearer <admin.token>":
//
//	POST   /admin/trust        create (201, Location); an absent id is assigned
//	GET    /admin/trust        list: ?issuer= (exact), ?limit= (1..1000, default 100), ?page_token=
//	GET    /admin/trust/{id}   read
//	PUT    /admin/trust/{id}   replace
//	DELETE /admin/trust/{id}   delete (204)
//	GET    /admin/remote-keys  state of every published key set in use
//	POST   /admin/trust/check  dry run of an assertion: which relationship
//	                           matches and why it would be refused; the jti
//	                           is not consumed
//
// Relationships from the configuration (IDs beginning with
// ConfigTrustPrefix) are read-only here: the file is their source, and a
// reload would undo a change made through the API.
//
// Bodies are JSON with the store.Trust fields; each entry of "keys" is a
// public JWK or {"pem": "..."}. Errors are RFC 9457 (RFC 7807) problem
// details listing every problem found. Changes go to the store, so every
// instance sharing it sees them at once.
func (s *Server) AdminHandler() http.Handler {
	if s.admin == nil {
		return nil
	}
	return s.admin
}

func (s *Server) adminRoutes() http.Handler {
	r := mux.NewRouter().UseEncodedPath().SkipClean(true)
	checker := &handler.Handler{Keys: s.store, Replay: s.store, Config: s.fosite, Settings: s.settings}
	r.HandleFunc("/admin/trust/check", func(w http.ResponseWriter, r *http.Request) { s.adminCheck(w, r, checker) }).Methods(http.MethodPost)
	r.HandleFunc("/admin/remote-keys", s.adminRemoteKeys).Methods(http.MethodGet, http.MethodHead)
	r.HandleFunc("/admin/trust", s.adminCreate).Methods(http.MethodPost)
	r.HandleFunc("/admin/trust", s.adminList).Methods(http.MethodGet, http.MethodHead)
	r.HandleFunc("/admin/trust/{id}", s.adminGet).Methods(http.MethodGet, http.MethodHead)
	r.HandleFunc("/admin/trust/{id}", s.adminPut).Methods(http.MethodPut)
	r.HandleFunc("/admin/trust/{id}", s.adminDelete).Methods(http.MethodDelete)
	if s.cfg.Metrics.Listener == MetricsAdmin {
		r.Handle("/metrics", s.metrics.Handler()).Methods(http.MethodGet, http.MethodHead)
	}
	r.NotFoundHandler = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		writeProblem(w, problem{Status: http.StatusNotFound, Detail: "There is nothing at this path."})
	})
	r.MethodNotAllowedHandler = http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		allow := "GET, HEAD, PUT, DELETE"
		switch req.URL.Path {
		case "/admin/trust":
			allow = "GET, HEAD, POST"
		case "/admin/remote-keys":
			allow = "GET, HEAD"
		case "/admin/trust/check":
			allow = "POST, GET, HEAD, PUT, DELETE" // also a relationship's path
		}
		w.Header().Set("Allow", allow)
		writeProblem(w, problem{Status: http.StatusMethodNotAllowed, Detail: "This resource accepts " + allow + " only."})
	})
	sum := sha256.Sum256([]byte(s.cfg.Admin.Token))
	return s.adminRecoverer(s.metrics.instrument("admin", adminAuth(sum, r)))
}

// adminAuth requires "Authorization: Bearer <token>" on every request,
// unknown paths included, so that an unauthenticated caller learns
// nothing. The hashes are compared, in constant time, so that neither the
// token's content nor its length leaks through timing.
func adminAuth(want [sha256.Size]byte, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth := r.Header.Values("Authorization")
		ok := false
		if len(auth) == 1 && len(auth[0]) > 7 && strings.EqualFold(auth[0][:7], "bearer ") {
			got := sha256.Sum256([]byte(auth[0][7:]))
			ok = subtle.ConstantTimeCompare(got[:], want[:]) == 1
		}
		if !ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="admin"`)
			writeProblem(w, problem{Status: http.StatusUnauthorized})
			return
		}
		next.ServeHTTP(w, r)
	})
}

// adminRecoverer turns a panic into a 500 problem and a log line.
func (s *Server) adminRecoverer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.logger.Error("panic serving admin request", "path", r.URL.Path, "panic", v)
				writeProblem(w, problem{Status: http.StatusInternalServerError})
			}
		}()
		next.ServeHTTP(w, r)
	})
}

// problem is an RFC 9457 problem details object.
type problem struct {
	Type   string   `json:"type"`
	Title  string   `json:"title"`
	Status int      `json:"status"`
	Detail string   `json:"detail,omitempty"`
	Errors []string `json:"errors,omitempty"`
}

func writeProblem(w http.ResponseWriter, p problem) {
	if p.Type == "" {
		p.Type = "about:blank"
	}
	if p.Title == "" {
		p.Title = http.StatusText(p.Status)
	}
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	if p.Status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "1")
	}
	w.WriteHeader(p.Status)
	_ = json.NewEncoder(w).Encode(p)
}

func writeAdminJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// storeProblem answers a store error that is not the caller's fault, or
// one of the store's sentinels.
func (s *Server) storeProblem(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, store.ErrNotFound):
		writeProblem(w, problem{Status: http.StatusNotFound, Detail: "There is no trust relationship with this id."})
	case errors.Is(err, store.ErrAlreadyExists):
		writeProblem(w, problem{Type: problemIDTaken, Title: "ID already taken", Status: http.StatusConflict,
			Detail: "A trust relationship with this id exists; PUT /admin/trust/{id} replaces it."})
	case errors.Is(err, store.ErrInvalid):
		writeProblem(w, invalidProblem(messages(err)))
	case errors.Is(err, store.ErrUnavailable):
		s.logger.ErrorContext(r.Context(), "store unavailable", "path", r.URL.Path, "cause", err.Error())
		writeProblem(w, problem{Status: http.StatusServiceUnavailable, Detail: "The store cannot be reached; try again later."})
	default:
		s.logger.ErrorContext(r.Context(), "admin request failed", "path", r.URL.Path, "cause", err.Error())
		writeProblem(w, problem{Status: http.StatusInternalServerError})
	}
}

func invalidProblem(errs []string) problem {
	return problem{Type: problemInvalidTrust, Title: "Invalid trust relationship", Status: http.StatusBadRequest,
		Detail: fmt.Sprintf("The trust relationship has %d problem(s); every one is listed.", len(errs)), Errors: errs}
}

// messages lists the problems joined in err, without the ErrInvalid prefix
// and without library prefixes.
func messages(err error) []string {
	var out []string
	for _, e := range flatten(err) {
		msg := strings.TrimPrefix(e.Error(), store.ErrInvalid.Error()+": ")
		msg = strings.ReplaceAll(msg, "go-jose/go-jose: ", "")
		out = append(out, msg)
	}
	return out
}

// trustJSON is the wire form of store.Trust: the same members, except
// that each key is a raw JWK (or {"pem": ...}) decoded and checked one by
// one, and an unset expires_at is left out.
type trustJSON struct {
	store.Trust
	ExpiresAt *time.Time        `json:"expires_at,omitempty"`
	Keys      []json.RawMessage `json:"keys"`
}

// toJSON renders t for a response. Public keys are rendered as JWKs (they
// hold no private material: the store refuses private keys). A symmetric
// key's secret is never echoed: it is rendered as its kty, kid, alg and use
// only, so a relationship with shared secrets must be PUT with its secrets
// again.
func toJSON(t *store.Trust) (trustJSON, error) {
	out := trustJSON{Trust: *t, Keys: make([]json.RawMessage, 0, len(t.Keys))}
	out.Trust.Keys = nil
	if !t.ExpiresAt.IsZero() {
		at := t.ExpiresAt
		out.ExpiresAt = &at
	}
	for i := range t.Keys {
		k := &t.Keys[i]
		var (
			b   []byte
			err error
		)
		switch k.Key.(type) {
		case []byte:
			b, err = json.Marshal(struct {
				Kty string `json:"kty"`
				Kid string `json:"kid,omitempty"`
				Alg string `json:"alg,omitempty"`
				Use string `json:"use,omitempty"`
			}{"oct", k.KeyID, k.Algorithm, k.Use})
		default:
			if !k.IsPublic() {
				return trustJSON{}, fmt.Errorf("trust %q: keys[%d] is not a public key", t.ID, i)
			}
			b, err = k.MarshalJSON()
		}
		if err != nil {
			return trustJSON{}, fmt.Errorf("trust %q: keys[%d]: %w", t.ID, i, err)
		}
		out.Keys = append(out.Keys, b)
	}
	return out, nil
}

// decodeBody reads a request body of one JSON object into v, refusing
// unknown fields and trailing data. It answers the request itself and
// returns false when the body cannot be decoded; what names the expected
// content in the error.
func decodeBody(w http.ResponseWriter, r *http.Request, v any, what string) bool {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/json" {
			writeProblem(w, problem{Status: http.StatusUnsupportedMediaType, Detail: "The request body must be application/json."})
			return false
		}
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, adminMaxBody))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil && dec.More() {
		err = errors.New("unexpected data after the JSON object")
	} else if err == nil {
		if _, extra := dec.Token(); !errors.Is(extra, io.EOF) {
			err = errors.New("unexpected data after the JSON object")
		}
	}
	if err == nil {
		return true
	}
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		writeProblem(w, problem{Status: http.StatusRequestEntityTooLarge,
			Detail: fmt.Sprintf("The request body is larger than the %d bytes this API accepts.", adminMaxBody)})
		return false
	}
	detail := "The request body is not " + what + ": " + describeJSONError(err) + "."
	if errors.Is(err, io.EOF) {
		detail = "The request body is empty."
	}
	writeProblem(w, problem{Status: http.StatusBadRequest, Detail: detail})
	return false
}

// decodeTrust reads a request body into a store.Trust. It answers the
// request itself and returns false when the body cannot be decoded; key
// and validation problems are returned as messages instead, all of them.
func decodeTrust(w http.ResponseWriter, r *http.Request) (store.Trust, []string, bool) {
	var in trustJSON
	if !decodeBody(w, r, &in, "a JSON trust relationship") {
		return store.Trust{}, nil, false
	}

	t := in.Trust
	t.Keys = nil
	if in.ExpiresAt != nil {
		t.ExpiresAt = *in.ExpiresAt
	}
	var problems []string
	// origin[i] is the index in the request of t.Keys[i], so that the
	// store's "keys[i]" messages name the entry the caller sent.
	var origin []int
	for i, raw := range in.Keys {
		k, err := parseKeyEntry(raw)
		if err != nil {
			problems = append(problems, fmt.Sprintf("keys[%d]: %v", i, err))
			continue
		}
		t.Keys = append(t.Keys, k)
		origin = append(origin, i)
	}
	// Check the rest even when a key could not be read, so that every
	// problem is reported at once.
	check := t
	if err := store.NormalizeTrust(&check); err != nil {
		for _, msg := range messages(err) {
			if len(t.Keys) == 0 && len(in.Keys) > 0 && strings.HasPrefix(msg, "keys: ") {
				// Keys were given, and why each is unusable is said above.
				continue
			}
			problems = append(problems, renumberKey(msg, origin))
		}
	} else {
		t = check
	}
	return t, problems, true
}

// parseKeyEntry reads one entry of "keys": a JWK object, or {"pem": "..."}
// holding one PEM block.
func parseKeyEntry(raw json.RawMessage) (jose.JSONWebKey, error) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(raw, &obj); err != nil || obj == nil {
		return jose.JSONWebKey{}, errors.New("must be a JWK object or {\"pem\": \"...\"}")
	}
	data := []byte(raw)
	if p, isPEM := obj["pem"]; isPEM {
		if len(obj) != 1 {
			return jose.JSONWebKey{}, errors.New("a {\"pem\": ...} entry takes no other member")
		}
		var text string
		if err := json.Unmarshal(p, &text); err != nil {
			return jose.JSONWebKey{}, errors.New("pem: must be a string")
		}
		if !strings.Contains(text, "-----BEGIN") {
			return jose.JSONWebKey{}, errors.New("pem: not a PEM block")
		}
		data = []byte(text)
	} else if _, isSet := obj["keys"]; isSet {
		return jose.JSONWebKey{}, errors.New("give one JWK per entry, not a JWK Set")
	}
	keys, err := store.ParseKeys(data)
	if err != nil {
		msg := strings.TrimPrefix(err.Error(), "keys: ")
		msg = strings.TrimPrefix(msg, "JWK 0: ")
		msg = strings.TrimPrefix(msg, "PEM block 0: ")
		if i := strings.Index(msg, "json: "); i >= 0 {
			// go-jose passes encoding/json's texts on, which name Go types.
			msg = msg[:i] + "a member has the wrong type or is malformed"
		}
		return jose.JSONWebKey{}, errors.New(strings.ReplaceAll(msg, "go-jose/go-jose: ", ""))
	}
	if len(keys) != 1 {
		return jose.JSONWebKey{}, fmt.Errorf("holds %d keys; give one key per entry", len(keys))
	}
	return keys[0], nil
}

// renumberKey rewrites a "keys[i]: ..." message about the i-th parsed key
// to name the request's entry.
func renumberKey(msg string, origin []int) string {
	rest, ok := strings.CutPrefix(msg, "keys[")
	if !ok {
		return msg
	}
	end := strings.IndexByte(rest, ']')
	if end < 0 {
		return msg
	}
	i, err := strconv.Atoi(rest[:end])
	if err != nil || i < 0 || i >= len(origin) {
		return msg
	}
	return fmt.Sprintf("keys[%d]%s", origin[i], rest[end+1:])
}

// checkRefs reports the clients t names that do not exist, and the kids
// of t that another relationship of the same issuer uses for a different
// key: an assertion's kid would then pick keys of both. The check reads
// the store and then writes it, so two concurrent admin requests may both
// pass it; the store itself refuses neither.
func (s *Server) checkRefs(ctx context.Context, t *store.Trust) (unknown []string, conflicts []string, err error) {
	for i, id := range t.Clients {
		if _, err := s.store.GetClient(ctx, id); err != nil {
			if errors.Is(err, store.ErrNotFound) || errors.Is(err, fosite.ErrNotFound) {
				unknown = append(unknown, fmt.Sprintf("clients[%d]: %q is not a known client", i, truncate(id)))
				continue
			}
			return nil, nil, err
		}
	}
	all, err := s.store.ListTrust(ctx)
	if err != nil {
		return nil, nil, err
	}
	for _, c := range store.KIDConflicts(t, all) {
		conflicts = append(conflicts, fmt.Sprintf("keys[%d]: kid %q is already used by trust relationship %q of issuer %q for a different key",
			c.Key, c.KID, c.Other.ID, truncate(t.Issuer)))
	}
	return unknown, conflicts, nil
}

// prepare decodes and checks a trust relationship for create or replace.
// It answers the request itself and returns false when the relationship
// is not to be stored. pathID is the id of a PUT, "" for a create.
func (s *Server) prepare(w http.ResponseWriter, r *http.Request, pathID string) (store.Trust, bool) {
	t, problems, ok := decodeTrust(w, r)
	if !ok {
		return t, false
	}
	if pathID != "" {
		if t.ID != "" && t.ID != pathID {
			problems = append(problems, fmt.Sprintf("id: %q differs from the id in the path; omit it or give the same", truncate(t.ID)))
		}
		t.ID = pathID
	} else if strings.HasPrefix(t.ID, ConfigTrustPrefix) {
		problems = append(problems, fmt.Sprintf("id: the prefix %q is reserved for relationships from the configuration file", ConfigTrustPrefix))
	}
	unknown, conflicts, err := s.checkRefs(r.Context(), &t)
	if err != nil {
		s.storeProblem(w, r, err)
		return t, false
	}
	problems = append(problems, unknown...)
	if len(problems) > 0 {
		writeProblem(w, invalidProblem(problems))
		return t, false
	}
	if len(conflicts) > 0 {
		writeProblem(w, problem{Type: problemKIDConflict, Title: "Key ID already in use", Status: http.StatusConflict,
			Detail: "Another trust relationship of this issuer uses the same kid for a different key; give the key another kid.",
			Errors: conflicts})
		return t, false
	}
	return t, true
}

func (s *Server) writeTrust(w http.ResponseWriter, r *http.Request, status int, t *store.Trust) {
	out, err := toJSON(t)
	if err != nil {
		s.storeProblem(w, r, err)
		return
	}
	writeAdminJSON(w, status, out)
}

func (s *Server) logChange(ctx context.Context, action string, t *store.Trust) {
	s.logger.InfoContext(ctx, "trust relationship changed", "action", action, "id", t.ID, "issuer", t.Issuer)
}

// pathID is the {id} of the request, unescaped. When there is none (an
// undecodable or empty id), it answers 404 itself and returns false.
func pathID(w http.ResponseWriter, r *http.Request) (string, bool) {
	id, err := url.PathUnescape(mux.Vars(r)["id"])
	if err != nil || id == "" {
		writeProblem(w, problem{Status: http.StatusNotFound, Detail: "There is no trust relationship with this id."})
		return "", false
	}
	return id, true
}

func (s *Server) adminCreate(w http.ResponseWriter, r *http.Request) {
	t, ok := s.prepare(w, r, "")
	if !ok {
		return
	}
	stored, err := s.store.CreateTrust(r.Context(), t)
	if err != nil {
		s.storeProblem(w, r, err)
		return
	}
	s.logChange(r.Context(), "create", stored)
	w.Header().Set("Location", "/admin/trust/"+url.PathEscape(stored.ID))
	s.writeTrust(w, r, http.StatusCreated, stored)
}

func (s *Server) adminPut(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r)
	if !ok {
		return
	}
	if configOwned(w, id) {
		return
	}
	t, ok := s.prepare(w, r, id)
	if !ok {
		return
	}
	stored, err := s.store.UpdateTrust(r.Context(), t)
	if err != nil {
		s.storeProblem(w, r, err)
		return
	}
	s.logChange(r.Context(), "replace", stored)
	s.writeTrust(w, r, http.StatusOK, stored)
}

func (s *Server) adminGet(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r)
	if !ok {
		return
	}
	t, err := s.store.GetTrust(r.Context(), id)
	if err != nil {
		s.storeProblem(w, r, err)
		return
	}
	s.writeTrust(w, r, http.StatusOK, t)
}

func (s *Server) adminDelete(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r)
	if !ok {
		return
	}
	if configOwned(w, id) {
		return
	}
	// Read first, for the log line's issuer.
	t, err := s.store.GetTrust(r.Context(), id)
	if err == nil {
		err = s.store.DeleteTrust(r.Context(), id)
	}
	if err != nil {
		s.storeProblem(w, r, err)
		return
	}
	s.logChange(r.Context(), "delete", t)
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusNoContent)
}

// adminRemoteKeys reports every remote key set the server has fetched:
// its URL, state ("ok", "stale": past freshness and refreshes failing, the
// last good set still in use; "failing": none usable), usable keys, last
// success and last error.
func (s *Server) adminRemoteKeys(w http.ResponseWriter, _ *http.Request) {
	list := []jwks.Status{}
	if s.remote != nil {
		list = append(list, s.remote.Status()...)
	}
	writeAdminJSON(w, http.StatusOK, map[string]any{"remote_keys": list})
}

// configOwned answers 409 for a change to a relationship that comes from
// the configuration, and reports whether it did.
func configOwned(w http.ResponseWriter, id string) bool {
	if !strings.HasPrefix(id, ConfigTrustPrefix) {
		return false
	}
	writeProblem(w, problem{Type: problemConfigOwned, Title: "Managed by the configuration file", Status: http.StatusConflict,
		Detail: "This trust relationship comes from the configuration file (trust or trust_file); change it there and reload (SIGHUP)."})
	return true
}

// checkRequest is the body of POST /admin/trust/check.
type checkRequest struct {
	Assertion string  `json:"assertion"`
	Scope     *string `json:"scope,omitempty"`
	ClientID  string  `json:"client_id,omitempty"`
}

// checkResponse is its answer: handler.CheckResult with the verdict
// spelled out. Reason is the precise cause of a refusal, which the token
// endpoint only logs: this API is for operators.
type checkResponse struct {
	WouldIssue bool `json:"would_issue"`
	*handler.CheckResult
	Error            string `json:"error,omitempty"`
	ErrorDescription string `json:"error_description,omitempty"`
	Reason           string `json:"reason,omitempty"`
}

// adminCheck evaluates an assertion as the token endpoint would, without
// consuming its jti or issuing anything.
func (s *Server) adminCheck(w http.ResponseWriter, r *http.Request, h *handler.Handler) {
	var in checkRequest
	if !decodeBody(w, r, &in, `a JSON object {"assertion": "...", "scope": "...", "client_id": "..."}`) {
		return
	}
	if in.Assertion == "" {
		writeProblem(w, problem{Status: http.StatusBadRequest, Detail: "assertion: required"})
		return
	}
	req := handler.CheckRequest{Assertion: in.Assertion, ClientID: in.ClientID}
	if in.Scope != nil {
		req.ScopeSent = true
		req.Scope = fosite.RemoveEmpty(strings.Split(*in.Scope, " "))
	}
	res := h.Check(r.Context(), req)
	out := checkResponse{WouldIssue: res.Err == nil, CheckResult: res}
	if res.Err != nil {
		switch res.Err.ErrorField {
		case fosite.ErrTemporarilyUnavailable.ErrorField:
			s.storeProblem(w, r, fmt.Errorf("%w: %s", store.ErrUnavailable, res.Err.DebugField))
			return
		case fosite.ErrServerError.ErrorField:
			s.storeProblem(w, r, fmt.Errorf("check: %s", res.Err.DebugField))
			return
		}
		out.Error, out.ErrorDescription, out.Reason = res.Err.ErrorField, res.Err.GetDescription(), res.Err.DebugField
		if out.Reason == "" {
			out.Reason = res.Err.HintField
		}
	}
	writeAdminJSON(w, http.StatusOK, out)
}

// trustPage is a page of GET /admin/trust. NextPageToken is empty on the
// last page.
type trustPage struct {
	Items         []trustJSON `json:"items"`
	NextPageToken string      `json:"next_page_token"`
}

func (s *Server) adminList(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var problems []string
	for name, values := range q {
		switch {
		case name != "issuer" && name != "limit" && name != "page_token":
			problems = append(problems, fmt.Sprintf("%q is not a parameter of this resource (issuer, limit, page_token)", truncate(name)))
		case len(values) > 1:
			problems = append(problems, fmt.Sprintf("%s: must not be given more than once", name))
		}
	}
	limit := adminDefaultLimit
	if v, ok := q["limit"]; ok {
		n, err := strconv.Atoi(v[0])
		if err != nil || n < 1 || n > adminMaxLimit {
			problems = append(problems, fmt.Sprintf("limit: must be an integer from 1 to %d", adminMaxLimit))
		}
		limit = n
	}
	var after string
	if v, ok := q["page_token"]; ok {
		b, err := base64.RawURLEncoding.DecodeString(v[0])
		if err != nil || len(b) == 0 {
			problems = append(problems, "page_token: not a token this API issued; start again without it")
		}
		after = string(b)
	}
	if len(problems) > 0 {
		writeProblem(w, problem{Status: http.StatusBadRequest, Detail: "The query is not valid.", Errors: problems})
		return
	}
	_, filter := q["issuer"]
	issuer := q.Get("issuer")

	all, err := s.store.ListTrust(r.Context())
	if err != nil {
		s.storeProblem(w, r, err)
		return
	}
	page := trustPage{Items: []trustJSON{}}
	var last string
	for _, t := range all {
		// ListTrust is ordered by ID, so "after the last ID seen" is stable
		// across deletes and creates between pages.
		if (after != "" && t.ID <= after) || (filter && t.Issuer != issuer) {
			continue
		}
		if len(page.Items) == limit {
			page.NextPageToken = base64.RawURLEncoding.EncodeToString([]byte(last))
			break
		}
		out, err := toJSON(t)
		if err != nil {
			s.storeProblem(w, r, err)
			return
		}
		page.Items = append(page.Items, out)
		last = t.ID
	}
	writeAdminJSON(w, http.StatusOK, page)
}

// describeJSONError says what is wrong with a JSON body in the API's terms:
// encoding/json's own texts name Go types and fields ("Go struct field
// trustJSON.Trust.issuer of type string"), which are nobody's business.
func describeJSONError(err error) string {
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	var parse *time.ParseError
	switch {
	case errors.As(err, &syntax):
		return fmt.Sprintf("it is not valid JSON (at byte %d)", syntax.Offset)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "it ends in the middle of the JSON value"
	case errors.As(err, &typ):
		name := typ.Field
		if i := strings.LastIndexByte(name, '.'); i >= 0 {
			name = name[i+1:]
		}
		if name == "" {
			return fmt.Sprintf("it must be a JSON object, not %s", jsonKind(typ.Value))
		}
		return fmt.Sprintf("%q must not be %s", name, jsonKind(typ.Value))
	case errors.As(err, &parse):
		return "a time must be written as in RFC 3339, such as 2027-01-01T00:00:00Z"
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return "unknown member " + strings.TrimPrefix(err.Error(), "json: unknown field ")
	case strings.HasPrefix(err.Error(), "json: "):
		return "it could not be decoded"
	}
	// The API's own types' errors (durations, say) are written for it.
	return err.Error()
}

// jsonKind names what encoding/json's UnmarshalTypeError.Value holds.
func jsonKind(v string) string {
	switch {
	case v == "array":
		return "a list"
	case v == "object":
		return "an object"
	case v == "string":
		return "a string"
	case v == "bool":
		return "a boolean"
	case strings.HasPrefix(v, "number"):
		return "a number"
	}
	return "that value"
}
