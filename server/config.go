package server

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	jose "github.com/go-jose/go-jose/v3"
	"go.yaml.in/yaml/v3"

	"github.com/jwtbearer/jwtbearer/handler"
	"github.com/jwtbearer/jwtbearer/store"
	redisstore "github.com/jwtbearer/jwtbearer/store/redis"
)

// Config is the server's configuration, read from YAML. Every field is
// documented in README.md; zero values mean the documented defaults.
type Config struct {
	// Listen is the TCP address to serve on.
	Listen string `yaml:"listen"`
	// Issuer identifies this authorization server. It is accepted as an
	// assertion's "aud", as is Issuer + "/token".
	Issuer string `yaml:"issuer"`
	// TokenSecret is the HMAC key of the opaque tokens, at least 32 bytes.
	// The JWTBEARER_TOKEN_SECRET environment variable overrides it. When
	// both are empty a random one is made at start, and tokens do not
	// survive a restart (the memory store loses them anyway).
	TokenSecret string `yaml:"token_secret"`
	// AccessTokenLifetime is the access tokens' lifetime (default 1h). For
	// the jwt-bearer grant it is capped at the assertion's remaining
	// validity unless jwt_bearer.cap_token_lifetime is false.
	AccessTokenLifetime time.Duration `yaml:"access_token_lifetime"`
	// RefreshTokenLifetime is the refresh tokens' lifetime (default 720h).
	RefreshTokenLifetime time.Duration `yaml:"refresh_token_lifetime"`
	// MaxRequestBytes caps request bodies (default 64 KiB).
	MaxRequestBytes int64 `yaml:"max_request_bytes"`
	// Store selects the storage backend.
	Store StoreConfig `yaml:"store"`
	// JWTBearer is the jwt-bearer grant's policy.
	JWTBearer JWTBearerConfig `yaml:"jwt_bearer"`
	// Trust lists trust relationships. With those of TrustFile they are
	// the configured set: applied to the store as a whole at start (see
	// Server.load), and again by every Server.Reload.
	Trust []TrustConfig `yaml:"trust"`
	// TrustFile names a YAML file whose top level is a list of trust
	// relationships written as Trust's entries are (an unknown field is an
	// error); they join Trust's. A relative path is read from the
	// configuration file's folder, and relative key file paths inside it
	// from the trust file's own folder. An empty file is an error: write
	// [] for no relationships, so that a file caught while being
	// truncated and rewritten in place does not delete them all.
	TrustFile string `yaml:"trust_file"`
	// TrustReload makes the server watch the configuration and trust files
	// and reload the trust relationships when they change (Server.Watch).
	// SIGHUP reloads them whether it is on or not.
	TrustReload TrustReloadConfig `yaml:"trust_reload"`
	// RemoteKeys bounds the fetching of issuers' published key sets.
	RemoteKeys RemoteKeysConfig `yaml:"remote_keys"`
	// Clients lists the OAuth 2.0 clients loaded at start.
	Clients []ClientConfig `yaml:"clients"`
	// Admin enables the trust-management API on a listener of its own.
	Admin AdminConfig `yaml:"admin"`
	// AccessTokens chooses opaque HMAC access tokens (the default) or RFC
	// 9068 JWTs.
	AccessTokens AccessTokensConfig `yaml:"access_tokens"`
	// RateLimits limits requests per client and per assertion issuer.
	RateLimits RateLimitsConfig `yaml:"rate_limits"`
	// Metrics says where the Prometheus metrics are served.
	Metrics MetricsConfig `yaml:"metrics"`

	// path is the file LoadConfig read; empty for ParseConfig.
	path string
	// dir is the folder relative key file paths are read from.
	dir string
	// trustFilePath is TrustFile resolved against dir.
	trustFilePath string
	// fileTrust are the relationships read from TrustFile.
	fileTrust []TrustConfig
	// sources maps the configuration file and the trust file to the
	// SHA-256 of the content parsed. Server.load and Server.Reload add the
	// key files they read to a copy (a Config shared by several servers is
	// only read), for Server.Watch to compare with the files' contents.
	sources fileHashes
	// issuerDefaulted records that Issuer was derived from Listen.
	issuerDefaulted bool
	// listenOverride is the address SetListen set, which a reload applies
	// to the configuration it reads again.
	listenOverride string
}

