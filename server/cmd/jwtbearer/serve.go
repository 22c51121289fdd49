package main

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/jwtbearer/jwtbearer/server"
)

// runServe runs the token server until ctx is done. Without -config it runs
// the demo: a key pair in -demo-dir, trusted for issuer TestClient and
// subject User1 as in the bshaffer walkthrough, and the exact commands that
// obtain a token. SIGHUP reloads the trust relationships (see
// server.Server.Reload), and trust_reload.watch reloads them when their
// files change.
func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("serve", "[-config FILE] [-listen ADDR] [-demo-dir DIR] [-log-level LEVEL]", stderr)
	configPath := fs.String("config", "", "YAML configuration `file`; without it the demo runs")
	listen := fs.String("listen", "", "`address` to listen on, overriding the configuration's listen")
	demoDir := fs.String("demo-dir", filepath.Join(os.TempDir(), "jwtbearer-demo"), "`folder` for the demo's key pair and configuration")
	logLevel := fs.String("log-level", "info", "log `level`: debug, info, warn or error")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return usageErrorf(false, "serve: -log-level: %v", err)
	}
	// SIGHUP asks for a reload; until the server can reload, and after it
	// stops, it must not kill the process (Go's default for SIGHUP). One
	// that arrives during start is applied once the server is up.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	// Logs, one audit line per token among them, are buffered and written
	// out every 100 ms (see server.LogWriter), and at exit.
	logOut := server.NewLogWriter(stderr, 100*time.Millisecond)
	defer func() { _ = logOut.Close() }()
	logger := slog.New(slog.NewJSONHandler(logOut, &slog.HandlerOptions{Level: level}))
	// go-redis logs connection failures through a global logger of its own;
	// send them to ours, as JSON at warning level.
	goredis.SetLogger(redisLogger{logger})

	path := *configPath
	demo := path == ""
	if demo {
		var err error
		if path, err = writeDemo(*demoDir, *listen); err != nil {
			return fmt.Errorf("serve: demo: %w", err)
		}
	}
	cfg, err := server.LoadConfig(path)
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	if *listen != "" {
		if err := cfg.SetListen(*listen); err != nil {
			return fmt.Errorf("serve: %w", err)
		}
	}
	srv, err := server.New(ctx, cfg, server.WithLogger(logger))
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	defer func() { _ = srv.Close() }()
	// Registered after srv.Close, so it runs before: reloads end first.
	stopReloads := startReloads(ctx, srv, cfg, logger, hup)
	defer stopReloads()
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	var adminLn net.Listener
	if cfg.Admin.Listen != "" {
		if adminLn, err = net.Listen("tcp", cfg.Admin.Listen); err != nil {
			_ = ln.Close()
			return fmt.Errorf("serve: admin: %w", err)
		}
	}
	logger.Info("serving", "addr", ln.Addr().String(), "issuer", cfg.Issuer, "token_endpoint", cfg.Issuer+"/token")
	if adminLn != nil {
		logger.Info("serving admin API", "addr", adminLn.Addr().String(), "url", "http://"+adminLn.Addr().String()+"/admin/trust")
	}
	if demo {
		printDemo(stdout, *demoDir, cfg.Issuer)
	}
	if err := serveAll(ctx, srv, ln, adminLn); err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("serve: %w", err)
	}
	logger.Info("stopped")
	return nil
}

// startReloads reloads the trust relationships on each SIGHUP received on
// hup and, when trust_reload.watch is on, when their files change
// (server.Watch). The function it returns stops both and waits for them; a
// reload under way finishes first (files are read without blocking, so it
// does). SIGINT and SIGTERM are left to main.
func startReloads(ctx context.Context, srv *server.Server, cfg *server.Config, logger *slog.Logger, hup <-chan os.Signal) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				// Reload logs its outcome: the count, or every problem.
				logger.InfoContext(ctx, "SIGHUP: reloading the trust relationships")
				_ = srv.Reload(ctx)
			}
		}
	})
	if cfg.TrustReload.Watch {
		logger.InfoContext(ctx, "watching the trust relationships' files", "interval", cfg.TrustReload.Interval.String())
		wg.Go(func() {
			if err := srv.Watch(ctx); err != nil {
				logger.ErrorContext(ctx, "trust_reload.watch: not watching", "error", err)
			}
		})
	}
	return func() {
		cancel()
		wg.Wait()
	}
}

