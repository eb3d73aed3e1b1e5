package fence

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"testing"
)

func TestNewKey(t *testing.T) {
	h := sha256.Sum256([]byte("prod"))
	prefix := uint64(binary.BigEndian.Uint32(h[:4])) << 32
	tests := []struct {
		name    string
		cluster string
		node    uint32
		want    Key
		wantErr error
	}{
		{"node 1", "prod", 1, Key(prefix | 1), nil},
		{"node max", "prod", 0xffffffff, Key(prefix | 0xffffffff), nil},
		{"node 0 rejected", "prod", 0, 0, ErrInvalidKey},
		{"empty cluster rejected", "", 1, 0, ErrInvalidKey},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := NewKey(tc.cluster, tc.node)
			if !errors.Is(err, tc.wantErr) || (err != nil) != (tc.wantErr != nil) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if got != tc.want {
				t.Errorf("got %v, want %v", got, tc.want)
			}
			if err == nil && (got.NodeID() != tc.node || !got.InCluster(tc.cluster) || got.InCluster(tc.cluster+"x")) {
				t.Errorf("NodeID/InCluster wrong for %v", got)
			}
		})
	}
}

func TestKeyStringAndParse(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    Key
		wantErr bool
	}{
		{"0x prefix", "0x5a1e93c000000002", 0x5a1e93c000000002, false},
		{"upper case 0X", "0X5A1E93C000000002", 0x5a1e93c000000002, false},
		{"bare hex as sg_persist prints", "5a1e93c000000002", 0x5a1e93c000000002, false},
		{"short", "0x2", 2, false},
		{"spaces trimmed", " 0x10 ", 0x10, false},
		{"zero rejected", "0x0", 0, true},
		{"too long", "0x15a1e93c000000002", 0, true},
		{"not hex", "0xzz", 0, true},
		{"empty", "", 0, true},
		{"decimal sign", "-1", 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseKey(tc.in)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tc.wantErr)
			}
			if err != nil && !errors.Is(err, ErrInvalidKey) {
				t.Errorf("err %v does not match ErrInvalidKey", err)
			}
			if got != tc.want {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
	if s := Key(0x5a1e93c000000002).String(); s != "0x5a1e93c000000002" {
		t.Errorf("String = %q", s)
	}
	if s := Key(2).String(); s != "0x0000000000000002" {
		t.Errorf("String = %q (want zero padded)", s)
	}
}

func FuzzParseKey(f *testing.F) {
	f.Add("0x5a1e93c000000002")
	f.Add("ffffffffffffffff")
	f.Fuzz(func(t *testing.T, s string) {
		k, err := ParseKey(s)
		if err != nil {
			return
		}
		if k == 0 {
			t.Fatal("parsed key 0")
		}
		if k2, err := ParseKey(k.String()); err != nil || k2 != k {
			t.Fatalf("round trip %q -> %v -> %v, %v", s, k, k2, err)
		}
	})
}
