package memory

import (
	"encoding/json"
	"fmt"
	"net/url"
	"testing"
	"time"

	"github.com/ory/fosite"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/text/language"
)

func TestWellKnownIndex(t *testing.T) {
	require.LessOrEqual(t, len(wellKnown), 64, "a well-known string takes one byte")
	for i, s := range wellKnown {
		assert.Equal(t, i, wellKnownIndex(s), s)
	}
	assert.Equal(t, -1, wellKnownIndex(""))
	assert.Equal(t, -1, wellKnownIndex("read"))
}

// The reference below is store/redis's requestRecord, encodeRequest and
// decodeRequest, copied: the memory store must give back what the Redis
// store does.

type refRecord struct {
	ID                string                `json:"id"`
	RequestedAt       time.Time             `json:"requested_at"`
	Client            *fosite.DefaultClient `json:"client,omitempty"`
	RequestedScope    fosite.Arguments      `json:"requested_scope,omitempty"`
	GrantedScope      fosite.Arguments      `json:"granted_scope,omitempty"`
	RequestedAudience fosite.Arguments      `json:"requested_audience,omitempty"`
	GrantedAudience   fosite.Arguments      `json:"granted_audience,omitempty"`
	Form              url.Values            `json:"form,omitempty"`
	Lang              string                `json:"lang,omitempty"`
	Session           json.RawMessage       `json:"session,omitempty"`
}

func refEncode(req fosite.Requester) ([]byte, error) {
	rec := refRecord{
		ID:                req.GetID(),
		RequestedAt:       req.GetRequestedAt(),
		RequestedScope:    req.GetRequestedScopes(),
		GrantedScope:      req.GetGrantedScopes(),
		RequestedAudience: req.GetRequestedAudience(),
		GrantedAudience:   req.GetGrantedAudience(),
		Form:              req.GetRequestForm(),
	}
	if c := req.GetClient(); c != nil {
		rec.Client = &fosite.DefaultClient{
			ID:            c.GetID(),
			RedirectURIs:  c.GetRedirectURIs(),
			GrantTypes:    c.GetGrantTypes(),
			ResponseTypes: c.GetResponseTypes(),
			Scopes:        c.GetScopes(),
			Audience:      c.GetAudience(),
			Public:        c.IsPublic(),
		}
	}
	if l, ok := req.(interface{ GetLang() language.Tag }); ok {
		if tag := l.GetLang(); tag != language.Und {
			rec.Lang = tag.String()
		}
	}
	if sess := req.GetSession(); sess != nil {
		raw, err := json.Marshal(sess)
		if err != nil {
			return nil, err
		}
		rec.Session = raw
	}
	return json.Marshal(&rec)
}

func refDecode(raw []byte, session fosite.Session) (*fosite.Request, error) {
	var rec refRecord
	if err := json.Unmarshal(raw, &rec); err != nil {
		return nil, err
	}
	if session == nil {
		session = &fosite.DefaultSession{}
	}
	if len(rec.Session) > 0 {
		if err := json.Unmarshal(rec.Session, session); err != nil {
			return nil, err
		}
	}
	req := fosite.NewRequest()
	req.ID = rec.ID
	req.RequestedAt = rec.RequestedAt
	if rec.Client != nil {
		req.Client = rec.Client
	}
	if rec.RequestedScope != nil {
		req.RequestedScope = rec.RequestedScope
	}
	if rec.GrantedScope != nil {
		req.GrantedScope = rec.GrantedScope
	}
	if rec.RequestedAudience != nil {
		req.RequestedAudience = rec.RequestedAudience
	}
	if rec.GrantedAudience != nil {
		req.GrantedAudience = rec.GrantedAudience
	}
	if rec.Form != nil {
		req.Form = rec.Form
	}
	if rec.Lang != "" {
		if tag, err := language.Parse(rec.Lang); err == nil {
			req.Lang = tag
		}
	}
	req.Session = session
	return req, nil
}