// TrustReloadConfig configures the watching of the trust relationships'
// files. SIGHUP reloads them in any case.
type TrustReloadConfig struct {
	// Watch polls the configuration file, the trust file and the key files
	// they name every Interval, and reloads when their content changes.
	Watch bool `yaml:"watch"`
	// Interval is the polling period (default 2s, from 100ms to 1h).
	Interval time.Duration `yaml:"interval"`
}

// SetListen changes the listen address, and the issuer with it when the
// issuer was derived from the address, then validates the result.
func (c *Config) SetListen(addr string) error {
	c.applyListen(addr)
	return c.Validate()
}

func (c *Config) applyListen(addr string) {
	c.Listen = addr
	c.listenOverride = addr
	if c.issuerDefaulted {
		c.Issuer = "http://" + addr
	}
}

// StoreConfig selects the storage backend: "memory" (the default, one
// process) or "redis" (several instances sharing one Redis or Redis
// Cluster).
type StoreConfig struct {
	Type  string            `yaml:"type"`
	Redis redisstore.Config `yaml:"redis"`
}

// JWTBearerConfig is the policy of the jwt-bearer grant; see handler.Settings.
type JWTBearerConfig struct {
	RequireJTI           *bool          `yaml:"require_jti"`
	ClockSkew            *time.Duration `yaml:"clock_skew"`
	MaxAssertionLifetime time.Duration  `yaml:"max_assertion_lifetime"`
	MaxAssertionSize     int            `yaml:"max_assertion_size"`
	Algorithms           []string       `yaml:"algorithms"`
	Audiences            []string       `yaml:"audiences"`
	RequireClientAuth    bool           `yaml:"require_client_auth"`
	CapTokenLifetime     *bool          `yaml:"cap_token_lifetime"`
	IssueRefreshTokens   bool           `yaml:"issue_refresh_tokens"`
}

// TrustConfig is one trust relationship; see store.Trust.
type TrustConfig struct {
	ID                   string            `yaml:"id"`
	Issuer               string            `yaml:"issuer"`
	Subject              string            `yaml:"subject"`
	Subjects             []string          `yaml:"subjects"`
	SubjectPatterns      []string          `yaml:"subject_patterns"`
	AnySubject           bool              `yaml:"any_subject"`
	RequiredClaims       map[string]string `yaml:"required_claims"`
	Scopes               []string          `yaml:"scopes"`
	Algorithms           []string          `yaml:"algorithms"`
	Clients              []string          `yaml:"clients"`
	RequireJTI           *bool             `yaml:"require_jti"`
	MaxAssertionLifetime time.Duration     `yaml:"max_assertion_lifetime"`
	AccessTokenLifetime  time.Duration     `yaml:"access_token_lifetime"`
	ExpiresAt            *time.Time        `yaml:"expires_at"`
	Keys                 []KeyConfig       `yaml:"keys"`
	JWKSURI              string            `yaml:"jwks_uri"`
	OIDCDiscovery        bool              `yaml:"oidc_discovery"`
}

// RemoteKeysConfig bounds the fetching and caching of issuers' published
// key sets (jwks_uri, oidc_discovery). Zero fields take store/jwks's
// defaults.
type RemoteKeysConfig struct {
	Timeout         time.Duration `yaml:"timeout"`
	MaxBytes        int64         `yaml:"max_bytes"`
	DefaultTTL      time.Duration `yaml:"default_ttl"`
	MinTTL          time.Duration `yaml:"min_ttl"`
	MaxTTL          time.Duration `yaml:"max_ttl"`
	RefetchInterval time.Duration `yaml:"refetch_interval"`
	MaxStale        time.Duration `yaml:"max_stale"`
}

// AdminConfig enables the trust-management admin API (see AdminHandler).
// It is off unless Listen is set.
type AdminConfig struct {
	// Listen is the TCP address of the admin listener, apart from the
	// public one. Empty: no admin API.
	Listen string `yaml:"listen"`
	// Token is the bearer token the admin API requires, at least
	// MinAdminTokenBytes long. The JWTBEARER_ADMIN_TOKEN environment
	// variable overrides it.
	Token string `yaml:"token"`
}

// MetricsConfig says where GET /metrics is served.
type MetricsConfig struct {
	// Listener is "public" (the default: the token endpoint's listener),
	// "admin" (the admin listener, behind the admin token) or "off".
	Listener string `yaml:"listener"`
}

