# The two set-up commands a newcomer runs are `make run` and `make test`.
GO ?= go
GOLANGCI_LINT_VERSION ?= v2.15.0

.PHONY: run test bench lint

# run starts the example server on the embedded memory store, in demo mode:
# it trusts TestClient/User1 with a fresh key pair and prints the command
# that obtains a token.
run:
	$(GO) run ./server/cmd/jwtbearer serve

# test runs every test, with the race detector, as CI does.
test:
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 8m ./...

# bench runs the Go benchmarks.
bench:
	$(GO) test -run '^$$' -bench . -benchmem -count 1 ./...

# lint checks formatting and runs go vet and golangci-lint (built from
# source on first use, which takes a few minutes).
lint:
	@test -z "$$(gofmt -l .)" || { gofmt -l .; echo "gofmt would change the files above"; exit 1; }
	$(GO) vet ./...
	$(GO) run github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION) run ./...
