package server_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/jwtbearer/jwtbearer/handler/handlertest"
	"github.com/jwtbearer/jwtbearer/server"
	"github.com/jwtbearer/jwtbearer/store"
)

const reloadIssuer = "https://as.example"

// lockedBuffer is a bytes.Buffer safe for concurrent writers and readers,
// for a logger's output.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// records returns the JSON log records whose level and message are these.
func (b *lockedBuffer) records(t *testing.T, level, msg string) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(b.String()))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var m map[string]any
		require.NoError(t, json.Unmarshal(sc.Bytes(), &m), "log line %s", sc.Bytes())
		if m["level"] == level && strings.HasPrefix(m["msg"].(string), msg) {
			out = append(out, m)
		}
	}
	return out
}

// replaceFile writes data to path as a deployment tool should: to a
// temporary file in the same folder, renamed over path.
func replaceFile(t *testing.T, path, data string) {
	t.Helper()
	tmp := path + ".tmp"
	require.NoError(t, os.WriteFile(tmp, []byte(data), 0o600))
	require.NoError(t, os.Rename(tmp, path))
}

// reloadFixture is a server loaded from dir/config.yaml, whose trust file
// is dir/trust.yaml, with key files dir/NAME.pub for the keys in keys.
type reloadFixture struct {
	dir, config, trust string
	keys               map[string]*handlertest.Key
	srv                *server.Server
	logs               *lockedBuffer
}

// reloadKeys are made once: a P-256 key is cheap, but not free under the
// race detector.
var reloadKeys = sync.OnceValue(func() map[string]*handlertest.Key {
	m := map[string]*handlertest.Key{}
	for _, name := range []string{"a", "a2", "b", "c", "c2", "p"} {
		m[name] = handlertest.NewECKey()
	}
	return m
})

// rel is a relationship entry in YAML flow style: id and issuer name,
// subject "s", trusted with key file keyName.pub.
func rel(id, issuer, keyName string) string {
	return fmt.Sprintf("  - {id: %s, issuer: %s, subject: s, scopes: [read], keys: [{file: %s.pub}]}\n", id, issuer, keyName)
}

// configYAML is the configuration with these trust: entries (rel lines)
// and trust_file: trust.yaml, then extra.
func configYAML(extra string, trust ...string) string {
	s := "issuer: " + reloadIssuer + "\ntrust_file: trust.yaml\n" + extra
	if len(trust) > 0 {
		s += "trust:\n" + strings.Join(trust, "")
	}
	return s
}

// trustYAML is a trust file with these entries (rel lines).
func trustYAML(entries ...string) string {
	if len(entries) == 0 {
		return "[]\n"
	}
	return strings.Join(entries, "")
}