// Metrics listeners.
const (
	MetricsPublic = "public"
	MetricsAdmin  = "admin"
	MetricsOff    = "off"
)

// MinAdminTokenBytes is the shortest admin token accepted.
const MinAdminTokenBytes = 32

// KeyConfig is one key, given exactly one way: a file (PEM or JWK / JWK Set
// JSON), inline PEM text, or an inline JWK.
type KeyConfig struct {
	File string         `yaml:"file"`
	PEM  string         `yaml:"pem"`
	JWK  map[string]any `yaml:"jwk"`
}

// ClientConfig is one OAuth 2.0 client. It authenticates either with a
// secret (client_secret_basic or client_secret_post) or, when it has keys,
// with a JWT signed by one of them (private_key_jwt, RFC 7523 §2.2):
// exactly one of secret, secret_hash, jwks or jwks_uri. Its secret is
// hashed with bcrypt when loaded; secret_hash takes an existing bcrypt
// hash instead.
type ClientConfig struct {
	ID         string `yaml:"id"`
	Secret     string `yaml:"secret"`
	SecretHash string `yaml:"secret_hash"`
	// JWKS are the client's public keys, given as trust keys are.
	JWKS []KeyConfig `yaml:"jwks"`
	// JWKSURI is where the client publishes its key set, fetched with the
	// bounds of remote_keys.
	JWKSURI    string   `yaml:"jwks_uri"`
	GrantTypes []string `yaml:"grant_types"`
	Scopes     []string `yaml:"scopes"`
	Audience   []string `yaml:"audience"`
}

// Defaults.
const (
	DefaultListen               = "127.0.0.1:8080"
	DefaultAccessTokenLifetime  = time.Hour
	DefaultRefreshTokenLifetime = 30 * 24 * time.Hour
	DefaultMaxRequestBytes      = 64 << 10
	DefaultTrustReloadInterval  = 2 * time.Second
)

// knownGrantTypes are the grant types this server composes.
var knownGrantTypes = []string{"client_credentials", "refresh_token", handler.GrantType}

// LoadConfig reads and validates the YAML file at path, and the trust
// file it names. Relative paths in it are read from the file's folder.
// The configuration remembers path: Server.Reload reads it again.
func LoadConfig(path string) (*Config, error) {
	c, _, err := loadConfig(path)
	return c, err
}

// loadConfig is LoadConfig. It also returns the files it read or tried to
// read, with their hashes, even when it fails: a watch then knows which
// files to look at for the change that fixes it.
func loadConfig(path string) (*Config, fileHashes, error) {
	c := &Config{path: path, dir: filepath.Dir(path)}
	c.sources = fileHashes{}
	data, err := c.sources.read(path)
	if err != nil {
		return nil, c.sources, err
	}
	if emptyYAML(data) {
		// A file caught truncated would otherwise mean "no relationships"
		// and, on a reload, remove every configured one.
		return nil, c.sources, fmt.Errorf("config: %s is empty", path)
	}
	next, err := c.parse(data)
	return next, c.sources, err
}

// ParseConfig decodes YAML strictly (an unknown key is an error), reads
// the trust file it names, applies the defaults and validates the result,
// reporting every problem at once. dir is the folder relative paths are
// read from. Server.Reload of such a configuration reads only its trust
// file again.
func ParseConfig(data []byte, dir string) (*Config, error) {
	return (&Config{dir: dir}).parse(data)
}

func (c *Config) parse(data []byte) (*Config, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var decodeErr error
	err := dec.Decode(c)
	if err == nil {
		if extra := dec.Decode(new(yaml.Node)); !errors.Is(extra, io.EOF) {
			return nil, errors.New("config: the file holds more than one YAML document; give one")
		}
	}
	if err != nil && !errors.Is(err, io.EOF) {
		// A type error (unknown key, wrong type) leaves the rest decoded:
		// validate that too, so every problem is reported at once. A
		// syntax error leaves nothing worth validating.
		var typeErr *yaml.TypeError
		if !errors.As(err, &typeErr) {
			return nil, fmt.Errorf("config: %w", err)
		}
		decodeErr = fmt.Errorf("config: %w", err)
	}
	c.applyDefaults()
	if err := errors.Join(decodeErr, c.readTrustFile(), c.Validate()); err != nil {
		return nil, err
	}
	return c, nil
}

// fileHashes maps files to the SHA-256 of their content.
type fileHashes map[string][sha256.Size]byte

