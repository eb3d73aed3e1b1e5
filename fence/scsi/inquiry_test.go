package scsi

import (
	"errors"
	"reflect"
	"testing"
)

func TestParseInquiry(t *testing.T) {
	std := unhexMust("00 00 06 12 5b 00 10 02") // disk, SPC-4, HiSup+format 2, MultiP, CmdQue
	std = append(std, []byte("IET     VIRTUAL-DISK    0001")...)
	tests := []struct {
		name    string
		in      []byte
		want    InquiryData
		wantErr error
	}{
		{"tgt virtual disk", std, InquiryData{Version: 6, ResponseFormat: 2, MultiP: true, CmdQue: true,
			Vendor: "IET", Product: "VIRTUAL-DISK", Revision: "0001"}, nil},
		{"no lun", append([]byte{0x7f}, std[1:]...), InquiryData{PeripheralQualifier: 3, DeviceType: 0x1f, Version: 6,
			ResponseFormat: 2, MultiP: true, CmdQue: true, Vendor: "IET", Product: "VIRTUAL-DISK", Revision: "0001"}, nil},
		{"short", std[:20], InquiryData{}, ErrShortData},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseInquiry(tc.in)
			if !errors.Is(err, tc.wantErr) || (err != nil) != (tc.wantErr != nil) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if got != tc.want {
				t.Errorf("got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestParseReadCapacity16(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    ReadCapacity
		bytes   uint64
		wantErr bool
	}{
		{"64 MiB of 512", "000000000001ffff 00000200 00 00 0000 " + zeros(16),
			ReadCapacity{LastLBA: 0x1ffff, BlockSize: 512}, 64 << 20, false},
		{"4k physical thin", "00000000000003ff 00001000 01 03 c001 " + zeros(16),
			ReadCapacity{LastLBA: 0x3ff, BlockSize: 4096, ProtEn: true, LBPPBExp: 3, LBPME: true, LBPRZ: true, LowestAlignedLBA: 1}, 4 << 20, false},
		{"block size zero", "0000000000000001 00000000 00 00 0000", ReadCapacity{LastLBA: 1}, 0, true},
		{"short", "00000000", ReadCapacity{}, 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseReadCapacity16(unhexMust(tc.in))
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tc.wantErr)
			}
			if got != tc.want {
				t.Errorf("got %+v\nwant %+v", got, tc.want)
			}
			if err == nil && got.Bytes() != tc.bytes {
				t.Errorf("Bytes() = %d, want %d", got.Bytes(), tc.bytes)
			}
		})
	}
}

func zeros(n int) string {
	s := ""
	for range n {
		s += "00"
	}
	return s
}

// vpd83 wraps designators (each: header byte0, byte1, value) in a page.
func vpd83(desigs ...[]byte) []byte {
	var body []byte
	for _, d := range desigs {
		body = append(body, d...)
	}
	return append([]byte{0x00, 0x83, byte(len(body) >> 8), byte(len(body))}, body...)
}

func desig(codeSet, assocType byte, value []byte) []byte {
	return append([]byte{codeSet, assocType, 0, byte(len(value))}, value...)
}

func TestParseVPD83AndIdentity(t *testing.T) {
	naa6 := unhexMust("60000000000000000e00000000010001")
	naa5 := unhexMust("5000c50012345678")
	t10 := []byte("IET     00010001")
	relPort := desig(0x51, 0x94, unhexMust("00000001")) // PIV, target port, relative target port
	name := []byte("iqn.2025-01.io.understudy:lun1\x00\x00")
	tests := []struct {
		name     string
		page     []byte
		nDesig   int
		identity string
		wantErr  error
	}{
		{"tgt naa6 and t10", vpd83(desig(0x02, 0x01, t10), desig(0x01, 0x03, naa6), relPort), 3,
			"naa.60000000000000000e00000000010001", nil},
		{"naa6 beats naa5", vpd83(desig(0x01, 0x03, naa5), desig(0x01, 0x03, naa6)), 2,
			"naa.60000000000000000e00000000010001", nil},
		{"eui64 beats scsi name", vpd83(desig(0x03, 0x08, name), desig(0x01, 0x02, unhexMust("0011223344556677"))), 2,
			"eui.0011223344556677", nil},
		{"scsi name string trimmed", vpd83(desig(0x03, 0x08, name), desig(0x02, 0x01, t10)), 2,
			"iqn.2025-01.io.understudy:lun1", nil},
		{"t10 only", vpd83(desig(0x02, 0x01, t10)), 1, "t10.IET     00010001", nil},
		{"target port designators only", vpd83(relPort, desig(0x01, 0x13, naa5)), 2, "", ErrNoIdentity},
		{"designator overruns page", unhexMust("00 83 0005 01 03 00 20 60"), 0, "", ErrShortData},
		{"page truncated by allocation length", vpd83(desig(0x01, 0x03, naa6))[:10], 0, "", ErrTruncated},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ds, err := ParseVPD83(tc.page)
			if len(ds) != tc.nDesig {
				t.Errorf("%d designators, want %d", len(ds), tc.nDesig)
			}
			if err == nil {
				var id string
				id, err = Identity(ds)
				if id != tc.identity {
					t.Errorf("Identity = %q, want %q", id, tc.identity)
				}
			}
			if !errors.Is(err, tc.wantErr) || (err != nil) != (tc.wantErr != nil) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
		})
	}
}

func TestParseVPD83Fields(t *testing.T) {
	ds, err := ParseVPD83(vpd83(desig(0x51, 0x94, unhexMust("00000002"))))
	if err != nil {
		t.Fatal(err)
	}
	want := []Designator{{ProtocolID: ProtocolISCSI, CodeSet: CodeSetBinary, PIV: true, Association: AssocTargetPort,
		Type: DesigRelTgtPort, Value: unhexMust("00000002")}}
	if !reflect.DeepEqual(ds, want) {
		t.Errorf("got %+v\nwant %+v", ds, want)
	}
	if _, err := ParseVPD83([]byte{0, 0x80, 0, 0}); err == nil {
		t.Error("page 0x80 accepted as 0x83")
	}
}
