package heartbeat

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
)

var (
	testKey  = []byte("0123456789abcdef0123456789abcdef")
	otherKey = []byte("fedcba9876543210fedcba9876543210")
)

// seal appends an HMAC-SHA256 of body under key, computed here rather than with the
// package's own helper so that hand-made packets do not trust the code under test.
func seal(key, body []byte) []byte {
	h := hmac.New(sha256.New, key)
	h.Write(body)
	return h.Sum(slices.Clip(body))
}

// roles returns n roles named with the given length, tokens 1..n.
func roles(n, nameLen int) []RoleToken {
	rs := make([]RoleToken, n)
	for i := range rs {
		name := fmt.Sprintf("%0*d", nameLen, i)
		rs[i] = RoleToken{Role: name[len(name)-nameLen:], Token: int64(i + 1)}
	}
	return rs
}

// equalPacket compares packets treating nil and empty Roles alike (Parse returns nil).
func equalPacket(a, b Packet) bool {
	return a.Node == b.Node && a.NodeID == b.NodeID && a.Lease == b.Lease &&
		a.Seq == b.Seq && slices.Equal(a.Roles, b.Roles)
}

func isZero(p Packet) bool { return equalPacket(p, Packet{}) && p.Roles == nil }

// wireLen is the encoded size of p including the MAC.
func wireLen(p Packet) int {
	n := headerLen + 1 + len(p.Node) + 1 + macLen
	for _, r := range p.Roles {
		n += 1 + len(r.Role) + 8
	}
	return n
}

func mustMarshal(t testing.TB, p Packet, key []byte) []byte {
	t.Helper()
	b, err := p.Marshal(key)
	if err != nil {
		t.Fatalf("Marshal(%+v): %v", p, err)
	}
	return b
}

// validPackets are packets Marshal must accept, the seeds of the fuzz targets too.
func validPackets() map[string]Packet {
	longName := strings.Repeat("n", maxName)
	// The most one-byte roles that fit MaxPacket next to a one-byte node name.
	most := (MaxPacket - wireLen(Packet{Node: "n"})) / (1 + 1 + 8)
	return map[string]Packet{
		"no roles":      {Node: "a", NodeID: 1, Lease: 0x694d9b1c2a3e4f01, Seq: 1},
		"empty roles":   {Node: "node-1", NodeID: 7, Lease: 3, Seq: 9, Roles: []RoleToken{}},
		"one role":      {Node: "node-1", NodeID: 2, Lease: 5, Seq: 42, Roles: []RoleToken{{"db", 1234}}},
		"several roles": {Node: "node-2", NodeID: 3, Lease: 6, Seq: 7, Roles: []RoleToken{{"db", 1}, {"web", 2}, {"queue", 3}}},
		"extreme numbers": {Node: "x", NodeID: ^uint32(0), Lease: -1, Seq: ^uint64(0),
			Roles: []RoleToken{{"min", -1 << 63}, {"max", 1<<63 - 1}, {"zero", 0}}},
		"binary names":             {Node: "\x00\xff\n", Seq: 1, Roles: []RoleToken{{"\x00", 1}}},
		"max-length node name":     {Node: longName, NodeID: 4, Lease: 8, Seq: 2},
		"max-length names":         {Node: longName, NodeID: 5, Lease: 8, Seq: 3, Roles: roles(3, 255)},
		"exactly MaxPacket bytes":  {Node: "n", NodeID: 6, Lease: 9, Seq: 4, Roles: roles(most, 1)},
		"duplicate roles are kept": {Node: "d", Seq: 5, Roles: []RoleToken{{"db", 1}, {"db", 2}}},
	}
}