// read reads a file the configuration is built from and, when h is not
// nil, records the SHA-256 of what it read, or, when it cannot be read, a
// value no content has, so that a watch notices when it can be.
func (h fileHashes) read(path string) ([]byte, error) {
	data, err := readConfigFile(path)
	if h != nil {
		if err != nil {
			h[path] = sha256.Sum256([]byte("\x00unreadable\x00" + err.Error()))
		} else {
			h[path] = sha256.Sum256(data)
		}
	}
	return data, err
}

// MaxConfigFileBytes bounds every file the configuration is read from.
const MaxConfigFileBytes = 4 << 20

// readConfigFile reads a regular file of at most MaxConfigFileBytes. It
// opens without blocking and checks the opened file, so that a FIFO or a
// device (/dev/zero) put in a file's place fails at once instead of
// hanging or exhausting memory, at start or during a reload.
func readConfigFile(path string) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer func() { _ = f.Close() }()
	info, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !info.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxConfigFileBytes+1))
	if err != nil {
		return nil, err
	}
	if len(data) > MaxConfigFileBytes {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, MaxConfigFileBytes)
	}
	return data, nil
}

// emptyYAML reports whether a YAML document holds nothing: no bytes, only
// comments, or null.
func emptyYAML(data []byte) bool {
	var v any
	return yaml.Unmarshal(data, &v) == nil && v == nil
}

// resolve returns path, read from dir when relative.
func resolve(dir, path string) string {
	if filepath.IsAbs(path) {
		return path
	}
	return filepath.Join(dir, path)
}

