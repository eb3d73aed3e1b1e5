package scsi

import (
	"errors"
	"testing"
)

// The fuzz targets check that parsers never panic, never claim more than
// the input holds, and that errors are the documented ones.

func FuzzParseSense(f *testing.F) {
	f.Add(unhexMust("70 00 06 00000000 0a 00000000 2a 05 00 000000"))
	f.Add(unhexMust("72 05 24 00 000000 14 00 0a 80 00 0000000000000100 02 06 00 00 c0 0005 00 00"))
	f.Add(unhexMust("73 06 2a 03 000000 ff 00 0a"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := ParseSense(b)
		if err != nil {
			if !errors.Is(err, ErrBadSense) {
				t.Fatalf("unexpected error %v", err)
			}
			return
		}
		if s.Key > 0xf {
			t.Fatalf("sense key %d out of range", s.Key)
		}
		_ = s.String()
		// A CHECK CONDITION with these bytes must map to a SenseError.
		if !errors.Is(Response{Status: StatusCheckCondition, Sense: b}.Err(), ErrCheckCondition) {
			t.Fatal("check condition error does not match ErrCheckCondition")
		}
	})
}

func FuzzParseReadKeys(f *testing.F) {
	f.Add(unhexMust("0000000a 00000010 5a1e93c000000001 5a1e93c000000002"))
	f.Add(unhexMust("00000002 00000018 0000000000000001"))
	f.Add(unhexMust("ffffffff ffffffff"))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseReadKeys(b)
		if len(r.Keys)*8+8 > len(b) && len(r.Keys) > 0 {
			t.Fatalf("%d keys from %d bytes", len(r.Keys), len(b))
		}
		if err != nil && !errors.Is(err, ErrShortData) && !errors.Is(err, ErrTruncated) {
			t.Fatalf("unexpected error %v", err)
		}
		_, _ = ParseReadReservation(b)
		_, _ = ParseReportCapabilities(b)
	})
}

func FuzzParseFullStatus(f *testing.F) {
	tid := ISCSITransportID("iqn.2025-01.io.understudy:node-a", "23d000000001")
	f.Add(prInData(1, fullStatusDesc("5a1e93c000000001", 0x01, 0x05, 1, tid)))
	f.Add(prInData(1, fullStatusDesc("0000000000000002", 0x02, 0x00, 0, unhexMust("00000000 00000000 21000024ff000001 0000000000000000"))))
	f.Add(unhexMust("00000001 ffffffff"))
	f.Fuzz(func(t *testing.T, b []byte) {
		fs, err := ParseReadFullStatus(b)
		used := 8
		for _, d := range fs.Descriptors {
			used += 24 + len(d.TransportID)
			if id, err := d.Initiator(); err == nil {
				_ = id.String()
			}
		}
		if used > len(b) && len(fs.Descriptors) > 0 {
			t.Fatalf("descriptors use %d bytes of %d", used, len(b))
		}
		if err != nil && !errors.Is(err, ErrShortData) && !errors.Is(err, ErrTruncated) {
			t.Fatalf("unexpected error %v", err)
		}
	})
}

func FuzzParseVPD83(f *testing.F) {
	f.Add(vpd83(desig(0x02, 0x01, []byte("IET     00010001")), desig(0x01, 0x03, unhexMust("60000000000000000e00000000010001"))))
	f.Add(vpd83(desig(0x03, 0x08, []byte("iqn.x\x00\xff"))))
	f.Add([]byte{0, 0x83, 0xff, 0xff, 1, 3, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		ds, err := ParseVPD83(b)
		for _, d := range ds {
			if len(d.Value) > len(b) {
				t.Fatalf("designator longer than page")
			}
			_ = d.String()
		}
		if id, ierr := Identity(ds); ierr == nil && id == "" {
			t.Fatal("empty identity without error")
		}
		_ = err
		_, _ = ParseInquiry(b)
		_, _ = ParseReadCapacity16(b)
	})
}