func newReloadFixture(t *testing.T, config, trust string) *reloadFixture {
	t.Helper()
	dir := t.TempDir()
	f := &reloadFixture{dir: dir, config: filepath.Join(dir, "config.yaml"), trust: filepath.Join(dir, "trust.yaml"),
		keys: reloadKeys(), logs: &lockedBuffer{}}
	for name, k := range f.keys {
		writePublicPEM(t, dir, name+".pub", k)
	}
	require.NoError(t, os.WriteFile(f.config, []byte(config), 0o600))
	require.NoError(t, os.WriteFile(f.trust, []byte(trust), 0o600))
	cfg, err := server.LoadConfig(f.config)
	require.NoError(t, err)
	logger := slog.New(slog.NewJSONHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	f.srv, err = server.New(t.Context(), cfg, server.WithLogger(logger))
	require.NoError(t, err)
	t.Cleanup(func() { _ = f.srv.Close() })
	return f
}

// status redeems a fresh assertion from issuer about "s", signed with the
// named key, and returns the HTTP status and body.
func (f *reloadFixture) status(t *testing.T, issuer, keyName string) (int, string) {
	t.Helper()
	return tokenStatus(t.Context(), f.srv.Handler(), f.keys[keyName], issuer)
}

func tokenStatus(ctx context.Context, h http.Handler, k *handlertest.Key, issuer string) (int, string) {
	a := k.Sign(handlertest.Claims(issuer, "s", reloadIssuer+"/token", time.Now()))
	form := url.Values{"grant_type": {jwtBearer}, "assertion": {a}}
	req := httptest.NewRequestWithContext(ctx, http.MethodPost, "/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	return w.Code, w.Body.String()
}

// expect maps "ISSUER/key" to the status a token request must get.
type expect map[string]int

func (f *reloadFixture) check(t *testing.T, want expect) {
	t.Helper()
	for who, status := range want {
		iss, key, _ := strings.Cut(who, "/")
		got, body := f.status(t, iss, key)
		require.Equalf(t, status, got, "%s: body %s", who, body)
		if status == http.StatusBadRequest {
			assert.Contains(t, body, "invalid_grant", who)
		}
	}
}

// ids lists the relationships in the store.
func (f *reloadFixture) ids(t *testing.T) []string {
	t.Helper()
	ts, err := f.srv.Store().ListTrust(t.Context())
	require.NoError(t, err)
	out := []string{}
	for _, tr := range ts {
		out = append(out, tr.ID)
	}
	return out
}

func TestReloadAppliesTrustChanges(t *testing.T) {
	f := newReloadFixture(t, configYAML("", rel("a", "A", "a")), trustYAML(rel("b", "B", "b")))
	f.check(t, expect{"A/a": 200, "B/b": 200, "C/c": 400})
	require.Equal(t, []string{"cfg-a", "cfg-b"}, f.ids(t))

	for _, step := range []struct {
		name          string
		config, trust string
		want          expect
		ids           []string
	}{
		{"adds one", configYAML("", rel("a", "A", "a")), trustYAML(rel("b", "B", "b"), rel("c", "C", "c")),
			expect{"A/a": 200, "B/b": 200, "C/c": 200}, []string{"cfg-a", "cfg-b", "cfg-c"}},
		{"removes one", configYAML("", rel("a", "A", "a")), trustYAML(rel("c", "C", "c")),
			expect{"A/a": 200, "B/b": 400, "C/c": 200}, []string{"cfg-a", "cfg-c"}},
		{"changes a key", configYAML("", rel("a", "A", "a2")), trustYAML(rel("c", "C", "c")),
			expect{"A/a": 400, "A/a2": 200, "C/c": 200}, []string{"cfg-a", "cfg-c"}},
		{"moves one from trust to the trust file", configYAML(""), trustYAML(rel("a", "A", "a2"), rel("c", "C", "c")),
			expect{"A/a": 400, "A/a2": 200, "C/c": 200}, []string{"cfg-a", "cfg-c"}},
		{"empties both", configYAML(""), trustYAML(),
			expect{"A/a2": 400, "C/c": 400}, []string{}},
	} {
		t.Run(step.name, func(t *testing.T) {
			replaceFile(t, f.config, step.config)
			replaceFile(t, f.trust, step.trust)
			require.NoError(t, f.srv.Reload(t.Context()))
			f.check(t, step.want)
			assert.Equal(t, step.ids, f.ids(t))
			infos := f.logs.records(t, "INFO", "trust relationships reloaded")
			require.NotEmpty(t, infos)
			assert.EqualValues(t, len(step.ids), infos[len(infos)-1]["relationships"])
		})
	}
	assert.Empty(t, f.logs.records(t, "WARN", ""), "no setting but trust changed")
}

func TestReloadRefusesInvalidConfiguration(t *testing.T) {
	keys := reloadKeys()
	jwk := func(k *handlertest.Key, kid string) string {
		pub := k.Public
		pub.KeyID = kid
		b, err := pub.MarshalJSON()
		if err != nil {
			panic(err)
		}
		return string(b)
	}
	goodConfig, goodTrust := configYAML("", rel("a", "A", "a")), trustYAML(rel("b", "B", "b"))
	for _, tt := range []struct {
		name          string
		config, trust string // "" keeps the good one; "-" removes the file
		want          []string
	}{
		{"bad key", "", trustYAML(rel("b", "B", "b"), "  - {id: c, issuer: C, subject: s, keys: [{pem: not-a-key}]}\n"),
			[]string{"trust_file[1]: keys[0]:"}},
		{"private key", "", trustYAML(rel("b", "B", "b"), "  - {id: c, issuer: C, subject: s, keys: [{pem: \""+
			strings.ReplaceAll(string(keys["c"].PrivateKeyPEM()), "\n", "\\n")+"\"}]}\n"),
			[]string{"trust_file[1]: keys[0]:", "private key"}},
		{"unknown field in the trust file", "", "  - {id: b, issuer: B, subject: s, scopez: [read], keys: [{file: b.pub}]}\n",
			[]string{"field scopez not found"}},
		{"unknown field in the config", configYAML("bogus: 1\n", rel("a", "A", "a")), "",
			[]string{"field bogus not found"}},
		{"kid conflict", configYAML("", "  - {id: a, issuer: A, subject: s, keys: [{jwk: "+jwk(keys["a"], "k")+"}]}\n"),
			trustYAML("  - {id: a2, issuer: A, subject: t, keys: [{jwk: " + jwk(keys["c"], "k") + "}]}\n"),
			[]string{`trust_file[0]: kid "k" is also used by trust[0]`}},
		{"YAML syntax error in the trust file", "", "  - {id: b, issuer: B\n", []string{"trust_file:", "yaml:"}},
		{"YAML syntax error in the config", "issuer: [\n", "", []string{"config: yaml:"}},
		{"trust file missing", "", "-", []string{"trust_file:", "no such file"}},
		{"trust file empty", "", "\n", []string{"is empty"}},
		{"config missing", "-", "", []string{"config.yaml"}},
		{"another setting invalid", configYAML("listen: nowhere\n", rel("a", "A", "a")), "", []string{`listen: "nowhere"`}},
		{"duplicate id", "", trustYAML(rel("b", "B", "b"), rel("a", "C", "c")), []string{`trust_file[1].id: "a" is used twice`}},
		{"config empty", "\n", "", []string{"config.yaml is empty"}},
		{"config only a comment", "# nothing here\n", "", []string{"is empty"}},
		{"config null", "~\n", "", []string{"is empty"}},
		{"config of another store", configYAML("store: {type: redis, redis: {addrs: [127.0.0.1:1]}}\ntoken_secret: 0123456789abcdef0123456789abcdef\n", rel("a", "A", "a")), "",
			[]string{"store: differs from the running configuration"}},
		{"config of two documents", goodConfig + "---\nissuer: https://other.example\n", "", []string{"more than one YAML document"}},
		{"trust file null", "", "~\n", []string{"is empty; write [] for no relationships"}},
		{"trust file of two documents", "", "[]\n---\n" + rel("b", "B", "b"), []string{"more than one YAML document"}},
		{"trust file is a directory", "", "-dir", []string{"not a regular file"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newReloadFixture(t, goodConfig, goodTrust)
			before := expect{"A/a": 200, "B/b": 200, "C/c": 400}
			f.check(t, before)
			for path, content := range map[string]string{f.config: tt.config, f.trust: tt.trust} {
				switch content {
				case "":
				case "-":
					require.NoError(t, os.Remove(path))
				case "-dir":
					require.NoError(t, os.Remove(path))
					require.NoError(t, os.Mkdir(path, 0o755))
					t.Cleanup(func() { _ = os.Remove(path) })
				default:
					replaceFile(t, path, content)
				}
			}

			err := f.srv.Reload(t.Context())
			require.Error(t, err)
			for _, w := range tt.want {
				assert.Contains(t, err.Error(), w)
			}
			// The old set is in force, exactly.
			f.check(t, before)
			assert.Equal(t, []string{"cfg-a", "cfg-b"}, f.ids(t))
			errs := f.logs.records(t, "ERROR", "trust reload refused")
			require.Len(t, errs, 1, f.logs.String())
			logged := fmt.Sprint(errs[0]["errors"])
			for _, w := range tt.want {
				assert.Contains(t, logged, w)
			}
			assert.Empty(t, f.logs.records(t, "INFO", "trust relationships reloaded"))

			// The next valid reload applies.
			if info, err := os.Stat(f.trust); err == nil && info.IsDir() {
				require.NoError(t, os.Remove(f.trust))
			}
			replaceFile(t, f.config, goodConfig)
			replaceFile(t, f.trust, trustYAML(rel("c", "C", "c")))
			require.NoError(t, f.srv.Reload(t.Context()))
			f.check(t, expect{"A/a": 200, "B/b": 400, "C/c": 200})
		})
	}
}

func TestReloadLeavesOtherRelationships(t *testing.T) {
	f := newReloadFixture(t, configYAML("", rel("a", "A", "a")), trustYAML(rel("b", "B", "b")))
	// One made through the store (as the admin API does), one with the
	// configuration's prefix that no configuration file holds.
	_, err := f.srv.Store().CreateTrust(t.Context(), store.Trust{ID: "partner", Issuer: "P", Subject: "s", Scopes: []string{"read"},
		Keys: []jose.JSONWebKey{f.keys["p"].Public}})
	require.NoError(t, err)
	_, err = f.srv.Store().CreateTrust(t.Context(), store.Trust{ID: server.ConfigTrustPrefix + "stray", Issuer: "S", Subject: "s",
		Keys: []jose.JSONWebKey{f.keys["c2"].Public}})
	require.NoError(t, err)
	f.check(t, expect{"P/p": 200, "S/c2": 200})

	replaceFile(t, f.trust, trustYAML(rel("c", "C", "c")))
	require.NoError(t, f.srv.Reload(t.Context()))
	f.check(t, expect{"P/p": 200, "S/c2": 400, "A/a": 200, "B/b": 400, "C/c": 200})
	assert.Equal(t, []string{"cfg-a", "cfg-c", "partner"}, f.ids(t))

	// An invalid reload leaves it alone too.
	replaceFile(t, f.trust, "garbage: [")
	require.Error(t, f.srv.Reload(t.Context()))
	f.check(t, expect{"P/p": 200, "C/c": 200})
}

// TestReloadInFlight hammers the token endpoint for a relationship that
// every version holds while reloads alternate between two valid versions
// and an invalid one: not one request may fail.
func TestReloadInFlight(t *testing.T) {
	// A is in every version, but not the same: a reload that replaced it
	// by a delete and a create would leave a moment without it.
	v1 := trustYAML(rel("a", "A", "a"), rel("b", "B", "b"))
	v2 := trustYAML("  - {id: a, issuer: A, subject: s, scopes: [read, write], keys: [{file: a.pub}, {file: a2.pub}]}\n", rel("c", "C", "c"))
	bad := trustYAML(rel("a", "A", "a"), "  - {id: x, issuer: X, subject: s, keys: [{pem: nope}]}\n")
	f := newReloadFixture(t, configYAML(""), v1)
	h, key := f.srv.Handler(), f.keys["a"]

	ctx, cancel := context.WithTimeout(t.Context(), 1500*time.Millisecond)
	defer cancel()
	var requests, failures atomic.Int64
	var firstFailure atomic.Value
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for ctx.Err() == nil {
				code, body := tokenStatus(context.WithoutCancel(ctx), h, key, "A")
				requests.Add(1)
				if code != http.StatusOK {
					failures.Add(1)
					firstFailure.CompareAndSwap(nil, fmt.Sprintf("%d %s", code, body))
				}
			}
		})
	}
	var applied, refused int
	versions := []string{v1, v2, bad}
	for i := 0; ctx.Err() == nil || applied+refused < 20; i++ {
		replaceFile(t, f.trust, versions[i%len(versions)])
		err := f.srv.Reload(context.WithoutCancel(ctx))
		if i%len(versions) == 2 {
			require.Error(t, err)
			refused++
		} else {
			require.NoError(t, err)
			applied++
		}
	}
	wg.Wait()
	t.Logf("%d requests during %d applied and %d refused reloads", requests.Load(), applied, refused)
	require.GreaterOrEqual(t, applied+refused, 20)
	require.Positive(t, requests.Load())
	require.Zero(t, failures.Load(), "first failure: %v", firstFailure.Load())
}