// roundTrip encodes req as the store does and decodes it into prototype.
func roundTrip(t testing.TB, req fosite.Requester, prototype fosite.Session) *fosite.Request {
	t.Helper()
	enc, err := encodeSession("sig", req.GetID(), req)
	require.NoError(t, err)
	id := req.GetID()
	require.Equal(t, "sig"+id, enc[:3+len(id)])
	got, err := decodeRequest(enc[3+len(id):], id, prototype)
	require.NoError(t, err)
	return got
}

// TestCodecAgreesWithRedis decodes requesters of every shape into
// prototypes of every shape, with the store's codec and with the Redis
// store's JSON, and compares: times with Equal (the zone may be told
// apart, UTC or Local), the rest exactly.
func TestCodecAgreesWithRedis(t *testing.T) {
	exp := time.Date(2030, 1, 2, 3, 4, 5, 6, time.UTC)
	requests := map[string]func() fosite.Requester{
		"full": func() fosite.Requester { return fullRequest(exp) },
		"new":  func() fosite.Requester { return fosite.NewRequest() },
		"access request": func() fosite.Requester {
			r := fosite.NewAccessRequest(&fosite.DefaultSession{})
			r.Lang = language.English
			r.Form.Set("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer")
			return r.Sanitize(nil)
		},
		"empty": func() fosite.Requester {
			return &fosite.Request{ID: "x", Session: &fosite.DefaultSession{
				ExpiresAt: map[fosite.TokenType]time.Time{}, Extra: map[string]any{}}}
		},
		"nil client, no session": func() fosite.Requester {
			return &fosite.Request{ID: "x", RequestedScope: fosite.Arguments{}, Form: url.Values{"a": {}}}
		},
		"client defaults": func() fosite.Requester {
			r := fosite.NewRequest()
			r.Client = &fosite.DefaultClient{ID: "c", Public: true, Scopes: []string{}, RedirectURIs: []string{}}
			return r
		},
		"other zones": func() fosite.Requester {
			r := fosite.NewRequest()
			r.RequestedAt = time.Date(2025, 1, 1, 0, 0, 0, 0, time.FixedZone("X", -(3*3600+1800)))
			r.Session = &fosite.DefaultSession{ExpiresAt: map[fosite.TokenType]time.Time{
				fosite.AccessToken: time.Unix(1_900_000_000, 1).Local(), "custom": {}}}
			return r
		},
		"custom session": func() fosite.Requester {
			r := fosite.NewRequest()
			r.Session = &customSession{DefaultSession: fosite.DefaultSession{Subject: "s"}, Tenant: "t"}
			return r
		},
		"nil DefaultSession": func() fosite.Requester {
			r := fosite.NewRequest()
			r.Session = (*fosite.DefaultSession)(nil)
			return r
		},
		"lang": func() fosite.Requester {
			r := fosite.NewRequest()
			r.Lang = language.MustParse("pt-BR")
			return r
		},
	}
	prototypes := map[string]func() fosite.Session{
		"nil":   func() fosite.Session { return nil },
		"empty": func() fosite.Session { return &fosite.DefaultSession{} },
		"populated": func() fosite.Session {
			return &fosite.DefaultSession{Subject: "old", Username: "old",
				ExpiresAt: map[fosite.TokenType]time.Time{fosite.AuthorizeCode: exp},
				Extra:     map[string]any{"old": true}}
		},
		"custom": func() fosite.Session { return &customSession{Tenant: "old"} },
	}
	for rn, newReq := range requests {
		for pn, newProto := range prototypes {
			t.Run(rn+"/"+pn, func(t *testing.T) {
				req := newReq()
				want, err := refEncode(req)
				require.NoError(t, err)
				wantReq, err := refDecode(want, newProto())
				require.NoError(t, err)
				// GetID gives an empty ID one, so that both see the same.
				got := roundTrip(t, req, newProto())
				assertSameRequest(t, wantReq, got)
			})
		}
	}
}

