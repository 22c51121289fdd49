package main

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	jose "github.com/go-jose/go-jose/v3"

	"github.com/jwtbearer/jwtbearer/store"
)

// options are the parsed flags.
type options struct {
	Duration           time.Duration `json:"duration"`
	Warmup             time.Duration `json:"warmup"`
	Concurrency        []int         `json:"concurrency"`
	Preload            []int         `json:"preload"`
	PreloadConcurrency int           `json:"preload_concurrency"`
	Targets            []string      `json:"targets"`
	JSON               string        `json:"json,omitempty"`
	Quick              bool          `json:"quick"`
	MaxAssertions      int           `json:"max_assertions"`
	MaxScenarioTime    time.Duration `json:"max_scenario_time"`
	// Drain bounds the wait for requests in flight after a window.
	Drain time.Duration `json:"drain"`
	// VerifyTime is how long the RSA verification is measured.
	VerifyTime time.Duration `json:"verify_time"`
	// CalibrateTime is the length of each target's calibration run, and
	// CalibrateAssertions the pool it starts with.
	CalibrateTime       time.Duration `json:"calibrate_time"`
	CalibrateAssertions int           `json:"calibrate_assertions"`
}

func parseOptions(args []string, stderr io.Writer) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		_, _ = fmt.Fprintf(stderr, "Usage: loadgen [flags]\n\nCompares this module's token server with stock fosite (RFC 7523 JWT Bearer grant).\n\n")
		fs.PrintDefaults()
	}
	fs.DurationVar(&o.Duration, "duration", 5*time.Second, "measured `time` per scenario and target")
	fs.DurationVar(&o.Warmup, "warmup", time.Second, "warm-up `time` before each measurement, not counted")
	conc := fs.String("concurrency", "1,16,64", "`list` of concurrencies run with an empty replay cache")
	preload := fs.String("preload", "0,100000,1000000", "`list` of preloaded jti counts, run at -preload-concurrency (empty: none)")
	fs.IntVar(&o.PreloadConcurrency, "preload-concurrency", 16, "concurrency of the preload scenarios")
	targets := fs.String("targets", "ours,stock", "`list` of servers: ours, stock")
	fs.StringVar(&o.JSON, "json", "", "write machine-readable results to `file`")
	fs.BoolVar(&o.Quick, "quick", false, "1s scenarios with 200ms warm-up, for tests (explicit -duration and -warmup win)")
	fs.IntVar(&o.MaxAssertions, "max-assertions", 200_000, "cap of pre-signed assertions")
	fs.DurationVar(&o.MaxScenarioTime, "max-scenario-time", 15*time.Second, "cap of warm-up + measurement + drain of one scenario")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	o.Drain = 3 * time.Second
	o.VerifyTime, o.CalibrateTime, o.CalibrateAssertions = time.Second, 500*time.Millisecond, 4000
	if o.Quick {
		if !set["duration"] {
			o.Duration = time.Second
		}
		if !set["warmup"] {
			o.Warmup = 200 * time.Millisecond
		}
		o.Drain = 2 * time.Second
		o.VerifyTime, o.CalibrateTime, o.CalibrateAssertions = 200*time.Millisecond, 200*time.Millisecond, 1000
	}
	var errs []error
	var err error
	if o.Concurrency, err = intList(*conc); err != nil {
		errs = append(errs, fmt.Errorf("-concurrency: %w", err))
	}
	if o.Preload, err = intList(*preload); err != nil {
		errs = append(errs, fmt.Errorf("-preload: %w", err))
	}
	for _, c := range o.Concurrency {
		if c < 1 || c > 4096 {
			errs = append(errs, fmt.Errorf("-concurrency: %d is not between 1 and 4096", c))
		}
	}
	for _, p := range o.Preload {
		if p < 0 || p > 50_000_000 {
			errs = append(errs, fmt.Errorf("-preload: %d is not between 0 and 50000000", p))
		}
	}
	if o.PreloadConcurrency < 1 || o.PreloadConcurrency > 4096 {
		errs = append(errs, errors.New("-preload-concurrency: must be between 1 and 4096"))
	}
	for t := range strings.SplitSeq(*targets, ",") {
		t = strings.TrimSpace(t)
		switch {
		case t == "":
		case t != targetOurs && t != targetStock:
			errs = append(errs, fmt.Errorf("-targets: %q is neither ours nor stock", t))
		case !slices.Contains(o.Targets, t):
			o.Targets = append(o.Targets, t)
		}
	}
	if len(o.Targets) == 0 {
		errs = append(errs, errors.New("-targets: none"))
	}
	if len(o.Concurrency) == 0 && len(o.Preload) == 0 {
		errs = append(errs, errors.New("-concurrency and -preload: no scenario"))
	}
	if o.Duration <= 0 || o.Warmup < 0 {
		errs = append(errs, errors.New("-duration must be positive and -warmup not negative"))
	}
	if o.MaxAssertions < 100 {
		errs = append(errs, errors.New("-max-assertions: at least 100"))
	}
	if budget := o.MaxScenarioTime - o.Warmup - o.Drain; budget <= 0 {
		errs = append(errs, fmt.Errorf("-max-scenario-time: %v leaves no time after the warm-up (%v) and the drain (%v)", o.MaxScenarioTime, o.Warmup, o.Drain))
	} else if o.Duration > budget {
		_, _ = fmt.Fprintf(stderr, "loadgen: -duration %v shortened to %v to keep every scenario within -max-scenario-time %v\n", o.Duration, budget, o.MaxScenarioTime)
		o.Duration = budget
	}
	o.CalibrateAssertions = min(o.CalibrateAssertions, o.MaxAssertions)
	return o, errors.Join(errs...)
}

