package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestQuickRun builds loadgen and runs the whole flow in -quick mode with
// tiny durations against both targets, each server a subprocess.
func TestQuickRun(t *testing.T) {
	if testing.Short() {
		t.Skip("builds loadgen and runs servers as subprocesses")
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command to build loadgen with")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "loadgen")
	build := exec.Command(goBin, "build", "-o", bin, ".")
	out, err := build.CombinedOutput()
	require.NoError(t, err, "go build: %s", out)

	jsonPath := filepath.Join(dir, "results.json")
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "-quick", "-duration", "300ms", "-warmup", "100ms",
		"-concurrency", "1,4", "-preload", "0,1000", "-preload-concurrency", "4", "-json", jsonPath)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	require.NoError(t, err, "loadgen failed\nstdout:\n%s\nstderr:\n%s", stdout.String(), stderr.String())
	t.Logf("loadgen output:\n%s", stdout.String())

	text := stdout.String()
	assert.Contains(t, text, "ours/stock")
	assert.Contains(t, text, "vs 1 RSA verify")
	assert.Contains(t, text, "PASS")

	data, err := os.ReadFile(jsonPath)
	require.NoError(t, err)
	var rep report
	require.NoError(t, json.Unmarshal(data, &rep))
	assert.True(t, rep.OK, "problems: %v", rep.Problems)
	assert.Positive(t, rep.RSAVerifyMicros)

	want := map[string]bool{}
	for _, target := range []string{targetOurs, targetStock} {
		for _, sc := range []scenario{{1, 0}, {4, 0}, {4, 1000}} {
			want[fmt.Sprintf("%s/%d/%d", target, sc.Concurrency, sc.Preload)] = true
		}
	}
	got := map[string]bool{}
	for _, r := range rep.Runs {
		name := fmt.Sprintf("%s/%d/%d", r.Target, r.Concurrency, r.PreloadedJTIs)
		got[name] = true
		assert.Positive(t, r.TokensPerSecond, "%s issued no token", name)
		assert.Zero(t, r.ServerErrors, "%s: 5xx answers", name)
		assert.Positive(t, r.ServerCPUMicrosPerToken, "%s: no CPU per token", name)
		assert.Positive(t, r.ServerRSSMiB, "%s: no RSS", name)
		assert.LessOrEqual(t, r.ErrorRate, 0.01, "%s: %v", name, r.Outcomes)
		assert.Positive(t, r.LatencyMs.P50, "%s: no latency", name)
	}
	assert.Equal(t, want, got, "every scenario against every target, once")
	assert.Len(t, rep.Runs, len(want))
	assert.Len(t, rep.Comparisons, 3)
}

// TestRunLoadShowsFailures runs the load against an in-process server that
// fails some requests, and checks that every request is accounted for,
// by outcome, with a sample of each error.
func TestRunLoadShowsFailures(t *testing.T) {
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch n.Add(1) % 10 {
		case 3:
			w.WriteHeader(http.StatusInternalServerError)
			_, _ = w.Write([]byte(`{"error":"server_error","error_description":"boom"}`))
		case 5:
			w.WriteHeader(http.StatusBadRequest)
			_, _ = w.Write([]byte(`{"error":"invalid_grant","error_description":"replayed"}`))
		case 7:
			w.WriteHeader(http.StatusBadGateway)
			_, _ = w.Write([]byte(`<html>bad gateway</html>`))
		case 8:
			_, _ = w.Write([]byte(`{"token_type":"bearer"}`))
		default:
			_, _ = w.Write([]byte(`{"access_token":"x","token_type":"bearer"}`))
		}
	}))
	defer srv.Close()
	bodies := make([][]byte, 500)
	for i := range bodies {
		bodies[i] = []byte("grant_type=x")
	}
	lr := runLoad(loadParams{url: srv.URL, pid: os.Getpid(), bodies: bodies, concurrency: 4,
		warmup: 0, duration: 5 * time.Second, drain: time.Second})
	require.True(t, lr.window)
	assert.True(t, lr.ranOut, "500 bodies last less than 5 s")
	assert.Equal(t, 500, lr.used)
	require.Len(t, lr.records, 500, "every request is recorded")
	byOutcome := map[string]int{}
	for _, r := range lr.records {
		byOutcome[r.outcome]++
	}
	assert.Equal(t, map[string]int{
		outcomeOK:                     300,
		"500 server_error":            50,
		"400 invalid_grant":           50,
		"502 without an OAuth error":  50,
		"200 without an access token": 50,
	}, byOutcome)
	assert.Equal(t, "boom", lr.samples["500 server_error"])
	assert.Equal(t, "replayed", lr.samples["400 invalid_grant"])
	assert.Contains(t, lr.samples["502 without an OAuth error"], "bad gateway")
}

