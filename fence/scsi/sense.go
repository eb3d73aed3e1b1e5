package scsi

import (
	"encoding/binary"
	"fmt"
)

// SenseKey is the 4-bit sense key (SPC-4 table 48).
type SenseKey byte

// Sense keys.
const (
	SenseNoSense        SenseKey = 0x0
	SenseRecoveredError SenseKey = 0x1
	SenseNotReady       SenseKey = 0x2
	SenseMediumError    SenseKey = 0x3
	SenseHardwareError  SenseKey = 0x4
	SenseIllegalRequest SenseKey = 0x5
	SenseUnitAttention  SenseKey = 0x6
	SenseDataProtect    SenseKey = 0x7
	SenseBlankCheck     SenseKey = 0x8
	SenseVendorSpecific SenseKey = 0x9
	SenseCopyAborted    SenseKey = 0xA
	SenseAbortedCommand SenseKey = 0xB
	SenseVolumeOverflow SenseKey = 0xD
	SenseMiscompare     SenseKey = 0xE
	SenseCompleted      SenseKey = 0xF
)

var senseKeyNames = [16]string{
	"NO SENSE", "RECOVERED ERROR", "NOT READY", "MEDIUM ERROR",
	"HARDWARE ERROR", "ILLEGAL REQUEST", "UNIT ATTENTION", "DATA PROTECT",
	"BLANK CHECK", "VENDOR SPECIFIC", "COPY ABORTED", "ABORTED COMMAND",
	"RESERVED (0xC)", "VOLUME OVERFLOW", "MISCOMPARE", "COMPLETED",
}

// String returns the SPC-4 name of the key.
func (k SenseKey) String() string {
	if k < 16 {
		return senseKeyNames[k]
	}
	return fmt.Sprintf("sense key 0x%x", byte(k))
}

// Sense is parsed sense data, fixed or descriptor format. Fields absent from
// the data are zero.
type Sense struct {
	ResponseCode byte // 0x70, 0x71, 0x72 or 0x73
	Descriptor   bool // descriptor format (0x72/0x73)
	Deferred     bool // deferred error (0x71/0x73): about an earlier command
	Key          SenseKey
	ASC, ASCQ    byte
	// InfoValid says Info holds the INFORMATION field (e.g. the failing LBA).
	InfoValid bool
	Info      uint64
	// CmdInfo is the COMMAND-SPECIFIC INFORMATION field.
	CmdInfo uint64
	// SKSValid says SKS holds the SENSE KEY SPECIFIC bytes (e.g. for
	// ILLEGAL REQUEST: C/D bit and the offending field pointer).
	SKSValid bool
	SKS      [3]byte
	FRU      byte
	Filemark bool
	EOM      bool
	ILI      bool
}

// Fixed format offsets (SPC-4 4.5.3).
const (
	fixedMinLen = 14 // through ASCQ; shorter fixed sense has no ASC/ASCQ
)

// ParseSense decodes fixed (0x70/0x71) or descriptor (0x72/0x73) sense data.
// Data truncated after the sense key still parses (ASC/ASCQ stay 0) because
// devices and transports do truncate; data too short for a sense key or with
// an unknown response code is ErrBadSense.
func ParseSense(b []byte) (Sense, error) {
	if len(b) == 0 {
		return Sense{}, fmt.Errorf("%w: empty", ErrBadSense)
	}
	code := b[0] & 0x7f
	switch code {
	case 0x70, 0x71:
		return parseFixedSense(b)
	case 0x72, 0x73:
		return parseDescriptorSense(b)
	}
	return Sense{}, fmt.Errorf("%w: response code 0x%02x (want 0x70-0x73)", ErrBadSense, code)
}

func parseFixedSense(b []byte) (Sense, error) {
	if len(b) < 3 {
		return Sense{}, fmt.Errorf("%w: fixed format needs >= 3 bytes, have %d", ErrBadSense, len(b))
	}
	s := Sense{ResponseCode: b[0] & 0x7f, Deferred: b[0]&0x7f == 0x71}
	s.Key = SenseKey(b[2] & 0x0f)
	s.Filemark, s.EOM, s.ILI = b[2]&0x80 != 0, b[2]&0x40 != 0, b[2]&0x20 != 0
	// Honour the ADDITIONAL SENSE LENGTH when it is shorter than the buffer.
	if len(b) >= 8 {
		if n := 8 + int(b[7]); n < len(b) {
			b = b[:n]
		}
	}
	if len(b) >= 7 {
		s.InfoValid = b[0]&0x80 != 0
		s.Info = uint64(binary.BigEndian.Uint32(b[3:7]))
	}
	if len(b) >= 12 {
		s.CmdInfo = uint64(binary.BigEndian.Uint32(b[8:12]))
	}
	if len(b) >= fixedMinLen {
		s.ASC, s.ASCQ = b[12], b[13]
	}
	if len(b) >= 15 {
		s.FRU = b[14]
	}
	if len(b) >= 18 {
		s.SKSValid = b[15]&0x80 != 0
		copy(s.SKS[:], b[15:18])
	}
	return s, nil
}

func parseDescriptorSense(b []byte) (Sense, error) {
	if len(b) < 2 {
		return Sense{}, fmt.Errorf("%w: descriptor format needs >= 2 bytes, have %d", ErrBadSense, len(b))
	}
	s := Sense{ResponseCode: b[0] & 0x7f, Descriptor: true, Deferred: b[0]&0x7f == 0x73}
	s.Key = SenseKey(b[1] & 0x0f)
	if len(b) >= 4 {
		s.ASC, s.ASCQ = b[2], b[3]
	}
	if len(b) < 8 {
		return s, nil
	}
	end := 8 + int(b[7])
	if end > len(b) {
		end = len(b)
	}
	for off := 8; off+2 <= end; {
		dlen := 2 + int(b[off+1])
		if off+dlen > end {
			break // truncated descriptor: keep what we have
		}
		s.applyDescriptor(b[off : off+dlen])
		off += dlen
	}
	return s, nil
}

// applyDescriptor decodes the sense data descriptors this package uses
// (SPC-4 4.5.2.2-4.5.2.5, SBC-3 block commands); others are skipped.
func (s *Sense) applyDescriptor(d []byte) {
	switch d[0] {
	case 0x00: // information
		if len(d) >= 12 {
			s.InfoValid = d[2]&0x80 != 0
			s.Info = binary.BigEndian.Uint64(d[4:12])
		}
	case 0x01: // command-specific information
		if len(d) >= 12 {
			s.CmdInfo = binary.BigEndian.Uint64(d[4:12])
		}
	case 0x02: // sense key specific
		if len(d) >= 7 {
			s.SKSValid = d[4]&0x80 != 0
			copy(s.SKS[:], d[4:7])
		}
	case 0x03: // field replaceable unit
		if len(d) >= 4 {
			s.FRU = d[3]
		}
	case 0x04: // stream commands
		if len(d) >= 4 {
			s.Filemark, s.EOM, s.ILI = d[3]&0x80 != 0, d[3]&0x40 != 0, d[3]&0x20 != 0
		}
	case 0x05: // block commands
		if len(d) >= 4 {
			s.ILI = d[3]&0x20 != 0
		}
	}
}

// String renders "UNIT ATTENTION: power on occurred (29/01)", with
// "deferred " in front for deferred errors.
func (s Sense) String() string {
	p := ""
	if s.Deferred {
		p = "deferred "
	}
	return fmt.Sprintf("%s%v: %s (%02X/%02X)", p, s.Key, ASCString(s.ASC, s.ASCQ), s.ASC, s.ASCQ)
}
