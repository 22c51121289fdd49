package server

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/ory/fosite"

	"github.com/jwtbearer/jwtbearer/handler"
)

// BenchmarkAuditToken is the cost of a granted token's audit event with
// the binary's JSON handler, written to io.Discard.
func BenchmarkAuditToken(b *testing.B) {
	h := slog.NewJSONHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelInfo})
	s := &Server{logger: slog.New(requestIDHandler{h}), logHandler: h}
	ctx := withRequestIDs(context.Background(), &requestIDs{id: "0bcd6e013db8-4"})
	ar := fosite.NewAccessRequest(&fosite.DefaultSession{})
	ar.Client = &fosite.DefaultClient{ID: "TestClient"}
	ar.GrantScope("read")
	resp := fosite.NewAccessResponse()
	resp.SetExpiresIn(299 * time.Second)
	a := &tokenAudit{
		Decision:  handler.Decision{Issuer: "TestClient", Subject: "User1", KeyID: "DfUJS-pv14b9OLFXrz7dbSashV6xLUvvAKzQq4ea76M", TrustID: "cfg-test-client-user1"},
		start:     time.Now(),
		grantType: handler.GrantType,
	}
	b.ReportAllocs()
	for b.Loop() {
		s.auditToken(ctx, a, ar, resp, nil)
	}
}
