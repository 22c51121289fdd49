package integration_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestBinary drives the built jwtbearer command as a user would: keygen,
// serve (with a config file, and the demo), token and mint, and SIGTERM.
func TestBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the jwtbearer binary")
	}
	t.Parallel()
	bin := buildBinary(t)

	t.Run("config file", func(t *testing.T) {
		t.Parallel()
		testBinaryWithConfig(t, bin)
	})
	t.Run("demo", func(t *testing.T) {
		t.Parallel()
		testBinaryDemo(t, bin)
	})
}

func testBinaryWithConfig(t *testing.T, bin string) {
	dir := t.TempDir()
	key := filepath.Join(dir, "id_rsa")

	out := runCmd(t, bin, "keygen", "-out", key)
	require.Equal(t, 0, out.code, "keygen: %s", out.stderr)
	assert.Contains(t, out.stdout, "kid:")
	for _, f := range []string{key, key + ".pub"} {
		_, err := os.Stat(f)
		require.NoError(t, err)
	}

	configPath := filepath.Join(dir, "config.yaml")
	p, addr := startServe(t, bin, func(addr string) []string {
		config := fmt.Sprintf(`listen: %s
issuer: http://%s
jwt_bearer:
  require_jti: true
trust:
  - id: test-client-user1
    issuer: TestClient
    subject: User1
    scopes: [read, write]
    keys:
      - file: id_rsa.pub
`, addr, addr)
		require.NoError(t, os.WriteFile(configPath, []byte(config), 0o600))
		return []string{"serve", "-config", configPath, "-log-level", "warn"}
	})
	issuer := "http://" + addr

	t.Run("token", func(t *testing.T) {
		out := runCmd(t, bin, "token", "-url", issuer+"/token", "-key", key, "-iss", "TestClient", "-sub", "User1", "-scope", "read")
		require.Equal(t, 0, out.code, "stdout: %s\nstderr: %s", out.stdout, out.stderr)
		var tok tokenResponse
		require.NoError(t, json.Unmarshal([]byte(out.stdout), &tok), "stdout: %s", out.stdout)
		assert.NotEmpty(t, tok.AccessToken)
		assert.Equal(t, "read", tok.Scope)
		assert.Nil(t, tok.RefreshToken)
	})
	t.Run("token with the scope as a claim", func(t *testing.T) {
		out := runCmd(t, bin, "token", "-url", issuer+"/token", "-key", key, "-iss", "TestClient", "-sub", "User1",
			"-scope", "read write", "-scope-claim")
		require.Equal(t, 0, out.code, "stdout: %s\nstderr: %s", out.stdout, out.stderr)
		assert.Contains(t, out.stdout, `"scope": "read write"`)
	})
	t.Run("token refused", func(t *testing.T) {
		out := runCmd(t, bin, "token", "-url", issuer+"/token", "-key", key, "-iss", "TestClient", "-sub", "User2")
		assert.Equal(t, 1, out.code, "stdout: %s\nstderr: %s", out.stdout, out.stderr)
		assert.Contains(t, out.stderr, "invalid_grant")
		assert.Empty(t, out.stdout)
	})
	t.Run("mint piped into a POST", func(t *testing.T) {
		out := runCmd(t, bin, "mint", "-key", key, "-iss", "TestClient", "-sub", "User1", "-aud", issuer+"/token")
		require.Equal(t, 0, out.code, "stderr: %s", out.stderr)
		assertion := strings.TrimSpace(out.stdout)
		ts := &testServer{Issuer: issuer, TokenURL: issuer + "/token", HTTP: newHTTPClient()}
		requireToken(t, ts.token(t, grant(assertion)))
		// mint puts a random jti in: the same assertion is single-use.
		requireError(t, ts.token(t, grant(assertion)), 400, "invalid_grant")
	})

	stopGracefully(t, p)
}

func testBinaryDemo(t *testing.T, bin string) {
	demoDir := filepath.Join(t.TempDir(), "demo")
	p, addr := startServe(t, bin, func(addr string) []string {
		return []string{"serve", "-listen", addr, "-demo-dir", demoDir, "-log-level", "warn"}
	})
	stdout := p.waitStdout(t, "Stop with Ctrl-C", 10*time.Second)

	var tokenLine, curlLine string
	for _, line := range strings.Split(stdout, "\n") {
		switch {
		case strings.Contains(line, " token -url "):
			tokenLine = line
		case strings.Contains(line, "$(") && strings.Contains(line, " mint "):
			curlLine = line
		}
	}
	require.NotEmpty(t, tokenLine, "no token command printed:\n%s", stdout)
	args := strings.Fields(tokenLine)
	assertSameFile(t, bin, args[0])
	assert.Contains(t, tokenLine, "-url http://"+addr+"/token")

	t.Run("printed token command", func(t *testing.T) {
		out := runCmd(t, args[0], args[1:]...)
		require.Equal(t, 0, out.code, "%s\nstdout: %s\nstderr: %s", tokenLine, out.stdout, out.stderr)
		var tok tokenResponse
		require.NoError(t, json.Unmarshal([]byte(out.stdout), &tok), "stdout: %s", out.stdout)
		assert.NotEmpty(t, tok.AccessToken)
		assert.Equal(t, "read", tok.Scope)
	})
	t.Run("printed mint command", func(t *testing.T) {
		require.NotEmpty(t, curlLine, "no curl/mint command printed:\n%s", stdout)
		inner := curlLine[strings.Index(curlLine, "$(")+2:]
		inner = inner[:strings.LastIndex(inner, ")")]
		margs := strings.Fields(inner)
		assertSameFile(t, bin, margs[0])
		out := runCmd(t, margs[0], margs[1:]...)
		require.Equal(t, 0, out.code, "%s\nstderr: %s", inner, out.stderr)
		ts := &testServer{Issuer: "http://" + addr, TokenURL: "http://" + addr + "/token", HTTP: newHTTPClient()}
		requireToken(t, ts.token(t, grant(strings.TrimSpace(out.stdout))))
	})

	stopGracefully(t, p)
}

