package scsi

import (
	"errors"
	"reflect"
	"testing"
)

func TestParseReadKeys(t *testing.T) {
	tests := []struct {
		name     string
		in       string
		want     ReadKeys
		wantErr  error
		wantNeed int
	}{
		{"no keys", "00000007 00000000", ReadKeys{Generation: 7, Keys: []uint64{}}, nil, 0},
		{"two keys", "0000000a 00000010 5a1e93c000000001 5a1e93c000000002",
			ReadKeys{Generation: 10, Keys: []uint64{0x5a1e93c000000001, 0x5a1e93c000000002}}, nil, 0},
		{"same key on two nexuses", "00000001 00000010 0000000000000abc 0000000000000abc",
			ReadKeys{Generation: 1, Keys: []uint64{0xabc, 0xabc}}, nil, 0},
		{"trailing bytes beyond additional length ignored", "00000001 00000008 0000000000000001 ffffffff",
			ReadKeys{Generation: 1, Keys: []uint64{1}}, nil, 0},
		{"truncated by allocation length", "00000002 00000018 0000000000000001 0000000000000002",
			ReadKeys{Generation: 2, Keys: []uint64{1, 2}}, ErrTruncated, 32},
		{"length not multiple of 8", "00000002 0000000c 0000000000000001 00000000",
			ReadKeys{Generation: 2, Keys: []uint64{1}}, ErrShortData, 0},
		{"short header", "000000", ReadKeys{}, ErrShortData, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseReadKeys(unhex(t, tc.in))
			if !errors.Is(err, tc.wantErr) || (err != nil) != (tc.wantErr != nil) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
			var te *TruncatedError
			if errors.As(err, &te) && te.Need != tc.wantNeed {
				t.Errorf("Need = %d, want %d", te.Need, tc.wantNeed)
			}
		})
	}
}

