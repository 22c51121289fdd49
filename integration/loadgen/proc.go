package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"
)

// clockTicks returns the kernel's clock ticks per second (the unit of
// utime and stime in /proc/<pid>/stat), from getconf CLK_TCK, or 100 (the
// value on every common Linux platform) when getconf is not there.
func clockTicks() (int64, bool) {
	out, err := exec.Command("getconf", "CLK_TCK").Output()
	if err == nil {
		if n, err := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64); err == nil && n > 0 {
			return n, true
		}
	}
	return 100, false
}

// procCPUTicks returns utime + stime of process pid (fields 14 and 15 of
// /proc/<pid>/stat), in clock ticks, all its threads included.
func procCPUTicks(pid int) (int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	return parseStatCPU(data)
}

// parseStatCPU extracts utime + stime from the content of /proc/<pid>/stat.
// The second field, the command name in parentheses, may hold spaces and
// parentheses itself, so fields are counted from its last ')'.
func parseStatCPU(data []byte) (int64, error) {
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, errors.New("/proc stat: no command name")
	}
	// Fields from the 3rd (state) on.
	f := strings.Fields(string(data[i+1:]))
	const utime, stime = 14 - 3, 15 - 3
	if len(f) <= stime {
		return 0, fmt.Errorf("/proc stat: %d fields", len(f)+2)
	}
	u, err := strconv.ParseInt(f[utime], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("/proc stat: utime: %w", err)
	}
	s, err := strconv.ParseInt(f[stime], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("/proc stat: stime: %w", err)
	}
	return u + s, nil
}

// procRSSBytes returns the resident set size of process pid (VmRSS of
// /proc/<pid>/status).
func procRSSBytes(pid int) (int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	return parseVmRSS(data)
}

func parseVmRSS(data []byte) (int64, error) {
	for line := range strings.SplitSeq(string(data), "\n") {
		rest, ok := strings.CutPrefix(line, "VmRSS:")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("/proc status: VmRSS: %q", line)
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc status: VmRSS: %w", err)
		}
		return kb << 10, nil
	}
	return 0, errors.New("/proc status: no VmRSS")
}

// serverProc is a server subprocess.
type serverProc struct {
	cmd    *exec.Cmd
	addr   string
	stdin  io.WriteCloser
	stderr *tailBuffer
	// exited is closed when the process has ended; waitErr is then set.
	exited  chan struct{}
	waitErr error
}

// startServer starts exe's hidden serve subcommand for target and waits
// for the address it listens on (after the preload, which may take a
// while for a million jtis).
func startServer(exe, target, pubFile, authority string, preload int) (*serverProc, error) {
	cmd := exec.Command(exe, "serve-"+target,
		"-preload-jtis", strconv.Itoa(preload), "-pubkey", pubFile, "-issuer", authority)
	// GOMAXPROCS and the rest of the environment are inherited unchanged.
	cmd.Env = os.Environ()
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	lines := make(chan string, 1)
	p := &serverProc{cmd: cmd, stdin: stdin, stderr: newTailBuffer(32 << 10), exited: make(chan struct{})}
	cmd.Stdout = &firstLine{c: lines}
	cmd.Stderr = p.stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.exited)
	}()
	select {
	case line := <-lines:
		addr, found := strings.CutPrefix(line, listenLinePrefix)
		if !found {
			p.kill()
			return nil, fmt.Errorf("%s server did not start (stdout %q): %s", target, line, p.stderr.String())
		}
		p.addr = addr
		return p, nil
	case <-p.exited:
		return nil, fmt.Errorf("%s server ended before listening (%v): %s", target, p.waitErr, p.stderr.String())
	case <-time.After(2 * time.Minute):
		p.kill()
		return nil, fmt.Errorf("%s server did not start within 2 minutes: %s", target, p.stderr.String())
	}
}

// alive reports whether the process is still running.
func (p *serverProc) alive() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// stop asks the server to stop (closing its stdin) and waits up to 15 s
// for it, then kills it. It reports an error when the process had ended
// before it was asked to, or ended with a failure.
func (p *serverProc) stop() error {
	died := !p.alive()
	_ = p.stdin.Close()
	select {
	case <-p.exited:
	case <-time.After(15 * time.Second):
		p.kill()
		return errors.New("server did not stop within 15 s; killed")
	}
	if died {
		return fmt.Errorf("server process ended during the run: %v", p.waitErr)
	}
	if p.waitErr != nil {
		return fmt.Errorf("server process: %v", p.waitErr)
	}
	return nil
}

func (p *serverProc) kill() {
	_ = p.cmd.Process.Kill()
	<-p.exited
}

// firstLine sends the first line written to it on c, and discards the
// rest.
type firstLine struct {
	buf  []byte
	sent bool
	c    chan<- string
}

func (f *firstLine) Write(b []byte) (int, error) {
	if f.sent {
		return len(b), nil
	}
	f.buf = append(f.buf, b...)
	if i := bytes.IndexByte(f.buf, '\n'); i >= 0 {
		f.c <- string(f.buf[:i])
		f.sent = true
		f.buf = nil
	}
	return len(b), nil
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu      sync.Mutex
	max     int
	buf     []byte
	dropped int64
}

func newTailBuffer(max int) *tailBuffer { return &tailBuffer{max: max} }

func (t *tailBuffer) Write(b []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, b...)
	if over := len(t.buf) - t.max; over > 0 {
		t.dropped += int64(over)
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	return len(b), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.dropped > 0 {
		return fmt.Sprintf("(%d earlier bytes dropped)\n%s", t.dropped, t.buf)
	}
	return string(t.buf)
}
