package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const sampleGoBench = `goos: linux
BenchmarkVerifyRS256-2          	   35922	     32000 ns/op	    3920 B/op	      42 allocs/op
BenchmarkParseAssertion-2   	   40948	      8000 ns/op	    7288 B/op	     100 allocs/op
BenchmarkValidate-2         	   17604	     45000 ns/op	   11280 B/op	     146 allocs/op
BenchmarkKeyResolution-2    	39607480	        32.23 ns/op	       0 B/op	       0 allocs/op
BenchmarkClaimJTI/preloaded-0-2         	 1000000	    136 ns/op
BenchmarkTokenEndpoint-2        	   22422	     54650 ns/op	   27937 B/op	     239 allocs/op
BenchmarkTokenEndpointRedis-2   	   10243	    109300 ns/op	   31650 B/op	     323 allocs/op
BenchmarkTrustedKeys/1-relationships-2  	 1000000	      30.0 ns/op	       0 B/op	       0 allocs/op
BenchmarkTrustedKeys/1000-relationships-2         	 1000000	      31.0 ns/op
BenchmarkTrustedKeys/100000-relationships-2       	 1000000	      36.0 ns/op
BenchmarkJTIMemory-2     	       1	  74646420 ns/op	        66.41 heap-B/jti
BenchmarkTokenMemory-2   	       1	 117368476 ns/op	       360.6 heap-B/token
ok  	github.com/jwtbearer/jwtbearer/handler	46.986s
`

func TestParseGoBench(t *testing.T) {
	b, err := parseGoBench(strings.NewReader(sampleGoBench))
	require.NoError(t, err)
	assert.Equal(t, 32000.0, b["BenchmarkVerifyRS256"]["ns/op"])
	assert.Equal(t, 42.0, b["BenchmarkVerifyRS256"]["allocs/op"])
	assert.Equal(t, 66.41, b["BenchmarkJTIMemory"]["heap-B/jti"])
	assert.Equal(t, 30.0, b["BenchmarkTrustedKeys/1-relationships"]["ns/op"])
	assert.Contains(t, b, "BenchmarkClaimJTI/preloaded-0")
}

func TestSummary(t *testing.T) {
	dir := t.TempDir()
	goFile := filepath.Join(dir, "go.txt")
	require.NoError(t, os.WriteFile(goFile, []byte(sampleGoBench), 0o600))
	rep := `{"rsa_verify_us": 33.9, "runs": [
 {"target":"ours","concurrency":1,"preloaded_jtis":0,"tokens_per_s":3000,"server_cpu_us_per_token":200,"latency_ms":{"p99":1}},
 {"target":"stock","concurrency":1,"preloaded_jtis":0,"tokens_per_s":1500},
 {"target":"ours","concurrency":16,"preloaded_jtis":0,"tokens_per_s":10000,"server_cpu_us_per_token":100,"latency_ms":{"p99":12}},
 {"target":"stock","concurrency":16,"preloaded_jtis":0,"tokens_per_s":1900},
 {"target":"ours","concurrency":64,"preloaded_jtis":0,"tokens_per_s":9000},
 {"target":"stock","concurrency":64,"preloaded_jtis":0,"tokens_per_s":1800},
 {"target":"ours","concurrency":16,"preloaded_jtis":100000,"tokens_per_s":9900},
 {"target":"stock","concurrency":16,"preloaded_jtis":100000,"tokens_per_s":180},
 {"target":"ours","concurrency":16,"preloaded_jtis":1000000,"tokens_per_s":9500},
 {"target":"stock","concurrency":16,"preloaded_jtis":1000000,"tokens_per_s":15}]}`
	loadFile := filepath.Join(dir, "load.json")
	require.NoError(t, os.WriteFile(loadFile, []byte(rep), 0o600))

	var out, errOut bytes.Buffer
	code := summaryMain([]string{"-gobench", goFile, "-load", loadFile}, &out, &errOut)
	require.Equal(t, 0, code, errOut.String())
	s := out.String()
	assert.Contains(t, s, "| 5.26× | ≥ 5× | met |", "c=16 ratio")
	assert.Contains(t, s, "100 µs = 2.9×", "CPU per token in verifications")
	assert.Contains(t, s, "12.0 ms | ≤ 10 ms | **not met**")
	assert.Contains(t, s, "| 95% | ≥ 90% | met |")
	assert.Contains(t, s, "| +20% | within 10% | **not met** |")
	assert.Contains(t, s, "| 66 B | ≤ 150 B | met |")
	assert.Contains(t, s, "| 0.50 |", "Redis / memory throughput")

	// A missing input is an error, and the table still prints.
	out.Reset()
	code = summaryMain([]string{"-gobench", goFile}, &out, &errOut)
	assert.Equal(t, 1, code)
	assert.Contains(t, errOut.String(), "the load run")
	assert.Contains(t, out.String(), "heap per cached jti")
}
