package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"
)

// cmdSummary prints make bench's closing table from the Go benchmarks'
// output and the load run's JSON: every figure of issue 5 next to its
// target, as ratios measured in the same run.
const cmdSummary = "summary"

// goBench holds one benchmark line's metrics, by unit ("ns/op", "B/op",
// "heap-B/jti", ...).
type goBench map[string]float64

// parseGoBench reads `go test -bench` output. Names lose their
// -GOMAXPROCS suffix; a name seen twice keeps its last line.
func parseGoBench(r io.Reader) (map[string]goBench, error) {
	out := map[string]goBench{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") {
			continue
		}
		name := f[0]
		if i := strings.LastIndexByte(name, '-'); i > 0 {
			if _, err := strconv.Atoi(name[i+1:]); err == nil {
				name = name[:i]
			}
		}
		m := goBench{}
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				break
			}
			m[f[i+1]] = v
		}
		out[name] = m
	}
	return out, sc.Err()
}

// summaryRow is a line of the closing table.
type summaryRow struct {
	section, measure, value, target, verdict string
}

func summaryMain(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("loadgen summary", flag.ContinueOnError)
	fs.SetOutput(stderr)
	gobench := fs.String("gobench", "", "comma-separated `files` of go test -bench output")
	load := fs.String("load", "", "the load run's -json `file`")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	benches := map[string]goBench{}
	for _, path := range strings.Split(*gobench, ",") {
		if path == "" {
			continue
		}
		f, err := os.Open(path)
		if err != nil {
			_, _ = fmt.Fprintf(stderr, "loadgen summary: %v\n", err)
			return 1
		}
		b, err := parseGoBench(f)
		_ = f.Close()
		if err != nil {
			_, _ = fmt.Fprintf(stderr, "loadgen summary: %s: %v\n", path, err)
			return 1
		}
		for k, v := range b {
			benches[k] = v
		}
	}
	var rep *report
	if *load != "" {
		data, err := os.ReadFile(*load)
		if err == nil {
			rep = &report{}
			err = json.Unmarshal(data, rep)
		}
		if err != nil {
			_, _ = fmt.Fprintf(stderr, "loadgen summary: %s: %v\n", *load, err)
			return 1
		}
	}
	rows, err := summarize(benches, rep)
	printSummary(stdout, rows)
	if err != nil {
		_, _ = fmt.Fprintf(stderr, "loadgen summary: %v\n", err)
		return 1
	}
	return 0
}

