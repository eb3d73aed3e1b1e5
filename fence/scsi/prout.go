package scsi

import (
	"encoding/binary"
	"fmt"
)

// PROutAction is a PERSISTENT RESERVE OUT service action (SPC-4 table 172).
type PROutAction byte

// PERSISTENT RESERVE OUT service actions.
const (
	PROutRegister                  PROutAction = 0x00
	PROutReserve                   PROutAction = 0x01
	PROutRelease                   PROutAction = 0x02
	PROutClear                     PROutAction = 0x03
	PROutPreempt                   PROutAction = 0x04
	PROutPreemptAndAbort           PROutAction = 0x05
	PROutRegisterAndIgnoreExisting PROutAction = 0x06
	PROutRegisterAndMove           PROutAction = 0x07
)

var proutNames = map[PROutAction]string{
	PROutRegister:                  "REGISTER",
	PROutReserve:                   "RESERVE",
	PROutRelease:                   "RELEASE",
	PROutClear:                     "CLEAR",
	PROutPreempt:                   "PREEMPT",
	PROutPreemptAndAbort:           "PREEMPT AND ABORT",
	PROutRegisterAndIgnoreExisting: "REGISTER AND IGNORE EXISTING KEY",
	PROutRegisterAndMove:           "REGISTER AND MOVE",
}

func (a PROutAction) String() string {
	if s, ok := proutNames[a]; ok {
		return s
	}
	return fmt.Sprintf("PR OUT action 0x%02x", byte(a))
}

// Scope is the persistent reservation scope; only LU_SCOPE (0) is defined
// by SPC-4.
type Scope byte

// ScopeLU is LU_SCOPE: the reservation applies to the whole logical unit.
const ScopeLU Scope = 0x0

func (s Scope) String() string {
	if s == ScopeLU {
		return "LU_SCOPE"
	}
	return fmt.Sprintf("scope 0x%x", byte(s))
}

// ReservationType is the persistent reservation TYPE (SPC-4 table 169).
type ReservationType byte

// Reservation types. understudy uses TypeWriteExclusiveRegistrantsOnly:
// every registered node may write; a preempted (unregistered) node may still
// read but gets RESERVATION CONFLICT on writes.
const (
	TypeNone                           ReservationType = 0x0 // no reservation (READ RESERVATION)
	TypeWriteExclusive                 ReservationType = 0x1
	TypeExclusiveAccess                ReservationType = 0x3
	TypeWriteExclusiveRegistrantsOnly  ReservationType = 0x5
	TypeExclusiveAccessRegistrantsOnly ReservationType = 0x6
	TypeWriteExclusiveAllRegistrants   ReservationType = 0x7
	TypeExclusiveAccessAllRegistrants  ReservationType = 0x8
)

var typeNames = map[ReservationType]string{
	TypeNone:                           "none",
	TypeWriteExclusive:                 "Write Exclusive",
	TypeExclusiveAccess:                "Exclusive Access",
	TypeWriteExclusiveRegistrantsOnly:  "Write Exclusive - Registrants Only",
	TypeExclusiveAccessRegistrantsOnly: "Exclusive Access - Registrants Only",
	TypeWriteExclusiveAllRegistrants:   "Write Exclusive - All Registrants",
	TypeExclusiveAccessAllRegistrants:  "Exclusive Access - All Registrants",
}

func (t ReservationType) String() string {
	if s, ok := typeNames[t]; ok {
		return s
	}
	return fmt.Sprintf("type 0x%x", byte(t))
}

// PROutParams is the PERSISTENT RESERVE OUT parameter list (SPC-4 6.16.3)
// for every service action except REGISTER AND MOVE.
type PROutParams struct {
	// Key is the RESERVATION KEY: the caller's current key (0 when not
	// registered, or anything for REGISTER AND IGNORE EXISTING KEY).
	Key uint64
	// SARK is the SERVICE ACTION RESERVATION KEY: the new key for REGISTER
	// (0 = unregister), the victim's key for PREEMPT (AND ABORT).
	SARK uint64
	// SpecIPT (SPEC_I_PT) registers the I_T nexuses named by TransportIDs
	// as well; only valid with REGISTER.
	SpecIPT bool
	// AllTgPt (ALL_TG_PT) registers the key on every target port.
	AllTgPt bool
	// APTPL asks the device to keep registrations across power loss.
	APTPL bool
	// TransportIDs are appended (with their length field) when SpecIPT.
	TransportIDs [][]byte
}

// Marshal returns the 24-byte basic parameter list, followed by the
// TransportID list when SpecIPT is set.
func (p PROutParams) Marshal() []byte {
	n := 24
	if p.SpecIPT {
		n += 4
		for _, t := range p.TransportIDs {
			n += len(t)
		}
	}
	b := make([]byte, n)
	binary.BigEndian.PutUint64(b[0:8], p.Key)
	binary.BigEndian.PutUint64(b[8:16], p.SARK)
	if p.SpecIPT {
		b[20] |= 0x08
	}
	if p.AllTgPt {
		b[20] |= 0x04
	}
	if p.APTPL {
		b[20] |= 0x01
	}
	if p.SpecIPT {
		binary.BigEndian.PutUint32(b[24:28], uint32(n-28))
		off := 28
		for _, t := range p.TransportIDs {
			off += copy(b[off:], t)
		}
	}
	return b
}

// PersistentReserveOut builds PERSISTENT RESERVE OUT (10-byte CDB) with the
// parameter list as DataOut. scope and typ matter for RESERVE, RELEASE,
// PREEMPT and PREEMPT AND ABORT; the device ignores them otherwise.
func PersistentReserveOut(sa PROutAction, scope Scope, typ ReservationType, p PROutParams) Command {
	data := p.Marshal()
	cdb := make([]byte, 10)
	cdb[0] = OpPersistentReserveOut
	cdb[1] = byte(sa) & 0x1f
	cdb[2] = byte(scope)<<4 | byte(typ)&0x0f
	binary.BigEndian.PutUint32(cdb[5:9], uint32(len(data)))
	return Command{CDB: cdb, DataOut: data}
}
