package memory

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"sync"
	"time"

	"github.com/ory/fosite"
	"golang.org/x/text/language"
)

// The memory store keeps each token session's requester as an immutable
// string in the compact binary form below rather than as fosite's pointer
// graph (request, client, session, their maps and slices): tens of
// thousands of live tokens then cost the garbage collector one pointer
// each instead of dozens, and the store holds nothing of the caller's.
//
// The form is private to this process, so it has no version: it can change
// with the code. It keeps what store/redis keeps (its requestRecord), with
// the same meaning on the way back: the request's ID, time, scopes,
// audiences, form and language; the client's identity, not its secrets;
// and the session, decoded into the prototype fosite passes.
//
// A session's string is its signature, its request ID, then the
// requester, where integers are unsigned varints (signed ones zigzagged)
// and a string is a varint h then, when h is even, h/2 bytes; when h is
// odd, it is the well-known string wellKnown[h/2], without bytes. A list
// is its length, then its strings; an optional list (nil apart from empty)
// is its length plus one, 0 for nil. A time is the unix seconds, the
// nanoseconds and the zone (timeUTC, timeLocal, or timeFixed then the
// offset in seconds). The requester is, in order:
//
//   - the count of the strings in all the lists below, so that they are
//     decoded into one allocation: a varint of elemsLen bytes, padded
//     with continuation bits, since it is known last;
//   - the requested-at time;
//   - the client: 0, or 1 then its ID, public (0 or 1), and the optional
//     lists of redirect URIs, grant types, response types, scopes and
//     audience;
//   - the lists of requested and granted scopes, requested and granted
//     audiences;
//   - the form: its count of keys, then each key and its list of values;
//   - the language: langUnd, langEnglish, or langOther then the tag;
//   - the session: sessionNone; sessionDefault then the count of expiries
//     plus one (0 for a nil map) with each token type and time, the
//     username, the subject and the extra claims (extraNil, extraEmpty, or
//     extraJSON then their JSON as a string); or sessionJSON then the
//     session's JSON as a string.

const (
	timeUTC = iota
	timeLocal
	timeFixed
)

const (
	langUnd = iota
	langEnglish
	langOther
)

const (
	sessionNone = iota
	sessionDefault
	sessionJSON
)

const (
	extraNil = iota
	extraEmpty
	extraJSON
)

// wellKnown are strings most requesters carry, each stored as one byte.
// Any order works, but wellKnownIndex must agree with it (a test checks);
// at most 64 entries keep the byte single.
var wellKnown = [...]string{
	"urn:ietf:params:oauth:grant-type:jwt-bearer",
	"grant_type",
	"scope",
	"client_id",
	"response_type",
	"audience",
	"refresh_token",
	"access_token",
	"authorization_code",
	"client_credentials",
	"code",
	"token",
	"id_token",
	"openid",
	"offline",
	"offline_access",
	"authorize_code",
	"password",
	"implicit",
}

func wellKnownIndex(s string) int {
	switch s {
	case "urn:ietf:params:oauth:grant-type:jwt-bearer":
		return 0
	case "grant_type":
		return 1
	case "scope":
		return 2
	case "client_id":
		return 3
	case "response_type":
		return 4
	case "audience":
		return 5
	case "refresh_token":
		return 6
	case "access_token":
		return 7
	case "authorization_code":
		return 8
	case "client_credentials":
		return 9
	case "code":
		return 10
	case "token":
		return 11
	case "id_token":
		return 12
	case "openid":
		return 13
	case "offline":
		return 14
	case "offline_access":
		return 15
	case "authorize_code":
		return 16
	case "password":
		return 17
	case "implicit":
		return 18
	}
	return -1
}

// encoder appends to a scratch buffer from encoders, so that encoding
// allocates only the resulting string.
type encoder struct {
	b []byte
	// elems counts the strings of the lists written.
	elems int
}

var encoders = sync.Pool{New: func() any { return &encoder{b: make([]byte, 0, 512)} }}

func (e *encoder) uvarint(v uint64) {
	for v >= 0x80 {
		e.b = append(e.b, byte(v)|0x80)
		v >>= 7
	}
	e.b = append(e.b, byte(v))
}