// TestRunLoadTransportErrors: a server that is gone yields transport
// errors, each counted.
func TestRunLoadTransportErrors(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close()
	lr := runLoad(loadParams{url: url, pid: os.Getpid(), bodies: make([][]byte, 20), concurrency: 2,
		duration: 2 * time.Second, drain: time.Second})
	require.Len(t, lr.records, 20)
	for _, r := range lr.records {
		assert.True(t, strings.HasPrefix(r.outcome, "transport error: "), r.outcome)
	}
}

func TestParseStatCPU(t *testing.T) {
	// The command name may hold spaces and parentheses.
	stat := "1234 (a) b (c)) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 37 0 0 20 0 9 0 100 0 0\n"
	ticks, err := parseStatCPU([]byte(stat))
	require.NoError(t, err)
	assert.EqualValues(t, 287, ticks)

	_, err = parseStatCPU([]byte("1 (x) S 1 2"))
	assert.Error(t, err)

	self, err := procCPUTicks(os.Getpid())
	require.NoError(t, err)
	assert.GreaterOrEqual(t, self, int64(0))
}

func TestParseVmRSS(t *testing.T) {
	rss, err := parseVmRSS([]byte("Name:\tx\nVmHWM:\t  2048 kB\nVmRSS:\t  1024 kB\n"))
	require.NoError(t, err)
	assert.EqualValues(t, 1<<20, rss)
	_, err = parseVmRSS([]byte("Name:\tx\n"))
	assert.Error(t, err)
	self, err := procRSSBytes(os.Getpid())
	require.NoError(t, err)
	assert.Positive(t, self)
}

func TestScenarios(t *testing.T) {
	o, err := parseOptions(nil, &bytes.Buffer{})
	require.NoError(t, err)
	assert.Equal(t, []scenario{{1, 0}, {16, 0}, {64, 0}, {16, 100000}, {16, 1000000}}, o.scenarios())
	assert.Equal(t, []string{targetOurs, targetStock}, o.Targets)
	assert.Equal(t, 5*time.Second, o.Duration)

	o, err = parseOptions([]string{"-quick", "-targets", "stock", "-preload", ""}, &bytes.Buffer{})
	require.NoError(t, err)
	assert.Equal(t, time.Second, o.Duration)
	assert.Equal(t, []scenario{{1, 0}, {16, 0}, {64, 0}}, o.scenarios())
	assert.Equal(t, []string{targetStock}, o.Targets)

	o, err = parseOptions([]string{"-duration", "30s"}, &bytes.Buffer{})
	require.NoError(t, err)
	assert.LessOrEqual(t, o.Warmup+o.Duration+o.Drain, 15*time.Second, "capped by -max-scenario-time")

	_, err = parseOptions([]string{"-targets", "other"}, &bytes.Buffer{})
	assert.Error(t, err)
	_, err = parseOptions([]string{"-concurrency", "0"}, &bytes.Buffer{})
	assert.Error(t, err)
}

func TestPercentile(t *testing.T) {
	var d []time.Duration
	for i := 1; i <= 100; i++ {
		d = append(d, time.Duration(i)*time.Millisecond)
	}
	assert.Equal(t, 50*time.Millisecond, percentile(d, 0.5))
	assert.Equal(t, 99*time.Millisecond, percentile(d, 0.99))
	assert.Equal(t, 100*time.Millisecond, percentile(d, 1))
	assert.Zero(t, percentile(nil, 0.5))
}

// TestPrintRunShowsEveryFailure: each failed outcome of each phase is
// printed with its count and sample, and problems are flagged.
func TestPrintRunShowsEveryFailure(t *testing.T) {
	r := &runResult{Target: targetStock, Concurrency: 16, PreloadedJTIs: 1000, Tokens: 10, TokensPerSecond: 2,
		Outcomes: phases{
			Warmup:      map[string]int{outcomeOK: 3, "400 invalid_grant": 1},
			Window:      map[string]int{outcomeOK: 10, "500 server_error": 2},
			AfterWindow: map[string]int{"transport error: EOF": 1, outcomeCanceled: 4},
		},
		ErrorSamples: map[string]string{"400 invalid_grant": "replayed", "500 server_error": "boom"},
		Problems:     []string{"2 answers with a 5xx status"},
	}
	var b bytes.Buffer
	printRun(&b, 1, 1, r)
	out := b.String()
	for _, want := range []string{
		`warm-up: 400 invalid_grant ×1 ("replayed")`,
		`window: 500 server_error ×2 ("boom")`,
		"after the window: transport error: EOF ×1",
		"after the window: " + outcomeCanceled + " ×4",
		"errors: 8 (",
		"PROBLEM: 2 answers with a 5xx status",
	} {
		assert.Contains(t, out, want)
	}
	assert.NotContains(t, out, "200 ×")
}
