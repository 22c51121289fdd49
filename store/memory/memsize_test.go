//go:build !race

// The race detector changes allocation sizes, so memory is only measured
// in normal builds.

package memory

import (
	"context"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/ory/fosite"
)

// BenchmarkJTIMemory reports the heap one remembered jti costs (issue 5:
// at most 150 bytes), measured over 100,000 claims of realistic jtis.
func BenchmarkJTIMemory(b *testing.B) {
	const n = 100_000
	jtis := make([]string, n) // built first, so they are not counted
	for i := range jtis {
		jtis[i] = "0f6c5a1e-8c9b-4b1e-9d3a-" + strconv.Itoa(1_000_000_000+i)
	}
	until := time.Now().Add(time.Hour)
	var perEntry float64
	for b.Loop() {
		s := New()
		before := heapInUse()
		for _, jti := range jtis {
			if fresh, _ := s.ClaimJTI(context.Background(), "https://issuer.example.com/tenants/1234", jti, until); !fresh {
				b.Fatal("claim failed")
			}
		}
		perEntry = float64(heapInUse()-before) / n
		runtime.KeepAlive(s)
	}
	runtime.KeepAlive(jtis)
	b.ReportMetric(perEntry, "heap-B/jti")
}

// BenchmarkTokenMemory reports the heap one live access token costs in the
// memory store: fosite's requester as the jwt-bearer grant leaves it (a
// client, two scopes, a session with subject and expiry) under a 43-byte
// HMAC signature, measured over 20,000 tokens. The store keeps each
// requester encoded in one string (see codec.go), so this is that string,
// the session record and the index entries.
func BenchmarkTokenMemory(b *testing.B) {
	const n = 20_000
	client := &fosite.DefaultClient{ID: "https://issuer.example", GrantTypes: fosite.Arguments{"urn:ietf:params:oauth:grant-type:jwt-bearer"}}
	exp := time.Now().Add(time.Hour)
	sigs := make([]string, n)
	for i := range sigs {
		sigs[i] = "0f6c5a1e8c9b4b1e9d3a0f6c5a1e8c9b4b1e9d3a" + strconv.Itoa(100+i%900) + strconv.Itoa(i)
	}
	var perToken float64
	for b.Loop() {
		s := New()
		// The requesters are made inside the measured span: each token
		// request makes its own, and the store keeps it.
		before := heapInUse()
		for i := range n {
			r := fosite.NewAccessRequest(&fosite.DefaultSession{Subject: "system:serviceaccount:prod:api",
				ExpiresAt: map[fosite.TokenType]time.Time{fosite.AccessToken: exp}})
			r.ID = strconv.Itoa(i)
			r.Client = client
			r.GrantedScope = fosite.Arguments{"read", "write"}
			r.RequestedScope = fosite.Arguments{"read", "write"}
			r.GrantTypes = fosite.Arguments{"urn:ietf:params:oauth:grant-type:jwt-bearer"}
			if err := s.CreateAccessTokenSession(context.Background(), sigs[i], r); err != nil {
				b.Fatal(err)
			}
		}
		perToken = float64(heapInUse()-before) / n
		runtime.KeepAlive(s)
	}
	b.ReportMetric(perToken, "heap-B/token")
}

func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}