// serveAll serves the public routes on ln and, when adminLn is not nil,
// the admin API on adminLn, until ctx is done or either fails; both then
// shut down gracefully. It returns the first error.
func serveAll(ctx context.Context, srv *server.Server, ln, adminLn net.Listener) error {
	if adminLn == nil {
		return srv.Serve(ctx, ln)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 2)
	go func() { errc <- srv.Serve(ctx, ln) }()
	go func() { errc <- srv.ServeAdmin(ctx, adminLn) }()
	first := <-errc
	// One ended (ctx done, or a listener failed): stop the other too.
	cancel()
	second := <-errc
	if first == nil {
		first = second
	}
	return first
}

// writeDemo makes (or reuses) the demo key pair and writes the demo
// configuration, returning its path.
func writeDemo(dir, listen string) (string, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	keyPath := filepath.Join(dir, "id_rsa")
	if _, err := os.Stat(keyPath); errors.Is(err, os.ErrNotExist) {
		key, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			return "", err
		}
		if err := writeKeyPair(keyPath, key, false); err != nil {
			return "", err
		}
	} else if err != nil {
		return "", err
	}
	if listen == "" {
		listen = server.DefaultListen
	}
	config := fmt.Sprintf(demoConfig, listen, listen)
	path := filepath.Join(dir, "config.yaml")
	return path, os.WriteFile(path, []byte(config), 0o600)
}

// demoConfig trusts the walkthrough's TestClient/User1. Like the seed's
// generateJWT, whose $jti is optional, it accepts assertions without a jti
// for that relationship, and it accepts the seed's audience
// https://api.mysite.com besides this server's own identifiers.
const demoConfig = `# Written by 'jwtbearer serve' (demo mode). Copy and edit it for your own use.
listen: %s
issuer: http://%s
jwt_bearer:
  require_jti: true
  clock_skew: 30s
  max_assertion_lifetime: 1h
  audiences: [https://api.mysite.com]
trust:
  - id: test-client-user1
    issuer: TestClient
    subject: User1
    scopes: [read, write]
    require_jti: false        # the walkthrough's generateJWT sends no jti
    keys:
      - file: id_rsa.pub
`

func printDemo(w io.Writer, dir, issuer string) {
	self := "jwtbearer"
	if exe, err := os.Executable(); err == nil && !strings.Contains(exe, "go-build") {
		self = exe
	} else if err == nil {
		self = "go run ./server/cmd/jwtbearer"
	}
	key := filepath.Join(dir, "id_rsa")
	_, _ = fmt.Fprintf(w, `
jwtbearer demo: issuer TestClient, subject User1, trusted with %s.pub
Configuration: %s

Get a token:

  %s token -url %s/token -key %s -iss TestClient -sub User1 -scope read

or sign the assertion and post it with curl:

  curl -s %s/token -d grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer \
    -d assertion=$(%s mint -key %s -iss TestClient -sub User1 -aud %s/token)

Stop with Ctrl-C.
`, key, filepath.Join(dir, "config.yaml"), self, issuer, key, issuer, self, key, issuer)
}

// redisLogger adapts go-redis's Printf logging to slog.
type redisLogger struct{ l *slog.Logger }

func (r redisLogger) Printf(ctx context.Context, format string, v ...interface{}) {
	r.l.WarnContext(ctx, "redis client", "message", fmt.Sprintf(format, v...))
}
