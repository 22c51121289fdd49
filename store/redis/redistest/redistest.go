// Package redistest starts real redis-server processes for tests: a single
// node (Start) or a Redis Cluster (StartCluster), each on free loopback
// ports with its data in the test's temporary directory, stopped when the
// test ends. It is for tests only; nothing else should import it.
//
// Without a redis-server binary the tests skip, unless the CI environment
// variable is set: then they fail, since CI is expected to install it.
// When REDIS_ADDR is set, Start returns that server instead of starting
// one; Stop, Kill and Restart then skip the test, which cannot control it.
package redistest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Bounds of the waits, generous for a slow CI machine.
const (
	startTimeout   = 15 * time.Second
	stopTimeout    = 10 * time.Second
	clusterTimeout = 30 * time.Second
	portAttempts   = 5
)

// Require skips the test when redis-server is not installed, or fails it
// when the CI environment variable is set.
func Require(t testing.TB) {
	t.Helper()
	requireBinary(t, "redis-server")
}

func requireBinary(t testing.TB, name string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("redistest: %s not found (%v); .ci/run should have installed it (apt-get install redis-server)", name, err)
		}
		t.Skipf("redistest: %s not found (%v); install redis-server (Debian: apt-get install redis-server) or set REDIS_ADDR", name, err)
	}
}

// Option changes how Start runs redis-server.
type Option func(*options)

type options struct {
	args []string
}

// WithArgs adds command-line arguments to redis-server, after the
// package's own (a later --option wins).
func WithArgs(args ...string) Option {
	return func(o *options) { o.args = append(o.args, args...) }
}

// Server is a redis-server process, or the server named by REDIS_ADDR.
type Server struct {
	// Addr is the server's host:port.
	Addr string

	tb       testing.TB
	external bool
	dir      string
	port     int
	args     []string

	mu  sync.Mutex
	cmd *exec.Cmd // nil when not running
}

// Start starts a redis-server on a free 127.0.0.1 port, with an
// append-only file fsynced on every write in a temporary directory (so that
// Restart keeps the data) and no RDB snapshots, and waits until it answers
// PING. The test's cleanup stops it. When REDIS_ADDR is set, Start returns
// that server instead.
func Start(t testing.TB, opts ...Option) *Server {
	t.Helper()
	if addr := os.Getenv("REDIS_ADDR"); addr != "" {
		return &Server{Addr: addr, tb: t, external: true}
	}
	Require(t)
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	s := &Server{tb: t, dir: t.TempDir(), args: o.args}
	if err := s.startOnFreePort(false); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	return s
}

// startOnFreePort picks a free port and starts the server there, trying
// other ports when another process took it in between. With bus, the
// cluster bus port (port+10000) must be free too.
func (s *Server) startOnFreePort(bus bool) error {
	var err error
	for range portAttempts {
		var port int
		if port, err = freePort(bus); err != nil {
			continue
		}
		s.port = port
		s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		if err = s.start(); !errors.Is(err, errAddrInUse) {
			return err
		}
	}
	return err
}

var errAddrInUse = errors.New("address already in use")