// readTrustFile reads and strictly decodes TrustFile into fileTrust. Like
// ParseConfig, it keeps what a type error (an unknown field, say) leaves
// decoded, so that validation reports the other problems too.
func (c *Config) readTrustFile() error {
	c.fileTrust, c.trustFilePath = nil, ""
	if c.TrustFile == "" {
		return nil
	}
	c.trustFilePath = resolve(c.dir, c.TrustFile)
	if c.sources == nil {
		c.sources = fileHashes{}
	}
	data, err := c.sources.read(c.trustFilePath)
	if err != nil {
		return fmt.Errorf("trust_file: %w", err)
	}
	if emptyYAML(data) {
		return fmt.Errorf("trust_file: %s is empty; write [] for no relationships", c.trustFilePath)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var list []TrustConfig
	err = dec.Decode(&list)
	if err == nil {
		if extra := dec.Decode(new(yaml.Node)); !errors.Is(extra, io.EOF) {
			return fmt.Errorf("trust_file: %s holds more than one YAML document; give one list", c.trustFilePath)
		}
	}
	var typeErr *yaml.TypeError
	switch {
	case errors.As(err, &typeErr):
		c.fileTrust = list
		return fmt.Errorf("trust_file: %s: %w", c.trustFilePath, err)
	case err != nil:
		return fmt.Errorf("trust_file: %s: %w", c.trustFilePath, err)
	}
	c.fileTrust = list
	return nil
}

func (c *Config) applyDefaults() {
	if c.Listen == "" {
		c.Listen = DefaultListen
	}
	if c.Issuer == "" {
		c.Issuer = "http://" + c.Listen
		c.issuerDefaulted = true
	}
	if s := os.Getenv("JWTBEARER_TOKEN_SECRET"); s != "" {
		c.TokenSecret = s
	}
	if s := os.Getenv("JWTBEARER_ADMIN_TOKEN"); s != "" {
		c.Admin.Token = s
	}
	if c.AccessTokenLifetime == 0 {
		c.AccessTokenLifetime = DefaultAccessTokenLifetime
	}
	if c.RefreshTokenLifetime == 0 {
		c.RefreshTokenLifetime = DefaultRefreshTokenLifetime
	}
	if c.MaxRequestBytes == 0 {
		c.MaxRequestBytes = DefaultMaxRequestBytes
	}
	if c.Store.Type == "" {
		c.Store.Type = "memory"
	}
	if c.TrustReload.Interval == 0 {
		c.TrustReload.Interval = DefaultTrustReloadInterval
	}
	if c.Metrics.Listener == "" {
		c.Metrics.Listener = MetricsPublic
	}
	if c.Store.Type == "redis" {
		if s := os.Getenv("REDIS_ADDR"); s != "" {
			c.Store.Redis.Addrs = strings.Split(s, ",")
		}
		if s := os.Getenv("REDIS_PASSWORD"); s != "" {
			c.Store.Redis.Password = s
		}
	}
}

// Validate checks the whole configuration and reports every problem at
// once, including the trust relationships' key hygiene (each one's, and
// across them: one issuer's relationships may not use one kid for
// different keys), those of the trust file included. It reads the key
// files, but not the trust file again.
func (c *Config) Validate() error {
	var errs []error
	check := func(bad bool, format string, args ...any) {
		if bad {
			errs = append(errs, fmt.Errorf(format, args...))
		}
	}
	_, _, err := net.SplitHostPort(c.Listen)
	check(err != nil, "listen: %q is not host:port", c.Listen)
	u, err := url.Parse(c.Issuer)
	check(err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" || u.Fragment != "",
		"issuer: %q must be an http(s) URL without query or fragment", c.Issuer)
	check(c.TokenSecret != "" && len(c.TokenSecret) < 32, "token_secret: must be at least 32 bytes")
	check(c.AccessTokenLifetime < time.Second, "access_token_lifetime: must be at least 1s")
	check(c.RefreshTokenLifetime < time.Second, "refresh_token_lifetime: must be at least 1s")
	check(c.MaxRequestBytes < 1024, "max_request_bytes: must be at least 1024")
	if c.Admin.Listen != "" {
		_, _, err := net.SplitHostPort(c.Admin.Listen)
		check(err != nil, "admin.listen: %q is not host:port", c.Admin.Listen)
		check(err == nil && c.Admin.Listen == c.Listen, "admin.listen: must differ from listen")
		check(c.Admin.Token == "", "admin.token: required with admin.listen (or set JWTBEARER_ADMIN_TOKEN)")
		check(c.Admin.Token != "" && len(c.Admin.Token) < MinAdminTokenBytes, "admin.token: must be at least %d bytes", MinAdminTokenBytes)
	}
	switch c.Store.Type {
	case "memory":
	case "redis":
		if err := c.Store.Redis.Validate(); err != nil {
			for _, e := range flatten(err) {
				errs = append(errs, fmt.Errorf("store.redis: %w", e))
			}
		}
		// Every instance must verify the others' HMAC tokens.
		check(c.TokenSecret == "", "token_secret: required with store type redis, the same on every instance (or set JWTBEARER_TOKEN_SECRET)")
	default:
		check(true, "store.type: %q is not a known store (memory, redis)", c.Store.Type)
	}

	jb := c.JWTBearer
	check(jb.ClockSkew != nil && (*jb.ClockSkew < 0 || *jb.ClockSkew > 5*time.Minute), "jwt_bearer.clock_skew: must be between 0s and 5m")
	check(jb.MaxAssertionLifetime < 0 || jb.MaxAssertionLifetime > 24*time.Hour, "jwt_bearer.max_assertion_lifetime: must be between 1s and 24h")
	check(jb.MaxAssertionSize < 0 || jb.MaxAssertionSize > 1<<20, "jwt_bearer.max_assertion_size: must be between 1 and 1048576 bytes")
	check(int64(jb.MaxAssertionSize) > c.MaxRequestBytes, "jwt_bearer.max_assertion_size: larger than max_request_bytes")
	for _, aud := range jb.Audiences {
		check(aud == "", "jwt_bearer.audiences: an empty audience would accept an empty \"aud\"")
	}
	for _, alg := range jb.Algorithms {
		check(!contains(handler.DefaultAlgorithms, alg), "jwt_bearer.algorithms: %q is not an asymmetric JWS algorithm (HMAC is allowed per trust relationship only)", alg)
	}

	rk := c.RemoteKeys
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"timeout", rk.Timeout}, {"default_ttl", rk.DefaultTTL}, {"min_ttl", rk.MinTTL}, {"max_ttl", rk.MaxTTL}, {"refetch_interval", rk.RefetchInterval}, {"max_stale", rk.MaxStale}} {
		check(d.v < 0, "remote_keys.%s: must not be negative", d.name)
	}
	// Lower bounds too: a tiny refetch_interval or min_ttl would let
	// strangers (random kids) make the server hammer an issuer.
	between := func(name string, v, lo, hi time.Duration) {
		check(v != 0 && (v < lo || v > hi), "remote_keys.%s: must be between %s and %s (or unset)", name, lo, hi)
	}
	between("timeout", rk.Timeout, 100*time.Millisecond, time.Minute)
	between("refetch_interval", rk.RefetchInterval, time.Second, time.Hour)
	between("min_ttl", rk.MinTTL, time.Second, 24*time.Hour)
	between("max_ttl", rk.MaxTTL, time.Second, 7*24*time.Hour)
	between("default_ttl", rk.DefaultTTL, time.Second, 7*24*time.Hour)
	between("max_stale", rk.MaxStale, time.Second, 7*24*time.Hour)
	check(rk.MaxBytes != 0 && (rk.MaxBytes < 1<<10 || rk.MaxBytes > 16<<20), "remote_keys.max_bytes: must be between 1024 and 16777216 (or unset)")
	check(rk.MinTTL > 0 && rk.MaxTTL > 0 && rk.MinTTL > rk.MaxTTL, "remote_keys.min_ttl: must not exceed max_ttl")

	errs = append(errs, c.AccessTokens.check(c.dir)...)
	// Generated keys exist in one process: tokens of one instance would not
	// verify with the keys another publishes.
	check(c.Store.Type == "redis" && c.AccessTokens.GeneratesKeys(), "access_tokens.signing_keys: required with store type redis, the same on every instance")
	c.RateLimits.Client.check("client", check)
	c.RateLimits.Issuer.check("issuer", check)
	switch c.Metrics.Listener {
	case "", MetricsPublic, MetricsOff:
	case MetricsAdmin:
		check(c.Admin.Listen == "", "metrics.listener: admin needs admin.listen")
	default:
		check(true, "metrics.listener: %q is not public, admin or off", c.Metrics.Listener)
	}

	ti := c.TrustReload.Interval
	check(ti < 100*time.Millisecond || ti > time.Hour, "trust_reload.interval: must be between 100ms and 1h")

	if _, err := c.trusts(c.sources); err != nil {
		errs = append(errs, flatten(err)...)
	}
	clientIDs := map[string]bool{}
	for i, cl := range c.Clients {
		where := fmt.Sprintf("clients[%d]", i)
		check(cl.ID == "", "%s.id: required", where)
		check(clientIDs[cl.ID], "%s.id: %q is used twice", where, cl.ID)
		clientIDs[cl.ID] = true
		methods := 0
		for _, set := range []bool{cl.Secret != "", cl.SecretHash != "", len(cl.JWKS) > 0, cl.JWKSURI != ""} {
			if set {
				methods++
			}
		}
		check(methods != 1, "%s: exactly one of secret, secret_hash, jwks or jwks_uri is required", where)
		if cl.JWKSURI != "" {
			check(store.CheckRemoteURL(cl.JWKSURI) != nil, "%s.jwks_uri: %v", where, store.CheckRemoteURL(cl.JWKSURI))
		}
		if len(cl.JWKS) > 0 {
			if _, err := c.clientKeys(cl, nil); err != nil {
				check(true, "%s.jwks: %v", where, err)
			}
		}
		check(cl.SecretHash != "" && !strings.HasPrefix(cl.SecretHash, "$2"), "%s.secret_hash: must be a bcrypt hash", where)
		check(len(cl.Secret) > 72, "%s.secret: at most 72 bytes (bcrypt reads no more)", where)
		check(len(cl.GrantTypes) == 0, "%s.grant_types: at least one is required", where)
		for _, gt := range cl.GrantTypes {
			check(!contains(knownGrantTypes, gt), "%s.grant_types: %q is not served here (%s)", where, gt, strings.Join(knownGrantTypes, ", "))
		}
	}
	for _, e := range c.trustEntries() {
		for _, id := range e.tc.Clients {
			check(!clientIDs[id], "%s.clients: %q is not a configured client", e.where, id)
		}
	}
	return errors.Join(errs...)
}