// intList parses a comma-separated list of integers ("100000", "100_000").
func intList(s string) ([]int, error) {
	var out []int
	for f := range strings.SplitSeq(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		n, err := strconv.ParseInt(f, 0, 64)
		if err != nil {
			return nil, fmt.Errorf("%q is not an integer", f)
		}
		out = append(out, int(n))
	}
	return out, nil
}

// scenario is one load shape, run against each target.
type scenario struct {
	Concurrency int
	Preload     int
}

// scenarios lists the concurrencies on an empty cache, then the preloads
// at the preload concurrency, without repeats.
func (o *options) scenarios() []scenario {
	var out []scenario
	add := func(s scenario) {
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	for _, c := range o.Concurrency {
		add(scenario{c, 0})
	}
	for _, p := range o.Preload {
		add(scenario{o.PreloadConcurrency, p})
	}
	return out
}

// phases counts outcomes by phase.
type phases struct {
	Warmup      map[string]int `json:"warmup"`
	Window      map[string]int `json:"window"`
	AfterWindow map[string]int `json:"after_window"`
}

// latency holds percentiles of the window's requests, in milliseconds.
type latency struct {
	P50 float64 `json:"p50"`
	P90 float64 `json:"p90"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

// runResult is one scenario against one target.
type runResult struct {
	Target        string `json:"target"`
	Concurrency   int    `json:"concurrency"`
	PreloadedJTIs int    `json:"preloaded_jtis"`
	// ServerStartSeconds is the time from exec to listening, preload included.
	ServerStartSeconds float64 `json:"server_start_s"`
	PlannedSeconds     float64 `json:"planned_window_s"`
	WindowSeconds      float64 `json:"window_s"`
	// Tokens are the 200 answers with an access token completed in the
	// window; Requests all requests completed in it.
	Tokens          int     `json:"tokens"`
	Requests        int     `json:"requests"`
	TokensPerSecond float64 `json:"tokens_per_s"`
	// LatencyMs are over every request completed in the window.
	LatencyMs        latency `json:"latency_ms"`
	ServerCPUSeconds float64 `json:"server_cpu_s"`
	// ServerCPUMicrosPerToken is the server's CPU time in the window per
	// token issued in it (0 when none was); RSAVerifiesPerToken is that
	// in RS256 verifications (see rsa_verify_us).
	ServerCPUMicrosPerToken float64 `json:"server_cpu_us_per_token"`
	RSAVerifiesPerToken     float64 `json:"rsa_verifies_per_token"`
	// LoadgenCPUMicrosPerRequest is this process's CPU per request in the
	// window: it shares the cores with the server.
	LoadgenCPUMicrosPerRequest float64 `json:"loadgen_cpu_us_per_request"`
	ServerRSSMiB               float64 `json:"server_rss_mib"`
	// JTIsAtEnd is the preloaded jtis plus one per token issued in the
	// run (warm-up and drain included): the replay cache's size at the end.
	JTIsAtEnd           int     `json:"jtis_at_end"`
	AssertionsUsed      int     `json:"assertions_used"`
	AssertionsAvailable int     `json:"assertions_available"`
	RanOutOfAssertions  bool    `json:"ran_out_of_assertions"`
	RanOutAfterSeconds  float64 `json:"ran_out_after_s,omitempty"`
	// Outcomes counts every request by phase: "200" (a token), "<status>
	// <OAuth error>", transport errors, canceled ones.
	Outcomes     phases            `json:"outcomes"`
	ErrorSamples map[string]string `json:"error_samples,omitempty"`
	// Completed counts the requests that got an answer or a transport
	// error (all phases); Failed those that were not a token; Canceled
	// the ones abandoned after the drain time.
	Completed    int     `json:"completed_requests"`
	Failed       int     `json:"failed_requests"`
	ServerErrors int     `json:"server_errors_5xx"`
	Canceled     int     `json:"canceled_requests"`
	ErrorRate    float64 `json:"error_rate"`
	ServerStderr string  `json:"server_stderr,omitempty"`
	// Problems make the exit status non-zero; Notes do not.
	Problems []string `json:"problems,omitempty"`
	Notes    []string `json:"notes,omitempty"`
}

// comparison is ours against stock in one scenario.
type comparison struct {
	Concurrency          int     `json:"concurrency"`
	PreloadedJTIs        int     `json:"preloaded_jtis"`
	OursTokensPerSecond  float64 `json:"ours_tokens_per_s"`
	StockTokensPerSecond float64 `json:"stock_tokens_per_s"`
	// TokensPerSecondRatio is ours/stock; 0 when stock issued nothing.
	TokensPerSecondRatio float64 `json:"tokens_per_s_ratio"`
	OursCPUMicros        float64 `json:"ours_cpu_us_per_token"`
	StockCPUMicros       float64 `json:"stock_cpu_us_per_token"`
	// CPURatio is ours/stock CPU per token; 0 when either is unknown.
	CPURatio float64 `json:"cpu_per_token_ratio"`
}

// machine describes where the run happened.
type machine struct {
	NumCPU             int    `json:"num_cpu"`
	GOMAXPROCS         int    `json:"gomaxprocs"`
	GoVersion          string `json:"go_version"`
	GOOS               string `json:"goos"`
	GOARCH             string `json:"goarch"`
	ClockTicks         int64  `json:"clock_ticks_per_s"`
	ClockTicksAssumed  bool   `json:"clock_ticks_assumed"`
	AssertionAlgorithm string `json:"assertion_algorithm"`
}

// report is the JSON output.
type report struct {
	StartedAt           time.Time          `json:"started_at"`
	WallSeconds         float64            `json:"wall_s"`
	Machine             machine            `json:"machine"`
	Options             *options           `json:"options"`
	Issuer              string             `json:"issuer"`
	Audience            string             `json:"audience"`
	RSAVerifyMicros     float64            `json:"rsa_verify_us"`
	RSAVerifyIterations int                `json:"rsa_verify_iterations"`
	Calibration         map[string]float64 `json:"calibration_requests_per_s"`
	AssertionsSigned    int                `json:"assertions_signed"`
	SigningSeconds      float64            `json:"signing_s"`
	Runs                []runResult        `json:"runs"`
	Comparisons         []comparison       `json:"comparisons"`
	Problems            []string           `json:"problems,omitempty"`
	OK                  bool               `json:"ok"`
}

// run is the load generator's main: it returns the exit status.
func run(args []string, stdout, stderr io.Writer) int {
	o, err := parseOptions(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		_, _ = fmt.Fprintf(stderr, "loadgen: %v\n", err)
		return 2
	}
	rep, err := execute(o, stdout)
	if err != nil {
		_, _ = fmt.Fprintf(stderr, "loadgen: %v\n", err)
		return 1
	}
	if o.JSON != "" {
		data, err := json.MarshalIndent(rep, "", "  ")
		if err == nil {
			err = os.WriteFile(o.JSON, append(data, '\n'), 0o644)
		}
		if err != nil {
			_, _ = fmt.Fprintf(stderr, "loadgen: -json: %v\n", err)
			return 1
		}
	}
	if !rep.OK {
		return 1
	}
	return 0
}

// execute runs every scenario against every target and prints the report.
func execute(o *options, w io.Writer) (*report, error) {
	started := time.Now()
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "loadgen-")
	if err != nil {
		return nil, err
	}
	defer func() { _ = os.RemoveAll(dir) }()
	// Interrupted, the temporary folder goes too; the servers see their
	// stdin close when this process ends, and stop.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	go func() {
		if _, ok := <-sigs; ok {
			_ = os.RemoveAll(dir)
			_, _ = fmt.Fprintln(w, "loadgen: interrupted")
			os.Exit(130)
		}
	}()

	ticks, fromGetconf := clockTicks()
	rep := &report{
		StartedAt: started.UTC(),
		Machine: machine{
			NumCPU: runtime.NumCPU(), GOMAXPROCS: runtime.GOMAXPROCS(0), GoVersion: runtime.Version(),
			GOOS: runtime.GOOS, GOARCH: runtime.GOARCH, ClockTicks: ticks, ClockTicksAssumed: !fromGetconf,
			AssertionAlgorithm: "RS256, RSA-2048",
		},
		Options:     o,
		Issuer:      defaultAuthority,
		Audience:    defaultAuthority + "/token",
		Calibration: map[string]float64{},
	}
	scens := o.scenarios()
	nRuns := len(scens) * len(o.Targets)
	_, _ = fmt.Fprintf(w, "loadgen: %d scenarios × %v = %d runs of %v warm-up + %v measured; %d CPUs, GOMAXPROCS %d, %s %s/%s, CLK_TCK %d%s\n",
		len(scens), o.Targets, nRuns, o.Warmup, o.Duration, rep.Machine.NumCPU, rep.Machine.GOMAXPROCS,
		rep.Machine.GoVersion, rep.Machine.GOOS, rep.Machine.GOARCH, ticks, map[bool]string{true: "", false: " (assumed: getconf failed)"}[fromGetconf])

	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	pubFile := filepath.Join(dir, "bench.pub")
	if err := writePublicKey(pubFile, &key.PublicKey); err != nil {
		return nil, err
	}
	kid, err := store.Thumbprint(&jose.JSONWebKey{Key: &key.PublicKey})
	if err != nil {
		return nil, err
	}
	// Assertions stay valid for the whole run (and at least the 10 minutes
	// asked for), within both servers' 1 h limit; the pool is signed again
	// if a long run would outlive them.
	perRun := o.Warmup + o.Duration + o.Drain + 5*time.Second
	lifetime := min(max(10*time.Minute, time.Duration(nRuns)*perRun+7*time.Minute), 59*time.Minute)
	p := &pool{key: key, kid: kid, aud: rep.Audience, lifetime: lifetime}
	sign := func(n int) error {
		signed, took, err := p.ensure(n)
		if err != nil {
			return err
		}
		if signed > 0 {
			rep.AssertionsSigned += signed
			rep.SigningSeconds += took.Seconds()
			_, _ = fmt.Fprintf(w, "signed %d assertions in %.1f s (pool: %d)\n", signed, took.Seconds(), len(p.bodies))
		}
		return nil
	}
	if err := sign(o.CalibrateAssertions); err != nil {
		return nil, err
	}

	per, n, err := measureVerify(p.sample, &key.PublicKey, o.VerifyTime)
	if err != nil {
		return nil, fmt.Errorf("measuring RSA verification: %w", err)
	}
	rep.RSAVerifyMicros, rep.RSAVerifyIterations = micros(per), n
	_, _ = fmt.Fprintf(w, "1 RS256 verification (go-jose, RSA-2048, one goroutine): %.1f µs (%d in %.1f s)\n", rep.RSAVerifyMicros, n, (per * time.Duration(n)).Seconds())

	// Calibration: the request rate of each target at the highest
	// concurrency, to size the pool of pre-signed assertions.
	concs := slices.Clone(o.Concurrency)
	if len(o.Preload) > 0 {
		concs = append(concs, o.PreloadConcurrency)
	}
	maxConc := slices.Max(concs)
	estRate := 0.0
	for _, t := range o.Targets {
		srv, err := startServer(exe, t, pubFile, defaultAuthority, 0)
		if err != nil {
			return nil, fmt.Errorf("calibration: %w", err)
		}
		lr := runLoad(loadParams{url: "http://" + srv.addr + "/token", pid: srv.cmd.Process.Pid, bodies: p.bodies,
			concurrency: maxConc, duration: o.CalibrateTime, drain: o.Drain})
		stopErr := srv.stop()
		rate := 0.0
		if lr.window && lr.windowEnd > lr.windowStart {
			rate = float64(countIn(lr, lr.windowStart, lr.windowEnd)) / (lr.windowEnd - lr.windowStart).Seconds()
		}
		rep.Calibration[t] = rate
		estRate = max(estRate, rate)
		_, _ = fmt.Fprintf(w, "calibration: %s answers %.0f requests/s at concurrency %d\n", t, rate, maxConc)
		if stopErr != nil {
			return nil, fmt.Errorf("calibration: %s: %w: %s", t, stopErr, srv.stderr.String())
		}
	}

	i := 0
	for _, sc := range scens {
		for _, t := range o.Targets {
			i++
			// 1.5 times what the fastest rate seen so far would use, in
			// steps of 1000 so that small rises sign nothing.
			need := int(math.Ceil(estRate*(o.Warmup+o.Duration).Seconds()*1.5)) + 2*sc.Concurrency
			need = min((need+999)/1000*1000, o.MaxAssertions)
			if !p.validFor(o.Warmup + o.Duration + o.Drain + 2*time.Minute) {
				_, _ = fmt.Fprintln(w, "the pre-signed assertions would expire during the next run: signing them again")
				p.reset()
			}
			if err := sign(need); err != nil {
				return nil, err
			}
			r := runOne(exe, pubFile, p, t, sc, o, float64(ticks), rep.RSAVerifyMicros)
			if r.WindowSeconds > 0 {
				estRate = max(estRate, float64(r.Requests)/r.WindowSeconds)
			}
			rep.Runs = append(rep.Runs, *r)
			printRun(w, i, nRuns, r)
		}
	}
	rep.Comparisons = compare(rep.Runs)
	for _, r := range rep.Runs {
		for _, pr := range r.Problems {
			rep.Problems = append(rep.Problems, fmt.Sprintf("%s: %s", runName(&r), pr))
		}
	}
	rep.OK = len(rep.Problems) == 0
	rep.WallSeconds = time.Since(started).Seconds()
	printReport(w, rep)
	return rep, nil
}

// runOne starts a fresh server for target with sc's preload and runs sc's
// load against it.
func runOne(exe, pubFile string, p *pool, target string, sc scenario, o *options, ticks, verifyMicros float64) *runResult {
	r := &runResult{Target: target, Concurrency: sc.Concurrency, PreloadedJTIs: sc.Preload,
		PlannedSeconds: o.Duration.Seconds(), AssertionsAvailable: len(p.bodies),
		Outcomes: phases{Warmup: map[string]int{}, Window: map[string]int{}, AfterWindow: map[string]int{}}}
	t0 := time.Now()
	srv, err := startServer(exe, target, pubFile, defaultAuthority, sc.Preload)
	if err != nil {
		r.Problems = append(r.Problems, err.Error())
		return r
	}
	r.ServerStartSeconds = time.Since(t0).Seconds()
	pid := srv.cmd.Process.Pid
	lr := runLoad(loadParams{url: "http://" + srv.addr + "/token", pid: pid, bodies: p.bodies,
		concurrency: sc.Concurrency, warmup: o.Warmup, duration: o.Duration, drain: o.Drain})
	if rss, err := procRSSBytes(pid); err == nil {
		r.ServerRSSMiB = float64(rss) / (1 << 20)
	} else {
		r.Problems = append(r.Problems, fmt.Sprintf("reading the server's RSS: %v", err))
	}
	if err := srv.stop(); err != nil {
		r.Problems = append(r.Problems, err.Error())
	}
	r.ServerStderr = strings.TrimSpace(srv.stderr.String())
	if r.ServerStderr != "" {
		r.Notes = append(r.Notes, "the server wrote to stderr (see below)")
	}
	r.AssertionsUsed = lr.used
	if lr.cpuErr != nil {
		r.Problems = append(r.Problems, fmt.Sprintf("reading the server's CPU time: %v", lr.cpuErr))
	}
	if lr.ranOut {
		r.RanOutOfAssertions, r.RanOutAfterSeconds = true, lr.ranOutAt.Seconds()
		if lr.window {
			r.Notes = append(r.Notes, fmt.Sprintf("ran out of its %d pre-signed assertions after %.2f s: the window was %.2f s instead of %.2f s",
				len(p.bodies), lr.ranOutAt.Seconds(), (lr.windowEnd-lr.windowStart).Seconds(), o.Duration.Seconds()))
		} else {
			r.Problems = append(r.Problems, fmt.Sprintf("ran out of its %d pre-signed assertions during the warm-up: nothing measured (raise -max-assertions)", len(p.bodies)))
		}
	}

	var lats []time.Duration
	r.JTIsAtEnd = sc.Preload
	for _, rec := range lr.records {
		switch {
		case rec.end < lr.windowStart:
			r.Outcomes.Warmup[rec.outcome]++
		case rec.end <= lr.windowEnd:
			r.Outcomes.Window[rec.outcome]++
			r.Requests++
			lats = append(lats, rec.lat)
			if rec.outcome == outcomeOK {
				r.Tokens++
			}
		default:
			r.Outcomes.AfterWindow[rec.outcome]++
		}
		if rec.outcome == outcomeOK {
			r.JTIsAtEnd++
		}
		switch {
		case rec.outcome == outcomeCanceled:
			r.Canceled++
			continue
		case rec.outcome != outcomeOK:
			r.Failed++
			if strings.HasPrefix(rec.outcome, "5") {
				r.ServerErrors++
			}
		}
		r.Completed++
	}
	if len(lr.samples) > 0 {
		r.ErrorSamples = lr.samples
		delete(r.ErrorSamples, outcomeCanceled)
	}
	if lr.window {
		r.WindowSeconds = (lr.windowEnd - lr.windowStart).Seconds()
		if r.WindowSeconds > 0 {
			r.TokensPerSecond = float64(r.Tokens) / r.WindowSeconds
		}
		r.ServerCPUSeconds = float64(lr.cpu1-lr.cpu0) / ticks
		if r.Tokens > 0 {
			r.ServerCPUMicrosPerToken = r.ServerCPUSeconds * 1e6 / float64(r.Tokens)
			if verifyMicros > 0 {
				r.RSAVerifiesPerToken = r.ServerCPUMicrosPerToken / verifyMicros
			}
		}
		if r.Requests > 0 {
			r.LoadgenCPUMicrosPerRequest = float64(lr.self1-lr.self0) / ticks * 1e6 / float64(r.Requests)
		}
		slices.Sort(lats)
		r.LatencyMs = latency{P50: ms(percentile(lats, 0.50)), P90: ms(percentile(lats, 0.90)),
			P99: ms(percentile(lats, 0.99)), Max: ms(percentile(lats, 1))}
	}
	if r.Completed > 0 {
		r.ErrorRate = float64(r.Failed) / float64(r.Completed)
	}
	if r.ServerErrors > 0 {
		r.Problems = append(r.Problems, fmt.Sprintf("%d answers with a 5xx status", r.ServerErrors))
	}
	if r.ErrorRate > 0.01 {
		r.Problems = append(r.Problems, fmt.Sprintf("%.1f%% of the requests failed (%d of %d)", 100*r.ErrorRate, r.Failed, r.Completed))
	}
	if r.Canceled > 0 {
		r.Notes = append(r.Notes, fmt.Sprintf("%d requests were still in flight %v after the window and were abandoned", r.Canceled, o.Drain))
	}
	if lr.window && r.Tokens == 0 {
		r.Notes = append(r.Notes, "no token was issued in the measured window")
	}
	return r
}

// countIn counts the requests completed in [from, to].
func countIn(lr *loadResult, from, to time.Duration) int {
	n := 0
	for _, rec := range lr.records {
		if rec.end >= from && rec.end <= to && rec.outcome != outcomeCanceled {
			n++
		}
	}
	return n
}

// percentile returns the nearest-rank percentile q of sorted.
func percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

func ms(d time.Duration) float64     { return float64(d) / float64(time.Millisecond) }
func micros(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

// compare pairs ours and stock per scenario, in the order of the runs.
func compare(runs []runResult) []comparison {
	var out []comparison
	for i := range runs {
		o := &runs[i]
		if o.Target != targetOurs {
			continue
		}
		for j := range runs {
			s := &runs[j]
			if s.Target != targetStock || s.Concurrency != o.Concurrency || s.PreloadedJTIs != o.PreloadedJTIs {
				continue
			}
			c := comparison{Concurrency: o.Concurrency, PreloadedJTIs: o.PreloadedJTIs,
				OursTokensPerSecond: o.TokensPerSecond, StockTokensPerSecond: s.TokensPerSecond,
				OursCPUMicros: o.ServerCPUMicrosPerToken, StockCPUMicros: s.ServerCPUMicrosPerToken}
			if s.TokensPerSecond > 0 {
				c.TokensPerSecondRatio = o.TokensPerSecond / s.TokensPerSecond
			}
			if o.ServerCPUMicrosPerToken > 0 && s.ServerCPUMicrosPerToken > 0 {
				c.CPURatio = o.ServerCPUMicrosPerToken / s.ServerCPUMicrosPerToken
			}
			out = append(out, c)
		}
	}
	return out
}
