package heartbeat

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
)

// Sentinel errors of package heartbeat.
var (
	// ErrMalformed: a datagram that is not a heartbeat of this version.
	ErrMalformed = errors.New("heartbeat: malformed packet")
	// ErrAuth: the packet's MAC does not verify under the cluster key.
	ErrAuth = errors.New("heartbeat: authentication failed")
	// ErrKey: the cluster key is missing or too short.
	ErrKey = errors.New("heartbeat: bad cluster key")
	// ErrTooLarge: the packet would not fit a datagram of MaxPacket bytes.
	ErrTooLarge = errors.New("heartbeat: packet too large")
)

// Wire format, big endian:
//
//	magic "USHB" | version 1 | node id u32 | lease i64 | seq u64 |
//	node name (u8 length + bytes) | roles u8 | roles × (u8 length + name + token i64) |
//	HMAC-SHA256 over everything before it (32 bytes)
const (
	magic     = "USHB"
	version   = 1
	macLen    = sha256.Size
	headerLen = len(magic) + 1 + 4 + 8 + 8
	MinKeyLen = 16   // bytes of cluster key at least
	MaxPacket = 1200 // stays under any sane MTU
	maxName   = 255
	maxRoles  = 255
)

// RoleToken is a role the sender holds with its fencing token.
type RoleToken struct {
	Role  string
	Token int64
}

// Packet is one heartbeat.
type Packet struct {
	Node   string
	NodeID uint32
	Lease  int64  // the sender's etcd lease: a new lease is a new sender life
	Seq    uint64 // strictly increasing within one lease
	Roles  []RoleToken
}

// Marshal encodes p and appends its MAC under key.
func (p Packet) Marshal(key []byte) ([]byte, error) {
	if len(key) < MinKeyLen {
		return nil, fmt.Errorf("%w: %d bytes, want at least %d", ErrKey, len(key), MinKeyLen)
	}
	if len(p.Node) == 0 || len(p.Node) > maxName {
		return nil, fmt.Errorf("%w: node name of %d bytes, want 1 to %d", ErrMalformed, len(p.Node), maxName)
	}
	if len(p.Roles) > maxRoles {
		return nil, fmt.Errorf("%w: %d roles, at most %d", ErrTooLarge, len(p.Roles), maxRoles)
	}
	b := make([]byte, 0, 128)
	b = append(b, magic...)
	b = append(b, version)
	b = binary.BigEndian.AppendUint32(b, p.NodeID)
	b = binary.BigEndian.AppendUint64(b, uint64(p.Lease))
	b = binary.BigEndian.AppendUint64(b, p.Seq)
	b = append(b, byte(len(p.Node)))
	b = append(b, p.Node...)
	b = append(b, byte(len(p.Roles)))
	for _, r := range p.Roles {
		if len(r.Role) == 0 || len(r.Role) > maxName {
			return nil, fmt.Errorf("%w: role name of %d bytes, want 1 to %d", ErrMalformed, len(r.Role), maxName)
		}
		b = append(b, byte(len(r.Role)))
		b = append(b, r.Role...)
		b = binary.BigEndian.AppendUint64(b, uint64(r.Token))
	}
	if len(b)+macLen > MaxPacket {
		return nil, fmt.Errorf("%w: %d bytes, at most %d", ErrTooLarge, len(b)+macLen, MaxPacket)
	}
	return append(b, mac(key, b)...), nil
}

func mac(key, b []byte) []byte {
	h := hmac.New(sha256.New, key)
	h.Write(b)
	return h.Sum(nil)
}

// Parse verifies b's MAC under key and decodes it. Nothing of an unauthenticated packet
// is returned.
func Parse(b, key []byte) (Packet, error) {
	var p Packet
	if len(key) < MinKeyLen {
		return p, fmt.Errorf("%w: %d bytes, want at least %d", ErrKey, len(key), MinKeyLen)
	}
	if len(b) < headerLen+2+macLen || len(b) > MaxPacket {
		return p, fmt.Errorf("%w: %d bytes", ErrMalformed, len(b))
	}
	body, sum := b[:len(b)-macLen], b[len(b)-macLen:]
	if !hmac.Equal(sum, mac(key, body)) {
		return p, ErrAuth
	}
	if string(body[:4]) != magic || body[4] != version {
		return p, fmt.Errorf("%w: magic %q version %d", ErrMalformed, body[:4], body[4])
	}
	p.NodeID = binary.BigEndian.Uint32(body[5:])
	p.Lease = int64(binary.BigEndian.Uint64(body[9:]))
	p.Seq = binary.BigEndian.Uint64(body[17:])
	rest := body[headerLen:]
	name, rest, err := readName(rest)
	if err != nil || len(name) == 0 {
		return Packet{}, fmt.Errorf("%w: node name", ErrMalformed)
	}
	p.Node = name
	if len(rest) < 1 {
		return Packet{}, fmt.Errorf("%w: role count", ErrMalformed)
	}
	n := int(rest[0])
	rest = rest[1:]
	for i := range n {
		var role string
		if role, rest, err = readName(rest); err != nil || len(role) == 0 || len(rest) < 8 {
			return Packet{}, fmt.Errorf("%w: role %d", ErrMalformed, i)
		}
		p.Roles = append(p.Roles, RoleToken{Role: role, Token: int64(binary.BigEndian.Uint64(rest))})
		rest = rest[8:]
	}
	if len(rest) != 0 {
		return Packet{}, fmt.Errorf("%w: %d trailing bytes", ErrMalformed, len(rest))
	}
	return p, nil
}

func readName(b []byte) (string, []byte, error) {
	if len(b) < 1 || len(b) < 1+int(b[0]) {
		return "", nil, ErrMalformed
	}
	n := int(b[0])
	return string(b[1 : 1+n]), b[1+n:], nil
}
