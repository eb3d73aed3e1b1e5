package iscsi

import (
	"errors"
	"reflect"
	"testing"
)

func TestParseText(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    []kv
		wantErr error
	}{
		{name: "empty", in: "", want: nil},
		{name: "two keys", in: "A=1\x00B=x y\x00", want: []kv{{"A", "1"}, {"B", "x y"}}},
		{name: "missing final nul", in: "A=1\x00B=2", want: []kv{{"A", "1"}, {"B", "2"}}},
		{name: "nul padding", in: "A=1\x00\x00\x00", want: []kv{{"A", "1"}}},
		{name: "empty value", in: "TargetAlias=\x00", want: []kv{{"TargetAlias", ""}}},
		{name: "value with =", in: "A=b=c\x00", want: []kv{{"A", "b=c"}}},
		{name: "no equals", in: "garbage\x00", wantErr: ErrProtocol},
		{name: "empty key", in: "=1\x00", wantErr: ErrProtocol},
		{name: "bad key char", in: "A B=1\x00", wantErr: ErrProtocol},
		{name: "repeated key", in: "A=1\x00A=2\x00", wantErr: ErrProtocol},
		{name: "key too long", in: "K" + string(repeat(0x6b, 63)) + "=1\x00", wantErr: ErrProtocol},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseText([]byte(tc.in))
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("parseText error = %v, want %v", err, tc.wantErr)
			}
			if err == nil && !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("parseText = %q, want %q", got, tc.want)
			}
			if err == nil {
				again, err := parseText(encodeText(got))
				if err != nil || !reflect.DeepEqual(again, got) {
					t.Fatalf("round trip = %q, %v", again, err)
				}
			}
		})
	}
}

func repeat(c byte, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = c
	}
	return b
}

func TestNegotiation(t *testing.T) {
	base := func() Params { return defaultParams(262144) }
	tests := []struct {
		name, key, val, offered string
		wantErr                 error
		wantReply               *kv
		check                   func(Params) bool
	}{
		{name: "digest crc32c", key: "HeaderDigest", val: "CRC32C", offered: "CRC32C", check: func(p Params) bool { return p.HeaderDigest }},
		{name: "digest none", key: "DataDigest", val: "None", offered: "None", check: func(p Params) bool { return !p.DataDigest }},
		{name: "digest refused", key: "HeaderDigest", val: "None", offered: "CRC32C", wantErr: ErrNegotiation},
		{name: "digest rejected", key: "DataDigest", val: "Reject", offered: "CRC32C", wantErr: ErrNegotiation},
		{name: "target mrdsl", key: "MaxRecvDataSegmentLength", val: "65536", check: func(p Params) bool { return p.MaxXmitDataSegmentLength == 65536 }},
		{name: "target mrdsl too small", key: "MaxRecvDataSegmentLength", val: "100", wantErr: ErrNegotiation},
		{name: "burst min", key: "MaxBurstLength", val: "262144", offered: "1048576", check: func(p Params) bool { return p.MaxBurstLength == 262144 }},
		{name: "burst above offer", key: "FirstBurstLength", val: "131072", offered: "65536", wantErr: ErrNegotiation},
		{name: "burst hex", key: "FirstBurstLength", val: "0x1000", offered: "65536", check: func(p Params) bool { return p.FirstBurstLength == 4096 }},
		{name: "initialr2t or: yes wins", key: "InitialR2T", val: "Yes", offered: "No", check: func(p Params) bool { return p.InitialR2T }},
		{name: "initialr2t contradiction", key: "InitialR2T", val: "No", offered: "Yes", wantErr: ErrNegotiation},
		{name: "immediatedata and: no wins", key: "ImmediateData", val: "No", offered: "Yes", check: func(p Params) bool { return !p.ImmediateData }},
		{name: "immediatedata contradiction", key: "ImmediateData", val: "Yes", offered: "No", wantErr: ErrNegotiation},
		{name: "bad boolean", key: "DataPDUInOrder", val: "Maybe", offered: "Yes", wantErr: ErrNegotiation},
		{name: "erl", key: "ErrorRecoveryLevel", val: "0", offered: "0", check: func(p Params) bool { return p.ErrorRecoveryLevel == 0 }},
		{name: "time2wait max", key: "DefaultTime2Wait", val: "2", offered: "0", check: func(p Params) bool { return p.DefaultTime2Wait == 2 }},
		{name: "not understood keeps default", key: "MaxBurstLength", val: "NotUnderstood", offered: "1048576", check: func(p Params) bool { return p.MaxBurstLength == 262144 }},
		{name: "unknown target proposal", key: "X-com.example.Foo", val: "1", wantReply: &kv{"X-com.example.Foo", "NotUnderstood"}},
		{name: "tpgt", key: "TargetPortalGroupTag", val: "1", check: func(p Params) bool { return p.TargetPortalGroupTag == 1 }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := base()
			reply, err := p.applyAnswer(tc.key, tc.val, tc.offered)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("applyAnswer error = %v, want %v", err, tc.wantErr)
			}
			if !reflect.DeepEqual(reply, tc.wantReply) {
				t.Fatalf("reply = %v, want %v", reply, tc.wantReply)
			}
			if tc.check != nil && !tc.check(p) {
				t.Fatalf("params after %s=%s: %+v", tc.key, tc.val, p)
			}
		})
	}
}