// trustEntry is a configured relationship and where it was found.
type trustEntry struct {
	// where names it in error messages: trust[i] or trust_file[i].
	where string
	tc    TrustConfig
	// dir is the folder its relative key file paths are read from.
	dir string
}

// trustEntries lists the relationships of Trust, then those of TrustFile.
func (c *Config) trustEntries() []trustEntry {
	out := make([]trustEntry, 0, len(c.Trust)+len(c.fileTrust))
	for i, tc := range c.Trust {
		out = append(out, trustEntry{where: fmt.Sprintf("trust[%d]", i), tc: tc, dir: c.dir})
	}
	for i, tc := range c.fileTrust {
		out = append(out, trustEntry{where: fmt.Sprintf("trust_file[%d]", i), tc: tc, dir: filepath.Dir(c.trustFilePath)})
	}
	return out
}

// trusts converts every configured relationship (Trust and TrustFile),
// reading key files, and checks them as a set: each by the store's rules,
// IDs unique, and no kid used by two of one issuer's relationships for
// different keys. It reports every problem at once, each prefixed with
// where the relationship was found. The result is what Server.load and
// Server.Reload give SyncTrust. The key files read are recorded in rec
// when it is not nil; c is only read.
func (c *Config) trusts(rec fileHashes) ([]store.Trust, error) {
	var errs []error
	entries := c.trustEntries()
	out := make([]store.Trust, 0, len(entries))
	var where []string
	ids := make(map[string]string, len(entries))
	for _, e := range entries {
		t, err := c.trust(e.tc, e.dir, rec)
		if first, dup := ids[t.ID]; dup {
			if e.tc.ID != "" {
				errs = append(errs, fmt.Errorf("%s.id: %q is used twice (also by %s)", e.where, e.tc.ID, first))
			} else {
				errs = append(errs, fmt.Errorf("%s: a second relationship for the same issuer and subject as %s needs an id of its own", e.where, first))
			}
		} else {
			ids[t.ID] = e.where
		}
		if err != nil {
			for _, e2 := range flatten(err) {
				errs = append(errs, fmt.Errorf("%s: %w", e.where, e2))
			}
			continue
		}
		out = append(out, t)
		where = append(where, e.where)
	}
	errs = append(errs, kidConflicts(out, where)...)
	return out, errors.Join(errs...)
}

