package iscsi

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"
)

// TestDigestVectors checks CRC32C against RFC 7143 appendix B.4, bytes in
// the order they go on the wire.
func TestDigestVectors(t *testing.T) {
	inc, dec := make([]byte, 32), make([]byte, 32)
	for i := range inc {
		inc[i], dec[i] = byte(i), byte(31-i)
	}
	tests := []struct {
		name string
		in   []byte
		want []byte
	}{
		{"32 zero bytes", make([]byte, 32), []byte{0xaa, 0x36, 0x91, 0x8a}},
		{"32 0xff bytes", bytes.Repeat([]byte{0xff}, 32), []byte{0x43, 0xab, 0xa8, 0x62}},
		{"incrementing", inc, []byte{0x4e, 0x79, 0xdd, 0x46}},
		{"decrementing", dec, []byte{0x5c, 0xdb, 0x3f, 0x11}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := binary.LittleEndian.AppendUint32(nil, digest(tc.in))
			if !bytes.Equal(got, tc.want) {
				t.Fatalf("digest = % x, want % x", got, tc.want)
			}
		})
	}
}

func wire(t *testing.T, p *pdu, hd, dd bool) []byte {
	t.Helper()
	bufs, err := p.encode(hd, dd)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if _, err := bufs.WriteTo(&b); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestPDURoundTrip(t *testing.T) {
	tests := []struct {
		name    string
		ahs     []byte
		data    []byte
		hd, dd  bool
		wireLen int
	}{
		{name: "header only", wireLen: 48},
		{name: "header digest", hd: true, wireLen: 52},
		{name: "data padded", data: []byte("abcde"), wireLen: 48 + 8},
		{name: "data aligned with digests", data: []byte("abcdefgh"), hd: true, dd: true, wireLen: 48 + 4 + 8 + 4},
		{name: "ahs and padded data with digests", ahs: make([]byte, 8), data: []byte{1}, hd: true, dd: true, wireLen: 48 + 8 + 4 + 4 + 4},
		{name: "no data digest for empty data", hd: true, dd: true, wireLen: 52},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := newPDU(opSCSICmd, true)
			p.bhs[1] = finalBit | cmdRead
			p.setLUN(3)
			p.put32(16, 0x1234)
			p.ahs, p.data = tc.ahs, tc.data
			b := wire(t, p, tc.hd, tc.dd)
			if len(b) != tc.wireLen {
				t.Fatalf("wire length %d, want %d", len(b), tc.wireLen)
			}
			q, err := readPDU(bytes.NewReader(b), tc.hd, tc.dd, 1<<20)
			if err != nil {
				t.Fatal(err)
			}
			if q.opcode() != opSCSICmd || !q.immediate() || !q.final() || q.itt() != 0x1234 ||
				!bytes.Equal(q.data, tc.data) || len(q.ahs) != len(tc.ahs) || q.bhs[9] != 3 {
				t.Fatalf("decoded %+v", q)
			}
		})
	}
}

func TestPDUDecodeErrors(t *testing.T) {
	good := func(hd, dd bool) []byte {
		p := newPDU(opNOPIn, false)
		p.data = []byte("ping")
		return wire(t, p, hd, dd)
	}
	flip := func(b []byte, i int) []byte { b = bytes.Clone(b); b[i] ^= 1; return b }
	tests := []struct {
		name    string
		in      []byte
		hd, dd  bool
		max     int
		wantErr error
	}{
		{name: "empty", in: nil, wantErr: io.EOF},
		{name: "short header", in: make([]byte, 20), wantErr: io.ErrUnexpectedEOF},
		{name: "short data", in: good(false, false)[:50], wantErr: io.ErrUnexpectedEOF},
		{name: "header digest mismatch", in: flip(good(true, false), 20), hd: true, wantErr: ErrDigest},
		{name: "data digest mismatch", in: flip(good(false, true), 49), dd: true, wantErr: ErrDigest},
		{name: "data too long", in: good(false, false), max: 3, wantErr: ErrProtocol},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			max := tc.max
			if max == 0 {
				max = 1 << 20
			}
			_, err := readPDU(bytes.NewReader(tc.in), tc.hd, tc.dd, max)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("readPDU = %v, want %v", err, tc.wantErr)
			}
		})
	}
}

func TestEncodeLUN(t *testing.T) {
	tests := []struct {
		lun  uint64
		want [8]byte
	}{
		{0, [8]byte{}},
		{1, [8]byte{0, 1}},
		{255, [8]byte{0, 0xff}},
		{256, [8]byte{0x41, 0x00}},
		{16383, [8]byte{0x7f, 0xff}},
	}
	for _, tc := range tests {
		var got [8]byte
		binary.BigEndian.PutUint64(got[:], encodeLUN(tc.lun))
		if got != tc.want {
			t.Errorf("encodeLUN(%d) = % x, want % x", tc.lun, got, tc.want)
		}
	}
}

func TestSerialLess(t *testing.T) {
	tests := []struct {
		a, b uint32
		want bool
	}{
		{1, 2, true}, {2, 1, false}, {5, 5, false},
		{0xffffffff, 0, true}, {0, 0xffffffff, false},
		{0xfffffff0, 0x10, true},
	}
	for _, tc := range tests {
		if got := serialLess(tc.a, tc.b); got != tc.want {
			t.Errorf("serialLess(%#x, %#x) = %v, want %v", tc.a, tc.b, got, tc.want)
		}
	}
}

func TestISIDFromNodeID(t *testing.T) {
	got := ISIDFromNodeIDIndex(0x01020304, 7)
	if want := [6]byte{0x80, 1, 2, 3, 4, 7}; got != want {
		t.Fatalf("ISID % x, want % x", got, want)
	}
	if got[0]>>6 != 0b10 {
		t.Fatal("ISID type is not the random format (T=10b)")
	}
	if ISIDFromNodeID(1) == ISIDFromNodeID(2) || ISIDFromNodeID(1) != ISIDFromNodeIDIndex(1, 0) {
		t.Fatal("ISIDs not distinct per node / stable")
	}
}