func TestParamsCheck(t *testing.T) {
	p := defaultParams(8192)
	p.FirstBurstLength, p.MaxBurstLength = 1<<20, 65536
	if err := p.check(); err != nil || p.FirstBurstLength != 65536 {
		t.Fatalf("check = %v, FirstBurstLength %d; want clamped to MaxBurstLength", err, p.FirstBurstLength)
	}
	p.ErrorRecoveryLevel = 1
	if err := p.check(); !errors.Is(err, ErrNegotiation) {
		t.Fatalf("ERL 1: %v, want ErrNegotiation", err)
	}
}

func TestCHAPResponse(t *testing.T) {
	// MD5(0x01 || "secret" || 0x0102...) computed independently:
	//   printf '\x01secret\x01\x02\x03\x04' | md5sum
	resp := []kv{{"CHAP_A", "5"}, {"CHAP_I", "1"}, {"CHAP_C", "0x01020304"}}
	got, err := chapResponse(resp, "user", "secret")
	if err != nil {
		t.Fatal(err)
	}
	if got[0] != (kv{"CHAP_N", "user"}) || got[1].key != "CHAP_R" || got[1].value != "0x"+wantCHAP {
		t.Fatalf("chapResponse = %v, want CHAP_R=0x%s", got, wantCHAP)
	}
	bad := []struct {
		name string
		resp []kv
	}{
		{"wrong algorithm", []kv{{"CHAP_A", "7"}, {"CHAP_I", "1"}, {"CHAP_C", "0x01"}}},
		{"no id", []kv{{"CHAP_A", "5"}, {"CHAP_C", "0x01"}}},
		{"id out of range", []kv{{"CHAP_A", "5"}, {"CHAP_I", "256"}, {"CHAP_C", "0x01"}}},
		{"no challenge", []kv{{"CHAP_A", "5"}, {"CHAP_I", "1"}}},
		{"bad challenge", []kv{{"CHAP_A", "5"}, {"CHAP_I", "1"}, {"CHAP_C", "zz"}}},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := chapResponse(tc.resp, "user", "secret"); !errors.Is(err, ErrAuth) {
				t.Fatalf("chapResponse = %v, want ErrAuth", err)
			}
		})
	}
	if b, err := decodeBinary("0bAQID"); err != nil || string(b) != "\x01\x02\x03" {
		t.Fatalf("base64 binary = %v, %v", b, err)
	}
}

const wantCHAP = "afd81c66f2d5f7fc733e1b2d88bb2630"
