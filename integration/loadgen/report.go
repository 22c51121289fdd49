package main

import (
	"cmp"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
)

// runName names a run: "ours c=16 preload=100000".
func runName(r *runResult) string {
	return fmt.Sprintf("%s c=%d preload=%d", r.Target, r.Concurrency, r.PreloadedJTIs)
}

// printRun prints one run as soon as it ends: its figures, then every
// failed request by phase, its notes and problems.
func printRun(w io.Writer, i, n int, r *runResult) {
	_, _ = fmt.Fprintf(w, "[%2d/%d] %-5s c=%-3d preload=%-8d %s tokens/s (%d tokens in %.2f s)  p50 %s  p90 %s  p99 %s ms  CPU %s µs/token (%s RSA verifies)  RSS %.1f MiB  start %.1f s  errors: %s\n",
		i, n, r.Target, r.Concurrency, r.PreloadedJTIs, rate(r.TokensPerSecond), r.Tokens, r.WindowSeconds,
		fmtMs(r.LatencyMs.P50), fmtMs(r.LatencyMs.P90), fmtMs(r.LatencyMs.P99),
		orDash(r.ServerCPUMicrosPerToken, "%.0f"), orDash(r.RSAVerifiesPerToken, "%.1f"), r.ServerRSSMiB, r.ServerStartSeconds, errorSummary(r))
	for _, line := range failureLines(r) {
		_, _ = fmt.Fprintf(w, "        %s\n", line)
	}
	for _, note := range r.Notes {
		_, _ = fmt.Fprintf(w, "        note: %s\n", note)
	}
	for _, pr := range r.Problems {
		_, _ = fmt.Fprintf(w, "        PROBLEM: %s\n", pr)
	}
}

// failureLines lists the failed requests of every phase, with the first
// description seen for each outcome.
func failureLines(r *runResult) []string {
	var out []string
	for _, ph := range []struct {
		name string
		m    map[string]int
	}{{"warm-up", r.Outcomes.Warmup}, {"window", r.Outcomes.Window}, {"after the window", r.Outcomes.AfterWindow}} {
		for _, k := range slices.Sorted(maps.Keys(ph.m)) {
			if k == outcomeOK {
				continue
			}
			line := fmt.Sprintf("%s: %s ×%d", ph.name, k, ph.m[k])
			if s := r.ErrorSamples[k]; s != "" {
				line += fmt.Sprintf(" (%q)", s)
			}
			out = append(out, line)
		}
	}
	return out
}

// errorSummary counts the failed requests of all phases by outcome.
func errorSummary(r *runResult) string {
	all := map[string]int{}
	for _, m := range []map[string]int{r.Outcomes.Warmup, r.Outcomes.Window, r.Outcomes.AfterWindow} {
		for k, v := range m {
			if k != outcomeOK {
				all[k] += v
			}
		}
	}
	if len(all) == 0 {
		return "none"
	}
	keys := slices.SortedFunc(maps.Keys(all), func(a, b string) int { return cmp.Compare(all[b], all[a]) })
	parts := make([]string, len(keys))
	total := 0
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s ×%d", k, all[k])
		total += all[k]
	}
	return fmt.Sprintf("%d (%s)", total, strings.Join(parts, "; "))
}

