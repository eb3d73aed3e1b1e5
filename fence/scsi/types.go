package scsi

import "fmt"

// Status is the SCSI status byte a device server returns for a command
// (SAM-5 5.3). Only StatusGood and StatusConditionMet mean success.
type Status byte

// Status codes (SAM-5 table 33).
const (
	StatusGood                Status = 0x00
	StatusCheckCondition      Status = 0x02
	StatusConditionMet        Status = 0x04
	StatusBusy                Status = 0x08
	StatusReservationConflict Status = 0x18
	StatusTaskSetFull         Status = 0x28
	StatusACAActive           Status = 0x30
	StatusTaskAborted         Status = 0x40
)

// String returns the SAM name of the status, or its hex value if unknown.
func (s Status) String() string {
	switch s {
	case StatusGood:
		return "GOOD"
	case StatusCheckCondition:
		return "CHECK CONDITION"
	case StatusConditionMet:
		return "CONDITION MET"
	case StatusBusy:
		return "BUSY"
	case StatusReservationConflict:
		return "RESERVATION CONFLICT"
	case StatusTaskSetFull:
		return "TASK SET FULL"
	case StatusACAActive:
		return "ACA ACTIVE"
	case StatusTaskAborted:
		return "TASK ABORTED"
	}
	return fmt.Sprintf("status 0x%02x", byte(s))
}

// Command is one SCSI command as a transport sends it. A command moves data
// in at most one direction: DataOut (sent to the device) or DataInLen bytes
// (read from the device); never both.
type Command struct {
	// CDB is the command descriptor block (6 to 16 bytes for the commands
	// this package builds).
	CDB []byte
	// DataOut is the parameter data sent with the command (e.g. the 24-byte
	// PERSISTENT RESERVE OUT parameter list, WRITE data). nil for none.
	DataOut []byte
	// DataInLen is the number of bytes the initiator is prepared to receive
	// (normally the CDB's ALLOCATION LENGTH or transfer length). 0 for none.
	DataInLen int
}

// Response is what the device server answered. Transports fill it for every
// command that reached the device server, whatever its status; a transport
// failure (connection lost, timeout, host/driver error) is reported as the
// transport's error instead, never as a Response.
type Response struct {
	// Status is the SCSI status byte.
	Status Status
	// Sense is the raw sense data (fixed or descriptor format), present
	// with StatusCheckCondition. Transports strip any framing (iSCSI's
	// 2-byte SenseLength prefix) and trim to the valid length.
	Sense []byte
	// DataIn is the data the device returned; it may be shorter than the
	// command's DataInLen (residual underflow), never longer.
	DataIn []byte
}

// Err returns nil when the command succeeded (GOOD or CONDITION MET) and
// otherwise an error that matches this package's sentinels with errors.Is:
// RESERVATION CONFLICT is ErrReservationConflict, BUSY is ErrBusy and so on.
// CHECK CONDITION yields a *SenseError (use errors.As for the sense key and
// ASC/ASCQ) that also matches ErrCheckCondition and the sentinel of its
// sense key (ErrUnitAttention, ErrNotReady, ErrIllegalRequest, ...).
func (r Response) Err() error {
	switch r.Status {
	case StatusGood, StatusConditionMet:
		return nil
	case StatusCheckCondition:
		return newSenseError(r.Sense)
	case StatusReservationConflict:
		return ErrReservationConflict
	case StatusBusy:
		return ErrBusy
	case StatusTaskSetFull:
		return ErrTaskSetFull
	case StatusACAActive:
		return ErrACAActive
	case StatusTaskAborted:
		return ErrAborted
	}
	return fmt.Errorf("%w: %v", ErrUnexpectedStatus, r.Status)
}