func (e *encoder) varint(v int64) { e.uvarint(uint64(v<<1) ^ uint64(v>>63)) }

func (e *encoder) bool(v bool) {
	if v {
		e.b = append(e.b, 1)
	} else {
		e.b = append(e.b, 0)
	}
}

func (e *encoder) str(s string) {
	if i := wellKnownIndex(s); i >= 0 {
		e.uvarint(uint64(i)<<1 | 1)
		return
	}
	e.uvarint(uint64(len(s)) << 1)
	e.b = append(e.b, s...)
}

func (e *encoder) list(l []string) {
	e.elems += len(l)
	e.uvarint(uint64(len(l)))
	for _, s := range l {
		e.str(s)
	}
}

func (e *encoder) optList(l []string) {
	if l == nil {
		e.uvarint(0)
		return
	}
	e.elems += len(l)
	e.uvarint(uint64(len(l)) + 1)
	for _, s := range l {
		e.str(s)
	}
}

func (e *encoder) time(t time.Time) {
	e.varint(t.Unix())
	e.uvarint(uint64(t.Nanosecond()))
	switch loc := t.Location(); loc {
	case time.UTC:
		e.uvarint(timeUTC)
	case time.Local:
		e.uvarint(timeLocal)
	default:
		_, offset := t.Zone()
		e.uvarint(timeFixed)
		e.varint(int64(offset))
	}
}

// encodeSession encodes a token session: its signature, its request's ID
// and the requester, in one string.
func encodeSession(signature, id string, req fosite.Requester) (string, error) {
	e := encoders.Get().(*encoder)
	defer func() {
		if cap(e.b) <= 64<<10 {
			encoders.Put(e)
		}
	}()
	e.b = append(e.b[:0], signature...)
	e.b = append(e.b, id...)
	if err := e.request(req); err != nil {
		return "", err
	}
	return string(e.b), nil
}

func (e *encoder) request(req fosite.Requester) error {
	var redirectURIs, grantTypes, responseTypes, clientScopes, clientAudience []string
	c := req.GetClient()
	if c != nil {
		redirectURIs, grantTypes, responseTypes = c.GetRedirectURIs(), c.GetGrantTypes(), c.GetResponseTypes()
		clientScopes, clientAudience = c.GetScopes(), c.GetAudience()
	}
	requestedScope, grantedScope := req.GetRequestedScopes(), req.GetGrantedScopes()
	requestedAudience, grantedAudience := req.GetRequestedAudience(), req.GetGrantedAudience()
	form := req.GetRequestForm()

	// The count of list strings goes first but is known last: it gets
	// elemsLen bytes, a varint padded with continuation bits, filled in
	// at the end, rather than a second pass over the form.
	e.elems = 0
	at := len(e.b)
	e.b = append(e.b, make([]byte, elemsLen)...)
	e.time(req.GetRequestedAt())

	if c == nil {
		e.bool(false)
	} else {
		e.bool(true)
		e.str(c.GetID())
		e.bool(c.IsPublic())
		e.optList(redirectURIs)
		e.optList(grantTypes)
		e.optList(responseTypes)
		e.optList(clientScopes)
		e.optList(clientAudience)
	}
	e.list(requestedScope)
	e.list(grantedScope)
	e.list(requestedAudience)
	e.list(grantedAudience)
	e.uvarint(uint64(len(form)))
	for k, v := range form {
		e.str(k)
		e.list(v)
	}

	tag := language.Und
	if l, ok := req.(interface{ GetLang() language.Tag }); ok {
		tag = l.GetLang()
	}
	switch tag {
	case language.Und:
		e.uvarint(langUnd)
	case language.English:
		e.uvarint(langEnglish)
	default:
		e.uvarint(langOther)
		e.str(tag.String())
	}

	if err := e.session(req.GetSession()); err != nil {
		return fmt.Errorf("session: %w", err)
	}

	if e.elems >= 1<<(7*elemsLen) {
		return errors.New("too many scopes, audiences and form values")
	}
	for i := range elemsLen - 1 {
		e.b[at+i] = byte(e.elems>>(7*i)) | 0x80
	}
	e.b[at+elemsLen-1] = byte(e.elems >> (7 * (elemsLen - 1)))
	return nil
}