// assertSameRequest compares requesters, their times with Equal.
func assertSameRequest(t *testing.T, want, got *fosite.Request) {
	t.Helper()
	assert.True(t, want.RequestedAt.Equal(got.RequestedAt), "requested at %v, got %v", want.RequestedAt, got.RequestedAt)
	w, g := *want, *got
	w.RequestedAt, g.RequestedAt = time.Time{}, time.Time{}
	w.Session, g.Session = nil, nil
	assert.Equal(t, w, g)

	assert.IsType(t, want.Session, got.Session)
	wantExp, gotExp := expiries(want.Session), expiries(got.Session)
	require.Equal(t, wantExp == nil, gotExp == nil, "nil expiry maps agree")
	require.Len(t, gotExp, len(wantExp))
	for k, v := range wantExp {
		assert.True(t, v.Equal(gotExp[k]), "%s expires at %v, got %v", k, v, gotExp[k])
	}
	ws, gs := withoutExpiries(want.Session), withoutExpiries(got.Session)
	assert.Equal(t, ws, gs)
}

func expiries(s fosite.Session) map[fosite.TokenType]time.Time {
	switch s := s.(type) {
	case *fosite.DefaultSession:
		return s.ExpiresAt
	case *customSession:
		return s.ExpiresAt
	}
	return nil
}

func withoutExpiries(s fosite.Session) any {
	switch s := s.(type) {
	case *fosite.DefaultSession:
		c := *s
		c.ExpiresAt = nil
		return c
	case *customSession:
		c := *s
		c.ExpiresAt = nil
		return c
	}
	return s
}

func TestCodecTimes(t *testing.T) {
	for _, tm := range []time.Time{
		{},
		time.Unix(0, 0).UTC(),
		time.Unix(-1, 999_999_999).UTC(),
		time.Date(1, 1, 1, 0, 0, 0, 1, time.UTC),
		time.Date(9999, 12, 31, 23, 59, 59, 999_999_999, time.UTC),
		time.Now(),
		time.Now().UTC(),
		time.Date(2025, 6, 1, 12, 0, 0, 0, time.FixedZone("", 5*3600+1800)),
		time.Date(2025, 6, 1, 12, 0, 0, 0, time.FixedZone("", -7)),
	} {
		var e encoder
		e.time(tm)
		d := decoder{s: string(e.b)}
		got := d.time()
		require.False(t, d.bad)
		require.Empty(t, d.s)
		assert.True(t, tm.Equal(got), "%v became %v", tm, got)
		_, wantOff := tm.Zone()
		_, gotOff := got.Zone()
		assert.Equal(t, wantOff, gotOff, tm.String())
		assert.Equal(t, tm.IsZero(), got.IsZero())
	}
}

// TestCodecCorrupt decodes every prefix of an encoding, and some bytes
// flipped: an error each time, or a request, but never a panic.
func TestCodecCorrupt(t *testing.T) {
	enc, err := encodeSession("", "req-full", fullRequest(time.Now()))
	require.NoError(t, err)
	body := enc[len("req-full"):]
	for n := range len(body) {
		_, err := decodeRequest(body[:n], "req-full", nil)
		assert.ErrorIs(t, err, errCorrupt, "prefix of %d bytes", n)
	}
	_, err = decodeRequest(body+"x", "req-full", nil)
	assert.ErrorIs(t, err, errCorrupt, "trailing bytes")
	for i := range len(body) {
		for _, c := range []byte{0, 0x7f, 0x80, 0xff} {
			b := []byte(body)
			b[i] = c
			_, _ = decodeRequest(string(b), "req-full", nil)
		}
	}
}