// start runs redis-server on s.port with s.dir and waits for PING.
func (s *Server) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()

	logFile := filepath.Join(s.dir, "redis.log")
	args := append([]string{
		"--port", strconv.Itoa(s.port),
		"--bind", "127.0.0.1",
		"--save", "",
		"--appendonly", "yes",
		"--appendfsync", "always",
		"--dir", s.dir,
		"--protected-mode", "no",
		"--logfile", logFile,
		"--daemonize", "no",
	}, s.args...)
	// Not tied to a context: the server outlives this call, until Stop.
	cmd := exec.CommandContext(context.Background(), "redis-server", args...) //nolint:gosec // test helper: fixed binary, our own arguments
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("redistest: starting redis-server: %w", err)
	}
	s.cmd = cmd

	deadline := time.Now().Add(startTimeout)
	for {
		reply, err := do(s.Addr, 200*time.Millisecond, "PING")
		if err == nil && reply == "PONG" {
			return nil
		}
		log, _ := os.ReadFile(logFile) //nolint:gosec // our own log file, in the test's directory
		if strings.Contains(string(log), "Address already in use") {
			s.killLocked()
			return fmt.Errorf("redistest: port %d: %w", s.port, errAddrInUse)
		}
		if time.Now().After(deadline) {
			s.killLocked()
			if err == nil {
				err = fmt.Errorf("reply %q", reply)
			}
			return fmt.Errorf("redistest: redis-server on %s did not answer PING within %s (%w); log:\n%s",
				s.Addr, startTimeout, err, tail(log))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop stops the server with SIGTERM (a clean shutdown that flushes the
// append-only file), or SIGKILL if it has not exited within 10s. Stopping
// a stopped server does nothing.
func (s *Server) Stop() {
	if s.external {
		s.tb.Skip("redistest: REDIS_ADDR is set; the server cannot be stopped")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	cmd := s.cmd
	s.cmd = nil
	_ = cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(stopTimeout):
		_ = cmd.Process.Kill()
		<-done
	}
}

// Kill kills the server with SIGKILL, as a crash would, and waits for it
// to exit. With --appendfsync always, every acknowledged write survives.
func (s *Server) Kill() {
	if s.external {
		s.tb.Skip("redistest: REDIS_ADDR is set; the server cannot be killed")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.killLocked()
}

func (s *Server) killLocked() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
	s.cmd = nil
}

// Restart stops the server if it runs and starts it again on the same port
// with the same directory, so the append-only file is loaded back, and
// waits until it answers PING.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	if s.external {
		t.Skip("redistest: REDIS_ADDR is set; the server cannot be restarted")
	}
	s.Stop()
	deadline := time.Now().Add(startTimeout)
	for {
		err := s.start()
		if err == nil {
			return
		}
		// The port may linger for a moment after the old process.
		if !errors.Is(err, errAddrInUse) || time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Cluster is a Redis Cluster of masters without replicas.
type Cluster struct {
	// Addrs are the nodes' host:port, the seed list of a cluster client.
	Addrs []string
	// Nodes are the servers, in the order of Addrs.
	Nodes []*Server
}

// StartCluster starts masters redis-server processes (at least 3) in
// cluster mode, joins them with redis-cli --cluster create, and waits until
// every node reports cluster_state:ok with every slot assigned. The test's
// cleanup stops them. REDIS_ADDR is not used.
func StartCluster(t testing.TB, masters int) *Cluster {
	t.Helper()
	if masters < 3 {
		t.Fatalf("redistest: a Redis Cluster needs at least 3 masters, not %d", masters)
	}
	Require(t)
	requireBinary(t, "redis-cli")

	c := &Cluster{}
	for range masters {
		dir := t.TempDir()
		s := &Server{tb: t, dir: dir, args: []string{
			"--cluster-enabled", "yes",
			"--cluster-config-file", filepath.Join(dir, "nodes.conf"),
			"--cluster-node-timeout", "2000",
		}}
		if err := s.startOnFreePort(true); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Stop)
		c.Nodes = append(c.Nodes, s)
		c.Addrs = append(c.Addrs, s.Addr)
	}

	ctx, cancel := context.WithTimeout(context.Background(), clusterTimeout)
	defer cancel()
	args := append(append([]string{"--cluster", "create"}, c.Addrs...), "--cluster-replicas", "0", "--cluster-yes")
	out, err := exec.CommandContext(ctx, "redis-cli", args...).CombinedOutput() //nolint:gosec // test helper: fixed binary, our own arguments
	if err != nil {
		t.Fatalf("redistest: redis-cli --cluster create: %v\n%s", err, out)
	}

	deadline := time.Now().Add(clusterTimeout)
	for _, addr := range c.Addrs {
		for {
			info, err := do(addr, time.Second, "CLUSTER", "INFO")
			if err == nil && clusterReady(info, masters) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("redistest: cluster node %s not ready within %s: %v\n%s", addr, clusterTimeout, err, info)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return c
}

// clusterReady reads CLUSTER INFO: the cluster is ok, every slot is served
// and the node knows every master.
func clusterReady(info string, masters int) bool {
	want := map[string]string{
		"cluster_state":       "ok",
		"cluster_slots_ok":    "16384",
		"cluster_known_nodes": strconv.Itoa(masters),
	}
	for line := range strings.Lines(info) {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if w, checked := want[k]; ok && checked {
			if v != w {
				return false
			}
			delete(want, k)
		}
	}
	return len(want) == 0
}

// freePort returns a loopback port that was free a moment ago. With bus,
// port+10000 (the cluster bus) was free too.
func freePort(bus bool) (int, error) {
	for range 50 {
		l, err := listen("127.0.0.1:0")
		if err != nil {
			return 0, fmt.Errorf("redistest: no free port: %w", err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		_ = l.Close()
		if !bus {
			return port, nil
		}
		if port+10000 > 65535 {
			continue
		}
		lb, err := listen(net.JoinHostPort("127.0.0.1", strconv.Itoa(port+10000)))
		if err != nil {
			continue
		}
		_ = lb.Close()
		return port, nil
	}
	return 0, errors.New("redistest: no free port pair for a cluster node")
}

func listen(addr string) (net.Listener, error) {
	return (&net.ListenConfig{}).Listen(context.Background(), "tcp", addr)
}

// do sends one command in RESP and returns a simple-string, integer or
// bulk-string reply; an error reply is an error.
func do(addr string, timeout time.Duration, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	if err != nil {
		return "", err
	}
	defer func() { _ = conn.Close() }()
	_ = conn.SetDeadline(time.Now().Add(timeout))

	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := conn.Write([]byte(b.String())); err != nil {
		return "", err
	}

	rd := bufio.NewReader(conn)
	line, err := rd.ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimSuffix(line, "\r\n")
	if line == "" {
		return "", errors.New("redistest: empty reply")
	}
	switch line[0] {
	case '+', ':':
		return line[1:], nil
	case '-':
		return "", fmt.Errorf("redistest: %s", line[1:])
	case '$':
		n, err := strconv.Atoi(line[1:])
		if err != nil || n < 0 {
			return "", fmt.Errorf("redistest: unexpected reply %q", line)
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(rd, buf); err != nil {
			return "", err
		}
		return string(buf[:n]), nil
	}
	return "", fmt.Errorf("redistest: unexpected reply %q", line)
}

// tail returns the last lines of a log, for an error message.
func tail(log []byte) string {
	lines := strings.Split(strings.TrimSpace(string(log)), "\n")
	if len(lines) > 20 {
		lines = lines[len(lines)-20:]
	}
	return strings.Join(lines, "\n")
}
