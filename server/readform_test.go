package server

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// readBody must return every byte, whatever the size (around and far past
// its pooled buffer) and however the reader splits them, and pass a read
// error through.
func TestReadBody(t *testing.T) {
	for _, n := range []int{0, 1, 4095, 4096, 4097, 8192, 70000, 200000} {
		want := strings.Repeat("abcdefghij", n/10+1)[:n]
		for name, r := range map[string]io.Reader{
			"whole":    strings.NewReader(want),
			"one byte": iotest.OneByteReader(strings.NewReader(want)),
			"half":     iotest.HalfReader(strings.NewReader(want)),
			"data+EOF": iotest.DataErrReader(strings.NewReader(want)),
		} {
			if name == "one byte" && n > 10000 {
				continue
			}
			got, err := readBody(r)
			require.NoError(t, err, "%d %s", n, name)
			require.Equal(t, want, got, "%d %s", n, name)
		}
	}
	// A buffer returned to the pool does not change a string handed out.
	first, err := readBody(strings.NewReader("grant_type=first"))
	require.NoError(t, err)
	_, err = readBody(strings.NewReader("grant_type=other"))
	require.NoError(t, err)
	assert.Equal(t, "grant_type=first", first)

	boom := errors.New("boom")
	_, err = readBody(io.MultiReader(strings.NewReader("abc"), iotest.ErrReader(boom)))
	assert.ErrorIs(t, err, boom)
}

// readForm parses the body as r.ParseForm would and leaves the same values
// in r.PostForm and r.Form.
func TestReadFormMatchesParseForm(t *testing.T) {
	s := &Server{cfg: &Config{MaxRequestBytes: 1 << 20}}
	for _, body := range []string{
		"",
		"grant_type=x",
		"a=1&b=2&c=%20%2B+&empty=&novalue",
		"scope=read+write&x=%C3%BC",
		"a=1;b=2", // a semicolon is an error for both
		"a=%zz",
		strings.Repeat("k", 5000) + "=" + strings.Repeat("v", 5000),
	} {
		want := httptest.NewRequest(http.MethodPost, "/token", strings.NewReader(body))
		want.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		wantErr := want.ParseForm()

		r := httptest.NewRequest(http.MethodPost, "/token", strings.NewReader(body))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
		status, err := s.readForm(httptest.NewRecorder(), r)
		if wantErr != nil {
			require.NotNil(t, err, "%q", body)
			assert.Equal(t, http.StatusBadRequest, status)
			continue
		}
		require.Nil(t, err, "%q", body)
		assert.Equal(t, want.PostForm, r.PostForm, "%q", body)
		assert.Equal(t, url.Values(want.Form), r.Form, "%q", body)
	}

	r := httptest.NewRequest(http.MethodPost, "/token", strings.NewReader(strings.Repeat("a", 101)))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	status, err := (&Server{cfg: &Config{MaxRequestBytes: 100}}).readForm(httptest.NewRecorder(), r)
	require.NotNil(t, err)
	assert.Equal(t, http.StatusRequestEntityTooLarge, status)
}
