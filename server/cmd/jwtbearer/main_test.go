package main

import (
	"bytes"
	"errors"
	"flag"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestRunHelp(t *testing.T) {
	for _, arg := range []string{"help", "-h", "--help"} {
		t.Run(arg, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			require.NoError(t, run(t.Context(), []string{arg}, &stdout, &stderr))
			for _, cmd := range []string{"serve", "keygen", "mint", "token", "help"} {
				assert.Contains(t, stdout.String(), "\n  "+cmd+" ")
			}
			assert.Empty(t, stderr.String())
		})
	}
}

func TestRunHelpCommand(t *testing.T) {
	var stdout, stderr bytes.Buffer
	err := run(t.Context(), []string{"help", "mint"}, &stdout, &stderr)
	assert.ErrorIs(t, err, flag.ErrHelp)
	assert.Equal(t, 0, exitCode(err, &stderr))
	assert.Contains(t, stderr.String(), "Usage: jwtbearer mint -key FILE")
	assert.Contains(t, stderr.String(), "-no-jti")
}

func TestRunUnknownCommand(t *testing.T) {
	var stdout, stderr bytes.Buffer
	err := run(t.Context(), []string{"frobnicate"}, &stdout, &stderr)
	require.Error(t, err)
	assert.Equal(t, 2, exitCode(err, &stderr))
	assert.Contains(t, stderr.String(), "Usage: jwtbearer <command>")
	assert.Contains(t, stderr.String(), `jwtbearer: unknown command "frobnicate"`)
}

func TestRunBadFlag(t *testing.T) {
	var stdout, stderr bytes.Buffer
	err := run(t.Context(), []string{"mint", "-bogus"}, &stdout, &stderr)
	require.Error(t, err)
	var errOut bytes.Buffer
	assert.Equal(t, 2, exitCode(err, &errOut))
	assert.Empty(t, errOut.String(), "the flag package already reported it")
	assert.Contains(t, stderr.String(), "flag provided but not defined: -bogus")
}

func TestRunStrayArgument(t *testing.T) {
	var stdout, stderr bytes.Buffer
	err := run(t.Context(), []string{"keygen", "-out", "x", "extra"}, &stdout, &stderr)
	require.Error(t, err)
	assert.Equal(t, 2, exitCode(err, &stderr))
	assert.Contains(t, stderr.String(), `unexpected argument "extra"`)
}

func TestExitCode(t *testing.T) {
	tests := []struct {
		name       string
		err        error
		want       int
		wantStderr string
	}{
		{"success", nil, 0, ""},
		{"help", flag.ErrHelp, 0, ""},
		{"usage", usageErrorf(false, "mint: missing -key"), 2, "jwtbearer: mint: missing -key\n"},
		{"usage already reported", usageErrorf(true, "bad flag"), 2, ""},
		{"failure", errors.New("token: server answered 400"), 1, "jwtbearer: token: server answered 400\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stderr bytes.Buffer
			assert.Equal(t, tt.want, exitCode(tt.err, &stderr))
			assert.Equal(t, tt.wantStderr, stderr.String())
		})
	}
}