func TestReloadWithoutConfigFile(t *testing.T) {
	t.Run("nothing to reload", func(t *testing.T) {
		cfg, err := server.ParseConfig([]byte("issuer: "+reloadIssuer+"\n"), t.TempDir())
		require.NoError(t, err)
		srv, err := server.New(t.Context(), cfg)
		require.NoError(t, err)
		err = srv.Reload(t.Context())
		require.Error(t, err)
		assert.Contains(t, err.Error(), "nothing to reload")
		err = srv.Watch(t.Context())
		require.Error(t, err, "Watch returns at once")
		assert.Contains(t, err.Error(), "nothing to reload")
	})
	t.Run("trust file only", func(t *testing.T) {
		dir := t.TempDir()
		keys := reloadKeys()
		for _, name := range []string{"a", "b"} {
			writePublicPEM(t, dir, name+".pub", keys[name])
		}
		trust := writeFile(t, dir, "trust.yaml", trustYAML(rel("b", "B", "b")))
		cfg, err := server.ParseConfig([]byte("issuer: "+reloadIssuer+"\ntrust_file: trust.yaml\ntrust:\n"+rel("a", "A", "a")), dir)
		require.NoError(t, err)
		srv, err := server.New(t.Context(), cfg)
		require.NoError(t, err)
		f := &reloadFixture{srv: srv, keys: keys}
		f.check(t, expect{"A/a": 200, "B/b": 200})

		replaceFile(t, trust, trustYAML())
		require.NoError(t, srv.Reload(t.Context()))
		f.check(t, expect{"A/a": 200, "B/b": 400})
	})
}