// kidConflicts reports the kids that two relationships of one issuer use
// for different key material: the rule the admin API enforces with 409
// kid-conflict (see checkRefs), which would otherwise make the key an
// assertion names depend on which relationship is looked at. The same key
// under the same kid is fine. where[i] names ts[i].
func kidConflicts(ts []store.Trust, where []string) []error {
	at := make(map[*store.Trust]int, len(ts))
	byIssuer := make(map[string][]*store.Trust) // the earlier relationships of each issuer
	var errs []error
	for i := range ts {
		t := &ts[i]
		for _, c := range store.KIDConflicts(t, byIssuer[t.Issuer]) {
			errs = append(errs, fmt.Errorf("%s: kid %q is also used by %s (id %q) of issuer %q for a different key; give one of them another kid",
				where[i], c.KID, where[at[c.Other]], c.Other.ID, t.Issuer))
		}
		at[t] = i
		byIssuer[t.Issuer] = append(byIssuer[t.Issuer], t)
	}
	return errs
}

// Settings returns the handler policy the configuration describes.
func (c *Config) Settings() *handler.Settings {
	jb := c.JWTBearer
	s := &handler.Settings{
		Audiences:            jb.Audiences,
		MaxAssertionLifetime: jb.MaxAssertionLifetime,
		MaxAssertionSize:     jb.MaxAssertionSize,
		Algorithms:           jb.Algorithms,
		JTIOptional:          jb.RequireJTI != nil && !*jb.RequireJTI,
		RequireClientAuth:    jb.RequireClientAuth,
		NoTokenLifetimeCap:   jb.CapTokenLifetime != nil && !*jb.CapTokenLifetime,
		IssueRefreshTokens:   jb.IssueRefreshTokens,
	}
	if jb.ClockSkew != nil {
		// handler.Settings reads zero as "default" and negative as none.
		s.ClockSkew = *jb.ClockSkew
		if s.ClockSkew == 0 {
			s.ClockSkew = -1
		}
	}
	return s
}

