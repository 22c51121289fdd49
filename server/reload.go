package server

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/jwtbearer/jwtbearer/store"
)

// Reload applies the trust relationships of the configuration files again:
// it reads the configuration file the server was loaded from (LoadConfig)
// and the trust file it names, parses and validates them with the same
// code as at start, and replaces the configured relationships (IDs that
// begin with ConfigTrustPrefix) with the new set in one SyncTrust: all or
// nothing, atomically for requests on every instance sharing the store.
// Relationships created through the admin API are left alone. A
// configuration built by ParseConfig has no file: its trust file alone is
// read again, and without one there is nothing to reload (an error).
//
// Only the trust relationships (trust: and trust_file) are reloaded. When
// other settings differ from those the server started with, a warning
// says that they need a restart.
//
// On any error (a file unreadable, a YAML or validation error, the store
// failing) every problem is logged at Error, the relationships in force
// stay as they were, and the error is returned. Reloads are serialised;
// requests in flight are not disturbed.
func (s *Server) Reload(ctx context.Context) error {
	_, err := s.reload(ctx, nil)
	return err
}

// errChangedWhileReading is reload's answer when the files it read are not
// those the watch saw settle: they are being written; try again later.
var errChangedWhileReading = errors.New("the files changed while they were read")

// reload is Reload. When expect is not nil (a watch), the files read must
// have the contents expect records. It also reports whether the failure
// was the store's, or a file changing, which a retry may get past.
func (s *Server) reload(ctx context.Context, expect fileHashes) (retry bool, err error) {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()

	next, sources, err := s.trustCfg.reread()
	var ts []store.Trust
	applied := fileHashes{}
	if err == nil {
		maps.Copy(applied, next.sources)
		ts, err = next.trusts(applied)
		maps.Copy(sources, applied)
	}
	if err == nil {
		for path, sum := range expect {
			if got, ok := sources[path]; ok && got != sum {
				return true, errChangedWhileReading
			}
		}
	}
	if err == nil && !reflect.DeepEqual(settingsOf(s.cfg)["store"], settingsOf(next)["store"]) {
		// The file now describes another deployment (or was replaced by
		// a default one): applying its relationships to this store would
		// be a mistake, not a change.
		err = errors.New("store: differs from the running configuration; restart to change the store")
	}
	if err == nil {
		err = s.storeKidConflicts(ctx, ts)
	}
	if err != nil {
		s.attempted = sources
		s.logger.ErrorContext(ctx, "trust reload refused; the trust relationships in force are unchanged",
			"errors", errorTexts(err))
		return false, fmt.Errorf("reload: %w", err)
	}
	if err := s.store.SyncTrust(ctx, ConfigTrustPrefix, ts); err != nil {
		s.logger.ErrorContext(ctx, "trust reload failed; the trust relationships in force are unchanged",
			"errors", errorTexts(err))
		return !errors.Is(err, store.ErrInvalid), fmt.Errorf("reload: %w", err)
	}
	s.trustCfg = next
	s.applied, s.attempted = applied, nil
	s.logger.InfoContext(ctx, "trust relationships reloaded", "relationships", len(ts),
		"config", next.path, "trust_file", next.trustFilePath)
	if changed := changedSettings(s.cfg, next); len(changed) > 0 {
		s.logger.WarnContext(ctx, "settings other than the trust relationships changed; they take effect only after a restart",
			"settings", changed)
	}
	return false, nil
}

// errNothingToReload is Reload's answer for a configuration that was read
// from no file and names no trust file.
var errNothingToReload = errors.New("nothing to reload: the configuration was not read from a file and names no trust_file")

// reread reads the configuration again from where c came from: its file
// (LoadConfig), or else its trust file alone. SetListen's override is
// applied to the result, as at start.
func (c *Config) reread() (*Config, fileHashes, error) {
	var next *Config
	switch {
	case c.path != "":
		n, sources, err := loadConfig(c.path)
		if err != nil {
			return nil, sources, err
		}
		next = n
	case c.TrustFile != "":
		n := *c
		n.sources = fileHashes{}
		if err := errors.Join(n.readTrustFile(), n.Validate()); err != nil {
			return nil, n.sources, err
		}
		next = &n
	default:
		return nil, fileHashes{}, c.reloadable()
	}
	if c.listenOverride != "" {
		next.applyListen(c.listenOverride)
	}
	return next, maps.Clone(next.sources), nil
}

