package iscsi

import (
	"bytes"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
)

// FuzzCHAPResponse: the target's CHAP challenge is network input. For any text the
// target sends, chapResponse either answers with CHAP_N = our user and CHAP_R = the MD5
// of id, secret and challenge (recomputed here from the text parser's view of the same
// bytes), or fails with ErrAuth; its error never contains the secret.
func FuzzCHAPResponse(f *testing.F) {
	f.Add([]byte("CHAP_A=5\x00CHAP_I=7\x00CHAP_C=0x0102030405060708090a0b0c0d0e0f10\x00"), "secret-value-1")
	f.Add([]byte("CHAP_A=5\x00CHAP_I=0x2a\x00CHAP_C=0bAQIDBA==\x00"), "s")
	f.Add([]byte("CHAP_A=7\x00CHAP_I=7\x00CHAP_C=0x01\x00"), "secret-value-1")
	f.Add([]byte("CHAP_A=5\x00CHAP_I=256\x00CHAP_C=0x01\x00"), "secret-value-1")
	f.Add([]byte("CHAP_A=5\x00CHAP_I=1\x00CHAP_C=0x\x00"), "secret-value-1")
	f.Add([]byte("CHAP_A=5\x00CHAP_I=1\x00CHAP_C=0xabc\x00"), "secret-value-1")
	f.Fuzz(func(t *testing.T, text []byte, secret string) {
		pairs, err := parseText(text)
		if err != nil {
			return // the login code stops at a text that does not parse
		}
		out, err := chapResponse(pairs, "initiator-user", secret)
		if err != nil {
			if !errors.Is(err, ErrAuth) {
				t.Fatalf("error %v does not match ErrAuth", err)
			}
			if len(secret) >= 6 && !bytes.Contains(text, []byte(secret)) && strings.Contains(err.Error(), secret) {
				t.Fatalf("error shows the secret: %v", err)
			}
			return
		}
		if len(out) != 2 || out[0] != (kv{"CHAP_N", "initiator-user"}) || out[1].key != "CHAP_R" {
			t.Fatalf("answer %q", out)
		}
		idText, _ := lookup(pairs, "CHAP_I")
		cText, _ := lookup(pairs, "CHAP_C")
		challenge, err := decodeBinary(cText)
		if err != nil || len(challenge) == 0 || len(challenge) > maxChallenge {
			t.Fatalf("accepted CHAP_C %q (%v)", cText, err)
		}
		id, ok := smallNumber(idText)
		if !ok {
			t.Fatalf("accepted CHAP_I %q", idText)
		}
		sum := md5.Sum(append(append([]byte{id}, secret...), challenge...))
		if want := "0x" + hex.EncodeToString(sum[:]); out[1].value != want {
			t.Fatalf("CHAP_R %s, want %s", out[1].value, want)
		}
	})
}

// smallNumber parses CHAP_I like strconv.ParseUint(s, 0, 8) does for the forms a target
// sends (decimal, 0x hex, 0 octal, 0b binary, underscores between digits), written
// independently so the check does not repeat the code under test.
func smallNumber(s string) (byte, bool) {
	base, digits := 10, s
	switch {
	case len(s) > 2 && (s[:2] == "0x" || s[:2] == "0X"):
		base, digits = 16, s[2:]
	case len(s) > 2 && (s[:2] == "0b" || s[:2] == "0B"):
		base, digits = 2, s[2:]
	case len(s) > 2 && (s[:2] == "0o" || s[:2] == "0O"):
		base, digits = 8, s[2:]
	case len(s) > 1 && s[0] == '0':
		base, digits = 8, s[1:]
	}
	digits = strings.ReplaceAll(digits, "_", "")
	if digits == "" {
		return 0, s == "0"
	}
	n := 0
	for _, c := range strings.ToLower(digits) {
		d := strings.IndexRune("0123456789abcdef", c)
		if d < 0 || d >= base {
			return 0, false
		}
		if n = n*base + d; n > 255 {
			return 0, false
		}
	}
	return byte(n), true
}
