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
	"strings"
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
	// Trust lists the trust relationships loaded at start.
	Trust []TrustConfig `yaml:"trust"`
	// Clients lists the OAuth 2.0 clients loaded at start.
	Clients []ClientConfig `yaml:"clients"`
	// Admin enables the trust-management API on a listener of its own.
	Admin AdminConfig `yaml:"admin"`

	// dir is the folder relative key file paths are read from.
	dir string
	// issuerDefaulted records that Issuer was derived from Listen.
	issuerDefaulted bool
}

// SetListen changes the listen address, and the issuer with it when the
// issuer was derived from the address, then validates the result.
func (c *Config) SetListen(addr string) error {
	c.Listen = addr
	if c.issuerDefaulted {
		c.Issuer = "http://" + addr
	}
	return c.Validate()
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
	ID         string      `yaml:"id"`
	Issuer     string      `yaml:"issuer"`
	Subject    string      `yaml:"subject"`
	AnySubject bool        `yaml:"any_subject"`
	Scopes     []string    `yaml:"scopes"`
	Algorithms []string    `yaml:"algorithms"`
	Clients    []string    `yaml:"clients"`
	RequireJTI *bool       `yaml:"require_jti"`
	ExpiresAt  *time.Time  `yaml:"expires_at"`
	Keys       []KeyConfig `yaml:"keys"`
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

// MinAdminTokenBytes is the shortest admin token accepted.
const MinAdminTokenBytes = 32

// KeyConfig is one key, given exactly one way: a file (PEM or JWK / JWK Set
// JSON), inline PEM text, or an inline JWK.
type KeyConfig struct {
	File string         `yaml:"file"`
	PEM  string         `yaml:"pem"`
	JWK  map[string]any `yaml:"jwk"`
}

// ClientConfig is one OAuth 2.0 client. Its secret is hashed with bcrypt
// when loaded; secret_hash takes an existing bcrypt hash instead.
type ClientConfig struct {
	ID         string   `yaml:"id"`
	Secret     string   `yaml:"secret"`
	SecretHash string   `yaml:"secret_hash"`
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
)

// knownGrantTypes are the grant types this server composes.
var knownGrantTypes = []string{"client_credentials", "refresh_token", handler.GrantType}

// LoadConfig reads and validates the YAML file at path. Relative key file
// paths are read from the file's folder.
func LoadConfig(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return ParseConfig(data, filepath.Dir(path))
}

// ParseConfig decodes YAML strictly (an unknown key is an error), applies
// the defaults and validates the result, reporting every problem at once.
// dir is the folder relative key file paths are read from.
func ParseConfig(data []byte, dir string) (*Config, error) {
	c := &Config{dir: dir}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var decodeErr error
	if err := dec.Decode(c); err != nil && !errors.Is(err, io.EOF) {
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
	if err := errors.Join(decodeErr, c.Validate()); err != nil {
		return nil, err
	}
	return c, nil
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
// once, including the trust relationships' key hygiene.
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

	ids := map[string]bool{}
	for i, t := range c.Trust {
		where := fmt.Sprintf("trust[%d]", i)
		id := t.ID
		if id == "" {
			id = "cfg-" + configTrustID(t.Issuer, t.Subject, t.AnySubject)
		}
		check(ids[id] && t.ID != "", "%s.id: %q is used twice", where, t.ID)
		check(ids[id] && t.ID == "", "%s: a second relationship for the same issuer and subject needs an id of its own", where)
		ids[id] = true
		if _, err := c.trust(t); err != nil {
			for _, e := range flatten(err) {
				errs = append(errs, fmt.Errorf("%s: %w", where, e))
			}
		}
	}
	clientIDs := map[string]bool{}
	for i, cl := range c.Clients {
		where := fmt.Sprintf("clients[%d]", i)
		check(cl.ID == "", "%s.id: required", where)
		check(clientIDs[cl.ID], "%s.id: %q is used twice", where, cl.ID)
		clientIDs[cl.ID] = true
		check((cl.Secret == "") == (cl.SecretHash == ""), "%s: exactly one of secret or secret_hash is required", where)
		check(cl.SecretHash != "" && !strings.HasPrefix(cl.SecretHash, "$2"), "%s.secret_hash: must be a bcrypt hash", where)
		check(len(cl.GrantTypes) == 0, "%s.grant_types: at least one is required", where)
		for _, gt := range cl.GrantTypes {
			check(!contains(knownGrantTypes, gt), "%s.grant_types: %q is not served here (%s)", where, gt, strings.Join(knownGrantTypes, ", "))
		}
	}
	for i, t := range c.Trust {
		for _, id := range t.Clients {
			check(!clientIDs[id], "trust[%d].clients: %q is not a configured client", i, id)
		}
	}
	return errors.Join(errs...)
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

// trust converts a configured relationship, reading its key files, and
// applies the store's validation so that load-time errors match the
// store's rules.
func (c *Config) trust(t TrustConfig) (store.Trust, error) {
	id := t.ID
	if id == "" {
		// A stable ID, so that restarting an instance (or starting another
		// on a shared store) replaces the relationship instead of adding a
		// copy.
		id = "cfg-" + configTrustID(t.Issuer, t.Subject, t.AnySubject)
	}
	out := store.Trust{
		ID:         id,
		Issuer:     t.Issuer,
		Subject:    t.Subject,
		AnySubject: t.AnySubject,
		Scopes:     t.Scopes,
		Algorithms: t.Algorithms,
		Clients:    t.Clients,
		RequireJTI: t.RequireJTI,
	}
	if t.ExpiresAt != nil {
		out.ExpiresAt = *t.ExpiresAt
	}
	var errs []error
	for j, k := range t.Keys {
		keys, err := c.keys(k)
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

func (c *Config) keys(k KeyConfig) ([]jose.JSONWebKey, error) {
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
		path := k.File
		if !filepath.IsAbs(path) {
			path = filepath.Join(c.dir, path)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("file: %w", err)
		}
		return store.ParseKeys(data)
	case k.PEM != "":
		return store.ParseKeys([]byte(k.PEM))
	default:
		data, err := json.Marshal(k.JWK)
		if err != nil {
			return nil, fmt.Errorf("jwk: %w", err)
		}
		return store.ParseKeys(data)
	}
}

// configTrustID derives an ID from what identifies a relationship.
func configTrustID(issuer, subject string, anySubject bool) string {
	h := sha256.New()
	_, _ = fmt.Fprintf(h, "%d:%s\x00%d:%s\x00%t", len(issuer), issuer, len(subject), subject, anySubject)
	return hex.EncodeToString(h.Sum(nil)[:12])
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
