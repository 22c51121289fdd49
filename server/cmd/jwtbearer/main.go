// Command jwtbearer is an OAuth 2.0 JWT Bearer grant (RFC 7523 §2.1) server
// together with the client tools to try it: keygen makes a signing key pair,
// mint signs an assertion and token exchanges one for an access token.
//
// The client side follows the bshaffer/oauth2-server-php walkthrough the
// project started from: a PEM key pair (id_rsa, id_rsa.pub), an RS256
// assertion with iss, sub, aud, exp and iat, and a form POST of
// grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer&assertion=….
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

const usageText = `Usage: jwtbearer <command> [flags]

An OAuth 2.0 JWT Bearer grant (RFC 7523) server and its client tools.

Commands:
  serve    run the token server (the default when no command is given)
  keygen   create a PEM signing key pair and print its public JWK
  mint     sign a JWT bearer assertion and print it
  token    mint an assertion and exchange it at a token endpoint
  help     show this help, or 'help <command>' for the flags of a command

Run 'jwtbearer <command> -h' for the flags of a command.
`

func main() {
	// A signal cancels ctx so that serve can shut down cleanly and token
	// can abandon its request.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(exitCode(err, os.Stderr))
}

// run dispatches to a subcommand. It is separate from main so tests can
// drive the whole command line without a process.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return runServe(ctx, nil, stdout, stderr)
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "serve":
		return runServe(ctx, rest, stdout, stderr)
	case "keygen":
		return runKeygen(ctx, rest, stdout, stderr)
	case "mint":
		return runMint(ctx, rest, stdout, stderr)
	case "token":
		return runToken(ctx, rest, stdout, stderr)
	case "help", "-h", "-help", "--help":
		if len(rest) > 0 {
			switch rest[0] {
			case "serve", "keygen", "mint", "token":
				return run(ctx, []string{rest[0], "-h"}, stdout, stderr)
			}
		}
		_, _ = fmt.Fprint(stdout, usageText)
		return nil
	}
	_, _ = fmt.Fprint(stderr, usageText)
	return usageErrorf(false, "unknown command %q", cmd)
}

// usageError marks a command-line mistake, for which main exits with
// status 2 like the flag package does.
type usageError struct {
	err error
	// reported is true when the message was already written to stderr
	// (the flag package prints its own errors), so main stays quiet.
	reported bool
}

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

func usageErrorf(reported bool, format string, args ...any) error {
	return &usageError{err: fmt.Errorf(format, args...), reported: reported}
}

// exitCode reports err on stderr unless that was done already and returns
// the process status: 0 for success and -h, 2 for usage errors, else 1.
func exitCode(err error, stderr io.Writer) int {
	if err == nil || errors.Is(err, flag.ErrHelp) {
		return 0
	}
	var ue *usageError
	if errors.As(err, &ue) {
		if !ue.reported {
			_, _ = fmt.Fprintf(stderr, "jwtbearer: %v\n", err)
		}
		return 2
	}
	_, _ = fmt.Fprintf(stderr, "jwtbearer: %v\n", err)
	return 1
}

// newFlagSet returns a flag set that reports errors instead of exiting, so
// subcommands are testable, and whose -h output starts with synopsis.
func newFlagSet(name, synopsis string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		_, _ = fmt.Fprintf(stderr, "Usage: jwtbearer %s %s\n\nFlags:\n", name, synopsis)
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags parses args and turns flag errors into usage errors (exit
// status 2). Positional arguments are refused: every subcommand takes flags
// only, and a stray word usually means a flag value lost its quotes.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return &usageError{err: err, reported: true}
	}
	if fs.NArg() > 0 {
		return usageErrorf(false, "%s: unexpected argument %q", fs.Name(), fs.Arg(0))
	}
	return nil
}