// printReport prints the tables and the verdict.
func printReport(w io.Writer, rep *report) {
	_, _ = fmt.Fprintf(w, "\n## Results\n\n")
	_, _ = fmt.Fprintf(w, "Each run: a fresh server process, %v warm-up (not counted), %v measured. Latency is over the requests completed in the window; server CPU is utime+stime of the server process (/proc/<pid>/stat, %d ticks/s) in the window divided by the tokens issued in it; RSS is VmRSS after the run. Errors count every failed request, warm-up and drain included. Preloaded jtis are in the replay cache before the warm-up; every token issued adds one, so the cache holds \"jtis at end\" when the run ends. Stock fosite's memory store scans all of them, under one lock, on every request (SetClientAssertionJWT), so its rate falls as a run goes on even without a preload; ours does not scan.\n\n",
		rep.Options.Warmup, rep.Options.Duration, rep.Machine.ClockTicks)
	_, _ = fmt.Fprintln(w, "| target | concurrency | preloaded jtis | tokens/s | p50 ms | p90 ms | p99 ms | errors | server CPU µs/token | ÷ 1 RSA verify | RSS MiB | jtis at end |")
	_, _ = fmt.Fprintln(w, "|---|--:|--:|--:|--:|--:|--:|---|--:|--:|--:|--:|")
	for i := range rep.Runs {
		r := &rep.Runs[i]
		_, _ = fmt.Fprintf(w, "| %s | %d | %s | %s | %s | %s | %s | %s | %s | %s | %.1f | %d |\n",
			r.Target, r.Concurrency, count(r.PreloadedJTIs), rate(r.TokensPerSecond),
			fmtMs(r.LatencyMs.P50), fmtMs(r.LatencyMs.P90), fmtMs(r.LatencyMs.P99),
			strings.ReplaceAll(errorSummary(r), "|", "/"), orDash(r.ServerCPUMicrosPerToken, "%.0f"),
			orDash(r.RSAVerifiesPerToken, "%.1f×"), r.ServerRSSMiB, r.JTIsAtEnd)
	}

	_, _ = fmt.Fprintf(w, "\n## Summary: ours/stock\n\n")
	if len(rep.Comparisons) == 0 {
		_, _ = fmt.Fprintln(w, "(no ours/stock comparison: run both targets)")
	} else {
		_, _ = fmt.Fprintln(w, "| concurrency | preloaded jtis | ours tokens/s | stock tokens/s | ours/stock tokens/s | ours CPU µs/token | stock CPU µs/token | ours/stock CPU/token |")
		_, _ = fmt.Fprintln(w, "|--:|--:|--:|--:|--:|--:|--:|--:|")
		for _, c := range rep.Comparisons {
			_, _ = fmt.Fprintf(w, "| %d | %s | %s | %s | %s | %s | %s | %s |\n",
				c.Concurrency, count(c.PreloadedJTIs), rate(c.OursTokensPerSecond), rate(c.StockTokensPerSecond),
				ratio(c.TokensPerSecondRatio), orDash(c.OursCPUMicros, "%.0f"), orDash(c.StockCPUMicros, "%.0f"),
				ratio(c.CPURatio))
		}
	}

	_, _ = fmt.Fprintf(w, "\nvs 1 RSA verify (%.1f µs: one go-jose RS256 verification, RSA-2048, on one goroutine, in-process), server CPU per token:", rep.RSAVerifyMicros)
	for j, t := range rep.Options.Targets {
		var parts []string
		for i := range rep.Runs {
			r := &rep.Runs[i]
			if r.Target == t && r.RSAVerifiesPerToken > 0 {
				parts = append(parts, fmt.Sprintf("%.1f× (c=%d, %s jtis)", r.RSAVerifiesPerToken, r.Concurrency, count(r.PreloadedJTIs)))
			}
		}
		if len(parts) == 0 {
			parts = []string{"—"}
		}
		sep := ";"
		if j == len(rep.Options.Targets)-1 {
			sep = "."
		}
		_, _ = fmt.Fprintf(w, " %s %s%s", t, strings.Join(parts, ", "), sep)
	}
	_, _ = fmt.Fprintln(w)

	_, _ = fmt.Fprintf(w, "\nAssertions: %d signed before the clocks started (%.1f s), iss %q, sub %q, aud %q, unique jtis; each server is fresh, so the pool is reused across runs. Calibration (requests/s):",
		rep.AssertionsSigned, rep.SigningSeconds, benchIssuer, benchSubject, rep.Audience)
	for _, t := range rep.Options.Targets {
		_, _ = fmt.Fprintf(w, " %s %.0f", t, rep.Calibration[t])
	}
	_, _ = fmt.Fprintln(w, ".")

	var stderrs []string
	for i := range rep.Runs {
		if s := rep.Runs[i].ServerStderr; s != "" {
			stderrs = append(stderrs, fmt.Sprintf("--- %s: server stderr\n%s", runName(&rep.Runs[i]), s))
		}
	}
	if len(stderrs) > 0 {
		_, _ = fmt.Fprintf(w, "\n%s\n", strings.Join(stderrs, "\n"))
	}

	failed, total := 0, 0
	for i := range rep.Runs {
		failed += rep.Runs[i].Failed
		total += rep.Runs[i].Completed
	}
	_, _ = fmt.Fprintf(w, "\nFailed requests: %d of %d (all runs and phases; each is listed under its run above)\n", failed, total)
	_, _ = fmt.Fprintf(w, "Wall time: %.1f s\n", rep.WallSeconds)
	if rep.OK {
		_, _ = fmt.Fprintln(w, "PASS")
		return
	}
	_, _ = fmt.Fprintln(w, "FAIL:")
	for _, p := range rep.Problems {
		_, _ = fmt.Fprintf(w, "  - %s\n", p)
	}
}

// rate formats a rate: no decimals from 100 on.
func rate(v float64) string {
	if v >= 100 {
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.1f", v)
}

func fmtMs(v float64) string {
	switch {
	case v == 0:
		return "—"
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

// ratio formats a ratio with two significant digits when small, no
// decimals when large, a dash when unknown (zero).
func ratio(v float64) string {
	switch {
	case v == 0:
		return "—"
	case v < 0.1:
		return fmt.Sprintf("%.2g×", v)
	case v >= 100:
		return fmt.Sprintf("%.0f×", v)
	}
	return fmt.Sprintf("%.2f×", v)
}

// orDash formats v, or a dash when it is zero (unknown).
func orDash(v float64, format string) string {
	if v == 0 {
		return "—"
	}
	return fmt.Sprintf(format, v)
}

// count formats a jti count: 0, 100k, 1M.
func count(n int) string {
	switch {
	case n >= 1_000_000 && n%1_000_000 == 0:
		return fmt.Sprintf("%dM", n/1_000_000)
	case n >= 1000 && n%1000 == 0:
		return fmt.Sprintf("%dk", n/1000)
	}
	return fmt.Sprint(n)
}
