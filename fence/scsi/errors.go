package scsi

import (
	"errors"
	"fmt"
)

// Sentinel errors. Response.Err returns these (or a *SenseError matching
// them); callers compare with errors.Is, never with strings.
var (
	// ErrReservationConflict: status RESERVATION CONFLICT. For fencing it is
	// an answer, not a failure to retry: the I_T nexus is not allowed to do
	// this (e.g. it was preempted, or is not registered).
	ErrReservationConflict = errors.New("fence/scsi: reservation conflict")
	// ErrBusy: status BUSY; retry later.
	ErrBusy = errors.New("fence/scsi: busy")
	// ErrTaskSetFull: status TASK SET FULL; retry later.
	ErrTaskSetFull = errors.New("fence/scsi: task set full")
	// ErrACAActive: status ACA ACTIVE.
	ErrACAActive = errors.New("fence/scsi: aca active")
	// ErrAborted: status TASK ABORTED, or sense key ABORTED COMMAND.
	ErrAborted = errors.New("fence/scsi: command aborted")
	// ErrUnexpectedStatus: a status byte this package does not know.
	ErrUnexpectedStatus = errors.New("fence/scsi: unexpected status")

	// ErrCheckCondition: status CHECK CONDITION (every *SenseError matches).
	ErrCheckCondition = errors.New("fence/scsi: check condition")
	// ErrUnitAttention: sense key UNIT ATTENTION (reset, power on,
	// reservations/registrations changed, ...). Usually worth one retry.
	ErrUnitAttention = errors.New("fence/scsi: unit attention")
	// ErrNotReady: sense key NOT READY.
	ErrNotReady = errors.New("fence/scsi: not ready")
	// ErrIllegalRequest: sense key ILLEGAL REQUEST (bad CDB field,
	// unsupported opcode or service action, LUN not supported).
	ErrIllegalRequest = errors.New("fence/scsi: illegal request")
	// ErrMediumError: sense key MEDIUM ERROR.
	ErrMediumError = errors.New("fence/scsi: medium error")
	// ErrHardwareError: sense key HARDWARE ERROR.
	ErrHardwareError = errors.New("fence/scsi: hardware error")
	// ErrDataProtect: sense key DATA PROTECT (write protected).
	ErrDataProtect = errors.New("fence/scsi: data protect")
	// ErrMiscompare: sense key MISCOMPARE.
	ErrMiscompare = errors.New("fence/scsi: miscompare")

	// ErrRegistrationsPreempted: UNIT ATTENTION 2A/05 -- another initiator
	// preempted this I_T nexus's registration: we were fenced.
	ErrRegistrationsPreempted = errors.New("fence/scsi: registrations preempted")
	// ErrReservationsPreempted: UNIT ATTENTION 2A/03.
	ErrReservationsPreempted = errors.New("fence/scsi: reservations preempted")
	// ErrReservationsReleased: UNIT ATTENTION 2A/04.
	ErrReservationsReleased = errors.New("fence/scsi: reservations released")

	// ErrShortData: returned parameter data is shorter than its header says
	// or than the format's minimum.
	ErrShortData = errors.New("fence/scsi: parameter data too short")
	// ErrBadSense: sense data with an unknown response code or truncated.
	ErrBadSense = errors.New("fence/scsi: malformed sense data")
)

// SenseError is the error for status CHECK CONDITION. It matches
// ErrCheckCondition, the sentinel of its sense key, and for the PR unit
// attentions (2A/03, 2A/04, 2A/05) the specific sentinel too.
type SenseError struct {
	// Sense is the parsed sense data; zero (Key NoSense) when the device
	// sent none or it could not be parsed (then ParseErr says why).
	Sense Sense
	// Raw is the sense data as received.
	Raw []byte
	// ParseErr is non-nil when Raw could not be parsed.
	ParseErr error
}

func newSenseError(raw []byte) *SenseError {
	e := &SenseError{Raw: append([]byte(nil), raw...)}
	s, err := ParseSense(raw)
	if err != nil {
		e.ParseErr = err
		return e
	}
	e.Sense = s
	return e
}

// Error renders "fence/scsi: check condition: UNIT ATTENTION: power on,
// reset, or bus device reset occurred (29/00)".
func (e *SenseError) Error() string {
	if e.ParseErr != nil {
		return fmt.Sprintf("%v (sense % x: %v)", ErrCheckCondition, e.Raw, e.ParseErr)
	}
	return fmt.Sprintf("%v: %v", ErrCheckCondition, e.Sense)
}

// Is maps the sense key (and PR-related ASC/ASCQ) to the sentinels.
func (e *SenseError) Is(target error) bool {
	if target == ErrCheckCondition {
		return true
	}
	if e.ParseErr != nil {
		return false
	}
	if s, ok := keySentinels[e.Sense.Key]; ok && s == target {
		return true
	}
	if e.Sense.Key != SenseUnitAttention || e.Sense.ASC != 0x2A {
		return false
	}
	switch e.Sense.ASCQ {
	case 0x03:
		return target == ErrReservationsPreempted
	case 0x04:
		return target == ErrReservationsReleased
	case 0x05:
		return target == ErrRegistrationsPreempted
	}
	return false
}

var keySentinels = map[SenseKey]error{
	SenseNotReady:       ErrNotReady,
	SenseMediumError:    ErrMediumError,
	SenseHardwareError:  ErrHardwareError,
	SenseIllegalRequest: ErrIllegalRequest,
	SenseUnitAttention:  ErrUnitAttention,
	SenseDataProtect:    ErrDataProtect,
	SenseAbortedCommand: ErrAborted,
	SenseMiscompare:     ErrMiscompare,
}