func TestRoundTrip(t *testing.T) {
	for name, p := range validPackets() {
		t.Run(name, func(t *testing.T) {
			b := mustMarshal(t, p, testKey)
			if len(b) != wireLen(p) || len(b) > MaxPacket {
				t.Fatalf("len = %d, want %d (at most %d)", len(b), wireLen(p), MaxPacket)
			}
			got, err := Parse(b, testKey)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if !equalPacket(got, p) {
				t.Fatalf("Parse = %+v, want %+v", got, p)
			}
			if again := mustMarshal(t, got, testKey); !bytes.Equal(again, b) {
				t.Fatalf("re-Marshal differs:\n got %x\nwant %x", again, b)
			}
		})
	}
	if n := len(validPackets()["exactly MaxPacket bytes"].Roles); n >= maxRoles {
		t.Fatalf("%d roles fit MaxPacket: add a round trip of %d roles", n, maxRoles)
	}
}

func TestMarshalErrors(t *testing.T) {
	ok := Packet{Node: "a", NodeID: 1, Lease: 2, Seq: 3, Roles: []RoleToken{{"db", 1}}}
	tests := []struct {
		name string
		p    Packet
		key  []byte
		want error
	}{
		{"nil key", ok, nil, ErrKey},
		{"key one byte short", ok, testKey[:MinKeyLen-1], ErrKey},
		{"empty node name", Packet{Seq: 1}, testKey, ErrMalformed},
		{"node name too long", Packet{Node: strings.Repeat("n", 256)}, testKey, ErrMalformed},
		{"empty role name", Packet{Node: "a", Roles: []RoleToken{{"db", 1}, {"", 2}}}, testKey, ErrMalformed},
		{"role name too long", Packet{Node: "a", Roles: []RoleToken{{strings.Repeat("r", 256), 1}}}, testKey, ErrMalformed},
		{"one byte over MaxPacket", Packet{Node: "nn", Roles: roles(114, 1)}, testKey, ErrTooLarge},
		{"max-length node and four max-length roles", Packet{Node: strings.Repeat("n", 255), Roles: roles(4, 255)}, testKey, ErrTooLarge},
		{"255 roles", Packet{Node: "a", Roles: roles(255, 1)}, testKey, ErrTooLarge},
		{"256 roles", Packet{Node: "a", Roles: roles(256, 1)}, testKey, ErrTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := tt.p.Marshal(tt.key)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Marshal error = %v, want %v", err, tt.want)
			}
			if b != nil {
				t.Fatalf("Marshal returned %d bytes with an error", len(b))
			}
		})
	}
	if n := wireLen(Packet{Node: "nn", Roles: roles(114, 1)}); n != MaxPacket+1 {
		t.Fatalf("case %q is %d bytes, want MaxPacket+1", "one byte over MaxPacket", n)
	}
}

// body returns the bytes of a valid packet before its MAC, for hand-made variants.
func body(t *testing.T, p Packet) []byte {
	t.Helper()
	b := mustMarshal(t, p, testKey)
	return slices.Clone(b[:len(b)-macLen])
}

