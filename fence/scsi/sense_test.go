package scsi

import (
	"errors"
	"testing"
)

func TestParseSense(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    Sense
		wantErr error
	}{
		{"fixed unit attention power on reset",
			"70 00 06 00000000 0a 00000000 29 00 00 000000",
			Sense{ResponseCode: 0x70, Key: SenseUnitAttention, ASC: 0x29}, nil},
		{"fixed registrations preempted",
			"70 00 06 00000000 0a 00000000 2a 05 00 000000",
			Sense{ResponseCode: 0x70, Key: SenseUnitAttention, ASC: 0x2A, ASCQ: 0x05}, nil},
		{"fixed deferred medium error with info",
			"f1 00 03 00001234 0a 00000000 11 00 00 000000",
			Sense{ResponseCode: 0x71, Deferred: true, Key: SenseMediumError, ASC: 0x11, InfoValid: true, Info: 0x1234}, nil},
		{"fixed illegal request with sense key specific",
			"70 00 05 00000000 0a 00000000 24 00 00 c00002",
			Sense{ResponseCode: 0x70, Key: SenseIllegalRequest, ASC: 0x24, SKSValid: true, SKS: [3]byte{0xc0, 0x00, 0x02}}, nil},
		{"fixed truncated after sense key",
			"70 00 02 00000000 00",
			Sense{ResponseCode: 0x70, Key: SenseNotReady}, nil},
		{"fixed additional length shorter than buffer",
			"70 00 02 00000000 04 00000000 04 01 ff ffffff",
			Sense{ResponseCode: 0x70, Key: SenseNotReady}, nil},
		{"descriptor not ready becoming ready",
			"72 02 04 01 000000 00",
			Sense{ResponseCode: 0x72, Descriptor: true, Key: SenseNotReady, ASC: 0x04, ASCQ: 0x01}, nil},
		{"descriptor with information and sks",
			"72 05 24 00 000000 14 00 0a 80 00 0000000000000100 02 06 00 00 c0 0005 00 00",
			Sense{ResponseCode: 0x72, Descriptor: true, Key: SenseIllegalRequest, ASC: 0x24, InfoValid: true, Info: 0x100,
				SKSValid: true, SKS: [3]byte{0xc0, 0x00, 0x05}}, nil},
		{"descriptor deferred truncated descriptor ignored",
			"73 06 2a 03 000000 0c 00 0a 80 00 00000000",
			Sense{ResponseCode: 0x73, Descriptor: true, Deferred: true, Key: SenseUnitAttention, ASC: 0x2A, ASCQ: 0x03}, nil},
		{"descriptor fru and block ili",
			"72 03 11 00 000000 08 03 02 00 07 05 02 00 20",
			Sense{ResponseCode: 0x72, Descriptor: true, Key: SenseMediumError, ASC: 0x11, FRU: 7, ILI: true}, nil},
		{"empty", "", Sense{}, ErrBadSense},
		{"unknown response code", "7f 00 06", Sense{}, ErrBadSense},
		{"fixed too short", "70 00", Sense{}, ErrBadSense},
		{"descriptor too short", "72", Sense{}, ErrBadSense},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseSense(unhex(t, tc.in))
			if !errors.Is(err, tc.wantErr) || (err != nil) != (tc.wantErr != nil) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if got != tc.want {
				t.Errorf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestSenseString(t *testing.T) {
	s := Sense{Key: SenseUnitAttention, ASC: 0x2A, ASCQ: 0x05, Deferred: true}
	if got, want := s.String(), "deferred UNIT ATTENTION: registrations preempted (2A/05)"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestResponseErr(t *testing.T) {
	fixed := func(key SenseKey, asc, ascq byte) []byte {
		return []byte{0x70, 0, byte(key), 0, 0, 0, 0, 10, 0, 0, 0, 0, asc, ascq, 0, 0, 0, 0}
	}
	tests := []struct {
		name  string
		resp  Response
		is    []error
		isNot []error
	}{
		{"good", Response{Status: StatusGood}, nil, nil},
		{"condition met", Response{Status: StatusConditionMet}, nil, nil},
		{"reservation conflict", Response{Status: StatusReservationConflict},
			[]error{ErrReservationConflict}, []error{ErrCheckCondition, ErrBusy}},
		{"busy", Response{Status: StatusBusy}, []error{ErrBusy}, []error{ErrReservationConflict}},
		{"task set full", Response{Status: StatusTaskSetFull}, []error{ErrTaskSetFull}, nil},
		{"task aborted", Response{Status: StatusTaskAborted}, []error{ErrAborted}, nil},
		{"aca active", Response{Status: StatusACAActive}, []error{ErrACAActive}, nil},
		{"unknown status", Response{Status: 0x22}, []error{ErrUnexpectedStatus}, nil},
		{"registrations preempted", Response{Status: StatusCheckCondition, Sense: fixed(SenseUnitAttention, 0x2A, 0x05)},
			[]error{ErrCheckCondition, ErrUnitAttention, ErrRegistrationsPreempted},
			[]error{ErrReservationsPreempted, ErrNotReady, ErrReservationConflict}},
		{"reservations preempted", Response{Status: StatusCheckCondition, Sense: fixed(SenseUnitAttention, 0x2A, 0x03)},
			[]error{ErrUnitAttention, ErrReservationsPreempted}, []error{ErrRegistrationsPreempted}},
		{"reservations released", Response{Status: StatusCheckCondition, Sense: fixed(SenseUnitAttention, 0x2A, 0x04)},
			[]error{ErrUnitAttention, ErrReservationsReleased}, nil},
		{"not ready", Response{Status: StatusCheckCondition, Sense: fixed(SenseNotReady, 0x04, 0x01)},
			[]error{ErrCheckCondition, ErrNotReady}, []error{ErrUnitAttention}},
		{"medium not present", Response{Status: StatusCheckCondition, Sense: fixed(SenseNotReady, 0x3A, 0x00)},
			[]error{ErrNotReady}, nil},
		{"invalid field in cdb", Response{Status: StatusCheckCondition, Sense: fixed(SenseIllegalRequest, 0x24, 0)},
			[]error{ErrIllegalRequest}, nil},
		{"invalid opcode", Response{Status: StatusCheckCondition, Sense: fixed(SenseIllegalRequest, 0x20, 0)},
			[]error{ErrIllegalRequest}, nil},
		{"lun not supported", Response{Status: StatusCheckCondition, Sense: fixed(SenseIllegalRequest, 0x25, 0)},
			[]error{ErrIllegalRequest}, nil},
		{"aborted command", Response{Status: StatusCheckCondition, Sense: fixed(SenseAbortedCommand, 0x47, 0)},
			[]error{ErrAborted}, nil},
		{"data protect", Response{Status: StatusCheckCondition, Sense: fixed(SenseDataProtect, 0x27, 0)},
			[]error{ErrDataProtect}, nil},
		{"no sense data", Response{Status: StatusCheckCondition},
			[]error{ErrCheckCondition}, []error{ErrUnitAttention}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.resp.Err()
			if tc.is == nil {
				if err != nil {
					t.Fatalf("Err() = %v, want nil", err)
				}
				return
			}
			for _, target := range tc.is {
				if !errors.Is(err, target) {
					t.Errorf("errors.Is(%v, %v) = false, want true", err, target)
				}
			}
			for _, target := range tc.isNot {
				if errors.Is(err, target) {
					t.Errorf("errors.Is(%v, %v) = true, want false", err, target)
				}
			}
		})
	}
}

func TestSenseErrorAs(t *testing.T) {
	raw := []byte{0x70, 0, 0x06, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x29, 0x00, 0, 0, 0, 0}
	err := Response{Status: StatusCheckCondition, Sense: raw}.Err()
	var se *SenseError
	if !errors.As(err, &se) {
		t.Fatalf("errors.As(%T) = false", err)
	}
	if se.Sense.Key != SenseUnitAttention || se.Sense.ASC != 0x29 {
		t.Errorf("sense = %v", se.Sense)
	}
	want := "fence/scsi: check condition: UNIT ATTENTION: power on, reset, or bus device reset occurred (29/00)"
	if err.Error() != want {
		t.Errorf("Error() = %q\nwant      %q", err.Error(), want)
	}
	raw[0] = 0x55
	if s := (Response{Status: StatusCheckCondition, Sense: raw}).Err().Error(); s == "" {
		t.Error("empty error text for unparsable sense")
	}
}
