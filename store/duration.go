package store

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"
)

// Duration is a time.Duration that reads and writes JSON as a Go duration
// string ("90s", "1h30m"), and also reads a number of seconds.
type Duration time.Duration

// MarshalJSON writes the duration as a string such as "1h30m0s".
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

// UnmarshalJSON reads "1h30m" or 5400.
func (d *Duration) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		v, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("duration %q: want a Go duration such as \"90s\" or \"1h\"", s)
		}
		*d = Duration(v)
		return nil
	}
	if bytes.Equal(b, []byte("null")) {
		return nil
	}
	var secs int64
	if err := json.Unmarshal(b, &secs); err != nil {
		return fmt.Errorf("duration %s: want a string such as \"90s\" or a whole number of seconds", b)
	}
	if secs > int64(MaxTrustLifetime/time.Second)*1000 || secs < -int64(MaxTrustLifetime/time.Second)*1000 {
		return fmt.Errorf("duration %d s is out of range", secs)
	}
	*d = Duration(time.Duration(secs) * time.Second)
	return nil
}