func TestParseErrors(t *testing.T) {
	p := Packet{Node: "node-1", NodeID: 1, Lease: 2, Seq: 3, Roles: []RoleToken{{"db", 7}, {"web", 8}}}
	good := mustMarshal(t, p, testKey)
	// Offsets in body(p): node name length at headerLen, role count after the name,
	// first role's name length right after the count.
	nameAt := headerLen
	countAt := nameAt + 1 + len(p.Node)
	role0At := countAt + 1
	edit := func(f func(b []byte) []byte) []byte { return seal(testKey, f(body(t, p))) }
	// A role otherwise well formed (length 0, then a full token) after a count of 1.
	emptyRole := body(t, Packet{Node: "a"})
	emptyRole[len(emptyRole)-1] = 1
	emptyRole = append(emptyRole, 0, 0, 0, 0, 0, 0, 0, 0, 7)
	// The largest packet plus one more role, which Marshal would refuse to build.
	oversize := body(t, Packet{Node: "n", Roles: roles(114, 1)})
	oversize[headerLen+1+1] = 115
	oversize = append(oversize, 1, 'x', 0, 0, 0, 0, 0, 0, 0, 9)
	tests := []struct {
		name string
		b    []byte
		key  []byte
		want error
	}{
		{"short key", good, testKey[:MinKeyLen-1], ErrKey},
		{"wrong key", good, otherKey, ErrAuth},
		// Not a zero byte: HMAC zero-pads short keys, so key and key+"\x00" are one key.
		{"key with one more byte", good, append(slices.Clone(testKey), 'x'), ErrAuth},
		{"empty", nil, testKey, ErrMalformed},
		{"MAC only", good[len(good)-macLen:], testKey, ErrMalformed},
		{"well formed but over MaxPacket", seal(testKey, oversize), testKey, ErrMalformed},
		{"MAC of the wrong bytes", append(body(t, p), good[:macLen]...), testKey, ErrAuth},
		{"trailing byte", edit(func(b []byte) []byte { return append(b, 0) }), testKey, ErrMalformed},
		{"trailing role", edit(func(b []byte) []byte { return append(b, 1, 'x', 0, 0, 0, 0, 0, 0, 0, 1) }), testKey, ErrMalformed},
		{"wrong magic", edit(func(b []byte) []byte { b[0] = 'X'; return b }), testKey, ErrMalformed},
		{"lowercase magic", edit(func(b []byte) []byte { copy(b, "ushb"); return b }), testKey, ErrMalformed},
		{"version 0", edit(func(b []byte) []byte { b[4] = 0; return b }), testKey, ErrMalformed},
		{"version 2", edit(func(b []byte) []byte { b[4] = 2; return b }), testKey, ErrMalformed},
		{"empty node name", seal(testKey, append(slices.Clone(good[:headerLen]), 0, 0)), testKey, ErrMalformed},
		{"node name overruns", edit(func(b []byte) []byte { b[nameAt] = 255; return b }), testKey, ErrMalformed},
		{"no role count", edit(func(b []byte) []byte { return b[:countAt] }), testKey, ErrMalformed},
		{"role count too high", edit(func(b []byte) []byte { b[countAt]++; return b }), testKey, ErrMalformed},
		{"role count too low", edit(func(b []byte) []byte { b[countAt]--; return b }), testKey, ErrMalformed},
		{"empty role name", seal(testKey, emptyRole), testKey, ErrMalformed},
		{"role name overruns", edit(func(b []byte) []byte { b[role0At] = 255; return b }), testKey, ErrMalformed},
		{"token cut short", edit(func(b []byte) []byte { return b[:len(b)-1] }), testKey, ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse(tt.b, tt.key)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Parse error = %v, want %v", err, tt.want)
			}
			if !isZero(got) {
				t.Fatalf("Parse returned %+v with an error", got)
			}
		})
	}
}

// TestParseFlippedBit: any single bit flipped anywhere, in the body or in the MAC,
// is an authentication failure and yields nothing of the packet.
func TestParseFlippedBit(t *testing.T) {
	for name, p := range validPackets() {
		t.Run(name, func(t *testing.T) {
			good := mustMarshal(t, p, testKey)
			b := slices.Clone(good)
			for i := range b {
				for bit := range 8 {
					b[i] ^= 1 << bit
					got, err := Parse(b, testKey)
					b[i] ^= 1 << bit
					if !errors.Is(err, ErrAuth) || !isZero(got) {
						t.Fatalf("byte %d bit %d flipped: Parse = %+v, %v; want ErrAuth", i, bit, got, err)
					}
				}
			}
			if !bytes.Equal(b, good) {
				t.Fatal("test bug: packet not restored")
			}
		})
	}
}

// TestParseTruncated: every proper prefix of a packet is rejected without a panic.
func TestParseTruncated(t *testing.T) {
	for name, p := range validPackets() {
		t.Run(name, func(t *testing.T) {
			b := mustMarshal(t, p, testKey)
			for n := range len(b) {
				// A copy with no spare capacity, so a read past the end cannot pass.
				got, err := Parse(slices.Clone(b[:n]), testKey)
				if err == nil || !(errors.Is(err, ErrMalformed) || errors.Is(err, ErrAuth)) {
					t.Fatalf("truncated to %d of %d bytes: Parse error = %v, want ErrMalformed or ErrAuth", n, len(b), err)
				}
				if !isZero(got) {
					t.Fatalf("truncated to %d bytes: Parse returned %+v with an error", n, got)
				}
			}
		})
	}
}