// trust converts a configured relationship, reading its key files (from
// dir when relative), and applies the store's validation so that
// load-time errors match the store's rules.
func (c *Config) trust(t TrustConfig, dir string, rec fileHashes) (store.Trust, error) {
	id := t.ID
	if id == "" {
		// A stable ID, so that restarting an instance (or starting another
		// on a shared store) replaces the relationship instead of adding a
		// copy.
		id = configTrustID(t)
	} else if !strings.HasPrefix(id, ConfigTrustPrefix) {
		id = ConfigTrustPrefix + id
	}
	out := store.Trust{
		ID:                   id,
		Issuer:               t.Issuer,
		Subject:              t.Subject,
		Subjects:             t.Subjects,
		SubjectPatterns:      t.SubjectPatterns,
		AnySubject:           t.AnySubject,
		RequiredClaims:       t.RequiredClaims,
		Scopes:               t.Scopes,
		Algorithms:           t.Algorithms,
		Clients:              t.Clients,
		RequireJTI:           t.RequireJTI,
		MaxAssertionLifetime: store.Duration(t.MaxAssertionLifetime),
		AccessTokenLifetime:  store.Duration(t.AccessTokenLifetime),
		JWKSURI:              t.JWKSURI,
		OIDCDiscovery:        t.OIDCDiscovery,
	}
	if t.ExpiresAt != nil {
		out.ExpiresAt = *t.ExpiresAt
	}
	var errs []error
	for j, k := range t.Keys {
		keys, err := c.keys(k, dir, rec)
		if err != nil {
			errs = append(errs, fmt.Errorf("keys[%d]: %w", j, err))
			continue
		}
		out.Keys = append(out.Keys, keys...)
	}
	// Check the rest of the relationship even when a key could not be
	// read, so that every problem is reported at once.
	errs = append(errs, store.NormalizeTrust(&out))
	return out, errors.Join(errs...)
}

// clientKeys reads a client's configured public keys.
func (c *Config) clientKeys(cl ClientConfig, rec fileHashes) ([]jose.JSONWebKey, error) {
	var all []jose.JSONWebKey
	for i, k := range cl.JWKS {
		keys, err := c.keys(k, c.dir, rec)
		if err != nil {
			return nil, fmt.Errorf("[%d]: %w", i, err)
		}
		all = append(all, keys...)
	}
	return all, nil
}

func (c *Config) keys(k KeyConfig, dir string, rec fileHashes) ([]jose.JSONWebKey, error) {
	return readKeys(k, dir, rec, store.ParseKeys)
}

// readKeys reads the key material of k, given exactly one way, and parses
// it with parse: store.ParseKeys for public keys, which refuses private
// ones on purpose; parseATPrivateKeys for the access tokens' signing keys.
// rec, when not nil, records the files read.
func readKeys(k KeyConfig, dir string, rec fileHashes, parse func([]byte) ([]jose.JSONWebKey, error)) ([]jose.JSONWebKey, error) {
	set := 0
	for _, given := range []bool{k.File != "", k.PEM != "", k.JWK != nil} {
		if given {
			set++
		}
	}
	if set != 1 {
		return nil, errors.New("give exactly one of file, pem or jwk")
	}
	switch {
	case k.File != "":
		data, err := rec.read(resolve(dir, k.File))
		if err != nil {
			return nil, fmt.Errorf("file: %w", err)
		}
		return parse(data)
	case k.PEM != "":
		return parse([]byte(k.PEM))
	default:
		data, err := json.Marshal(k.JWK)
		if err != nil {
			return nil, fmt.Errorf("jwk: %w", err)
		}
		return parse(data)
	}
}

// ConfigTrustPrefix begins the ID of every relationship that comes from
// the configuration (the trust section and trust_file): the set that a
// reload replaces as a whole, and that the admin API leaves alone. An id
// given in the configuration gets it prepended.
const ConfigTrustPrefix = "cfg-"

// configTrustID derives an ID from what identifies a relationship: its
// issuer and subject rule.
func configTrustID(t TrustConfig) string {
	h := sha256.New()
	_, _ = fmt.Fprintf(h, "%d:%s\x00%d:%s\x00%t", len(t.Issuer), t.Issuer, len(t.Subject), t.Subject, t.AnySubject)
	for _, list := range [][]string{t.Subjects, t.SubjectPatterns} {
		if len(list) > 0 {
			sorted := slices.Sorted(slices.Values(list))
			_, _ = fmt.Fprintf(h, "\x00%d", len(sorted))
			for _, v := range sorted {
				_, _ = fmt.Fprintf(h, "\x00%d:%s", len(v), v)
			}
		} else {
			_, _ = fmt.Fprint(h, "\x00-")
		}
	}
	return ConfigTrustPrefix + hex.EncodeToString(h.Sum(nil)[:12])
}

// flatten lists the errors joined in err (errors.Join, recursively).
func flatten(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, flatten(e)...)
		}
		return out
	}
	return []error{err}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
