package iscsi

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
)

// Limits of the text format (RFC 7143 section 6.1).
const (
	maxKeyLen   = 63
	maxValueLen = 8192 // longer only for CHAP binary values, which we bound too
	// maxTextLen bounds a whole login/text exchange we accept, so a target
	// cannot make us buffer unbounded continuation data.
	maxTextLen = 64 << 10
)

// kv is one key=value pair. Order matters on the wire (CHAP_N before
// CHAP_R reads better in traces), so pairs are kept in a slice.
type kv struct{ key, value string }

// encodeText renders pairs as key=value\0 ... (RFC 7143 section 6.1).
func encodeText(pairs []kv) []byte {
	var b bytes.Buffer
	for _, p := range pairs {
		b.WriteString(p.key)
		b.WriteByte('=')
		b.WriteString(p.value)
		b.WriteByte(0)
	}
	return b.Bytes()
}

// parseText decodes key=value\0 pairs. Trailing NUL padding is allowed; a
// missing final NUL is tolerated (some targets omit it). Keys must be
// non-empty, at most 63 bytes of [A-Za-z0-9.\-+@_], and unique.
func parseText(b []byte) ([]kv, error) {
	if len(b) > maxTextLen {
		return nil, fmt.Errorf("%w: text of %d bytes exceeds %d", ErrProtocol, len(b), maxTextLen)
	}
	var out []kv
	seen := map[string]bool{}
	for _, f := range bytes.Split(b, []byte{0}) {
		if len(f) == 0 {
			continue
		}
		k, v, ok := bytes.Cut(f, []byte{'='})
		if !ok {
			return nil, fmt.Errorf("%w: text field %q has no '='", ErrProtocol, truncate(f))
		}
		key := string(k)
		if err := checkKey(key); err != nil {
			return nil, err
		}
		if len(v) > maxValueLen {
			return nil, fmt.Errorf("%w: value of key %s is %d bytes (max %d)", ErrProtocol, key, len(v), maxValueLen)
		}
		if seen[key] {
			return nil, fmt.Errorf("%w: key %s repeated", ErrProtocol, key)
		}
		seen[key] = true
		out = append(out, kv{key, string(v)})
	}
	return out, nil
}

func checkKey(k string) error {
	if k == "" || len(k) > maxKeyLen {
		return fmt.Errorf("%w: key %q must be 1-%d bytes", ErrProtocol, k, maxKeyLen)
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte(".-+@_", c) >= 0) {
			return fmt.Errorf("%w: key %q has character %q", ErrProtocol, k, c)
		}
	}
	return nil
}

func truncate(b []byte) []byte {
	if len(b) > 40 {
		return b[:40]
	}
	return b
}

// lookup returns the value of key in pairs.
func lookup(pairs []kv, key string) (string, bool) {
	for _, p := range pairs {
		if p.key == key {
			return p.value, true
		}
	}
	return "", false
}

// Special values a responder may answer with (RFC 7143 section 6.2).
const (
	valNotUnderstood = "NotUnderstood"
	valIrrelevant    = "Irrelevant"
	valReject        = "Reject"
)

// parseBool parses Yes/No.
func parseBool(key, v string) (bool, error) {
	switch v {
	case "Yes":
		return true, nil
	case "No":
		return false, nil
	}
	return false, fmt.Errorf("%w: %s=%q, want Yes or No", ErrNegotiation, key, v)
}

func boolText(b bool) string {
	if b {
		return "Yes"
	}
	return "No"
}

// parseNumber parses a decimal or 0x-hex numerical value within [lo, hi].
func parseNumber(key, v string, lo, hi int) (int, error) {
	n, err := strconv.ParseInt(v, 0, 64)
	if err != nil || n < int64(lo) || n > int64(hi) {
		return 0, fmt.Errorf("%w: %s=%q, want a number in [%d, %d]", ErrNegotiation, key, v, lo, hi)
	}
	return int(n), nil
}
