package redis

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

// Defaults applied to the zero values of Config.
const (
	DefaultKeyPrefix    = "jwtbearer:"
	DefaultDialTimeout  = time.Second
	DefaultTimeout      = 500 * time.Millisecond
	DefaultTrustRefresh = 500 * time.Millisecond
)

// minTrustRefresh keeps a typo ("1ns") from turning the safety-net poll
// into a busy loop against Redis.
const minTrustRefresh = 10 * time.Millisecond

// Config is the YAML-facing configuration of the Redis store (the server
// embeds it under store.redis). Zero values mean the defaults above.
type Config struct {
	// Addrs lists the servers: one address is a single node; several are
	// the seed nodes of a Redis Cluster; with MasterName they are Sentinels.
	Addrs []string `yaml:"addrs"`
	// MasterName, when set, selects Sentinel: Addrs are the sentinels and
	// this is the name of the monitored master.
	MasterName string `yaml:"master_name"`
	// Username and Password authenticate (Redis 6 ACL, or the legacy
	// requirepass with an empty Username). The server may override
	// Password from the environment; the store does not read it.
	Username string `yaml:"username"`
	Password string `yaml:"password"`
	// DB selects the database of a single node or Sentinel master. Redis
	// Cluster has database 0 only.
	DB int `yaml:"db"`
	// KeyPrefix starts every key and channel name, so that several
	// deployments (or an ACL rule such as ~jwtbearer:*) can share a server.
	// It must not contain '{' or '}', which would change how Redis Cluster
	// hashes the keys to slots. Default "jwtbearer:".
	KeyPrefix string `yaml:"key_prefix"`
	// DialTimeout bounds establishing a connection. Default 1s.
	DialTimeout time.Duration `yaml:"dial_timeout"`
	// Timeout bounds each read and each write of a command, so that a Redis
	// that stopped answering fails a request quickly. Default 500ms.
	Timeout time.Duration `yaml:"timeout"`
	// TrustRefresh is how often every instance checks the trust
	// relationships' version, as a safety net for missed invalidation
	// messages. Keep it under 1s: a relationship deleted on one instance
	// stops resolving everywhere within it even when pub/sub is down.
	// Default 500ms.
	TrustRefresh time.Duration `yaml:"trust_refresh"`
}

// Validate reports every problem of c at once, joined with errors.Join.
// Zero values are valid: they mean the defaults.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("redis: "+format, args...))
	}

	if len(c.Addrs) == 0 {
		bad("addrs: at least one host:port is required")
	}
	for i, addr := range c.Addrs {
		host, port, err := net.SplitHostPort(addr)
		if err != nil || host == "" {
			bad("addrs[%d]: %q is not host:port", i, addr)
			continue
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			bad("addrs[%d]: %q: port must be a number from 1 to 65535", i, addr)
		}
	}
	if c.DB < 0 {
		bad("db: must not be negative")
	}
	if c.MasterName == "" && len(c.Addrs) > 1 && c.DB != 0 {
		bad("db: several addrs mean Redis Cluster, which has database 0 only")
	}
	errs = append(errs, c.validateCommon()...)
	return errors.Join(errs...)
}

// validateCommon checks what matters also when the caller brings its own
// client (New): the key layout and the durations.
func (c Config) validateCommon() []error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("redis: "+format, args...))
	}
	if strings.ContainsAny(c.KeyPrefix, "{}") {
		bad("key_prefix: %q must not contain '{' or '}' (Redis Cluster hash tags)", c.KeyPrefix)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"dial_timeout", c.DialTimeout}, {"timeout", c.Timeout}, {"trust_refresh", c.TrustRefresh}} {
		if d.v < 0 {
			bad("%s: must not be negative (0 means the default)", d.name)
		}
	}
	if c.TrustRefresh > 0 && c.TrustRefresh < minTrustRefresh {
		bad("trust_refresh: %s is too short; at least %s", c.TrustRefresh, minTrustRefresh)
	}
	return errs
}

// withDefaults returns c with the zero values replaced by the defaults.
func (c Config) withDefaults() Config {
	if c.KeyPrefix == "" {
		c.KeyPrefix = DefaultKeyPrefix
	}
	if c.DialTimeout == 0 {
		c.DialTimeout = DefaultDialTimeout
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.TrustRefresh == 0 {
		c.TrustRefresh = DefaultTrustRefresh
	}
	return c
}

// LogValue implements slog.LogValuer: the configuration without its
// password.
func (c Config) LogValue() slog.Value {
	password := ""
	if c.Password != "" {
		password = "REDACTED"
	}
	return slog.GroupValue(
		slog.Any("addrs", c.Addrs),
		slog.String("master_name", c.MasterName),
		slog.String("username", c.Username),
		slog.String("password", password),
		slog.Int("db", c.DB),
		slog.String("key_prefix", c.KeyPrefix),
		slog.Duration("dial_timeout", c.DialTimeout),
		slog.Duration("timeout", c.Timeout),
		slog.Duration("trust_refresh", c.TrustRefresh),
	)
}

// options builds the client options of Open. c has its defaults applied.
//
// Commands are not retried by the client (MaxRetries -1): a request that
// meets an outage fails at once with ErrUnavailable (503), and the caller
// retries. Dead pooled connections are detected when taken from the pool,
// so a restarted Redis needs no retry. A Cluster client still follows
// redirects and retries a node after a network error (MaxRedirects); the
// replay claims are written so that such a retry of a SET whose reply was
// lost is not taken for "already used" (see Store.claim).
func (c Config) options() *goredis.UniversalOptions {
	return &goredis.UniversalOptions{
		Addrs:                 c.Addrs,
		MasterName:            c.MasterName,
		Username:              c.Username,
		Password:              c.Password,
		DB:                    c.DB,
		ClientName:            "jwtbearer",
		DialTimeout:           c.DialTimeout,
		DialerRetries:         1,
		ReadTimeout:           c.Timeout,
		WriteTimeout:          c.Timeout,
		PoolTimeout:           c.Timeout,
		ContextTimeoutEnabled: true,
		MaxRetries:            -1,
		// Maintenance notifications are a Redis Enterprise/Cloud feature;
		// asking a plain Redis for them costs a round trip per connection.
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
	}
}
