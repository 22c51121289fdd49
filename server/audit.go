package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/ory/fosite"

	"github.com/jwtbearer/jwtbearer/handler"
)

// Request IDs. Every request gets an ID of this process's making: its
// random prefix and a counter, unique without a random read per request.
// It is sent back in X-Request-Id and is in every log line about the
// request as request_id. An X-Request-Id the request came with (a
// proxy's), when it is a plain token, is logged beside it as
// upstream_request_id, so that one request can be followed through the
// proxy's logs and ours; it is never taken as ours, so that a caller
// cannot make its requests pass for others in the log.

// requestIDHeader is the header a request's ID comes and goes in.
const requestIDHeader = "X-Request-Id"

var (
	requestIDPrefix = func() string {
		b := make([]byte, 6)
		_, _ = rand.Read(b)
		return hex.EncodeToString(b) + "-"
	}()
	requestIDCounter atomic.Uint64
)

// requestIDs are a request's ID and the one it came with, if any.
type requestIDs struct {
	id, upstream string
	// header backs the response header's value.
	header [1]string
}

// newRequestIDs makes the request's ID and sets it on the response.
func newRequestIDs(w http.ResponseWriter, r *http.Request) *requestIDs {
	ids := &requestIDs{}
	var buf [64]byte
	ids.id = string(strconv.AppendUint(append(buf[:0], requestIDPrefix...), requestIDCounter.Add(1), 36))
	if v := r.Header[requestIDHeader]; len(v) == 1 && validRequestID(v[0]) {
		ids.upstream = v[0]
	}
	ids.header[0] = ids.id
	w.Header()[requestIDHeader] = ids.header[:]
	return ids
}

// validRequestID accepts 1 to 128 characters of [A-Za-z0-9._:-]: enough
// for UUIDs and the IDs of common proxies, nothing that needs escaping in
// a header or a log.
func validRequestID(s string) bool {
	if len(s) == 0 || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '.', c == '_', c == ':', c == '-':
		default:
			return false
		}
	}
	return true
}

type requestIDKey struct{}

func withRequestIDs(ctx context.Context, ids *requestIDs) context.Context {
	return context.WithValue(ctx, requestIDKey{}, ids)
}

// requestIDHandler adds the request IDs of the record's context to every
// record, so that any log line written with a request's context names it.
type requestIDHandler struct{ slog.Handler }

func (h requestIDHandler) Handle(ctx context.Context, r slog.Record) error {
	var ids [2]slog.Attr
	r.AddAttrs(appendRequestIDs(ctx, ids[:0])...)
	return h.Handler.Handle(ctx, r)
}

// appendRequestIDs appends the request IDs of ctx, if any, to attrs.
func appendRequestIDs(ctx context.Context, attrs []slog.Attr) []slog.Attr {
	if ids, ok := ctx.Value(requestIDKey{}).(*requestIDs); ok {
		attrs = append(attrs, slog.String("request_id", ids.id))
		if ids.upstream != "" {
			attrs = append(attrs, slog.String("upstream_request_id", ids.upstream))
		}
	}
	return attrs
}

// logEvent writes an audit event: attrs and the request's IDs, as one
// record handed straight to the handler under requestIDHandler. That is
// one allocation for the attributes beyond a record's five inline ones,
// where Logger.LogAttrs and then requestIDHandler's additions made two,
// on every token request. The record has no source position: a handler's
// AddSource would name this function for every event.
func (s *Server) logEvent(ctx context.Context, level slog.Level, msg string, attrs []slog.Attr) {
	attrs = appendRequestIDs(ctx, attrs)
	r := slog.NewRecord(time.Now(), level, msg, 0)
	r.AddAttrs(attrs...)
	_ = s.logHandler.Handle(ctx, r)
}

func (h requestIDHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return requestIDHandler{h.Handler.WithAttrs(attrs)}
}

func (h requestIDHandler) WithGroup(name string) slog.Handler {
	return requestIDHandler{h.Handler.WithGroup(name)}
}

