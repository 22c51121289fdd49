//go:build !race

// The race detector changes allocation sizes, so the memory budget is only
// checked in normal builds.

package memory

import (
	"runtime"
	"strconv"
	"testing"
	"time"
)

// jtiBytesBudget is the heap a remembered jti may cost.
const jtiBytesBudget = 150

func TestClaimJTIMemoryPerEntry(t *testing.T) {
	if testing.Short() {
		t.Skip("allocates ~20 MB")
	}
	const n = 100_000
	jtis := make([]string, n) // built first, so they are not counted
	for i := range jtis {
		jtis[i] = "0f6c5a1e-8c9b-4b1e-9d3a-" + strconv.Itoa(1_000_000_000+i)
	}
	until := time.Now().Add(time.Hour)

	s := New()
	before := heapInUse()
	for _, jti := range jtis {
		if fresh, _ := s.ClaimJTI(t.Context(), "https://issuer.example.com/tenants/1234", jti, until); !fresh {
			t.Fatal("claim failed")
		}
	}
	after := heapInUse()
	runtime.KeepAlive(s)
	runtime.KeepAlive(jtis)

	perEntry := float64(after-before) / n
	t.Logf("%.1f bytes of heap per remembered jti", perEntry)
	if perEntry > jtiBytesBudget {
		t.Errorf("%.1f bytes per jti, budget %d", perEntry, jtiBytesBudget)
	}
}

func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}
