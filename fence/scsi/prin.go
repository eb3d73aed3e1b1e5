package scsi

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// ErrTruncated matches *TruncatedError: the device had more parameter data
// than the allocation length allowed. The partial result must not be
// trusted as complete (a missing key could be the victim's); ask again with
// an allocation length of at least Need.
var ErrTruncated = errors.New("fence/scsi: parameter data truncated by allocation length")

// TruncatedError says how many bytes the full parameter data needs.
type TruncatedError struct {
	What string // "READ KEYS", "READ FULL STATUS", ...
	Need int    // total bytes the header announces
	Have int    // bytes received
}

func (e *TruncatedError) Error() string {
	return fmt.Sprintf("%v: %s needs %d bytes, got %d", ErrTruncated, e.What, e.Need, e.Have)
}

// Is makes errors.Is(err, ErrTruncated) true.
func (e *TruncatedError) Is(target error) bool { return target == ErrTruncated }

// ReadKeys is READ KEYS parameter data (SPC-4 6.15.2).
type ReadKeys struct {
	// Generation is PRGENERATION: bumped by every successful PR OUT that
	// changes registrations or the reservation (not by RESERVE/RELEASE).
	Generation uint32
	// Keys lists every registered key, once per registered I_T nexus (the
	// same key registered through two paths appears twice).
	Keys []uint64
}

// prHeader checks the 8-byte PRGENERATION + ADDITIONAL LENGTH header and
// returns the body the header announces, clipped to what was received; the
// error is a *TruncatedError when clipped.
func prHeader(what string, b []byte) (gen uint32, body []byte, err error) {
	if len(b) < 8 {
		return 0, nil, fmt.Errorf("%w: %s header needs 8 bytes, have %d", ErrShortData, what, len(b))
	}
	gen = binary.BigEndian.Uint32(b[0:4])
	n := uint64(binary.BigEndian.Uint32(b[4:8]))
	body = b[8:]
	if n > uint64(len(body)) {
		return gen, body, &TruncatedError{What: what, Need: clampInt(8 + n), Have: len(b)}
	}
	return gen, body[:n], nil
}

func clampInt(n uint64) int {
	const maxInt = int(^uint(0) >> 1)
	if n > uint64(maxInt) {
		return maxInt
	}
	return int(n)
}

// ParseReadKeys decodes READ KEYS data. When the allocation length cut the
// list short it returns the keys received and a *TruncatedError.
func ParseReadKeys(b []byte) (ReadKeys, error) {
	gen, body, err := prHeader("READ KEYS", b)
	if body == nil {
		return ReadKeys{}, err
	}
	r := ReadKeys{Generation: gen, Keys: make([]uint64, 0, len(body)/8)}
	for off := 0; off+8 <= len(body); off += 8 {
		r.Keys = append(r.Keys, binary.BigEndian.Uint64(body[off:off+8]))
	}
	if err == nil && len(body)%8 != 0 {
		err = fmt.Errorf("%w: READ KEYS list length %d is not a multiple of 8", ErrShortData, len(body))
	}
	return r, err
}

// Reservation is READ RESERVATION parameter data (SPC-4 6.15.3).
type Reservation struct {
	Generation uint32
	// Held is false when no persistent reservation exists; then Key, Scope
	// and Type are zero.
	Held  bool
	Key   uint64 // the reservation holder's key (any registrant's for all-registrants types)
	Scope Scope
	Type  ReservationType
}

// ParseReadReservation decodes READ RESERVATION data.
func ParseReadReservation(b []byte) (Reservation, error) {
	gen, body, err := prHeader("READ RESERVATION", b)
	if err != nil {
		return Reservation{Generation: gen}, err
	}
	r := Reservation{Generation: gen}
	if len(body) == 0 {
		return r, nil
	}
	if len(body) < 16 {
		return r, fmt.Errorf("%w: READ RESERVATION descriptor needs 16 bytes, have %d", ErrShortData, len(body))
	}
	r.Held = true
	r.Key = binary.BigEndian.Uint64(body[0:8])
	r.Scope = Scope(body[13] >> 4)
	r.Type = ReservationType(body[13] & 0x0f)
	return r, nil
}

// Capabilities is REPORT CAPABILITIES parameter data (SPC-4 6.15.4).
type Capabilities struct {
	RLRC          bool // replace lost reservation capable
	CRH           bool // compatible reservation handling
	SIPC          bool // SPEC_I_PT capable
	ATPC          bool // ALL_TG_PT capable
	PTPLC         bool // persist through power loss capable
	TMV           bool // Types is valid
	AllowCommands byte // ALLOW COMMANDS field (3 bits)
	PTPLA         bool // persist through power loss activated
	// Types are the reservation types the device supports (when TMV).
	Types []ReservationType
}

// Supports reports whether t is in the type mask (false when !TMV).
func (c Capabilities) Supports(t ReservationType) bool {
	for _, x := range c.Types {
		if x == t {
			return true
		}
	}
	return false
}

// typeMaskBits maps the PERSISTENT RESERVATION TYPE MASK bits (bytes 4-5 as
// a big-endian uint16) to types.
var typeMaskBits = []struct {
	bit uint16
	t   ReservationType
}{
	{0x8000, TypeWriteExclusiveAllRegistrants},
	{0x4000, TypeExclusiveAccessRegistrantsOnly},
	{0x2000, TypeWriteExclusiveRegistrantsOnly},
	{0x0800, TypeExclusiveAccess},
	{0x0200, TypeWriteExclusive},
	{0x0001, TypeExclusiveAccessAllRegistrants},
}

// ParseReportCapabilities decodes REPORT CAPABILITIES data (8 bytes).
func ParseReportCapabilities(b []byte) (Capabilities, error) {
	if len(b) < 8 {
		return Capabilities{}, fmt.Errorf("%w: REPORT CAPABILITIES needs 8 bytes, have %d", ErrShortData, len(b))
	}
	c := Capabilities{
		RLRC:          b[2]&0x80 != 0,
		CRH:           b[2]&0x10 != 0,
		SIPC:          b[2]&0x08 != 0,
		ATPC:          b[2]&0x04 != 0,
		PTPLC:         b[2]&0x01 != 0,
		TMV:           b[3]&0x80 != 0,
		AllowCommands: (b[3] >> 4) & 0x07,
		PTPLA:         b[3]&0x01 != 0,
	}
	if c.TMV {
		mask := binary.BigEndian.Uint16(b[4:6])
		for _, m := range typeMaskBits {
			if mask&m.bit != 0 {
				c.Types = append(c.Types, m.t)
			}
		}
	}
	return c, nil
}
