package handler

import (
	"context"
	"errors"
	"strings"

	"github.com/ory/fosite"

	"github.com/jwtbearer/jwtbearer/store"
)

// CheckRequest is what Check evaluates: an assertion as it would be posted
// to the token endpoint, with the scope parameter and the authenticated
// client, if any.
type CheckRequest struct {
	Assertion string
	// Scope is the scope parameter; ScopeSent tells whether it was sent
	// at all (without it, the assertion's "scope" claim applies).
	Scope     []string
	ScopeSent bool
	// ClientID is the client that would authenticate; empty for none.
	ClientID string
}

// CheckResult is Check's verdict.
type CheckResult struct {
	// Issuer, Subject, KeyID and Algorithm are read from the assertion,
	// unverified, when it parses.
	Issuer    string `json:"issuer,omitempty"`
	Subject   string `json:"subject,omitempty"`
	KeyID     string `json:"kid,omitempty"`
	Algorithm string `json:"alg,omitempty"`
	JTI       string `json:"jti,omitempty"`
	// Candidates are the IDs of the relationships whose issuer and subject
	// rule accept the assertion, before its signature is checked.
	Candidates []string `json:"candidates"`
	// TrustID is the relationship whose key verified the signature.
	TrustID string `json:"trust_id,omitempty"`
	// Scopes are those a token would carry.
	Scopes []string `json:"scopes,omitempty"`
	// JTIUsed tells whether the jti was redeemed already; nil when the
	// assertion has none or the replay guard cannot say.
	JTIUsed *bool `json:"jti_used,omitempty"`
	// Err is why the token endpoint would refuse the assertion, with the
	// precise reason in its debug field; nil when it would issue a token
	// (as far as the assertion and the relationship go: the client's own
	// grant types and scopes are not looked at).
	Err *fosite.RFC6749Error `json:"-"`
}

// Check runs every check the token endpoint applies to an assertion, in
// the same order, without redeeming its jti nor issuing anything: it is
// the admin API's dry run, for an operator wiring up a new issuer. Its
// result names the relationship and the precise reason for a refusal, so
// it must only be shown to operators.
func (h *Handler) Check(ctx context.Context, req CheckRequest) *CheckResult {
	s := h.settings(ctx)
	now := s.now()
	res := &CheckResult{Candidates: []string{}}

	if req.Assertion == "" {
		res.Err = fosite.ErrInvalidRequest.WithHint("The \"assertion\" is required.")
		return res
	}
	if a, err := parseAssertion(req.Assertion, s.maxSize()); err == nil {
		res.Issuer, res.Subject, res.KeyID, res.Algorithm, res.JTI = a.claims.Issuer, a.claims.Subject, a.kid, a.alg, a.claims.ID
		if keys, err := h.Keys.TrustedKeys(ctx, a.claims.Issuer, a.claims.Subject, ""); err == nil {
			for _, k := range keys {
				if !contains(res.Candidates, k.Trust.ID) {
					res.Candidates = append(res.Candidates, k.Trust.ID)
				}
			}
		}
		if insp, ok := h.Replay.(store.ReplayInspector); ok && a.claims.ID != "" {
			if used, err := insp.JTIUsed(ctx, a.claims.Issuer, a.claims.ID); err == nil {
				res.JTIUsed = &used
			}
		}
	}

	a, tk, err := h.validate(ctx, req.Assertion, s, now)
	if tk.Trust != nil {
		res.TrustID = tk.Trust.ID
	}
	if err == nil && s.RequireClientAuth && req.ClientID == "" {
		err = fosite.ErrInvalidClient.WithHint("Client authentication is required for this grant.").
			WithDebug("The server's policy (require_client_auth) makes client authentication mandatory; give a client_id.")
	}
	if err == nil {
		err = checkClients(tk.Trust, req.ClientID)
	}
	if err == nil {
		res.Scopes, err = h.grantedScopes(ctx, a, tk.Trust, req.Scope, req.ScopeSent)
	}
	if err == nil && res.JTIUsed != nil && *res.JTIUsed {
		err = fosite.ErrInvalidGrant.WithHint("The assertion has already been used: its \"jti\" was redeemed before.")
	}
	if err != nil {
		res.Err = asRFC6749(err)
		res.Scopes = nil
	}
	return res
}

// checkClients applies the relationship's client restriction to clientID,
// the client that would authenticate ("" for none).
func checkClients(t *store.Trust, clientID string) error {
	if len(t.Clients) == 0 {
		return nil
	}
	if clientID == "" {
		return fosite.ErrInvalidClient.WithHint("Client authentication is required to redeem assertions from this issuer.").
			WithDebugf("The relationship admits the clients %s.", strings.Join(t.Clients, ", "))
	}
	if !contains(t.Clients, clientID) {
		return fosite.ErrUnauthorizedClient.WithHint("The authenticated client may not redeem assertions from this issuer.").
			WithDebugf("The relationship admits the clients %s.", strings.Join(t.Clients, ", "))
	}
	return nil
}

func asRFC6749(err error) *fosite.RFC6749Error {
	var rfc *fosite.RFC6749Error
	if errors.As(err, &rfc) {
		return rfc
	}
	return fosite.ErrServerError.WithWrap(err).WithDebug(err.Error())
}
