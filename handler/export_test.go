package handler

import (
	"context"
	"time"
)

// ValidateForBenchmark runs validate: parse, key lookup, verification and
// the claim checks, without the replay claim nor token issuance.
func (h *Handler) ValidateForBenchmark(ctx context.Context, raw string) error {
	s := h.settings(ctx)
	_, _, err := h.validate(ctx, raw, s, time.Now())
	return err
}

// ParseForBenchmark runs parseAssertion alone.
func ParseForBenchmark(raw string) error {
	_, err := parseAssertion(raw, DefaultMaxAssertionSize)
	return err
}