func TestParseReadReservation(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    Reservation
		wantErr error
	}{
		{"none", "00000003 00000000", Reservation{Generation: 3}, nil},
		{"held type 5", "00000004 00000010 5a1e93c000000002 00000000 00 05 0000",
			Reservation{Generation: 4, Held: true, Key: 0x5a1e93c000000002, Type: TypeWriteExclusiveRegistrantsOnly}, nil},
		{"held exclusive access all registrants", "00000004 00000010 0000000000000000 00000000 00 08 0000",
			Reservation{Generation: 4, Held: true, Type: TypeExclusiveAccessAllRegistrants}, nil},
		{"short descriptor", "00000004 00000008 5a1e93c000000002", Reservation{Generation: 4}, ErrShortData},
		{"truncated", "00000004 00000010 5a1e93c000000002", Reservation{Generation: 4}, ErrTruncated},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseReadReservation(unhex(t, tc.in))
			if !errors.Is(err, tc.wantErr) || (err != nil) != (tc.wantErr != nil) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestParseReportCapabilities(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    Capabilities
		wantErr error
	}{
		{"full featured", "0008 9d 81 ea01 0000", Capabilities{RLRC: true, CRH: true, SIPC: true, ATPC: true, PTPLC: true,
			TMV: true, PTPLA: true, Types: []ReservationType{
				TypeWriteExclusiveAllRegistrants, TypeExclusiveAccessRegistrantsOnly, TypeWriteExclusiveRegistrantsOnly,
				TypeExclusiveAccess, TypeWriteExclusive, TypeExclusiveAccessAllRegistrants}}, nil},
		{"type mask not valid", "0008 01 00 ffff 0000", Capabilities{PTPLC: true}, nil},
		{"allow commands", "0008 00 a0 2000 0000", Capabilities{TMV: true, AllowCommands: 2,
			Types: []ReservationType{TypeWriteExclusiveRegistrantsOnly}}, nil},
		{"short", "0008 00", Capabilities{}, ErrShortData},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseReportCapabilities(unhex(t, tc.in))
			if !errors.Is(err, tc.wantErr) || (err != nil) != (tc.wantErr != nil) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
	if !(Capabilities{Types: []ReservationType{TypeWriteExclusiveRegistrantsOnly}}).Supports(TypeWriteExclusiveRegistrantsOnly) {
		t.Error("Supports(type 5) = false")
	}
}

// fullStatusDesc builds one READ FULL STATUS descriptor (SPC-4 table 176).
func fullStatusDesc(key string, flags, scopeType byte, relTgt uint16, tid []byte) []byte {
	b := make([]byte, 24, 24+len(tid))
	copy(b, unhexMust(key))
	b[12], b[13] = flags, scopeType
	b[18], b[19] = byte(relTgt>>8), byte(relTgt)
	n := len(tid)
	b[20], b[21], b[22], b[23] = byte(n>>24), byte(n>>16), byte(n>>8), byte(n)
	return append(b, tid...)
}

func prInData(gen uint32, body []byte) []byte {
	n := len(body)
	h := []byte{byte(gen >> 24), byte(gen >> 16), byte(gen >> 8), byte(gen), byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}
	return append(h, body...)
}

func TestParseReadFullStatus(t *testing.T) {
	tidA := ISCSITransportID("iqn.2025-01.io.understudy:node-a", "23d000000001")
	tidB := ISCSITransportID("iqn.2025-01.io.understudy:node-b", "")
	dA := fullStatusDesc("5a1e93c000000001", 0x01, 0x05, 1, tidA)
	dB := fullStatusDesc("5a1e93c000000002", 0x02, 0x00, 0, tidB)
	both := append(append([]byte{}, dA...), dB...)
	tests := []struct {
		name    string
		in      []byte
		want    []StatusDescriptor
		wantErr error
	}{
		{"empty", prInData(9, nil), nil, nil},
		{"holder and all_tg_pt registrant", prInData(9, both), []StatusDescriptor{
			{Key: 0x5a1e93c000000001, RHolder: true, Type: TypeWriteExclusiveRegistrantsOnly, RelTgtPort: 1, TransportID: tidA},
			{Key: 0x5a1e93c000000002, AllTgPt: true, TransportID: tidB},
		}, nil},
		{"truncated keeps complete descriptors", prInData(9, both)[:8+len(dA)+10], []StatusDescriptor{
			{Key: 0x5a1e93c000000001, RHolder: true, Type: TypeWriteExclusiveRegistrantsOnly, RelTgtPort: 1, TransportID: tidA},
		}, ErrTruncated},
		{"descriptor length overruns", prInData(9, dA[:30]), nil, ErrShortData},
		{"short header", []byte{0, 0, 0}, nil, ErrShortData},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseReadFullStatus(tc.in)
			if !errors.Is(err, tc.wantErr) || (err != nil) != (tc.wantErr != nil) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if !reflect.DeepEqual(got.Descriptors, tc.want) {
				t.Errorf("got %+v\nwant %+v", got.Descriptors, tc.want)
			}
		})
	}
}

func TestTransportID(t *testing.T) {
	tests := []struct {
		name    string
		in      []byte
		want    string
		wantErr bool
	}{
		{"iscsi name and isid", ISCSITransportID("iqn.2025-01.io.understudy:a", "23D000000001"), "iscsi:iqn.2025-01.io.understudy:a,i,0x23d000000001", false},
		{"iscsi name only", ISCSITransportID("iqn.x:y", ""), "iscsi:iqn.x:y", false},
		{"fc", unhexMust("00000000 00000000 21000024ff000001 0000000000000000"), "fc:0x21000024ff000001", false},
		{"sas", unhexMust("06000000 5000c50000000001 000000000000000000000000"), "sas:0x5000c50000000001", false},
		{"iscsi length overruns", unhexMust("05000040 6971"), "", true},
		{"iscsi format 01 without separator", unhexMust("45000008 69716e2e78000000"), "", true},
		{"unknown protocol", unhexMust("0f000000"), "", true},
		{"short", unhexMust("05"), "", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseTransportID(tc.in)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tc.wantErr)
			}
			if err == nil && got.String() != tc.want {
				t.Errorf("got %q, want %q", got.String(), tc.want)
			}
		})
	}
	if n := len(ISCSITransportID("a", "")); n != 20 {
		t.Errorf("short iSCSI TransportID is %d bytes, want the 20-byte minimum", n)
	}
}