// checkCanonical is the fuzz property: Parse never panics, and a packet it accepts is
// exactly what Marshal produces for the result.
func checkCanonical(t *testing.T, b []byte) {
	p, err := Parse(b, testKey)
	if err != nil {
		if !isZero(p) {
			t.Fatalf("Parse returned %+v with error %v", p, err)
		}
		return
	}
	again, err := p.Marshal(testKey)
	if err != nil {
		t.Fatalf("Parse accepted %x as %+v, Marshal rejects it: %v", b, p, err)
	}
	if !bytes.Equal(again, b) {
		t.Fatalf("not canonical: Parse(%x) = %+v, Marshal = %x", b, p, again)
	}
}

func FuzzParse(f *testing.F) {
	for _, p := range validPackets() {
		b := mustMarshal(f, p, testKey)
		f.Add(b)
		f.Add(b[:len(b)-macLen]) // a body: sealed below, so mutations reach the decoder
	}
	f.Add([]byte{})
	f.Add([]byte(magic))
	f.Fuzz(func(t *testing.T, b []byte) {
		checkCanonical(t, b)
		// Random bytes almost never carry a valid MAC; sealing them makes the decoder
		// behind the MAC check see the fuzzer's input too.
		checkCanonical(t, seal(testKey, slices.Clone(b)))
	})
}

// FuzzRoundTrip: Marshal accepts exactly the packets within the documented limits,
// and Parse gives back what Marshal was given. roleNames is a comma-separated list.
func FuzzRoundTrip(f *testing.F) {
	f.Add("node-1", uint32(1), int64(2), uint64(3), "db,web", int64(9))
	f.Add("a", uint32(0), int64(-1), uint64(0), "", int64(0))
	f.Add("", uint32(0), int64(0), uint64(0), "db", int64(0))
	f.Add("n", uint32(1), int64(1), uint64(1), "db,,web", int64(1))
	f.Add(strings.Repeat("n", 256), uint32(1), int64(1), uint64(1), "", int64(1))
	f.Add("n", uint32(1), int64(1), uint64(1), strings.Repeat("r,", 114)+"r", int64(1))
	f.Fuzz(func(t *testing.T, node string, id uint32, lease int64, seq uint64, roleNames string, token int64) {
		p := Packet{Node: node, NodeID: id, Lease: lease, Seq: seq}
		if roleNames != "" {
			for i, r := range strings.Split(roleNames, ",") {
				p.Roles = append(p.Roles, RoleToken{Role: r, Token: token + int64(i)})
			}
		}
		valid := len(node) >= 1 && len(node) <= maxName && len(p.Roles) <= maxRoles &&
			wireLen(p) <= MaxPacket
		for _, r := range p.Roles {
			valid = valid && len(r.Role) >= 1 && len(r.Role) <= maxName
		}
		b, err := p.Marshal(testKey)
		if (err == nil) != valid {
			t.Fatalf("Marshal(%+v) error = %v, want valid=%v", p, err, valid)
		}
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrTooLarge) {
				t.Fatalf("Marshal error %v is neither ErrMalformed nor ErrTooLarge", err)
			}
			return
		}
		got, err := Parse(b, testKey)
		if err != nil {
			t.Fatalf("Parse(Marshal(%+v)): %v", p, err)
		}
		if !equalPacket(got, p) {
			t.Fatalf("Parse(Marshal(%+v)) = %+v", p, got)
		}
		if _, err := Parse(b, otherKey); !errors.Is(err, ErrAuth) {
			t.Fatalf("Parse under another key: %v, want ErrAuth", err)
		}
	})
}
