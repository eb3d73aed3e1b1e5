package scsi

import (
	"encoding/binary"
	"fmt"
	"strings"
)

// InquiryData is standard INQUIRY data (SPC-4 6.6.2).
type InquiryData struct {
	PeripheralQualifier byte // 0 = LU connected; 3 = no LU at this LUN
	DeviceType          byte // 0x00 = direct access block device
	Removable           bool
	Version             byte // 0x06 = SPC-4, 0x05 = SPC-3
	ResponseFormat      byte // 2 for every modern device
	TPGS                byte // target port group support (ALUA)
	Protect             bool
	MultiP              bool
	CmdQue              bool
	Vendor              string // T10 vendor identification, trimmed
	Product             string
	Revision            string
}

// ParseInquiry decodes standard INQUIRY data. It needs the first 36 bytes.
func ParseInquiry(b []byte) (InquiryData, error) {
	if len(b) < 36 {
		return InquiryData{}, fmt.Errorf("%w: standard INQUIRY needs 36 bytes, have %d", ErrShortData, len(b))
	}
	return InquiryData{
		PeripheralQualifier: b[0] >> 5,
		DeviceType:          b[0] & 0x1f,
		Removable:           b[1]&0x80 != 0,
		Version:             b[2],
		ResponseFormat:      b[3] & 0x0f,
		TPGS:                (b[5] >> 4) & 0x03,
		Protect:             b[5]&0x01 != 0,
		MultiP:              b[6]&0x10 != 0,
		CmdQue:              b[7]&0x02 != 0,
		Vendor:              trimASCII(b[8:16]),
		Product:             trimASCII(b[16:32]),
		Revision:            trimASCII(b[32:36]),
	}, nil
}

// trimASCII drops NUL and space padding.
func trimASCII(b []byte) string {
	return strings.TrimRight(strings.TrimSpace(string(b)), "\x00 ")
}

// ReadCapacity is READ CAPACITY(16) parameter data (SBC-3 5.16.2).
type ReadCapacity struct {
	LastLBA   uint64 // RETURNED LOGICAL BLOCK ADDRESS: the last LBA
	BlockSize uint32 // LOGICAL BLOCK LENGTH IN BYTES
	ProtEn    bool
	PType     byte
	// LBPPBExp: 2^LBPPBExp logical blocks per physical block.
	LBPPBExp         byte
	LBPME, LBPRZ     bool // thin provisioning enabled / unmapped reads zero
	LowestAlignedLBA uint16
}

// Blocks is the number of logical blocks (LastLBA+1).
func (c ReadCapacity) Blocks() uint64 { return c.LastLBA + 1 }

// Bytes is the capacity in bytes.
func (c ReadCapacity) Bytes() uint64 { return c.Blocks() * uint64(c.BlockSize) }

// ParseReadCapacity16 decodes READ CAPACITY(16) data (first 16 bytes used).
func ParseReadCapacity16(b []byte) (ReadCapacity, error) {
	if len(b) < 16 {
		return ReadCapacity{}, fmt.Errorf("%w: READ CAPACITY(16) needs 16 bytes, have %d", ErrShortData, len(b))
	}
	c := ReadCapacity{
		LastLBA:          binary.BigEndian.Uint64(b[0:8]),
		BlockSize:        binary.BigEndian.Uint32(b[8:12]),
		ProtEn:           b[12]&0x01 != 0,
		PType:            (b[12] >> 1) & 0x07,
		LBPPBExp:         b[13] & 0x0f,
		LBPME:            b[14]&0x80 != 0,
		LBPRZ:            b[14]&0x40 != 0,
		LowestAlignedLBA: binary.BigEndian.Uint16(b[14:16]) & 0x3fff,
	}
	if c.BlockSize == 0 {
		return c, fmt.Errorf("fence/scsi: READ CAPACITY(16) reports block size 0")
	}
	return c, nil
}
