package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// grantTypeJWTBearer is the grant_type of RFC 7523 §2.1.
const grantTypeJWTBearer = "urn:ietf:params:oauth:grant-type:jwt-bearer"

const (
	// tokenTimeout bounds the whole exchange so a stuck server cannot hang
	// a script.
	tokenTimeout = 10 * time.Second
	// maxResponseBytes caps what we read of the answer; a token response
	// is a few kilobytes at most.
	maxResponseBytes = 1 << 20
)

const tokenSynopsis = "-url URL -key FILE -iss ISS -sub SUB [-aud AUD ...] [-client-id ID -client-secret SECRET] " +
	"[-scope \"a b\" [-scope-claim]] [any other mint flag]"

// runToken does what the curl line of the bshaffer walkthrough does: mint
// an assertion and POST it to the token endpoint, then print the answer.
//
// -scope goes in the form's scope parameter (RFC 7523 §2.1, RFC 6749
// §3.3) unless -scope-claim is given, in which case it goes in the
// assertion's scope claim instead, as Google and golang.org/x/oauth2/jwt
// send it.
func runToken(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var opts mintOptions
	fs := newFlagSet("token", tokenSynopsis, stderr)
	tokenURL := fs.String("url", "", "token endpoint `URL` (required)")
	clientID := fs.String("client-id", "", "client `ID` for HTTP Basic authentication (RFC 6749 §2.3.1)")
	clientSecret := fs.String("client-secret", "", "client `SECRET` for HTTP Basic authentication")
	scopeClaim := fs.Bool("scope-claim", false, "send -scope as a claim in the assertion instead of a form parameter")
	opts.addFlags(fs)
	fs.Lookup("aud").Usage = "audience `AUD`; repeat for several (default the -url value)"
	fs.Lookup("scope").Usage = "space-separated `SCOPES` to request"
	if err := parseFlags(fs, args); err != nil {
		return err
	}

	if *tokenURL == "" {
		return usageErrorf(false, "token: missing required flag -url")
	}
	if u, err := url.Parse(*tokenURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return usageErrorf(false, "token: -url %q is not an http(s) URL", *tokenURL)
	}
	if (*clientID == "") != (*clientSecret == "") {
		return usageErrorf(false, "token: give both -client-id and -client-secret, or neither")
	}
	if len(opts.Audience) == 0 {
		opts.Audience = stringList{*tokenURL}
	}
	scope := opts.Scope
	if !*scopeClaim {
		opts.Scope = ""
	}
	if err := opts.validate(); err != nil {
		return usageErrorf(false, "token: %v", err)
	}

	assertion, err := mintAssertion(opts, time.Now())
	if err != nil {
		return fmt.Errorf("token: %w", err)
	}
	form := url.Values{"grant_type": {grantTypeJWTBearer}, "assertion": {assertion}}
	if scope != "" && !*scopeClaim {
		form.Set("scope", scope)
	}
	body, err := postToken(ctx, *tokenURL, form, *clientID, *clientSecret)
	if err != nil {
		return fmt.Errorf("token: %w", err)
	}
	var pretty bytes.Buffer
	if json.Indent(&pretty, body, "", "  ") == nil {
		body = pretty.Bytes()
	}
	body = bytes.TrimRight(body, "\n")
	_, err = fmt.Fprintf(stdout, "%s\n", body)
	return err
}

// postToken sends form to the token endpoint and returns the body of a 2xx
// answer. Any other status becomes an error carrying the RFC 6749 §5.2
// error code and description, so the command exits non-zero.
func postToken(ctx context.Context, tokenURL string, form url.Values, clientID, clientSecret string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, tokenURL, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	if clientID != "" {
		// RFC 6749 §2.3.1: form-encode both parts before Basic encoding.
		req.SetBasicAuth(url.QueryEscape(clientID), url.QueryEscape(clientSecret))
	}

	client := &http.Client{
		Timeout: tokenTimeout,
		// A token endpoint has no reason to redirect, and following one
		// would resend the assertion (and credentials) somewhere else.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read response: %w", err)
	}
	if len(body) > maxResponseBytes {
		return nil, fmt.Errorf("%s: response larger than %d bytes", resp.Status, maxResponseBytes)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return nil, tokenError(resp.Status, body)
	}
	return body, nil
}

// tokenError describes a failed token request by its status and the
// RFC 6749 §5.2 error and error_description, or by the start of the body
// when it is not such a JSON object.
func tokenError(status string, body []byte) error {
	var e struct {
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}
	if json.Unmarshal(body, &e) != nil || e.Error == "" {
		text := strings.TrimSpace(string(body))
		if len(text) > 200 {
			text = strings.ToValidUTF8(text[:200], "") + "…"
		}
		if text == "" {
			return fmt.Errorf("server answered %s", status)
		}
		return fmt.Errorf("server answered %s: %s", status, text)
	}
	if e.Description == "" {
		return fmt.Errorf("server answered %s: %s", status, e.Error)
	}
	return fmt.Errorf("server answered %s: %s: %s", status, e.Error, e.Description)
}
