package server

import (
	"bytes"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// lockedBuffer is a bytes.Buffer for one writer and concurrent readers.
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

func TestLogWriter(t *testing.T) {
	var out lockedBuffer
	l := NewLogWriter(&out, 20*time.Millisecond)
	_, err := l.Write([]byte("one\n"))
	require.NoError(t, err)
	assert.Empty(t, out.String(), "buffered")
	require.Eventually(t, func() bool { return out.String() == "one\n" }, 2*time.Second, 5*time.Millisecond, "written within the interval")

	// Many writers: every line whole, none lost.
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for range 1000 {
				_, _ = l.Write([]byte(strings.Repeat(string(rune('a'+i)), 99) + "\n"))
			}
		})
	}
	wg.Wait()
	require.NoError(t, l.Close())
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	require.Len(t, lines, 8001)
	for _, line := range lines[1:] {
		require.Len(t, line, 99)
		assert.Equal(t, strings.Repeat(line[:1], 99), line, "a line was interleaved with another")
	}
	// After Close, writes go straight through.
	_, err = l.Write([]byte("late\n"))
	require.NoError(t, err)
	assert.True(t, strings.HasSuffix(out.String(), "late\n"))
	require.NoError(t, l.Close(), "twice")
}
