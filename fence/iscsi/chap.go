package iscsi

import (
	"crypto/md5"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
)

// chapMD5 is CHAP_A=5 (MD5), the only algorithm RFC 7143 requires.
const chapMD5 = "5"

// maxChallenge bounds the challenge we accept (RFC 7143 recommends 16 bytes
// or more; 1024 is the limit it sets).
const maxChallenge = 1024

// chapResponse computes our answer to the target's CHAP_A/CHAP_I/CHAP_C
// (RFC 1994 section 4.1): CHAP_R = MD5(CHAP_I || secret || CHAP_C).
// Errors never contain the secret.
func chapResponse(resp []kv, user, secret string) ([]kv, error) {
	if a, _ := lookup(resp, "CHAP_A"); a != chapMD5 {
		return nil, fmt.Errorf("%w: target chose CHAP_A=%q, we only offer MD5 (5)", ErrAuth, a)
	}
	idText, ok := lookup(resp, "CHAP_I")
	if !ok {
		return nil, fmt.Errorf("%w: target sent no CHAP_I", ErrAuth)
	}
	id, err := strconv.ParseUint(idText, 0, 8)
	if err != nil {
		return nil, fmt.Errorf("%w: CHAP_I=%q is not a number in [0, 255]", ErrAuth, idText)
	}
	cText, ok := lookup(resp, "CHAP_C")
	if !ok {
		return nil, fmt.Errorf("%w: target sent no CHAP_C", ErrAuth)
	}
	challenge, err := decodeBinary(cText)
	if err != nil || len(challenge) == 0 || len(challenge) > maxChallenge {
		return nil, fmt.Errorf("%w: CHAP_C is not a 1-%d byte hex or base64 value", ErrAuth, maxChallenge)
	}
	h := md5.New()
	h.Write([]byte{byte(id)})
	h.Write([]byte(secret))
	h.Write(challenge)
	return []kv{
		{"CHAP_N", user},
		{"CHAP_R", "0x" + hex.EncodeToString(h.Sum(nil))},
	}, nil
}

// decodeBinary decodes an RFC 7143 binary value: 0x/0X hex or 0b/0B base64.
func decodeBinary(v string) ([]byte, error) {
	if len(v) < 3 {
		return nil, fmt.Errorf("binary value too short")
	}
	switch strings.ToLower(v[:2]) {
	case "0x":
		s := v[2:]
		if len(s)%2 == 1 {
			s = "0" + s
		}
		return hex.DecodeString(s)
	case "0b":
		return base64.StdEncoding.DecodeString(v[2:])
	}
	return nil, fmt.Errorf("binary value must start with 0x or 0b")
}