func TestReloadWarnsAboutOtherSettings(t *testing.T) {
	config := configYAML("", rel("a", "A", "a"))
	f := newReloadFixture(t, config, trustYAML())
	require.NoError(t, f.srv.Reload(t.Context()))
	assert.Empty(t, f.logs.records(t, "WARN", ""), "nothing changed")

	replaceFile(t, f.config, configYAML("access_token_lifetime: 5m\ntrust_reload: {watch: true}\n", rel("a", "A", "a")))
	require.NoError(t, f.srv.Reload(t.Context()))
	warns := f.logs.records(t, "WARN", "settings other than the trust relationships changed")
	require.Len(t, warns, 1)
	assert.Equal(t, []any{"access_token_lifetime", "trust_reload"}, warns[0]["settings"])
	f.check(t, expect{"A/a": 200})

	t.Run("listen given on the command line", func(t *testing.T) {
		dir := t.TempDir()
		writePublicPEM(t, dir, "a.pub", reloadKeys()["a"])
		path := writeFile(t, dir, "config.yaml", "listen: 127.0.0.1:1\ntrust:\n"+rel("a", "A", "a"))
		cfg, err := server.LoadConfig(path)
		require.NoError(t, err)
		require.NoError(t, cfg.SetListen("127.0.0.1:2"))
		logs := &lockedBuffer{}
		srv, err := server.New(t.Context(), cfg, server.WithLogger(slog.New(slog.NewJSONHandler(logs, nil))))
		require.NoError(t, err)
		require.NoError(t, srv.Reload(t.Context()))
		assert.Empty(t, logs.records(t, "WARN", ""), "the override is not a change: %s", logs)
	})
}