// tokenAudit is what the audit event of one token request says: every
// token decision (granted, refused or failed) is one log line, "token
// granted", "token refused" or "token request failed", with
//
//   - grant_type (as sent, at most 64 bytes), client_id (the authenticated
//     client, or for the jwt-bearer grant without one the issuer the token
//     is attributed to), outcome, and for refusals the OAuth error, the
//     hint the client was given and the precise reason it was not;
//   - for the jwt-bearer grant, from handler.Decision: the assertion's
//     issuer and subject (as claimed, once it parsed), the kid it named,
//     and the trust relationship whose key verified it;
//   - scope (granted) and expires_in for a granted token; duration_ms.
//
// Never the assertion, a token, a client secret, a key, or the
// Authorization header: none of them is ever handed to the logger.
type tokenAudit struct {
	handler.Decision
	start     time.Time
	grantType string
}

// auditToken writes the audit event of a token request that ended with
// ar and err (nil for a token).
func (s *Server) auditToken(ctx context.Context, a *tokenAudit, ar fosite.AccessRequester, resp fosite.AccessResponder, err error) {
	level, msg, outcome := slog.LevelInfo, "token granted", "granted"
	var rfc *fosite.RFC6749Error
	if err != nil {
		rfc = fosite.ErrorToRFC6749Error(err)
		level, msg, outcome = slog.LevelInfo, "token refused", "refused"
		if rfc.CodeField >= 500 {
			level, msg, outcome = slog.LevelError, "token request failed", "error"
		}
	}
	if !s.logHandler.Enabled(ctx, level) {
		return
	}
	var buf [16]slog.Attr
	attrs := append(buf[:0], slog.String("event", "token"), slog.String("grant_type", truncate(a.grantType)), slog.String("outcome", outcome))
	if rfc != nil {
		attrs = append(attrs, slog.String("error", rfc.ErrorField))
		if rfc.HintField != "" {
			attrs = append(attrs, slog.String("hint", rfc.HintField))
		}
		if rfc.DebugField != "" {
			// The precise reason (which key check failed, say), or for a
			// server error its cause, which the caller is not told.
			attrs = append(attrs, slog.String("reason", rfc.DebugField))
		}
	}
	if ar != nil && ar.GetClient() != nil && ar.GetClient().GetID() != "" {
		attrs = append(attrs, slog.String("client_id", ar.GetClient().GetID()))
	}
	for _, f := range [...]struct{ k, v string }{
		{"issuer", a.Issuer}, {"subject", a.Subject}, {"kid", a.KeyID}, {"trust_id", a.TrustID},
	} {
		if f.v != "" {
			attrs = append(attrs, slog.String(f.k, f.v))
		}
	}
	if err == nil && ar != nil {
		attrs = append(attrs, slog.String("scope", strings.Join(ar.GetGrantedScopes(), " ")))
		if resp != nil {
			if exp, ok := resp.GetExtra("expires_in").(int64); ok {
				attrs = append(attrs, slog.Int64("expires_in", exp))
			}
		}
	}
	attrs = append(attrs, slog.Float64("duration_ms", float64(time.Since(a.start).Microseconds())/1000))
	s.logEvent(ctx, level, msg, attrs)
}

// endpointAudit is the audit event of an introspection or a revocation:
// "introspection" with the authenticated client and whether the token was
// active, or "revocation" with whether it was done (RFC 7009 answers 200
// for unknown tokens too, so "revoked" means the request was carried out).
// Neither the token nor the credentials are logged.
type endpointAudit struct {
	event, outcome, clientID string
	err                      error
}

func (s *Server) auditEndpoint(ctx context.Context, a *endpointAudit) {
	level := slog.LevelInfo
	var rfc *fosite.RFC6749Error
	if a.err != nil {
		rfc = fosite.ErrorToRFC6749Error(a.err)
		if rfc.CodeField >= 500 {
			level, a.outcome = slog.LevelError, "error"
		}
	}
	if !s.logHandler.Enabled(ctx, level) {
		return
	}
	var buf [8]slog.Attr
	attrs := append(buf[:0], slog.String("event", a.event), slog.String("outcome", a.outcome))
	if a.clientID != "" {
		attrs = append(attrs, slog.String("client_id", a.clientID))
	}
	if rfc != nil {
		attrs = append(attrs, slog.String("error", rfc.ErrorField))
		if rfc.DebugField != "" {
			attrs = append(attrs, slog.String("reason", rfc.DebugField))
		}
	}
	s.logEvent(ctx, level, a.event, attrs)
}