// elemsLen is the size of the count of list strings: up to 2²¹ - 1.
const elemsLen = 3

func (e *encoder) session(sess fosite.Session) error {
	if sess == nil {
		e.uvarint(sessionNone)
		return nil
	}
	ds, ok := sess.(*fosite.DefaultSession)
	if !ok {
		raw, err := json.Marshal(sess)
		if err != nil {
			return err
		}
		e.uvarint(sessionJSON)
		e.uvarint(uint64(len(raw)) << 1)
		e.b = append(e.b, raw...)
		return nil
	}
	if ds == nil {
		// What JSON would do with it: "null" decodes to nothing.
		e.uvarint(sessionNone)
		return nil
	}
	e.uvarint(sessionDefault)
	if ds.ExpiresAt == nil {
		e.uvarint(0)
	} else {
		e.uvarint(uint64(len(ds.ExpiresAt)) + 1)
		for k, t := range ds.ExpiresAt {
			e.str(string(k))
			e.time(t)
		}
	}
	e.str(ds.Username)
	e.str(ds.Subject)
	switch {
	case ds.Extra == nil:
		e.uvarint(extraNil)
	case len(ds.Extra) == 0:
		e.uvarint(extraEmpty)
	default:
		raw, err := json.Marshal(ds.Extra)
		if err != nil {
			return err
		}
		e.uvarint(extraJSON)
		e.uvarint(uint64(len(raw)) << 1)
		e.b = append(e.b, raw...)
	}
	return nil
}

var errCorrupt = errors.New("memory: token session: stored record is corrupt")

// decoder reads an encoding; its strings are substrings of it. The first
// malformed read sets bad, and every read after it returns zero values.
type decoder struct {
	s   string
	bad bool
	// elems is where lists are carved from.
	elems []string
}

func (d *decoder) uvarint() uint64 {
	var v uint64
	for shift := uint(0); shift < 64; shift += 7 {
		if len(d.s) == 0 {
			break
		}
		c := d.s[0]
		d.s = d.s[1:]
		v |= uint64(c&0x7f) << shift
		if c < 0x80 {
			return v
		}
	}
	d.bad = true
	d.s = ""
	return 0
}

func (d *decoder) varint() int64 {
	u := d.uvarint()
	return int64(u>>1) ^ -int64(u&1)
}

func (d *decoder) bool() bool { return d.uvarint() != 0 }

// count reads a length, which must not exceed the bytes left since each
// element takes at least one.
func (d *decoder) count() int {
	n := d.uvarint()
	if n > uint64(len(d.s)) {
		d.bad = true
		d.s = ""
		return 0
	}
	return int(n)
}

func (d *decoder) str() string {
	h := d.uvarint()
	if h&1 == 1 {
		if h>>1 >= uint64(len(wellKnown)) {
			d.bad = true
			d.s = ""
			return ""
		}
		return wellKnown[h>>1]
	}
	n := h >> 1
	if n > uint64(len(d.s)) {
		d.bad = true
		d.s = ""
		return ""
	}
	s := d.s[:n]
	d.s = d.s[n:]
	return s
}

// take carves n strings off elems.
func (d *decoder) take(n int) []string {
	if n > len(d.elems) {
		d.bad = true
		d.s = ""
		return nil
	}
	l := d.elems[:n:n]
	d.elems = d.elems[n:]
	return l
}

// list reads a list into a non-nil slice, as store/redis's decoding leaves
// fosite.NewRequest's empty slices for the lists it did not store.
func (d *decoder) list() fosite.Arguments {
	n := d.count()
	if n == 0 {
		return fosite.Arguments{}
	}
	l := d.take(n)
	for i := range l {
		l[i] = d.str()
	}
	return l
}

func (d *decoder) optList() []string {
	n := d.count()
	if n == 0 {
		return nil
	}
	if n--; n == 0 {
		return []string{}
	}
	l := d.take(n)
	for i := range l {
		l[i] = d.str()
	}
	return l
}

