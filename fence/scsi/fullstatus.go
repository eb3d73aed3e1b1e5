package scsi

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strings"
)

// FullStatus is READ FULL STATUS parameter data (SPC-4 6.15.5): one
// descriptor per registered I_T nexus.
type FullStatus struct {
	Generation  uint32
	Descriptors []StatusDescriptor
}

// StatusDescriptor describes one registration.
type StatusDescriptor struct {
	Key     uint64
	AllTgPt bool // registered through every target port
	RHolder bool // this I_T nexus holds the reservation
	Scope   Scope
	Type    ReservationType // meaningful when RHolder
	// RelTgtPort is the RELATIVE TARGET PORT IDENTIFIER (when !AllTgPt).
	RelTgtPort uint16
	// TransportID is the initiator port's TransportID as received.
	TransportID []byte
}

// Initiator decodes TransportID; an error means the bytes are not a
// TransportID this package understands (they are still in TransportID).
func (d StatusDescriptor) Initiator() (TransportID, error) {
	return ParseTransportID(d.TransportID)
}

// ParseReadFullStatus decodes READ FULL STATUS data. When the allocation
// length cut the data short it returns the complete descriptors received and
// a *TruncatedError.
func ParseReadFullStatus(b []byte) (FullStatus, error) {
	gen, body, err := prHeader("READ FULL STATUS", b)
	if body == nil {
		return FullStatus{}, err
	}
	fs := FullStatus{Generation: gen}
	for off := 0; off < len(body); {
		if len(body)-off < 24 {
			if err == nil {
				err = fmt.Errorf("%w: READ FULL STATUS descriptor at %d needs 24 bytes, have %d", ErrShortData, off, len(body)-off)
			}
			break
		}
		d := body[off:]
		n := uint64(binary.BigEndian.Uint32(d[20:24]))
		if n > uint64(len(d)-24) {
			if err == nil {
				err = fmt.Errorf("%w: READ FULL STATUS TransportID at %d needs %d bytes, have %d", ErrShortData, off, n, len(d)-24)
			}
			break
		}
		fs.Descriptors = append(fs.Descriptors, StatusDescriptor{
			Key:         binary.BigEndian.Uint64(d[0:8]),
			AllTgPt:     d[12]&0x02 != 0,
			RHolder:     d[12]&0x01 != 0,
			Scope:       Scope(d[13] >> 4),
			Type:        ReservationType(d[13] & 0x0f),
			RelTgtPort:  binary.BigEndian.Uint16(d[18:20]),
			TransportID: append([]byte(nil), d[24:24+n]...),
		})
		off += 24 + int(n)
	}
	return fs, err
}

// ProtocolID is the PROTOCOL IDENTIFIER of a TransportID (SPC-4 table 426).
type ProtocolID byte

// Protocol identifiers used in TransportIDs.
const (
	ProtocolFC    ProtocolID = 0x0
	ProtocolSRP   ProtocolID = 0x4
	ProtocolISCSI ProtocolID = 0x5
	ProtocolSAS   ProtocolID = 0x6
)

func (p ProtocolID) String() string {
	switch p {
	case ProtocolFC:
		return "fc"
	case ProtocolSRP:
		return "srp"
	case ProtocolISCSI:
		return "iscsi"
	case ProtocolSAS:
		return "sas"
	}
	return fmt.Sprintf("protocol 0x%x", byte(p))
}

// TransportID is a decoded initiator port TransportID (SPC-4 7.6.4).
type TransportID struct {
	Protocol ProtocolID
	Format   byte // FORMAT CODE
	// Name is the iSCSI name (iSCSI), or the hex port name/address
	// (FC N_Port name, SAS address, SRP port identifier).
	Name string
	// ISID is the iSCSI initiator session id as hex ("23d000000001"), from
	// format 01 ("<name>,i,0x<isid>"); empty for format 00.
	ISID string
}

// String renders "iscsi:iqn.2025-01.example:a,i,0x23d000000001" or
// "fc:0x21000024ff000001".
func (t TransportID) String() string {
	if t.Protocol == ProtocolISCSI {
		if t.ISID != "" {
			return fmt.Sprintf("iscsi:%s,i,0x%s", t.Name, t.ISID)
		}
		return "iscsi:" + t.Name
	}
	return fmt.Sprintf("%v:0x%s", t.Protocol, t.Name)
}

// ParseTransportID decodes FC, SRP, SAS and iSCSI TransportIDs.
func ParseTransportID(b []byte) (TransportID, error) {
	if len(b) < 4 {
		return TransportID{}, fmt.Errorf("%w: TransportID needs >= 4 bytes, have %d", ErrShortData, len(b))
	}
	t := TransportID{Protocol: ProtocolID(b[0] & 0x0f), Format: b[0] >> 6}
	switch t.Protocol {
	case ProtocolFC:
		return t, fixedPortName(&t, b, 8, 8)
	case ProtocolSAS:
		return t, fixedPortName(&t, b, 4, 8)
	case ProtocolSRP:
		return t, fixedPortName(&t, b, 8, 16)
	case ProtocolISCSI:
		return t, parseISCSITransportID(&t, b)
	}
	return t, fmt.Errorf("fence/scsi: TransportID protocol %v not supported", t.Protocol)
}

func fixedPortName(t *TransportID, b []byte, off, n int) error {
	if len(b) < off+n {
		return fmt.Errorf("%w: %v TransportID needs %d bytes, have %d", ErrShortData, t.Protocol, off+n, len(b))
	}
	t.Name = hex.EncodeToString(b[off : off+n])
	return nil
}

// parseISCSITransportID decodes format 00 (name) and 01 (name,i,0xISID).
func parseISCSITransportID(t *TransportID, b []byte) error {
	n := int(binary.BigEndian.Uint16(b[2:4]))
	if n > len(b)-4 {
		return fmt.Errorf("%w: iSCSI TransportID announces %d name bytes, have %d", ErrShortData, n, len(b)-4)
	}
	s := b[4 : 4+n]
	if i := bytes.IndexByte(s, 0); i >= 0 {
		s = s[:i]
	}
	name := string(s)
	switch t.Format {
	case 0:
		t.Name = name
	case 1:
		// Not strings.ToLower: it changes the length of invalid UTF-8.
		i := max(strings.LastIndex(name, ",i,0x"), strings.LastIndex(name, ",i,0X"), strings.LastIndex(name, ",I,0x"), strings.LastIndex(name, ",I,0X"))
		if i < 0 {
			return fmt.Errorf("fence/scsi: iSCSI TransportID format 01 without \",i,0x\": %q", name)
		}
		t.Name, t.ISID = name[:i], strings.ToLower(name[i+5:])
	default:
		return fmt.Errorf("fence/scsi: iSCSI TransportID format code %d not defined", t.Format)
	}
	return nil
}

// ISCSITransportID builds an iSCSI TransportID (format 00 when isid is
// empty, else format 01 with isid as 12 hex digits), padded to a multiple of
// 4 bytes (and at least 20 bytes) as SPC-4 requires.
func ISCSITransportID(name, isid string) []byte {
	s := name
	var format byte
	if isid != "" {
		s, format = name+",i,0x"+isid, 1
	}
	n := len(s) + 1 // NUL terminated
	n = (n + 3) &^ 3
	if n < 16 { // an iSCSI TransportID is at least 20 bytes
		n = 16
	}
	b := make([]byte, 4+n)
	b[0] = format<<6 | byte(ProtocolISCSI)
	binary.BigEndian.PutUint16(b[2:4], uint16(n))
	copy(b[4:], s)
	return b
}