// buildBinary builds ./server/cmd/jwtbearer into a temporary folder.
func buildBinary(t *testing.T) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	gomod, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	require.NoError(t, err)
	root := filepath.Dir(strings.TrimSpace(string(gomod)))
	require.FileExists(t, filepath.Join(root, "server", "cmd", "jwtbearer", "main.go"))

	bin := filepath.Join(t.TempDir(), "jwtbearer")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./server/cmd/jwtbearer")
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "go build: %s", out)
	return bin
}

// cmdResult is the outcome of a finished command.
type cmdResult struct {
	stdout, stderr string
	code           int
}

// runCmd runs a command to completion, bounded by 30 seconds.
func runCmd(t *testing.T, name string, args ...string) cmdResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	code := 0
	switch {
	case errors.As(err, &exit):
		code = exit.ExitCode()
	case err != nil:
		t.Fatalf("%s %v: %v", name, args, err)
	}
	require.NoError(t, ctx.Err(), "%s %v timed out", name, args)
	return cmdResult{stdout: stdout.String(), stderr: stderr.String(), code: code}
}

// syncBuffer is a bytes.Buffer safe for one writer and concurrent readers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// proc is a running subprocess.
type proc struct {
	cmd            *exec.Cmd
	stdout, stderr syncBuffer
	done           chan struct{}
	err            error // set when done is closed
}

// startProc starts a subprocess that is killed at cleanup if still running.
func startProc(t *testing.T, name string, args ...string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(name, args...), done: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = &p.stdout, &p.stderr
	require.NoError(t, p.cmd.Start())
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// waitStdout waits until stdout contains s and returns it.
func (p *proc) waitStdout(t *testing.T, s string, timeout time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		out := p.stdout.String()
		if strings.Contains(out, s) {
			return out
		}
		if p.exited() || time.Now().After(deadline) {
			t.Fatalf("no %q on stdout (exited %v)\nstdout: %s\nstderr: %s", s, p.exited(), out, p.stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// startServe starts a server on a free 127.0.0.1 port and waits for its
// health check. args gets the address to listen on; another port is tried
// when the chosen one was taken in between.
func startServe(t *testing.T, bin string, args func(addr string) []string) (*proc, string) {
	t.Helper()
	for attempt := 0; ; attempt++ {
		addr := freeAddr(t)
		p := startProc(t, bin, args(addr)...)
		err := waitHealthy(p, "http://"+addr+"/healthz", 20*time.Second)
		if err == nil {
			return p, addr
		}
		if attempt < 2 && p.exited() && strings.Contains(p.stderr.String(), "address already in use") {
			continue
		}
		t.Fatalf("server did not come up: %v\nstdout: %s\nstderr: %s", err, p.stdout.String(), p.stderr.String())
	}
}

// freeAddr returns a 127.0.0.1 address whose port was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	return addr
}

func waitHealthy(p *proc, url string, timeout time.Duration) error {
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(timeout)
	for {
		if p.exited() {
			return fmt.Errorf("exited: %v", p.err)
		}
		resp, err := client.Get(url)
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("GET %s: %s", url, resp.Status)
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stopGracefully sends SIGTERM and expects exit status 0 within 10 s.
func stopGracefully(t *testing.T, p *proc) {
	t.Helper()
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		t.Fatalf("no exit within 10s of SIGTERM\nstderr: %s", p.stderr.String())
	}
	require.NoError(t, p.err, "exit status after SIGTERM; stderr: %s", p.stderr.String())
	assert.Equal(t, 0, p.cmd.ProcessState.ExitCode())
}

// assertSameFile checks that the printed command is the binary under test.
func assertSameFile(t *testing.T, want, got string) {
	t.Helper()
	wi, err := os.Stat(want)
	require.NoError(t, err)
	gi, err := os.Stat(got)
	require.NoError(t, err, "printed command %q is not a file", got)
	assert.True(t, os.SameFile(wi, gi), "printed command %q is not the binary %q", got, want)
}
