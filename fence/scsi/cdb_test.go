package scsi

import (
	"bytes"
	"encoding/hex"
	"strings"
	"testing"
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatalf("bad hex %q: %v", s, err)
	}
	return b
}

func TestBuilders(t *testing.T) {
	params := func(key, sark string, flags string) string {
		return key + sark + "00000000" + flags + "00" + "0000"
	}
	tests := []struct {
		name    string
		cmd     Command
		cdb     string
		inLen   int
		dataOut string
	}{
		{"test unit ready", TestUnitReady(), "00 00 00 00 00 00", 0, ""},
		{"standard inquiry", Inquiry(false, 0, 96), "12 00 00 00 60 00", 96, ""},
		{"vpd 0x83", Inquiry(true, 0x83, 1024), "12 01 83 04 00 00", 1024, ""},
		{"read capacity 16", ReadCapacity16(), "9e 10 0000000000000000 00000020 00 00", 32, ""},
		{"read 16", Read16(0x0102030405060708, 8, false, 512), "88 00 0102030405060708 00000008 00 00", 4096, ""},
		{"read 16 fua", Read16(1, 1, true, 4096), "88 08 0000000000000001 00000001 00 00", 4096, ""},
		{"write 16 fua", Write16(7, 1, true, []byte{0xaa, 0xbb}), "8a 08 0000000000000007 00000001 00 00", 0, "aabb"},
		{"sync cache 16", SynchronizeCache16(0, 0), "91 00 0000000000000000 00000000 00 00", 0, ""},
		{"read keys", PersistentReserveIn(PRInReadKeys, 1024), "5e 00 00 00 00 00 00 04 00 00", 1024, ""},
		{"read reservation", PersistentReserveIn(PRInReadReservation, 64), "5e 01 00 00 00 00 00 00 40 00", 64, ""},
		{"report capabilities", PersistentReserveIn(PRInReportCapabilities, 8), "5e 02 00 00 00 00 00 00 08 00", 8, ""},
		{"read full status", PersistentReserveIn(PRInReadFullStatus, 4096), "5e 03 00 00 00 00 00 10 00 00", 4096, ""},
		{"register and ignore", PersistentReserveOut(PROutRegisterAndIgnoreExisting, ScopeLU, TypeWriteExclusiveRegistrantsOnly,
			PROutParams{SARK: 0x5a1e93c000000002}),
			"5f 06 05 00 00 00 00 00 18 00", 0, params("0000000000000000", "5a1e93c000000002", "00")},
		{"register aptpl all_tg_pt", PersistentReserveOut(PROutRegister, ScopeLU, TypeNone,
			PROutParams{Key: 1, SARK: 2, APTPL: true, AllTgPt: true}),
			"5f 00 00 00 00 00 00 00 18 00", 0, params("0000000000000001", "0000000000000002", "05")},
		{"reserve type 5", PersistentReserveOut(PROutReserve, ScopeLU, TypeWriteExclusiveRegistrantsOnly, PROutParams{Key: 0xabcd}),
			"5f 01 05 00 00 00 00 00 18 00", 0, params("000000000000abcd", "0000000000000000", "00")},
		{"release", PersistentReserveOut(PROutRelease, ScopeLU, TypeWriteExclusiveRegistrantsOnly, PROutParams{Key: 0xabcd}),
			"5f 02 05 00 00 00 00 00 18 00", 0, params("000000000000abcd", "0000000000000000", "00")},
		{"clear", PersistentReserveOut(PROutClear, ScopeLU, TypeNone, PROutParams{Key: 3}),
			"5f 03 00 00 00 00 00 00 18 00", 0, params("0000000000000003", "0000000000000000", "00")},
		{"preempt", PersistentReserveOut(PROutPreempt, ScopeLU, TypeWriteExclusiveRegistrantsOnly, PROutParams{Key: 2, SARK: 1}),
			"5f 04 05 00 00 00 00 00 18 00", 0, params("0000000000000002", "0000000000000001", "00")},
		{"preempt and abort", PersistentReserveOut(PROutPreemptAndAbort, ScopeLU, TypeWriteExclusiveRegistrantsOnly, PROutParams{Key: 2, SARK: 1}),
			"5f 05 05 00 00 00 00 00 18 00", 0, params("0000000000000002", "0000000000000001", "00")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got, want := tc.cmd.CDB, unhex(t, tc.cdb); !bytes.Equal(got, want) {
				t.Errorf("CDB\n got % x\nwant % x", got, want)
			}
			if tc.cmd.DataInLen != tc.inLen {
				t.Errorf("DataInLen = %d, want %d", tc.cmd.DataInLen, tc.inLen)
			}
			if got, want := tc.cmd.DataOut, unhex(t, tc.dataOut); !bytes.Equal(got, want) {
				t.Errorf("DataOut\n got % x\nwant % x", got, want)
			}
		})
	}
}

func TestPROutSpecIPT(t *testing.T) {
	tid := ISCSITransportID("iqn.2025-01.io.understudy:b", "23d000000002")
	b := PROutParams{SARK: 9, SpecIPT: true, TransportIDs: [][]byte{tid}}.Marshal()
	if b[20] != 0x08 {
		t.Errorf("flags byte = %#x, want SPEC_I_PT 0x08", b[20])
	}
	if got := int(b[24])<<24 | int(b[25])<<16 | int(b[26])<<8 | int(b[27]); got != len(tid) {
		t.Errorf("TransportID parameter data length = %d, want %d", got, len(tid))
	}
	if !bytes.Equal(b[28:], tid) {
		t.Errorf("TransportID not appended")
	}
}

func TestStrings(t *testing.T) {
	tests := []struct {
		name string
		got  string
		want string
	}{
		{"status conflict", StatusReservationConflict.String(), "RESERVATION CONFLICT"},
		{"status unknown", Status(0x22).String(), "status 0x22"},
		{"type 5", TypeWriteExclusiveRegistrantsOnly.String(), "Write Exclusive - Registrants Only"},
		{"prout", PROutPreemptAndAbort.String(), "PREEMPT AND ABORT"},
		{"prin", PRInReadFullStatus.String(), "READ FULL STATUS"},
		{"sense key", SenseUnitAttention.String(), "UNIT ATTENTION"},
		{"asc known", ASCString(0x2A, 0x05), "registrations preempted"},
		{"asc not ready family", ASCString(0x04, 0x77), "logical unit not ready (ascq 0x77)"},
		{"asc unknown", ASCString(0x99, 0x01), "asc 0x99 ascq 0x01"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.got != tc.want {
				t.Errorf("got %q, want %q", tc.got, tc.want)
			}
		})
	}
}

func unhexMust(s string) []byte {
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		panic(err)
	}
	return b
}
