package server

import (
	"bufio"
	"io"
	"sync"
	"time"
)

// LogWriter buffers log output and writes it out at least every interval,
// whenever the buffer fills, and on Close. At thousands of tokens a second
// the audit log is a line per token; one write system call for each would
// cost the server about a tenth of its CPU. A line waits at most one
// interval, and Close (on shutdown) writes what is left; a crash loses at
// most the last interval's lines.
type LogWriter struct {
	mu     sync.Mutex
	buf    *bufio.Writer
	done   chan struct{}
	closed bool
	wg     sync.WaitGroup
}

// NewLogWriter starts a LogWriter writing to w. interval ≤ 0 means 100 ms.
func NewLogWriter(w io.Writer, interval time.Duration) *LogWriter {
	if interval <= 0 {
		interval = 100 * time.Millisecond
	}
	l := &LogWriter{buf: bufio.NewWriterSize(w, 64<<10), done: make(chan struct{})}
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				_ = l.Flush()
			case <-l.done:
				return
			}
		}
	}()
	return l
}

// Write buffers p. After Close it writes through.
func (l *LogWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	n, err := l.buf.Write(p)
	if err == nil && l.closed {
		err = l.buf.Flush()
	}
	return n, err
}

// Flush writes out what is buffered.
func (l *LogWriter) Flush() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Flush()
}

// Close stops the periodic flushing and writes out what is buffered; later
// writes go straight through.
func (l *LogWriter) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	l.mu.Unlock()
	close(l.done)
	l.wg.Wait()
	return l.Flush()
}