// summarize builds the closing table. Missing inputs show as "–"; an error
// is returned when a figure the table needs is missing altogether.
func summarize(b map[string]goBench, rep *report) ([]summaryRow, error) {
	var rows []summaryRow
	var missing []string
	ns := func(name string) float64 {
		v, ok := b[name]["ns/op"]
		if !ok {
			missing = append(missing, name)
			return math.NaN()
		}
		return v
	}
	metric := func(name, unit string) float64 {
		v, ok := b[name][unit]
		if !ok {
			missing = append(missing, name+" "+unit)
			return math.NaN()
		}
		return v
	}
	verdict := func(ok bool) string {
		if ok {
			return "met"
		}
		return "**not met**"
	}
	add := func(section, measure, value, target, v string) {
		rows = append(rows, summaryRow{section, measure, value, target, v})
	}

	verify := ns("BenchmarkVerifyRS256")
	add("1. Go benchmarks", "one RS256 verification (the floor)", us(verify), "", "")
	parse := ns("BenchmarkParseAssertion")
	add("", "parse the assertion (once per request)", fmt.Sprintf("%s (%s)", us(parse), times(parse/verify)), "", "")
	validate := ns("BenchmarkValidate")
	add("", "validation path: parse, key lookup, verify, claims", fmt.Sprintf("%s (%s)", us(validate), times(validate/verify)), "", "")
	add("", "key resolution", fmt.Sprintf("%.0f ns", ns("BenchmarkKeyResolution")), "", "")
	add("", "replay claim (16 goroutines)", fmt.Sprintf("%.0f ns", ns("BenchmarkClaimJTI/preloaded-0")), "", "")
	endpoint := ns("BenchmarkTokenEndpoint")
	add("", "whole token endpoint in-process, memory store (16 goroutines)", fmt.Sprintf("%s/token (%s)", us(endpoint), times(endpoint/verify)), "", "")

	if rep != nil {
		find := func(target string, c, preload int) *runResult {
			for i := range rep.Runs {
				r := &rep.Runs[i]
				if r.Target == target && r.Concurrency == c && r.PreloadedJTIs == preload {
					return r
				}
			}
			missing = append(missing, fmt.Sprintf("load run %s c=%d preload=%d", target, c, preload))
			return nil
		}
		for _, c := range []int{1, 16, 64} {
			o, s := find(targetOurs, c, 0), find(targetStock, c, 0)
			if o == nil || s == nil {
				continue
			}
			ratio := o.TokensPerSecond / s.TokensPerSecond
			target, v := "", ""
			if c == 16 {
				target, v = "≥ 5×", verdict(ratio >= 5)
			}
			add("2. HTTP load, empty replay cache", fmt.Sprintf("c=%d: ours / stock tokens/s (%.0f / %.0f)", c, o.TokensPerSecond, s.TokensPerSecond),
				fmt.Sprintf("%.2f×", ratio), target, v)
			if c == 16 {
				perVerify := o.ServerCPUMicrosPerToken / rep.RSAVerifyMicros
				add("", "c=16: our server CPU per token, in RSA verifications",
					fmt.Sprintf("%.0f µs = %.1f× (verify %.1f µs)", o.ServerCPUMicrosPerToken, perVerify, rep.RSAVerifyMicros), "≤ 3×", verdict(perVerify <= 3))
				add("", "c=16: our p99 latency", fmt.Sprintf("%.1f ms", o.LatencyMs.P99), "≤ 10 ms", verdict(o.LatencyMs.P99 <= 10))
			}
		}
		o0, o1m := find(targetOurs, 16, 0), find(targetOurs, 16, 1_000_000)
		s0, s1m := find(targetStock, 16, 0), find(targetStock, 16, 1_000_000)
		if o0 != nil && o1m != nil {
			r := o1m.TokensPerSecond / o0.TokensPerSecond
			add("3. HTTP load, c=16, jtis preloaded", "ours: 1M jtis / empty", fmt.Sprintf("%.0f%%", 100*r), "≥ 90%", verdict(r >= 0.9))
		}
		if o := find(targetOurs, 16, 100_000); o != nil && o0 != nil {
			add("", "ours: 100k jtis / empty", fmt.Sprintf("%.0f%%", 100*o.TokensPerSecond/o0.TokensPerSecond), "", "")
		}
		if s0 != nil && s1m != nil && s1m.TokensPerSecond > 0 {
			add("", "stock: empty / 1M jtis", fmt.Sprintf("%.0f× slower (%.1f tokens/s)", s0.TokensPerSecond/s1m.TokensPerSecond, s1m.TokensPerSecond), "", "")
		}
	} else {
		missing = append(missing, "the load run")
	}

	t1, t100k := ns("BenchmarkTrustedKeys/1-relationships"), ns("BenchmarkTrustedKeys/100000-relationships")
	spread := t100k/t1 - 1
	add("4. Trust lookup", fmt.Sprintf("100,000 / 1 relationships (%.0f / %.0f ns; 1,000: %.0f ns)", t100k, t1, ns("BenchmarkTrustedKeys/1000-relationships")),
		fmt.Sprintf("%+.0f%%", 100*spread), "within 10%", verdict(math.Abs(spread) <= 0.10))

	jti := metric("BenchmarkJTIMemory", "heap-B/jti")
	add("5. Memory", "heap per cached jti", fmt.Sprintf("%.0f B", jti), "≤ 150 B", verdict(jti <= 150))
	add("", "heap per live token (memory store)", fmt.Sprintf("%.0f B", metric("BenchmarkTokenMemory", "heap-B/token")), "", "")

	if _, ok := b["BenchmarkTokenEndpointRedis"]; ok {
		redis, mem := ns("BenchmarkTokenEndpointRedis"), endpoint
		add("6. Redis store", fmt.Sprintf("throughput Redis / memory (%s vs %s per token)", us(redis), us(mem)), fmt.Sprintf("%.2f", mem/redis), "", "")
	} else {
		// Skipped by the benchmark itself when redis-server is not
		// installed (.ci/run installs it).
		add("6. Redis store", "throughput Redis / memory", "skipped: no redis-server", "", "")
	}

	if len(missing) > 0 {
		return rows, fmt.Errorf("missing from the inputs: %s", strings.Join(missing, "; "))
	}
	return rows, nil
}

func us(ns float64) string {
	if math.IsNaN(ns) {
		return "–"
	}
	return fmt.Sprintf("%.1f µs", ns/1000)
}

func times(r float64) string {
	if math.IsNaN(r) || math.IsInf(r, 0) {
		return "–"
	}
	return fmt.Sprintf("%.2f× a verification", r)
}

func printSummary(w io.Writer, rows []summaryRow) {
	_, _ = fmt.Fprint(w, "\n## make bench: summary\n\n")
	_, _ = fmt.Fprintln(w, "| | measure | value | target | |")
	_, _ = fmt.Fprintln(w, "|---|---|--:|--:|---|")
	last := ""
	for _, r := range rows {
		value := strings.ReplaceAll(r.value, "NaN", "–")
		section := r.section
		if section == last {
			section = ""
		} else if section != "" {
			last = section
		}
		_, _ = fmt.Fprintf(w, "| %s | %s | %s | %s | %s |\n", section, r.measure, value, r.target, r.verdict)
	}
}
