package main

import (
	"context"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"time"

	jose "github.com/go-jose/go-jose/v3"
	"github.com/ory/fosite"
	"github.com/ory/fosite/compose"
	"github.com/ory/fosite/storage"

	"github.com/jwtbearer/jwtbearer/server"
	"github.com/jwtbearer/jwtbearer/store"
)

// The hidden subcommands that run one server each.
const (
	cmdServeOurs  = "serve-ours"
	cmdServeStock = "serve-stock"
)

const (
	targetOurs  = "ours"
	targetStock = "stock"
)

// The trust relationship both servers hold, and what every assertion says.
const (
	benchIssuer  = "bench"
	benchSubject = "svc"
	benchScope   = "read"
	// preloadIssuer is the issuer of the jtis claimed before serving in our
	// server: not the benchmark's, so they never collide with its jtis, yet
	// they live in the same replay cache.
	preloadIssuer = "preload-issuer"
	// tokenSecret is the HMAC key of both servers' opaque tokens.
	tokenSecret = "loadgen-token-secret-0123456789abcdef"
	// defaultAuthority is the issuer identifier both servers are configured
	// with; assertions carry defaultAuthority + "/token" as "aud".
	defaultAuthority = "https://jwtbearer-loadgen.invalid"
)

// listenLinePrefix starts the one line a server prints on stdout.
const listenLinePrefix = "listening "

// serveMain runs one server until its stdin reaches end of file (the
// parent closed it, or died). It prints "listening ADDR" on stdout once
// the preloaded jtis are in and the listener is open.
func serveMain(target string, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("loadgen "+target, flag.ContinueOnError)
	fs.SetOutput(stderr)
	preload := fs.Int("preload-jtis", 0, "unexpired jtis to put in the replay cache before serving")
	pubFile := fs.String("pubkey", "", "PEM `file` of the issuer's RSA public key")
	authority := fs.String("issuer", defaultAuthority, "issuer identifier; the token endpoint is it + /token")
	listen := fs.String("listen", "127.0.0.1:0", "`address` to listen on")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *pubFile == "" || *preload < 0 {
		_, _ = fmt.Fprintln(stderr, "loadgen: -pubkey is required and -preload-jtis must not be negative")
		return 2
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		cancel()
	}()

	var serve func(context.Context, net.Listener) error
	var err error
	switch target {
	case targetOurs:
		serve, err = buildOurs(ctx, *pubFile, *authority, *preload, stderr)
	case targetStock:
		serve, err = buildStock(*pubFile, *authority, *preload)
	default:
		err = fmt.Errorf("unknown target %q", target)
	}
	if err != nil {
		_, _ = fmt.Fprintf(stderr, "loadgen %s: %v\n", target, err)
		return 1
	}
	// The preload's garbage is collected now rather than in the measured
	// window; the same for both targets.
	runtime.GC()
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		_, _ = fmt.Fprintf(stderr, "loadgen %s: %v\n", target, err)
		return 1
	}
	if path := os.Getenv("LOADGEN_CPUPROFILE"); path != "" {
		// For profiling a server under load (see README, Performance);
		// off in every measured run.
		f, err := os.Create(path + "." + target)
		if err == nil && pprof.StartCPUProfile(f) == nil {
			defer func() { pprof.StopCPUProfile(); _ = f.Close() }()
		}
	}
	if path := os.Getenv("LOADGEN_MEMPROFILE"); path != "" {
		// Every allocation's site, written when the server stops.
		runtime.MemProfileRate = 4096
		defer func() {
			if f, err := os.Create(path + "." + target); err == nil {
				_ = pprof.Lookup("allocs").WriteTo(f, 0)
				_ = f.Close()
			}
		}()
	}
	_, _ = fmt.Fprintf(stdout, "%s%s\n", listenLinePrefix, ln.Addr())
	if err := serve(ctx, ln); err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, http.ErrServerClosed) {
		_, _ = fmt.Fprintf(stderr, "loadgen %s: %v\n", target, err)
		return 1
	}
	return 0
}

// oursConfig is the YAML configuration of our server: the memory store,
// a fixed token secret, one trust relationship.
const oursConfig = `listen: 127.0.0.1:0
issuer: %s
token_secret: %s
access_token_lifetime: 1h
store:
  type: memory
trust:
  - id: bench
    issuer: %s
    subject: %s
    scopes: [%s]
    keys:
      - file: %s
`