// TestCodecAllocations pins what encoding and decoding the requester the
// jwt-bearer grant stores allocate: the encoding, one string (and the
// default response types fosite's DefaultClient.GetResponseTypes makes);
// the decoding, the request, its client, its lists (one allocation), its
// form and its session's expiry map (two each), besides the prototype.
func TestCodecAllocations(t *testing.T) {
	req := benchRequest(0)
	enc, err := encodeSession("0f6c5a1e8c9b4b1e9d3a0f6c5a1e8c9b4b1e9d3a000", req.GetID(), req)
	require.NoError(t, err)
	encAllocs := testing.AllocsPerRun(100, func() {
		_, _ = encodeSession("0f6c5a1e8c9b4b1e9d3a0f6c5a1e8c9b4b1e9d3a000", req.GetID(), req)
	})
	// Under the race detector sync.Pool drops buffers at random, which
	// AllocsPerRun's average mostly hides.
	assert.LessOrEqual(t, encAllocs, 3.0, "encode")

	body, id := enc[43+len(req.GetID()):], req.GetID()
	decAllocs := testing.AllocsPerRun(100, func() {
		_, _ = decodeRequest(body, id, &fosite.DefaultSession{})
	})
	assert.LessOrEqual(t, decAllocs, 8.0, "decode")
	t.Logf("encoding: %d bytes, %v allocations; decoding: %v allocations", len(enc), encAllocs, decAllocs)
}

// benchRequest is the requester fosite stores for a jwt-bearer grant.
func benchRequest(i int) fosite.Requester {
	exp := time.Now().Add(time.Hour).UTC().Truncate(time.Second)
	client := &fosite.DefaultClient{ID: "https://issuer.example", GrantTypes: fosite.Arguments{"urn:ietf:params:oauth:grant-type:jwt-bearer"}}
	r := fosite.NewAccessRequest(&fosite.DefaultSession{Subject: "system:serviceaccount:prod:api",
		ExpiresAt: map[fosite.TokenType]time.Time{fosite.AccessToken: exp}})
	r.ID = fmt.Sprintf("6b1e0f6c-5a1e-4c9b-9d3a-%012d", i)
	r.Client = client
	r.GrantedScope = fosite.Arguments{"read", "write"}
	r.RequestedScope = fosite.Arguments{"read", "write"}
	r.GrantTypes = fosite.Arguments{"urn:ietf:params:oauth:grant-type:jwt-bearer"}
	r.Lang = language.English
	r.Form.Set("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer")
	r.Form.Set("scope", "read write")
	return r.Sanitize(nil)
}

// BenchmarkCodec compares the store's codec with the JSON of store/redis
// on the requester of a jwt-bearer grant.
func BenchmarkCodec(b *testing.B) {
	req := benchRequest(0)
	const sig = "0f6c5a1e8c9b4b1e9d3a0f6c5a1e8c9b4b1e9d3a000"
	b.Run("encode", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := encodeSession(sig, req.GetID(), req); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encode-json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := refEncode(req); err != nil {
				b.Fatal(err)
			}
		}
	})
	enc, _ := encodeSession(sig, req.GetID(), req)
	body, id := enc[len(sig)+len(req.GetID()):], req.GetID()
	raw, _ := refEncode(req)
	b.Logf("encoding: %d bytes; JSON: %d bytes", len(enc)-len(sig), len(raw))
	b.Run("decode", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := decodeRequest(body, id, &fosite.DefaultSession{}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("decode-json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := refDecode(raw, &fosite.DefaultSession{}); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestCodecUnencodableSession checks that a session JSON cannot encode is
// refused when stored, as store/redis refuses it, rather than lost.
func TestCodecUnencodableSession(t *testing.T) {
	s := New()
	req := fosite.NewRequest()
	req.Session = &fosite.DefaultSession{Extra: map[string]any{"ch": make(chan int)}}
	assert.Error(t, s.CreateAccessTokenSession(t.Context(), "at", req))
	req.Session = &customSession{DefaultSession: fosite.DefaultSession{Extra: map[string]any{"f": func() {}}}}
	assert.Error(t, s.CreateRefreshTokenSession(t.Context(), "rt", "at", req))
	assert.Empty(t, s.tokens.access)
	assert.Empty(t, s.tokens.refresh)
}
