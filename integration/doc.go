// Package integration holds the black-box tests of the jwtbearer server:
// each test starts a real server (in process on an httptest listener, or
// the built jwtbearer binary) and talks to it over HTTP on 127.0.0.1 only,
// as a client would, with hand-built requests, golang.org/x/oauth2 and the
// jwtbearer command-line tools.
package integration