// buildOurs builds our server as the jwtbearer serve command does
// (server.ParseConfig, server.New, Server.Serve), with its info-level
// JSON log (an audit line per token) written to /dev/null, and claims
// preload jtis of preloadIssuer.
func buildOurs(ctx context.Context, pubFile, authority string, preload int, stderr io.Writer) (func(context.Context, net.Listener) error, error) {
	// The token secret is the configuration's, whatever the environment says.
	_ = os.Unsetenv("JWTBEARER_TOKEN_SECRET")
	config := fmt.Sprintf(oursConfig, authority, tokenSecret, benchIssuer, benchSubject, benchScope, filepath.Base(pubFile))
	cfg, err := server.ParseConfig([]byte(config), filepath.Dir(pubFile))
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	// The audit log is on, as in the jwtbearer serve command at its default
	// level, through the same buffered writer; it goes to /dev/null rather
	// than to the parent. Warnings and errors go to stderr as well.
	devNull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		return nil, err
	}
	audit := server.NewLogWriter(devNull, 100*time.Millisecond)
	logger := slog.New(slog.NewMultiHandler(
		slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}),
		slog.NewJSONHandler(audit, &slog.HandlerOptions{Level: slog.LevelInfo}),
	))
	srv, err := server.New(ctx, cfg, server.WithLogger(logger))
	if err != nil {
		return nil, err
	}
	st := srv.Store()
	until := time.Now().Add(time.Hour)
	for i := range preload {
		fresh, err := st.ClaimJTI(ctx, preloadIssuer, strconv.Itoa(i), until)
		if err != nil {
			return nil, fmt.Errorf("preload: %w", err)
		}
		if !fresh {
			return nil, fmt.Errorf("preload: jti %d claimed twice", i)
		}
	}
	return func(ctx context.Context, ln net.Listener) error {
		defer func() { _ = srv.Close() }()
		return srv.Serve(ctx, ln)
	}, nil
}

// buildStock composes stock fosite as its documentation shows: the
// in-memory store, the HMAC strategy and the RFC 7523 grant factory, with
// the same lifetimes and token secret as ours, and the same key trusted
// for the same issuer, subject and scope, under the kid our server derives
// (the RFC 7638 thumbprint). Preloaded jtis go straight into the store's
// BlacklistedJTIs map.
func buildStock(pubFile, authority string, preload int) (func(context.Context, net.Listener) error, error) {
	pub, err := readPublicKey(pubFile)
	if err != nil {
		return nil, err
	}
	jwk := jose.JSONWebKey{Key: pub, Algorithm: string(jose.RS256), Use: "sig"}
	if jwk.KeyID, err = store.Thumbprint(&jwk); err != nil {
		return nil, err
	}
	config := &fosite.Config{
		AccessTokenLifespan:                  time.Hour,
		TokenURL:                             authority + "/token",
		GlobalSecret:                         []byte(tokenSecret),
		GrantTypeJWTBearerCanSkipClientAuth:  true,
		GrantTypeJWTBearerIDOptional:         false,
		GrantTypeJWTBearerIssuedDateOptional: true,
		GrantTypeJWTBearerMaxDuration:        time.Hour,
		ScopeStrategy:                        fosite.ExactScopeStrategy,
	}
	st := storage.NewMemoryStore()
	provider := compose.Compose(config, st, compose.NewOAuth2HMACStrategy(config), compose.RFC7523AssertionGrantFactory)
	st.IssuerPublicKeys[benchIssuer] = storage.IssuerPublicKeys{
		Issuer: benchIssuer,
		KeysBySub: map[string]storage.SubjectPublicKeys{
			benchSubject: {
				Subject: benchSubject,
				Keys: map[string]storage.PublicKeyScopes{
					jwk.KeyID: {Key: &jwk, Scopes: []string{benchScope}},
				},
			},
		},
	}
	until := time.Now().Add(time.Hour)
	for i := range preload {
		st.BlacklistedJTIs["preload-"+strconv.Itoa(i)] = until
	}

	mux := http.NewServeMux()
	mux.HandleFunc("/token", func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		ar, err := provider.NewAccessRequest(ctx, r, new(fosite.DefaultSession))
		if err != nil {
			provider.WriteAccessError(ctx, w, ar, err)
			return
		}
		resp, err := provider.NewAccessResponse(ctx, ar)
		if err != nil {
			provider.WriteAccessError(ctx, w, ar, err)
			return
		}
		provider.WriteAccessResponse(ctx, w, ar, resp)
	})
	return func(ctx context.Context, ln net.Listener) error {
		return server.ServeHTTP(ctx, ln, mux, slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	}, nil
}

// readPublicKey reads an SPKI "PUBLIC KEY" PEM file holding an RSA key.
func readPublicKey(path string) (*rsa.PublicKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("%s: no PEM block", path)
	}
	k, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	rk, ok := k.(*rsa.PublicKey)
	if !ok {
		return nil, fmt.Errorf("%s: not an RSA key", path)
	}
	return rk, nil
}

// writePublicKey writes k as an SPKI "PUBLIC KEY" PEM file.
func writePublicKey(path string, k *rsa.PublicKey) error {
	der, err := x509.MarshalPKIXPublicKey(k)
	if err != nil {
		return err
	}
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600)
}