// waitFor polls cond every 20 ms until it holds or timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > timeout {
			t.Fatalf("%s: not within %v", what, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return time.Since(start)
}

func TestWatch(t *testing.T) {
	// The trust file is reached as a Kubernetes ConfigMap volume does it:
	// trust.yaml -> ..data/trust.yaml, ..data -> a versioned folder that
	// an update replaces by swapping the ..data link.
	f := newReloadFixture(t, configYAML("trust_reload: {watch: true, interval: 100ms}\n", rel("a", "A", "a")), trustYAML(rel("b", "B", "b")))
	version := 0
	swap := func(content string) {
		version++
		v := fmt.Sprintf("..v%d", version)
		require.NoError(t, os.Mkdir(filepath.Join(f.dir, v), 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(f.dir, v, "trust.yaml"), []byte(content), 0o600))
		require.NoError(t, os.Symlink(v, filepath.Join(f.dir, "..data_tmp")))
		require.NoError(t, os.Rename(filepath.Join(f.dir, "..data_tmp"), filepath.Join(f.dir, "..data")))
	}
	swap(trustYAML(rel("b", "B", "b")))
	require.NoError(t, os.Remove(f.trust))
	require.NoError(t, os.Symlink(filepath.Join("..data", "trust.yaml"), f.trust))

	before := goleak.IgnoreCurrent()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- f.srv.Watch(ctx) }()
	ok := func(iss, key string) func() bool {
		return func() bool { code, _ := f.status(t, iss, key); return code == http.StatusOK }
	}

	t.Run("file replaced by rename", func(t *testing.T) {
		tmp := filepath.Join(f.dir, "..data", "trust.yaml.tmp")
		require.NoError(t, os.WriteFile(tmp, []byte(trustYAML(rel("c", "C", "c"))), 0o600))
		require.NoError(t, os.Rename(tmp, filepath.Join(f.dir, "..data", "trust.yaml")))
		took := waitFor(t, 2*time.Second, "C trusted", ok("C", "c"))
		t.Logf("applied after %v", took)
		f.check(t, expect{"A/a": 200, "B/b": 400})
	})
	t.Run("ConfigMap symlink swap", func(t *testing.T) {
		swap(trustYAML(rel("b", "B", "b")))
		waitFor(t, 2*time.Second, "B trusted", ok("B", "b"))
		f.check(t, expect{"A/a": 200, "C/c": 400})
	})
	t.Run("garbage and missing leave the old set", func(t *testing.T) {
		swap("- {id: b, issuer: B\n")
		waitFor(t, 2*time.Second, "refusal logged", func() bool { return len(f.logs.records(t, "ERROR", "trust reload refused")) > 0 })
		time.Sleep(500 * time.Millisecond) // five more ticks
		f.check(t, expect{"A/a": 200, "B/b": 200, "C/c": 400})
		assert.Len(t, f.logs.records(t, "ERROR", "trust reload refused"), 1, "logged once, not at every tick")

		require.NoError(t, os.Remove(filepath.Join(f.dir, "..data")))
		waitFor(t, 2*time.Second, "refusal logged", func() bool { return len(f.logs.records(t, "ERROR", "trust reload refused")) > 1 })
		f.check(t, expect{"A/a": 200, "B/b": 200})

		swap(trustYAML(rel("c", "C", "c")))
		waitFor(t, 2*time.Second, "C trusted", ok("C", "c"))
		f.check(t, expect{"B/b": 400})
	})
	t.Run("key file rotated", func(t *testing.T) {
		pem := f.keys["c2"].PublicKeyPEM()
		replaceFile(t, filepath.Join(f.dir, "c.pub"), string(pem))
		waitFor(t, 2*time.Second, "C trusted with c2", ok("C", "c2"))
		f.check(t, expect{"C/c": 400})
	})
	t.Run("config file changed", func(t *testing.T) {
		replaceFile(t, f.config, configYAML("trust_reload: {watch: true, interval: 100ms}\n", rel("a", "A", "a2")))
		waitFor(t, 2*time.Second, "A trusted with a2", ok("A", "a2"))
		f.check(t, expect{"A/a": 400})
	})

	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(2 * time.Second):
		t.Fatal("Watch did not return after ctx was cancelled")
	}
	goleak.VerifyNone(t, before)
}

