// Command loadgen compares this module's token server with stock fosite's
// RFC 7523 handler on the same machine, over HTTP on loopback, and prints
// throughput, latency, server CPU per token and memory for each, then a
// Markdown summary with the ours/stock ratios.
//
//	go run ./integration/loadgen [flags]
//
// Each server runs in a subprocess of its own (this binary again, with the
// hidden subcommand serve-ours or serve-stock), so that its CPU time can be
// read from /proc/<pid>/stat, and a fresh one serves each scenario and
// target, so that no state carries over. The parent signs every assertion
// before the clock starts: RSA signing costs about ten times what
// verifying does, and signing during the run would take CPU from the
// servers on the same cores.
//
// Both servers are configured with the same issuer identifier, so the
// assertions' "aud" (issuer + "/token") is the same for every server, and
// one pool of signed assertions (unique jtis) serves every scenario: each
// server is fresh, so a jti is new to it even though an earlier server saw
// it. The identifier is not the listener's address (each server listens on
// 127.0.0.1:0), as behind any proxy.
//
// Flags:
//
//	-duration d             measured time per scenario (default 5s)
//	-warmup d               warm-up per scenario, not counted (default 1s)
//	-concurrency list       concurrencies run on an empty replay cache (default 1,16,64)
//	-preload list           preloaded jtis run at -preload-concurrency (default 0,100000,1000000)
//	-preload-concurrency n  concurrency of the preload scenarios (default 16)
//	-targets list           ours, stock or both (default ours,stock)
//	-json file              write machine-readable results to file
//	-quick                  1s scenarios, 200ms warm-up (for tests); explicit flags win
//	-max-assertions n       cap of pre-signed assertions (default 200000)
//	-max-scenario-time d    hard cap of warm-up + measurement + drain (default 15s)
//
// The exit status is 1 when a scenario had a 5xx answer, more than 1% of
// failed requests, no measured window or a server that died; 2 on a usage
// error.
package main

import (
	"os"
)

func main() {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case cmdServeOurs:
			os.Exit(serveMain(targetOurs, os.Args[2:], os.Stdout, os.Stderr))
		case cmdServeStock:
			os.Exit(serveMain(targetStock, os.Args[2:], os.Stdout, os.Stderr))
		case cmdSummary:
			os.Exit(summaryMain(os.Args[2:], os.Stdout, os.Stderr))
		}
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}
