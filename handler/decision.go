package handler

import (
	"context"
	"errors"
)

// Decision records what the handler learnt about a token request, for the
// caller's audit log: who the assertion says it is from and about (its
// "iss" and "sub", once it parsed, whether or not its signature then
// verified), the key it named ("kid") and the trust relationship whose
// key verified it. The handler fills the
// Decision that WithDecision put in the request's context and never reads
// it. Nothing in it is secret: no assertion, signature or key.
type Decision struct {
	Issuer  string
	Subject string
	KeyID   string
	TrustID string
}

type decisionKey struct{}

// WithDecision returns ctx carrying d, which the handler fills as it
// handles the request made with that context.
func WithDecision(ctx context.Context, d *Decision) context.Context {
	return context.WithValue(ctx, decisionKey{}, d)
}

func decisionFrom(ctx context.Context) *Decision {
	d, _ := ctx.Value(decisionKey{}).(*Decision)
	return d
}

// ErrReplayed is the cause of the answer to an assertion, or a client
// assertion, whose jti was used before (errors.Is finds it), for metrics.
var ErrReplayed = errors.New("the assertion's jti was redeemed before")
