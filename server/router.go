package server

import (
	"encoding/json"
	"errors"
	"mime"
	"net/http"
	"strings"

	"github.com/gorilla/mux"
	"github.com/ory/fosite"
)

// routes builds the router. Every answer, errors included, is JSON.
func (s *Server) routes() http.Handler {
	r := mux.NewRouter()
	r.HandleFunc("/token", s.token).Methods(http.MethodPost)
	r.HandleFunc("/introspect", s.introspect).Methods(http.MethodPost)
	r.HandleFunc("/revoke", s.revoke).Methods(http.MethodPost)
	r.HandleFunc("/healthz", s.healthz).Methods(http.MethodGet, http.MethodHead)
	r.NotFoundHandler = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		writeError(w, http.StatusNotFound, "not_found", "There is nothing at this path.")
	})
	r.MethodNotAllowedHandler = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		writeError(w, http.StatusMethodNotAllowed, "invalid_request", "This endpoint does not accept that HTTP method.")
	})
	return s.recoverer(r)
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
func (s *Server) readForm(w http.ResponseWriter, r *http.Request) (int, *fosite.RFC6749Error) {
	r.Body = http.MaxBytesReader(w, r.Body, s.cfg.MaxRequestBytes)
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/x-www-form-urlencoded" {
		return http.StatusBadRequest, fosite.ErrInvalidRequest.WithHint("The request body must be application/x-www-form-urlencoded.")
	}
	if err := r.ParseForm(); err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return http.StatusRequestEntityTooLarge, fosite.ErrInvalidRequest.WithHintf("The request body is larger than the %d bytes this server accepts.", s.cfg.MaxRequestBytes)
		}
		return http.StatusBadRequest, fosite.ErrInvalidRequest.WithHint("The request body could not be parsed as a form.")
	}
	for name, values := range r.PostForm {
		if len(values) > 1 {
			return http.StatusBadRequest, fosite.ErrInvalidRequest.WithHintf("The %q parameter must not be included more than once.", truncate(name))
		}
	}
	return 0, nil
}

// token serves the token endpoint (RFC 6749 §3.2).
func (s *Server) token(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if status, err := s.readForm(w, r); err != nil {
		writeRFCError(w, status, err)
		return
	}
	switch gt := r.PostForm.Get("grant_type"); {
	case gt == "":
		writeRFCError(w, http.StatusBadRequest, fosite.ErrInvalidRequest.WithHint("The \"grant_type\" parameter is required."))
		return
	case !contains(knownGrantTypes, gt):
		writeRFCError(w, http.StatusBadRequest, fosite.ErrUnsupportedGrantType.WithHintf("The grant type %q is not supported; this server supports %s.", truncate(gt), strings.Join(knownGrantTypes, ", ")))
		return
	}
	ar, err := s.provider.NewAccessRequest(ctx, r, &fosite.DefaultSession{})
	if err != nil {
		s.accessError(w, r, ar, err)
		return
	}
	resp, err := s.provider.NewAccessResponse(ctx, ar)
	if err != nil {
		s.accessError(w, r, ar, err)
		return
	}
	s.provider.WriteAccessResponse(ctx, w, ar, resp)
}

// accessError writes a token endpoint error. invalid_client gets 401 with
// a WWW-Authenticate challenge (RFC 6749 §5.2); server errors are logged
// with their cause, which never reaches the caller.
func (s *Server) accessError(w http.ResponseWriter, r *http.Request, ar fosite.AccessRequester, err error) {
	rfc := fosite.ErrorToRFC6749Error(err)
	if rfc.CodeField == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Basic realm="token", charset="UTF-8"`)
	}
	if rfc.CodeField >= 500 {
		s.logger.ErrorContext(r.Context(), "token request failed", "error", rfc.ErrorField, "cause", rfc.GetDescription()+" "+rfc.DebugField)
	}
	s.provider.WriteAccessError(r.Context(), w, ar, err)
}

// introspect serves RFC 7662 token introspection for authenticated clients.
func (s *Server) introspect(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if status, err := s.readForm(w, r); err != nil {
		writeRFCError(w, status, err)
		return
	}
	ir, err := s.provider.NewIntrospectionRequest(ctx, r, &fosite.DefaultSession{})
	if err != nil {
		rfc := fosite.ErrorToRFC6749Error(err)
		if rfc.CodeField == http.StatusUnauthorized {
			w.Header().Set("WWW-Authenticate", `Basic realm="introspect", charset="UTF-8"`)
		}
		s.provider.WriteIntrospectionError(ctx, w, err)
		return
	}
	s.provider.WriteIntrospectionResponse(ctx, w, ir)
}

// revoke serves RFC 7009 token revocation.
func (s *Server) revoke(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if status, err := s.readForm(w, r); err != nil {
		writeRFCError(w, status, err)
		return
	}
	err := s.provider.NewRevocationRequest(ctx, r)
	if errors.Is(err, fosite.ErrInvalidClient) {
		w.Header().Set("WWW-Authenticate", `Basic realm="revoke", charset="UTF-8"`)
	}
	s.provider.WriteRevocationResponse(ctx, w, err)
}

// healthz reports that the server is up.
func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write([]byte(`{"status":"ok"}` + "\n"))
}

// writeRFCError writes an RFC 6749 §5.2 error body with status.
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