// A key file named before it exists: the reload is refused, and the watch
// applies the set as soon as the file appears (a ConfigMap and a Secret
// volume updated at different moments).
func TestWatchNoticesTheFileThatFixesARefusedReload(t *testing.T) {
	f := newReloadFixture(t, configYAML("trust_reload: {watch: true, interval: 100ms}\n", rel("a", "A", "a")), trustYAML(rel("b", "B", "b")))
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- f.srv.Watch(ctx) }()
	defer func() {
		cancel()
		assert.NoError(t, <-done)
	}()

	replaceFile(t, f.trust, trustYAML(rel("b", "B", "b"), rel("n", "N", "new")))
	waitFor(t, 2*time.Second, "refusal logged", func() bool { return len(f.logs.records(t, "ERROR", "trust reload refused")) > 0 })
	f.check(t, expect{"B/b": 200})

	writePublicPEM(t, f.dir, "new.pub", f.keys["c"])
	waitFor(t, 3*time.Second, "N trusted once its key file exists", func() bool {
		code, _ := tokenStatus(t.Context(), f.srv.Handler(), f.keys["c"], "N")
		return code == http.StatusOK
	})
}

// A FIFO or a device in a key file's place fails the reload at once
// instead of blocking it (and, with it, shutdown) or filling memory.
func TestReloadRefusesSpecialFiles(t *testing.T) {
	f := newReloadFixture(t, configYAML("", rel("a", "A", "a")), trustYAML(rel("b", "B", "b")))
	fifo := filepath.Join(f.dir, "fifo.pub")
	require.NoError(t, syscall.Mkfifo(fifo, 0o600))
	for _, name := range []string{fifo, "/dev/zero"} {
		replaceFile(t, f.trust, trustYAML(rel("b", "B", "b"))+"  - {id: x, issuer: X, subject: s, keys: [{file: "+name+"}]}\n")
		start := time.Now()
		err := f.srv.Reload(t.Context())
		require.Error(t, err)
		assert.Contains(t, err.Error(), "not a regular file")
		assert.Less(t, time.Since(start), time.Second)
	}
	f.check(t, expect{"A/a": 200, "B/b": 200})
}

// A configured relationship may not reuse, for other key material, a kid
// of a relationship of the same issuer created through the admin API.
func TestReloadRefusesKidOfAdminRelationship(t *testing.T) {
	f := newReloadFixture(t, configYAML("", rel("a", "A", "a")), trustYAML())
	k := f.keys["b"].Public
	k.KeyID = "shared"
	_, err := f.srv.Store().CreateTrust(t.Context(), store.Trust{ID: "admin-1", Issuer: "A", Subject: "t", Keys: []jose.JSONWebKey{k}})
	require.NoError(t, err)
	other := f.keys["c"].Public
	other.KeyID = "shared"
	b, err := other.MarshalJSON()
	require.NoError(t, err)
	replaceFile(t, f.trust, "  - {id: x, issuer: A, subject: u, keys: [{jwk: "+string(b)+"}]}\n")
	err = f.srv.Reload(t.Context())
	require.Error(t, err)
	assert.Contains(t, err.Error(), `kid "shared" is also used by trust relationship "admin-1"`)
	assert.Equal(t, []string{"admin-1", "cfg-a"}, f.ids(t))
}