func (d *decoder) time() time.Time {
	sec := d.varint()
	nsec := d.uvarint()
	zone := d.uvarint()
	if nsec >= 1e9 {
		d.bad = true
		d.s = ""
		return time.Time{}
	}
	t := time.Unix(sec, int64(nsec))
	switch zone {
	case timeUTC:
		return t.UTC()
	case timeLocal:
		return t
	default:
		return t.In(time.FixedZone("", int(d.varint())))
	}
}

// decodeRequest rebuilds the requester from its encoding (after the
// signature and request ID), with the session decoded into session (a
// fosite.DefaultSession when nil), as store/redis's decodeRequest does.
func decodeRequest(enc, id string, session fosite.Session) (*fosite.Request, error) {
	d := decoder{s: enc}
	if n := d.count(); n > 0 {
		d.elems = make([]string, n)
	}
	req := &fosite.Request{ID: id, RequestedAt: d.time()}
	if d.bool() {
		c := &fosite.DefaultClient{ID: d.str(), Public: d.bool()}
		c.RedirectURIs = d.optList()
		c.GrantTypes = d.optList()
		c.ResponseTypes = d.optList()
		c.Scopes = d.optList()
		c.Audience = d.optList()
		req.Client = c
	} else {
		req.Client = &fosite.DefaultClient{}
	}
	req.RequestedScope = d.list()
	req.GrantedScope = d.list()
	req.RequestedAudience = d.list()
	req.GrantedAudience = d.list()
	n := d.count()
	req.Form = make(url.Values, n)
	for range n {
		k := d.str()
		req.Form[k] = d.list()
	}
	switch d.uvarint() {
	case langUnd:
	case langEnglish:
		req.Lang = language.English
	default:
		if tag, err := language.Parse(d.str()); err == nil {
			req.Lang = tag
		}
	}

	if session == nil {
		session = &fosite.DefaultSession{}
	}
	if err := d.session(session); err != nil {
		return nil, fmt.Errorf("%w: session: %w", errCorrupt, err)
	}
	if d.bad || len(d.s) != 0 {
		return nil, errCorrupt
	}
	req.Session = session
	return req, nil
}

// session decodes into session as json.Unmarshal of the session's JSON
// would: the way store/redis decodes it.
func (d *decoder) session(session fosite.Session) error {
	switch d.uvarint() {
	case sessionNone:
		return nil
	case sessionJSON:
		return json.Unmarshal([]byte(d.str()), session)
	case sessionDefault:
	default:
		d.bad = true
		return nil
	}
	ds, ok := session.(*fosite.DefaultSession)
	if !ok || ds == nil {
		// Another type of prototype: through JSON, as store/redis would.
		var stored fosite.DefaultSession
		if err := d.defaultSession(&stored); err != nil || d.bad {
			return err
		}
		raw, err := json.Marshal(&stored)
		if err != nil {
			return err
		}
		return json.Unmarshal(raw, session)
	}
	return d.defaultSession(ds)
}

// defaultSession decodes into ds, keeping what json.Unmarshal keeps: the
// entries of ds's maps that the stored ones do not have, unless a stored
// map is nil (JSON null), which makes ds's nil too.
func (d *decoder) defaultSession(ds *fosite.DefaultSession) error {
	if n := d.count(); n == 0 {
		ds.ExpiresAt = nil
	} else {
		n--
		if ds.ExpiresAt == nil {
			ds.ExpiresAt = make(map[fosite.TokenType]time.Time, n)
		}
		for range n {
			k := fosite.TokenType(d.str())
			ds.ExpiresAt[k] = d.time()
		}
	}
	ds.Username = d.str()
	ds.Subject = d.str()
	switch d.uvarint() {
	case extraNil:
		ds.Extra = nil
	case extraEmpty:
		if ds.Extra == nil {
			ds.Extra = make(map[string]any)
		}
	case extraJSON:
		return json.Unmarshal([]byte(d.str()), &ds.Extra)
	default:
		d.bad = true
	}
	return nil
}
