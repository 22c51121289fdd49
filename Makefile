# The two set-up commands a newcomer runs are `make run` and `make test`.
GO ?= go
GOLANGCI_LINT_VERSION ?= v2.15.0

.PHONY: run test bench lint fuzz

# run starts the example server on the embedded memory store, in demo mode:
# it trusts TestClient/User1 with a fresh key pair and prints the command
# that obtains a token.
run:
	$(GO) run ./server/cmd/jwtbearer serve

# test runs every test, with the race detector, as CI does.
test:
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 8m ./...

# bench measures, in this order (issue 5): 1. the Go benchmarks of the
# hot path; 2.-3. the HTTP load benchmark against stock fosite, at
# concurrency 1/16/64 and with 0/100k/1M jtis preloaded; 4. trust lookup
# at 1/1k/100k relationships; 5. heap per jti and per token; 6. the Redis
# store against the memory store. It ends with a summary table of ratios
# measured in this run, next to the targets. About 5 minutes on 2 cores.
bench:
	@dir=$$(mktemp -d) && trap 'rm -rf "$$dir"' EXIT && \
	$(GO) test -run '^$$' -bench 'VerifyRS256|ParseAssertion|Validate|KeyResolution|BenchmarkTokenEndpoint$$' -benchmem ./handler/ | tee "$$dir/go1.txt" && \
	$(GO) test -run '^$$' -bench 'ClaimJTI' -benchmem ./store/memory/ | tee -a "$$dir/go1.txt" && \
	{ $(GO) run ./integration/loadgen -json "$$dir/load.json"; load=$$?; } && \
	$(GO) test -run '^$$' -bench 'TrustedKeys|JTIMemory|TokenMemory' -benchmem ./store/memory/ | tee "$$dir/go2.txt" && \
	$(GO) test -run '^$$' -bench 'BenchmarkTokenEndpoint$$|BenchmarkTokenEndpointRedis' -benchmem ./handler/ | tee -a "$$dir/go2.txt" && \
	$(GO) run ./integration/loadgen summary -gobench "$$dir/go1.txt,$$dir/go2.txt" -load "$$dir/load.json" && \
	exit $$load

# fuzz runs every fuzz target of the repository, one after another, each
# for FUZZTIME (go test -fuzz takes one target of one package at a time).
# The targets are found in the _test.go files, so new ones join in. A
# failing input is written to the package's testdata/fuzz/<target>/ and
# stops the run; plain go test runs it from then on.
FUZZTIME ?= 30s
fuzz:
	@set -e; for file in $$(grep -rl --include='*_test.go' --exclude-dir=testdata '^func Fuzz' . | sort); do \
		pkg=./$$(dirname "$${file#./}"); \
		for name in $$(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(.*/\1/p' "$$file"); do \
			echo "== $$pkg $$name ($(FUZZTIME))"; \
			$(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) "$$pkg"; \
		done; \
	done

# lint checks formatting and runs go vet and golangci-lint (built from
# source on first use, which takes a few minutes).
lint:
	@test -z "$$(gofmt -l .)" || { gofmt -l .; echo "gofmt would change the files above"; exit 1; }
	$(GO) vet ./...
	$(GO) run github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION) run ./...