// changedSettings lists the top-level settings, the trust relationships
// excepted, in which b differs from a.
func changedSettings(a, b *Config) []string {
	sa, sb := settingsOf(a), settingsOf(b)
	if sa == nil || sb == nil {
		return nil
	}
	var changed []string
	for _, k := range slices.Sorted(maps.Keys(sa)) {
		if !reflect.DeepEqual(sa[k], sb[k]) {
			changed = append(changed, k)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(sb)) {
		if _, ok := sa[k]; !ok {
			changed = append(changed, k)
		}
	}
	return changed
}

// settingsOf is c without its trust relationships, as a YAML mapping.
func settingsOf(c *Config) map[string]any {
	cp := *c
	cp.Trust, cp.TrustFile = nil, ""
	data, err := yaml.Marshal(&cp)
	if err != nil {
		return nil
	}
	var m map[string]any
	if err := yaml.Unmarshal(data, &m); err != nil {
		return nil
	}
	return m
}

// errorTexts lists the texts of the errors joined in err.
func errorTexts(err error) []string {
	var out []string
	for _, e := range flatten(err) {
		out = append(out, e.Error())
	}
	return out
}

// Watch polls the files the trust relationships in force were read from
// (the configuration file, the trust file, the key files they name) every
// trust_reload.interval, comparing the SHA-256 of their contents, so that
// a Kubernetes ConfigMap's symlink swap or an editor that replaces a file
// counts as a change and a mere touch does not. A change is reloaded (see
// Reload) once the files have stayed the same for one more interval, so
// that a file caught half-written is not applied. A file missing or
// invalid for a while is logged once and the relationships in force stay;
// its next change is tried again. A reload the store failed is retried at
// the next tick.
//
// Watch runs whether trust_reload.watch is on or not: the caller decides
// (jwtbearer serve starts it when it is). It returns nil when ctx is done,
// and an error at once when there is nothing to reload.
func (s *Server) Watch(ctx context.Context) error {
	interval := s.cfg.TrustReload.Interval
	if interval <= 0 {
		interval = DefaultTrustReloadInterval
	}
	s.reloadMu.Lock()
	err := s.trustCfg.reloadable()
	s.reloadMu.Unlock()
	if err != nil {
		return err
	}
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	// pending is the files' state at the previous tick, when it differed
	// from the baseline; failed is the state after a refused reload, which
	// is not tried again until a file changes.
	var pending, failed fileHashes
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C:
		}
		s.reloadMu.Lock()
		watched := maps.Clone(s.applied)
		maps.Copy(watched, s.attempted)
		baseline := s.applied
		s.reloadMu.Unlock()
		if failed != nil {
			baseline = failed
		}
		now := hashFiles(slices.Collect(maps.Keys(watched)))
		switch {
		case sameFiles(now, baseline):
			pending = nil
			continue
		case pending == nil || !maps.Equal(now, pending):
			// Changed since the last tick: wait until it settles.
			pending = now
			continue
		}
		retry, err := s.reload(ctx, now)
		pending = nil
		switch {
		case err == nil:
			failed = nil
		case retry:
			// The store failed, or a file changed while it was read:
			// try again at the next tick.
			failed, pending = nil, now
		default:
			s.reloadMu.Lock()
			after := maps.Clone(s.applied)
			maps.Copy(after, s.attempted)
			s.reloadMu.Unlock()
			failed = hashFiles(slices.Collect(maps.Keys(after)))
		}
	}
}

// sameFiles reports whether now matches base on every file of now that
// base knows; files base does not know count as changed.
func sameFiles(now, base fileHashes) bool {
	for path, sum := range now {
		if b, ok := base[path]; !ok || b != sum {
			return false
		}
	}
	return true
}

// reloadable returns errNothingToReload when Reload has no file to read.
func (c *Config) reloadable() error {
	if c.path == "" && c.TrustFile == "" {
		return errNothingToReload
	}
	return nil
}

// hashFiles returns the SHA-256 of each file's content; an unreadable file
// gets a value no content has in common with another state of it.
func hashFiles(paths []string) fileHashes {
	out := make(fileHashes, len(paths))
	for _, p := range paths {
		data, err := readConfigFile(p)
		if err != nil {
			out[p] = sha256.Sum256([]byte("\x00unreadable\x00" + err.Error()))
			continue
		}
		out[p] = sha256.Sum256(data)
	}
	return out
}
