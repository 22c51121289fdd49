package integration_test

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/jwtbearer/jwtbearer/handler/handlertest"
)

// TestBinaryReload drives the hot reload of the trust relationships in the
// built jwtbearer command: on SIGHUP, and with trust_reload.watch.
func TestBinaryReload(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the jwtbearer binary")
	}
	t.Parallel()
	bin := buildBinary(t)

	t.Run("SIGHUP", func(t *testing.T) {
		t.Parallel()
		r := startReloadServe(t, bin, "")
		r.check(t, map[string]int{"K": 200, "A": 200, "B": 400})

		r.writeTrust(t, "B")
		require.NoError(t, r.p.cmd.Process.Signal(syscall.SIGHUP))
		r.waitOK(t, "B")
		r.check(t, map[string]int{"K": 200, "A": 400, "B": 200})
		// Logs are written out every 100 ms.
		r.waitStderr(t, "trust relationships reloaded")

		// An invalid trust file: refused, logged, and the set in force stays.
		replaceFileAtomically(t, r.trust, "- {id: b, issuer: B, subject: s, scopez: [read], keys: [{file: b.pub}]}\n")
		require.NoError(t, r.p.cmd.Process.Signal(syscall.SIGHUP))
		r.waitStderr(t, "trust reload refused")
		assert.Contains(t, r.p.stderr.String(), "field scopez not found")
		r.check(t, map[string]int{"K": 200, "A": 400, "B": 200})

		stopGracefully(t, r.p)
	})
	t.Run("watch", func(t *testing.T) {
		t.Parallel()
		r := startReloadServe(t, bin, "trust_reload: {watch: true, interval: 100ms}\n")
		r.check(t, map[string]int{"K": 200, "A": 200, "B": 400})

		r.writeTrust(t, "B")
		r.waitOK(t, "B")
		r.check(t, map[string]int{"K": 200, "A": 400, "B": 200})

		replaceFileAtomically(t, r.trust, "- {id: b, issuer: B\n")
		r.waitStderr(t, "trust reload refused")
		r.check(t, map[string]int{"K": 200, "B": 200})

		stopGracefully(t, r.p)
	})
}

// reloadServe is a served binary whose configuration trusts issuer K in
// trust: and, at first, issuer A in its trust file.
type reloadServe struct {
	p     *proc
	ts    *testServer
	trust string
	keys  map[string]*handlertest.Key
}

func startReloadServe(t *testing.T, bin, extra string) *reloadServe {
	t.Helper()
	dir := t.TempDir()
	r := &reloadServe{trust: filepath.Join(dir, "trust.yaml"), keys: map[string]*handlertest.Key{}}
	for _, name := range []string{"K", "A", "B"} {
		k := handlertest.NewECKey()
		r.keys[name] = k
		require.NoError(t, os.WriteFile(filepath.Join(dir, strings.ToLower(name)+".pub"), k.PublicKeyPEM(), 0o600))
	}
	r.writeTrust(t, "A")
	configPath := filepath.Join(dir, "config.yaml")
	p, addr := startServe(t, bin, func(addr string) []string {
		config := fmt.Sprintf(`listen: %s
issuer: http://%s
trust_file: trust.yaml
trust:
  - {id: k, issuer: K, subject: s, scopes: [read], keys: [{file: k.pub}]}
%s`, addr, addr, extra)
		require.NoError(t, os.WriteFile(configPath, []byte(config), 0o600))
		return []string{"serve", "-config", configPath, "-log-level", "info"}
	})
	r.p = p
	r.ts = &testServer{Issuer: "http://" + addr, TokenURL: "http://" + addr + "/token", HTTP: newHTTPClient()}
	return r
}

// writeTrust replaces the trust file with one trusting issuer name.
func (r *reloadServe) writeTrust(t *testing.T, name string) {
	t.Helper()
	replaceFileAtomically(t, r.trust, fmt.Sprintf("- {id: %s, issuer: %s, subject: s, scopes: [read], keys: [{file: %s.pub}]}\n",
		strings.ToLower(name), name, strings.ToLower(name)))
}

// replaceFileAtomically writes a temporary file and renames it over path.
func replaceFileAtomically(t *testing.T, path, data string) {
	t.Helper()
	require.NoError(t, os.WriteFile(path+".tmp", []byte(data), 0o600))
	require.NoError(t, os.Rename(path+".tmp", path))
}

func (r *reloadServe) redeem(t *testing.T, name string) *response {
	t.Helper()
	return r.ts.token(t, grant(r.keys[name].Sign(claims(name, "s", r.ts.TokenURL))))
}

// check redeems an assertion of each issuer: 200 must be a token, 400 an
// invalid_grant.
func (r *reloadServe) check(t *testing.T, want map[string]int) {
	t.Helper()
	for name, status := range want {
		resp := r.redeem(t, name)
		if status == http.StatusOK {
			requireToken(t, resp)
			continue
		}
		requireError(t, resp, status, "invalid_grant")
	}
}

// waitOK polls until issuer name obtains a token, for at most 5 s.
func (r *reloadServe) waitOK(t *testing.T, name string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for r.redeem(t, name).Status != http.StatusOK {
		if time.Now().After(deadline) || r.p.exited() {
			t.Fatalf("%s refused after 5s (exited %v)\nstderr: %s", name, r.p.exited(), r.p.stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitStderr polls until the process's log holds s, for at most 5 s.
func (r *reloadServe) waitStderr(t *testing.T, s string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(r.p.stderr.String(), s) {
		if time.Now().After(deadline) || r.p.exited() {
			t.Fatalf("no %q in the log after 5s (exited %v)\nstderr: %s", s, r.p.exited(), r.p.stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}
